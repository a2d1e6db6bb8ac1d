#include "hnf/analysis/tensor_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "hnf/analysis/trace.h"

namespace hnf::analysis {
namespace {

constexpr std::uint64_t kChunkBytes = 16u << 20;

double load_as_double(proofs::Dtype dtype, const std::byte* data, std::uint64_t i) noexcept {
  using proofs::Dtype;
  switch (dtype) {
    case Dtype::kF32:
    case Dtype::kF16:
    case Dtype::kBF16:
      return proofs::load_float(dtype, data, i);
    case Dtype::kI8:
      return static_cast<double>(static_cast<std::int8_t>(data[i]));
    case Dtype::kU8:
      return static_cast<double>(static_cast<std::uint8_t>(data[i]));
    case Dtype::kI32: {
      std::int32_t v;
      std::memcpy(&v, data + 4 * i, 4);
      return v;
    }
    case Dtype::kI64: {
      std::int64_t v;
      std::memcpy(&v, data + 8 * i, 8);
      return static_cast<double>(v);
    }
  }
  return 0.0;
}

}  // namespace

TensorStats compute_stats(const proofs::SafetensorsFile& file, const proofs::TensorInfo& tensor,
                          const std::function<void(std::uint64_t)>& on_bytes) {
  TensorStats stats;
  stats.numel = tensor.numel();
  const std::size_t element = proofs::dtype_size(tensor.dtype);
  const auto bytes = file.bytes(tensor);
  const std::uint64_t chunk_elements = kChunkBytes / element;
  double sum = 0.0;
  double lo = std::numeric_limits<double>::infinity();
  double hi = 0.0;
  for (std::uint64_t first = 0; first < stats.numel; first += chunk_elements) {
    const std::uint64_t last = std::min(stats.numel, first + chunk_elements);
    for (std::uint64_t i = first; i < last; ++i) {
      const double x = load_as_double(tensor.dtype, bytes.data(), i);
      if (std::isnan(x)) {
        ++stats.nan_count;
      } else if (std::isinf(x)) {
        ++stats.inf_count;
      } else {
        const double a = std::fabs(x);
        sum += a;
        lo = std::min(lo, a);
        hi = std::max(hi, a);
        ++stats.finite_count;
      }
    }
    file.release(tensor, first * element, (last - first) * element);
    if (on_bytes) on_bytes(last * element);
  }
  if (stats.finite_count > 0) {
    stats.min_abs = lo;
    stats.max_abs = hi;
    stats.mean_abs = sum / static_cast<double>(stats.finite_count);
  }
  return stats;
}

}  // namespace hnf::analysis
