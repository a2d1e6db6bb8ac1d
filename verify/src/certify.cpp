// hnf::verify::certify: builds the obligations of docs/certificate.md from an analysis,
// discharges them with Z3 and assembles the certificate.
#include "hnf/verify/certify.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "hnf/analysis/composition.h"
#include "hnf/analysis/witnesses.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/sha256.h"
#include "hnf/verify/solver.h"

namespace hnf::verify {
namespace {

using proofs::exact_rational;
using proofs::Obligation;
using proofs::ObligationKind;

void validate(const CertifyOptions& o) {
  if (!(std::isfinite(o.eps) && o.eps > 0.0)) throw proofs::bad_input("--eps", "must be a positive number");
  for (double e : o.layer_eps) {
    if (!(std::isfinite(e) && e > 0.0)) throw proofs::bad_input("--layer-eps", "every budget must be a positive number");
  }
  if (o.eps_total && !(std::isfinite(*o.eps_total) && *o.eps_total > 0.0)) {
    throw proofs::bad_input("--eps-total", "must be a positive number");
  }
  if (o.eps_total && !o.model_dir) throw proofs::bad_input("--eps-total", "needs --model (the composition law uses its weights)");
  if (o.timeout_ms < 1) throw proofs::bad_input("--timeout-ms", "must be at least 1");
}

// The per-layer budgets: --layer-eps, or eps for every layer.
std::vector<double> layer_budgets(const CertifyOptions& o, std::int64_t layers) {
  if (o.layer_eps.empty()) return std::vector<double>(static_cast<std::size_t>(layers), o.eps);
  if (static_cast<std::int64_t>(o.layer_eps.size()) != layers) {
    throw proofs::bad_input("--layer-eps", "needs one budget per layer (" + std::to_string(layers) + ")");
  }
  return o.layer_eps;
}

proofs::Scope scope_of(const analysis::AnalysisResult& a, bool composition) {
  proofs::Scope s;
  s.query_positions = a.query_positions;
  for (const auto& h : a.heads) s.heads.push_back(analysis::head_scope(h));
  s.assumptions = {
      a.options.policy
          ? "S1 (the sufficiency obligations) covers the queries at s1_query_positions (every position below " +
                std::to_string(a.options.dense_queries) + ", then every " + std::to_string(a.options.beyond_stride) +
                "th recorded query), every query head, each against the cache state the policy gives at that query's "
                "step: the trace's keys and values stored at the ages they have then (THEORY.md section 14). S2 and S3 in "
                "scope.heads are for the policy's expansion at the trace's length (the final state). Other texts are "
                "covered by the runtime guard, not by this certificate"
          : "S1 (the sufficiency obligations) covers the recorded queries at s1_query_positions, every query head, with the "
            "trace's keys and values; other queries are covered by S2 (within s2_radius of a recorded query) and S3 (query "
            "norm at most s3_query_norm) only, whose bounds per head are listed in scope.heads",
      "Integer formats are stored by the reference quantizer of proofs/format.h (bit-exact), whose error radius the "
      "bounds use",
      "libm exp and log return one of the two doubles bracketing the exact value (THEORY.md section 11.1)",
      "Necessity rows use kappa_t rounded to nearest: Theorem 5.7 is a second-order necessary condition (THEORY.md "
      "section 9), not a certified lower bound; positions below it are listed, S1 still covers them",
  };
  s.assumptions.push_back(
      composition ? "Composition (Theorem C, THEORY.md section 10) is conditional on hypothesis (H) of section 10.4: each "
                    "layer's error budget must hold at the input that layer receives in the quantized run, with keys, "
                    "values and residuals recomputed from it; S1 (and S2, S3) bound the error at the recorded input "
                    "only, so the end-to-end bound is not established by this certificate for layers after the first; "
                    "it also bounds exact-arithmetic layers, not fp32 evaluation"
                  : "No composition obligation: certify ran without --model, so only per-layer attention errors are "
                    "certified");
  return s;
}

Obligation composition_obligation(const analysis::ModelConstants& constants, const std::vector<double>& layer_eps,
                                  std::optional<double> eps_total) {
  Obligation o;
  o.name = "composition";
  o.kind = ObligationKind::kComposition;
  o.layer = -1;
  for (std::size_t l = 0; l < constants.layers.size(); ++l) {
    o.lipschitz.push_back(exact_rational(constants.layers[l].lipschitz_up));
    o.injection.push_back(exact_rational(constants.layers[l].injection_up));
    o.layer_eps.push_back(exact_rational(layer_eps[l]));
  }
  if (eps_total) {
    o.budget = exact_rational(*eps_total);  // an end-to-end budget: an obligation the solver decides
  } else {
    // No budget: the composed bound is recorded (stated as its own budget), never proved.
    o.budget = proofs::composed_bound(o);
    o.verdict = proofs::Verdict::kRecorded;
  }
  return o;
}

// Row names for refutation messages.
std::string describe_row(const Obligation& o, std::int64_t index) {
  const auto i = static_cast<std::size_t>(index);
  if (o.kind == ObligationKind::kSufficiency && i < o.sufficiency.size()) {
    const auto& r = o.sufficiency[i];
    return "layer " + std::to_string(o.layer) + " kv head " + std::to_string(r.kv_head) + " head " + std::to_string(r.head) +
           " position " + std::to_string(r.position);
  }
  if (o.kind == ObligationKind::kNecessity) {
    const auto classes = necessity_classes(o);
    if (i < classes.size()) {
      const auto& c = classes[i];
      return "layer " + std::to_string(o.layer) + " kv head " + std::to_string(c.kv_head) + " position " +
             std::to_string(o.necessity[c.max_row].position);
    }
  }
  return "composition";
}

// The refuted obligation's detail ("... by how much") and Example line from the solver's row.
void explain_refutation(Obligation& o, std::optional<std::int64_t> index) {
  const double budget = proofs::rational_to_double(o.budget);
  if (o.kind != ObligationKind::kComposition && !index) {
    o.detail = "layer " + std::to_string(o.layer) + ": the solver reported no failing row";
    return;
  }
  if (o.kind == ObligationKind::kSufficiency && index) {
    const auto& r = o.sufficiency[static_cast<std::size_t>(*index)];
    const double b = proofs::rational_to_double(r.bound);
    o.detail = describe_row(o, *index) + ": S1 bound " + fmt::format("{:.6g}", b) + " exceeds epsilon " +
               fmt::format("{:.6g}", budget) + " by " + fmt::format("{:.6g}", b - budget);
    o.example = "Example: i = " + std::to_string(*index) + ", bound = " + r.bound + ", budget = " + o.budget;
  } else if (o.kind == ObligationKind::kNecessity && index) {
    const auto classes = necessity_classes(o);
    const auto& c = classes.at(static_cast<std::size_t>(*index));
    o.detail = describe_row(o, *index) + ": " + std::to_string(c.bits) + " bits are below the obstruction";
    o.example = "Example: i = " + std::to_string(*index) + ", kappa_d2 = " + c.max_kappa_d2 + ", bits = " + std::to_string(c.bits);
  } else {
    o.detail = "the composed end-to-end bound exceeds eps_total " + fmt::format("{:.6g}", budget);
    o.example = "Example: eps_total = " + o.budget;
  }
}

void discharge(Obligation& o, Solver& solver, const CertifyOptions& options, CertifyResult& result) {
  const std::string script = obligation_smtlib(o);
  if (options.keep_smt) {
    o.smt_file = o.name + ".smt2";
    result.smt_scripts.emplace_back(o.smt_file, script);
  }
  const auto answer = solver.check_script(script, o.name);
  o.solver_ms = answer.milliseconds;
  result.solver_seconds += answer.milliseconds / 1000.0;
  result.largest_solver_ms = std::max(result.largest_solver_ms, answer.milliseconds);
  switch (answer.answer) {
    case Answer::kProved: o.verdict = proofs::Verdict::kProved; break;
    case Answer::kRefuted:
      o.verdict = proofs::Verdict::kRefuted;
      explain_refutation(o, answer.index);
      result.refutations.push_back(o.name + " refuted: " + o.detail);
      result.refutations.push_back(o.example);
      break;
    case Answer::kError:
      // Z3 could not read or run a script we wrote: a bug, not an answer about the map.
      throw proofs::Error(proofs::ErrorKind::kInternal, o.name + ": z3 failed on the obligation's script: " + answer.reason);
    case Answer::kTimeout:
    case Answer::kUnknown:
      o.verdict = answer.answer == Answer::kTimeout ? proofs::Verdict::kTimeout : proofs::Verdict::kUnknown;
      o.detail = std::string(answer_name(answer.answer)) + ": " + answer.reason;
      result.unresolved.push_back(o.name + " " + o.detail);
      break;
  }
}

std::string file_name_only(const std::string& path) { return std::filesystem::path(path).filename().string(); }

}  // namespace

CertifyResult certify(const std::string& trace_path, const CertifyOptions& options) {
  validate(options);
  const auto trace = analysis::Trace::open(trace_path);
  const auto budgets = layer_budgets(options, trace.shape().num_layers);
  std::optional<analysis::ModelConstants> constants;
  if (options.model_dir) {
    constants = analysis::composition_constants(*options.model_dir);
    if (constants->model_sha256 != trace.metadata().at("model_sha256")) {
      throw proofs::bad_input(options.model_dir->string(), "model.safetensors is not the model the trace was recorded with");
    }
    if (static_cast<std::int64_t>(constants->layers.size()) != trace.shape().num_layers) {
      throw proofs::bad_input(options.model_dir->string(), "the model's layer count differs from the trace's");
    }
  }

  analysis::AnalysisOptions a = options.analysis;
  a.progress = options.progress;
  if (options.bits) {
    a.bits = options.bits;
  } else {
    a.eps = *std::max_element(budgets.begin(), budgets.end());
    if (!options.layer_eps.empty()) a.layer_eps = budgets;
  }
  CertifyResult result;
  const auto start = std::chrono::steady_clock::now();
  const analysis::AnalysisResult analyzed = analysis::analyze_trace(trace_path, a);
  result.analysis_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  proofs::Certificate& c = result.certificate;
  c.tool_version = options.tool_version;
  c.model_id = trace.metadata().at("model_id");
  c.model_sha256 = trace.metadata().at("model_sha256");
  c.text_sha256 = trace.metadata().at("text_sha256");
  c.trace_file = file_name_only(trace_path);
  c.trace_sha256 = proofs::sha256_file_hex(trace_path);
  c.map = analysis::precision_map(analyzed);
  c.map_sha256 = proofs::map_sha256(c.map);
  if (a.policy) {
    c.policy = a.policy;
    c.policy_sha256 = proofs::policy_sha256(*a.policy);
    c.prediction = options.prediction;
  }
  c.bits_per_element = proofs::map_bits_per_element(c.map);
  for (double e : budgets) c.layer_eps.push_back(exact_rational(e));
  c.eps = exact_rational(*std::max_element(budgets.begin(), budgets.end()));
  c.scope = scope_of(analyzed, constants.has_value());

  for (std::int64_t l = 0; l < analyzed.shape.num_layers; ++l) {
    c.obligations.push_back(analysis::sufficiency_obligation(analyzed, l, budgets[static_cast<std::size_t>(l)]));
    c.obligations.push_back(analysis::necessity_obligation(analyzed, l, budgets[static_cast<std::size_t>(l)]));
  }
  if (constants) c.obligations.push_back(composition_obligation(*constants, budgets, options.eps_total));

  Solver solver(options.timeout_ms);
  for (std::size_t i = 0; i < c.obligations.size(); ++i) {
    Obligation& o = c.obligations[i];
    // Diagnostics (necessity) and a recorded composition cannot fail: nothing to ask a solver.
    if (o.verdict == proofs::Verdict::kDiagnostic || o.verdict == proofs::Verdict::kRecorded) continue;
    if (options.progress) options.progress("solver " + o.name, static_cast<double>(i) / static_cast<double>(c.obligations.size()));
    discharge(o, solver, options, result);
  }
  c.verdict = proofs::derived_verdict(c);
  return result;
}

}  // namespace hnf::verify
