// The release gate (docs/ci-gate.md): a policy, certificates, and a verdict per rule, with
// JUnit XML and a Markdown summary for CI. Every rule is decided from the exact checker's
// result and the certificate's exact values (epsilon compared as rationals).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "hnf/proofs/certificate.h"

namespace hnf::reports {

// A policy file (JSON). Every key optional; unknown keys, wrong types or values are bad input.
//   "max_eps": "0.05"             the certificate's epsilon (largest layer budget) <= this
//                                 decimal, compared exactly (a JSON number is taken as the
//                                 decimal it is written as)
//   "min_compression": 2.5        16 / bits per element (metadata included) >= this
//   "required_scope": {           what the certificate must cover:
//       "model": true,            tied to a model file whose hash the checker compared (--model);
//                                 unknown without --model, failed for a synthetic trace ("none")
//       "composition": true,      a proved end-to-end composition obligation (certify --eps-total;
//                                 a recorded composition, without a budget, does not count)
//       "min_tokens": 1024,       the map covers at least this many traced positions
//       "min_s1_queries": 32}     at least this many recorded query positions in S1
//   "allowed_formats": ["fp16", "int8-d64", ...]   every format of the map is one of these
//   "min_tool_version": "0.5.0"   the maximum age of the tool: certificates written by an older
//                                 hnf-verify fail
struct Policy {
  std::optional<std::string> max_eps;  // exact rational of the decimal
  std::string max_eps_text;            // as written
  std::optional<double> min_compression;
  bool require_model = false;
  bool require_composition = false;
  std::optional<std::int64_t> min_tokens;
  std::optional<std::int64_t> min_s1_queries;
  std::optional<std::vector<proofs::Format>> allowed_formats;
  std::optional<std::string> min_tool_version;
};
[[nodiscard]] Policy parse_policy(const std::string& text, const std::string& file);

// The exact rational "p/q" of a finite decimal ("0.05", "1e-3", "2"); nullopt when `text` is
// not one.
[[nodiscard]] std::optional<std::string> decimal_rational(const std::string& text);

enum class RuleStatus { kPass, kFail, kUnknown };

struct RuleResult {
  std::string rule;     // "checker", "verdict", "max_eps", "min_compression", ...
  RuleStatus status = RuleStatus::kPass;
  std::string message;  // what was compared, and why it failed
};

struct CertificateGate {
  std::string file;
  std::vector<RuleResult> rules;
  [[nodiscard]] RuleStatus status() const;  // fail if any rule fails, else unknown if any is, else pass
};

// The rules on one certificate: "checker" (the exact checker accepts it), "verdict" (certified;
// unknown for an unknown verdict; failed whenever the checker rejected the certificate),
// "witnesses" (re-derived or attested; unknown when neither), then every rule the policy sets.
[[nodiscard]] CertificateGate gate_certificate(const Policy& policy, const std::string& file,
                                               const proofs::Certificate& certificate, const proofs::CheckReport& check,
                                               const std::string& tool_version);

// Exit code of the gate: 0 every certificate passes, 1 one fails, 2 none fails but one is unknown.
[[nodiscard]] int gate_exit_code(const std::vector<CertificateGate>& gates);

// JUnit XML: one testsuite per certificate, one testcase per rule (failure for a failed rule,
// error for an unknown one).
[[nodiscard]] std::string gate_junit_xml(const std::vector<CertificateGate>& gates, const std::string& policy_file);
// Markdown for a CI job summary: the overall result and a table of every rule.
[[nodiscard]] std::string gate_summary_markdown(const std::vector<CertificateGate>& gates, const std::string& policy_file);

}  // namespace hnf::reports
