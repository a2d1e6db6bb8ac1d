// hnf-verify report and gate through the binary, on the committed certificate of the reference
// model (tests/fixtures/hnf-llama-4m-128.cert.json): documents written or nothing written, and
// the gate's exit codes for pass, fail, unknown, malformed policy and a tampered certificate.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "hnf/proofs/certificate.h"
#include "run_cli.h"
#include "test_files.h"

using namespace hnf::testing;
namespace fs = std::filesystem;

namespace {

const std::string kSource = HNF_SOURCE_DIR;
const fs::path kFixture = fs::path(kSource) / "tests/fixtures/hnf-llama-4m-128.cert.json";
const fs::path kModel = fs::path(kSource) / "models/hnf-llama-4m";

// The policy the reference certificate meets (eps 0.3, every format of the vocabulary allowed
// but bf16, which it does not use), and one it does not.
constexpr const char* kPassPolicy = R"({"max_eps": "0.3", "min_compression": 2.5,
  "required_scope": {"model": true, "composition": true, "min_tokens": 128, "min_s1_queries": 16},
  "allowed_formats": ["fp16", "int8-d32", "int8-d64", "int4-d32", "int4-d64", "int3-d32", "int3-d64", "int2-d32",
                      "int2-d64", "int8-t16", "int4-t16", "int3-t16", "int2-t16"],
  "min_tool_version": "0.5.0"})";
constexpr const char* kFailPolicy = R"({"max_eps": "0.05", "min_compression": 2.5})";

// The fixture with one obligation timed out: a valid certificate whose verdict is unknown.
std::string unknown_certificate() {
  auto c = hnf::proofs::certificate_from_json(read_file(kFixture), kFixture.string());
  c.obligations.front().verdict = hnf::proofs::Verdict::kTimeout;
  c.obligations.front().detail = "timeout after 10000 ms";
  c.verdict = "unknown";
  return hnf::proofs::certificate_to_json(c);
}

}  // namespace

TEST_CASE("report writes the HTML page and the Markdown summary of the reference model's certificate") {
  TempDir dir;
  const auto run = hnf_verify("report " + quote(kFixture) + " --model " + quote(kModel) + " --html " + quote(dir / "r.html") +
                              " --md " + quote(dir / "r.md"));
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(contains(run.out, "certified"));
  const std::string html = read_file(dir / "r.html");
  CHECK(contains(html, "id=\"verdict\" class=\"verdict certified\">CERTIFIED<"));
  CHECK(count_occurrences(html, "<rect class=\"cell\"") == 4 * 8);  // 4 layers x 8 blocks of 16 of the 128 traced positions
  CHECK(contains(html, "model hash compared"));
  const std::string md = read_file(dir / "r.md");
  CHECK(contains(md, "**Verdict: CERTIFIED.**"));
  CHECK(contains(md, "| layer 3 |"));
  CHECK(contains(md, "hnf-verify check "));  // (the fixture was certified without --smt-dir: no z3 lines)
  // --per-head: one row per layer and kv head.
  REQUIRE(hnf_verify("report " + quote(kFixture) + " --per-head --html " + quote(dir / "h.html")).exit_code == 0);
  CHECK(count_occurrences(read_file(dir / "h.html"), "<rect class=\"cell\"") == 4 * 2 * 8);
}

TEST_CASE("report refuses bad input with exit 3 and writes nothing") {
  TempDir dir;
  auto run = hnf_verify("report " + quote(kFixture));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "give --html FILE, --md FILE or both"));
  run = hnf_verify("report " + quote(dir / "missing.json") + " --html " + quote(dir / "r.html"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "missing.json"));
  write_file(dir / "eval.json", R"({"text": "t", "tokens": 1, "perplexity": 2, "cache": {"map_sha256": "00"}})");
  run = hnf_verify("report " + quote(kFixture) + " --eval " + quote(dir / "eval.json") + " --html " + quote(dir / "r.html") +
                   " --md " + quote(dir / "r.md"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "another precision map"));
  CHECK_FALSE(fs::exists(dir / "r.html"));
  CHECK_FALSE(fs::exists(dir / "r.md"));
}

TEST_CASE("gate: pass 0, fail 1 naming the rule, unknown 2, malformed policy and tampered certificate 3") {
  TempDir dir;
  write_file(dir / "pass.json", kPassPolicy);
  write_file(dir / "fail.json", kFailPolicy);
  write_file(dir / "bad.json", R"({"max_eps": "0.3", "min_compresion": 2})");
  write_file(dir / "unknown.cert.json", unknown_certificate());

  auto run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(kFixture) + " --model " + quote(kModel) +
                        " --junit " + quote(dir / "pass.xml") + " --summary " + quote(dir / "pass.md"));
  INFO(run.out, run.err);
  CHECK(run.exit_code == 0);
  CHECK(contains(run.out, "PASS"));
  CHECK(contains(read_file(dir / "pass.md"), "## hnf-verify gate: PASS"));
  // The JUnit XML validates against the schema of its required elements (tests/fixtures/junit.xsd).
  const std::string xsd = (fs::path(kSource) / "tests/fixtures/junit.xsd").string();
  if (std::system("command -v xmllint >/dev/null 2>&1") == 0) {
    CHECK(std::system(("xmllint --noout --schema '" + xsd + "' " + quote(dir / "pass.xml") + " 2>/dev/null").c_str()) == 0);
  } else {
    MESSAGE("xmllint not installed (Debian libxml2-utils): the JUnit schema check did not run");
  }

  run = hnf_verify("gate --policy " + quote(dir / "fail.json") + " " + quote(kFixture) + " --junit " + quote(dir / "fail.xml"));
  CHECK(run.exit_code == 1);
  CHECK(contains(run.out, "max_eps"));
  CHECK(contains(run.out, "exceeds the policy's max_eps 0.05"));
  CHECK(contains(read_file(dir / "fail.xml"), "<failure message=\"epsilon 0.3 exceeds"));
  if (std::system("command -v xmllint >/dev/null 2>&1") == 0) {
    CHECK(std::system(("xmllint --noout --schema '" + xsd + "' " + quote(dir / "fail.xml") + " 2>/dev/null").c_str()) == 0);
    // The schema check can fail: a testcase without its required classname is rejected.
    write_file(dir / "broken.xml", R"(<testsuites><testsuite name="a" tests="1" failures="0" errors="0"><testcase name="x"/></testsuite></testsuites>)");
    CHECK(std::system(("xmllint --noout --schema '" + xsd + "' " + quote(dir / "broken.xml") + " 2>/dev/null").c_str()) != 0);
  }

  run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(dir / "unknown.cert.json"));
  CHECK(run.exit_code == 2);
  CHECK(contains(run.out, "UNKNOWN"));
  // A failure outranks an unknown.
  CHECK(hnf_verify("gate --policy " + quote(dir / "fail.json") + " " + quote(dir / "unknown.cert.json") + " " + quote(kFixture))
            .exit_code == 1);

  run = hnf_verify("gate --policy " + quote(dir / "bad.json") + " " + quote(kFixture) + " --junit " + quote(dir / "bad.xml"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "min_compresion is not a policy setting"));
  CHECK_FALSE(fs::exists(dir / "bad.xml"));

  std::string tampered = read_file(kFixture);
  tampered.replace(tampered.find("\"eps\""), 5, "\"eps\" ");  // whitespace only: same JSON, same hash
  write_file(dir / "same.cert.json", tampered);
  CHECK(hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(dir / "same.cert.json")).exit_code == 0);
  const auto at = tampered.find("\"tokens\": 128");
  REQUIRE(at != std::string::npos);
  tampered.replace(at, 13, "\"tokens\": 256");
  write_file(dir / "tampered.cert.json", tampered);
  run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(dir / "tampered.cert.json"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "certificate_sha256"));
}
