// hnf-verify subcommands. Each register_* adds its subcommand to the app; the subcommand's
// callback runs the command and stores its exit code in *exit_code. Library errors
// (proofs::Error) propagate to main(), which prints them and maps them to exit codes.
#pragma once

#include <CLI/CLI.hpp>

namespace hnf::verify::cli {

void register_inspect(CLI::App& app, int* exit_code);
void register_synth_trace(CLI::App& app, int* exit_code);
void register_attention(CLI::App& app, int* exit_code);
void register_tokenize(CLI::App& app, int* exit_code);
void register_trace(CLI::App& app, int* exit_code);
void register_eval(CLI::App& app, int* exit_code);
void register_analyze(CLI::App& app, int* exit_code);
void register_check(CLI::App& app, int* exit_code);
void register_keygen(CLI::App& app, int* exit_code);
void register_report(CLI::App& app, int* exit_code);
void register_gate(CLI::App& app, int* exit_code);
void register_bench(CLI::App& app, int* exit_code);
#ifdef HNF_HAVE_Z3
void register_certify(CLI::App& app, int* exit_code);
#endif

}  // namespace hnf::verify::cli
