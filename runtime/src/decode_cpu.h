// Private to runtime/ and its tests: the code paths of decode_attention_cpu, callable one by
// one so that the parity tests check each one the CPU has (decode_attention_cpu itself always
// takes the fastest path the CPU supports for the stream's head_dim). Tests include this header by a
// relative path (it is not installed and not on any include path).
#pragma once

#include <cstdint>

#include "hnf/runtime/kv_pages.h"

namespace hnf::runtime::detail {

enum class CpuDecodePath : std::uint8_t {
  kPortable,  // plain C++: one page dequantized into a thread-local tile, then fp32 loops
  kAvx2,      // AVX2/FMA/F16C intrinsics, pages decoded in registers; needs cpu_decode_uses_avx2()
  kAvx512,    // the same kernels with 16-float AVX-512 (F/BW/VL/DQ) vectors
};

// Whether this CPU runs `path` for streams of this head_dim (kPortable: always; kAvx2: AVX2/
// FMA/F16C and head_dim % 8 == 0; kAvx512: AVX-512 F/BW/VL/DQ too and head_dim % 16 == 0).
bool cpu_decode_path_supported(CpuDecodePath path, int head_dim) noexcept;

// decode_attention_cpu on the given path (same contract; no scratch is needed).
// q [group, head_dim], out [group, head_dim]. Asking for a path that
// cpu_decode_path_supported denies is an internal error.
void decode_attention_cpu_path(CpuDecodePath path, const StreamView& stream, std::int64_t positions, const float* q,
                               int group, float scale, float* out);

}  // namespace hnf::runtime::detail
