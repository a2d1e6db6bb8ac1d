#include <doctest/doctest.h>

#include <string>

#include "hnf/proofs/error.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/policy.h"

using namespace hnf::proofs;

namespace {

Format fmt(const char* name) { return *parse_format(name); }

PrecisionPolicy kivi_like(std::int64_t sink, std::int64_t recent) {
  return uniform_policy(2, 2, 4, 64, 16, sink, recent, {fmt("fp16"), fmt("fp16"), fmt("int4-t16")},
                        {fmt("fp16"), fmt("fp16"), fmt("int4-d64")});
}

}  // namespace

TEST_CASE("policy: age classes are page-granular and the partial page is recent") {
  const PrecisionPolicy p = kivi_like(1, 2);
  REQUIRE(policy_problem(p).empty());
  // 40 positions stored: pages 0 (sink), 1 (old: pages 1 and 2 are the newest two), 2 (partial).
  CHECK(age_class(p, 0, 40) == AgeClass::kSink);
  CHECK(age_class(p, 15, 40) == AgeClass::kSink);
  CHECK(age_class(p, 16, 40) == AgeClass::kRecent);  // ceil(40/16) = 3 pages: pages 1, 2 recent
  CHECK(age_class(p, 39, 40) == AgeClass::kRecent);
  // One more page opens at 49 stored positions: page 1 leaves the recent window.
  CHECK(age_class(p, 16, 48) == AgeClass::kRecent);
  CHECK(age_class(p, 16, 49) == AgeClass::kOld);
  CHECK(age_class(p, 31, 49) == AgeClass::kOld);
  CHECK(age_class(p, 32, 49) == AgeClass::kRecent);
  // No sink: page 0 ages like any other.
  const PrecisionPolicy q = kivi_like(0, 1);
  CHECK(age_class(q, 0, 16) == AgeClass::kRecent);
  CHECK(age_class(q, 0, 17) == AgeClass::kOld);
  CHECK(age_class(q, 16, 17) == AgeClass::kRecent);
}

TEST_CASE("policy: the expansion follows the age classes, and bits per element count every page") {
  const PrecisionPolicy p = kivi_like(1, 1);
  const PrecisionMap m = expand_policy(p, 64);  // pages: sink, old, old, recent
  REQUIRE(m.entries.size() == 4);
  CHECK(m.block == 16);
  CHECK(m.tokens == 64);
  const HeadMap& e = m.entries[3];
  CHECK(e.layer == 1);
  CHECK(e.kv_head == 1);
  REQUIRE(e.key_formats.size() == 4);
  CHECK(format_name(e.key_formats[0]) == "fp16");
  CHECK(format_name(e.key_formats[1]) == "int4-t16");
  CHECK(format_name(e.key_formats[2]) == "int4-t16");
  CHECK(format_name(e.key_formats[3]) == "fp16");
  CHECK(format_name(e.value_formats[1]) == "int4-d64");
  // Keys: 2 pages at 16 bits, 2 at 4 + 32/16 = 6; values: 2 at 16, 2 at 4.5. Mean over K and V.
  CHECK(policy_bits_per_element(p, 64) == doctest::Approx((2 * 16 + 2 * 6 + 2 * 16 + 2 * 4.5) / 8.0));
}

TEST_CASE("policy: the hash changes with every field, and malformed policies are named") {
  const PrecisionPolicy p = kivi_like(1, 1);
  const std::string base = policy_sha256(p);
  PrecisionPolicy q = p;
  q.recent_pages = 2;
  CHECK(policy_sha256(q) != base);
  q = p;
  q.sink_pages = 0;
  CHECK(policy_sha256(q) != base);
  q = p;
  q.entries[2].values[2] = fmt("int3-d64");
  CHECK(policy_sha256(q) != base);
  CHECK(policy_sha256(p) == base);

  q = p;
  q.entries[1].keys[2] = fmt("int4-t32");  // per-channel groups must be one page
  CHECK(policy_problem(q).find("page is 16") != std::string::npos);
  q = p;
  q.entries[0].values[1] = fmt("int8-d64");  // an integer recent format would re-quantize its own codes
  CHECK(policy_problem(q).find("re-quantized") != std::string::npos);
  q.entries[0].values[2] = fmt("int8-d64");  // unless it is also the old format: nothing migrates
  CHECK(policy_problem(q).empty());
  q = p;
  q.recent_pages = 0;
  CHECK(!policy_problem(q).empty());
  q = p;
  std::swap(q.entries[0], q.entries[1]);
  CHECK(policy_problem(q).find("layer-major") != std::string::npos);
  q = p;
  q.entries.pop_back();
  CHECK(!policy_problem(q).empty());
}

TEST_CASE("policy: the command-line spec") {
  const PrecisionPolicy p = parse_policy_spec("page=16 sink=1 recent=2 k=fp16/fp16/int4-t16,v=int4-d64", 2, 1, 2, 64, "--policy");
  CHECK(p.sink_pages == 1);
  CHECK(p.recent_pages == 2);
  REQUIRE(p.entries.size() == 2);
  CHECK(format_name(p.entries[1].keys[2]) == "int4-t16");
  CHECK(format_name(p.entries[1].values[0]) == "int4-d64");
  CHECK(format_name(p.entries[1].values[1]) == "int4-d64");
  auto bad = [](const char* spec) {
    try {
      (void)parse_policy_spec(spec, 2, 1, 2, 64, "--policy");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kBadInput);
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(bad("k=fp16").find("k= and v=") != std::string::npos);
  CHECK(bad("k=fp16 v=int5-d64").find("unknown format 'int5-d64'") != std::string::npos);
  CHECK(bad("k=fp16/fp16 v=fp16").find("one format or three") != std::string::npos);
  CHECK(bad("k=fp16 v=fp16 page=8").find("16, 32 or 64") != std::string::npos);
  CHECK(bad("k=fp16 v=fp16 sink=-1").find("not a count") != std::string::npos);
  CHECK(bad("k=fp16 v=fp16 colour=red").find("unknown key 'colour'") != std::string::npos);
  CHECK(bad("k=int4-t32 v=fp16").find("page is 16") != std::string::npos);
  CHECK(bad("k=fp16 v=fp16 recent=0").find("at least 1") != std::string::npos);
}
