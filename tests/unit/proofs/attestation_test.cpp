// Honest verdicts (necessity is a diagnostic, a budget-less composition is recorded; version 1
// certificates read with the same meaning), the claim hash, and Ed25519 attestations: a forged
// certificate whose hash was recomputed is not attested, and a map is witnesses_verified() only
// when an attestation verified under the configured key (or the witnesses were re-derived).
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "hnf/proofs/attestation.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "tiny_certificate.h"

using namespace hnf::proofs;
using hnf::testing::kTool;
using hnf::testing::tiny_certificate;
using Json = nlohmann::json;

namespace {

CheckReport check(const Certificate& c, const CheckOptions& options = {}) { return hnf::testing::check_written(c, options); }

std::string first_problem(const Certificate& c) {
  const auto report = check(c);
  return report.problems.empty() ? std::string() : report.problems.front();
}

// The tiny certificate as version 1 wrote it: necessity "proved", and the composition "proved"
// with no recorded --eps-total (what certify did without one).
Certificate version1_certificate() {
  Certificate c = tiny_certificate();
  c.version = 1;
  c.obligations[1].verdict = Verdict::kProved;
  hnf::testing::use_per_position_necessity(c);
  return c;
}

Attestation attestation_of(const Certificate& c, const SecretKey& key) {
  Attestation a;
  a.claim_sha256 = certificate_claim_sha256(c);
  a.model_sha256 = std::string(64, 'b');
  a.trace_sha256 = c.trace_sha256;
  a.witnesses_compared = 12;
  a.tool_version = std::string(kTool);
  return sign_attestation(a, key);
}

// A certificate tied to a model (attestations need model and trace hashes).
Certificate modelled_certificate() {
  Certificate c = tiny_certificate();
  c.model_sha256 = std::string(64, 'b');
  return c;
}

}  // namespace

TEST_CASE("only answers count: necessity is a diagnostic, a composition without a budget is recorded") {
  const Certificate c = tiny_certificate();
  const ObligationCounts n = count_obligations(c);
  CHECK(n.proved == 2);  // sufficiency, and the composition against its budget of 1/10
  CHECK(n.diagnostic == 1);
  CHECK(n.recorded == 0);
  CHECK(derived_verdict(c) == "certified");

  SUBCASE("a version 2 necessity obligation claiming proved is rejected") {
    Certificate bad = tiny_certificate();
    bad.obligations[1].verdict = Verdict::kProved;
    CHECK(first_problem(bad).find("must be diagnostic") != std::string::npos);
  }
  SUBCASE("a recorded composition must state exactly its composed bound") {
    Certificate recorded = tiny_certificate();
    recorded.obligations[2].verdict = Verdict::kRecorded;
    CHECK(first_problem(recorded).empty());  // 2 * 1/20 = 1/10 is the budget written
    CHECK(count_obligations(recorded).recorded == 1);
    CHECK(count_obligations(recorded).proved == 1);
    recorded.obligations[2].budget = "1/5";
    CHECK(first_problem(recorded).find("composed bound") != std::string::npos);
  }
  SUBCASE("diagnostics alone certify nothing: an open sufficiency leaves the verdict unknown") {
    Certificate open = tiny_certificate();
    open.obligations[0].verdict = Verdict::kTimeout;
    open.obligations.pop_back();  // no composition
    open.verdict = "unknown";
    CHECK(derived_verdict(open) == "unknown");
    const auto report = check(open);
    CHECK(report.problems.empty());
    CHECK(report.verdict == "unknown");
    CHECK_FALSE(report.certified.has_value());
  }
  SUBCASE("diagnostic and recorded are refused where they mean nothing") {
    Certificate bad = tiny_certificate();
    bad.obligations[0].verdict = Verdict::kDiagnostic;
    CHECK(first_problem(bad).find("only a necessity obligation") != std::string::npos);
  }
}

TEST_CASE("version 2 certificates keep one necessity row per position, version 3 refuses them") {
  Certificate v2 = tiny_certificate();
  v2.version = 2;
  hnf::testing::use_per_position_necessity(v2);
  CHECK(check(v2).problems.empty());
  CHECK(check(v2).verdict == "certified");
  Certificate v3 = v2;
  v3.version = 3;
  CHECK(first_problem(v3).find("32 rows, expected one per kv head and allocation unit (2)") != std::string::npos);
  v2.obligations[1].necessity.resize(2);
  CHECK(first_problem(v2).find("expected one per kv head and position (32)") != std::string::npos);
}

TEST_CASE("version 1 certificates are judged with the same meaning") {
  const Certificate v1 = version1_certificate();
  const auto report = check(v1);
  REQUIRE(report.problems.empty());
  CHECK(report.verdict == "certified");
  // Its necessity "proved" is read as a diagnostic, and its composition (no --eps-total in a
  // recorded certify command) as recorded.
  CHECK(obligation_standing(v1, v1.obligations[1]) == Standing::kDiagnostic);
  CHECK(obligation_standing(v1, v1.obligations[2]) == Standing::kRecorded);
  CHECK(count_obligations(v1).proved == 1);
  // A version 1 composition whose recorded certify command names --eps-total stays an answer.
  Certificate budgeted = v1;
  budgeted.obligations[2].budget = "1/5";
  CHECK(obligation_standing(budgeted, budgeted.obligations[2]) == Standing::kRecorded);
  budgeted.certify_command = "hnf-verify certify t.safetensors --eps 0.05 --model m --eps-total 0.2 --out c.json";
  CHECK(obligation_standing(budgeted, budgeted.obligations[2]) == Standing::kProved);
  // Version 1 knew neither diagnostic nor recorded.
  Certificate bad = v1;
  bad.obligations[1].verdict = Verdict::kDiagnostic;
  CHECK(first_problem(bad).find("version 2") != std::string::npos);
  // Newer or unknown versions are refused with one clear line.
  Json j = Json::parse(certificate_to_json(tiny_certificate()));
  j["version"] = kCertificateVersion + 1;
  CHECK_THROWS_WITH_AS((void)check_certificate_text(j.dump(), "c.json", {}, kTool), doctest::Contains("versions 1 to 4"), Error);
}

TEST_CASE("the claim hash covers claims, not where or how a certificate was made") {
  const Certificate c = tiny_certificate();
  const std::string claim = certificate_claim_sha256(c);
  Certificate moved = c;
  moved.trace_file = "elsewhere.safetensors";
  moved.certify_command = "hnf-verify certify elsewhere.safetensors --eps 0.05";
  moved.obligations[0].solver_ms = 1234.5;
  moved.obligations[0].smt_file = "x.smt2";
  CHECK(certificate_claim_sha256(moved) == claim);
  CHECK(certificate_sha256(moved) != certificate_sha256(c));  // the file hash still sees them
  Certificate lowered = c;
  lowered.obligations[0].sufficiency[0].bound = "1/1000";
  CHECK(certificate_claim_sha256(lowered) != claim);
  Certificate other_model = c;
  other_model.model_sha256 = std::string(64, 'c');
  CHECK(certificate_claim_sha256(other_model) != claim);
}

TEST_CASE("an attestation verifies only under the trusted key and only for its certificate") {
  const KeyPair keys = generate_key_pair();
  const KeyPair other = generate_key_pair();
  const Certificate c = modelled_certificate();
  const Attestation a = attestation_of(c, keys.secret_key);
  CHECK(attestation_problem(a, c, keys.public_key).empty());
  CHECK(a.public_key_hex == key_hex(keys.public_key));

  // Another key: the file's own public_key field is not the trust anchor.
  CHECK(attestation_problem(a, c, other.public_key).find("does not verify") != std::string::npos);
  Attestation resigned = attestation_of(c, other.secret_key);
  resigned.public_key_hex = key_hex(keys.public_key);  // claims to be from the trusted key
  CHECK(attestation_problem(resigned, c, keys.public_key).find("does not verify") != std::string::npos);

  // Any signed field changed breaks the signature.
  Attestation edited = a;
  edited.witnesses_compared = 13;
  CHECK_FALSE(attestation_problem(edited, c, keys.public_key).empty());

  // The forgery of issue 17: a witness lowered and the certificate hash recomputed. The
  // certificate is internally consistent, but its claim is not the attested one.
  Certificate forged = c;
  forged.obligations[0].sufficiency[0].bound = "0";
  CHECK(check(forged).problems.empty());
  CHECK(attestation_problem(a, forged, keys.public_key).find("another certificate") != std::string::npos);
}

TEST_CASE("the checker marks a map attested only when the attestation verifies") {
  const KeyPair keys = generate_key_pair();
  const Certificate c = modelled_certificate();
  CheckOptions options;
  options.attestation = attestation_of(c, keys.secret_key);
  options.trusted_key = keys.public_key;
  const auto ok = check(c, options);
  REQUIRE(ok.certified.has_value());
  CHECK(ok.attested);
  CHECK(ok.certified->witnesses_attested());
  CHECK(ok.certified->witnesses_verified());
  CHECK_FALSE(ok.certified->witnesses_recomputed());

  const auto plain = check(c);
  REQUIRE(plain.certified.has_value());
  CHECK_FALSE(plain.certified->witnesses_verified());

  Certificate forged = c;
  forged.obligations[0].sufficiency[0].bound = "0";
  const auto refused = check(forged, options);
  CHECK_FALSE(refused.certified.has_value());
  REQUIRE_FALSE(refused.problems.empty());
  CHECK(refused.problems.front().find("another certificate") != std::string::npos);
}

TEST_CASE("attestation and key files round-trip and malformed ones are bad input") {
  const KeyPair keys = generate_key_pair();
  const Attestation a = attestation_of(modelled_certificate(), keys.secret_key);
  const Attestation back = attestation_from_json(attestation_to_json(a), "a.json");
  CHECK(attestation_message(back) == attestation_message(a));
  CHECK(back.signature_hex == a.signature_hex);

  Json j = Json::parse(attestation_to_json(a));
  auto rejects = [&](Json edited, const char* reason) {
    CHECK_THROWS_WITH_AS((void)attestation_from_json(edited.dump(), "a.json"), doctest::Contains(reason), Error);
  };
  Json extra = j;
  extra["note"] = "x";
  rejects(extra, "not a field");
  Json missing = j;
  missing.erase("signature");
  rejects(missing, "missing");
  Json zero = j;
  zero["witnesses_compared"] = 0;
  rejects(zero, "positive");
  Json partial = j;
  partial["compared"] = {"model", "trace"};
  rejects(partial, "compared");
  Json version = j;
  version["version"] = 4294967297ULL;  // would be 1 if narrowed to int
  rejects(version, "version");
  CHECK_THROWS_AS((void)attestation_from_json("[[[[", "a.json"), Error);

  const auto dir = std::filesystem::temp_directory_path() / ("hnf-keys-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "k.pub") << public_key_text(keys.public_key);
    std::ofstream(dir / "k.key") << secret_key_text(keys.secret_key);
    std::ofstream(dir / "bad.pub") << "hnf-ed25519-public-key 00zz\n";
    std::ofstream(dir / "swapped.pub") << secret_key_text(keys.secret_key);
  }
  CHECK(read_public_key(dir / "k.pub").bytes == keys.public_key.bytes);
  CHECK(read_secret_key(dir / "k.key").bytes == keys.secret_key.bytes);
  CHECK_THROWS_WITH_AS((void)read_public_key(dir / "bad.pub"), doctest::Contains("bad.pub"), Error);
  CHECK_THROWS_WITH_AS((void)read_public_key(dir / "swapped.pub"), doctest::Contains("must start with"), Error);
  CHECK_THROWS_AS((void)read_public_key(dir / "missing.pub"), Error);
  std::filesystem::remove_all(dir);
}
