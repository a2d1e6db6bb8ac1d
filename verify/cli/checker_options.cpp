#include "checker_options.h"

#include "hnf/analysis/witnesses.h"
#include "hnf/proofs/error.h"

namespace hnf::verify::cli {

void add_checker_options(CLI::App* cmd, CheckerArgs& args) {
  cmd->add_option("--model", args.model_dir, "Model directory: its model.safetensors must have the certified hash");
  cmd->add_option("--trace", args.trace, "Trace file: must have the certified hash");
  cmd->add_flag("--recompute", args.recompute,
                "Also re-run the analysis on --trace with the certificate's map and scope (and the composition "
                "constants from --model): every witness must be at least its recomputed value");
}

proofs::CheckOptions checker_options(const CheckerArgs& args) {
  if (args.recompute && args.trace.empty()) throw proofs::bad_input("--recompute", "needs --trace");
  proofs::CheckOptions options;
  if (!args.model_dir.empty()) options.model_dir = args.model_dir;
  if (!args.trace.empty()) options.trace = args.trace;
  if (args.recompute) {
    options.recompute = [trace = args.trace, model = options.model_dir](const proofs::Certificate& c) {
      return analysis::recompute_witnesses(c, trace, model);
    };
  }
  return options;
}

int exit_code_for_verdict(const std::string& verdict) {
  if (verdict == "certified") return static_cast<int>(proofs::ExitCode::kSuccess);
  if (verdict == "refuted") return static_cast<int>(proofs::ExitCode::kRefuted);
  return static_cast<int>(proofs::ExitCode::kUnknown);
}

}  // namespace hnf::verify::cli
