// Fuzz target "trace": the safetensors reader (proofs::SafetensorsFile) and the trace schema on
// top of it (analysis::Trace), on arbitrary bytes. Every tensor the reader hands out is read in
// full (analysis::compute_stats, what `inspect` does), so a header that promises more bytes than
// the file holds shows up as a wild read, not only as a wrong count.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "hnf/analysis/tensor_stats.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/safetensors.h"

namespace {

void read_every_tensor(const hnf::proofs::SafetensorsFile& file) {
  for (const auto& tensor : file.tensors()) {
    const auto stats = hnf::analysis::compute_stats(file, tensor);
    if (stats.nan_count + stats.inf_count + stats.finite_count != stats.numel) {
      hnf::fuzz::finding("compute_stats lost elements", tensor.name);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const hnf::fuzz::ScratchFile scratch("input.safetensors");
  const auto& path = scratch.write(data, size);
  const std::string file = path.string();
  (void)hnf::fuzz::accepts(file, [&] { read_every_tensor(hnf::proofs::SafetensorsFile::open(path)); });
  (void)hnf::fuzz::accepts(file, [&] {
    const auto trace = hnf::analysis::Trace::open(path);
    read_every_tensor(trace.file());
    if (trace.query_positions().size() != static_cast<std::size_t>(trace.shape().num_queries)) {
      hnf::fuzz::finding("query_positions does not match the shape", file);
    }
  });
  return 0;
}
