// The KV-cache quality report: CSV round trip and its errors, both targets at their boundaries,
// the Markdown report, the gnuplot script's Pareto frontier, the README table and its markers.
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/reports/quality_report.h"

using namespace hnf::reports;

namespace {

QualityRow row(const std::string& genre, const std::string& method, const std::string& family, double bits, double kl,
               double ppl_change, std::optional<double> budget = std::nullopt) {
  QualityRow r;
  r.genre = genre;
  r.method = method;
  r.family = family;
  r.budget_bits = budget;
  r.setting = "setting of " + method;
  r.tokens = 1000;
  r.perplexity = 10.0 * (1.0 + ppl_change / 100.0);
  r.ppl_change_percent = ppl_change;
  r.mean_kl = kl;
  r.top1_agreement = 0.9;
  r.bits_per_element = bits;
  r.seconds = 2.0;
  return r;
}

QualityRow failed(const std::string& genre, const std::string& method, const std::string& family, const std::string& error,
                  std::optional<double> budget = std::nullopt) {
  QualityRow r;
  r.genre = genre;
  r.method = method;
  r.family = family;
  r.budget_bits = budget;
  r.ran = false;
  r.error = error;
  return r;
}

TargetCheck check_of(const std::vector<TargetCheck>& checks, const std::string& target, const std::string& genre) {
  for (const auto& c : checks) {
    if (c.target == target && c.genre == genre) return c;
  }
  FAIL("no check ", target, " for ", genre);
  return {};
}

const std::string kLowBits = "<= 3.0 bits: ppl within 1 %, KL <= 0.01";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Offset of `part` in `text`; fails the test when it is not there.
std::size_t at(const std::string& text, const std::string& part) {
  const auto p = text.find(part);
  REQUIRE_MESSAGE(p != std::string::npos, "missing: ", part);
  return p;
}

void expect_bad_csv(const std::string& text, const std::string& message) {
  CHECK_THROWS_WITH_AS((void)parse_quality_csv(text, "q.csv"), doctest::Contains(message.c_str()), hnf::proofs::Error);
}

// The header before issue 18 (still read: "ours" follows from the family), and the current one.
const std::string kHeader =
    "genre,method,family,budget_bits,setting,ran,error,tokens,perplexity,ppl_change_percent,mean_kl,top1_agreement,"
    "bits_per_element,bytes_per_element,compression_vs_fp16,seconds";
const std::string kOursHeader =
    "genre,method,family,ours,budget_bits,setting,ran,error,tokens,perplexity,ppl_change_percent,mean_kl,top1_agreement,"
    "bits_per_element,bytes_per_element,compression_vs_fp16,seconds";

}  // namespace

TEST_CASE("quality CSV: RFC 4180 quoting, exact doubles, empty metrics for a row that did not run, and a faithful round trip") {
  QualityRow fp16 = row("prose", "fp16", "fp16", 16.0, 0.0, 0.0);
  QualityRow kivi = row("prose", "KIVI-2", "kivi", 2.0, 0.125, 6.0);
  kivi.setting = "K per-channel, V per-token \"g32\"";
  kivi.perplexity = 13.25;
  kivi.top1_agreement = 0.875;
  kivi.seconds = 2.5;
  QualityRow curvature = row("code", "curvature 2.5 bits", "curvature", 2.5, 1.0 / 3.0, 0.1, 2.5);
  curvature.setting = "two\nlines";
  const QualityRow h2o = failed("code", "H2O 3 bits", "h2o", "out of memory, \"cache\" full", 3.0);
  const std::vector<QualityRow> rows = {fp16, kivi, curvature, h2o};

  const std::string csv = quality_csv(rows);
  CHECK(csv.rfind(kOursHeader + "\n", 0) == 0);
  CHECK(contains(csv, "\nprose,KIVI-2,kivi,0,,\"K per-channel, V per-token \"\"g32\"\"\",1,,1000,13.25,6,0.125,0.875,2,0.25,8,2.5\n"));
  CHECK(contains(csv, "\ncode,H2O 3 bits,h2o,0,3,,0,\"out of memory, \"\"cache\"\" full\",,,,,,,,,\n"));
  CHECK(contains(csv, "\ncode,curvature 2.5 bits,curvature,1,"));  // ours
  CHECK(contains(csv, ",\"two\nlines\",1,,"));
  CHECK(contains(csv, ",0.10000000000000001,0.33333333333333331,"));  // 17 significant digits

  const auto back = parse_quality_csv(csv, "q.csv");
  REQUIRE(back.size() == rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(i);
    CHECK(back[i].genre == rows[i].genre);
    CHECK(back[i].method == rows[i].method);
    CHECK(back[i].family == rows[i].family);
    CHECK(back[i].budget_bits == rows[i].budget_bits);
    CHECK(back[i].setting == rows[i].setting);
    CHECK(back[i].ran == rows[i].ran);
    CHECK(back[i].error == rows[i].error);
    CHECK(back[i].tokens == rows[i].tokens);
    CHECK(back[i].perplexity == rows[i].perplexity);  // exact: 17 digits read back to the same double
    CHECK(back[i].ppl_change_percent == rows[i].ppl_change_percent);
    CHECK(back[i].mean_kl == rows[i].mean_kl);
    CHECK(back[i].top1_agreement == rows[i].top1_agreement);
    CHECK(back[i].bits_per_element == rows[i].bits_per_element);
    CHECK(back[i].seconds == rows[i].seconds);
  }
  CHECK_FALSE(back[0].budget_bits.has_value());
  CHECK(back[2].mean_kl == 1.0 / 3.0);
  CHECK(quality_csv(back) == csv);

  // CRLF line ends and trailing blank lines are accepted.
  std::string crlf;
  for (char c : quality_csv({fp16})) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  CHECK(parse_quality_csv(crlf + "\r\n", "q.csv").size() == 1);
}

TEST_CASE("quality CSV: the ours column, and files written before it") {
  QualityRow policy = row("prose", "policy 4 bits", "policy", 4.0, 0.001, 0.2);
  const std::string csv = quality_csv({policy});
  CHECK(contains(csv, "\nprose,policy 4 bits,policy,1,"));
  CHECK(parse_quality_csv(csv, "q.csv").front().family == "policy");
  // ours must agree with the family.
  std::string wrong = csv;
  wrong.replace(wrong.find(",policy,1,"), 10, ",policy,0,");
  expect_bad_csv(wrong, "ours must be 1 for family 'policy'");
  // A file with the old header reads, ours following from the family.
  const auto old_rows = parse_quality_csv(kHeader + "\nprose,curvature 3,curvature,3,s,1,,10,1.5,0,0,1,3,0.375,5.3,0.5\n", "q.csv");
  REQUIRE(old_rows.size() == 1);
  CHECK(quality_csv(old_rows).find(",curvature,1,3,") != std::string::npos);
}

TEST_CASE("quality CSV errors name the file and the line") {
  const std::string good = "prose,fp16,fp16,,s,1,,10,1.5,0,0,1,16,2,1,0.5\n";
  expect_bad_csv("", "q.csv: line 1: no header line");
  expect_bad_csv("genre,method\n" + good, "q.csv: line 1: wrong header");
  expect_bad_csv(kHeader + ",extra\n" + good, "line 1: wrong header");
  expect_bad_csv(kHeader + "\n" + good + "prose,int4-d64,uniform,,s\n", "q.csv: line 3: 5 fields, expected 16");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,s,1,,10,abc,0,0,1,16,2,1,0.5\n", "q.csv: line 2: perplexity 'abc' is not a number");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,s,1,,10,1.5,0,0,1,16,2,1,0.5x\n", "line 2: seconds '0.5x' is not a number");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,s,1,,ten,1.5,0,0,1,16,2,1,0.5\n", "line 2: tokens 'ten' is not an integer");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,s,yes,,10,1.5,0,0,1,16,2,1,0.5\n", "line 2: ran 'yes' is not 1 or 0");
  expect_bad_csv(kHeader + "\nprose,fp16,fp32,,s,1,,10,1.5,0,0,1,16,2,1,0.5\n", "line 2: family 'fp32' is not one of");
  expect_bad_csv(kHeader + "\n,fp16,fp16,,s,1,,10,1.5,0,0,1,16,2,1,0.5\n", "line 2: genre is empty");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,s,1,,10,,0,0,1,16,2,1,0.5\n", "line 2: perplexity is empty in a row that ran");
  expect_bad_csv(kHeader + "\n" + good + good, "line 3: method 'fp16' appears twice for genre 'prose'");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,\"open,1\n", "line 2: a quoted field is not closed");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,\"s\"x,1,,10,1.5,0,0,1,16,2,1,0.5\n", "line 2: text after a closing quote");
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,s\"x,1,,10,1.5,0,0,1,16,2,1,0.5\n", "line 2: a quote inside an unquoted field");
  // A quoted field spanning two lines: the next record starts on line 4.
  expect_bad_csv(kHeader + "\nprose,fp16,fp16,,\"a\nb\",1,,10,1.5,0,0,1,16,2,1,0.5\nprose,x,kivi\n", "line 4: 3 fields");
}

TEST_CASE("target 1: the best curvature or certified row at <= 3 bits, met at exactly 1 % and KL 0.01") {
  const auto low_bits = [](const QualityRow& candidate) {
    // A better row just above 3 bits is never "ours".
    const std::vector<QualityRow> rows = {row("prose", "fp16", "fp16", 16.0, 0.0, 0.0), candidate,
                                          row("prose", "curvature 3.01", "curvature", 3.01, 0.0001, 0.0)};
    return check_of(evaluate_quality_targets(rows), kLowBits, "prose");
  };
  const auto met = low_bits(row("prose", "curvature 3 bits", "curvature", 2.9, 0.01, -1.0));
  CHECK(met.met);
  CHECK(contains(met.detail, "curvature 3 bits (curvature) at 2.9000 bits"));
  CHECK(contains(met.detail, "ppl change -1 %"));
  CHECK(contains(met.detail, "mean KL 0.01 "));
  CHECK_FALSE(low_bits(row("prose", "curvature 3 bits", "curvature", 2.9, 0.0100001, 0.0)).met);
  CHECK_FALSE(low_bits(row("prose", "curvature 3 bits", "curvature", 2.9, 0.001, 1.01)).met);
  CHECK(low_bits(row("prose", "certified eps 0.1", "certified", 3.0, 0.005, 1.0)).met);  // exactly 3 bits counts
  CHECK_FALSE(low_bits(row("prose", "int2-d64", "uniform", 2.5, 0.0, 0.0)).met);       // not our family

  // The smallest KL wins: the certified row (KL 0.02, not met) loses to the curvature row.
  const std::vector<QualityRow> rows = {row("code", "certified eps 0.1", "certified", 2.5, 0.02, 0.5),
                                        row("code", "curvature 3 bits", "curvature", 2.95, 0.008, 0.5),
                                        failed("code", "curvature 2 bits", "curvature", "oom")};
  const auto best = check_of(evaluate_quality_targets(rows), kLowBits, "code");
  CHECK(best.met);
  CHECK(contains(best.detail, "curvature 3 bits"));

  const auto none = check_of(evaluate_quality_targets({row("dialogue", "fp16", "fp16", 16.0, 0.0, 0.0)}), kLowBits, "dialogue");
  CHECK_FALSE(none.met);
  CHECK(none.detail == "no curvature or certified row ran at <= 3.0 bits per element");
}

TEST_CASE("target 2: ours at each budget against baselines at up to 2 % more bits") {
  const double ours_bits = 2.5;
  std::vector<QualityRow> rows = {
      row("prose", "curvature 2.5 bits", "curvature", ours_bits, 0.05, 1.0, 2.5),
      row("prose", "KIVI-2", "kivi", 2.4, 0.06, 2.0),
      row("prose", "int2-d64", "uniform", ours_bits * 1.02, 0.04, 1.5),   // at the edge of "equal bytes", lower KL
      row("prose", "int3-d64", "uniform", ours_bits * 1.03, 0.001, 0.1),  // just past it: ignored
      row("prose", "H2O 2.5 bits", "h2o", 2.5, 0.05, 1.0, 2.5),            // equal KL does not beat ours
      row("prose", "certified eps 0.1", "certified", 2.0, 0.0001, 0.0),    // not a baseline
      failed("prose", "curvature 3 bits", "curvature", "out of memory", 3.0),
      row("prose", "curvature 4 bits", "curvature", 4.1, 0.001, 0.1, 4.0),
      row("prose", "int4-d64", "uniform", 4.5, 0.002, 0.2),  // 4.5 > 4.1 * 1.02: not compared
  };
  const auto checks = evaluate_quality_targets(rows);
  REQUIRE(checks.size() == 5);  // target 1 and four budgets
  CHECK(checks[0].target == kLowBits);
  CHECK(checks[1].target == "budget 2 bits: KL <= baselines at equal bytes");
  CHECK(checks[2].target == "budget 2.5 bits: KL <= baselines at equal bytes");

  const auto b25 = checks[2];
  CHECK_FALSE(b25.met);
  CHECK(contains(b25.detail, "curvature 2.5 bits: 2.5000 bits, KL 0.05;"));
  CHECK(contains(b25.detail, "baselines at <= 2.5500 bits and H2O at this budget: KIVI-2 2.4000 bits KL 0.06, int2-d64 2.5500 bits KL 0.04, "
                             "H2O 2.5 bits 2.5000 bits KL 0.05; beaten by int2-d64"));
  CHECK_FALSE(contains(b25.detail, "int3-d64"));
  CHECK_FALSE(contains(b25.detail, "certified"));

  CHECK_FALSE(checks[1].met);
  CHECK(checks[1].detail == "no such row");
  CHECK_FALSE(checks[3].met);
  CHECK(checks[3].detail == "did not run: out of memory");
  CHECK(checks[4].target == "budget 4 bits: KL <= baselines at equal bytes");
  CHECK(checks[4].met);
  CHECK(contains(checks[4].detail, "KIVI-2 2.4000 bits KL 0.06"));
  CHECK(contains(checks[4].detail, "none has a lower KL"));
  CHECK_FALSE(contains(checks[4].detail, "int4-d64"));

  // Without the int2-d64 row nothing at equal bytes beats ours.
  rows.erase(rows.begin() + 2);
  CHECK(check_of(evaluate_quality_targets(rows), "budget 2.5 bits: KL <= baselines at equal bytes", "prose").met);

  // The H2O row of a budget is compared even when its measured bits exceed ours by more than 2 %.
  rows.push_back(row("prose", "H2O 4 bits", "h2o", 4.3, 0.0005, 0.1, 4.0));
  const auto b4 = check_of(evaluate_quality_targets(rows), "budget 4 bits: KL <= baselines at equal bytes", "prose");
  CHECK_FALSE(b4.met);
  CHECK(contains(b4.detail, "beaten by H2O 4 bits"));
}

TEST_CASE("quality Markdown: header, targets, a section per genre sorted by bits, plots and notes") {
  QualityHeader h;
  h.command = "hnf-bench quality --model models/m --out 'out dir'";
  h.commit = "abc123-dirty";
  h.model_dir = "models/m";
  h.model_sha256 = "ff00";
  h.tool_version = "hnf-verify 0.6.0";
  h.machine = "test box";
  h.date = "2025-01-02";
  h.context = 512;
  h.stride = 256;
  h.calibration = "calib.txt, trace calib.safetensors";
  h.texts = {{"prose", "texts/prose.txt", "aa11", 4096}};
  h.notes = {"KIVI: keys per channel, values per token.", "H2O keeps heavy hitters."};
  QualityRow int2 = row("prose", "int2-d64", "uniform", 2.5, 0.0123, 2.0);
  int2.setting = "K,V per-token groups of 64";
  int2.perplexity = 12.75;
  int2.top1_agreement = 0.985;
  int2.seconds = 1.5;
  const std::vector<QualityRow> rows = {row("prose", "fp16", "fp16", 16.0, 0.0, 0.0),
                                        row("prose", "int4-d64", "uniform", 4.5, 0.001, 0.2), int2,
                                        failed("prose", "H2O 2 bits", "h2o", "out of memory"),
                                        row("code", "fp16", "fp16", 16.0, 0.0, 0.0)};
  const std::string md = quality_markdown(h, rows);
  CHECK(md.rfind("# KV-cache quality: real baselines side by side\n", 0) == 0);
  CHECK(contains(md, "```sh\nhnf-bench quality --model models/m --out 'out dir'\n```\n"));
  CHECK(contains(md, "- Commit: `abc123-dirty`\n"));
  CHECK(contains(md, "- Model: `models/m` (sha256 `ff00`)\n"));
  CHECK(contains(md, "- Windows: context 512 tokens, stride 256 tokens\n"));
  CHECK(contains(md, "- Text `prose`: `texts/prose.txt` (sha256 `aa11`, 4096 tokens)\n"));
  const auto targets = at(md, "\n## Targets\n");
  const auto prose = at(md, "\n## prose\n");
  const auto code = at(md, "\n## code\n");
  const auto plots = at(md, "\n## Plots\n");
  const auto notes = at(md, "\n## Method notes\n");
  CHECK(targets < prose);
  CHECK(prose < code);
  CHECK(code < plots);
  CHECK(plots < notes);
  CHECK(contains(md, "| <= 3.0 bits: ppl within 1 %, KL <= 0.01 | prose | no | no curvature or certified row"));
  // Sorted by bits: int2 (2.5) before int4 (4.5) before fp16 (16), then the row that did not run.
  const auto r_int2 = at(md, "| int2-d64 |");
  const auto r_int4 = at(md, "| int4-d64 |");
  const auto r_fp16 = at(md, "| fp16 |");
  const auto r_h2o = at(md, "| H2O 2 bits |");
  CHECK(r_int2 < r_int4);
  CHECK(r_int4 < r_fp16);
  CHECK(r_fp16 < r_h2o);
  CHECK(r_h2o < code);
  CHECK(contains(md, "| int2-d64 | uniform | K,V per-token groups of 64 | 2.500 | 0.3125 | 6.40x | 12.750 | +2.00 | 0.0123 | 98.50 | 1.5 |\n"));
  CHECK(contains(md, "| H2O 2 bits | h2o | did not run: out of memory | - | - | - | - | - | - | - | - |\n"));
  CHECK(contains(md, "| fp16 | fp16 | setting of fp16 | 16.000 | 2.0000 | 1.00x | 10.000 | +0.00 | 0 | 90.00 | 2.0 |\n"));
  CHECK(contains(md, "![quality-prose.png](quality-prose.png)\n![quality-code.png](quality-code.png)\n"
                     "![quality-pareto.png](quality-pareto.png)\n"));
  CHECK(contains(md, "\n- KIVI: keys per channel, values per token.\n- H2O keeps heavy hitters.\n"));
}

TEST_CASE("plot files: one per genre in display order, names kept inside the plot folder and distinct") {
  const std::vector<QualityRow> rows = {row("prose", "a", "fp16", 16, 0, 0), row("code", "a", "fp16", 16, 0, 0),
                                        row("prose", "b", "kivi", 2, 0.1, 1)};
  CHECK(quality_plot_files(rows) == std::vector<std::string>{"quality-prose.png", "quality-code.png", "quality-pareto.png"});
  const std::vector<QualityRow> odd = {row("../x y", "a", "fp16", 16, 0, 0), row("pareto", "a", "fp16", 16, 0, 0),
                                       row("__x_y", "a", "fp16", 16, 0, 0)};
  CHECK(quality_plot_files(odd) ==
        std::vector<std::string>{"quality-___x_y.png", "quality-pareto-2.png", "quality-__x_y.png", "quality-pareto.png"});
  CHECK(quality_plot_files({}) == std::vector<std::string>{"quality-pareto.png"});
}

TEST_CASE("gnuplot script: every plot into out_dir, fp16 off the log axis, and the Pareto frontier in (bits, KL)") {
  const std::vector<QualityRow> rows = {
      row("prose", "fp16", "fp16", 16.0, 0.0, 0.0),
      row("prose", "KIVI-2", "kivi", 2.0, 0.5, 1.0),
      row("prose", "curvature 3 bits", "curvature", 3.0, 0.25, 2.0, 3.0),
      row("prose", "int4-d32", "uniform", 3.5, 0.75, 5.0),  // dominated by the 3-bit row
      row("prose", "H2O 4 bits", "h2o", 4.0, 0.125, 3.0, 4.0),
      failed("prose", "H2O 2 bits", "h2o", "oom"),
      row("code", "KIVI-2", "kivi", 2.0, 0.5, 1.0),
  };
  const std::string gp = quality_gnuplot(rows, "results/quality.csv", "docs/it's");
  CHECK(contains(gp, "set terminal pngcairo size 900,560 noenhanced\n"));
  CHECK(contains(gp, "results/quality.csv"));
  for (const auto& file : quality_plot_files(rows)) CHECK(contains(gp, "set output 'docs/it''s/" + file + "'\n"));
  CHECK(contains(gp, "set xlabel 'bits per K/V element (metadata included)'\n"));
  CHECK(contains(gp, "set title 'prose: mean KL vs fp16 cache'\n"));
  CHECK(contains(gp, "$frontier_prose << EOD\n2 1 0.5\n3 2 0.25\n4 3 0.125\n16 0 0\nEOD\n"));
  CHECK(contains(gp, "$frontier_code << EOD\n2 1 0.5\nEOD\n"));
  CHECK(contains(gp, "$points_prose_uniform << EOD\n3.5 5 0.75\nEOD\n"));
  CHECK(contains(gp, "$points_prose_h2o << EOD\n4 3 0.125\nEOD\n"));  // the row that did not run is left out
  CHECK_FALSE(contains(gp, "H2O 2 bits"));
  CHECK(contains(gp, "set label 'int4-d32' at 3.5, 0.75 "));
  CHECK_FALSE(contains(gp, "set label 'fp16'"));  // KL 0 cannot sit on a log axis
  // The per-genre plot of prose has no fp16 series; the Pareto plot has one.
  const auto prose_plot = at(gp, "set output 'docs/it''s/quality-prose.png'");
  const auto code_plot = at(gp, "set output 'docs/it''s/quality-code.png'");
  const auto pareto_plot = at(gp, "set output 'docs/it''s/quality-pareto.png'");
  CHECK(gp.substr(prose_plot, code_plot - prose_plot).find("$points_prose_fp16") == std::string::npos);
  CHECK(gp.substr(pareto_plot).find("$points_prose_fp16 using 1:2") != std::string::npos);
  CHECK(gp.substr(pareto_plot).find("$frontier_prose using 1:2 with lines") != std::string::npos);
}

TEST_CASE("README table: methods that ran on every genre, uniform \"-d64\" only, by mean bits") {
  const auto both = [](const std::string& method, const std::string& family, double prose_bits, double code_bits,
                       double prose_kl, double code_kl, double prose_ppl, double code_ppl) {
    return std::vector<QualityRow>{row("prose", method, family, prose_bits, prose_kl, prose_ppl),
                                   row("code", method, family, code_bits, code_kl, code_ppl)};
  };
  std::vector<QualityRow> rows;
  for (auto pair : {both("fp16", "fp16", 16, 16, 0, 0, 0, 0), both("int4-d64", "uniform", 4.5, 4.5, 0.001, 0.002, 0.1, 0.2),
                    both("int4-d32", "uniform", 5, 5, 0.0005, 0.0005, 0.05, 0.05),
                    both("int2-t64", "uniform", 2.3, 2.3, 0.2, 0.2, 9.0, 9.0),  // per-token groups: not "-d64"
                    both("KIVI-2", "kivi", 2.0, 2.5, 0.0123, 0.5, 3.5, -4.25),
                    both("curvature 3 bits", "curvature", 3.0, 3.0, 0.004, 0.006, 0.5, -0.25)}) {
    rows.insert(rows.end(), pair.begin(), pair.end());
  }
  rows.push_back(row("prose", "H2O 3 bits", "h2o", 3.0, 0.1, 1.0));
  rows.push_back(failed("code", "H2O 3 bits", "h2o", "oom"));
  rows.push_back(row("prose", "certified eps 0.1", "certified", 2.8, 0.001, 0.1));  // missing on code
  CHECK(quality_readme_table(rows) ==
        "| method | bits/element | vs fp16 | prose KL | code KL | worst ppl change % |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: |\n"
        "| KIVI-2 | 2.25 | 7.11x | 0.0123 | 0.5 | -4.25 |\n"
        "| curvature 3 bits | 3.00 | 5.33x | 0.004 | 0.006 | +0.50 |\n"
        "| int4-d64 | 4.50 | 3.56x | 0.001 | 0.002 | +0.20 |\n"
        "| fp16 | 16.00 | 1.00x | 0 | 0 | +0.00 |\n");
}

TEST_CASE("replace_marked_block replaces exactly the lines between the markers") {
  const std::string begin = "<!-- quality-table:begin -->";
  const std::string end = "<!-- quality-table:end -->";
  const std::string doc = "# Title\n" + begin + "\nold 1\nold 2\n" + end + "\nafter\n";
  CHECK(replace_marked_block(doc, "new\n", "README.md") == "# Title\n" + begin + "\nnew\n" + end + "\nafter\n");
  const std::string empty_inside = begin + "\n" + end + "\n";
  CHECK(replace_marked_block(empty_inside, "x\n", "README.md") == begin + "\nx\n" + end + "\n");
  CHECK(replace_marked_block(doc, "", "README.md") == "# Title\n" + begin + "\n" + end + "\nafter\n");
  const std::string crlf = "a\r\n" + begin + "\r\nold\r\n" + end + "\r\n";
  CHECK(replace_marked_block(crlf, "new\r\n", "README.md") == "a\r\n" + begin + "\r\nnew\r\n" + end + "\r\n");

  const auto bad = [](const std::string& document, const std::string& message) {
    CHECK_THROWS_WITH_AS((void)replace_marked_block(document, "x\n", "README.md"), doctest::Contains(message.c_str()),
                         hnf::proofs::Error);
  };
  bad("text\n" + end + "\n", "README.md: no line '<!-- quality-table:begin -->'");
  bad(begin + "\n", "README.md: no line '<!-- quality-table:end -->'");
  bad("see " + begin + " here\n" + end + "\n", "no line '<!-- quality-table:begin -->'");  // a marker is a whole line
  bad(end + "\nx\n" + begin + "\n", "README.md: line 1: '<!-- quality-table:end -->' comes before '<!-- quality-table:begin -->' on line 3");
  bad(begin + "\n" + end + "\n" + begin + "\n", "'<!-- quality-table:begin -->' on lines 1 and 3: it must appear once");
}
