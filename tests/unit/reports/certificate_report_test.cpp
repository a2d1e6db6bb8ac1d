// The audit report's facts (margins, obstruction, heatmap) against values worked out by hand on
// the tiny certificate, and the rendered documents' content.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/reports/certificate_report.h"
#include "hnf/reports/text.h"
#include "test_files.h"
#include "tiny_certificate.h"

using namespace hnf::reports;
using hnf::proofs::Certificate;
using hnf::testing::count_occurrences;
using hnf::testing::kTool;
using hnf::testing::tiny_certificate;

namespace {

ReportInput input_for(const Certificate& c) {
  ReportInput in;
  in.certificate = c;
  in.certificate_path = "out dir/cert.json";
  in.check = hnf::proofs::check_certificate_text(hnf::proofs::certificate_to_json(c), "cert.json", {}, kTool);
  in.smt_dir = "out dir/smt";
  in.tool_version = "hnf-verify test";
  return in;
}

}  // namespace

TEST_CASE("report facts: margins, the obstruction and the composed bound of the tiny certificate") {
  const ReportInput in = input_for(tiny_certificate());
  const ReportFacts f = report_facts(in);
  CHECK(f.verdict == "certified");
  CHECK(f.bits_per_element == doctest::Approx(9.75));  // (16*7 + 16*12.5) / 32
  CHECK(f.compression == doctest::Approx(16.0 / 9.75));
  REQUIRE(f.obligations.size() == 3);
  const auto& s = f.obligations[0];
  CHECK(s.inequalities == 4);
  CHECK(s.worst == doctest::Approx(0.02));  // the largest of the bounds 0.01, 0.01, 0.02, 0.02
  CHECK(s.margin == doctest::Approx(0.03));
  CHECK(s.worst_at == "kv head 0, query head 1, position 30");
  const auto& n = f.obligations[1];
  CHECK(n.inequalities == 2);  // one row per allocation unit (schema 3)
  CHECK(n.below == 1);
  // log2(8 * 0.05 * 4^11 / (1/3)) at the fp16 unit (the int4 unit's row, position 3, is listed below).
  CHECK(n.min_log2_headroom == doctest::Approx(std::log2(0.4 * 4194304.0 * 3.0)));
  CHECK(n.worst_at == "kv head 0, position 16");
  REQUIRE(f.composed_bound.has_value());
  CHECK(*f.composed_bound == doctest::Approx(0.1));  // injection 2 x eps 1/20 (one layer: no Lipschitz factor)
  // Obstruction: 0 bits for kappa_d2 = 1/3 (0.4 >= 1/3); 5 bits for 200 (0.4 * 4^5 = 409.6 >= 200 > 102.4).
  CHECK(f.obstruction.rows == 2);
  CHECK(f.obstruction.mean_min_bits == doctest::Approx(5.0 / 2.0));
  CHECK(f.obstruction.mean_map_bits == doctest::Approx((4 + 11) / 2.0));
  CHECK(f.obstruction.below == 1);
}

TEST_CASE("the heatmap averages storage bits of keys and values, weighting short units by their positions") {
  Certificate c = tiny_certificate();
  const Heatmap full = map_heatmap(c.map, false, 512);
  REQUIRE(full.bits.size() == 1);
  REQUIRE(full.bits[0].size() == 2);
  CHECK(full.bits[0][0] == doctest::Approx(7.0));   // int4-d32 keys (5 bits) and int8-d32 values (9 bits)
  CHECK(full.bits[0][1] == doctest::Approx(12.5));  // fp16 keys (16) and int8-d32 values (9)
  CHECK(full.column_first == std::vector<std::int64_t>{0, 16});
  CHECK(full.column_end == std::vector<std::int64_t>{16, 32});
  CHECK(full.min_bits == doctest::Approx(7.0));
  CHECK(full.max_bits == doctest::Approx(12.5));
  const Heatmap one = map_heatmap(c.map, false, 1);
  CHECK(one.bits[0][0] == doctest::Approx(9.75));
  c.map.tokens = 24;  // the last unit holds 8 positions
  CHECK(map_heatmap(c.map, false, 1).bits[0][0] == doctest::Approx((16 * 7.0 + 8 * 12.5) / 24.0));
  CHECK(map_heatmap(c.map, false, 1).column_end == std::vector<std::int64_t>{24});
  const Heatmap per_head = map_heatmap(c.map, true, 4);
  CHECK(per_head.row_labels == std::vector<std::string>{"layer 0 / kv 0"});
  CHECK_THROWS_AS((void)map_heatmap(c.map, false, 0), hnf::proofs::Error);
}

TEST_CASE("the HTML page is self-contained and shows the verdict, the heatmap cells and every obligation") {
  const ReportInput in = input_for(tiny_certificate());
  const std::string html = render_html(in, report_facts(in));
  CHECK(html.find("id=\"verdict\" class=\"verdict certified\">CERTIFIED<") != std::string::npos);
  CHECK(count_occurrences(html, "<rect class=\"cell\"") == 2);
  CHECK(html.find("fill=\"") != std::string::npos);
  for (const char* name : {"layer0_sufficiency", "layer0_necessity", "composition"}) CHECK(html.find(name) != std::string::npos);
  // No fetches: no scripts, stylesheets, images or URLs to load (the SVG namespace is a name, not a fetch).
  for (const char* fetch : {"<script", "<link", "<img", "src=", "href=", "url(", "@import"}) CHECK(html.find(fetch) == std::string::npos);
  CHECK(html.find("out dir/cert.json") != std::string::npos);
  CHECK(html.find("The certify command is not recorded") != std::string::npos);
}

TEST_CASE("the Markdown summary holds the verdict, the heatmap table, margins and the re-check commands") {
  Certificate c = tiny_certificate();
  c.certify_command = "hnf-verify certify t.safetensors --eps 0.05 --out cert.json";
  const ReportInput in = input_for(c);
  const std::string md = render_markdown(in, report_facts(in));
  CHECK(md.find("**Verdict: CERTIFIED.**") != std::string::npos);
  CHECK(md.find("| layer 0 | 7.00 | 12.50 |") != std::string::npos);
  CHECK(md.find("largest bound 0.02 vs budget 0.05: margin 0.03 (40.00 % of the budget used)") != std::string::npos);
  CHECK(md.find("hnf-verify check 'out dir/cert.json' --model MODEL_DIR --trace t.safetensors --recompute") != std::string::npos);
  CHECK(md.find(c.certify_command) != std::string::npos);
  CHECK(md.find("needs at least 2.500 precision bits on average; the map stores 7.500") != std::string::npos);
}

TEST_CASE("re-check commands name every SMT file for z3 and cvc5, quoted for the shell") {
  Certificate c = tiny_certificate();
  c.obligations[0].smt_file = "layer0_sufficiency.smt2";
  ReportInput in = input_for(c);
  in.model_dir = "models/m";
  in.trace_path = "a b.safetensors";
  const auto cmds = recheck_commands(in);
  REQUIRE(cmds.size() == 3);
  CHECK(cmds[0] == "hnf-verify check 'out dir/cert.json' --model models/m --trace 'a b.safetensors' --recompute");
  CHECK(cmds[1].rfind("z3 'out dir/smt/layer0_sufficiency.smt2'", 0) == 0);
  CHECK(cmds[1].find("layer0_sufficiency proved: expect unsat") != std::string::npos);
  c.obligations[0].verdict = hnf::proofs::Verdict::kRefuted;
  in.certificate = c;
  CHECK(recheck_commands(in)[1].find("layer0_sufficiency refuted: expect sat") != std::string::npos);
  CHECK(cmds[2].rfind("cvc5 'out dir/smt/layer0_sufficiency.smt2'", 0) == 0);
}

TEST_CASE("a rejected or refuted certificate is reported as such, with its counterexample") {
  Certificate c = tiny_certificate();
  c.obligations[0].sufficiency[3].bound = "1/10";  // above the budget 1/20
  c.obligations[0].verdict = hnf::proofs::Verdict::kRefuted;
  c.obligations[0].detail = "layer 0, kv head 0, query head 1, position 31: bound exceeds the budget by 0.05";
  c.obligations[0].example = "Example: i = 3";
  c.verdict = "refuted";
  ReportInput in = input_for(c);
  REQUIRE(in.check.problems.empty());
  ReportFacts f = report_facts(in);
  CHECK(f.verdict == "refuted");
  CHECK(f.obligations[0].margin == doctest::Approx(-0.05));
  const std::string html = render_html(in, f);
  CHECK(html.find("Example: i = 3") != std::string::npos);
  CHECK(html.find("class=\"verdict refuted\"") != std::string::npos);
  CHECK(render_markdown(in, f).find("**layer0_sufficiency** refuted: layer 0, kv head 0") != std::string::npos);

  c = tiny_certificate();
  c.map_sha256 = std::string(64, '0');  // the checker recomputes it
  in = input_for(c);
  REQUIRE_FALSE(in.check.problems.empty());
  f = report_facts(in);
  CHECK(f.verdict == "rejected");
  CHECK(render_html(in, f).find("REJECTED by the exact checker") != std::string::npos);
}

TEST_CASE("an attached evaluation must be eval --cache --json output of the same map") {
  const std::string hash = tiny_certificate().map_sha256;
  const std::string good = R"({"text": "t.txt", "tokens": 2048, "perplexity": 37.3, "cache": {"map_sha256": ")" + hash +
                           R"(", "perplexity": 37.4, "mean_kl": 0.0009, "top1_agreement": 0.98, "bits_per_element": 6.3,
                              "decode_bound": {"rows": 4, "max": 0.5, "mean": 0.1}}})";
  const EvalFacts e = parse_eval_json(good, "eval.json", hash);
  CHECK(e.tokens == 2048);
  CHECK(e.perplexity_cache == doctest::Approx(37.4));
  CHECK(e.decode_bound_max.value() == doctest::Approx(0.5));
  CHECK_THROWS_WITH_AS((void)parse_eval_json(good, "eval.json", std::string(64, 'f')), doctest::Contains("another precision map"),
                       hnf::proofs::Error);
  CHECK_THROWS_WITH_AS((void)parse_eval_json(R"({"perplexity": 3})", "eval.json", hash), doctest::Contains("eval.json"),
                       hnf::proofs::Error);
  CHECK_THROWS_WITH_AS((void)parse_eval_json("not json", "eval.json", hash), doctest::Contains("not valid JSON"), hnf::proofs::Error);
  ReportInput in = input_for(tiny_certificate());
  in.eval = e;
  const std::string md = render_markdown(in, report_facts(in));
  CHECK(md.find("| mean KL vs fp32 (nats/token) | 0.000900 |") != std::string::npos);
}

TEST_CASE("shell quoting and XML escaping") {
  CHECK(shell_quote("models/hnf-llama-4m") == "models/hnf-llama-4m");
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("$(rm)") == "'$(rm)'");
  CHECK(xml_escape("<a href=\"x\">&'") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}
