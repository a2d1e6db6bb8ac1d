// Build without CUDA: the decode API exists, and constructing it says why it cannot run.
#include "hnf/proofs/error.h"
#include "hnf/runtime/cuda_decode.h"

namespace hnf::runtime {

bool cuda_decode_compiled() noexcept { return false; }

struct CudaLayerStreams::Impl {};

namespace {
[[noreturn]] void no_cuda() {
  throw proofs::Error(proofs::ErrorKind::kBadInput, "cuda: this build has no CUDA support");
}
}  // namespace

CudaLayerStreams::CudaLayerStreams(const StreamView*, int) { no_cuda(); }
CudaLayerStreams::~CudaLayerStreams() = default;
CudaLayerStreams::CudaLayerStreams(CudaLayerStreams&&) noexcept = default;
CudaLayerStreams& CudaLayerStreams::operator=(CudaLayerStreams&&) noexcept = default;
// Unreachable (no object can be constructed), defined for the linker.
void CudaLayerStreams::decode(std::int64_t, const float*, int, float, float*) { no_cuda(); }
double CudaLayerStreams::last_kernel_ms() const { return 0.0; }
std::size_t CudaLayerStreams::device_page_bytes() const { return 0; }
std::int64_t CudaLayerStreams::positions() const { return 0; }
void CudaLayerStreams::set_tiles_per_chunk(int) {}

}  // namespace hnf::runtime
