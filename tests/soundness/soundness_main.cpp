// hnf-soundness: checks the analysis bounds against attention recomputed with MPFR.
//
// For each trace and each map kind, runs analyze_trace, then independently re-quantizes K and
// V with the map's formats (proofs::quantize_block, the reference quantizer), recomputes the
// attention-output error ||o_hat - o|| of every analysed (layer, head, query) with MPFR, and
// counts the cases where a bound is below it:
//   S1  at the recorded query;
//   S2  at the recorded query and at random queries in the ball of radius R around it;
//   S3  at random queries with ||q|| <= Q at the same position.
// Prints one line per (trace, map) with case counts, violations and the sharpness
// (bound / actual: median, p90); exits 1 if any bound was violated or any of S1, S2, S2-ball, S3
// checked zero cases for a (trace, map) (a check that ran on nothing proves nothing), 3 on bad
// input.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "hnf/analysis/analysis_report.h"
#include "hnf/analysis/analyze.h"
#include "hnf/analysis/high_precision.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/format.h"
#include "hnf/proofs/safetensors.h"

namespace {

using hnf::proofs::Format;

struct Tally {
  std::int64_t cases = 0;
  std::int64_t violations = 0;
  std::vector<double> ratios;
  std::string first_violation;

  void check(double bound, double actual, const std::string& where) {
    ++cases;
    if (!(bound >= actual)) {
      if (violations++ == 0) first_violation = fmt::format("{}: bound {:.17g} < actual {:.17g}", where, bound, actual);
    }
    if (actual > 0.0) ratios.push_back(bound / actual);
  }
};

std::vector<float> rows_of(const hnf::analysis::Trace& trace, const hnf::proofs::TensorInfo& t, std::int64_t outer) {
  const auto bytes = trace.file().bytes(t);
  const auto n = static_cast<std::uint64_t>(t.shape[1] * t.shape[2]);
  std::vector<float> out(n);
  for (std::uint64_t i = 0; i < n; ++i)
    out[i] = hnf::proofs::load_float(trace.dtype(), bytes.data(), static_cast<std::uint64_t>(outer) * n + i);
  return out;
}

std::vector<double> quantized(const std::vector<float>& x, std::size_t tokens, std::size_t d, std::size_t block,
                              const std::vector<Format>& formats) {
  std::vector<double> out(x.size()), radius(x.size());
  for (std::size_t u = 0; u < formats.size(); ++u) {
    const std::size_t first = u * block, rows = std::min(block, tokens - first);
    hnf::proofs::quantize_block(formats[u], std::span(x).subspan(first * d, rows * d), rows, d,
                                std::span(out).subspan(first * d, rows * d),
                                std::span(radius).subspan(first * d, rows * d));
  }
  return out;
}

// A uniformly random point of the ball of radius r around q (direction Gaussian, radius r U^(1/d)),
// or on its sphere when `surface`.
std::vector<double> in_ball(const std::vector<double>& q, double r, bool surface, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<double> e(q.size());
  double norm = 0.0;
  for (double& x : e) {
    x = normal(rng);
    norm += x * x;
  }
  norm = std::sqrt(norm);
  const double scale = surface ? r : r * std::pow(uniform(rng), 1.0 / static_cast<double>(q.size()));
  // Shrink by a hair so rounding never puts the point outside the ball.
  const double factor = scale * (1.0 - 1e-12) / norm;
  std::vector<double> out(q);
  for (std::size_t i = 0; i < q.size(); ++i) out[i] += e[i] * factor;
  return out;
}

// An adversarial trace: every query is aligned with the key at position 0 (an attention sink
// of weight ~1), every 37th key is a milder spike along the same direction, the other keys are
// noise with outlier channels; values carry an outlier channel. F32, rope "none"-free layout.
void write_spike_trace(const std::string& out) {
  const hnf::analysis::TraceShape shape{.num_layers = 2, .num_heads = 4, .num_kv_heads = 2, .num_tokens = 256,
                                        .num_queries = 256, .head_dim = 64};
  auto metadata = hnf::analysis::make_trace_metadata({.model_id = "spike-test", .model_sha256 = "none",
                                                      .tokenizer = "none", .text_source = "synthetic",
                                                      .text_sha256 = "none", .num_tokens = shape.num_tokens,
                                                      .num_layers = shape.num_layers,
                                                      .dtype = hnf::proofs::Dtype::kF32, .rope_theta = 10000.0});
  const auto specs = hnf::analysis::trace_tensor_specs(shape, hnf::proofs::Dtype::kF32);
  hnf::proofs::SafetensorsWriter writer(out, specs, metadata);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::vector<double> u(64);
  double norm = 0.0;
  for (double& x : u) {
    x = normal(rng);
    norm += x * x;
  }
  for (double& x : u) x /= std::sqrt(norm);
  for (const auto& spec : specs) {
    const auto rows = static_cast<std::size_t>(spec.shape[0] * spec.shape[1]);
    std::vector<float> data(rows * 64);
    const bool is_q = spec.name.ends_with(".q");
    const bool is_v = spec.name.ends_with(".v");
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t position = r % static_cast<std::size_t>(spec.shape[1]);
      for (std::size_t c = 0; c < 64; ++c) {
        double x = normal(rng) * (c % 16 == 3 ? 4.0 : 1.0);
        if (is_q) x = 6.0 * u[c] + 0.3 * normal(rng);
        else if (!is_v && position == 0) x = 14.0 * u[c];
        else if (!is_v && position % 37 == 0) x += 9.0 * u[c];
        else if (is_v && c == 5) x *= 10.0;
        data[r * 64 + c] = static_cast<float>(x);
      }
    }
    writer.append(spec.name, std::as_bytes(std::span(data)));
  }
  writer.finish();
}

struct Options {
  std::vector<std::string> traces;
  std::vector<std::string> maps{"allocated", "random", "int2", "kivi2", "int8"};
  double eps = 0.05;
  std::int64_t last_queries = 16;
  std::int64_t query_stride = 0;
  int neighbours = 1;
  int precision = 128;
  std::uint64_t seed = 1;
};

// The fixed map of a kind, or none for "allocated".
void set_map(const std::string& kind, std::uint64_t seed, hnf::analysis::AnalysisOptions& a) {
  auto uniform = [&](const char* k, const char* v) {
    a.fixed_map = [kf = *hnf::proofs::parse_format(k), vf = *hnf::proofs::parse_format(v)](
                      std::int64_t, std::int64_t, std::size_t units, std::vector<Format>& keys,
                      std::vector<Format>& values) {
      keys.assign(units, kf);
      values.assign(units, vf);
    };
  };
  if (kind == "allocated") return;
  if (kind == "int2") return uniform("int2-d32", "int2-d32");
  if (kind == "kivi2") return uniform("int2-t16", "int2-d32");
  if (kind == "int8") return uniform("int8-d32", "int8-d32");
  if (kind == "random") {
    a.fixed_map = [seed](std::int64_t layer, std::int64_t kv_head, std::size_t units, std::vector<Format>& keys,
                         std::vector<Format>& values) {
      std::mt19937_64 rng(seed * 1000003u + static_cast<std::uint64_t>(layer * 131 + kv_head));
      std::vector<Format> key_choices, value_choices;
      for (const auto& f : hnf::proofs::format_vocabulary(64)) {
        if (f.axis != hnf::proofs::GroupAxis::kTokens) value_choices.push_back(f);
        if (f.axis != hnf::proofs::GroupAxis::kTokens || f.group_size == 16) key_choices.push_back(f);
      }
      keys.clear();
      values.clear();
      for (std::size_t u = 0; u < units; ++u) {
        keys.push_back(key_choices[rng() % key_choices.size()]);
        values.push_back(value_choices[rng() % value_choices.size()]);
      }
    };
    return;
  }
  throw hnf::proofs::bad_input("--maps", "unknown map kind '" + kind + "' (allocated, random, int2, kivi2, int8)");
}

int run(const Options& o) {
  std::int64_t total_cases = 0, total_violations = 0, empty_checks = 0;
  for (const auto& path : o.traces) {
    for (const auto& kind : o.maps) {
      hnf::analysis::AnalysisOptions a;
      a.eps = o.eps;
      a.last_queries = o.last_queries;
      a.query_stride = o.query_stride;
      set_map(kind, o.seed, a);
      const auto result = hnf::analysis::analyze_trace(path, a);
      const auto trace = hnf::analysis::Trace::open(path);
      const auto& shape = trace.shape();
      const auto d = static_cast<std::size_t>(shape.head_dim);
      const auto tokens = static_cast<std::size_t>(shape.num_tokens);
      const auto block = static_cast<std::size_t>(a.block);
      const auto& positions = trace.query_positions();
      Tally s1, s2, s2_ball, s3;
      for (const auto& head : result.heads) {
        const auto& layer = trace.layers()[static_cast<std::size_t>(head.layer)];
        const auto kf = rows_of(trace, *layer.k, head.kv_head);
        const auto vf = rows_of(trace, *layer.v, head.kv_head);
        const std::vector<double> k(kf.begin(), kf.end()), v(vf.begin(), vf.end());
        const auto kq = quantized(kf, tokens, d, block, head.key_formats);
        const auto vq = quantized(vf, tokens, d, block, head.value_formats);
        std::vector<std::vector<float>> q_rows;
        const std::int64_t group = shape.num_heads / shape.num_kv_heads;
        for (std::int64_t g = 0; g < group; ++g) q_rows.push_back(rows_of(trace, *layer.q, head.kv_head * group + g));
        const auto n_queries = head.queries.size();
        std::vector<Tally> t1(n_queries), t2(n_queries), t2b(n_queries), t3(n_queries);
#pragma omp parallel for schedule(dynamic)
        for (std::size_t i = 0; i < n_queries; ++i) {
          const auto& qb = head.queries[i];
          const auto idx = static_cast<std::size_t>(
              std::lower_bound(positions.begin(), positions.end(), qb.position) - positions.begin());
          const auto& rows = q_rows[static_cast<std::size_t>(qb.head - head.kv_head * group)];
          const std::vector<double> q(rows.begin() + static_cast<std::ptrdiff_t>(idx * d),
                                      rows.begin() + static_cast<std::ptrdiff_t>((idx + 1) * d));
          const auto n = static_cast<std::size_t>(qb.position) + 1;
          auto actual = [&](const std::vector<double>& query) {
            return hnf::analysis::attention_difference_norm_mpfr(query, std::span(kq).first(n * d),
                                                                  std::span(vq).first(n * d), std::span(k).first(n * d),
                                                                  std::span(v).first(n * d), d, o.precision);
          };
          const std::string where = fmt::format("{} map {} layer {} head {} position {}", path, kind, head.layer,
                                                qb.head, qb.position);
          const double at_q = actual(q);
          t1[i].check(qb.s1, at_q, where + " S1");
          t2[i].check(qb.s2, at_q, where + " S2 centre");
          std::mt19937_64 rng(o.seed ^ (static_cast<std::uint64_t>(head.layer) << 40) ^
                              (static_cast<std::uint64_t>(qb.head) << 32) ^ static_cast<std::uint64_t>(qb.position));
          for (int r = 0; r < o.neighbours; ++r) {
            const auto q2 = in_ball(q, head.s2_radius, r % 2 == 1, rng);
            t2b[i].check(qb.s2, actual(q2), where + " S2 ball");
            // S3: a query of norm up to Q in a random direction.
            const std::vector<double> zero(d, 0.0);
            const auto q3 = in_ball(zero, head.s3_query_norm, r % 2 == 0, rng);
            t3[i].check(head.s3, actual(q3), where + " S3");
          }
        }
        for (std::size_t i = 0; i < n_queries; ++i) {
          for (auto [from, to] : {std::pair{&t1[i], &s1}, {&t2[i], &s2}, {&t2b[i], &s2_ball}, {&t3[i], &s3}}) {
            to->cases += from->cases;
            if (from->violations > 0 && to->violations == 0) to->first_violation = from->first_violation;
            to->violations += from->violations;
            to->ratios.insert(to->ratios.end(), from->ratios.begin(), from->ratios.end());
          }
        }
      }
      std::string line = fmt::format("{} map {:<9} eps {:g} bits {:.3f}:", path, kind, o.eps, result.bits_per_element);
      for (auto [name, t] : {std::pair{"S1", &s1}, {"S2", &s2}, {"S2-ball", &s2_ball}, {"S3", &s3}}) {
        const auto st = hnf::analysis::ratio_stats(t->ratios);
        line += fmt::format("  {} {} cases {} violations (ratio median {:.4g} p90 {:.4g})", name, t->cases,
                            t->violations, st.median, st.p90);
        total_cases += t->cases;
        total_violations += t->violations;
      }
      std::puts(line.c_str());
      for (const auto* t : {&s1, &s2, &s2_ball, &s3})
        if (t->violations > 0) std::printf("  VIOLATION %s\n", t->first_violation.c_str());
      for (auto [name, t] : {std::pair{"S1", &s1}, {"S2", &s2}, {"S2-ball", &s2_ball}, {"S3", &s3}}) {
        if (t->cases > 0) continue;
        ++empty_checks;
        std::printf("  NO CASES %s map %s: %s was checked on zero cases\n", path.c_str(), kind.c_str(), name);
      }
      std::fflush(stdout);
    }
  }
  std::printf("total: %lld cases, %lld violations, %lld checks with zero cases\n", static_cast<long long>(total_cases),
              static_cast<long long>(total_violations), static_cast<long long>(empty_checks));
  return total_violations == 0 && empty_checks == 0 && total_cases > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Check the analysis bounds (S1, S2, S3) against MPFR recomputation of the quantized attention"};
  Options o;
  std::string maps;
  app.add_option("traces", o.traces, "Trace files")->required();
  app.add_option("--eps", o.eps, "Budget for the allocated map")->capture_default_str();
  app.add_option("--maps", maps, "Comma-separated map kinds: allocated, random, int2, kivi2, int8 (default: all)");
  app.add_option("--last-queries", o.last_queries, "Analysed queries: the newest N ...")->capture_default_str();
  app.add_option("--query-stride", o.query_stride, "... plus every S-th (0: automatic)")->capture_default_str();
  app.add_option("--neighbours", o.neighbours, "Random S2-ball and S3 queries per analysed query")->capture_default_str();
  app.add_option("--precision", o.precision, "MPFR precision in bits")->capture_default_str();
  app.add_option("--seed", o.seed, "Random seed")->capture_default_str();
  std::string spike_out;
  app.add_option("--write-spike-trace", spike_out, "Write the adversarial spike trace here and exit");
  app.allow_extras(false);
  o.traces.clear();
  app.get_option("traces")->required(false);
  CLI11_PARSE(app, argc, argv);
  if (!spike_out.empty()) {
    try {
      write_spike_trace(spike_out);
      return 0;
    } catch (const hnf::proofs::Error& e) {
      std::fprintf(stderr, "hnf-soundness: %s\n", e.what());
      return static_cast<int>(e.exit_code());
    }
  }
  if (o.traces.empty()) {
    std::fputs("hnf-soundness: give at least one trace\n", stderr);
    return 3;
  }
  if (!maps.empty()) {
    o.maps.clear();
    std::stringstream ss(maps);
    for (std::string m; std::getline(ss, m, ',');) o.maps.push_back(m);
  }
  try {
    return run(o);
  } catch (const hnf::proofs::Error& e) {
    std::fprintf(stderr, "hnf-soundness: %s\n", e.what());
    return static_cast<int>(e.exit_code());
  }
}
