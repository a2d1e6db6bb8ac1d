// The KV-cache quality benchmark's results (every cache method on every text genre) as CSV,
// a Markdown report, a gnuplot script and a compact README table, and the two quality targets
// decided from them. Pure functions: the caller reads and writes the files.
//
// Units throughout: storage in bits (or bytes) per stored K/V element, metadata (scales, zero
// points, indices) included, lower is smaller; perplexity and its change against the fp16 cache
// of the same genre in percent, closer to 0 is better; mean KL(fp16 || method) in nats per scored
// token, lower is better (0 for fp16 itself); top-1 agreement with fp16 as a share in [0, 1],
// higher is better; wall time in seconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hnf::reports {

// One method evaluated on one genre's text (all rows of a genre share the same tokens and windows).
struct QualityRow {
  std::string genre;    // "prose", "code", "dialogue" (any non-empty string; order of first appearance is the display order)
  std::string method;   // display name, unique within a genre, e.g. "fp16", "int4-d64", "KIVI-2", "H2O 3 bits", "curvature 3 bits", "certified eps 0.1"
  std::string family;   // one of "fp16", "uniform", "kivi", "h2o", "curvature", "certified", "policy" (ours: the last three)
  std::optional<double> budget_bits;  // bits per element the method was configured for (h2o, curvature), else nullopt
  std::string setting;  // short free text describing the configuration, e.g. "K,V per-token groups of 64"
  bool ran = true;      // false: the method could not run on this genre; `error` says why; metrics are then meaningless
  std::string error;
  std::int64_t tokens = 0;          // tokens scored
  double perplexity = 0.0;          // exp(mean negative log-likelihood per token); lower is better
  double ppl_change_percent = 0.0;  // 100 * (perplexity / fp16 perplexity - 1), same genre; 0 is fp16's quality
  double mean_kl = 0.0;             // mean KL(fp16 || method), nats per token; lower is better
  double top1_agreement = 0.0;      // share in [0,1] of tokens whose argmax equals fp16's; higher is better
  double bits_per_element = 0.0;    // measured storage bits per K/V element, metadata included; lower is smaller
  double seconds = 0.0;             // wall time of this method on this genre
};
// How many times smaller than an fp16 cache (16 bits per element); higher is smaller.
[[nodiscard]] inline double compression_vs_fp16(double bits_per_element) { return 16.0 / bits_per_element; }

// A text the benchmark scored: `tokens` tokens of the file at `path` (sha256 of its bytes).
struct GenreText {
  std::string genre, path, sha256;
  std::int64_t tokens = 0;
};
struct QualityHeader {
  std::string command;       // the exact command line that produced the run (shell-quoted)
  std::string commit;        // git commit (may end in "-dirty") or "unknown"
  std::string model_dir, model_sha256, tool_version, machine, date;
  std::int64_t context = 0, stride = 0;  // tokens per scored window, tokens between window starts
  std::string calibration;   // one line: the calibration text and trace the allocations were made from
  std::vector<GenreText> texts;
  std::vector<std::string> notes;  // free lines rendered as a bullet list under "Method notes"
};

// Target 1, per genre: among rows of family "curvature" or "certified" that ran with bits_per_element <= 3.0,
// the one with the smallest mean_kl ("ours"); met iff |ppl_change_percent| <= 1.0 and mean_kl <= 0.01
// (not met when there is none).
// Target 2, per genre and per budget B in {2, 2.5, 3, 4} bits: ours = the first "curvature" row with
// budget_bits == B (not met, with detail "did not run: <error>" or "no such row", when missing or !ran);
// compared with every row of family "uniform", "kivi" or "h2o" of the same genre that ran and has
// bits_per_element <= ours.bits_per_element * 1.02 ("at equal or fewer bytes"), and with the "h2o" row whose
// budget_bits == B whatever its measured bits (it holds a B-bit cache's bytes by construction; a window shorter
// than the context measures above B); met iff ours.mean_kl <= each of
// theirs (so met, and said so in the detail, when no baseline is that small). Detail lists the compared methods
// with their bits and KL, and names each baseline that beat ours.
// Order: per genre (display order), target 1 then target 2 for B ascending.
struct TargetCheck {
  std::string target;  // "<= 3.0 bits: ppl within 1 %, KL <= 0.01" or "budget 2.5 bits: KL <= baselines at equal bytes"
  std::string genre;
  bool met = false;
  std::string detail;  // one line, every figure from the rows
};
[[nodiscard]] std::vector<TargetCheck> evaluate_quality_targets(const std::vector<QualityRow>& rows);

// CSV with a header line: genre,method,family,ours,budget_bits,setting,ran,error,tokens,perplexity,ppl_change_percent,
// mean_kl,top1_agreement,bits_per_element,bytes_per_element,compression_vs_fp16,seconds. RFC 4180 quoting
// (fields with comma, quote or newline quoted, quotes doubled), records ended by "\n". Doubles with 17
// significant digits ({:.17g}, so they read back exactly); budget_bits empty when nullopt; ran as 1/0; the
// metric fields (tokens onwards) empty when !ran. bytes_per_element = bits / 8 and compression_vs_fp16 are
// derived, for readers of the file.
[[nodiscard]] std::string quality_csv(const std::vector<QualityRow>& rows);
// The inverse (for regenerating the README table from a committed CSV): throws proofs::bad_input(what, ...)
// naming the line on a malformed file (wrong header, wrong field count, bad quoting, bad number, unknown
// family, empty genre or method, a method repeated within a genre, an empty metric in a row that ran).
// Accepts "\r\n" line ends and skips blank lines. The derived columns must be numbers but are not read back.
[[nodiscard]] std::vector<QualityRow> parse_quality_csv(const std::string& text, const std::string& what);

// Markdown report: "# KV-cache quality: real baselines side by side" then a header block (command in a code block,
// commit, model dir + sha256, tool version, machine, date, context/stride, calibration, one line per text with path,
// sha256 and tokens), a "## Targets" section (a table: target, genre, met yes/no, detail), one "## <genre>" section per
// genre with a table (method, family, setting, bits/element (3 decimals), bytes/element (4 decimals),
// vs fp16 ("5.33x"), perplexity (3 decimals), change % (signed, 2 decimals), mean KL ({:.3g}), top-1 % (2 decimals),
// seconds (1 decimal)), rows sorted by bits_per_element ascending (fp16 last naturally), then the rows that did not
// run, in input order, with "did not run: <error>" in the setting column and "-" in the metric columns; then
// "## Plots" linking the PNG files named by quality_plot_files() (relative names), then "## Method notes" with
// header.notes as bullets.
[[nodiscard]] std::string quality_markdown(const QualityHeader& header, const std::vector<QualityRow>& rows);

// File names (no directory) of the plots the gnuplot script writes: "quality-<genre>.png" per genre in display
// order, then "quality-pareto.png". Characters of a genre outside [A-Za-z0-9_-] become '_' (a genre can never
// name a path outside the plot folder), and a name already taken gets "-2", "-3", ... appended.
[[nodiscard]] std::vector<std::string> quality_plot_files(const std::vector<QualityRow>& rows);
// A gnuplot script (pngcairo, size 900,560, noenhanced) that writes each file of quality_plot_files() into
// out_dir: per genre, mean KL (log y axis) against bits per element, one point series per family, each point
// labelled with its method; rows with mean KL <= 0 (fp16) are left out of that plot, since a log axis cannot
// show them. The pareto plot: every genre's ppl_change_percent against bits, one series per family, plus for
// each genre its Pareto frontier (the rows not dominated in (bits, mean_kl) within that genre, sorted by bits)
// as lines. Rows with !ran or a non-finite figure are skipped.
// The points are embedded in the script as data blocks ($points_<genre>_<family>, $frontier_<genre>; columns
// bits, ppl_change_percent, mean_kl) made from `rows`, not read from csv_path, which the script only names:
// gnuplot 5.4 splits a quoted CSV field holding a doubled quote and a comma, which would shift every later
// column. Strings in the script are single-quoted with ' doubled (gnuplot's only escape there) and line
// breaks replaced by spaces.
[[nodiscard]] std::string quality_gnuplot(const std::vector<QualityRow>& rows, const std::string& csv_path,
                                          const std::string& out_dir);

// Compact README table (Markdown, from the rows): one row per method that ran on every genre, keeping families
// fp16, kivi, h2o, curvature, certified and, of "uniform", only methods whose name ends in "-d64"; sorted by mean
// bits ascending. Columns: method | bits/element (mean over genres, 2 decimals) | vs fp16 (of the mean, e.g.
// "6.02x") | then per genre "<genre> KL" ({:.3g}) | then "worst ppl change %" (the signed change with the largest
// absolute value over the genres, 2 decimals).
[[nodiscard]] std::string quality_readme_table(const std::vector<QualityRow>& rows);
// Replaces the text strictly between the lines "<!-- quality-table:begin -->" and "<!-- quality-table:end -->"
// in `document` with `block` (which should end with a newline). Throws proofs::bad_input(what, ...) when a marker is
// missing, repeated, or the end comes before the begin. A marker line may end in "\r".
[[nodiscard]] std::string replace_marked_block(const std::string& document, const std::string& block, const std::string& what);

}  // namespace hnf::reports
