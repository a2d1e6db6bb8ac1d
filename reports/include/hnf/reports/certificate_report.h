// The audit report of a certificate (docs/reports.md): what was proven, in a self-contained HTML
// page and a Markdown summary. Every figure is computed from the certificate (and, when given,
// the exact checker's result and a measured `hnf-verify eval --cache --json` run); display
// values of exact rationals are rounded for reading only, never used for a decision.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hnf/proofs/certificate.h"

namespace hnf::reports {

// One obligation as the report shows it.
struct ObligationFacts {
  std::string name;
  std::string kind;     // sufficiency, necessity, composition
  std::string verdict;  // proved, refuted, unknown, timeout
  std::int64_t layer = -1;
  std::size_t inequalities = 0;
  double budget = 0.0;  // display
  // sufficiency: the largest S1 bound and where; composition: the composed bound (Theorem C).
  // margin = budget - worst (negative: the inequality fails).
  double worst = 0.0;
  double margin = 0.0;
  std::string worst_at;  // "kv head 0, query head 1, position 1023"
  // necessity: the smallest log2(8 eps 4^bits / kappa_d2) over the rows that must hold (>= 0
  // when they hold), the rows listed below the obstruction.
  double min_log2_headroom = 0.0;
  std::size_t below = 0;
  std::string example, detail, smt_file;
};

// Theorem 5.7 over every necessity row (one per layer, kv head and key position): the
// obstruction's minimum precision next to the map's (precision bits: integer code bits,
// fp16 11, bf16 8). A necessary condition, second order, with kappa rounded to nearest: how
// far the map sits above it, not a bound (docs/certificate.md).
struct ObstructionFacts {
  std::size_t rows = 0;
  double mean_min_bits = 0.0;  // mean of necessity_min_bits over the rows
  double mean_map_bits = 0.0;  // mean precision of the map's key format at the same rows
  std::size_t below = 0;       // rows where the map's precision is below the obstruction
};

// Mean storage bits per K/V element (metadata included; keys and values averaged) per row
// (a layer, or a layer and kv head) and per column (a range of positions).
struct Heatmap {
  std::vector<std::string> row_labels;          // "layer 0" or "layer 0 / kv 1"
  std::vector<std::int64_t> column_first;       // first position of each column
  std::vector<std::int64_t> column_end;         // one past its last position
  std::vector<std::vector<double>> bits;        // [rows][columns]
  double min_bits = 0.0, max_bits = 0.0;
};
// columns: at most this many (adjacent blocks are averaged when the map has more).
[[nodiscard]] Heatmap map_heatmap(const proofs::PrecisionMap& map, bool per_kv_head, std::size_t max_columns);

// A measured evaluation attached to the report: the JSON `hnf-verify eval --cache CERT --json`
// prints. Bad input (naming `file`) when it is not one, or was run with another map.
struct EvalFacts {
  std::string file;
  std::string text;
  std::int64_t tokens = 0;
  double perplexity_fp32 = 0.0;
  double perplexity_cache = 0.0;
  double mean_kl = 0.0;
  double top1_agreement = 0.0;
  double measured_bits = 0.0;
  std::optional<double> decode_bound_max;  // a-posteriori bound, when eval ran with --bounds
  // cache.guard, when eval guarded the cache: its class, and per layer rows and rows within epsilon.
  struct Guard {
    std::string kind;
    double delta = 0.0;
    std::vector<std::int64_t> layer_rows, layer_within;
    double ratio_median = 0.0, ratio_p99 = 0.0;  // bound / actual
  };
  std::optional<Guard> guard;
};
[[nodiscard]] EvalFacts parse_eval_json(const std::string& text, const std::string& file, const std::string& map_sha256);

struct ReportInput {
  proofs::Certificate certificate;
  std::string certificate_path;      // as given on the command line
  proofs::CheckReport check;         // the exact checker's result on the file
  std::string model_dir;             // given to the checker ("" when not)
  std::string trace_path;            // given to the checker ("" when not)
  std::string smt_dir;               // where the obligations' SMT-LIB files are
  std::optional<EvalFacts> eval;
  bool per_kv_head = false;          // heatmap rows per (layer, kv head)
  std::string tool_version;          // of the hnf-verify writing the report
};

struct ReportFacts {
  std::string verdict;        // the checker's: certified, refuted, unknown, or "rejected"
  double eps = 0.0;           // display
  double bits_per_element = 0.0;  // recomputed from the map
  double compression = 0.0;       // 16 / bits_per_element
  std::vector<ObligationFacts> obligations;
  ObstructionFacts obstruction;
  std::optional<double> composed_bound;  // the composition obligation's bound, when present
  Heatmap heatmap;
};
[[nodiscard]] ReportFacts report_facts(const ReportInput& input);

// The commands to re-check the certificate (exact checker; z3 and cvc5 on every SMT file) and
// to make it again (the certify command it records, when it does).
[[nodiscard]] std::vector<std::string> recheck_commands(const ReportInput& input);

[[nodiscard]] std::string render_markdown(const ReportInput& input, const ReportFacts& facts);
// Self-contained: inline CSS and SVG, no script, no external resource.
[[nodiscard]] std::string render_html(const ReportInput& input, const ReportFacts& facts);

}  // namespace hnf::reports
