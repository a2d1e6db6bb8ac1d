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
#include "hnf/proofs/write_file.h"
#include "hnf/reports/gate.h"
#include "hnf/runtime/model_dir.h"

namespace hnf::verify::cli {
namespace {

struct GateCommandOptions {
  std::string policy;
  std::vector<std::string> certificates;
  std::string model_dir;
  std::string trace;
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
  // Everything is read and checked before anything is written: bad input leaves no file.
  const reports::Policy policy = reports::parse_policy(runtime::read_text_file(o.policy), o.policy);
  const proofs::CheckOptions options = checker_options(CheckerArgs{o.model_dir, o.trace, false});
  std::vector<reports::CertificateGate> gates;
  for (const auto& file : o.certificates) {
    const std::string text = runtime::read_text_file(file);
    const proofs::Certificate c = proofs::certificate_from_json(text, file);
    const proofs::CheckReport check = proofs::check_certificate_text(text, file, options, tool);
    gates.push_back(reports::gate_certificate(policy, file, c, check, tool));
  }
  std::vector<std::pair<std::string, std::string>> files;
  if (!o.junit.empty()) files.emplace_back(o.junit, reports::gate_junit_xml(gates, o.policy));
  if (!o.summary.empty()) files.emplace_back(o.summary, reports::gate_summary_markdown(gates, o.policy));
  proofs::write_texts_atomically(files);
  for (const auto& g : gates) {
    std::printf("%s: %s\n", g.file.c_str(), status_word(g.status()));
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
  cmd->add_option("--model", o->model_dir, "Model directory: the checker compares each certificate's model hash");
  cmd->add_option("--trace", o->trace, "Trace file: the checker compares each certificate's trace hash");
  cmd->add_option("--junit", o->junit, "Write JUnit XML here (one testcase per certificate and rule)");
  cmd->add_option("--summary", o->summary, "Write a Markdown summary here (for a CI job summary)");
  cmd->callback([o, exit_code] { *exit_code = run_gate(*o); });
}

}  // namespace hnf::verify::cli
