#include "hnf/reports/certificate_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"
#include "hnf/proofs/format.h"
#include "hnf/reports/markdown_table.h"
#include "hnf/reports/text.h"

namespace hnf::reports {
namespace {

using proofs::Obligation;
using proofs::ObligationKind;

// Columns of the Markdown heatmap (a table must stay readable).
constexpr std::size_t kMarkdownColumns = 16;
// Columns of the HTML heatmap (an SVG of at most this many cells per row).
constexpr std::size_t kHtmlColumns = 512;

double storage_bits(const proofs::Format& f) { return proofs::storage_bits_per_element(f); }

ObligationFacts sufficiency_facts(const Obligation& o, ObligationFacts f) {
  f.inequalities = o.sufficiency.size();
  const proofs::SufficiencyRow* worst = nullptr;
  for (const auto& row : o.sufficiency) {
    if (worst == nullptr || proofs::compare_rationals(row.bound, worst->bound) > 0) worst = &row;
  }
  if (worst != nullptr) {
    f.worst = proofs::rational_to_double(worst->bound);
    f.margin = f.budget - f.worst;
    f.worst_at = fmt::format("kv head {}, query head {}, position {}", worst->kv_head, worst->head, worst->position);
  }
  return f;
}

ObligationFacts necessity_facts(const Obligation& o, ObligationFacts f) {
  f.inequalities = o.necessity.size();
  f.below = o.below.size();
  std::vector<bool> is_below(o.necessity.size(), false);
  for (const auto i : o.below) {
    if (i >= 0 && static_cast<std::size_t>(i) < is_below.size()) is_below[static_cast<std::size_t>(i)] = true;
  }
  const double log2_eight_eps = std::log2(8.0 * f.budget);
  double least = std::numeric_limits<double>::infinity();
  for (std::size_t r = 0; r < o.necessity.size(); ++r) {
    if (is_below[r]) continue;
    const double kd2 = proofs::rational_to_double(o.necessity[r].kappa_d2);
    if (kd2 <= 0.0) continue;  // holds at any precision
    const double headroom = log2_eight_eps + 2.0 * o.necessity[r].bits - std::log2(kd2);
    if (headroom < least) {
      least = headroom;
      f.worst_at = fmt::format("kv head {}, position {}", o.necessity[r].kv_head, o.necessity[r].position);
    }
  }
  f.min_log2_headroom = std::isinf(least) ? 0.0 : least;
  return f;
}

// Refuted and open obligations get their detail listed; proved ones and figures do not.
bool needs_explaining(const ObligationFacts& o) {
  return o.verdict != "proved" && o.verdict != "diagnostic" && o.verdict != "recorded";
}

// The verdict column: how the obligation counts (proofs::obligation_standing), with the
// solver's unknown/timeout kept apart.
std::string shown_verdict(const proofs::Certificate& c, const Obligation& o) {
  const proofs::Standing standing = proofs::obligation_standing(c, o);
  return standing == proofs::Standing::kOpen ? std::string(proofs::verdict_name(o.verdict))
                                             : std::string(proofs::standing_name(standing));
}

ObligationFacts obligation_facts(const proofs::Certificate& c, const Obligation& o) {
  ObligationFacts f;
  f.name = o.name;
  f.kind = std::string(proofs::obligation_kind_name(o.kind));
  f.verdict = shown_verdict(c, o);
  f.layer = o.layer;
  f.budget = proofs::rational_to_double(o.budget);
  f.example = o.example;
  f.detail = o.detail;
  f.smt_file = o.smt_file;
  switch (o.kind) {
    case ObligationKind::kSufficiency: return sufficiency_facts(o, f);
    case ObligationKind::kNecessity: return necessity_facts(o, f);
    case ObligationKind::kComposition: {
      f.inequalities = 1;
      // Empty when the lists disagree in length (a rejected certificate, still reported).
      const std::string total = proofs::composed_bound(o);
      if (!total.empty()) {
        f.worst = proofs::rational_to_double(total);
        f.margin = f.budget - f.worst;
      }
      return f;
    }
  }
  return f;
}

ObstructionFacts obstruction_facts(const proofs::Certificate& c) {
  ObstructionFacts f;
  double min_sum = 0.0, map_sum = 0.0;
  for (const auto& o : c.obligations) {
    if (o.kind != ObligationKind::kNecessity) continue;
    // The obstruction needs a positive budget; a rejected certificate (still reported) may not
    // have one, and then has no obstruction figures.
    if (proofs::compare_rationals(o.budget, "0") <= 0) continue;
    for (const auto& row : o.necessity) {
      const int needed = proofs::necessity_min_bits(row.kappa_d2, o.budget);
      min_sum += needed;
      map_sum += row.bits;
      f.below += row.bits < needed ? 1 : 0;
      ++f.rows;
    }
  }
  if (f.rows > 0) {
    f.mean_min_bits = min_sum / static_cast<double>(f.rows);
    f.mean_map_bits = map_sum / static_cast<double>(f.rows);
  }
  return f;
}

std::string percent(double x) { return fmt::format("{:.2f} %", 100.0 * x); }
std::string sci(double x) { return fmt::format("{:.4g}", x); }

std::string upper(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

std::string hash_or(const std::string& h, const std::string& absent) { return h.empty() ? absent : h; }

// ---- Colours of the heatmap -------------------------------------------------------------------

struct Rgb {
  double r, g, b;
};
// Bits -> colour on a log2 scale from 2 to 16 bits (dark blue: few bits, yellow: fp16).
std::string bits_colour(double bits) {
  static constexpr Rgb kStops[] = {{0.267, 0.005, 0.329}, {0.231, 0.322, 0.545}, {0.129, 0.569, 0.549},
                                   {0.369, 0.788, 0.384}, {0.992, 0.906, 0.145}};
  const double t = std::clamp((std::log2(std::max(bits, 1.0)) - 1.0) / 3.0, 0.0, 1.0);  // log2 2 = 1 .. log2 16 = 4
  const double x = t * 4.0;
  const auto i = std::min<std::size_t>(3, static_cast<std::size_t>(x));
  const double u = x - static_cast<double>(i);
  const Rgb a = kStops[i], b = kStops[i + 1];
  const auto channel = [u](double p, double q) { return static_cast<int>(std::lround(255.0 * (p + (q - p) * u))); };
  return fmt::format("#{:02x}{:02x}{:02x}", channel(a.r, b.r), channel(a.g, b.g), channel(a.b, b.b));
}

std::string heatmap_svg(const Heatmap& h) {
  const std::size_t cols = h.column_first.size();
  const double cell_w = cols == 0 ? 0.0 : std::clamp(960.0 / static_cast<double>(cols), 1.0, 24.0);
  constexpr double kCellH = 18.0, kLabelW = 130.0, kTop = 4.0, kLegendH = 46.0;
  const double width = kLabelW + cell_w * static_cast<double>(cols) + 10.0;
  const double height = kTop + kCellH * static_cast<double>(h.row_labels.size()) + kLegendH;
  std::string s = fmt::format(
      "<svg id=\"heatmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" "
      "viewBox=\"0 0 {0:.0f} {1:.0f}\" style=\"max-width:100%;height:auto\" role=\"img\" "
      "aria-label=\"bits per element by layer and position\">\n",
      width, height);
  for (std::size_t r = 0; r < h.row_labels.size(); ++r) {
    const double y = kTop + kCellH * static_cast<double>(r);
    s += fmt::format("<text x=\"{:.0f}\" y=\"{:.1f}\" text-anchor=\"end\" font-size=\"12\">{}</text>\n", kLabelW - 6.0,
                     y + 13.0, xml_escape(h.row_labels[r]));
    for (std::size_t c = 0; c < cols; ++c) {
      const double bits = h.bits[r][c];
      s += fmt::format(
          "<rect class=\"cell\" x=\"{:.2f}\" y=\"{:.1f}\" width=\"{:.2f}\" height=\"{:.1f}\" fill=\"{}\" "
          "data-bits=\"{:.3f}\"><title>{}, positions {}-{}: {:.3f} bits</title></rect>\n",
          kLabelW + cell_w * static_cast<double>(c), y, cell_w, kCellH - 1.0, bits_colour(bits), bits,
          xml_escape(h.row_labels[r]), h.column_first[c], h.column_end[c] - 1, bits);
    }
  }
  // Legend: the scale's stops, and the first and last position.
  const double ly = kTop + kCellH * static_cast<double>(h.row_labels.size()) + 8.0;
  if (cols > 0) {
    s += fmt::format("<text x=\"{:.0f}\" y=\"{:.1f}\" font-size=\"11\">position {}</text>\n", kLabelW, ly + 2.0,
                     h.column_first.front());
    s += fmt::format("<text x=\"{:.0f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
                     kLabelW + cell_w * static_cast<double>(cols), ly + 2.0, h.column_end.back() - 1);
  }
  double x = kLabelW;
  for (const double bits : {2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0}) {
    s += fmt::format("<rect x=\"{:.0f}\" y=\"{:.1f}\" width=\"40\" height=\"12\" fill=\"{}\"/>", x, ly + 10.0, bits_colour(bits));
    s += fmt::format("<text x=\"{:.0f}\" y=\"{:.1f}\" font-size=\"11\">{:g} bits</text>\n", x, ly + 34.0, bits);
    x += 56.0;
  }
  return s + "</svg>\n";
}

const char* kCss = R"(body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;max-width:1100px;color:#1a1a1a}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}
.verdict{display:inline-block;padding:.3em .8em;border-radius:4px;font-weight:bold;color:#fff}
.certified{background:#1b7f3b}.refuted,.rejected{background:#b3261e}.unknown{background:#8a6d00}
.proved{color:#1b7f3b;font-weight:bold}.failed{color:#b3261e;font-weight:bold}.open{color:#8a6d00;font-weight:bold}.info{color:#555}
)";

std::string verdict_class(const std::string& v) {
  if (v == "proved") return "proved";
  if (v == "refuted") return "failed";
  if (v == "diagnostic" || v == "recorded") return "info";  // figures, not answers
  return "open";
}

// A row of cells as HTML; cells starting with '\x01' are numeric (right-aligned).
std::string html_row(const std::vector<std::string>& cells, bool header = false) {
  std::string s = "<tr>";
  for (const auto& c : cells) {
    const bool num = !c.empty() && c[0] == '\x01';
    const std::string text = num ? c.substr(1) : c;
    s += header ? "<th>" + text + "</th>" : (num ? "<td class=\"num\">" : "<td>") + text + (header ? "" : "</td>");
  }
  return s + "</tr>\n";
}
std::string num(const std::string& s) { return "\x01" + s; }

std::string margin_text(const ObligationFacts& o) {
  if (o.kind == "necessity") {
    return fmt::format("smallest headroom 2^{:.2f} (x{:.3g}) at {}; {} rows listed below the obstruction", o.min_log2_headroom,
                       std::exp2(o.min_log2_headroom), o.worst_at.empty() ? "-" : o.worst_at, o.below);
  }
  if (o.kind == "composition") {
    // Relative, not absolute: the default budget is the composed bound itself rounded up, and
    // the absolute difference of two display doubles near 1e33 is rounding noise.
    return fmt::format("composed bound {} vs budget {}: {} of the budget used", sci(o.worst), sci(o.budget),
                       o.budget > 0 ? percent(o.worst / o.budget) : "-");
  }
  return fmt::format("largest bound {} vs budget {}: margin {} ({} of the budget used) at {}", sci(o.worst), sci(o.budget),
                     sci(o.margin), o.budget > 0 ? percent(o.worst / o.budget) : "-", o.worst_at.empty() ? "-" : o.worst_at);
}

std::vector<std::pair<std::string, std::string>> hash_rows(const ReportInput& in) {
  const auto& c = in.certificate;
  return {{"model (model.safetensors)", hash_or(c.model_sha256, "none")},
          {"trace (" + c.trace_file + ")", c.trace_sha256},
          {"text", c.text_sha256},
          {"map", c.map_sha256},
          {"certificate", proofs::certificate_sha256(c)},
          {"tool", c.tool_version}};
}

using Rows = std::vector<std::pair<std::string, std::string>>;

Rows summary_rows(const ReportInput& in, const ReportFacts& f) {
  const auto& c = in.certificate;
  return {{"epsilon (per query, largest layer budget)", fmt::format("{} (exact {})", sci(f.eps), c.eps)},
          {"bits per K/V element (metadata included)", fmt::format("{:.4f} ({:.4f} bytes)", f.bits_per_element, f.bits_per_element / 8.0)},
          {"compression vs fp16", fmt::format("{:.2f}x", f.compression)},
          {"model", c.model_id},
          {"shape", fmt::format("{} layers, {} query heads, {} kv heads, head_dim {}, {} traced positions, blocks of {}", c.map.layers,
                                c.map.heads, c.map.kv_heads, c.map.head_dim, c.map.tokens, c.map.block)}};
}

Rows quality_rows(const EvalFacts& e) {
  Rows rows{{"perplexity fp32 cache", fmt::format("{:.3f}", e.perplexity_fp32)},
            {"perplexity mixed cache",
             fmt::format("{:.3f} ({:+.2f} %)", e.perplexity_cache, 100.0 * (e.perplexity_cache / e.perplexity_fp32 - 1.0))},
            {"mean KL vs fp32 (nats/token)", fmt::format("{:.6f}", e.mean_kl)},
            {"top-1 agreement", percent(e.top1_agreement)},
            {"stored bits per element (measured)", fmt::format("{:.3f}", e.measured_bits)}};
  if (e.decode_bound_max) rows.emplace_back("largest a-posteriori decode bound", sci(*e.decode_bound_max));
  return rows;
}

// Per layer: epsilon, the guarded fraction the certificate predicted on its calibration trace and
// the one measured (eval --json attached), when either exists. Header first.
std::vector<std::vector<std::string>> guard_table(const ReportInput& in) {
  const auto& c = in.certificate;
  const bool predicted = c.prediction && !c.prediction->layer_rows.empty();
  const bool measured = in.eval && in.eval->guard;
  if (!predicted && !measured) return {};
  const auto fraction = [](std::int64_t within, std::int64_t rows) {
    return rows > 0 ? fmt::format("{:.2f} % of {}", 100.0 * static_cast<double>(within) / static_cast<double>(rows), rows) : std::string("-");
  };
  std::vector<std::vector<std::string>> t{{"layer", "epsilon", "median ||o|| (calibration)", "guarded, predicted (calibration)",
                                           "guarded, measured (eval)"}};
  for (std::size_t l = 0; l < c.layer_eps.size(); ++l) {
    std::vector<std::string> row{std::to_string(l), sci(proofs::rational_to_double(c.layer_eps[l]))};
    row.push_back(predicted && l < c.prediction->output_norm_median.size() ? sci(c.prediction->output_norm_median[l]) : "-");
    row.push_back(predicted && l < c.prediction->layer_rows.size() ? fraction(c.prediction->layer_within[l], c.prediction->layer_rows[l]) : "-");
    row.push_back(measured && l < in.eval->guard->layer_rows.size()
                      ? fraction(in.eval->guard->layer_within[l], in.eval->guard->layer_rows[l])
                      : "-");
    t.push_back(std::move(row));
  }
  return t;
}

std::string guard_class_text(const ReportInput& in) {
  std::string kind = in.certificate.prediction ? in.certificate.prediction->kind : (in.eval && in.eval->guard ? in.eval->guard->kind : "");
  const double delta = in.certificate.prediction ? in.certificate.prediction->delta : (in.eval && in.eval->guard ? in.eval->guard->delta : 0.0);
  std::string s = kind == "probabilistic"
                      ? fmt::format("The guard is probabilistic: each row's bound holds with probability at least 1 - {:.3g} over the "
                                    "cache's random seed (stochastic rounding, THEORY.md section 15); it is not a proof. ", delta)
                      : "The guard is deterministic: each row's bound holds for every residual within the stored radii. ";
  if (in.eval && in.eval->guard) {
    s += fmt::format("Measured bound / actual error on {}: median {:.3g}, p99 {:.3g}.", in.eval->text, in.eval->guard->ratio_median,
                     in.eval->guard->ratio_p99);
  }
  return s;
}

// Prose shared by both documents (plain text; the HTML escapes it).
std::string obstruction_text(const ObstructionFacts& ob) {
  return fmt::format("Over {} key positions (all layers and kv heads): the obstruction needs at least {:.3f} precision bits on "
                     "average; the map stores {:.3f} (optimality gap {:.3f} bits per position); {} positions are below it (the "
                     "S1 bounds cover them). A necessary condition, second order, with kappa rounded to nearest: how far the map "
                     "sits above it, not a bound.",
                     ob.rows, ob.mean_min_bits, ob.mean_map_bits, ob.mean_map_bits - ob.mean_min_bits, ob.below);
}

std::string composition_text(const ReportFacts& f) {
  return f.composed_bound ? fmt::format("End-to-end bound (Theorem C, global per-layer Lipschitz constants; conditional on "
                                        "THEORY.md 10.4 (H)): {}.",
                                        sci(*f.composed_bound))
                          : std::string("No composition obligation (the certificate was made without --model).");
}

std::vector<std::string> scope_lines(const proofs::Certificate& c) {
  std::vector<std::string> lines{
      fmt::format("S1 (proved): the {} recorded query positions of the trace, every query head, with the trace's own keys and "
                  "values.",
                  c.scope.query_positions.size()),
      "S2 and S3 (reported per head, not obligations): queries within the S2 radius of a recorded one, and every query of "
      "norm at most the S3 norm."};
  for (const auto& a : c.scope.assumptions) lines.push_back("Assumption: " + a);
  return lines;
}

std::string quality_title(const EvalFacts& e) { return "measured on " + e.text + " (" + std::to_string(e.tokens) + " tokens)"; }

std::string checker_line(const ReportInput& in) {
  const auto& k = in.check;
  if (!k.problems.empty()) {
    return fmt::format("REJECTED by the exact checker: {}{}", k.problems.front(),
                       k.problems.size() > 1 ? fmt::format(" (and {} more problems)", k.problems.size() - 1) : "");
  }
  std::string s = fmt::format("accepted by the exact checker: {} inequalities re-validated with exact rationals", k.inequalities);
  s += k.model_compared ? "; model hash compared" : "; model hash not compared";
  s += k.trace_compared ? "; trace hash compared" : "; trace hash not compared";
  if (k.witnesses_compared > 0) {
    s += fmt::format("; {} witnesses re-derived from the trace", k.witnesses_compared);
  } else if (k.attested) {
    s += "; witnesses attested (signature verified under the configured public key)";
  } else {
    s += "; witnesses neither re-derived nor attested: the bounds are the certificate's word";
  }
  const proofs::ObligationCounts n = proofs::count_obligations(in.certificate);
  s += fmt::format("; obligations: {} proved, {} refuted, {} open, {} diagnostic, {} recorded", n.proved, n.refuted, n.open,
                   n.diagnostic, n.recorded);
  return s;
}

}  // namespace

namespace {

// A rejected certificate is still reported, and its map may be any shape (2^62 layers, entries
// out of range): only a map whose entries are exactly its layers x kv heads, each with the same
// number of units, is drawn, so nothing is sized or indexed by an unchecked number.
bool drawable(const proofs::PrecisionMap& map) {
  std::int64_t cells = 0;
  if (map.layers <= 0 || map.kv_heads <= 0 || map.block <= 0 || map.tokens <= 0 ||
      __builtin_mul_overflow(map.layers, map.kv_heads, &cells) || static_cast<std::uint64_t>(cells) != map.entries.size()) {
    return false;
  }
  const std::size_t units = map.entries.front().key_formats.size();
  return std::all_of(map.entries.begin(), map.entries.end(), [&](const proofs::HeadMap& e) {
    return e.layer >= 0 && e.layer < map.layers && e.kv_head >= 0 && e.kv_head < map.kv_heads &&
           e.key_formats.size() == units && e.value_formats.size() == units;
  });
}

}  // namespace

Heatmap map_heatmap(const proofs::PrecisionMap& map, bool per_kv_head, std::size_t max_columns) {
  HNF_ASSERT(max_columns >= 1, "a heatmap has at least one column");
  Heatmap h;
  if (!drawable(map)) return h;  // empty: no rows, no columns
  const std::size_t units = map.entries.empty() ? 0 : map.entries.front().key_formats.size();
  const std::size_t cols = std::min(units, max_columns);
  const std::size_t rows = static_cast<std::size_t>(per_kv_head ? map.layers * map.kv_heads : map.layers);
  h.bits.assign(rows, std::vector<double>(cols, 0.0));
  std::vector<std::vector<double>> weight(rows, std::vector<double>(cols, 0.0));
  for (std::size_t c = 0; c < cols; ++c) {
    const std::size_t first_unit = c * units / cols, end_unit = (c + 1) * units / cols;
    h.column_first.push_back(static_cast<std::int64_t>(first_unit) * map.block);
    h.column_end.push_back(std::min<std::int64_t>(static_cast<std::int64_t>(end_unit) * map.block, map.tokens));
  }
  for (std::int64_t l = 0; l < map.layers; ++l) {
    if (per_kv_head) {
      for (std::int64_t k = 0; k < map.kv_heads; ++k) h.row_labels.push_back(fmt::format("layer {} / kv {}", l, k));
    } else {
      h.row_labels.push_back(fmt::format("layer {}", l));
    }
  }
  for (const auto& e : map.entries) {
    const auto row = static_cast<std::size_t>(per_kv_head ? e.layer * map.kv_heads + e.kv_head : e.layer);
    for (std::size_t u = 0; u < units && u < e.key_formats.size(); ++u) {
      const std::size_t c = u * cols / units;
      // Units are weighted by the positions they hold (the last one may be short).
      const double positions = static_cast<double>(
          std::min<std::int64_t>(map.block, map.tokens - static_cast<std::int64_t>(u) * map.block));
      h.bits[row][c] += positions * 0.5 * (storage_bits(e.key_formats[u]) + storage_bits(e.value_formats[u]));
      weight[row][c] += positions;
    }
  }
  h.min_bits = std::numeric_limits<double>::infinity();
  h.max_bits = 0.0;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cols; ++c) {
      if (weight[r][c] > 0.0) h.bits[r][c] /= weight[r][c];
      h.min_bits = std::min(h.min_bits, h.bits[r][c]);
      h.max_bits = std::max(h.max_bits, h.bits[r][c]);
    }
  }
  if (rows == 0 || cols == 0) h.min_bits = 0.0;
  return h;
}

// Longest "text" (the evaluated file's path, PATH_MAX) an eval JSON may name.
constexpr std::size_t kMaxEvalTextPathBytes = 4096;

EvalFacts parse_eval_json(const std::string& text, const std::string& file, const std::string& map_sha256) {
  const nlohmann::json j = proofs::parse_json(text, file);
  const auto need = [&](const nlohmann::json& o, const char* key, const char* where) -> const nlohmann::json& {
    if (!o.is_object() || !o.contains(key)) {
      throw proofs::bad_input(file, std::string(where) + " has no \"" + key +
                                        "\": not the output of `hnf-verify eval --cache CERT --json`");
    }
    return o.at(key);
  };
  const auto number = [&](const nlohmann::json& o, const char* key, const char* where) {
    const auto& v = need(o, key, where);
    if (!v.is_number()) throw proofs::bad_input(file, std::string(where) + "." + key + " is not a number");
    return v.get<double>();
  };
  EvalFacts f;
  f.file = file;
  const auto& cache = need(j, "cache", "the eval output");
  const auto& map_hash = need(cache, "map_sha256", "cache");
  if (!map_hash.is_string() || map_hash.get<std::string>() != map_sha256) {
    throw proofs::bad_input(file, "was measured with another precision map (cache.map_sha256 is not the certificate's map_sha256)");
  }
  const auto& text_field = need(j, "text", "the eval output");
  f.text = text_field.is_string() ? text_field.get<std::string>() : "";
  if (f.text.size() > kMaxEvalTextPathBytes) {
    throw proofs::bad_input(file, "text is a string of " + std::to_string(f.text.size()) +
                                      " bytes, longer than a path (at most " + std::to_string(kMaxEvalTextPathBytes) + ")");
  }
  // Read as an integer in range: a double such as 1e300 cast to int64 would be undefined.
  const auto tokens = proofs::json_integer(need(j, "tokens", "the eval output"), 0, std::numeric_limits<std::int64_t>::max());
  if (!tokens) throw proofs::bad_input(file, "the eval output.tokens is not a non-negative integer");
  f.tokens = *tokens;
  f.perplexity_fp32 = number(j, "perplexity", "the eval output");
  f.perplexity_cache = number(cache, "perplexity", "cache");
  f.mean_kl = number(cache, "mean_kl", "cache");
  f.top1_agreement = number(cache, "top1_agreement", "cache");
  f.measured_bits = number(cache, "bits_per_element", "cache");
  if (cache.contains("decode_bound")) f.decode_bound_max = number(cache.at("decode_bound"), "max", "cache.decode_bound");
  if (cache.contains("guard")) {
    const auto& g = cache.at("guard");
    EvalFacts::Guard guard;
    const auto& kind = need(g, "kind", "cache.guard");
    guard.kind = kind.is_string() && kind.get<std::string>() == "probabilistic" ? "probabilistic" : "deterministic";
    guard.delta = number(g, "delta", "cache.guard");
    const auto& ratio = need(g, "bound_over_actual", "cache.guard");
    guard.ratio_median = number(ratio, "median", "cache.guard.bound_over_actual");
    guard.ratio_p99 = number(ratio, "p99", "cache.guard.bound_over_actual");
    const auto& layers = need(g, "per_layer", "cache.guard");
    if (!layers.is_array() || layers.size() > 65536) throw proofs::bad_input(file, "cache.guard.per_layer is not a list of layers");
    for (const auto& l : layers) {
      const auto rows = proofs::json_integer(need(l, "rows", "cache.guard.per_layer[]"), 0, std::numeric_limits<std::int64_t>::max());
      const auto within = proofs::json_integer(need(l, "within_eps", "cache.guard.per_layer[]"), 0, rows.value_or(0));
      if (!rows || !within) throw proofs::bad_input(file, "cache.guard.per_layer[] rows and within_eps are counts, within <= rows");
      guard.layer_rows.push_back(*rows);
      guard.layer_within.push_back(*within);
    }
    f.guard = guard;
  }
  return f;
}

ReportFacts report_facts(const ReportInput& in) {
  const auto& c = in.certificate;
  ReportFacts f;
  f.verdict = in.check.problems.empty() ? in.check.verdict : "rejected";
  f.eps = proofs::rational_to_double(c.eps);
  f.bits_per_element = proofs::map_bits_per_element(c.map);
  f.compression = f.bits_per_element > 0.0 ? 16.0 / f.bits_per_element : 0.0;
  for (const auto& o : c.obligations) {
    f.obligations.push_back(obligation_facts(c, o));
    if (o.kind == ObligationKind::kComposition) f.composed_bound = f.obligations.back().worst;
  }
  f.obstruction = obstruction_facts(c);
  f.heatmap = map_heatmap(c.map, in.per_kv_head, kHtmlColumns);
  return f;
}

std::vector<std::string> recheck_commands(const ReportInput& in) {
  const auto& c = in.certificate;
  const std::string model = in.model_dir.empty() ? "MODEL_DIR" : shell_quote(in.model_dir);
  const std::string trace = in.trace_path.empty() ? shell_quote(c.trace_file) : shell_quote(in.trace_path);
  std::vector<std::string> out;
  out.push_back("hnf-verify check " + shell_quote(in.certificate_path) + " --model " + model + " --trace " + trace +
                " --recompute");
  for (const auto& o : c.obligations) {
    if (o.smt_file.empty()) continue;
    const std::string path = shell_quote((std::filesystem::path(in.smt_dir) / o.smt_file).string());
    // The scripts assert the obligation's negation: unsat = proved, sat = refuted.
    const std::string expect = o.verdict == proofs::Verdict::kProved    ? "unsat"
                               : o.verdict == proofs::Verdict::kRefuted ? "sat"
                                                                        : "no answer was given in time";
    const std::string note = "  # " + o.name + " " + std::string(proofs::verdict_name(o.verdict)) + ": expect " + expect;
    out.push_back("z3 " + path + note);
    out.push_back("cvc5 " + path + note);
  }
  return out;
}

std::string render_markdown(const ReportInput& in, const ReportFacts& f) {
  const auto& c = in.certificate;
  std::string s = fmt::format("# Certificate report: {}\n\n", in.certificate_path);
  s += fmt::format("**Verdict: {}.** {}.\n\n", upper(f.verdict), checker_line(in));
  MarkdownTable summary({{"item"}, {"value"}});
  for (const auto& [item, value] : summary_rows(in, f)) summary.add_row({item, value});
  s += summary.render() + "\n";

  s += "## Scope and assumptions\n\n";
  for (const auto& line : scope_lines(c)) s += "- " + line + "\n";
  s += "\n## Hashes\n\n";
  MarkdownTable hashes({{"what"}, {"sha256 / version"}});
  for (const auto& [what, value] : hash_rows(in)) hashes.add_row({what, "`" + value + "`"});
  s += hashes.render() + "\n";

  s += "## Bits per layer and position\n\n";
  const Heatmap md = map_heatmap(c.map, in.per_kv_head, kMarkdownColumns);
  s += fmt::format("Mean storage bits per K/V element (keys and values, metadata included), {:.2f} to {:.2f}; columns are "
                   "position ranges.\n\n",
                   md.min_bits, md.max_bits);
  std::vector<MarkdownTable::Column> columns{{"row"}};
  for (std::size_t k = 0; k < md.column_first.size(); ++k) {
    columns.push_back({fmt::format("{}-{}", md.column_first[k], md.column_end[k] - 1), Align::kRight});
  }
  MarkdownTable heat(columns);
  for (std::size_t r = 0; r < md.row_labels.size(); ++r) {
    std::vector<std::string> cells{md.row_labels[r]};
    for (const double b : md.bits[r]) cells.push_back(fmt::format("{:.2f}", b));
    heat.add_row(cells);
  }
  s += heat.render() + "\n";

  s += "## Obligations\n\n";
  MarkdownTable ob({{"obligation"}, {"kind"}, {"inequalities", Align::kRight}, {"verdict"}, {"margin"}});
  for (const auto& o : f.obligations) ob.add_row({o.name, o.kind, std::to_string(o.inequalities), o.verdict, margin_text(o)});
  s += ob.render() + "\n";
  for (const auto& o : f.obligations) {
    if (!needs_explaining(o)) continue;
    s += fmt::format("- **{}** {}: {}{}\n", o.name, o.verdict, o.detail.empty() ? "(no detail)" : o.detail,
                     o.example.empty() ? "" : " " + o.example);
  }
  s += "\n## Obstruction (Theorem 5.7)\n\n";
  s += obstruction_text(f.obstruction) + "\n\n";
  s += "## Composition bound and measured quality\n\n" + composition_text(f) + "\n\n";
  if (in.eval) {
    const auto& e = *in.eval;
    MarkdownTable q({{quality_title(e)}, {"value", Align::kRight}});
    for (const auto& [item, value] : quality_rows(e)) q.add_row({item, value});
    s += q.render() + fmt::format("\nFrom `{}`.\n\n", e.file);
  } else {
    s += "No measured evaluation attached (`--eval FILE` with the output of `hnf-verify eval --cache CERT --json`).\n\n";
  }

  if (const auto t = guard_table(in); !t.empty()) {
    s += "## The runtime guard\n\n" + guard_class_text(in) + "\n\n";
    MarkdownTable g({{t[0][0]}, {t[0][1], Align::kRight}, {t[0][2], Align::kRight}, {t[0][3], Align::kRight}, {t[0][4], Align::kRight}});
    for (std::size_t i = 1; i < t.size(); ++i) g.add_row(t[i]);
    s += g.render() + "\n";
  }
  s += "## Re-check and reproduce\n\n```sh\n";
  for (const auto& cmd : recheck_commands(in)) s += cmd + "\n";
  s += "```\n\n";
  s += c.certify_command.empty() ? "The certify command is not recorded in this certificate.\n"
                                 : "Made by:\n\n```sh\n" + c.certify_command + "\n```\n";
  s += fmt::format("\nWritten by {}.\n", in.tool_version);
  return s;
}

std::string render_html(const ReportInput& in, const ReportFacts& f) {
  const auto& c = in.certificate;
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  s += "<title>Certificate report: " + xml_escape(in.certificate_path) + "</title>\n<style>\n" + kCss + "</style>\n</head>\n<body>\n";
  s += "<h1>Certificate report: <code>" + xml_escape(in.certificate_path) + "</code></h1>\n";
  s += fmt::format("<p><span id=\"verdict\" class=\"verdict {}\">{}</span> {}</p>\n", xml_escape(f.verdict), upper(f.verdict),
                   xml_escape(checker_line(in)));
  s += "<table id=\"summary\">\n";
  for (const auto& [item, value] : summary_rows(in, f)) s += html_row({xml_escape(item), xml_escape(value)});
  s += "</table>\n";

  s += "<h2>Scope and assumptions</h2>\n<ul>\n";
  for (const auto& line : scope_lines(c)) s += "<li>" + xml_escape(line) + "</li>\n";
  s += "</ul>\n<h2>Hashes</h2>\n<table id=\"hashes\">\n" + html_row({"what", "sha256 / version"}, true);
  for (const auto& [what, value] : hash_rows(in)) s += html_row({xml_escape(what), "<code>" + xml_escape(value) + "</code>"});
  s += "</table>\n";

  s += "<h2>Bits per layer and position</h2>\n";
  s += fmt::format("<p>Mean storage bits per K/V element (keys and values, metadata included), from {:.2f} to {:.2f}; {} rows x {} "
                   "position ranges{}.</p>\n",
                   f.heatmap.min_bits, f.heatmap.max_bits, f.heatmap.row_labels.size(), f.heatmap.column_first.size(),
                   in.per_kv_head ? ", one row per layer and kv head" : ", kv heads averaged (--per-head: one row each)");
  s += heatmap_svg(f.heatmap);

  s += "<h2>Obligations</h2>\n<table id=\"obligations\">\n" + html_row({"obligation", "kind", "inequalities", "verdict", "margin"}, true);
  for (const auto& o : f.obligations) {
    s += html_row({xml_escape(o.name), o.kind, num(std::to_string(o.inequalities)),
                   "<span class=\"" + verdict_class(o.verdict) + "\">" + o.verdict + "</span>", xml_escape(margin_text(o))});
  }
  s += "</table>\n";
  bool any_open = false;
  for (const auto& o : f.obligations) {
    if (!needs_explaining(o)) continue;
    if (!any_open) s += "<h3>Counterexamples and open obligations</h3>\n<ul>\n";
    any_open = true;
    s += "<li><b>" + xml_escape(o.name) + "</b> " + o.verdict + ": " + xml_escape(o.detail.empty() ? "(no detail)" : o.detail) +
         (o.example.empty() ? "" : " <code>" + xml_escape(o.example) + "</code>") + "</li>\n";
  }
  if (any_open) s += "</ul>\n";

  s += "<h2>Obstruction (Theorem 5.7)</h2>\n<p id=\"obstruction\">" + xml_escape(obstruction_text(f.obstruction)) + "</p>\n";

  s += "<h2>Composition bound and measured quality</h2>\n";
  s += "<p id=\"composition\">" + xml_escape(composition_text(f)) + "</p>\n";
  if (in.eval) {
    const auto& e = *in.eval;
    s += "<table id=\"quality\">\n" + html_row({xml_escape(quality_title(e)), "value"}, true);
    for (const auto& [item, value] : quality_rows(e)) s += html_row({xml_escape(item), num(xml_escape(value))});
    s += "</table>\n<p>From <code>" + xml_escape(e.file) + "</code>.</p>\n";
  } else {
    s += "<p>No measured evaluation attached (<code>--eval FILE</code> with the output of <code>hnf-verify eval --cache CERT "
         "--json</code>).</p>\n";
  }

  if (const auto t = guard_table(in); !t.empty()) {
    s += "<h2>The runtime guard</h2>\n<p id=\"guard\">" + xml_escape(guard_class_text(in)) + "</p>\n<table id=\"guard-layers\">\n";
    std::vector<std::string> header;
    for (const auto& h : t[0]) header.push_back(xml_escape(h));
    s += html_row(header, true);
    for (std::size_t i = 1; i < t.size(); ++i) {
      std::vector<std::string> row;
      for (const auto& v : t[i]) row.push_back(xml_escape(v));
      s += html_row(row);
    }
    s += "</table>\n";
  }
  s += "<h2>Re-check and reproduce</h2>\n<pre id=\"commands\">";
  for (const auto& cmd : recheck_commands(in)) s += xml_escape(cmd) + "\n";
  s += "</pre>\n";
  s += c.certify_command.empty() ? std::string("<p>The certify command is not recorded in this certificate.</p>\n")
                                 : "<p>Made by:</p>\n<pre id=\"certify-command\">" + xml_escape(c.certify_command) + "</pre>\n";
  s += "<p>Written by " + xml_escape(in.tool_version) + ".</p>\n</body>\n</html>\n";
  return s;
}

}  // namespace hnf::reports
