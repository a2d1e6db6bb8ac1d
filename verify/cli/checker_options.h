// The exact checker's command-line options, shared by check and report: --model and --trace
// (their files' hashes are compared) and --recompute (the witnesses re-derived from the trace).
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

}  // namespace hnf::verify::cli
