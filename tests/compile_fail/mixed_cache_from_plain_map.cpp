// Compile-fail test (fmt style): built twice by ctest. Without HNF_FORBIDDEN it must compile
// (the control: a MixedKvCache is built from the checker's CertifiedPrecisionMap); with
// -DHNF_FORBIDDEN=N it must NOT compile, because each variant builds the cache from a plain
// proofs::PrecisionMap, which never went through the checker.
#include <memory>

#include "hnf/runtime/mixed_kv_cache.h"

int main() {
  const hnf::runtime::KvCacheShape shape{1, 1, 1, 32};
#if !defined(HNF_FORBIDDEN)
  const hnf::proofs::CheckReport report = hnf::proofs::check_certificate_text("{}", "c.json", {}, "hnf-verify");
  if (!report.certified) return 1;
  hnf::runtime::MixedKvCache cache(*report.certified, shape, 16);
  return cache.size() == 0 ? 0 : 1;
#elif HNF_FORBIDDEN == 1
  hnf::proofs::PrecisionMap plain;
  hnf::runtime::MixedKvCache cache(plain, shape, 16);  // no constructor takes a plain map
  return cache.size() == 0 ? 0 : 1;
#elif HNF_FORBIDDEN == 2
  hnf::proofs::PrecisionMap plain;
  auto cache = std::make_unique<hnf::runtime::MixedKvCache>(plain, shape, 16);  // nor through make_unique
  return cache->size() == 0 ? 0 : 1;
#elif HNF_FORBIDDEN == 3
  hnf::proofs::PrecisionMap plain;
  hnf::runtime::MixedKvCache cache({plain}, shape, 16);  // no conversion to CertifiedPrecisionMap
  return cache.size() == 0 ? 0 : 1;
#endif
}
