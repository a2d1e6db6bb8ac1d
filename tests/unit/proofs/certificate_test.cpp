#include <doctest/doctest.h>
#include <gmpxx.h>
#include <mpfr.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/sha256.h"
#include "tiny_certificate.h"

using namespace hnf::proofs;
using hnf::testing::kTool;
using hnf::testing::tiny_certificate;
using Json = nlohmann::json;

namespace {

CheckReport check(const Certificate& c, const CheckOptions& options = {}) { return hnf::testing::check_written(c, options); }

bool rejected(const Certificate& c) { return !check(c).problems.empty(); }

// Rejected, and the first problem names `reason`: a rejection for another cause would hide a gap.
bool rejected_for(const Certificate& c, const std::string& reason) {
  const auto report = check(c);
  return !report.problems.empty() && report.problems.front().find(reason) != std::string::npos;
}

}  // namespace

TEST_CASE("exact_rational is the exact value of the double (checked with GMP and MPFR)") {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exponent(-1070.0, 1020.0);
  for (int i = 0; i < 20000; ++i) {
    const double x = std::ldexp(std::uniform_real_distribution<double>(-1.0, 1.0)(rng), static_cast<int>(exponent(rng)));
    const std::string r = exact_rational(x);
    REQUIRE(is_exact_rational(r));
    mpq_class q(r);
    // MPFR at 2200 bits holds any double exactly; the rational must convert back without rounding.
    mpfr_t m;
    mpfr_init2(m, 2200);
    REQUIRE(mpfr_set_q(m, q.get_mpq_t(), MPFR_RNDN) == 0);  // 0: exact
    CHECK(mpfr_get_d(m, MPFR_RNDN) == x);
    CHECK(mpfr_cmp_d(m, x) == 0);
    mpfr_clear(m);
  }
  CHECK(exact_rational(0.1) == "3602879701896397/36028797018963968");
  CHECK(exact_rational(-2.0) == "-2");
  CHECK(exact_rational(std::numeric_limits<double>::denorm_min()).ends_with("/" + mpz_class(mpz_class(1) << 1074).get_str()));
  CHECK_THROWS(exact_rational(std::nan("")));
}

TEST_CASE("is_exact_rational accepts only p and p/q with q > 0") {
  for (const char* ok : {"0", "-3", "12/5", "-1/7", "007"}) CHECK(is_exact_rational(ok));
  for (const char* bad : {"", "0.1", "1e3", "1/0", "1/-2", "+1", "1/", "/2", " 1", "0x10", "1/00"}) CHECK_FALSE(is_exact_rational(bad));
}

TEST_CASE("a valid certificate round-trips and checks as certified") {
  const Certificate c = tiny_certificate();
  const std::string text = certificate_to_json(c);
  const Certificate back = certificate_from_json(text, "cert.json");
  CHECK(certificate_to_json(back) == text);
  const auto report = check(c);
  CHECK(report.problems.empty());
  CHECK(report.verdict == "certified");
  CHECK(report.certified.has_value());
  CHECK(report.certified->map_sha256() == c.map_sha256);
  CHECK(report.inequalities == 4 + 2 + 1);
}

TEST_CASE("the certificate hash catches any edit of the content") {
  Json j = Json::parse(certificate_to_json(tiny_certificate()));
  j["obligations"][0]["rows"]["bound"][0] = "1/1000";  // a smaller, still passing bound
  CHECK_THROWS_WITH_AS(check_certificate_text(j.dump(), "cert.json", {}, kTool), doctest::Contains("certificate_sha256"), Error);
}

TEST_CASE("unknown fields, missing fields and decimal numbers are rejected by the parser") {
  const Json good = Json::parse(certificate_to_json(tiny_certificate()));
  Json extra = good;
  extra["obligations"][0]["note"] = "x";
  CHECK_THROWS_WITH_AS(certificate_from_json(extra.dump(), "c.json"), doctest::Contains("not a field"), Error);
  Json missing = good;
  missing["map"].erase("block");
  CHECK_THROWS_WITH_AS(certificate_from_json(missing.dump(), "c.json"), doctest::Contains("map.block is missing"), Error);
  Json decimal = good;
  decimal["eps"] = "0.05";
  CHECK_THROWS_WITH_AS(certificate_from_json(decimal.dump(), "c.json"), doctest::Contains("not an exact rational"), Error);
  CHECK_THROWS_WITH_AS(certificate_from_json("{", "c.json"), doctest::Contains("c.json: not valid JSON"), Error);
}

// The checker's meaning checks, on certificates whose hash was recomputed (a forger's edit).
TEST_CASE("the checker re-derives every verdict and rejects inconsistent certificates") {
  SUBCASE("a bound above the budget with verdict proved") {
    Certificate c = tiny_certificate();
    c.obligations[0].sufficiency[1].bound = "1/19";
    CHECK(rejected_for(c, "verdict proved, but the inequality does not hold"));
  }
  SUBCASE("the same bound with verdict refuted gives a valid refuted certificate") {
    Certificate c = tiny_certificate();
    c.obligations[0].sufficiency[1].bound = "1/19";
    c.obligations[0].verdict = Verdict::kRefuted;
    c.verdict = "refuted";
    const auto report = check(c);
    CHECK(report.problems.empty());
    CHECK(report.verdict == "refuted");
    CHECK_FALSE(report.certified.has_value());
  }
  SUBCASE("a bound exactly at the budget holds (<=)") {
    Certificate c = tiny_certificate();
    c.obligations[0].sufficiency[1].bound = "1/20";
    CHECK_FALSE(rejected(c));
  }
  SUBCASE("a dropped sufficiency row") {
    Certificate c = tiny_certificate();
    c.obligations[0].sufficiency.pop_back();
    CHECK(rejected_for(c, "3 rows, expected one per query head and recorded query (4)"));
  }
  SUBCASE("a row moved to another query") {
    Certificate c = tiny_certificate();
    c.obligations[0].sufficiency[0].position = 29;
    CHECK(rejected_for(c, "row 0 is not (kv head 0, head 0, position 30)"));
  }
  SUBCASE("an unknown obligation cannot be certified") {
    Certificate c = tiny_certificate();
    c.obligations[2].verdict = Verdict::kTimeout;
    CHECK(rejected_for(c, "does not follow from the obligations (unknown)"));  // verdict still says certified
    c.verdict = "unknown";
    const auto report = check(c);
    CHECK(report.problems.empty());
    CHECK(report.verdict == "unknown");
    CHECK_FALSE(report.certified.has_value());
  }
  SUBCASE("necessity bits must be the map's") {
    Certificate c = tiny_certificate();
    c.obligations[1].necessity[1].bits = 4;
    CHECK(rejected_for(c, "row 1 has bits 4, the map stores fp16"));
  }
  SUBCASE("schema 3: one necessity row per allocation unit, placed inside its unit") {
    Certificate c = tiny_certificate();
    c.obligations[1].necessity.pop_back();
    CHECK(rejected_for(c, "1 rows, expected one per kv head and allocation unit (2)"));
    c = tiny_certificate();
    c.obligations[1].necessity[1].position = 15;  // unit 0's position in unit 1's row
    CHECK(rejected_for(c, "row 1 is not (kv head 0, a position of unit 1)"));
    c = tiny_certificate();
    c.obligations[1].necessity[1].position = 31;  // the unit's last position is fine
    CHECK(check(c).problems.empty());
  }
  SUBCASE("the rows below the obstruction must be exactly the failing ones") {
    Certificate c = tiny_certificate();
    c.obligations[1].below.clear();
    CHECK(rejected_for(c, "not exactly the failing rows"));
    c = tiny_certificate();
    c.obligations[1].below = {0, 1};
    CHECK(rejected_for(c, "not exactly the failing rows"));
    c = tiny_certificate();
    c.obligations[1].necessity[0].kappa_d2 = "512/5";  // exactly 8 eps 4^4 = 102.4: holds, so not below
    CHECK(rejected_for(c, "not exactly the failing rows"));
  }
  SUBCASE("composition over its budget") {
    Certificate c = tiny_certificate();
    c.obligations[2].budget = "99/1000";
    CHECK(rejected_for(c, "composition: verdict proved, but the inequality does not hold"));
    c.obligations[2].injection = {"1"};  // 1/20 <= 99/1000
    CHECK_FALSE(rejected(c));
  }
  SUBCASE("a map edit without a new map hash") {
    Certificate c = tiny_certificate();
    c.map.entries[0].key_formats[1] = *parse_format("int2-d32");
    CHECK(rejected_for(c, "map_sha256 does not match"));
  }
  SUBCASE("eps that is not the largest layer budget") {
    Certificate c = tiny_certificate();
    c.eps = "1/10";
    CHECK(rejected_for(c, "eps is not the largest layer epsilon"));
  }
  SUBCASE("a missing necessity obligation") {
    Certificate c = tiny_certificate();
    c.obligations.erase(c.obligations.begin() + 1);
    CHECK(rejected_for(c, "obligation layer0_necessity is missing"));
  }
  SUBCASE("bits_per_element that does not match the map") {
    Certificate c = tiny_certificate();
    c.bits_per_element *= 0.5;
    CHECK(rejected_for(c, "bits_per_element does not match"));
  }
}

TEST_CASE("another tool version, an absurd shape and a failing re-derivation are rejected") {
  CHECK(!check_certificate_text(certificate_to_json(tiny_certificate()), "c.json", {}, "hnf-verify 9.9.9").problems.empty());
  Certificate huge = tiny_certificate();
  huge.map.layers = std::int64_t{1} << 62;  // layers x kv_heads would overflow; must not loop or crash
  huge.map.kv_heads = 4;
  huge.map_sha256 = map_sha256(huge.map);
  CHECK(rejected_for(huge, "at most 4096"));
  CheckOptions recompute;
  bool called = false;
  recompute.recompute = [&called](const Certificate&) {
    called = true;
    return WitnessCheck{7, {"layer0_sufficiency row 1: below the recomputed value"}};
  };
  const auto report = check(tiny_certificate(), recompute);
  CHECK(called);
  CHECK(report.witnesses_compared == 7);
  REQUIRE(report.problems.size() == 1);
  CHECK_FALSE(report.certified.has_value());
  recompute.recompute = [](const Certificate&) { return WitnessCheck{9, {}}; };
  const auto ok = check(tiny_certificate(), recompute);
  REQUIRE(ok.certified.has_value());
  CHECK(ok.certified->witnesses_recomputed());
  CHECK_FALSE(ok.certified->model_verified());
  CHECK_FALSE(ok.certified->trace_verified());
}

TEST_CASE("decimal budgets convert to the largest double not above them (checked with GMP)") {
  for (const char* text : {"0.1", "0.05", "1e-9", "3", "0.3333333333333333333333", "1e-310", "123456789.123456789"}) {
    CAPTURE(text);
    const double d = decimal_to_double_down(text, "--eps");
    // Exact decimal as a rational: digits / 10^k, or with an exponent.
    std::string t = text;
    mpq_class exact;
    const auto e = t.find('e');
    const int exponent = e == std::string::npos ? 0 : std::stoi(t.substr(e + 1));
    std::string mantissa = t.substr(0, e);
    const auto dot = mantissa.find('.');
    int decimals = 0;
    if (dot != std::string::npos) {
      decimals = static_cast<int>(mantissa.size() - dot - 1);
      mantissa.erase(dot, 1);
    }
    const int shift = exponent - decimals;
    mpz_class ten_power;
    mpz_ui_pow_ui(ten_power.get_mpz_t(), 10, static_cast<unsigned long>(std::abs(shift)));
    exact = shift >= 0 ? mpq_class(mpz_class(mantissa, 10) * ten_power) : mpq_class(mpz_class(mantissa, 10), ten_power);
    exact.canonicalize();
    const mpq_class got(d);
    CHECK(got <= exact);
    const mpq_class next(std::nextafter(d, INFINITY));
    CHECK(next > exact);  // the largest such double
  }
  CHECK(compare_rationals("1/3", "2/6") == 0);
  CHECK(compare_rationals("-1/3", "0") < 0);
  CHECK(compare_rationals(exact_rational(0.1), "1/10") > 0);  // the double nearest 0.1 is above 0.1
  CHECK_THROWS_AS((void)decimal_to_double_down("0.1x", "--eps"), Error);
  CHECK_THROWS_AS((void)decimal_to_double_down("", "--eps"), Error);
  CHECK_THROWS_AS((void)decimal_to_double_down("nan", "--eps"), Error);
  CHECK_THROWS_AS((void)decimal_to_double_down("inf", "--eps"), Error);
  CHECK(decimal_to_double_down("1e999", "--eps") == std::numeric_limits<double>::max());  // the largest double below it
}

TEST_CASE("model and trace hashes are compared when the files are given") {
  Certificate c = tiny_certificate();
  const auto dir = std::filesystem::temp_directory_path() / ("hnf-cert-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "t.safetensors") << "trace bytes";
  }
  c.trace_sha256 = sha256_file_hex(dir / "t.safetensors");
  CheckOptions options;
  options.trace = dir / "t.safetensors";
  const auto matching = check(c, options);
  CHECK(matching.problems.empty());
  REQUIRE(matching.certified.has_value());
  CHECK(matching.certified->trace_verified());
  {
    std::ofstream(dir / "t.safetensors") << "other bytes";
  }
  CHECK_FALSE(check(c, options).problems.empty());
  CheckOptions with_model;
  with_model.model_dir = dir;  // no model.safetensors there: unreadable file is bad input
  CHECK_THROWS_AS((void)check(c, with_model), Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("necessity_min_bits is the exact Theorem 5.7 obstruction, decided at its boundary") {
  // 8 * (1/20) * 4^b = (2/5) 4^b: exactly (2/5) 4^3 = 128/5 needs 3 bits, a hair more needs 4.
  CHECK(necessity_min_bits("128/5", "1/20") == 3);
  CHECK(necessity_min_bits("128000001/5000000", "1/20") == 4);
  CHECK(necessity_min_bits("0", "1/20") == 0);
  CHECK(necessity_min_bits("2/5", "1/20") == 0);
  CHECK(necessity_min_bits("1", "1/20") == 1);
  // Consistent with the checker's rows: a row holds iff its bits reach the minimum.
  const Certificate c = tiny_certificate();
  const Obligation& n = c.obligations[1];
  for (std::size_t r = 0; r < n.necessity.size(); ++r) {
    const bool listed_below = std::find(n.below.begin(), n.below.end(), static_cast<std::int64_t>(r)) != n.below.end();
    CHECK((n.necessity[r].bits < necessity_min_bits(n.necessity[r].kappa_d2, n.budget)) == listed_below);
  }
  // Beyond the largest precision considered.
  CHECK(necessity_min_bits("1" + std::string(60, '0'), "1/20") == kMaxNecessityBits + 1);
}

TEST_CASE("the recorded certify command is optional, round-trips and is covered by the certificate hash") {
  Certificate c = tiny_certificate();
  const std::string without = certificate_to_json(c);
  CHECK(without.find("certify_command") == std::string::npos);  // absent: old certificates keep their hash
  c.certify_command = "hnf-verify certify t.safetensors --eps 0.05 --out cert.json";
  const std::string with = certificate_to_json(c);
  const Certificate back = certificate_from_json(with, "cert.json");
  CHECK(back.certify_command == c.certify_command);
  CHECK(check(back).problems.empty());
  Json j = Json::parse(with);
  j["certify_command"] = "hnf-verify certify other.safetensors --eps 0.5 --out cert.json";
  CHECK_THROWS_WITH_AS(certificate_from_json(j.dump(), "cert.json"), doctest::Contains("certificate_sha256"), Error);
  j["certify_command"] = 7;
  CHECK_THROWS_WITH_AS(certificate_from_json(j.dump(), "cert.json"), doctest::Contains("certify_command is not a string"), Error);
}
