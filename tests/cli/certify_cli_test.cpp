// certify and check through the CLI: golden inputs (tests/golden/*.json, expected verdict
// inside each file), tampering, the SMT-LIB cross-check with z3 and cvc5, the reference model
// with the composition obligation, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hnf/analysis/witnesses.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/sha256.h"
#include "hnf/proofs/error.h"
#include "run_cli.h"
#include "test_files.h"

using namespace hnf::testing;
using Json = nlohmann::json;

namespace {

const std::filesystem::path kSource = HNF_SOURCE_DIR;
const std::filesystem::path kTinyTrace = kSource / "examples" / "tiny-trace.safetensors";
const std::filesystem::path kModel = kSource / "models" / "hnf-llama-4m";

std::string args_of(const Json& golden) {
  std::string s;
  for (const auto& a : golden.at("args")) s += " " + quote(a.get<std::string>());
  return s;
}

// The environment a golden sets for its certify run ("env": {"NAME": "value"}), e.g. the solver's
// timeout test hook HNF_TEST_SOLVER_TIMEOUT, as shell assignments.
std::string environment_of(const Json& golden) {
  std::string s;
  const Json environment = golden.value("env", Json::object());
  for (const auto& [name, value] : environment.items()) s += name + "=" + quote(value.get<std::string>()) + " ";
  return s;
}

int exit_for(const std::string& verdict) { return verdict == "certified" ? 0 : verdict == "refuted" ? 1 : 2; }

// Runs `command`, returning its stdout (stderr dropped) and exit status.
std::pair<int, std::string> shell(const std::string& command) {
  TempDir dir;
  const int status = std::system((command + " >" + quote(dir / "out") + " 2>/dev/null </dev/null").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "out")};
}

}  // namespace

TEST_CASE("golden inputs give the verdict written inside each file, and check agrees") {
  int cases = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSource / "tests" / "golden")) {
    if (entry.path().extension() != ".json") continue;
    ++cases;
    const Json golden = Json::parse(read_file(entry.path()));
    const Json& expect = golden.at("expect");
    CAPTURE(entry.path().filename().string());
    TempDir dir;
    const auto run = hnf_verify("certify " + quote(kSource / golden.at("trace").get<std::string>()) + args_of(golden) +
                                    " --out " + quote(dir / "cert.json"),
                                environment_of(golden));
    CAPTURE(run.out);
    CAPTURE(run.err);
    CHECK(run.exit_code == expect.at("exit").get<int>());
    for (const auto& s : expect.value("stdout_contains", Json::array())) CHECK(contains(run.out, s.get<std::string>()));
    for (const auto& s : expect.value("stdout_excludes", Json::array())) CHECK_FALSE(contains(run.out, s.get<std::string>()));
    const Json cert = Json::parse(read_file(dir / "cert.json"));
    CHECK(cert.at("verdict") == expect.at("verdict"));
    const auto check = hnf_verify("check " + quote(dir / "cert.json") + " --trace " +
                                  quote(kSource / golden.at("trace").get<std::string>()));
    CAPTURE(check.out);
    CAPTURE(check.err);
    CHECK(check.exit_code == exit_for(expect.at("verdict").get<std::string>()));
    CHECK(contains(check.out, "valid, verdict " + expect.at("verdict").get<std::string>()));
  }
  CHECK(cases >= 3);
}

TEST_CASE("every SMT-LIB file of a certified map is answered unsat by z3 and by cvc5") {
  TempDir dir;
  const auto run = hnf_verify("certify " + quote(kTinyTrace) + " --eps 0.5 --out " + quote(dir / "cert.json") +
                              " --smt-dir " + quote(dir / "smt"));
  REQUIRE(run.exit_code == 0);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "smt")) {
    ++files;
    CAPTURE(entry.path().string());
    const auto [z3_status, z3_out] = shell("z3 -T:60 " + quote(entry.path()));
    CHECK(z3_status == 0);
    CHECK(z3_out == "unsat\n");
    const auto [cvc5_status, cvc5_out] = shell("cvc5 --tlimit=60000 " + quote(entry.path()));
    CHECK(cvc5_status == 0);
    CHECK(cvc5_out == "unsat\n");
  }
  CHECK(files == 2);  // one sufficiency obligation per layer; necessity rows are diagnostics, never sent to a solver
  // The refuted obligation's file is answered sat by both: the scripts are not trivially unsat.
  TempDir refuted;
  REQUIRE(hnf_verify("certify " + quote(kTinyTrace) + " --eps 1e-12 --out " + quote(refuted / "cert.json") +
                     " --smt-dir " + quote(refuted / "smt"))
              .exit_code == 1);
  CHECK(shell("z3 -T:60 " + quote(refuted / "smt" / "layer0_sufficiency.smt2")).second == "sat\n");
  CHECK(shell("cvc5 --tlimit=60000 " + quote(refuted / "smt" / "layer0_sufficiency.smt2")).second == "sat\n");
}

// 1,000 mutations of a valid certificate: 500 single-byte edits of the file and 500 edits of
// one JSON value. Every edit that changes the certificate's meaning (its canonical JSON) must
// be rejected; edits of whitespace may pass.
TEST_CASE("tampering: no meaning-changing mutation of a certificate is accepted") {
  TempDir dir;
  REQUIRE(hnf_verify("certify " + quote(kTinyTrace) + " --eps 0.5 --out " + quote(dir / "cert.json")).exit_code == 0);
  const std::string original = read_file(dir / "cert.json");
  const std::string canonical = Json::parse(original).dump();
  // The unmutated certificate passes: every rejection below is caused by its mutation.
  REQUIRE(hnf::proofs::check_certificate_text(original, "cert.json", {}, "hnf-verify " HNF_TOOL_VERSION).problems.empty());
  std::mt19937_64 rng(2026);
  int meaningful = 0, rejected = 0, accepted_changed = 0;
  auto judge = [&](const std::string& text) {
    bool parses = true;
    std::string mutated_canonical;
    try {
      mutated_canonical = Json::parse(text).dump();
    } catch (const Json::exception&) {
      parses = false;
    }
    if (parses && mutated_canonical == canonical) return;  // same meaning (whitespace)
    ++meaningful;
    bool ok = false;
    try {
      const auto report = hnf::proofs::check_certificate_text(text, "cert.json", {}, "hnf-verify " HNF_TOOL_VERSION);
      ok = report.problems.empty();
    } catch (const hnf::proofs::Error&) {
      ok = false;
    }
    if (ok) {
      ++accepted_changed;
    } else {
      ++rejected;
    }
  };
  for (int i = 0; i < 500; ++i) {
    std::string text = original;
    const std::size_t at = std::uniform_int_distribution<std::size_t>(0, text.size() - 1)(rng);
    char replacement = static_cast<char>(std::uniform_int_distribution<int>(32, 126)(rng));
    if (replacement == text[at]) replacement = text[at] == 'x' ? 'y' : 'x';
    text[at] = replacement;
    judge(text);
  }
  // Value edits: pick a random leaf of the JSON tree and change it minimally.
  std::vector<Json::json_pointer> leaves;
  const Json doc = Json::parse(original);
  const Json flat = doc.flatten();
  for (const auto& [path, value] : flat.items()) leaves.emplace_back(path);
  for (int i = 0; i < 500; ++i) {
    Json j = doc;
    const auto& ptr = leaves[std::uniform_int_distribution<std::size_t>(0, leaves.size() - 1)(rng)];
    Json& v = j[ptr];
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      if (s.empty()) {
        s = "x";
      } else {
        const std::size_t at = std::uniform_int_distribution<std::size_t>(0, s.size() - 1)(rng);
        s[at] = std::isdigit(static_cast<unsigned char>(s[at])) ? static_cast<char>('0' + (s[at] - '0' + 1) % 10) : 'z';
      }
      v = s;
    } else if (v.is_number_integer()) {
      v = v.get<std::int64_t>() + 1;
    } else if (v.is_number()) {
      v = v.get<double>() * 1.5 + 1.0;
    } else if (v.is_boolean()) {
      v = !v.get<bool>();
    } else {
      v = "x";
    }
    judge(j.dump(1));
  }
  MESSAGE("tampering: " << meaningful << " meaning-changing mutations, " << rejected << " rejected, " << accepted_changed
                        << " accepted");
  CHECK(meaningful > 900);
  CHECK(accepted_changed == 0);
}

namespace {

// Fields that carry no claim: editing them changes no statement of the certificate.
bool informational(const std::string& path) {
  for (const char* suffix : {"/solver_ms", "/example", "/detail", "/smt_file", "/below_reason"}) {
    if (path.ends_with(suffix)) return true;
  }
  // certify_command is outside the claim hash; only a version 1 certificate's standing reads it.
  return path == "/model_id" || path == "/trace_file" || path == "/certify_command" ||
         path.starts_with("/scope/assumptions/");
}

// An edit that only loosens an upper bound (or shrinks a claimed radius) weakens the claim: still true.
bool weakening(const std::string& path, const Json& before, const Json& after) {
  if (!before.is_string() || !after.is_string()) return false;
  const std::string a = before.get<std::string>(), b = after.get<std::string>();
  if (!hnf::proofs::is_exact_rational(b)) return false;
  const bool upper = path.find("/rows/bound/") != std::string::npos || path.find("/rows/kappa_d2/") != std::string::npos ||
                     path.find("/lipschitz/") != std::string::npos || path.find("/injection/") != std::string::npos ||
                     path.ends_with("/s2_bound") || path.ends_with("/s3_bound");
  const bool radius = path.ends_with("/s2_radius") || path.ends_with("/s3_query_norm");
  return (upper && hnf::proofs::compare_rationals(b, a) > 0) || (radius && hnf::proofs::compare_rationals(b, a) < 0);
}

std::string with_hash_recomputed(Json j) {
  j.erase("certificate_sha256");
  const std::string body = j.dump();
  j["certificate_sha256"] = hnf::proofs::sha256_hex(std::as_bytes(std::span(body.data(), body.size())));
  return j.dump(1);
}

}  // namespace

// A forger who edits one value and recomputes certificate_sha256: check with --trace and the
// witness re-derivation (check --recompute) must reject every edit that is not informational or
// a mere weakening of a bound.
TEST_CASE("tampering with the hash recomputed: rejected unless informational or a weakening") {
  TempDir dir;
  REQUIRE(hnf_verify("certify " + quote(kTinyTrace) + " --eps 0.5 --out " + quote(dir / "cert.json")).exit_code == 0);
  const Json doc = Json::parse(read_file(dir / "cert.json"));
  std::vector<std::string> leaves;
  const Json flat = doc.flatten();  // a named object: items() of a temporary would dangle
  for (const auto& [path, value] : flat.items()) {
    if (path != "/certificate_sha256") leaves.push_back(path);
  }
  hnf::proofs::CheckOptions options;
  options.trace = kTinyTrace;
  options.recompute = [](const hnf::proofs::Certificate& c) {
    return hnf::analysis::recompute_witnesses(c, kTinyTrace.string(), std::nullopt);
  };
  REQUIRE(hnf::proofs::check_certificate_text(with_hash_recomputed(doc), "cert.json", options, "hnf-verify " HNF_TOOL_VERSION)
              .problems.empty());
  std::mt19937_64 rng(7);
  int rejected = 0, accepted_informational = 0, accepted_weakening = 0, accepted_other = 0;
  for (int i = 0; i < 500; ++i) {
    const std::string path = leaves[std::uniform_int_distribution<std::size_t>(0, leaves.size() - 1)(rng)];
    Json j = doc;
    const Json::json_pointer ptr(path);
    const Json before = j[ptr];
    Json& v = j[ptr];
    if (v.is_string() && !v.get<std::string>().empty()) {
      std::string text = v.get<std::string>();
      const std::size_t at = std::uniform_int_distribution<std::size_t>(0, text.size() - 1)(rng);
      text[at] = std::isdigit(static_cast<unsigned char>(text[at])) ? static_cast<char>('0' + (text[at] - '0' + 1) % 10) : 'z';
      v = text;
    } else if (v.is_number_integer()) {
      v = v.get<std::int64_t>() + 1;
    } else if (v.is_number()) {
      v = v.get<double>() * 1.5 + 1.0;
    } else {
      v = "x";
    }
    bool accepted = false;
    try {
      accepted = hnf::proofs::check_certificate_text(with_hash_recomputed(j), "cert.json", options, "hnf-verify " HNF_TOOL_VERSION)
                     .problems.empty();
    } catch (const hnf::proofs::Error&) {
    }
    CAPTURE(path);
    if (!accepted) {
      ++rejected;
    } else if (informational(path)) {
      ++accepted_informational;
    } else if (weakening(path, before, j[ptr])) {
      ++accepted_weakening;
    } else {
      ++accepted_other;
      CHECK_MESSAGE(false, "accepted a meaning-changing edit at " << path);
    }
  }
  MESSAGE("tampering with the hash recomputed: " << rejected << " rejected, " << accepted_informational
                                                  << " accepted (informational field), " << accepted_weakening
                                                  << " accepted (a bound loosened), " << accepted_other << " other accepted");
  CHECK(accepted_other == 0);
  CHECK(rejected > 300);
}

TEST_CASE("certify on the reference model reading WikiText-2, with the composition obligation, then check against model and trace") {
  // The main job's steps (scripts/main.sh) on the first 256 tokens of its WikiText-2 passage.
  TempDir dir;
  REQUIRE(hnf_verify("trace --model " + quote(kModel) + " --text " +
                     quote(kSource / "examples" / "wikitext-2-test-passage.txt") + " --tokens 256 --out " +
                     quote(dir / "trace.safetensors"))
              .exit_code == 0);
  const auto run = hnf_verify("certify " + quote(dir / "trace.safetensors") + " --eps 0.1 --model " + quote(kModel) +
                              " --out " + quote(dir / "cert.json"));
  CAPTURE(run.out);
  CAPTURE(run.err);
  CHECK(run.exit_code == 0);
  CHECK(contains(run.out, "composition"));
  const Json cert = Json::parse(read_file(dir / "cert.json"));
  bool has_composition = false;
  for (const auto& o : cert.at("obligations")) has_composition |= o.at("kind") == "composition";
  CHECK(has_composition);
  const auto check = hnf_verify("check " + quote(dir / "cert.json") + " --model " + quote(kModel) + " --trace " +
                                quote(dir / "trace.safetensors"));
  CAPTURE(check.err);
  CHECK(check.exit_code == 0);
  // A model folder whose model.safetensors differs is rejected by hash.
  std::filesystem::create_directories(dir / "other-model");
  write_file(dir / "other-model" / "model.safetensors", "not the model");
  const auto other = hnf_verify("check " + quote(dir / "cert.json") + " --model " + quote(dir / "other-model"));
  CHECK(other.exit_code == 3);
  CHECK(contains(other.err, "model.safetensors has sha256"));
  // Another trace (the bundled synthetic one) does not match the certificate's hash.
  const auto wrong = hnf_verify("check " + quote(dir / "cert.json") + " --trace " + quote(kTinyTrace));
  CHECK(wrong.exit_code == 3);
  CHECK(contains(wrong.err, "trace"));
  // A --eps-total below the composed bound refutes the composition obligation.
  const auto tight = hnf_verify("certify " + quote(dir / "trace.safetensors") + " --eps 0.1 --model " + quote(kModel) +
                                " --eps-total 1e-30 --out " + quote(dir / "tight.json"));
  CHECK(tight.exit_code == 1);
  CHECK(contains(tight.out, "composition refuted"));
}

// A forger who lowers a witness and recomputes certificate_sha256 passes the exact checker
// (it takes witnesses as given: THEORY.md 12) but not check --recompute.
TEST_CASE("check --recompute rejects a lowered witness that the plain check cannot see") {
  TempDir dir;
  REQUIRE(hnf_verify("certify " + quote(kTinyTrace) + " --eps 0.5 --out " + quote(dir / "cert.json")).exit_code == 0);
  const auto honest = hnf_verify("check " + quote(dir / "cert.json") + " --trace " + quote(kTinyTrace) + " --recompute");
  CAPTURE(honest.err);
  CHECK(honest.exit_code == 0);
  CHECK(contains(honest.out, "none is below (or, for radii, beyond) its recomputed value"));
  auto forged = hnf::proofs::certificate_from_json(read_file(dir / "cert.json"), "cert.json");
  auto& row = forged.obligations.at(0).sufficiency.at(5);
  REQUIRE(forged.obligations.at(0).kind == hnf::proofs::ObligationKind::kSufficiency);
  row.bound = "0";
  write_file(dir / "forged.json", hnf::proofs::certificate_to_json(forged));
  CHECK(hnf_verify("check " + quote(dir / "forged.json") + " --trace " + quote(kTinyTrace)).exit_code == 0);
  const auto caught = hnf_verify("check " + quote(dir / "forged.json") + " --trace " + quote(kTinyTrace) + " --recompute");
  CHECK(caught.exit_code == 3);
  CHECK(contains(caught.err, "layer0_sufficiency row 5"));
  CHECK(hnf_verify("check " + quote(dir / "cert.json") + " --recompute").exit_code == 3);  // needs --trace
}

TEST_CASE("certify and check reject bad input with exit 3, one line, and no file written") {
  TempDir dir;
  const auto out = quote(dir / "cert.json");
  struct Case {
    std::string args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"certify " + quote(kTinyTrace) + " --eps -1 --out " + out, "--eps"},
      {"certify " + quote(kTinyTrace) + " --eps 0.1 --layer-eps 0.1 --out " + out, "--layer-eps"},
      {"certify " + quote(dir / "missing.safetensors") + " --eps 0.1 --out " + out, "missing.safetensors"},
      {"certify " + quote(kTinyTrace) + " --eps 0.1 --eps-total 1 --out " + out, "--eps-total"},
      {"certify " + quote(kTinyTrace) + " --eps 0.1 --model " + quote(kModel) + " --out " + out, "not the model"},
      {"certify " + quote(kTinyTrace) + " --eps 0.1 --timeout-ms 0 --out " + out, "--timeout-ms"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.args);
    const auto run = hnf_verify(c.args);
    CHECK(run.exit_code == 3);
    CHECK(contains(run.err, c.message));
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
    CHECK_FALSE(std::filesystem::exists(dir / "cert.json"));
  }
  // An unwritable certificate path with --smt-dir: exit 3 and no SMT-LIB file left behind.
  const auto unwritable = hnf_verify("certify " + quote(kTinyTrace) + " --eps 0.5 --out " +
                                     quote(dir / "no-such-dir" / "cert.json") + " --smt-dir " + quote(dir / "smt"));
  CHECK(unwritable.exit_code == 3);
  CHECK(std::filesystem::is_empty(dir / "smt"));
  write_file(dir / "junk.json", "{\"format\": \"hnf-certificate\"");
  const auto junk = hnf_verify("check " + quote(dir / "junk.json"));
  CHECK(junk.exit_code == 3);
  CHECK(contains(junk.err, "junk.json"));
  const auto missing = hnf_verify("check " + quote(dir / "nothing.json"));
  CHECK(missing.exit_code == 3);
}

TEST_CASE("a policy certificate: certified, re-derived from the trace, and refused when its policy is edited") {
  TempDir dir;
  const std::string policy = "page=16 sink=0 recent=1 k=fp16/fp16/int4-t16 v=fp16/fp16/int4-d64";
  const auto run = hnf_verify("certify " + quote(kTinyTrace) + " --eps 0.5 --policy " + quote(policy) + " --out " +
                              quote(dir / "cert.json"));
  CAPTURE(run.out);
  CAPTURE(run.err);
  REQUIRE(run.exit_code == 0);
  const std::string recompute = " --trace " + quote(kTinyTrace) + " --recompute";
  CHECK(hnf_verify("check " + quote(dir / "cert.json") + recompute).exit_code == 0);
  const auto honest = hnf::proofs::certificate_from_json(read_file(dir / "cert.json"), "cert.json");
  REQUIRE(honest.policy.has_value());
  CHECK(honest.version == 4);
  CHECK(honest.policy_sha256 == hnf::proofs::policy_sha256(*honest.policy));
  CHECK(honest.scope.query_positions.size() == 8);  // every recorded query of the tiny trace

  auto check_edited = [&](const hnf::proofs::Certificate& c, const std::string& extra) {
    write_file(dir / "edited.json", hnf::proofs::certificate_to_json(c));
    return hnf_verify("check " + quote(dir / "edited.json") + extra);
  };
  // The policy edited, its hash not: caught by the hash.
  auto edited = honest;
  edited.policy->entries[0].values[2] = *hnf::proofs::parse_format("int2-d32");
  auto r = check_edited(edited, "");
  CHECK(r.exit_code == 3);
  CHECK(contains(r.err, "policy_sha256 does not match the policy"));
  // With its hash: the map is no longer its expansion.
  edited.policy_sha256 = hnf::proofs::policy_sha256(*edited.policy);
  r = check_edited(edited, "");
  CHECK(r.exit_code == 3);
  CHECK(contains(r.err, "map is not the policy's expansion"));
  // Policy, map and every hash consistent: only the re-derivation sees that the bounds are another policy's.
  edited.map = hnf::proofs::expand_policy(*edited.policy, edited.map.tokens);
  edited.map_sha256 = hnf::proofs::map_sha256(edited.map);
  edited.bits_per_element = hnf::proofs::map_bits_per_element(edited.map);
  CHECK(check_edited(edited, "").exit_code == 0);
  r = check_edited(edited, recompute);
  CAPTURE(r.err);
  CHECK(r.exit_code == 3);
  CHECK(contains(r.err, "below the recomputed"));
  // A policy that is not well formed (an integer recent format that would re-quantize its own codes).
  edited = honest;
  edited.policy->entries[1].keys[1] = *hnf::proofs::parse_format("int8-d64");
  edited.policy_sha256 = hnf::proofs::policy_sha256(*edited.policy);
  r = check_edited(edited, "");
  CHECK(r.exit_code == 3);
  CHECK(contains(r.err, "policy: entry layer 0 kv head 1: keys recent"));
  // Guard figures cannot be supplied by a certificate: the runtime computes them (a field for them,
  // even with the hash recomputed, is refused).
  Json with_guard = Json::parse(read_file(dir / "cert.json"));
  with_guard["guard"] = {{"within_eps", 1000000}, {"rows", 1000000}};
  write_file(dir / "edited.json", hnf::proofs::reseal_certificate_json(with_guard.dump(), "edited.json"));
  r = hnf_verify("check " + quote(dir / "edited.json"));
  CHECK(r.exit_code == 3);
  CHECK(contains(r.err, "guard"));
  // A policy in a version 3 certificate does not parse.
  edited = honest;
  edited.version = 3;
  r = check_edited(edited, "");
  CHECK(r.exit_code == 3);
  CHECK(contains(r.err, "is not part of version 3"));
}
