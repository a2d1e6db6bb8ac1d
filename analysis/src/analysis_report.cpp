#include "hnf/analysis/analysis_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iterator>
#include <map>
#include <type_traits>

#include "hnf/proofs/error.h"

namespace hnf::analysis {
namespace {

double unit_bits(const proofs::Format& f, double rows, double d) {
  // Mirrors analyze.cpp's byte accounting for a full block (the report's per-format share).
  return proofs::storage_bits_per_element(f) * rows * d;
}

std::vector<std::pair<std::string, double>> shares(const std::vector<const std::vector<proofs::Format>*>& maps) {
  std::map<std::string, double> counts;
  double total = 0.0;
  for (const auto* m : maps) {
    for (const auto& f : *m) {
      counts[proofs::format_name(f)] += 1.0;
      total += 1.0;
    }
  }
  std::vector<std::pair<std::string, double>> out(counts.begin(), counts.end());
  for (auto& [name, share] : out) share /= std::max(total, 1.0);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

nlohmann::json ratio_json(const RatioStats& r) {
  return {{"count", r.count}, {"median", r.median}, {"p90", r.p90}, {"max", r.max}};
}

std::string share_text(const std::vector<std::pair<std::string, double>>& s) {
  std::string out;
  for (const auto& [name, share] : s) out += fmt::format("{} {:.1f}%  ", name, 100.0 * share);
  return out;
}

}  // namespace

RatioStats ratio_stats(std::vector<double> ratios) {
  RatioStats r;
  r.count = static_cast<std::int64_t>(ratios.size());
  if (ratios.empty()) return r;
  std::sort(ratios.begin(), ratios.end());
  auto at = [&](double q) { return ratios[static_cast<std::size_t>(q * static_cast<double>(ratios.size() - 1))]; };
  r.median = at(0.5);
  r.p90 = at(0.9);
  r.max = ratios.back();
  return r;
}

AnalysisSummary summarize(const AnalysisResult& result) {
  AnalysisSummary s;
  std::vector<double> s1, s2, s3, holdout;
  std::vector<const std::vector<proofs::Format>*> keys, values;
  double key_bits = 0.0, value_bits = 0.0, elements = 0.0;
  const auto d = static_cast<double>(result.shape.head_dim);
  const auto tokens = static_cast<std::size_t>(result.shape.num_tokens);
  const auto block = static_cast<std::size_t>(result.options.block);
  for (const auto& h : result.heads) {
    for (const auto& q : h.queries) {
      if (q.actual_lo <= 0.0) continue;
      s1.push_back(q.s1 / q.actual_lo);
      s2.push_back(q.s2 / q.actual_lo);
      s3.push_back(h.s3 / q.actual_lo);
    }
    holdout.insert(holdout.end(), h.holdout_ratios.begin(), h.holdout_ratios.end());
    s.holdout_total += h.holdout_total;
    s.holdout_inside += h.holdout_inside;
    keys.push_back(&h.key_formats);
    values.push_back(&h.value_formats);
    for (std::size_t u = 0; u < h.key_formats.size(); ++u) {
      const auto rows = static_cast<double>(std::min(block, tokens - u * block));
      key_bits += unit_bits(h.key_formats[u], rows, d);
      value_bits += unit_bits(h.value_formats[u], rows, d);
    }
    elements += static_cast<double>(tokens) * d;
  }
  s.s1 = ratio_stats(std::move(s1));
  s.s2 = ratio_stats(std::move(s2));
  s.s3 = ratio_stats(std::move(s3));
  s.holdout = ratio_stats(std::move(holdout));
  s.key_bits = elements > 0 ? key_bits / elements : 0.0;
  s.value_bits = elements > 0 ? value_bits / elements : 0.0;
  s.key_format_share = shares(keys);
  s.value_format_share = shares(values);
  return s;
}

nlohmann::json analysis_to_json(const AnalysisResult& r, bool with_positions) {
  const AnalysisSummary s = summarize(r);
  const auto& o = r.options;
  nlohmann::json j;
  j["format"] = "hnf-analysis";
  j["format_version"] = 1;
  j["trace"] = r.trace_path;
  j["shape"] = {{"layers", r.shape.num_layers}, {"heads", r.shape.num_heads}, {"kv_heads", r.shape.num_kv_heads},
                {"tokens", r.shape.num_tokens}, {"recorded_queries", r.shape.num_queries},
                {"head_dim", r.shape.head_dim}};
  j["options"] = {{"eps", o.eps ? nlohmann::json(*o.eps) : nlohmann::json(nullptr)},
                  {"bits", o.bits ? nlohmann::json(*o.bits) : nlohmann::json(nullptr)}, {"layer_eps", o.layer_eps},
                  {"last_queries", o.last_queries}, {"query_stride", r.query_stride}, {"block", o.block},
                  {"s2_quantile", o.s2_quantile}, {"delta_cap", o.delta_cap}, {"model", o.model}, {"holdout_trace", o.holdout_trace}};
  j["query_positions"] = r.query_positions;
  j["allocated"] = !static_cast<bool>(o.fixed_map);
  j["eps"] = r.eps;
  j["feasible"] = r.feasible;
  j["min_feasible_eps"] = r.min_feasible_eps;
  j["infeasible"] = r.infeasible;
  j["bits_per_element"] = r.bits_per_element;
  j["key_bits_per_element"] = s.key_bits;
  j["value_bits_per_element"] = s.value_bits;
  // null when some head's map was not allocated (a uniform baseline won, or a given map).
  j["lower_bound_bits"] = std::isnan(r.lower_bound_bits) ? nlohmann::json(nullptr) : nlohmann::json(r.lower_bound_bits);
  j["optimality_gap_bits"] = std::isnan(r.lower_bound_bits) ? nlohmann::json(nullptr)
                                                            : nlohmann::json(r.bits_per_element - r.lower_bound_bits);
  j["obstruction_bits_keys"] = r.obstruction_bits;
  j["sharpness"] = {{"s1", ratio_json(s.s1)}, {"s2", ratio_json(s.s2)}, {"s3", ratio_json(s.s3)},
                    {"holdout", {{"total", s.holdout_total}, {"inside", s.holdout_inside},
                                 {"s2_over_actual", ratio_json(s.holdout)}}}};
  j["seconds"] = r.seconds;
  j["heads"] = nlohmann::json::array();
  for (const auto& h : r.heads) {
    nlohmann::json hj;
    hj["layer"] = h.layer;
    hj["kv_head"] = h.kv_head;
    hj["map_source"] = h.map_source;
    hj["eps"] = h.eps;
    std::vector<std::string> kf, vf;
    for (const auto& f : h.key_formats) kf.push_back(proofs::format_name(f));
    for (const auto& f : h.value_formats) vf.push_back(proofs::format_name(f));
    hj["key_formats"] = kf;
    hj["value_formats"] = vf;
    hj["bytes"] = h.bytes;
    hj["lower_bound_bytes"] = h.lower_bound_bytes;
    hj["model_budget"] = h.model_budget;
    hj["s2_radius"] = h.s2_radius;
    hj["s3_query_norm"] = h.s3_query_norm;
    hj["s3"] = h.s3;
    hj["obstruction_bits_keys"] = h.obstruction_bits;
    hj["holdout"] = {{"total", h.holdout_total}, {"inside", h.holdout_inside}};
    nlohmann::json qs = nlohmann::json::array();
    for (const auto& q : h.queries) {
      qs.push_back({{"head", q.head}, {"position", q.position}, {"s1", q.s1}, {"actual_lo", q.actual_lo},
                    {"s2", q.s2}, {"model", q.model}});
    }
    hj["queries"] = std::move(qs);
    const auto& p = h.positions;
    if (with_positions)
      hj["positions"] = {{"max_weight", p.max_weight}, {"mean_weight", p.mean_weight}, {"kappa", p.kappa},
                         {"lipschitz_k", p.lipschitz_k}, {"lipschitz_v", p.lipschitz_v},
                         {"diameter", p.diameter}, {"p_min", p.p_min}};
    j["heads"].push_back(std::move(hj));
  }
  return j;
}

namespace {

// One JSON array of numbers, written in pieces of about 64 KB (non-finite values as null, as
// nlohmann writes them).
template <class T>
void write_array(const std::vector<T>& values, const std::function<void(std::string_view)>& write) {
  std::string piece = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) piece += ',';
    if constexpr (std::is_floating_point_v<T>) {
      // As the double the value is (what nlohmann writes for a float too), shortest round trip.
      if (std::isfinite(values[i])) fmt::format_to(std::back_inserter(piece), "{}", static_cast<double>(values[i]));
      else piece += "null";
    } else {
      fmt::format_to(std::back_inserter(piece), "{}", values[i]);
    }
    if (piece.size() >= 65536) {
      write(piece);
      piece.clear();
    }
  }
  piece += ']';
  write(piece);
}

// The text of `object` without its closing brace, for more members to follow.
std::string open_object(const nlohmann::json& object) {
  std::string text = object.dump();
  HNF_ASSERT(text.size() >= 2 && text.back() == '}', "an object dumps as {...}");
  text.pop_back();
  return text;
}

}  // namespace

void write_analysis_json(const AnalysisResult& r, const std::function<void(std::string_view)>& write) {
  nlohmann::json j = analysis_to_json(r, false);
  const nlohmann::json heads = std::move(j["heads"]);
  j.erase("heads");
  write(open_object(j));
  write(R"(,"heads":[)");
  for (std::size_t i = 0; i < r.heads.size(); ++i) {
    if (i > 0) write(",");
    write(open_object(heads[i]));
    const auto& p = r.heads[i].positions;
    const char* separator = R"(,"positions":{)";
    auto member = [&](const char* name, const auto& values) {
      write(fmt::format(R"({}"{}":)", separator, name));
      write_array(values, write);
      separator = ",";
    };
    member("max_weight", p.max_weight);
    member("mean_weight", p.mean_weight);
    member("kappa", p.kappa);
    member("lipschitz_k", p.lipschitz_k);
    member("lipschitz_v", p.lipschitz_v);
    member("diameter", p.diameter);
    member("p_min", p.p_min);
    write("}}");
  }
  write("]}\n");
}

std::string summary_text(const AnalysisResult& r) {
  const AnalysisSummary s = summarize(r);
  const auto& sh = r.shape;
  std::string out;
  const std::size_t per_head = r.query_positions.size();
  out += fmt::format("analysis of {}: {} layers x {} kv heads ({} query heads), {} tokens, head_dim {}\n", r.trace_path,
                     sh.num_layers, sh.num_kv_heads, sh.num_heads, sh.num_tokens, sh.head_dim);
  out += fmt::format("queries: {} per query head (the newest {} recorded, plus the recorded ones at stride {}), allocation blocks of {} positions\n",
                     per_head, r.options.last_queries, r.query_stride, r.options.block);
  if (r.options.eps && !r.options.layer_eps.empty()) {
    std::string budgets;
    for (double e : r.options.layer_eps) budgets += (budgets.empty() ? "" : ", ") + fmt::format("{:.6g}", e);
    out += fmt::format("budget: per-layer eps {} on ||o_hat - o||_2 of every (head, query): {}\n", budgets,
                       r.feasible ? "met" : "INFEASIBLE");
  } else if (r.options.eps) {
    out += fmt::format("budget: eps = {:.6g} on ||o_hat - o||_2 of every (layer, head, query): {}\n", r.eps,
                       r.feasible ? "met" : "INFEASIBLE");
  } else {
    out += fmt::format("budget: {:.4g} bits per element: {}; achieved eps = {:.6g} (largest S1 bound)\n", *r.options.bits,
                       r.feasible ? "met" : "INFEASIBLE", r.eps);
  }
  if (!r.feasible) {
    if (r.options.eps) {
      out += fmt::format("  {} needs eps >= {:.6g}; over budget:\n",
                         r.options.fixed_map ? "the given map" : "the all-fp16 map", r.min_feasible_eps);
    }
    const std::size_t shown = std::min<std::size_t>(r.infeasible.size(), 10);
    for (std::size_t i = 0; i < shown; ++i) out += "  " + r.infeasible[i] + "\n";
    if (r.infeasible.size() > shown) out += fmt::format("  ... and {} more\n", r.infeasible.size() - shown);
  }
  out += fmt::format("map: {:.4f} bits per element (keys {:.4f}, values {:.4f}; scales, zero points and format ids included)\n",
                     r.bits_per_element, s.key_bits, s.value_bits);
  if (r.options.fixed_map) {
    out += "  (a given map: no allocation, no lower bound)\n";
  } else if (std::isnan(r.lower_bound_bits)) {
    out += "  no lower bound: in some heads a uniform baseline (or fp16) replaced the allocated map\n";
  } else if (r.feasible) {
    out += fmt::format("  Lagrangian lower bound for the same model and budget: {:.4f} bits (gap {:.4f})\n",
                       r.lower_bound_bits, r.bits_per_element - r.lower_bound_bits);
  }
  out += fmt::format("  obstruction minimum (Theorem 5.7, keys): {:.4f} bits per key element\n", r.obstruction_bits);
  out += "  keys:   " + share_text(s.key_format_share) + "\n";
  out += "  values: " + share_text(s.value_format_share) + "\n";
  out += "sharpness, bound / actual error over the recorded queries (actual error: rigorous lower bound)\n";
  out += fmt::format("  {:<34} {:>8} {:>10} {:>10} {:>10}\n", "scope", "cases", "median", "p90", "max");
  auto row = [&](const std::string& name, const RatioStats& st) {
    out += fmt::format("  {:<34} {:>8} {:>10.4g} {:>10.4g} {:>10.4g}\n", name, st.count, st.median, st.p90, st.max);
  };
  row("S1 recorded queries", s.s1);
  row("S2 ball of radius R (per head)", s.s2);
  row("S3 every query with ||q|| <= Q", s.s3);
  if (!r.options.holdout_trace.empty()) {
    out += fmt::format("held-out {}: {} of {} queries within R ({:.1f}%)\n", r.options.holdout_trace, s.holdout_inside,
                       s.holdout_total,
                       s.holdout_total > 0 ? 100.0 * static_cast<double>(s.holdout_inside) / static_cast<double>(s.holdout_total) : 0.0);
    row("S2 on held-out queries inside R", s.holdout);
  }
  out += fmt::format("{:>5} {:>7} {:>12} {:>12} {:>10} {:>12} {:>7}  {}\n", "layer", "kv head", "max S1", "max S2", "R", "S3",
                     "bits", "map");
  for (const auto& h : r.heads) {
    double m1 = 0.0, m2 = 0.0;
    for (const auto& q : h.queries) {
      m1 = std::max(m1, q.s1);
      m2 = std::max(m2, q.s2);
    }
    const double head_bits = 8.0 * h.bytes / static_cast<double>(2 * r.shape.num_tokens * r.shape.head_dim);
    out += fmt::format("{:>5} {:>7} {:>12.4g} {:>12.4g} {:>10.4g} {:>12.4g} {:>7.3f}  {}\n", h.layer, h.kv_head, m1, m2,
                       h.s2_radius, h.s3, head_bits, h.map_source);
  }
  out += "per position (keys): curvature kappa_t, obstruction bound p_min,t at the budget; the three positions of "
         "largest kappa\n";
  out += fmt::format("{:>5} {:>7} {:>12} {:>8} {:>8}  {}\n", "layer", "kv head", "max kappa", "mean p", "max p",
                     "top positions (kappa, max weight)");
  for (const auto& h : r.heads) {
    const auto& p = h.positions;
    std::vector<std::size_t> order(p.kappa.size());
    for (std::size_t t = 0; t < order.size(); ++t) order[t] = t;
    const std::size_t top = std::min<std::size_t>(3, order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(top), order.end(),
                      [&](std::size_t a, std::size_t b) { return p.kappa[a] > p.kappa[b]; });
    std::string tops;
    for (std::size_t i = 0; i < top; ++i)
      tops += fmt::format("{}{} ({:.3g}, {:.3f})", i ? "; " : "", order[i], p.kappa[order[i]], p.max_weight[order[i]]);
    const int max_p = p.p_min.empty() ? 0 : *std::max_element(p.p_min.begin(), p.p_min.end());
    out += fmt::format("{:>5} {:>7} {:>12.4g} {:>8.3f} {:>8}  {}\n", h.layer, h.kv_head,
                       top > 0 ? p.kappa[order[0]] : 0.0, h.obstruction_bits, max_p, tops);
  }
  out += fmt::format("time: {:.2f} s\n", r.seconds);
  return out;
}

}  // namespace hnf::analysis
