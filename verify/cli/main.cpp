// hnf-verify: the command-line front end. Exit codes (docs/interfaces.md):
// 0 success/certified, 1 refuted, 2 unknown or timeout, 3 bad input or usage, 4 internal error,
// 5 an output could not be written, 130 / 143 stopped by SIGINT / SIGTERM.
#include <cstdio>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <exception>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "hnf/proofs/error.h"
#include "interrupt.h"

#ifndef HNF_VERSION
#error "HNF_VERSION must be defined by the build"
#endif

namespace {

constexpr int code(hnf::proofs::ExitCode c) { return static_cast<int>(c); }

int run(int argc, char** argv) {
  CLI::App app{"hnf-verify: certify and inspect quantized transformer KV caches"};
  app.set_version_flag("--version", "hnf-verify " HNF_VERSION);
  app.require_subcommand(1);
  int exit_code = code(hnf::proofs::ExitCode::kSuccess);
  hnf::verify::cli::register_inspect(app, &exit_code);
  hnf::verify::cli::register_synth_trace(app, &exit_code);
  hnf::verify::cli::register_attention(app, &exit_code);
  hnf::verify::cli::register_tokenize(app, &exit_code);
  hnf::verify::cli::register_trace(app, &exit_code);
  hnf::verify::cli::register_eval(app, &exit_code);
  hnf::verify::cli::register_analyze(app, &exit_code);
#ifdef HNF_HAVE_Z3
  hnf::verify::cli::register_certify(app, &exit_code);
#else
  // Listed in --help so a user of a build without Z3 learns why it is missing.
  app.add_subcommand("certify", "Not in this build: certify needs Z3 (configure with -DHNF_ENABLE_Z3=ON)")
      ->allow_extras()
      ->callback([] { throw hnf::proofs::bad_input("certify", "this hnf-verify was built without Z3 (-DHNF_ENABLE_Z3=OFF)"); });
#endif
  hnf::verify::cli::register_check(app, &exit_code);
  hnf::verify::cli::register_keygen(app, &exit_code);
  hnf::verify::cli::register_report(app, &exit_code);
  hnf::verify::cli::register_gate(app, &exit_code);
  hnf::verify::cli::register_bench(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "hnf-verify: %s (see --help)\n", e.what());
    return code(hnf::proofs::ExitCode::kBadInput);
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Arrays of 1 MiB and more are mapped and unmapped, never kept in the heap. glibc otherwise
  // raises its mmap threshold whenever a large mapped block is freed, so the next head of an
  // analysis gets its arrays from the heap and the freed ones are not returned: measured, the
  // resident set grew by 270 bytes per token and kv head of a 128K-token trace.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  hnf::verify::cli::ignore_file_size_signal();
  hnf::verify::cli::install_mapped_file_fault_handler();
  try {
    const int exit_code = run(argc, argv);
    if (const int s = hnf::verify::cli::received_signal(); s != 0) {
      // The signal came after the command's last cancellation point: it ran to the end.
      std::fprintf(stderr, "hnf-verify: %s arrived after the outputs were complete; finished normally\n",
                   s == SIGINT ? "SIGINT" : "SIGTERM");
    }
    return exit_code;
  } catch (const hnf::verify::cli::Interrupted& e) {
    // Stopped at a cancellation point; the writers' destructors removed their partial files.
    std::fprintf(stderr, "hnf-verify: %s\n", e.what());
    return e.exit_code();
  } catch (const hnf::proofs::Error& e) {
    std::fprintf(stderr, "hnf-verify: %s\n", e.what());
    return static_cast<int>(e.exit_code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hnf-verify: internal error: %s\n", e.what());
    return code(hnf::proofs::ExitCode::kInternal);
  }
}
