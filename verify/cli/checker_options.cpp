#include "checker_options.h"

#include "hnf/analysis/witnesses.h"
#include "hnf/proofs/attestation.h"
#include "hnf/proofs/error.h"

namespace hnf::verify::cli {

void add_checker_options(CLI::App* cmd, CheckerArgs& args) {
  cmd->add_option("--model", args.model_dir, "Model directory: its model.safetensors must have the certified hash");
  cmd->add_option("--trace", args.trace, "Trace file: must have the certified hash");
  cmd->add_flag("--recompute", args.recompute,
                "Also re-run the analysis on --trace with the certificate's map and scope (and the composition "
                "constants from --model): every witness must be at least its recomputed value");
}

void add_witness_options(CLI::App* cmd, CheckerArgs& args, bool opt_out) {
  cmd->add_option("--attestation", args.attestations,
                  "Attestation (from check --recompute --sign): the witnesses were re-derived by its signer; "
                  "repeatable, each certificate uses the one made for it");
  cmd->add_option("--public-key", args.public_key,
                  "The operator's public key (from keygen) the attestation must verify under")
      ->envname("HNF_PUBLIC_KEY");
  if (opt_out) {
    cmd->add_flag("--unattested", args.unattested,
                  "Go on although the witnesses were neither re-derived (--recompute) nor attested (--attestation): "
                  "recorded and printed; the bounds are then the certificate's word only");
  }
}

proofs::CheckOptions checker_options(const CheckerArgs& args) {
  if (args.recompute && args.trace.empty()) throw proofs::bad_input("--recompute", "needs --trace");
  if (!args.attestations.empty() && args.public_key.empty()) {
    throw proofs::bad_input("--attestation", "needs --public-key (or HNF_PUBLIC_KEY): the key the signature must verify under");
  }
  proofs::CheckOptions options;
  if (!args.model_dir.empty()) options.model_dir = args.model_dir;
  if (!args.trace.empty()) options.trace = args.trace;
  if (args.recompute) {
    options.recompute = [trace = args.trace, model = options.model_dir](const proofs::Certificate& c) {
      return analysis::recompute_witnesses(c, trace, model);
    };
  }
  if (!args.public_key.empty()) options.trusted_key = proofs::read_public_key(args.public_key);
  return options;
}

proofs::CheckOptions with_attestation_for(proofs::CheckOptions options, const CheckerArgs& args,
                                          const std::string& certificate_text, const std::string& file) {
  if (args.attestations.empty()) return options;
  const std::string claim = proofs::certificate_claim_sha256(proofs::certificate_from_json(certificate_text, file));
  for (const auto& path : args.attestations) {
    proofs::Attestation a = proofs::read_attestation(path);
    if (a.claim_sha256 == claim) {
      options.attestation = std::move(a);
      return options;
    }
  }
  if (args.attestations.size() == 1) {
    // One attestation for one certificate: let the checker say why it does not fit.
    options.attestation = proofs::read_attestation(args.attestations.front());
  }
  return options;
}

std::string compared_summary(const proofs::CheckReport& report, const CheckerArgs& args) {
  std::string witnesses = "witnesses taken as written (not re-derived, not attested)";
  if (report.witnesses_compared > 0) {
    witnesses = "witnesses re-derived (" + std::to_string(report.witnesses_compared) + " compared)";
  } else if (report.attested) {
    witnesses = "witnesses attested (public key " + args.public_key + ")";
  }
  return std::string(report.model_compared ? "model compared" : "model not compared") + ", " +
         (report.trace_compared ? "trace compared" : "trace not compared") + ", " + witnesses;
}

void require_verified_witnesses(const proofs::CheckReport& report, const CheckerArgs& args, const std::string& file) {
  if (report.witnesses_compared > 0 || report.attested || args.unattested) return;
  throw proofs::bad_input(file, "its witnesses were neither re-derived nor attested: give --attestation A --public-key K "
                                "(from check --recompute --sign), or --trace T --recompute, or --unattested to go on "
                                "without");
}

int exit_code_for_verdict(const std::string& verdict) {
  if (verdict == "certified") return static_cast<int>(proofs::ExitCode::kSuccess);
  if (verdict == "refuted") return static_cast<int>(proofs::ExitCode::kRefuted);
  return static_cast<int>(proofs::ExitCode::kUnknown);
}

}  // namespace hnf::verify::cli
