// Build without CUDA: no device, by construction.
#include "hnf/runtime/cuda_device.h"

namespace hnf::runtime {
bool cuda_compiled() noexcept { return false; }
int cuda_device_count() noexcept { return 0; }
std::string cuda_device_description(int) { return {}; }
double cuda_saxpy_self_test(int) { return -1.0; }
}  // namespace hnf::runtime
