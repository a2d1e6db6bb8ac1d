// Fuzz target "gate_policy": the release gate's policy reader (reports::parse_policy) on
// arbitrary text; a policy it accepts is then applied to a small certificate the checker accepts
// (tests/support/tiny_certificate.h) and rendered as JUnit XML and Markdown, as `gate` does.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "hnf/proofs/certificate.h"
#include "hnf/reports/gate.h"
#include "tiny_certificate.h"

namespace {

struct CheckedCertificate {
  hnf::proofs::Certificate certificate = hnf::testing::tiny_certificate();
  hnf::proofs::CheckReport check = hnf::proofs::check_certificate_text(
      hnf::proofs::certificate_to_json(certificate), "tiny.json", hnf::proofs::CheckOptions{}, hnf::testing::kTool);
};

void gate(const hnf::reports::Policy& policy, const std::string& policy_file) {
  static const CheckedCertificate tiny;
  const std::vector<hnf::reports::CertificateGate> gates{
      hnf::reports::gate_certificate(policy, "tiny.json", tiny.certificate, tiny.check, std::string(hnf::testing::kTool))};
  const int exit_code = hnf::reports::gate_exit_code(gates);
  if (exit_code < 0 || exit_code > 2) hnf::fuzz::finding("gate exit code outside 0..2", policy_file);
  (void)hnf::reports::gate_junit_xml(gates, policy_file);
  (void)hnf::reports::gate_summary_markdown(gates, policy_file);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = "fuzz-policy.json";
  (void)hnf::fuzz::accepts(file, [&] { gate(hnf::reports::parse_policy(std::string(hnf::fuzz::as_text(data, size)), file), file); });
  return 0;
}
