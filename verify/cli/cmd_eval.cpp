// hnf-verify eval: perplexity and bits per byte of a model on a text (sliding windows), with an
// add-one unigram baseline computed in the same run; with --cache CERT, the same windows also run
// through the mixed-precision cache of a certified map and are compared with full precision.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "checker_options.h"
#include "commands.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/write_file.h"
#include "hnf/runtime/evaluate.h"
#include "hnf/runtime/mixed_kv_cache.h"
#include "hnf/runtime/model_dir.h"
#include "hnf/runtime/shadow_cache.h"
#include "progress.h"

namespace hnf::verify::cli {
namespace {

struct EvalCommandOptions {
  std::string model;
  std::string text;
  std::int64_t max_tokens = 0;
  runtime::EvalOptions eval;
  bool json = false;
  std::string json_out;  // also write the JSON here (for `hnf-verify report --eval`)
  std::string cache;  // certificate of the map to evaluate (empty: full precision only)
  std::string trace;  // the certificate's trace: enables the S2 check
  bool bounds = false;
  bool guard = false;   // --guard (always on for a policy certificate)
  bool decode = false;  // --decode (always on for a policy certificate)
  std::string backend = "cpu";
  CheckerArgs witnesses;  // --recompute, --attestation, --public-key, --unattested (model and trace: above)
};

// The certified map of `o.cache`, checked against the model being evaluated (and the trace), its
// witnesses re-derived (--recompute) or attested (--attestation), unless --unattested.
proofs::CertifiedPrecisionMap certified_map(const EvalCommandOptions& o) {
  CheckerArgs args = o.witnesses;
  args.model_dir = o.model;
  args.trace = o.trace;
  const std::string text = proofs::read_certificate_text(o.cache);
  const proofs::CheckOptions options = with_attestation_for(checker_options(args), args, text, o.cache);
  auto report = proofs::check_certificate_text(text, o.cache, options, "hnf-verify " HNF_VERSION);
  if (!report.problems.empty()) {
    throw proofs::bad_input(o.cache, "rejected: " + report.problems.front() +
                                         (report.problems.size() > 1 ? " (and " + std::to_string(report.problems.size() - 1) + " more problems)" : ""));
  }
  if (!report.certified) throw proofs::bad_input(o.cache, "the verdict is " + report.verdict + ", not certified: no cache is built from it");
  require_verified_witnesses(report, args, o.cache);
  std::fprintf(stderr, "eval: %s: certified; %s\n", o.cache.c_str(), compared_summary(report, args).c_str());
  return *std::move(report.certified);
}

// The recorded queries of the certificate's trace at the positions its S2 scope covers (the
// analysed queries, scope.query_positions), [layers][heads, positions, head_dim].
runtime::S2Reference s2_reference(const std::string& path, const proofs::Scope& scope) {
  const auto trace = analysis::Trace::open(path);
  const auto& recorded = trace.query_positions();  // sorted: the trace's own order
  runtime::S2Reference ref;
  std::vector<std::size_t> rows;  // index in the trace's queries of each scope position
  for (const std::int64_t p : scope.query_positions) {
    const auto it = std::lower_bound(recorded.begin(), recorded.end(), p);
    if (it == recorded.end() || *it != p) throw proofs::bad_input(path, "has no recorded query at position " + std::to_string(p) + " of the certificate's scope");
    ref.positions.push_back(p);
    rows.push_back(static_cast<std::size_t>(it - recorded.begin()));
  }
  for (const auto& layer : trace.layers()) {
    const auto bytes = trace.file().bytes(*layer.q);  // [heads, queries, head_dim]
    const auto heads = static_cast<std::size_t>(layer.q->shape[0]);
    const auto queries = static_cast<std::size_t>(layer.q->shape[1]);
    const auto d = static_cast<std::size_t>(layer.q->shape[2]);
    std::vector<float> q(heads * rows.size() * d);
    for (std::size_t h = 0; h < heads; ++h) {
      for (std::size_t j = 0; j < rows.size(); ++j) {
        for (std::size_t c = 0; c < d; ++c) {
          q[(h * rows.size() + j) * d + c] = proofs::load_float(layer.q->dtype, bytes.data(), (h * queries + rows[j]) * d + c);
        }
      }
    }
    ref.queries.push_back(std::move(q));
  }
  return ref;
}

// How the cache's map came to be trusted: "re-derived", "attested" or "unverified" (--unattested).
std::string witness_word(const proofs::CertifiedPrecisionMap& map) {
  return map.witnesses_recomputed() ? "re-derived" : map.witnesses_attested() ? "attested" : "unverified";
}

double measured_bits(const runtime::DecodeMonitor& m) {
  return m.stored_elements > 0.0 ? m.stored_bytes * 8.0 / m.stored_elements : 0.0;
}

nlohmann::json cache_json(const EvalCommandOptions& o, const proofs::CertifiedPrecisionMap& map,
                          const runtime::CandidateComparison& c, const runtime::DecodeMonitor& m) {
  nlohmann::json j{{"certificate", o.cache},
                   {"map_sha256", map.map_sha256()},
                   {"witnesses", witness_word(map)},
                   {"backend", o.backend},
                   {"perplexity", c.perplexity},
                   {"mean_kl", c.mean_kl},
                   {"top1_agreement", c.top1_agreement},
                   {"bits_per_element", measured_bits(m)},
                   {"bytes_per_element", measured_bits(m) / 8.0},
                   {"map_bits_per_element", proofs::map_bits_per_element(map.map())},
                   {"attention_rows", m.queries}};
  if (m.bounded > 0) j["decode_bound"] = {{"rows", m.bounded}, {"max", m.max_bound}, {"mean", m.sum_bound / static_cast<double>(m.bounded)}};
  if (m.s2_checked > 0) j["s2"] = {{"rows", m.s2_checked}, {"outside", m.outside_s2}};
  return j;
}

// Rows whose actual error is at most this fraction of their layer's epsilon are left out of the
// bound / actual figures (the ratio of a bound to a rounding-level error says nothing).
constexpr double kGuardFloorFraction = 1e-3;

double quantile_of(std::vector<double>& x, double q) {
  if (x.empty()) return 0.0;
  std::sort(x.begin(), x.end());
  return x[std::min(x.size() - 1, static_cast<std::size_t>(q * static_cast<double>(x.size())))];
}

// bound / actual over the rows that read an integer page and whose actual error is above the
// floor: rows, median, p90, p99, max, min.
nlohmann::json ratio_json(std::vector<double> ratios) {
  return {{"rows", ratios.size()},
          {"median", quantile_of(ratios, 0.5)},
          {"p90", quantile_of(ratios, 0.9)},
          {"p99", quantile_of(ratios, 0.99)},
          {"max", ratios.empty() ? 0.0 : ratios.back()},
          {"min", ratios.empty() ? 0.0 : ratios.front()}};
}

// The guard's figures (docs/runtime.md): counts from the runtime's monitor, bound / actual from the
// shadow exact copy's samples; the deterministic class beside a probabilistic one.
nlohmann::json guard_json(const proofs::CertifiedPrecisionMap& map, const runtime::GuardRecord& record,
                          const runtime::DecodeMonitor& m, double candidate_seconds) {
  std::vector<double> eps;
  for (const auto& e : map.layer_eps()) eps.push_back(proofs::rational_to_double(e));
  std::vector<double> ratios, deterministic_ratios;
  std::int64_t float_only = 0, below_floor = 0;
  double actual_max = 0.0, bound_max = 0.0;
  std::vector<std::int64_t> layer_rows(eps.size()), layer_within(eps.size());
  for (const auto& s : record.samples) {
    const double layer_eps = eps.at(static_cast<std::size_t>(s.layer));
    actual_max = std::max(actual_max, s.actual);
    bound_max = std::max(bound_max, s.bound);
    ++layer_rows[static_cast<std::size_t>(s.layer)];
    layer_within[static_cast<std::size_t>(s.layer)] += s.bound <= std::nextafter(layer_eps, 0.0) ? 1 : 0;
    if (s.float_only) {
      ++float_only;
    } else if (s.actual <= kGuardFloorFraction * layer_eps) {
      ++below_floor;
    } else {
      ratios.push_back(s.bound / s.actual);
      deterministic_ratios.push_back(s.deterministic / s.actual);
    }
  }
  nlohmann::json layers = nlohmann::json::array();
  for (std::size_t l = 0; l < eps.size(); ++l) {
    layers.push_back({{"layer", l}, {"eps", eps[l]}, {"rows", layer_rows[l]}, {"within_eps", layer_within[l]}});
  }
  const double rows = static_cast<double>(std::max<std::int64_t>(1, m.guard_rows));
  const double decode_seconds = candidate_seconds - m.guard_seconds - record.shadow_seconds;
  const nlohmann::json deterministic{{"within_eps", m.guard_deterministic_within},
                                     {"within_fraction", static_cast<double>(m.guard_deterministic_within) / rows},
                                     {"bound_over_actual", ratio_json(deterministic_ratios)}};
  return {{"kind", m.guard_probabilistic ? "probabilistic" : "deterministic"},
          {"delta", m.guard_delta},
          {"union_delta", m.guard_delta * static_cast<double>(m.guard_rows)},
          {"rows", m.guard_rows},
          {"within_eps", m.guard_within},
          {"within_fraction", static_cast<double>(m.guard_within) / rows},
          {"steps", m.guard_steps},
          {"steps_held", m.guard_steps_held},
          {"float_only_rows", float_only},
          {"floor_fraction_of_eps", kGuardFloorFraction},
          {"below_floor_rows", below_floor},
          {"bound_over_actual", ratio_json(ratios)},
          {"actual_max", actual_max},
          {"bound_max", bound_max},
          {"per_layer", layers},
          {"guard_seconds", m.guard_seconds},
          {"attention_seconds", m.attend_seconds},
          {"decode_seconds", decode_seconds},
          {"overhead_fraction", decode_seconds > 0.0 ? m.guard_seconds / decode_seconds : 0.0},
          {"deterministic", deterministic}};
}

std::string guard_text(const nlohmann::json& g) {
  const auto& r = g.at("bound_over_actual");
  const bool probabilistic = g.at("kind") == "probabilistic";
  std::string out = fmt::format(
      "  guard             {} of {} rows within eps ({:.2f} %), {}\n", g.at("within_eps").get<std::int64_t>(),
      g.at("rows").get<std::int64_t>(), 100.0 * g.at("within_fraction").get<double>(),
      probabilistic ? fmt::format("probabilistic: each row's bound holds with probability >= 1 - {:.3g} over the cache's "
                                  "seed (union over the rows: {:.3g}); not a proof",
                                  g.at("delta").get<double>(), g.at("union_delta").get<double>())
                    : std::string("deterministic (holds for every residual within the stored radii)"));
  if (probabilistic) {
    const auto& det = g.at("deterministic");
    const auto& dr = det.at("bound_over_actual");
    out += fmt::format("  deterministic     {} rows within eps ({:.2f} %); bound / actual median {:.3g}, p99 {:.3g}\n",
                       det.at("within_eps").get<std::int64_t>(), 100.0 * det.at("within_fraction").get<double>(),
                       dr.at("median").get<double>(), dr.at("p99").get<double>());
  }
  out += fmt::format("  bound / actual    median {:.3g}, p90 {:.3g}, p99 {:.3g}, max {:.3g} over {} rows (actual error above {} x eps; "
                     "{} rows reading only fp16/bf16 rows and {} below the floor left out)\n",
                     r.at("median").get<double>(), r.at("p90").get<double>(), r.at("p99").get<double>(),
                     r.at("max").get<double>(), r.at("rows").get<std::size_t>(), g.at("floor_fraction_of_eps").get<double>(),
                     g.at("float_only_rows").get<std::int64_t>(), g.at("below_floor_rows").get<std::int64_t>());
  out += fmt::format("  guard overhead    {:.1f} % of decode time (guard {:.2f} s, decode {:.2f} s; the shadow copy is eval's own cost)\n",
                     100.0 * g.at("overhead_fraction").get<double>(), g.at("guard_seconds").get<double>(),
                     g.at("decode_seconds").get<double>());
  return out;
}

std::string cache_text(const EvalCommandOptions& o, const proofs::CertifiedPrecisionMap& map,
                       const runtime::CandidateComparison& c, const runtime::DecodeMonitor& m) {
  std::string out = fmt::format("cache               {} (map {}, {} backend)\n", o.cache, map.map_sha256().substr(0, 12), o.backend);
  out += fmt::format("  witnesses         {}\n", m.unverified_witnesses
                                                    ? "NOT verified (--unattested): the bounds are the certificate's word"
                                                    : witness_word(map));
  out += fmt::format("  perplexity        {:.3f}\n", c.perplexity);
  out += fmt::format("  KL vs fp32 cache  {:.6f} nats per token (mean)\n", c.mean_kl);
  out += fmt::format("  top-1 agreement   {:.2f} %\n", 100.0 * c.top1_agreement);
  out += fmt::format("  stored            {:.3f} bits = {:.4f} bytes per K/V element (measured; the map says {:.3f} bits)\n",
                     measured_bits(m), measured_bits(m) / 8.0, proofs::map_bits_per_element(map.map()));
  if (m.bounded > 0) {
    out += fmt::format("  decode bound      max {:.4g}, mean {:.4g} (a-posteriori, L2 of the attention output error, {} rows)\n",
                       m.max_bound, m.sum_bound / static_cast<double>(m.bounded), m.bounded);
  }
  if (m.s2_checked > 0) {
    out += fmt::format("  outside S2        {} of {} attention rows ({:.1f} %)\n", m.outside_s2, m.s2_checked,
                       100.0 * static_cast<double>(m.outside_s2) / static_cast<double>(m.s2_checked));
  }
  return out;
}

int run_eval(const EvalCommandOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const auto dir = runtime::load_model_dir(o.model);
  const std::string text = runtime::read_text_file(o.text);
  auto ids = dir.tokenizer.encode(text, o.text);
  if (o.max_tokens < 0) throw proofs::bad_input("--max-tokens", "must not be negative");
  if (o.max_tokens > 0 && static_cast<std::int64_t>(ids.size()) > o.max_tokens) ids.resize(static_cast<std::size_t>(o.max_tokens));
  // Bits per byte are over the UTF-8 bytes the evaluated tokens spell.
  const auto bytes = static_cast<double>(dir.tokenizer.decode(ids).size());

  runtime::CacheFactory factory;
  std::optional<proofs::CertifiedPrecisionMap> map;
  auto monitor = std::make_shared<runtime::DecodeMonitor>();
  auto guard_record = std::make_shared<runtime::GuardRecord>();
  std::shared_ptr<const runtime::S2Reference> s2;
  runtime::EvalOptions eval = o.eval;
  bool guard = o.guard;
  if (!o.cache.empty()) {
    map = certified_map(o);
    if (map->policy()) {
      // What a policy certifies is the cache state of each step: decode token by token, and guard it.
      eval.decode = guard = true;
      std::fprintf(stderr, "eval: %s certifies a precision policy: token-by-token decode, guard on\n", o.cache.c_str());
    }
    eval.decode = eval.decode || o.decode;
    if (!o.trace.empty()) s2 = std::make_shared<const runtime::S2Reference>(s2_reference(o.trace, map->scope()));
    runtime::MixedKvCacheOptions cache_options;
    cache_options.backend = o.backend == "reference" ? runtime::DecodeBackend::kReference : runtime::DecodeBackend::kCpu;
    cache_options.monitor_bounds = o.bounds;
    cache_options.monitor = monitor;
    cache_options.allow_unverified_witnesses = o.witnesses.unattested;
    if (guard) cache_options.guard = runtime::GuardMode::kMonitor;
    factory = [&map, cache_options, s2, guard, guard_record](const runtime::KvCacheShape& shape, std::int64_t capacity) {
      auto cache = std::make_unique<runtime::MixedKvCache>(*map, shape, capacity, cache_options);
      if (s2) cache->set_s2_reference(*s2);
      if (guard) return std::unique_ptr<runtime::KvCache>(std::make_unique<runtime::ShadowedCache>(std::move(cache), guard_record));
      return std::unique_ptr<runtime::KvCache>(std::move(cache));
    };
    // Bad input (a map for another shape) fails here, before the first window runs.
    (void)factory(dir.model.cache_shape(), 1);
    *monitor = runtime::DecodeMonitor{};
  }

  Progress progress("eval " + o.text, 0);
  const auto result = runtime::evaluate_perplexity(
      dir.model, ids, dir.tokenizer.bos_id(), eval, factory, [&](std::int64_t done, std::int64_t total) {
        progress.update(static_cast<std::uint64_t>(done), static_cast<std::uint64_t>(total));
      });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double bits_per_byte = result.nll_nats / std::log(2.0) / bytes;

  if (o.json || !o.json_out.empty()) {
    nlohmann::json j{{"model", o.model},
                     {"text", o.text},
                     {"tokens", result.tokens},
                     {"bytes", bytes},
                     {"windows", result.windows},
                     {"context", o.eval.context},
                     {"stride", o.eval.stride},
                     {"perplexity", result.perplexity},
                     {"bits_per_byte", bits_per_byte},
                     {"unigram_perplexity", result.unigram_perplexity},
                     {"seconds", seconds}};
    j["decode"] = eval.decode ? "token by token" : "prefill";
    if (result.candidate) {
      j["cache"] = cache_json(o, *map, *result.candidate, *monitor);
      if (guard) j["cache"]["guard"] = guard_json(*map, *guard_record, *monitor, result.candidate_seconds);
    }
    const std::string json = j.dump(2) + "\n";
    if (!o.json_out.empty()) proofs::write_text_atomically(o.json_out, json);
    if (o.json) {
      std::fputs(json.c_str(), stdout);
      return 0;
    }
  }
  std::string out = fmt::format("model               {}\n", o.model);
  out += fmt::format("text                {} ({} tokens, {} bytes)\n", o.text, result.tokens, bytes);
  out += fmt::format("windows             {} (context {}, stride {})\n", result.windows, o.eval.context, o.eval.stride);
  out += fmt::format("perplexity          {:.3f}\n", result.perplexity);
  out += fmt::format("bits per byte       {:.4f}\n", bits_per_byte);
  out += fmt::format("unigram perplexity  {:.3f} (add-one, fitted on this text; {:.2f}x the model's)\n",
                     result.unigram_perplexity, result.unigram_perplexity / result.perplexity);
  out += fmt::format("decode              {}\n", eval.decode ? "token by token" : "one prefill per window");
  if (result.candidate) out += cache_text(o, *map, *result.candidate, *monitor);
  if (result.candidate && guard) out += guard_text(guard_json(*map, *guard_record, *monitor, result.candidate_seconds));
  out += fmt::format("time                {:.1f} s ({:.0f} tokens/s)\n", seconds, static_cast<double>(result.tokens) / seconds);
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

void register_eval(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<EvalCommandOptions>();
  CLI::App* cmd = app.add_subcommand("eval", "Perplexity and bits per byte of a model on a text (sliding windows)");
  cmd->add_option("--model", options->model, "Model folder (config.json, model.safetensors, tokenizer.model)")->required();
  cmd->add_option("--text", options->text, "UTF-8 text file")->required();
  cmd->add_option("--ctx", options->eval.context, "Tokens per window, BOS included")->capture_default_str();
  cmd->add_option("--stride", options->eval.stride, "New tokens scored per window")->capture_default_str();
  cmd->add_option("--max-tokens", options->max_tokens, "Evaluate only the first N tokens (0: all)")->capture_default_str();
  cmd->add_flag("--json", options->json, "Print as JSON");
  cmd->add_option("--json-out", options->json_out, "Also write the JSON to this file (for hnf-verify report --eval)");
  cmd->add_option("--cache", options->cache,
                  "Certificate (from certify): also run every window through a mixed-precision cache of its map and "
                  "report perplexity, KL and top-1 agreement against the fp32 cache, and the measured bytes per element. "
                  "The certificate is re-checked against --model first");
  cmd->add_option("--trace", options->trace,
                  "With --cache: the certificate's trace (hash checked); counts attention rows outside the S2 neighbourhood");
  cmd->add_flag("--recompute", options->witnesses.recompute,
                "With --cache and --trace: re-derive the certificate's witnesses from the trace (an analysis) first");
  add_witness_options(cmd, options->witnesses, /*opt_out=*/true);
  cmd->add_flag("--bounds", options->bounds, "With --cache: an a-posteriori error bound for every attention row (slower)");
  cmd->add_flag("--guard", options->guard,
                "With --cache: the runtime guard on every attention row (deterministic bound against epsilon), measured "
                "against a shadow exact copy of the cache's keys and values (always on for a policy certificate)");
  cmd->add_flag("--decode", options->decode,
                "Token-by-token decode instead of one prefill per window (always on for a policy certificate)");
  cmd->add_option("--backend", options->backend, "With --cache: decode backend")
      ->check(CLI::IsMember({"cpu", "reference"}))
      ->capture_default_str();
  cmd->callback([options, exit_code] {
    if (options->cache.empty() && (!options->trace.empty() || options->bounds || options->guard)) {
      throw proofs::bad_input(!options->trace.empty() ? "--trace" : options->bounds ? "--bounds" : "--guard", "needs --cache");
    }
    if (options->cache.empty() && (options->witnesses.recompute || options->witnesses.unattested ||
                                   !options->witnesses.attestations.empty())) {
      throw proofs::bad_input("--recompute/--attestation/--unattested", "needs --cache");
    }
    *exit_code = run_eval(*options);
  });
}

}  // namespace hnf::verify::cli
