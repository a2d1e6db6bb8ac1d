// The exact checker's command-line options, shared by check and report (gate takes --model and
// --trace only): --model and --trace (their files' hashes are compared) and --recompute (the
// witnesses re-derived from the trace); and the exit code of a verdict.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "hnf/proofs/certificate.h"

namespace hnf::verify::cli {

struct CheckerArgs {
  std::string model_dir;
  std::string trace;
  bool recompute = false;
};

// Adds --model, --trace and --recompute to `cmd`, stored in `args`.
void add_checker_options(CLI::App* cmd, CheckerArgs& args);
// The checker's options for `args`; bad input when --recompute is given without --trace.
[[nodiscard]] proofs::CheckOptions checker_options(const CheckerArgs& args);

// The exit code of a valid certificate's verdict (certify, check, report): 0 certified,
// 1 refuted, 2 unknown.
[[nodiscard]] int exit_code_for_verdict(const std::string& verdict);

}  // namespace hnf::verify::cli
