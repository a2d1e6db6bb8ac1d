#include "hnf/reports/quality_report.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "hnf/proofs/error.h"
#include "hnf/reports/markdown_table.h"

namespace hnf::reports {
namespace {

// The CSV's columns, in order; the header line is exactly these joined by commas.
constexpr std::array<const char*, 17> kCsvColumns = {
    "genre",      "method",        "family",         "ours",        "budget_bits",      "setting",
    "ran",        "error",         "tokens",         "perplexity",  "ppl_change_percent", "mean_kl",
    "top1_agreement", "bits_per_element", "bytes_per_element", "compression_vs_fp16", "seconds"};
// The columns before issue 18 (no "ours"): still read, "ours" following from the family.
constexpr std::array<const char*, 16> kLegacyCsvColumns = {
    "genre",      "method",        "family",         "budget_bits", "setting",          "ran",
    "error",      "tokens",        "perplexity",     "ppl_change_percent", "mean_kl",   "top1_agreement",
    "bits_per_element", "bytes_per_element", "compression_vs_fp16", "seconds"};
// Columns from here on are measurements: empty when the method did not run.
constexpr std::size_t kFirstMetricColumn = 8;

constexpr std::array<const char*, 7> kFamilies = {"fp16", "uniform", "kivi", "h2o", "curvature", "certified", "policy"};
// Our methods (the CSV's "ours" column): allocations, certified maps and certified policies.
bool is_ours(const std::string& family) { return family == "curvature" || family == "certified" || family == "policy"; }

// Target 1: a cache of at most 3 bits per element whose quality is indistinguishable in practice.
constexpr double kLowBitsMax = 3.0;          // bits per element
constexpr double kLowBitsMaxPplChange = 1.0;  // percent, either direction
constexpr double kLowBitsMaxKl = 0.01;        // nats per token
// Target 2: the curvature allocation at each budget against the baselines that store no more.
constexpr std::array<double, 4> kBudgets = {2.0, 2.5, 3.0, 4.0};  // bits per element
// Methods configured for the same budget measure slightly different bits (their metadata differs),
// so a baseline up to 2 % larger than ours still counts as "equal bytes".
constexpr double kEqualBytesSlack = 1.02;

constexpr const char* kBeginMarker = "<!-- quality-table:begin -->";
constexpr const char* kEndMarker = "<!-- quality-table:end -->";

// ---------------------------------------------------------------------------------------------
// Shared helpers

std::vector<std::string> genre_order(const std::vector<QualityRow>& rows) {
  std::vector<std::string> genres;
  for (const auto& r : rows) {
    if (std::find(genres.begin(), genres.end(), r.genre) == genres.end()) genres.push_back(r.genre);
  }
  return genres;
}

std::vector<const QualityRow*> rows_of(const std::vector<QualityRow>& rows, const std::string& genre) {
  std::vector<const QualityRow*> out;
  for (const auto& r : rows) {
    if (r.genre == genre) out.push_back(&r);
  }
  return out;
}

// Every output here is line-oriented (a Markdown list item, a gnuplot command): a line break
// inside a value would end it early.
std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_baseline(const QualityRow& r) { return r.family == "uniform" || r.family == "kivi" || r.family == "h2o"; }

// NaN sorts after every number, so a broken measurement never looks best and sorting stays a
// strict weak order.
double sort_key(double v) { return std::isnan(v) ? std::numeric_limits<double>::infinity() : v; }
bool kl_less(const QualityRow& a, const QualityRow& b) {
  return !std::isnan(a.mean_kl) && (std::isnan(b.mean_kl) || a.mean_kl < b.mean_kl);
}

// `base` kept to [A-Za-z0-9_] (and '-' when `hyphen`), other characters as '_', made distinct
// from every name in `used` by a numbered suffix; the result is added to `used`.
std::string unique_name(const std::string& base, bool hyphen, std::set<std::string>& used) {
  std::string clean;
  for (char c : base) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      (hyphen && c == '-');
    clean += keep ? c : '_';
  }
  std::string name = clean;
  for (int n = 2; used.contains(name); ++n) name = clean + (hyphen ? "-" : "_") + std::to_string(n);
  used.insert(name);
  return name;
}

// ---------------------------------------------------------------------------------------------
// Targets

TargetCheck low_bits_target(const std::vector<QualityRow>& rows, const std::string& genre) {
  TargetCheck t{"<= 3.0 bits: ppl within 1 %, KL <= 0.01", genre, false, ""};
  const QualityRow* ours = nullptr;
  for (const auto* r : rows_of(rows, genre)) {
    const bool ours_family = is_ours(r->family);
    if (!ours_family || !r->ran || !(r->bits_per_element <= kLowBitsMax)) continue;
    if (ours == nullptr || kl_less(*r, *ours)) ours = r;
  }
  if (ours == nullptr) {
    t.detail = "no curvature or certified row ran at <= 3.0 bits per element";
    return t;
  }
  t.met = std::abs(ours->ppl_change_percent) <= kLowBitsMaxPplChange && ours->mean_kl <= kLowBitsMaxKl;
  t.detail = fmt::format("{} ({}) at {:.4f} bits: ppl change {:+.6g} % (limit 1 % either way), mean KL {:.6g} (limit 0.01)",
                         ours->method, ours->family, ours->bits_per_element, ours->ppl_change_percent, ours->mean_kl);
  return t;
}

TargetCheck budget_target(const std::vector<QualityRow>& rows, const std::string& genre, double budget) {
  TargetCheck t{fmt::format("budget {} bits: KL <= baselines at equal bytes", budget), genre, false, ""};
  const auto genre_rows = rows_of(rows, genre);
  const auto it = std::find_if(genre_rows.begin(), genre_rows.end(), [&](const QualityRow* r) {
    return r->family == "curvature" && r->budget_bits && *r->budget_bits == budget;
  });
  if (it == genre_rows.end()) {
    t.detail = "no such row";
    return t;
  }
  const QualityRow& ours = **it;
  if (!ours.ran) {
    t.detail = "did not run: " + one_line(ours.error);
    return t;
  }
  const double limit = ours.bits_per_element * kEqualBytesSlack;
  std::string compared, beaten;
  for (const auto* r : genre_rows) {
    // The H2O row configured for this budget holds the same bytes by construction; it is
    // compared even where its measured bytes come out above ours (short windows).
    const bool same_budget_h2o = r->family == "h2o" && r->budget_bits && *r->budget_bits == budget;
    if (!r->ran || !is_baseline(*r) || !(r->bits_per_element <= limit || same_budget_h2o)) continue;
    compared += fmt::format("{}{} {:.4f} bits KL {:.6g}", compared.empty() ? "" : ", ", r->method, r->bits_per_element, r->mean_kl);
    // A NaN on either side is no evidence that ours is at least as good.
    if (!(ours.mean_kl <= r->mean_kl)) beaten += (beaten.empty() ? "" : ", ") + r->method;
  }
  t.met = beaten.empty();
  t.detail = fmt::format("{}: {:.4f} bits, KL {:.6g}; ", ours.method, ours.bits_per_element, ours.mean_kl);
  if (compared.empty()) {
    t.detail += fmt::format("no uniform, kivi or h2o row ran at <= {:.4f} bits or at this budget, nothing to compare", limit);
  } else {
    t.detail += fmt::format("baselines at <= {:.4f} bits and H2O at this budget: {}; ", limit, compared) +
                (beaten.empty() ? "none has a lower KL" : "beaten by " + beaten);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// CSV

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string exact(double v) { return fmt::format("{:.17g}", v); }

std::vector<std::string> csv_fields(const QualityRow& r) {
  std::vector<std::string> f = {r.genre, r.method, r.family, is_ours(r.family) ? "1" : "0",
                                r.budget_bits ? exact(*r.budget_bits) : "", r.setting, r.ran ? "1" : "0", r.error};
  if (!r.ran) {
    f.resize(kCsvColumns.size());
    return f;
  }
  const double bits = r.bits_per_element;
  for (std::string v : {std::to_string(r.tokens), exact(r.perplexity), exact(r.ppl_change_percent), exact(r.mean_kl),
                        exact(r.top1_agreement), exact(bits), exact(bits / 8.0), exact(compression_vs_fp16(bits)),
                        exact(r.seconds)}) {
    f.push_back(std::move(v));
  }
  return f;
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (std::size_t i = 0; i < fields.size(); ++i) line += (i == 0 ? "" : ",") + csv_field(fields[i]);
  return line + "\n";
}

struct CsvRecord {
  std::size_t line = 0;  // where the record starts (a quoted field may span lines)
  std::vector<std::string> fields;
};

[[noreturn]] void csv_fail(const std::string& what, std::size_t line, const std::string& problem) {
  throw proofs::bad_input(what, fmt::format("line {}: {}", line, problem));
}

// Splits RFC 4180 text into records. `at` and `line` advance past what was read.
class CsvScanner {
 public:
  CsvScanner(const std::string& text, const std::string& what) : text_(text), what_(what) {}

  [[nodiscard]] bool done() const { return at_ >= text_.size(); }

  CsvRecord next() {
    CsvRecord record{line_, {}};
    for (;;) {
      record.fields.push_back(peek() == '"' ? quoted(record.line) : plain(record.line));
      if (done()) return record;
      if (text_[at_] == ',') {
        ++at_;
        continue;
      }
      at_ += text_[at_] == '\r' ? 2 : 1;  // plain() and quoted() stop only at ',', "\n" or "\r\n"
      ++line_;
      return record;
    }
  }

 private:
  char peek() const { return done() ? '\0' : text_[at_]; }
  bool at_line_end() const {
    return text_[at_] == '\n' || (text_[at_] == '\r' && at_ + 1 < text_.size() && text_[at_ + 1] == '\n');
  }

  std::string plain(std::size_t record_line) {
    std::string field;
    while (!done() && text_[at_] != ',' && !at_line_end()) {
      if (text_[at_] == '"') csv_fail(what_, record_line, "a quote inside an unquoted field");
      field += text_[at_++];
    }
    return field;
  }

  std::string quoted(std::size_t record_line) {
    std::string field;
    ++at_;  // the opening quote
    for (;;) {
      if (done()) csv_fail(what_, record_line, "a quoted field is not closed");
      const char c = text_[at_++];
      if (c == '"' && peek() == '"') {
        field += '"';
        ++at_;
      } else if (c == '"') {
        break;
      } else {
        if (c == '\n') ++line_;
        field += c;
      }
    }
    if (!done() && text_[at_] != ',' && !at_line_end()) csv_fail(what_, record_line, "text after a closing quote");
    return field;
  }

  const std::string& text_;
  const std::string& what_;
  std::size_t at_ = 0;
  std::size_t line_ = 1;
};

// Reads the typed fields of one data record, naming its line on any problem.
class RowReader {
 public:
  RowReader(const CsvRecord& record, const std::string& what) : r_(record), what_(what) {}

  [[noreturn]] void fail(const std::string& problem) const { csv_fail(what_, r_.line, problem); }
  const std::string& text(std::size_t col) const { return r_.fields[col]; }
  const std::string& non_empty(std::size_t col) const {
    if (text(col).empty()) fail(fmt::format("{} is empty", kCsvColumns[col]));
    return text(col);
  }
  double number(std::size_t col) const {
    const std::string& s = text(col);
    double v = 0.0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) fail(fmt::format("{} '{}' is not a number", kCsvColumns[col], s));
    return v;
  }
  std::int64_t integer(std::size_t col) const {
    const std::string& s = text(col);
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) fail(fmt::format("{} '{}' is not an integer", kCsvColumns[col], s));
    return v;
  }
  bool flag(std::size_t col) const {
    if (text(col) != "0" && text(col) != "1") fail(fmt::format("{} '{}' is not 1 or 0", kCsvColumns[col], text(col)));
    return text(col) == "1";
  }
  // A measurement: required when the method ran, 0 when it did not and the field is empty.
  double metric(std::size_t col, bool ran) const {
    if (text(col).empty() && ran) fail(fmt::format("{} is empty in a row that ran", kCsvColumns[col]));
    return text(col).empty() ? 0.0 : number(col);
  }
  std::int64_t metric_integer(std::size_t col, bool ran) const {
    if (text(col).empty() && ran) fail(fmt::format("{} is empty in a row that ran", kCsvColumns[col]));
    return text(col).empty() ? 0 : integer(col);
  }

 private:
  const CsvRecord& r_;
  const std::string& what_;
};

QualityRow row_from_record(const CsvRecord& record, const std::string& what) {
  const RowReader in(record, what);
  QualityRow r;
  r.genre = in.non_empty(0);
  r.method = in.non_empty(1);
  r.family = in.text(2);
  if (std::find(kFamilies.begin(), kFamilies.end(), r.family) == kFamilies.end()) {
    in.fail(fmt::format("family '{}' is not one of fp16, uniform, kivi, h2o, curvature, certified, policy", r.family));
  }
  if (in.flag(3) != is_ours(r.family)) in.fail(fmt::format("ours must be {} for family '{}'", is_ours(r.family) ? 1 : 0, r.family));
  if (!in.text(4).empty()) r.budget_bits = in.number(4);
  r.setting = in.text(5);
  r.ran = in.flag(6);
  r.error = in.text(7);
  r.tokens = in.metric_integer(8, r.ran);
  r.perplexity = in.metric(9, r.ran);
  r.ppl_change_percent = in.metric(10, r.ran);
  r.mean_kl = in.metric(11, r.ran);
  r.top1_agreement = in.metric(12, r.ran);
  r.bits_per_element = in.metric(13, r.ran);
  (void)in.metric(14, r.ran);  // bytes_per_element and compression_vs_fp16 follow from the bits
  (void)in.metric(15, r.ran);
  r.seconds = in.metric(16, r.ran);
  return r;
}

std::string csv_header() {
  std::string header;
  for (const char* c : kCsvColumns) header += (header.empty() ? "" : ",") + std::string(c);
  return header;
}

bool blank(const CsvRecord& r) { return r.fields.size() == 1 && r.fields[0].empty(); }

// ---------------------------------------------------------------------------------------------
// Markdown

std::size_t longest_backtick_run(const std::string& s) {
  std::size_t longest = 0, run = 0;
  for (char c : s) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  return longest;
}

// Inline code that survives backticks in the value: the fence is longer than any run inside.
// An empty value reads "(none)": an empty span would show as stray backticks.
std::string code_span(const std::string& value) {
  const std::string s = one_line(value);
  if (s.empty()) return "(none)";
  const std::string fence(longest_backtick_run(s) + 1, '`');
  const std::string pad = !s.empty() && (s.front() == '`' || s.back() == '`') ? " " : "";
  return fence + pad + s + pad + fence;
}

std::string code_block(const std::string& text) {
  const std::string fence(std::max<std::size_t>(3, longest_backtick_run(text) + 1), '`');
  return fence + "sh\n" + text + "\n" + fence + "\n";
}

std::string header_block(const QualityHeader& h) {
  std::string s = "Produced by:\n\n" + code_block(h.command) + "\n";
  s += "- Commit: " + code_span(h.commit) + "\n";
  s += "- Model: " + code_span(h.model_dir) + " (sha256 " + code_span(h.model_sha256) + ")\n";
  s += "- Tool: " + one_line(h.tool_version) + "\n";
  s += "- Machine: " + one_line(h.machine) + "\n";
  s += "- Date: " + one_line(h.date) + "\n";
  s += fmt::format("- Windows: context {} tokens, stride {} tokens\n", h.context, h.stride);
  s += "- Calibration: " + one_line(h.calibration) + "\n";
  for (const auto& t : h.texts) {
    s += fmt::format("- Text {}: {} (sha256 {}, {} tokens)\n", code_span(t.genre), code_span(t.path), code_span(t.sha256),
                     t.tokens);
  }
  return s;
}

std::string targets_section(const std::vector<QualityRow>& rows) {
  MarkdownTable table({{"target"}, {"genre"}, {"met"}, {"detail"}});
  for (const auto& t : evaluate_quality_targets(rows)) table.add_row({t.target, t.genre, t.met ? "yes" : "no", t.detail});
  return "## Targets\n\n" + table.render();
}

// Rows that ran by bits ascending (ties keep input order), then the rows that did not run.
std::vector<const QualityRow*> display_order(const std::vector<QualityRow>& rows, const std::string& genre) {
  std::vector<const QualityRow*> ran, failed;
  for (const auto* r : rows_of(rows, genre)) (r->ran ? ran : failed).push_back(r);
  std::stable_sort(ran.begin(), ran.end(), [](const QualityRow* a, const QualityRow* b) {
    return sort_key(a->bits_per_element) < sort_key(b->bits_per_element);
  });
  ran.insert(ran.end(), failed.begin(), failed.end());
  return ran;
}

std::vector<std::string> genre_table_cells(const QualityRow& r) {
  if (!r.ran) {
    std::vector<std::string> cells = {r.method, r.family, "did not run: " + r.error};
    cells.resize(11, "-");
    return cells;
  }
  const double bits = r.bits_per_element;
  return {r.method,
          r.family,
          r.setting,
          fmt::format("{:.3f}", bits),
          fmt::format("{:.4f}", bits / 8.0),
          fmt::format("{:.2f}x", compression_vs_fp16(bits)),
          fmt::format("{:.3f}", r.perplexity),
          fmt::format("{:+.2f}", r.ppl_change_percent),
          fmt::format("{:.3g}", r.mean_kl),
          fmt::format("{:.2f}", 100.0 * r.top1_agreement),
          fmt::format("{:.1f}", r.seconds)};
}

std::string genre_section(const std::vector<QualityRow>& rows, const std::string& genre) {
  MarkdownTable table({{"method"},
                       {"family"},
                       {"setting"},
                       {"bits/element", Align::kRight},
                       {"bytes/element", Align::kRight},
                       {"vs fp16", Align::kRight},
                       {"perplexity", Align::kRight},
                       {"change %", Align::kRight},
                       {"mean KL", Align::kRight},
                       {"top-1 %", Align::kRight},
                       {"seconds", Align::kRight}});
  for (const auto* r : display_order(rows, genre)) table.add_row(genre_table_cells(*r));
  return "## " + one_line(genre) + "\n\n" + table.render();
}

// ---------------------------------------------------------------------------------------------
// gnuplot

// A gnuplot single-quoted string: no escapes there except '' for a quote.
std::string gq(const std::string& s) {
  std::string out = "'";
  for (char c : one_line(s)) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// A comment's text on one line, never ending in a backslash (gnuplot would continue the comment
// onto the next line).
std::string gcomment(const std::string& s) {
  std::string out = one_line(s);
  if (!out.empty() && out.back() == '\\') out += ' ';
  return out;
}

std::string join_path(const std::string& dir, const std::string& file) {
  if (dir.empty()) return file;
  return dir.back() == '/' ? dir + file : dir + "/" + file;
}

bool plottable(const QualityRow& r) {
  return r.ran && std::isfinite(r.bits_per_element) && std::isfinite(r.mean_kl) && std::isfinite(r.ppl_change_percent);
}

// The rows not dominated in (bits, mean KL): no other row has both no more bits and no more KL,
// and one of them strictly less. Sorted by bits, then KL.
std::vector<const QualityRow*> pareto_frontier(const std::vector<const QualityRow*>& points) {
  std::vector<const QualityRow*> frontier;
  for (const auto* a : points) {
    const bool dominated = std::any_of(points.begin(), points.end(), [&](const QualityRow* b) {
      return b->bits_per_element <= a->bits_per_element && b->mean_kl <= a->mean_kl &&
             (b->bits_per_element < a->bits_per_element || b->mean_kl < a->mean_kl);
    });
    if (!dominated) frontier.push_back(a);
  }
  std::stable_sort(frontier.begin(), frontier.end(), [](const QualityRow* a, const QualityRow* b) {
    return a->bits_per_element < b->bits_per_element ||
           (a->bits_per_element == b->bits_per_element && a->mean_kl < b->mean_kl);
  });
  return frontier;
}

// The rows of one genre that the plots show, split by family (in plot order).
struct GenrePlot {
  std::string genre, id, file;
  std::vector<std::vector<const QualityRow*>> by_family;  // parallel to PlotData::families
  std::vector<const QualityRow*> frontier;
};
struct PlotData {
  std::vector<std::string> families;     // the six known, then any other in order of appearance
  std::vector<std::string> family_ids;
  std::vector<GenrePlot> genres;
};

PlotData plot_data(const std::vector<QualityRow>& rows) {
  PlotData d;
  d.families.assign(kFamilies.begin(), kFamilies.end());
  for (const auto& r : rows) {
    if (std::find(d.families.begin(), d.families.end(), r.family) == d.families.end()) d.families.push_back(r.family);
  }
  std::set<std::string> used_ids;
  for (const auto& f : d.families) d.family_ids.push_back(unique_name(f, false, used_ids));
  const auto files = quality_plot_files(rows);
  const auto genres = genre_order(rows);
  std::set<std::string> genre_ids;
  for (std::size_t g = 0; g < genres.size(); ++g) {
    GenrePlot p{genres[g], unique_name(genres[g], false, genre_ids), files[g], {}, {}};
    p.by_family.resize(d.families.size());
    std::vector<const QualityRow*> points;
    for (const auto* r : rows_of(rows, genres[g])) {
      if (!plottable(*r)) continue;
      const auto f = std::find(d.families.begin(), d.families.end(), r->family) - d.families.begin();
      p.by_family[static_cast<std::size_t>(f)].push_back(r);
      points.push_back(r);
    }
    p.frontier = pareto_frontier(points);
    d.genres.push_back(std::move(p));
  }
  return d;
}

std::string points_block_name(const PlotData& d, const GenrePlot& g, std::size_t family) {
  return "$points_" + g.id + "_" + d.family_ids[family];
}

// Columns: bits per element, ppl change %, mean KL.
std::string data_block(const std::string& name, const std::vector<const QualityRow*>& rows) {
  std::string s = name + " << EOD\n";
  for (const auto* r : rows) s += fmt::format("{} {} {}\n", exact(r->bits_per_element), exact(r->ppl_change_percent), exact(r->mean_kl));
  return s + "EOD\n";
}

std::string data_blocks(const PlotData& d) {
  std::string s;
  for (const auto& g : d.genres) {
    for (std::size_t f = 0; f < d.families.size(); ++f) {
      if (!g.by_family[f].empty()) s += data_block(points_block_name(d, g, f), g.by_family[f]);
    }
    if (!g.frontier.empty()) s += data_block("$frontier_" + g.id, g.frontier);
  }
  return s;
}

// gnuplot stops with an error when it autoscales a plot without a single valid point: draw an
// empty frame with fixed ranges instead. `yrange` like "[1e-4:1]".
std::string empty_plot(const std::string& message, const std::string& yrange) {
  return "set xrange [0:16]\nset yrange " + yrange + "\nset label " + gq(message) + " at graph 0.5, graph 0.5 center\n" +
         "plot 1/0 notitle\nunset label\nset autoscale\n";
}

std::string series_style(std::size_t family) {
  return fmt::format("with points pt {} ps 1.4 lc {}", 5 + family, 1 + family);
}

// Mean KL against bits for one genre; fp16 (KL 0) cannot sit on the log axis and is left out.
std::string kl_plot(const PlotData& d, const GenrePlot& g, const std::string& out_dir) {
  std::string s = "\n# " + gcomment(g.genre) + "\n";
  s += "set output " + gq(join_path(out_dir, g.file)) + "\n";
  s += "set title " + gq(g.genre + ": mean KL vs fp16 cache") + "\n";
  s += "set ylabel 'mean KL(fp16 || method), nats per token (log scale)'\nset logscale y\nset format y '%g'\n";
  std::vector<std::string> series;
  for (std::size_t f = 0; f < d.families.size(); ++f) {
    bool any = false;
    for (const auto* r : g.by_family[f]) {
      if (r->mean_kl <= 0.0) continue;
      any = true;
      s += fmt::format("set label {} at {}, {} offset char 0.6, char 0.4 font ',8'\n", gq(r->method), exact(r->bits_per_element),
                       exact(r->mean_kl));
    }
    if (any) {
      series.push_back(points_block_name(d, g, f) + " using 1:($3 > 0 ? $3 : 1/0) " + series_style(f) + " title " +
                       gq(d.families[f]));
    }
  }
  if (series.empty()) {
    s += empty_plot("no row with mean KL > 0", "[1e-4:1]");
  } else {
    s += "plot ";
    for (std::size_t i = 0; i < series.size(); ++i) s += (i == 0 ? "" : ", \\\n     ") + series[i];
    s += "\nunset label\n";
  }
  return s + "unset logscale y\nset format y '%g'\n";
}

// Every genre's perplexity change against bits, with each genre's (bits, KL) frontier as lines.
std::string pareto_plot(const PlotData& d, const std::string& file, const std::string& out_dir) {
  std::string s = "\n# every genre, with each genre's Pareto frontier in (bits, mean KL)\n";
  s += "set output " + gq(join_path(out_dir, file)) + "\n";
  // Inside, top right: the corner where points are rare (many bits and a large change), so the
  // long frontier titles do not squeeze the plot.
  s += "set key inside right top\n";
  s += "set title 'perplexity change vs bits, all genres (lines: Pareto frontier in bits and mean KL)'\n";
  s += "set ylabel 'perplexity change vs fp16 cache, %'\n";
  std::vector<std::string> series;
  for (std::size_t f = 0; f < d.families.size(); ++f) {
    bool titled = false;
    for (const auto& g : d.genres) {
      if (g.by_family[f].empty()) continue;
      series.push_back(points_block_name(d, g, f) + " using 1:2 " + series_style(f) + " " +
                       (titled ? std::string("notitle") : "title " + gq(d.families[f])));
      titled = true;
    }
  }
  for (std::size_t i = 0; i < d.genres.size(); ++i) {
    const auto& g = d.genres[i];
    if (g.frontier.empty()) continue;
    series.push_back(fmt::format("$frontier_{} using 1:2 with lines lw 2 dt {} lc rgb 'gray30' title {}", g.id, 1 + i,
                                 gq(g.genre + " frontier")));
  }
  if (series.empty()) return s + empty_plot("no row ran", "[-1:1]");
  s += "plot ";
  for (std::size_t i = 0; i < series.size(); ++i) s += (i == 0 ? "" : ", \\\n     ") + series[i];
  return s + "\n";
}

// ---------------------------------------------------------------------------------------------
// README table

bool in_readme(const QualityRow& r) {
  if (r.family == "uniform") return ends_with(r.method, "-d64");
  return r.family == "fp16" || r.family == "kivi" || r.family == "h2o" || is_ours(r.family);
}

struct ReadmeRow {
  std::vector<const QualityRow*> per_genre;  // parallel to the genres, each ran
  double mean_bits = 0.0;
};

// The method's row in each genre, or empty when it is missing from, or did not run on, one of them.
std::vector<const QualityRow*> ran_everywhere(const std::vector<QualityRow>& rows, const std::vector<std::string>& genres,
                                              const std::string& method) {
  std::vector<const QualityRow*> found;
  for (const auto& genre : genres) {
    const auto it = std::find_if(rows.begin(), rows.end(), [&](const QualityRow& r) { return r.genre == genre && r.method == method; });
    if (it == rows.end() || !it->ran) return {};
    found.push_back(&*it);
  }
  return found;
}

std::string worst_ppl_change(const std::vector<const QualityRow*>& per_genre) {
  const QualityRow* worst = per_genre.front();
  for (const auto* r : per_genre) {
    if (std::abs(r->ppl_change_percent) > std::abs(worst->ppl_change_percent)) worst = r;
  }
  return fmt::format("{:+.2f}", worst->ppl_change_percent);
}

}  // namespace

std::vector<TargetCheck> evaluate_quality_targets(const std::vector<QualityRow>& rows) {
  std::vector<TargetCheck> checks;
  for (const auto& genre : genre_order(rows)) {
    checks.push_back(low_bits_target(rows, genre));
    for (const double budget : kBudgets) checks.push_back(budget_target(rows, genre, budget));
  }
  return checks;
}

std::string quality_csv(const std::vector<QualityRow>& rows) {
  std::string out = csv_header() + "\n";
  for (const auto& r : rows) out += csv_line(csv_fields(r));
  return out;
}

std::vector<QualityRow> parse_quality_csv(const std::string& text, const std::string& what) {
  CsvScanner scanner(text, what);
  std::vector<CsvRecord> records;
  while (!scanner.done()) {
    CsvRecord record = scanner.next();
    if (!blank(record)) records.push_back(std::move(record));
  }
  if (records.empty()) throw proofs::bad_input(what, "line 1: no header line (the file is empty)");
  const auto& header = records.front().fields;
  const bool legacy = std::equal(header.begin(), header.end(), kLegacyCsvColumns.begin(), kLegacyCsvColumns.end());
  if (!legacy && !std::equal(header.begin(), header.end(), kCsvColumns.begin(), kCsvColumns.end())) {
    csv_fail(what, records.front().line, "wrong header, expected " + csv_header());
  }
  if (legacy) {  // the "ours" column follows from the family
    for (std::size_t i = 1; i < records.size(); ++i) {
      auto& f = records[i].fields;
      if (f.size() != kLegacyCsvColumns.size()) {
        csv_fail(what, records[i].line, fmt::format("{} fields, expected {}", f.size(), kLegacyCsvColumns.size()));
      }
      f.insert(f.begin() + 3, f[2] == "curvature" || f[2] == "certified" ? "1" : "0");
    }
  }
  std::vector<QualityRow> rows;
  std::set<std::pair<std::string, std::string>> seen;  // (genre, method)
  for (std::size_t i = 1; i < records.size(); ++i) {
    const auto& record = records[i];
    if (record.fields.size() != kCsvColumns.size()) {
      csv_fail(what, record.line, fmt::format("{} fields, expected {}", record.fields.size(), kCsvColumns.size()));
    }
    QualityRow row = row_from_record(record, what);
    if (!seen.insert({row.genre, row.method}).second) {
      csv_fail(what, record.line, fmt::format("method '{}' appears twice for genre '{}'", row.method, row.genre));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string quality_markdown(const QualityHeader& header, const std::vector<QualityRow>& rows) {
  std::string s = "# KV-cache quality: real baselines side by side\n\n" + header_block(header) + "\n";
  s += targets_section(rows);
  for (const auto& genre : genre_order(rows)) s += "\n" + genre_section(rows, genre);
  s += "\n## Plots\n\n";
  for (const auto& file : quality_plot_files(rows)) s += "![" + file + "](" + file + ")\n";
  s += "\n## Method notes\n\n";
  for (const auto& note : header.notes) s += "- " + one_line(note) + "\n";
  if (header.notes.empty()) s += "None recorded.\n";
  return s;
}

std::vector<std::string> quality_plot_files(const std::vector<QualityRow>& rows) {
  std::set<std::string> used = {"pareto"};  // the summary plot's name is never a genre's
  std::vector<std::string> files;
  for (const auto& genre : genre_order(rows)) files.push_back("quality-" + unique_name(genre, true, used) + ".png");
  files.push_back("quality-pareto.png");
  return files;
}

std::string quality_gnuplot(const std::vector<QualityRow>& rows, const std::string& csv_path, const std::string& out_dir) {
  const PlotData d = plot_data(rows);
  std::string s = "# KV-cache quality plots: mean KL and perplexity change against storage bits per K/V element.\n";
  s += "# The rows of " + gcomment(csv_path) + ", embedded as data blocks (columns: bits, ppl change %, mean KL).\n";
  s += "set terminal pngcairo size 900,560 noenhanced\n";
  s += "set grid\nset key outside right top\n";
  s += "set xlabel 'bits per K/V element (metadata included)'\n\n";
  s += data_blocks(d);
  for (const auto& g : d.genres) s += kl_plot(d, g, out_dir);
  s += pareto_plot(d, quality_plot_files(rows).back(), out_dir);
  return s + "set output\n";
}

std::string quality_readme_table(const std::vector<QualityRow>& rows) {
  const auto genres = genre_order(rows);
  std::vector<ReadmeRow> table_rows;
  std::set<std::string> done;
  for (const auto& r : rows) {
    if (!done.insert(r.method).second || !in_readme(r)) continue;
    ReadmeRow row{ran_everywhere(rows, genres, r.method), 0.0};
    if (row.per_genre.empty()) continue;
    for (const auto* g : row.per_genre) row.mean_bits += g->bits_per_element;
    row.mean_bits /= static_cast<double>(row.per_genre.size());
    table_rows.push_back(std::move(row));
  }
  std::stable_sort(table_rows.begin(), table_rows.end(),
                   [](const ReadmeRow& a, const ReadmeRow& b) { return sort_key(a.mean_bits) < sort_key(b.mean_bits); });
  std::vector<MarkdownTable::Column> columns = {{"method"}, {"bits/element", Align::kRight}, {"vs fp16", Align::kRight}};
  for (const auto& genre : genres) columns.push_back({genre + " KL", Align::kRight});
  columns.push_back({"worst ppl change %", Align::kRight});
  MarkdownTable table(std::move(columns));
  for (const auto& row : table_rows) {
    std::vector<std::string> cells = {row.per_genre.front()->method, fmt::format("{:.2f}", row.mean_bits),
                                      fmt::format("{:.2f}x", compression_vs_fp16(row.mean_bits))};
    for (const auto* g : row.per_genre) cells.push_back(fmt::format("{:.3g}", g->mean_kl));
    cells.push_back(worst_ppl_change(row.per_genre));
    table.add_row(std::move(cells));
  }
  return table.render();
}

std::string replace_marked_block(const std::string& document, const std::string& block, const std::string& what) {
  struct Marker {
    std::size_t line, start, next;  // 1-based line number; offset of the line; offset after its newline
  };
  std::vector<Marker> begins, ends;
  std::size_t line = 1;
  for (std::size_t at = 0; at < document.size(); ++line) {
    const std::size_t newline = document.find('\n', at);
    const std::size_t stop = newline == std::string::npos ? document.size() : newline;
    const std::size_t next = newline == std::string::npos ? document.size() : newline + 1;
    std::string_view text(document.data() + at, stop - at);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text == kBeginMarker) begins.push_back({line, at, next});
    if (text == kEndMarker) ends.push_back({line, at, next});
    at = next;
  }
  for (const auto& [markers, name] : {std::pair{&begins, kBeginMarker}, std::pair{&ends, kEndMarker}}) {
    if (markers->empty()) throw proofs::bad_input(what, fmt::format("no line '{}'", name));
    if (markers->size() > 1) {
      throw proofs::bad_input(what, fmt::format("'{}' on lines {} and {}: it must appear once", name, (*markers)[0].line,
                                                (*markers)[1].line));
    }
  }
  const Marker& begin = begins.front();
  const Marker& end = ends.front();
  if (end.line < begin.line) {
    throw proofs::bad_input(what, fmt::format("line {}: '{}' comes before '{}' on line {}", end.line, kEndMarker, kBeginMarker,
                                              begin.line));
  }
  return document.substr(0, begin.next) + block + document.substr(end.start);
}

}  // namespace hnf::reports
