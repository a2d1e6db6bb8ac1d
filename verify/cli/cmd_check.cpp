// hnf-verify check: the exact checker (proofs/, no Z3) on a certificate, optionally against
// the model and trace files it names by hash, and with --recompute the analysis re-deriving
// its witnesses (the checker alone takes them as given: THEORY.md section 12).
#include <cstdio>
#include <memory>

#include "commands.h"
#include "hnf/analysis/witnesses.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"

namespace hnf::verify::cli {
namespace {

struct CheckCommandOptions {
  std::string certificate;
  std::string model_dir;
  std::string trace;
  bool recompute = false;
};

int run_check(const CheckCommandOptions& o) {
  proofs::CheckOptions options;
  if (!o.model_dir.empty()) options.model_dir = o.model_dir;
  if (!o.trace.empty()) options.trace = o.trace;
  if (o.recompute) {
    options.recompute = [&o, &options](const proofs::Certificate& c) {
      return analysis::recompute_witnesses(c, o.trace, options.model_dir);
    };
  }
  const auto report = proofs::check_certificate(o.certificate, options, "hnf-verify " HNF_VERSION);
  if (!report.problems.empty()) {
    const std::size_t more = report.problems.size() - 1;
    std::fprintf(stderr, "%s: rejected: %s%s\n", o.certificate.c_str(), report.problems.front().c_str(),
                 more > 0 ? (" (and " + std::to_string(more) + " more problems)").c_str() : "");
    return static_cast<int>(proofs::ExitCode::kBadInput);
  }
  std::printf("%s: valid, verdict %s; %zu inequalities re-validated with exact rationals\n", o.certificate.c_str(),
              report.verdict.c_str(), report.inequalities);
  if (options.model_dir) std::printf("model        %s matches\n", o.model_dir.c_str());
  if (options.trace) std::printf("trace        %s matches\n", o.trace.c_str());
  if (o.recompute) {
    std::printf("recomputed   %zu witnesses from the trace%s: none is below (or, for radii, beyond) its recomputed value\n",
                report.witnesses_compared, options.model_dir ? " and model" : "");
  }
  for (const auto& note : report.notes) std::printf("note         %s\n", note.c_str());
  if (report.verdict == "certified") return static_cast<int>(proofs::ExitCode::kSuccess);
  if (report.verdict == "refuted") return static_cast<int>(proofs::ExitCode::kRefuted);
  return static_cast<int>(proofs::ExitCode::kUnknown);
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
  cmd->add_option("--model", o->model_dir, "Model directory: its model.safetensors must have the certified hash");
  cmd->add_option("--trace", o->trace, "Trace file: must have the certified hash");
  cmd->add_flag("--recompute", o->recompute,
                "Also re-run the analysis on --trace with the certificate's map and scope (and the composition "
                "constants from --model): every witness must be at least its recomputed value");
  cmd->callback([o, exit_code] {
    if (o->recompute && o->trace.empty()) throw proofs::bad_input("--recompute", "needs --trace");
    *exit_code = run_check(*o);
  });
}

}  // namespace hnf::verify::cli
