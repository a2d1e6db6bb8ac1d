// Fuzz target "certificate_resealed": like "certificate", but every input that is a JSON object
// first gets its certificate_sha256 recomputed (proofs::reseal_certificate_json), as a forger
// would, so mutations of the content reach the checker's rules and the report instead of
// stopping at the hash check.
#include <cstddef>
#include <cstdint>
#include <string>

#include "certificate_check.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = "fuzz-certificate.json";
  std::string resealed;
  if (!hnf::fuzz::accepts(file, [&] { resealed = hnf::proofs::reseal_certificate_json(hnf::fuzz::as_text(data, size), file); })) {
    return 0;
  }
  (void)hnf::fuzz::accepts(file, [&] { hnf::fuzz::check_and_report(resealed, file); });
  return 0;
}
