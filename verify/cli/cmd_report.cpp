// hnf-verify report: the audit report of a certificate (docs/reports.md), as a self-contained
// HTML page and/or a Markdown summary, after the exact checker has re-validated it.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "checker_options.h"
#include "commands.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"
#include "hnf/proofs/write_file.h"
#include "hnf/reports/certificate_report.h"
#include "hnf/runtime/model_dir.h"
#include "interrupt.h"

namespace hnf::verify::cli {
namespace {

struct ReportCommandOptions {
  std::string certificate;
  std::string html;
  std::string markdown;
  CheckerArgs checker;
  std::string smt_dir;
  std::string eval;
  bool per_head = false;
};

// As check: a certificate the checker rejects is bad input (the report says REJECTED).
int exit_code_for(const reports::ReportFacts& facts) {
  return facts.verdict == "rejected" ? static_cast<int>(proofs::ExitCode::kBadInput) : exit_code_for_verdict(facts.verdict);
}

int run_report(const ReportCommandOptions& o) {
  if (o.html.empty() && o.markdown.empty()) throw proofs::bad_input("report", "give --html FILE, --md FILE or both");
  // The checker (with --recompute, the analysis) has no cancellation point here: a signal ends
  // the command at once until the documents are written.
  InterruptGuard interrupt_guard(OnInterrupt::kExitAtOnce);
  const std::string text = proofs::read_certificate_text(o.certificate);
  const proofs::CheckOptions options = with_attestation_for(checker_options(o.checker), o.checker, text, o.certificate);
  reports::ReportInput in;
  in.certificate = proofs::certificate_from_json(text, o.certificate);
  in.certificate_path = o.certificate;
  in.model_dir = o.checker.model_dir;
  in.trace_path = o.checker.trace;
  in.per_kv_head = o.per_head;
  in.tool_version = "hnf-verify " HNF_VERSION;
  in.smt_dir = o.smt_dir.empty() ? (std::filesystem::path(o.certificate).parent_path() / "smt").string() : o.smt_dir;
  in.check = proofs::check_certificate_text(text, o.certificate, options, in.tool_version);
  // A valid certificate is reported only with verified witnesses (or the named opt-out); a
  // rejected one is reported as REJECTED whatever was given.
  if (in.check.problems.empty()) require_verified_witnesses(in.check, o.checker, o.certificate);
  if (!o.eval.empty()) in.eval = reports::parse_eval_json(proofs::read_regular_file(o.eval, proofs::kMaxSmallJsonBytes, "an eval JSON"), o.eval, in.certificate.map_sha256);

  const reports::ReportFacts facts = reports::report_facts(in);
  // Both documents are rendered before either is written, and written all or none.
  std::vector<std::pair<std::string, std::string>> files;
  if (!o.html.empty()) files.emplace_back(o.html, reports::render_html(in, facts));
  if (!o.markdown.empty()) files.emplace_back(o.markdown, reports::render_markdown(in, facts));
  interrupt_guard.outputs_follow();
  proofs::write_texts_atomically(files);
  std::printf("%s: %s; %.4f bits per element (%.2fx vs fp16); %zu obligations\n", o.certificate.c_str(), facts.verdict.c_str(),
              facts.bits_per_element, facts.compression, facts.obligations.size());
  if (in.check.problems.empty()) std::printf("compared     %s\n", compared_summary(in.check, o.checker).c_str());
  if (!o.html.empty()) std::printf("wrote %s\n", o.html.c_str());
  if (!o.markdown.empty()) std::printf("wrote %s\n", o.markdown.c_str());
  return exit_code_for(facts);
}

}  // namespace

void register_report(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<ReportCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "Audit report of a certificate: a self-contained HTML page and/or a Markdown summary (verdict, scope, hashes, "
      "bits heatmap, obligations with margins, obstruction, commands to re-check). Exit codes as check: 0 certified, "
      "1 refuted, 2 unknown, 3 rejected or bad input");
  cmd->add_option("certificate", o->certificate, "Certificate (JSON)")->required();
  cmd->add_option("--html", o->html, "Write the HTML page here");
  cmd->add_option("--md", o->markdown, "Write the Markdown summary here");
  add_checker_options(cmd, o->checker);
  add_witness_options(cmd, o->checker, /*opt_out=*/true);
  cmd->add_option("--smt-dir", o->smt_dir, "Where the obligations' SMT-LIB files are (default: smt/ next to the certificate)");
  cmd->add_option("--eval", o->eval, "Attach a measured evaluation: the output of `hnf-verify eval --cache CERT --json`");
  cmd->add_flag("--per-head", o->per_head, "Heatmap rows per (layer, kv head) instead of per layer");
  cmd->callback([o, exit_code] { *exit_code = run_report(*o); });
}

}  // namespace hnf::verify::cli
