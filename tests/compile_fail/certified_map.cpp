// Compile-fail test (fmt style): built twice by ctest. Without HNF_FORBIDDEN it must compile
// (the control: the checker is the way to a CertifiedPrecisionMap); with -DHNF_FORBIDDEN=N it
// must NOT compile, because each variant makes a CertifiedPrecisionMap without the checker.
#include <optional>

#include "hnf/proofs/certificate.h"

int main() {
#if !defined(HNF_FORBIDDEN)
  const hnf::proofs::CheckReport report = hnf::proofs::check_certificate_text("{}", "c.json", {}, "hnf-verify");
  const std::optional<hnf::proofs::CertifiedPrecisionMap>& map = report.certified;
  return map.has_value() ? 0 : 1;
#elif HNF_FORBIDDEN == 1
  hnf::proofs::CertifiedPrecisionMap forged;  // the constructor is private
  return forged.map().layers > 0;
#elif HNF_FORBIDDEN == 2
  std::optional<hnf::proofs::CertifiedPrecisionMap> forged(std::in_place);  // still the private constructor
  return forged.has_value();
#elif HNF_FORBIDDEN == 3
  hnf::proofs::PrecisionMap plain;
  hnf::proofs::CertifiedPrecisionMap forged = plain;  // no conversion from a plain map
  return forged.map().layers > 0;
#endif
}
