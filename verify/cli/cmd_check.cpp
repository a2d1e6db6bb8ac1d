// hnf-verify check: the exact checker (proofs/, no Z3) on a certificate, optionally against
// the model and trace files it names by hash, and with --recompute the analysis re-deriving
// its witnesses (the checker alone takes them as given: THEORY.md section 12).
#include <cstdio>
#include <memory>

#include "checker_options.h"
#include "commands.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"

namespace hnf::verify::cli {
namespace {

struct CheckCommandOptions {
  std::string certificate;
  CheckerArgs checker;
};

int run_check(const CheckCommandOptions& o) {
  const proofs::CheckOptions options = checker_options(o.checker);
  const auto report = proofs::check_certificate(o.certificate, options, "hnf-verify " HNF_VERSION);
  if (!report.problems.empty()) {
    const std::size_t more = report.problems.size() - 1;
    std::fprintf(stderr, "%s: rejected: %s%s\n", o.certificate.c_str(), report.problems.front().c_str(),
                 more > 0 ? (" (and " + std::to_string(more) + " more problems)").c_str() : "");
    return static_cast<int>(proofs::ExitCode::kBadInput);
  }
  std::printf("%s: valid, verdict %s; %zu inequalities re-validated with exact rationals\n", o.certificate.c_str(),
              report.verdict.c_str(), report.inequalities);
  if (options.model_dir) std::printf("model        %s matches\n", o.checker.model_dir.c_str());
  if (options.trace) std::printf("trace        %s matches\n", o.checker.trace.c_str());
  if (o.checker.recompute) {
    std::printf("recomputed   %zu witnesses from the trace%s: none is below (or, for radii, beyond) its recomputed value\n",
                report.witnesses_compared, options.model_dir ? " and model" : "");
  }
  for (const auto& note : report.notes) std::printf("note         %s\n", note.c_str());
  return exit_code_for_verdict(report.verdict);
}

}  // namespace

void register_check(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<CheckCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Re-validate a certificate with exact rational arithmetic (no solver): its hash, map hash, every "
      "obligation's inequalities and verdicts, and the model and trace hashes when given. Exit 0 certified, "
      "1 refuted, 2 unknown, 3 invalid certificate or bad input");
  cmd->add_option("certificate", o->certificate, "Certificate JSON written by certify")->required();
  add_checker_options(cmd, o->checker);
  cmd->callback([o, exit_code] { *exit_code = run_check(*o); });
}

}  // namespace hnf::verify::cli
