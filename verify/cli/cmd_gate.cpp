// hnf-verify gate: a release policy over certificates (docs/ci-gate.md). Exit 0 pass, 1 fail,
// 2 unknown, 3 bad input; JUnit XML and a Markdown summary for the CI job.
#include <cstdio>
#include <memory>
#include <utility>
#include <vector>

#include "checker_options.h"
#include "commands.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"
#include "hnf/proofs/write_file.h"
#include "hnf/reports/gate.h"
#include "hnf/runtime/model_dir.h"
#include "interrupt.h"

namespace hnf::verify::cli {
namespace {

struct GateCommandOptions {
  std::string policy;
  std::vector<std::string> certificates;
  CheckerArgs checker;  // --model, --trace, --attestation, --public-key
  std::string junit;
  std::string summary;
};

const char* status_word(reports::RuleStatus s) {
  switch (s) {
    case reports::RuleStatus::kPass: return "pass";
    case reports::RuleStatus::kFail: return "FAIL";
    case reports::RuleStatus::kUnknown: return "UNKNOWN";
  }
  return "UNKNOWN";
}

int run_gate(const GateCommandOptions& o) {
  const std::string tool = "hnf-verify " HNF_VERSION;
  // The checker has no cancellation point here: a signal ends the command at once until the
  // JUnit XML and summary are written.
  InterruptGuard interrupt_guard(OnInterrupt::kExitAtOnce);
  // Everything is read and checked before anything is written: bad input leaves no file.
  const reports::Policy policy = reports::parse_policy(proofs::read_regular_file(o.policy, proofs::kMaxSmallJsonBytes, "a gate policy"), o.policy);
  const proofs::CheckOptions options = checker_options(o.checker);
  std::vector<reports::CertificateGate> gates;
  std::vector<std::string> compared;  // [certificates] what the checker compared
  for (const auto& file : o.certificates) {
    const std::string text = proofs::read_certificate_text(file);
    const proofs::Certificate c = proofs::certificate_from_json(text, file);
    const proofs::CheckReport check =
        proofs::check_certificate_text(text, file, with_attestation_for(options, o.checker, text, file), tool);
    gates.push_back(reports::gate_certificate(policy, file, c, check, tool));
    compared.push_back(check.problems.empty() ? compared_summary(check, o.checker) : "rejected by the checker");
  }
  std::vector<std::pair<std::string, std::string>> files;
  if (!o.junit.empty()) files.emplace_back(o.junit, reports::gate_junit_xml(gates, o.policy));
  if (!o.summary.empty()) files.emplace_back(o.summary, reports::gate_summary_markdown(gates, o.policy));
  interrupt_guard.outputs_follow();
  proofs::write_texts_atomically(files);
  for (std::size_t i = 0; i < gates.size(); ++i) {
    const auto& g = gates[i];
    std::printf("%s: %s (%s)\n", g.file.c_str(), status_word(g.status()), compared[i].c_str());
    for (const auto& r : g.rules) std::printf("  %-30s %-7s %s\n", r.rule.c_str(), status_word(r.status), r.message.c_str());
  }
  const int code = reports::gate_exit_code(gates);
  static const char* kOverall[] = {"PASS", "FAIL", "UNKNOWN"};
  std::printf("gate %s: %s (%zu certificate%s)\n", o.policy.c_str(), kOverall[code], gates.size(), gates.size() == 1 ? "" : "s");
  return code;
}

}  // namespace

void register_gate(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<GateCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "gate",
      "Release gate: check certificates against a policy (max epsilon, min compression, required scope, allowed "
      "formats, min tool version). Exit 0 pass, 1 fail, 2 unknown, 3 bad input (docs/ci-gate.md)");
  cmd->add_option("--policy", o->policy, "Policy file (JSON; docs/ci-gate.md)")->required();
  cmd->add_option("certificates", o->certificates, "Certificates (JSON)")->required();
  cmd->add_option("--model", o->checker.model_dir, "Model directory: the checker compares each certificate's model hash");
  cmd->add_option("--trace", o->checker.trace, "Trace file: the checker compares each certificate's trace hash");
  add_witness_options(cmd, o->checker, /*opt_out=*/false);
  cmd->add_option("--junit", o->junit, "Write JUnit XML here (one testcase per certificate and rule)");
  cmd->add_option("--summary", o->summary, "Write a Markdown summary here (for a CI job summary)");
  cmd->callback([o, exit_code] { *exit_code = run_gate(*o); });
}

}  // namespace hnf::verify::cli
