// The limits every reader of untrusted files shares (json_limits.h, printable_line in error.h):
// boundary values of each.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdint>
#include <limits>
#include <string>

#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"
#include "test_files.h"

using namespace hnf::proofs;
using hnf::testing::contains;
using hnf::testing::TempDir;
using hnf::testing::write_file;
using Json = nlohmann::json;

namespace {

constexpr std::int64_t kMin64 = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kMax64 = std::numeric_limits<std::int64_t>::max();

std::string error_of(const auto& action) {
  try {
    action();
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kBadInput);
    return e.what();
  }
  return "";
}

std::string nested_arrays(int depth) { return std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']'); }

}  // namespace

TEST_CASE("json_integer reads an integer within its range, never narrowed or wrapped") {
  CHECK(json_integer(Json(kMax64), kMin64, kMax64) == kMax64);
  CHECK(json_integer(Json(static_cast<std::uint64_t>(kMax64)), 0, kMax64) == kMax64);  // stored unsigned
  CHECK(!json_integer(Json(std::uint64_t{1} << 63), kMin64, kMax64).has_value());      // would wrap to INT64_MIN
  CHECK(!json_integer(Json(UINT64_MAX), kMin64, kMax64).has_value());                  // would wrap to -1
  CHECK(json_integer(Json(kMin64), kMin64, kMax64) == kMin64);
  CHECK(json_integer(Json(16), 16, 64) == 16);  // both ends inclusive
  CHECK(json_integer(Json(64), 16, 64) == 64);
  CHECK(!json_integer(Json(15), 16, 64).has_value());
  CHECK(!json_integer(Json(65), 16, 64).has_value());
  CHECK(!json_integer(Json(4294967312LL), 0, std::numeric_limits<int>::max()).has_value());  // not 16
  CHECK(!json_integer(Json(1.0), 0, 10).has_value());
  CHECK(!json_integer(Json::parse("1e2"), 0, 1000).has_value());
  CHECK(!json_integer(Json("1"), 0, 10).has_value());
  CHECK(!json_integer(Json(nullptr), 0, 10).has_value());
}

TEST_CASE("json_number reads a finite number within its range") {
  CHECK(json_number(Json(64.0), 0.0, 64.0) == 64.0);
  CHECK(json_number(Json(3), 0.0, 64.0) == 3.0);
  CHECK(!json_number(Json(64.5), 0.0, 64.0).has_value());
  CHECK(!json_number(Json(-1e-300), 0.0, 64.0).has_value());
  CHECK(!json_number(Json(1e300), 0.0, 64.0).has_value());
  CHECK(!json_number(Json("3"), 0.0, 64.0).has_value());
}

TEST_CASE("parse_json: nesting up to the limit, numbers beyond a double, syntax errors") {
  CHECK(parse_json(nested_arrays(kMaxJsonDepth), "f.json").is_array());
  CHECK(contains(error_of([] { (void)parse_json(nested_arrays(kMaxJsonDepth + 1), "f.json"); }),
                 "f.json: JSON nests arrays and objects deeper than 32 levels"));
  CHECK(contains(error_of([] { (void)parse_json(R"({"a": [1e999]})", "f.json"); }),
                 "f.json: JSON has a number beyond the range of a double"));
  CHECK(contains(error_of([] { (void)parse_json("-1e400", "f.json"); }), "beyond the range of a double"));
  CHECK(parse_json("1e-999", "f.json").get<double>() == 0.0);  // underflow reads as zero (documented)
  CHECK(parse_json("1.7976931348623157e308", "f.json").get<double>() == std::numeric_limits<double>::max());
  const std::string syntax = error_of([] { (void)parse_json("{\"a\": ", "f.json", "header"); });
  CHECK(contains(syntax, "f.json: header is not valid JSON: "));
  CHECK(!contains(syntax, "[json.exception"));
  CHECK(contains(error_of([] { (void)parse_json("{", "f.json"); }), "f.json: not valid JSON: "));
}

TEST_CASE("read_regular_file: regular files within the limit only, a FIFO refused without waiting") {
  TempDir dir;
  const auto file = dir / "f.json";
  write_file(file, "1234");
  CHECK(read_regular_file(file, 4, "a test file") == "1234");
  CHECK(contains(error_of([&] { (void)read_regular_file(file, 3, "a test file"); }), "over the limit of 3 bytes"));
  CHECK(contains(error_of([&] { (void)read_regular_file(dir.path(), 100, "a test file"); }),
                 "is not a regular file (a test file must be one)"));
  CHECK(contains(error_of([&] { (void)read_regular_file("/dev/zero", 100, "a test file"); }), "is not a regular file"));
  const auto fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(contains(error_of([&] { (void)read_regular_file(fifo, 100, "a test file"); }), "is not a regular file"));
  CHECK(contains(error_of([&] { (void)read_regular_file(dir / "absent", 100, "a test file"); }),
                 "cannot open a test file: "));
}

TEST_CASE("printable_line: one line, control characters escaped, long text cut on a character boundary") {
  CHECK(printable_line("a\nb\tc\x1b") == "a\\x0ab\\x09c\\x1b");
  CHECK(printable_line("short", 5) == "short");
  CHECK(printable_line("abcdef", 3) == "abc... (3 more bytes)");
  // "é" is two bytes (c3 a9): a cut after 2 bytes of "aé" would split it, so it backs off to "a".
  CHECK(printable_line("a\xc3\xa9z", 2) == "a... (3 more bytes)");
  CHECK(std::string(bad_input("f.json", "key 'x\ny' is odd").what()) == "f.json: key 'x\\x0ay' is odd");
  const std::string long_problem(10 * kMaxProblemBytes, 'p');
  CHECK(std::string(bad_input("f", long_problem).what()).size() < kMaxProblemBytes + 64);
}
