// The two fp32 matrix products of the runtime, on OpenBLAS (private to hnf::runtime: no public
// header includes cblas.h). Row-major throughout. A single-row left operand goes to sgemv:
// OpenBLAS 0.3.21 does not forward M == 1 to it, and decode is all single-row products.
#pragma once

#include <cblas.h>

#include <cstdint>
#include <limits>

#include "hnf/proofs/error.h"

namespace hnf::runtime::blas {

[[nodiscard]] inline blasint dim(std::int64_t n) {
  HNF_ASSERT(n >= 0 && n <= std::numeric_limits<blasint>::max(), "matrix dimension exceeds the BLAS integer");
  return static_cast<blasint>(n);
}

// c [m, n] = alpha * a [m, k] . b [n, k]^T (rows of b are the output features, as in a
// Hugging Face weight [out, in]); lda, ldb, ldc are the row strides.
inline void gemm_nt(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
                    const float* b, std::int64_t ldb, float* c, std::int64_t ldc) {
  if (m == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, dim(n), dim(k), alpha, b, dim(ldb), a, 1, 0.0f, c, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, dim(m), dim(n), dim(k), alpha, a, dim(lda), b, dim(ldb), 0.0f,
                c, dim(ldc));
  }
}

// c [m, n] = a [m, k] . b [k, n]; lda, ldb, ldc are the row strides.
inline void gemm_nn(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
                    std::int64_t ldb, float* c, std::int64_t ldc) {
  if (m == 1) {
    cblas_sgemv(CblasRowMajor, CblasTrans, dim(k), dim(n), 1.0f, b, dim(ldb), a, 1, 0.0f, c, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dim(m), dim(n), dim(k), 1.0f, a, dim(lda), b, dim(ldb),
                0.0f, c, dim(ldc));
  }
}

}  // namespace hnf::runtime::blas
