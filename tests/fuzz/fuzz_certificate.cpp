// Fuzz target "certificate": the certificate parser and the exact checker on arbitrary bytes, as
// `check` reads a file, then the audit report on what parses. Most mutations break
// certificate_sha256 and stop at the hash check; fuzz_certificate_resealed.cpp goes past it.
#include <cstddef>
#include <cstdint>

#include "certificate_check.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = "fuzz-certificate.json";
  (void)hnf::fuzz::accepts(file, [&] { hnf::fuzz::check_and_report(hnf::fuzz::as_text(data, size), file); });
  return 0;
}
