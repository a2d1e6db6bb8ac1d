#include <doctest/doctest.h>

#include <cmath>

#include "hnf/analysis/attention_stats.h"
#include "small_trace.h"
#include "test_files.h"

using namespace hnf;
using hnf::testing::SmallTrace;
using hnf::testing::TempDir;

TEST_CASE("zero queries attend uniformly over the causal prefix") {
  TempDir dir;
  SmallTrace s;
  s.tokens = 3;
  s.value = [](const std::string& name, std::uint64_t i) { return name.ends_with(".q") ? 0.0f : 0.1f * static_cast<float>(i % 5); };
  hnf::testing::write_small_trace(dir / "t.safetensors", s);
  const auto trace = analysis::Trace::open(dir / "t.safetensors");
  const auto stats = analysis::attention_stats(trace, 1);
  REQUIRE(stats.size() == 2);
  const double expected = (1.0 + 1.0 / 2 + 1.0 / 3) / 3;  // positions 0, 1, 2
  for (const auto& l : stats) {
    CHECK(l.queries == 4 * 3);
    CHECK(l.first_token_mass == doctest::Approx(expected).epsilon(1e-12));
    CHECK(l.recent_mass == doctest::Approx(expected).epsilon(1e-12));  // window of 1: the query's own position
    CHECK(l.max_weight == doctest::Approx(expected).epsilon(1e-12));
  }
  const auto wide = analysis::attention_stats(trace, 2);
  CHECK(wide[0].recent_mass == doctest::Approx((1.0 + 1.0 + 2.0 / 3) / 3).epsilon(1e-12));
}

TEST_CASE("a key aligned with every query draws the mass: a sink at position 0") {
  TempDir dir;
  SmallTrace s;
  s.tokens = 6;
  s.head_dim = 4;
  // q = (1,1,1,1) everywhere; key 0 = (20,20,20,20) per kv head, all other keys 0: the score of
  // position 0 is 40 higher than any other, so nearly all mass lands there.
  s.value = [](const std::string& name, std::uint64_t i) {
    if (name.ends_with(".q")) return 1.0f;
    if (name.ends_with(".k") && (i % 24) < 4) return 20.0f;  // [kv, 6 tokens, 4]: first row of each head
    return 0.0f;
  };
  hnf::testing::write_small_trace(dir / "t.safetensors", s);
  const auto stats = analysis::attention_stats(analysis::Trace::open(dir / "t.safetensors"), 2);
  for (const auto& l : stats) {
    CHECK(l.first_token_mass > 0.999);
    CHECK(l.max_weight > 0.999);
    // Positions 0 and 1 see position 0 in their window of 2; positions 2..5 do not.
    CHECK(l.recent_mass == doctest::Approx(2.0 / 6).epsilon(1e-3));
  }
}
