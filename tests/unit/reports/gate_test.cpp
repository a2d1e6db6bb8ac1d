// The release gate: policy parsing, each rule at its boundary, exit codes, JUnit XML.
#include <doctest/doctest.h>

#include <string>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/reports/gate.h"
#include "tiny_certificate.h"

using namespace hnf::reports;
using hnf::proofs::Certificate;
using hnf::proofs::Verdict;

namespace {

constexpr const char* kTool = "hnf-verify 0.5.0";

Certificate versioned(Certificate c) {
  c.tool_version = kTool;
  return c;
}

// The check as with --recompute: the witnesses re-derived (a stub standing for the analysis), so
// the witnesses rule passes; `rederive` false leaves them unverified.
CertificateGate run(const std::string& policy, const Certificate& c, bool rederive = true) {
  hnf::proofs::CheckOptions options;
  if (rederive) options.recompute = [](const Certificate&) { return hnf::proofs::WitnessCheck{5, {}}; };
  const auto check = hnf::proofs::check_certificate_text(hnf::proofs::certificate_to_json(c), "cert.json", options, kTool);
  return gate_certificate(parse_policy(policy, "policy.json"), "cert.json", c, check, kTool);
}

RuleStatus status_of(const CertificateGate& g, const std::string& rule) {
  for (const auto& r : g.rules) {
    if (r.rule == rule) return r.status;
  }
  FAIL("no rule ", rule);
  return RuleStatus::kUnknown;
}

std::string message_of(const CertificateGate& g, const std::string& rule) {
  for (const auto& r : g.rules) {
    if (r.rule == rule) return r.message;
  }
  return "";
}

}  // namespace

TEST_CASE("decimals become exact rationals") {
  CHECK(decimal_rational("0.05") == "5/100");
  CHECK(decimal_rational("1e-3") == "1/1000");
  CHECK(decimal_rational("2") == "2");
  CHECK(decimal_rational("2.50") == "250/100");
  CHECK(decimal_rational("-0.5") == "-5/10");
  CHECK(decimal_rational("1.5E+2") == "150");
  CHECK(decimal_rational("0.000") == "0");
  for (const char* bad : {"", "abc", "1e", ".", "1.2.3", "0x10", "1e500", " 1", "1 "}) CHECK_FALSE(decimal_rational(bad).has_value());
}

TEST_CASE("policies are strict: unknown settings, wrong types and bad values are bad input naming the file") {
  const Policy p = parse_policy(R"({"max_eps": 0.05, "min_compression": 2, "required_scope": {"model": true, "min_tokens": 16},
                                    "allowed_formats": ["fp16", "int4-d32"], "min_tool_version": "0.5.0"})",
                                "p.json");
  CHECK(p.max_eps == "5/100");
  CHECK(p.max_eps_text == "0.05");
  CHECK(p.require_model);
  CHECK_FALSE(p.require_composition);
  CHECK(p.min_tokens == 16);
  CHECK(p.allowed_formats->size() == 2);
  const auto bad = [](const std::string& text, const std::string& reason) {
    CHECK_THROWS_WITH_AS((void)parse_policy(text, "p.json"), doctest::Contains(reason.c_str()), hnf::proofs::Error);
  };
  bad("{", "p.json: not valid JSON");
  bad("[]", "is not a JSON object");
  bad(R"({"max_epsilon": "0.1"})", "policy.max_epsilon is not a policy setting");
  bad(R"({"max_eps": "-0.1"})", "is not a positive decimal");
  bad(R"({"max_eps": true})", "is not a decimal number or string");
  bad(R"({"min_compression": "2"})", "min_compression is not a positive number");
  bad(R"({"required_scope": {"model": 1}})", "required_scope.model is not true or false");
  bad(R"({"required_scope": {"tokens": 1}})", "required_scope.tokens is not a policy setting");
  bad(R"({"required_scope": {"min_tokens": -1}})", "min_tokens is not a non-negative integer");
  bad(R"({"allowed_formats": ["int5-d32"]})", "not a format name");
  bad(R"({"min_tool_version": "0.5"})", "is not a version X.Y.Z");
}

TEST_CASE("nothing unestablished passes: unverified witnesses, an uncompared model, a rejected certificate") {
  const Certificate c = versioned(hnf::testing::tiny_certificate());
  const auto unverified = run("{}", c, /*rederive=*/false);
  CHECK(status_of(unverified, "witnesses") == RuleStatus::kUnknown);
  CHECK(gate_exit_code({unverified}) == 2);
  // A model hash written but not compared (no --model): unknown, not passed.
  Certificate modelled = c;
  modelled.model_sha256 = std::string(64, 'b');
  CHECK(status_of(run(R"({"required_scope": {"model": true}})", modelled), "required_scope.model") == RuleStatus::kUnknown);
  // A rejected certificate's stated verdict does not pass the verdict rule.
  Certificate lying = c;
  lying.obligations[0].sufficiency[0].bound = "1";  // above the budget, still "proved"
  const auto rejected = run("{}", lying);
  CHECK(status_of(rejected, "checker") == RuleStatus::kFail);
  CHECK(status_of(rejected, "verdict") == RuleStatus::kFail);
  CHECK(status_of(rejected, "witnesses") == RuleStatus::kFail);
  // A recorded composition does not meet "composition": true.
  Certificate recorded = c;
  recorded.obligations[2].verdict = Verdict::kRecorded;
  CHECK(status_of(run(R"({"required_scope": {"composition": true}})", recorded), "required_scope.composition") ==
        RuleStatus::kFail);
}

TEST_CASE("every rule passes on a certificate that meets the policy, and fails just past its boundary") {
  const Certificate c = versioned(hnf::testing::tiny_certificate());
  const auto pass = run(R"({"max_eps": "0.05", "min_compression": 1.6, "required_scope": {"composition": true,
                              "min_tokens": 32, "min_s1_queries": 2}, "allowed_formats": ["fp16", "int4-d32", "int8-d32"],
                              "min_tool_version": "0.5.0"})",
                        c);
  CHECK(pass.status() == RuleStatus::kPass);
  CHECK(gate_exit_code({pass}) == 0);
  CHECK(pass.rules.size() == 10);  // checker, verdict, witnesses and 7 policy rules
  CHECK(status_of(pass, "witnesses") == RuleStatus::kPass);

  // eps = 1/20 exactly: 0.05 passes, anything below fails (compared as rationals, not doubles).
  CHECK(status_of(run(R"({"max_eps": "0.0499999999999999999999"})", c), "max_eps") == RuleStatus::kFail);
  CHECK(status_of(run(R"({"min_compression": 1.65})", c), "min_compression") == RuleStatus::kFail);  // 16/9.75 = 1.641
  CHECK(status_of(run(R"({"required_scope": {"model": true}})", c), "required_scope.model") == RuleStatus::kFail);
  CHECK(status_of(run(R"({"required_scope": {"min_tokens": 33}})", c), "required_scope.min_tokens") == RuleStatus::kFail);
  CHECK(status_of(run(R"({"required_scope": {"min_s1_queries": 3}})", c), "required_scope.min_s1_queries") == RuleStatus::kFail);
  const auto formats = run(R"({"allowed_formats": ["int4-d32", "int8-d32"]})", c);
  CHECK(status_of(formats, "allowed_formats") == RuleStatus::kFail);
  CHECK(message_of(formats, "allowed_formats").find("fp16") != std::string::npos);
  CHECK(status_of(run(R"({"min_tool_version": "0.4.9"})", c), "min_tool_version") == RuleStatus::kPass);
  CHECK(status_of(run(R"({"min_tool_version": "0.10.0"})", c), "min_tool_version") == RuleStatus::kFail);  // numeric, not text order
  CHECK(gate_exit_code({run(R"({"max_eps": "0.01"})", c)}) == 1);

  Certificate no_composition = c;
  no_composition.obligations.pop_back();
  const auto comp = run(R"({"required_scope": {"composition": true}})", no_composition);
  CHECK(status_of(comp, "required_scope.composition") == RuleStatus::kFail);
}

TEST_CASE("verdicts: unknown gives exit 2, refuted and rejected give exit 1, and a failure outranks an unknown") {
  Certificate unknown = versioned(hnf::testing::tiny_certificate());
  unknown.obligations[0].verdict = Verdict::kTimeout;
  unknown.obligations[0].detail = "timeout after 10000 ms";
  unknown.verdict = "unknown";
  const auto u = run("{}", unknown);
  REQUIRE(status_of(u, "checker") == RuleStatus::kPass);
  CHECK(status_of(u, "verdict") == RuleStatus::kUnknown);
  CHECK(gate_exit_code({u}) == 2);

  Certificate refuted = versioned(hnf::testing::tiny_certificate());
  refuted.obligations[0].sufficiency[3].bound = "1/10";
  refuted.obligations[0].verdict = Verdict::kRefuted;
  refuted.verdict = "refuted";
  const auto r = run("{}", refuted);
  CHECK(status_of(r, "checker") == RuleStatus::kPass);
  CHECK(status_of(r, "verdict") == RuleStatus::kFail);
  CHECK(gate_exit_code({r}) == 1);
  CHECK(gate_exit_code({u, r}) == 1);

  Certificate rejected = versioned(hnf::testing::tiny_certificate());
  rejected.bits_per_element = 3.0;  // the checker recomputes it
  const auto x = run("{}", rejected);
  CHECK(status_of(x, "checker") == RuleStatus::kFail);
  CHECK(gate_exit_code({x}) == 1);
}

TEST_CASE("JUnit XML counts every rule and escapes messages, the summary names the failed rule") {
  const Certificate c = versioned(hnf::testing::tiny_certificate());
  const auto fail = run(R"({"max_eps": "0.01"})", c);
  const auto pass = run("{}", c);
  const std::string xml = gate_junit_xml({fail, pass}, "policy & co.json");
  CHECK(xml.find("<testsuites name=\"hnf-verify gate\" tests=\"7\" failures=\"1\" errors=\"0\"") != std::string::npos);
  CHECK(xml.find("<testsuite name=\"cert.json\" id=\"0\" tests=\"4\" failures=\"1\" errors=\"0\"") != std::string::npos);
  CHECK(xml.find("<failure message=\"epsilon 1/20 exceeds the policy&#39;s max_eps 0.01\" type=\"policy\">") != std::string::npos);
  CHECK(xml.find("value=\"policy &amp; co.json\"") != std::string::npos);
  const std::string md = gate_summary_markdown({fail, pass}, "policy.json");
  CHECK(md.find("## hnf-verify gate: FAIL") != std::string::npos);
  CHECK(md.find("| `cert.json` | max_eps | fail | epsilon 1/20 exceeds the policy's max_eps 0.01 |") != std::string::npos);
}
