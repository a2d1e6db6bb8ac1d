// The exact checker's command-line options, shared by check, report, gate and eval --cache:
// --model and --trace (their files' hashes are compared), --recompute (the witnesses re-derived
// from the trace), --attestation and --public-key (the witnesses attested instead: serving needs
// no trace), --unattested (the named opt-out); and the exit code of a verdict.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "hnf/proofs/certificate.h"

namespace hnf::verify::cli {

struct CheckerArgs {
  std::string model_dir;
  std::string trace;
  bool recompute = false;
  std::vector<std::string> attestations;  // attestation files; each certificate uses the one of its claim hash
  std::string public_key;                 // the operator's public key the attestations must verify under
  bool unattested = false;                // go on without verified witnesses (recorded and printed)
};

// Adds --model, --trace and --recompute to `cmd`, stored in `args`.
void add_checker_options(CLI::App* cmd, CheckerArgs& args);
// Adds --attestation, --public-key (default: $HNF_PUBLIC_KEY) and, when `opt_out`, --unattested.
void add_witness_options(CLI::App* cmd, CheckerArgs& args, bool opt_out);
// The checker's options for `args`; bad input when --recompute is given without --trace, or
// --attestation without --public-key.
[[nodiscard]] proofs::CheckOptions checker_options(const CheckerArgs& args);
// `options` with the attestation (of `args.attestations`) whose claim hash is the certificate's
// in `certificate_text`; unchanged when none matches (the check then reports no attestation).
[[nodiscard]] proofs::CheckOptions with_attestation_for(proofs::CheckOptions options, const CheckerArgs& args,
                                                        const std::string& certificate_text, const std::string& file);

// What a valid check compared, for the output of check, report, gate and eval: "model compared,
// trace not compared, witnesses attested (key 0123abcd...)".
[[nodiscard]] std::string compared_summary(const proofs::CheckReport& report, const CheckerArgs& args);
// Bad input naming `file` unless the witnesses were re-derived or attested, or --unattested was given.
void require_verified_witnesses(const proofs::CheckReport& report, const CheckerArgs& args, const std::string& file);

// The exit code of a valid certificate's verdict (certify, check, report): 0 certified,
// 1 refuted, 2 unknown.
[[nodiscard]] int exit_code_for_verdict(const std::string& verdict);

}  // namespace hnf::verify::cli
