// What CUDA devices this process can use. Always declared; in a build without CUDA the
// functions report no device, so callers need no #ifdefs.
#pragma once

#include <string>

namespace hnf::runtime {

// True when this build contains the CUDA kernels (HNF_ENABLE_CUDA found nvcc).
[[nodiscard]] bool cuda_compiled() noexcept;
// Number of usable CUDA devices; 0 without a driver, a device, or CUDA support in the build.
[[nodiscard]] int cuda_device_count() noexcept;
// "NVIDIA H200 (sm_90, 139 GiB)" for device `index`; empty when it does not exist.
[[nodiscard]] std::string cuda_device_description(int index);
// Runs a kernel computing y[i] = a * x[i] + y[i] for i < n on device 0 and returns the largest
// |difference| from the same computation on the host (0 for a working device); -1 when no
// device is present. A smoke test of the whole toolchain: compile, launch, copy back.
[[nodiscard]] double cuda_saxpy_self_test(int n);

}  // namespace hnf::runtime
