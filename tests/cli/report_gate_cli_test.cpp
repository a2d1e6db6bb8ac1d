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
// The fixture's attestation and the public key it verifies under (tests/fixtures/regenerate.sh).
const std::string kAttested = " --attestation " + quote(fs::path(kSource) / "tests/fixtures/hnf-llama-4m-128.attestation.json") +
                              " --public-key " + quote(fs::path(kSource) / "tests/fixtures/fixture.pub");

// The policy the reference certificate meets (eps 0.3, every format of the vocabulary allowed
// but bf16, which it does not use), and one it does not. Its composition is recorded (certified
// without --eps-total), so a policy requiring a proved composition fails it.
constexpr const char* kPassPolicy = R"({"max_eps": "0.3", "min_compression": 2.5,
  "required_scope": {"model": true, "min_tokens": 128, "min_s1_queries": 16},
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
  const auto run = hnf_verify("report " + quote(kFixture) + " --model " + quote(kModel) + kAttested + " --html " +
                              quote(dir / "r.html") + " --md " + quote(dir / "r.md"));
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(contains(run.out, "certified"));
  const std::string html = read_file(dir / "r.html");
  CHECK(contains(html, "id=\"verdict\" class=\"verdict certified\">CERTIFIED<"));
  CHECK(count_occurrences(html, "<rect class=\"cell\"") == 4 * 8);  // 4 layers x 8 blocks of 16 of the 128 traced positions
  CHECK(contains(html, "model hash compared"));
  CHECK(contains(html, "witnesses attested"));
  CHECK(contains(run.out, "compared     model compared, trace not compared, witnesses attested"));
  const std::string md = read_file(dir / "r.md");
  CHECK(contains(md, "**Verdict: CERTIFIED.**"));
  // Version 1's necessity rows and budget-less composition are not counted as proved.
  CHECK(contains(md, "obligations: 4 proved, 0 refuted, 0 open, 4 diagnostic, 1 recorded"));
  CHECK(contains(md, "| layer0_necessity | necessity |"));
  CHECK(contains(md, "| diagnostic |"));
  CHECK(contains(md, "| recorded |"));
  CHECK(contains(md, "| layer 3 |"));
  CHECK(contains(md, "hnf-verify check "));  // (the fixture was certified without --smt-dir: no z3 lines)
  // --per-head: one row per layer and kv head. --unattested: reported, and the page says so.
  REQUIRE(hnf_verify("report " + quote(kFixture) + " --unattested --per-head --html " + quote(dir / "h.html")).exit_code == 0);
  CHECK(contains(read_file(dir / "h.html"), "witnesses neither re-derived nor attested"));
  CHECK(count_occurrences(read_file(dir / "h.html"), "<rect class=\"cell\"") == 4 * 2 * 8);
}

TEST_CASE("report refuses bad input with exit 3 and writes nothing") {
  TempDir dir;
  auto run = hnf_verify("report " + quote(kFixture));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "give --html FILE, --md FILE or both"));
  // Unverified witnesses are refused by default (the named opt-out is --unattested).
  run = hnf_verify("report " + quote(kFixture) + " --html " + quote(dir / "r.html"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "hnf-llama-4m-128.cert.json: its witnesses were neither re-derived nor attested"));
  CHECK_FALSE(fs::exists(dir / "r.html"));
  run = hnf_verify("report " + quote(dir / "missing.json") + " --html " + quote(dir / "r.html"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "missing.json"));
  write_file(dir / "eval.json", R"({"text": "t", "tokens": 1, "perplexity": 2, "cache": {"map_sha256": "00"}})");
  run = hnf_verify("report " + quote(kFixture) + kAttested + " --eval " + quote(dir / "eval.json") + " --html " +
                   quote(dir / "r.html") + " --md " + quote(dir / "r.md"));
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
                        kAttested + " --junit " + quote(dir / "pass.xml") + " --summary " + quote(dir / "pass.md"));
  INFO(run.out, run.err);
  CHECK(run.exit_code == 0);
  CHECK(contains(run.out, "PASS"));
  CHECK(contains(run.out, "model compared, trace not compared, witnesses attested"));
  // Without --model the model rule is not established, and without an attestation neither are
  // the witnesses: unknown (exit 2), never PASS.
  run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(kFixture) + kAttested);
  CHECK(run.exit_code == 2);
  CHECK(contains(run.out, "the model file was not compared (give --model)"));
  run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(kFixture) + " --model " + quote(kModel));
  CHECK(run.exit_code == 2);
  CHECK(contains(run.out, "neither re-derived nor attested"));
  // A recorded composition is not a proved one.
  write_file(dir / "composition.json", R"({"required_scope": {"composition": true}})");
  run = hnf_verify("gate --policy " + quote(dir / "composition.json") + " " + quote(kFixture) + " --model " + quote(kModel) +
                   kAttested);
  CHECK(run.exit_code == 1);
  CHECK(contains(run.out, "the composition is recorded, not proved"));
  CHECK(contains(read_file(dir / "pass.md"), "## hnf-verify gate: PASS"));
  // The JUnit XML validates against the schema of its required elements (tests/fixtures/junit.xsd).
  // xmllint is a hard requirement: scripts/setup.sh installs it (Debian libxml2-utils).
  const std::string xsd = (fs::path(kSource) / "tests/fixtures/junit.xsd").string();
  REQUIRE_MESSAGE(std::system("command -v xmllint >/dev/null 2>&1") == 0,
                  "xmllint not installed (Debian libxml2-utils, scripts/setup.sh installs it)");
  CHECK(std::system(("xmllint --noout --schema '" + xsd + "' " + quote(dir / "pass.xml") + " 2>/dev/null").c_str()) == 0);

  run = hnf_verify("gate --policy " + quote(dir / "fail.json") + " " + quote(kFixture) + " --junit " + quote(dir / "fail.xml"));
  CHECK(run.exit_code == 1);
  CHECK(contains(run.out, "max_eps"));
  CHECK(contains(run.out, "exceeds the policy's max_eps 0.05"));
  CHECK(contains(read_file(dir / "fail.xml"), "<failure message=\"epsilon 0.3 exceeds"));
  CHECK(std::system(("xmllint --noout --schema '" + xsd + "' " + quote(dir / "fail.xml") + " 2>/dev/null").c_str()) == 0);
  // The schema check can fail: a testcase without its required classname is rejected.
  write_file(dir / "broken.xml", R"(<testsuites><testsuite name="a" tests="1" failures="0" errors="0"><testcase name="x"/></testsuite></testsuites>)");
  CHECK(std::system(("xmllint --noout --schema '" + xsd + "' " + quote(dir / "broken.xml") + " 2>/dev/null").c_str()) != 0);

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
  CHECK(hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(dir / "same.cert.json") + " --model " +
                   quote(kModel) + kAttested)
            .exit_code == 0);
  const auto at = tampered.find("\"tokens\": 128");
  REQUIRE(at != std::string::npos);
  tampered.replace(at, 13, "\"tokens\": 256");
  write_file(dir / "tampered.cert.json", tampered);
  run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(dir / "tampered.cert.json"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "certificate_sha256"));
}

// Issue 17: a certificate whose witnesses were lowered and whose hash was recomputed is
// internally consistent; only the witnesses' re-derivation or an attestation can tell. gate and
// report must not pass it.
TEST_CASE("a forged certificate (a witness lowered, hash recomputed) passes neither gate nor report") {
  TempDir dir;
  auto c = hnf::proofs::certificate_from_json(read_file(kFixture), kFixture.string());
  REQUIRE(c.obligations.front().kind == hnf::proofs::ObligationKind::kSufficiency);
  c.obligations.front().sufficiency.front().bound = "0";
  write_file(dir / "forged.cert.json", hnf::proofs::certificate_to_json(c));
  write_file(dir / "pass.json", kPassPolicy);

  // With the fixture's attestation: it is for another claim, so the checker rejects the forgery.
  auto run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(dir / "forged.cert.json") + " --model " +
                        quote(kModel) + kAttested);
  CHECK(run.exit_code == 1);
  CHECK(contains(run.out, "the attestation is for another certificate"));
  CHECK(contains(run.out, "the exact checker rejected the certificate"));
  // Without one: not established, never PASS.
  run = hnf_verify("gate --policy " + quote(dir / "pass.json") + " " + quote(dir / "forged.cert.json") + " --model " +
                   quote(kModel));
  CHECK(run.exit_code == 2);
  CHECK_FALSE(contains(run.out, ": pass"));

  run = hnf_verify("report " + quote(dir / "forged.cert.json") + " --model " + quote(kModel) + kAttested + " --md " +
                   quote(dir / "r.md"));
  CHECK(run.exit_code == 3);
  CHECK(contains(read_file(dir / "r.md"), "REJECTED"));
  CHECK_FALSE(contains(read_file(dir / "r.md"), "Verdict: CERTIFIED"));
  run = hnf_verify("report " + quote(dir / "forged.cert.json") + " --model " + quote(kModel) + " --md " + quote(dir / "r2.md"));
  CHECK(run.exit_code == 3);
  CHECK(contains(run.err, "neither re-derived nor attested"));
  CHECK_FALSE(fs::exists(dir / "r2.md"));
}

// The golden of certificate schema version 1 (made by 0.5.0 before issue 17, never regenerated):
// still judged, with its necessity "proved" read as diagnostic and its budget-less composition
// as recorded.
TEST_CASE("a schema version 1 certificate is still judged, with the same meaning") {
  TempDir dir;
  const fs::path v1 = fs::path(kSource) / "tests/fixtures/schema-v1-hnf-llama-4m-128.cert.json";
  REQUIRE(contains(read_file(v1), "\"version\": 1"));
  auto run = hnf_verify("check " + quote(v1) + " --model " + quote(kModel));
  CHECK(run.exit_code == 0);
  CHECK(contains(run.out, "valid, verdict certified"));
  run = hnf_verify("report " + quote(v1) + " --model " + quote(kModel) + " --unattested --md " + quote(dir / "v1.md"));
  CHECK(run.exit_code == 0);
  CHECK(contains(read_file(dir / "v1.md"), "obligations: 4 proved, 0 refuted, 0 open, 4 diagnostic, 1 recorded"));
  // A policy requiring a proved composition is not met by version 1's recorded one.
  write_file(dir / "composition.json", R"({"required_scope": {"composition": true}})");
  run = hnf_verify("gate --policy " + quote(dir / "composition.json") + " " + quote(v1) + " --model " + quote(kModel));
  CHECK(run.exit_code == 1);
  CHECK(contains(run.out, "the composition is recorded, not proved"));
}
