// Private to runtime/ and its tests: the two code paths of decode_attention_cpu, callable
// one by one so that the parity tests check both on a CPU that has AVX2 (decode_attention_cpu
// itself always takes the fastest path the CPU supports). Tests include this header by a
// relative path (it is not installed and not on any include path).
#pragma once

#include <cstdint>

#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime::detail {

enum class CpuDecodePath : std::uint8_t {
  kPortable,  // plain C++: one page dequantized into a thread-local tile, then fp32 loops
  kAvx2,      // AVX2/FMA/F16C intrinsics, pages decoded in registers; needs cpu_decode_uses_avx2()
};

// decode_attention_cpu on the given path (same contract; no scratch is needed).
// q [group, head_dim], out [group, head_dim]. Asking for kAvx2 on a CPU without AVX2/FMA/F16C,
// or on a stream whose head_dim is not a multiple of 8, is an internal error.
void decode_attention_cpu_path(CpuDecodePath path, const StreamView& stream, std::int64_t positions, const float* q,
                               int group, float scale, float* out);

}  // namespace hnf::runtime::detail
