// GPU smoke test: exits 77 (ctest SKIP_RETURN_CODE) where no CUDA device or no CUDA build.
#include <cstdio>

#include "hnf/runtime/cuda_device.h"

int main() {
  if (!hnf::runtime::cuda_compiled()) {
    std::puts("SKIP: this build has no CUDA support");
    return 77;
  }
  if (hnf::runtime::cuda_device_count() == 0) {
    std::puts("SKIP: no CUDA device present");
    return 77;
  }
  std::printf("device 0: %s\n", hnf::runtime::cuda_device_description(0).c_str());
  const double worst = hnf::runtime::cuda_saxpy_self_test(1 << 20);
  std::printf("saxpy max |device - host| = %g\n", worst);
  return worst == 0.0 ? 0 : 1;  // fmaf on both sides: bit-identical
}
