// hnf-verify check: the exact checker (proofs/, no Z3) on a certificate, optionally against
// the model and trace files it names by hash, and with --recompute the analysis re-deriving
// its witnesses (the checker alone takes them as given: THEORY.md section 12). With --sign, a
// check that compared model, trace and witnesses writes an attestation signed with the
// operator's key, which serving verifies instead of re-deriving (docs/certificate.md).
#include <cstdio>
#include <memory>

#include "checker_options.h"
#include "commands.h"
#include "hnf/proofs/attestation.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/write_file.h"
#include "hnf/runtime/model_dir.h"
#include "interrupt.h"

namespace hnf::verify::cli {
namespace {

struct CheckCommandOptions {
  std::string certificate;
  CheckerArgs checker;
  std::string sign_key;         // secret key file: write an attestation
  std::string attestation_out;  // where
};

void validate_signing(const CheckCommandOptions& o) {
  if (o.sign_key.empty() != o.attestation_out.empty()) {
    throw proofs::bad_input(o.sign_key.empty() ? "--attestation-out" : "--sign", "--sign and --attestation-out go together");
  }
  if (!o.sign_key.empty() && (!o.checker.recompute || o.checker.model_dir.empty() || o.checker.trace.empty())) {
    throw proofs::bad_input("--sign", "an attestation says model, trace and witnesses were compared: it needs --model, "
                                      "--trace and --recompute");
  }
}

// Signs the claim of the certificate just re-derived; written only after every check passed.
void write_attestation(const CheckCommandOptions& o, const std::string& text, const proofs::CheckReport& report) {
  const proofs::SecretKey key = proofs::read_secret_key(o.sign_key);
  const proofs::Certificate c = proofs::certificate_from_json(text, o.certificate);
  proofs::Attestation a;
  a.claim_sha256 = proofs::certificate_claim_sha256(c);
  a.model_sha256 = c.model_sha256;
  a.trace_sha256 = c.trace_sha256;
  a.witnesses_compared = report.witnesses_compared;
  a.tool_version = "hnf-verify " HNF_VERSION;
  if (a.witnesses_compared == 0) throw proofs::bad_input(o.certificate, "no witness was re-derived: nothing to attest");
  proofs::write_text_atomically(o.attestation_out, proofs::attestation_to_json(proofs::sign_attestation(a, key)));
}

int run_check(const CheckCommandOptions& o) {
  // --recompute re-runs the analysis, which has no cancellation point here: a signal ends the
  // command at once until the attestation is written.
  InterruptGuard interrupt_guard(OnInterrupt::kExitAtOnce);
  validate_signing(o);
  const std::string text = proofs::read_certificate_text(o.certificate);
  const proofs::CheckOptions options =
      with_attestation_for(checker_options(o.checker), o.checker, text, o.certificate);
  const auto report = proofs::check_certificate_text(text, o.certificate, options, "hnf-verify " HNF_VERSION);
  interrupt_guard.outputs_follow();
  if (!report.problems.empty()) {
    const std::size_t more = report.problems.size() - 1;
    // A problem may quote the certificate's own strings: printed as one line, like every error.
    std::fprintf(stderr, "%s: rejected: %s%s\n", proofs::printable_line(o.certificate, std::string::npos).c_str(),
                 proofs::printable_line(report.problems.front()).c_str(),
                 more > 0 ? (" (and " + std::to_string(more) + " more problems)").c_str() : "");
    return static_cast<int>(proofs::ExitCode::kBadInput);
  }
  if (!o.sign_key.empty()) write_attestation(o, text, report);
  std::printf("%s: valid, verdict %s; %zu inequalities re-validated with exact rationals\n", o.certificate.c_str(),
              report.verdict.c_str(), report.inequalities);
  if (options.model_dir) std::printf("model        %s matches\n", o.checker.model_dir.c_str());
  if (options.trace) std::printf("trace        %s matches\n", o.checker.trace.c_str());
  if (o.checker.recompute) {
    std::printf("recomputed   %zu witnesses from the trace%s: none is below (or, for radii, beyond) its recomputed value\n",
                report.witnesses_compared, options.model_dir ? " and model" : "");
  }
  if (report.attested) std::printf("attested     the attestation verifies under %s\n", o.checker.public_key.c_str());
  std::printf("compared     %s\n", compared_summary(report, o.checker).c_str());
  if (!o.sign_key.empty()) std::printf("attestation  %s (signed with %s)\n", o.attestation_out.c_str(), o.sign_key.c_str());
  for (const auto& note : report.notes) std::printf("note         %s\n", note.c_str());
  return exit_code_for_verdict(report.verdict);
}

}  // namespace

void register_check(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<CheckCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Re-validate a certificate with exact rational arithmetic (no solver): its hash, map hash, every "
      "obligation's inequalities and verdicts, and the model and trace hashes when given; with --recompute "
      "--sign, attest the re-derived witnesses. Exit 0 certified, 1 refuted, 2 unknown, 3 invalid certificate or "
      "bad input");
  cmd->add_option("certificate", o->certificate, "Certificate JSON written by certify")->required();
  add_checker_options(cmd, o->checker);
  add_witness_options(cmd, o->checker, /*opt_out=*/false);
  cmd->add_option("--sign", o->sign_key,
                  "Secret key (from keygen): after --recompute with --model and --trace succeeded, sign an "
                  "attestation of the certificate's claim hash");
  cmd->add_option("--attestation-out", o->attestation_out, "With --sign: the attestation file to write");
  cmd->callback([o, exit_code] { *exit_code = run_check(*o); });
}

}  // namespace hnf::verify::cli
