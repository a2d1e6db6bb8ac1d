// hnf-verify certify: analysis, allocation, obligations, Z3, certificate, then the exact
// checker on the certificate just made, in one command (docs/certificate.md).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "checker_options.h"
#include "commands.h"
#include "guard_prediction.h"
#include "hnf/analysis/attention_stats.h"
#include "hnf/analysis/policy_allocation.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/directed.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/policy.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/write_file.h"
#include "hnf/reports/text.h"
#include "hnf/verify/certify.h"
#include "progress.h"

namespace hnf::verify::cli {
namespace {

struct CertifyCommandOptions {
  std::string trace;
  std::string out;
  std::string model_dir;
  std::string smt_dir;
  std::string eps;                     // decimal, converted rounding down
  std::vector<std::string> layer_eps;  // decimal, converted rounding down
  std::string eps_total;
  double bits = 0.0;
  std::string policy;  // policy spec (proofs::parse_policy_spec), or "auto [page=P sink=S recent=W]"
  std::string eps_rel;  // decimal: each layer's budget is this times its median ||o||
  CertifyOptions certify;
  // Set by run_certify: how the budgets were chosen, for the summary.
  std::string budget_rule;
  std::optional<analysis::PolicyAllocation> allocation;
};

// A display value >= x (4 significant digits), for upper bounds printed in the summary.
std::string display_up(double x) {
  std::string s = fmt::format("{:.4g}", x);
  for (int i = 0; i < 4 && std::stod(s) < x; ++i) s = fmt::format("{:.4g}", std::nextafter(std::stod(s) * (1 + 1e-4), INFINITY));
  return s;
}

std::string budget_line(const CertifyCommandOptions& o, const proofs::Certificate& c) {
  const std::string scope = fmt::format("S1 scope: {} recorded query positions x {} query heads",
                                        c.scope.query_positions.size(), c.map.heads);
  if (!o.budget_rule.empty()) {
    std::string per_layer;
    for (const auto& e : c.layer_eps) per_layer += (per_layer.empty() ? "" : ", ") + display_up(proofs::rational_to_double(e));
    return fmt::format("epsilon      per layer {} ({}); {}", per_layer, o.budget_rule, scope);
  }
  if (o.layer_eps.empty()) {
    return fmt::format("epsilon      {} per query (as the largest double not above it, {:.17g}); {}", o.eps,
                       proofs::rational_to_double(c.eps), scope);
  }
  std::string given;
  for (const auto& e : o.layer_eps) given += (given.empty() ? "" : ", ") + e;
  return fmt::format("epsilon      per layer {} per query (each as the largest double not above it); {}", given, scope);
}

// Only answers count as proved: necessity rows are Theorem 5.7 diagnostics and a composition
// without --eps-total is recorded (proofs::obligation_standing).
std::string obligation_line(const proofs::Certificate& c) {
  const proofs::ObligationCounts n = proofs::count_obligations(c);
  std::size_t below = 0, positions = 0;
  for (const auto& o : c.obligations) {
    if (o.kind == proofs::ObligationKind::kNecessity) {
      below += o.below.size();
      positions += o.necessity.size();
    }
  }
  std::string line = fmt::format("obligations {}: {} proved, {} refuted, {} unknown or timed out; {} diagnostic "
                                 "(Theorem 5.7: {} of {} key positions below the obstruction, listed; S1 covers them)",
                                 c.obligations.size(), n.proved, n.refuted, n.open, n.diagnostic, below, positions);
  if (n.recorded > 0) line += fmt::format("; {} recorded (composition without --eps-total)", n.recorded);
  return line;
}

void print_composition(const CertifyCommandOptions& o, const proofs::Obligation& c) {
  const std::string bound = display_up(proofs::rational_to_double(proofs::composed_bound(c)));
  if (o.eps_total.empty()) {
    std::printf("composition  end-to-end error <= %s: recorded, not proved (no --eps-total: no budget to prove it "
                "against; Theorem C with global per-layer Lipschitz bounds, conditional on THEORY.md 10.4 (H))\n",
                bound.c_str());
    return;
  }
  std::printf("composition  end-to-end error <= %s against --eps-total %s: %s (Theorem C with global per-layer "
              "Lipschitz bounds; conditional on THEORY.md 10.4 (H))\n",
              bound.c_str(), o.eps_total.c_str(), std::string(proofs::verdict_name(c.verdict)).c_str());
}

void print_summary(const CertifyCommandOptions& o, const CertifyResult& r, double seconds, const proofs::CheckReport& check) {
  const auto& c = r.certificate;
  std::string verdict = c.verdict;
  for (auto& ch : verdict) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::printf("certify %s: %s\n", o.trace.c_str(), verdict.c_str());
  std::printf("%s\n", budget_line(o, c).c_str());
  std::printf("map          %.4f bits (%.4f bytes) per K/V element, metadata included: %.2fx smaller than fp16\n",
              c.bits_per_element, c.bits_per_element / 8.0, 16.0 / c.bits_per_element);
  if (o.allocation) {
    std::printf("policy       %s, chosen among %zu candidates (allocated and every uniform point) at %.4g bits "
                "(objective %.4g, %.1f s)\n",
                o.allocation->chosen.c_str(), o.allocation->candidates.size(), o.allocation->bits, o.allocation->objective,
                o.allocation->seconds);
  }
  if (c.prediction) {
    const auto& p = *c.prediction;
    const auto percent = [](std::int64_t a, std::int64_t b) { return b > 0 ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; };
    std::printf("guard        forecast (%s bound%s): %.2f %% of %lld calibration rows within epsilon, %.2f %% of %lld "
                "held-out rows (the expectation on unseen text); epsilon / median actual error %.3g\n",
                p.kind.c_str(), p.kind == "probabilistic" ? fmt::format(", delta {:.3g} per row", p.delta).c_str() : "",
                percent(p.calibration_within, p.calibration_rows), static_cast<long long>(p.calibration_rows),
                percent(p.heldout_within, p.heldout_rows), static_cast<long long>(p.heldout_rows),
                p.median_actual > 0.0 ? proofs::rational_to_double(c.eps) / p.median_actual : 0.0);
  }
  std::printf("%s\n", obligation_line(c).c_str());
  for (const auto& ob : c.obligations) {
    if (ob.kind == proofs::ObligationKind::kComposition) print_composition(o, ob);
  }
  for (const auto& line : r.refutations) std::printf("%s\n", line.c_str());
  for (const auto& line : r.unresolved) std::printf("%s\n", line.c_str());
  std::printf("time         %.2f s (analysis %.2f s, z3 %.3f s, largest query %.1f ms%s)\n", seconds, r.analysis_seconds,
              r.solver_seconds, r.largest_solver_ms,
              c.prediction ? "; the rest: the policy's choice and the guard's forecast" : "");
  std::printf("checker      %zu inequalities re-validated exactly: consistent\n", check.inequalities);
  std::printf("wrote %s%s\n", o.out.c_str(), o.smt_dir.empty() ? "" : (" and the SMT-LIB files in " + o.smt_dir).c_str());
}

// The certificate, then the SMT-LIB files; if a file cannot be written, nothing stays behind.
void write_outputs(const CertifyCommandOptions& o, const std::string& certificate, const CertifyResult& r) {
  std::vector<std::pair<std::string, std::string>> files{{o.out, certificate}};
  for (const auto& [name, script] : r.smt_scripts) files.emplace_back((std::filesystem::path(o.smt_dir) / name).string(), script);
  proofs::write_texts_atomically(files);
}

// The command line that makes this certificate again, every option explicit (defaults
// included), recorded in the certificate for the audit report.
std::string certify_command_line(const CertifyCommandOptions& o, bool bits_given) {
  using reports::shell_quote;
  std::string cmd = "hnf-verify certify " + shell_quote(o.trace);
  if (!o.eps.empty()) cmd += " --eps " + shell_quote(o.eps);
  if (!o.eps_rel.empty()) cmd += " --eps-rel " + shell_quote(o.eps_rel);
  if (!o.layer_eps.empty()) {
    std::string joined;
    for (const auto& e : o.layer_eps) joined += (joined.empty() ? "" : ",") + e;
    cmd += " --layer-eps " + shell_quote(joined);
  }
  if (bits_given) cmd += fmt::format(" --bits {}", o.bits);
  if (!o.policy.empty()) {
    cmd += " --policy " + shell_quote(o.policy) + fmt::format(" --dense-queries {} --beyond-stride {}",
                                                              o.certify.analysis.dense_queries, o.certify.analysis.beyond_stride);
  }
  if (!o.model_dir.empty()) cmd += " --model " + shell_quote(o.model_dir);
  if (!o.eps_total.empty()) cmd += " --eps-total " + shell_quote(o.eps_total);
  cmd += " --out " + shell_quote(o.out);
  if (!o.smt_dir.empty()) cmd += " --smt-dir " + shell_quote(o.smt_dir);
  const auto& a = o.certify.analysis;
  cmd += fmt::format(" --timeout-ms {} --last-queries {} --query-stride {} --block {} --objective {}", o.certify.timeout_ms,
                     a.last_queries, a.query_stride, a.block, shell_quote(a.model));
  return cmd;
}

// "auto [page=P] [sink=S] [recent=W]": the allocation options of a policy chosen for --bits.
analysis::PolicyAllocationOptions auto_policy_options(const std::string& spec, double bits) {
  analysis::PolicyAllocationOptions a;
  a.bits = bits;
  std::istringstream in(spec.substr(4));
  std::string item;
  while (in >> item) {
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    std::int64_t value = -1;
    if (eq != std::string::npos) {
      try {
        std::size_t used = 0;
        value = std::stoll(item.substr(eq + 1), &used);
        if (used != item.size() - eq - 1) value = -1;
      } catch (const std::exception&) {
        value = -1;
      }
    }
    if (key == "rounding" && eq != std::string::npos) {
      const std::string how = item.substr(eq + 1);
      if (how != "stochastic" && how != "nearest") throw proofs::bad_input("--policy", "rounding is stochastic or nearest");
      a.rounding = how == "stochastic" ? proofs::Rounding::kStochastic : proofs::Rounding::kNearest;
      continue;
    }
    if (value < 0 || (key != "page" && key != "sink" && key != "recent" && key != "seed")) {
      throw proofs::bad_input("--policy", "'" + item + "': auto takes page=P, sink=S, recent=W (counts), seed=N and "
                                          "rounding=stochastic|nearest");
    }
    if (key == "seed") a.calibration_seed = static_cast<std::uint64_t>(std::min<std::int64_t>(value, (std::int64_t{1} << 52)));
    if (key == "page") a.page = static_cast<int>(std::min<std::int64_t>(value, 1 << 20));
    if (key == "sink") a.sink_pages = value;
    if (key == "recent") a.recent_pages = value;
  }
  if (a.page != 16 && a.page != 32 && a.page != 64) throw proofs::bad_input("--policy", "page must be 16, 32 or 64");
  if (a.recent_pages < 1) throw proofs::bad_input("--policy", "recent must be at least 1 page");
  return a;
}

// Budgets and, for a policy, the guard's forecast. Exactly one of --eps, --eps-rel, or (with a
// policy) --bits alone: then epsilon_l = r * median ||o||_l with r the smallest ratio at which
// 99.9 % of the calibration rows are guarded (CLARIFICATIONS "eps for the targets").
void choose_budgets(CertifyCommandOptions& o, bool bits_given) {
  const analysis::TraceShape s = analysis::Trace::open(o.trace).shape();
  const bool auto_policy = o.policy.rfind("auto", 0) == 0;
  if (!o.eps.empty() + !o.eps_rel.empty() != 1 && !(auto_policy && bits_given && o.eps.empty() && o.eps_rel.empty())) {
    throw proofs::bad_input("--eps", "give exactly one of --eps and --eps-rel (or, with --policy auto, --bits alone)");
  }
  if (!o.layer_eps.empty() && o.eps.empty()) throw proofs::bad_input("--layer-eps", "goes with --eps");
  if (!o.eps.empty()) o.certify.eps = proofs::decimal_to_double_down(o.eps, "--eps");
  for (const auto& e : o.layer_eps) o.certify.layer_eps.push_back(proofs::decimal_to_double_down(e, "--layer-eps"));
  const double eps_rel = o.eps_rel.empty() ? 0.0 : proofs::decimal_to_double_down(o.eps_rel, "--eps-rel");
  if (!o.eps_rel.empty() && !(eps_rel > 0.0)) throw proofs::bad_input("--eps-rel", "must be a positive number");
  if (!o.policy.empty()) {
    if (auto_policy) {
      if (!bits_given) throw proofs::bad_input("--policy", "auto chooses a policy for --bits; give --bits");
      o.allocation = analysis::allocate_policy(o.trace, auto_policy_options(o.policy, o.bits));
      o.certify.analysis.policy = o.allocation->policy;
    } else {
      if (bits_given) throw proofs::bad_input("--policy", "certifies the given policy; --bits goes with --policy auto");
      o.certify.analysis.policy =
          proofs::parse_policy_spec(o.policy, s.num_layers, s.num_kv_heads, s.num_heads, s.head_dim, "--policy");
    }
    const CalibratedGuard guard = calibrate_policy_guard(o.trace, *o.certify.analysis.policy,
                                                         o.certify.analysis.dense_queries, o.certify.analysis.beyond_stride);
    std::vector<double> layer_eps;
    if (!o.eps.empty()) {
      layer_eps = o.certify.layer_eps.empty() ? std::vector<double>(guard.layers.size(), o.certify.eps) : o.certify.layer_eps;
      o.certify.prediction = predict_guard(guard, layer_eps, "given", 0.0);
      return;
    }
    if (o.eps_rel.empty()) {
      GuardedBudgets b = guarded_budgets(guard, 0.999);
      layer_eps = b.layer_eps;
      o.budget_rule = b.rule;
      o.certify.prediction = std::move(b.prediction);
    } else {
      for (const double m : guard.output_norm_median) layer_eps.push_back(proofs::mul_down(eps_rel, m));
      o.budget_rule = fmt::format("--eps-rel {} x median ||o|| of the layer", o.eps_rel);
      o.certify.prediction = predict_guard(guard, layer_eps, o.budget_rule, eps_rel);
    }
    o.certify.layer_eps = layer_eps;
    o.certify.eps = *std::max_element(layer_eps.begin(), layer_eps.end());
    return;
  }
  if (bits_given) o.certify.bits = o.bits;
  if (!o.eps_rel.empty()) {
    std::vector<double> layer_eps;
    for (const auto& l : analysis::attention_stats(analysis::Trace::open(o.trace), 1)) {
      layer_eps.push_back(proofs::mul_down(eps_rel, l.output_norm_median));
    }
    o.budget_rule = fmt::format("--eps-rel {} x median ||o|| of the layer", o.eps_rel);
    o.certify.layer_eps = layer_eps;
    o.certify.eps = *std::max_element(layer_eps.begin(), layer_eps.end());
  }
}

int run_certify(CertifyCommandOptions o, bool bits_given) {
  const auto start = std::chrono::steady_clock::now();  // the summary's time covers the policy choice and forecast too
  if (!o.eps_total.empty()) o.certify.eps_total = proofs::decimal_to_double_down(o.eps_total, "--eps-total");
  choose_budgets(o, bits_given);
  if (!o.model_dir.empty()) o.certify.model_dir = o.model_dir;
  o.certify.keep_smt = !o.smt_dir.empty();
  if (!o.smt_dir.empty()) proofs::ensure_directory(o.smt_dir, "--smt-dir");
  o.certify.tool_version = "hnf-verify " HNF_VERSION;
  Progress progress("certify " + o.trace, 1000);
  o.certify.progress = [&progress](std::string_view, double fraction) {
    progress.update(static_cast<std::uint64_t>(fraction * 1000.0));
  };
  CertifyResult result = certify(o.trace, o.certify);
  result.certificate.certify_command = certify_command_line(o, bits_given);
  const std::string text = proofs::certificate_to_json(result.certificate);
  // The trusted checker must accept what was just produced; anything else is a bug.
  const auto check = proofs::check_certificate_text(text, o.out, {}, o.certify.tool_version);
  if (!check.problems.empty()) {
    throw proofs::Error(proofs::ErrorKind::kInternal, "the checker rejects the new certificate: " + check.problems.front());
  }
  throw_if_interrupted();  // the last chance to stop before the certificate is written
  write_outputs(o, text, result);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  print_summary(o, result, seconds, check);
  return exit_code_for_verdict(result.certificate.verdict);
}

}  // namespace

void register_certify(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<CertifyCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "certify",
      "Analyse a trace, choose a precision map, discharge its obligations with Z3 and write a certificate that "
      "`check` re-validates. Exit 0 certified, 1 refuted (with the failing layer, head, position and an example), "
      "2 unknown or timeout, 3 bad input");
  cmd->add_option("trace", o->trace, "Trace file (hnf-trace safetensors)")->required();
  cmd->add_option("--eps", o->eps,
                  "Budget for ||o_hat - o||_2 of every (layer, head, recorded query); a decimal, used as the largest "
                  "double not above it");
  cmd->add_option("--eps-rel", o->eps_rel,
                  "Instead of --eps: each layer's budget is this fraction of its median ||o|| on the trace (recorded as "
                  "the per-layer absolute budgets it implies)");
  cmd->add_option("--layer-eps", o->layer_eps, "Per-layer budgets E0,E1,... (one per layer)")->delimiter(',');
  auto* bits = cmd->add_option("--bits", o->bits, "Allocate for this average bits per element instead of for --eps");
  cmd->add_option("--policy", o->policy,
                  "Certify this precision policy instead of allocating a map: 'page=16 sink=1 recent=1 "
                  "k=fp16/fp16/int4-t16 v=fp16/fp16/int4-d64' (formats sink/recent/old; pages), or 'auto [page=16 "
                  "sink=1 recent=1]' with --bits: choose the old pages' formats for that size (without --eps, epsilon "
                  "is the smallest at which 99.9 % of the calibration rows are guarded)");
  cmd->add_option("--dense-queries", o->certify.analysis.dense_queries,
                  "With --policy: S1 at every recorded position below N ...")
      ->capture_default_str();
  cmd->add_option("--beyond-stride", o->certify.analysis.beyond_stride, "... and every S-th recorded query after")
      ->capture_default_str();
  cmd->add_option("--out", o->out, "Certificate file to write")->required();
  cmd->add_option("--smt-dir", o->smt_dir, "Also write each obligation as an SMT-LIB2 file here");
  cmd->add_option("--model", o->model_dir, "Model directory of the trace: adds the composition obligation");
  cmd->add_option("--eps-total", o->eps_total, "End-to-end budget of the composition obligation (with --model)");
  cmd->add_option("--timeout-ms", o->certify.timeout_ms, "Z3 time limit per obligation, parsing included")
      ->capture_default_str();
  cmd->add_option("--last-queries", o->certify.analysis.last_queries, "Analyse the newest N recorded queries ...")
      ->capture_default_str();
  cmd->add_option("--query-stride", o->certify.analysis.query_stride, "... plus every S-th (0: automatic)")
      ->capture_default_str();
  cmd->add_option("--block", o->certify.analysis.block, "Allocation unit in positions: 16, 32 or 64")->capture_default_str();
  cmd->add_option("--objective", o->certify.analysis.model, "Allocation objective: rms or bound")->capture_default_str();
  cmd->callback([o, bits, exit_code] { *exit_code = run_certify(*o, bits->count() > 0); });
}

}  // namespace hnf::verify::cli
