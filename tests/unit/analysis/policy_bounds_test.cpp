// A precision policy's cache states (AgedRows) against the stored values written out here from
// quantize_block page by page, and its S1 bounds against the actual error of every query at its
// aged state computed in MPFR.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "hnf/analysis/analyze.h"
#include "hnf/analysis/high_precision.h"
#include "hnf/analysis/kv_rows.h"
#include "hnf/analysis/synthetic_trace.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/format.h"
#include "hnf/proofs/policy.h"
#include "policy_rows.h"
#include "test_files.h"

namespace analysis = hnf::analysis;
namespace proofs = hnf::proofs;

namespace {

proofs::Format fmt(const char* name) { return *proofs::parse_format(name); }

constexpr std::size_t kD = 64, kPage = 16;

const std::string& policy_trace() {
  static hnf::testing::TempDir dir;
  static std::string path;
  if (path.empty()) {
    path = (dir / "policy.safetensors").string();
    analysis::write_synthetic_trace(path, {.num_layers = 2, .num_heads = 4, .num_kv_heads = 2, .num_tokens = 117,
                                           .head_dim = 64, .query_stride = 1, .dtype = proofs::Dtype::kF32, .seed = 11});
  }
  return path;
}

proofs::PrecisionPolicy test_policy(std::int64_t sink, std::int64_t recent) {
  return proofs::uniform_policy(2, 2, 4, 64, 16, sink, recent, {fmt("int8-d64"), fmt("fp16"), fmt("int3-t16")},
                                {fmt("fp16"), fmt("bf16"), fmt("int2-d32")});
}

}  // namespace

TEST_CASE("AgedRows: every row at every length is the value the policy's rules store") {
  const auto trace = analysis::Trace::open(policy_trace());
  const analysis::StoredRows keys(trace.file(), policy_trace(), *trace.layers()[1].k, 1, 0, 117);
  std::vector<float> x(117 * kD);
  keys.read_floats(0, 117, x.data());
  for (const auto& [sink, recent] : {std::pair<std::int64_t, std::int64_t>{1, 2}, {0, 1}, {2, 1}}) {
    CAPTURE(sink);
    CAPTURE(recent);
    const proofs::PrecisionPolicy p = test_policy(sink, recent);
    // The third: per-channel pages at every age, so partial pages wait in f32 (sink and recent).
    const proofs::ClassFormats per_channel{fmt("int4-t16"), fmt("int4-t16"), fmt("int4-t16")};
    for (const auto* formats : {&p.entries[0].keys, &p.entries[0].values, &per_channel}) {
      const analysis::AgedRows aged(keys, p, *formats);
      std::vector<double> got, norms;
      std::size_t migrated = 0, staged = 0;
      for (std::size_t length : {1, 15, 16, 17, 31, 33, 48, 49, 64, 65, 100, 117}) {
        CAPTURE(length);
        got.resize(length * kD);
        aged.at(length).read(0, length, got.data());
        aged.norms_up(length, norms);
        for (std::size_t t = 0; t < length; ++t) {
          const auto want = hnf::testing::expected_policy_row(x, kD, p, *formats, t, length);
          for (std::size_t c = 0; c < kD; ++c) REQUIRE(got[t * kD + c] == want[c]);
          double sq = 0.0;
          for (double v : want) sq += v * v;
          CHECK(norms[t] >= std::sqrt(sq));
          const auto v = aged.version(t / kPage, length);
          migrated += v == analysis::AgedRows::Version::kOld ? 1 : 0;
          staged += v == analysis::AgedRows::Version::kExact ? 1 : 0;
        }
        // A read that starts inside a page gives the same rows.
        if (length > 20) {
          std::vector<double> part((length - 7) * kD);
          aged.at(length).read(7, length - 7, part.data());
          for (std::size_t i = 0; i < part.size(); ++i) REQUIRE(part[i] == got[7 * kD + i]);
        }
      }
      if (formats == &per_channel) {
        CHECK(staged > 0);  // per-channel pages waited for their last row
      } else {
        CHECK(migrated > 0);  // rows did age into the old format
      }
    }
  }
}

TEST_CASE("analyze with a policy: S1 at every query's aged state bounds the MPFR error, on every position") {
  const std::string& path = policy_trace();
  analysis::AnalysisOptions o;
  o.eps = 100.0;
  o.policy = test_policy(1, 2);
  const auto r = analysis::analyze_trace(path, o);
  CHECK(r.query_positions.size() == 117);  // every position: the dense range covers the trace
  const auto trace = analysis::Trace::open(path);
  std::size_t checked = 0, positive = 0;
  for (const auto& h : r.heads) {
    CHECK(h.queries.size() == 2 * 117);
    const auto& tl = trace.layers()[static_cast<std::size_t>(h.layer)];
    const analysis::StoredRows k(trace.file(), path, *tl.k, h.kv_head, 0, 117), v(trace.file(), path, *tl.v, h.kv_head, 0, 117);
    const auto& e = o.policy->entries[static_cast<std::size_t>(h.layer * 2 + h.kv_head)];
    const analysis::AgedRows ak(k, *o.policy, e.keys), av(v, *o.policy, e.values);
    for (const auto& q : h.queries) {
      if (q.position % 5 != 0 && q.position < 110) continue;  // a spread of positions, and the last ones
      const auto n = static_cast<std::size_t>(q.position) + 1;
      std::vector<double> query(kD), ek(n * kD), ev(n * kD), qk(n * kD), qv(n * kD);
      analysis::StoredRows(trace.file(), path, *tl.q, q.head, q.position, 1, analysis::StoredRows::Values::kFinite)
          .read(0, 1, query.data());
      k.read(0, n, ek.data());
      v.read(0, n, ev.data());
      ak.at(n).read(0, n, qk.data());
      av.at(n).read(0, n, qv.data());
      const double actual = analysis::attention_difference_norm_mpfr(query, qk, qv, ek, ev, kD);
      CAPTURE(h.layer);
      CAPTURE(q.head);
      CAPTURE(q.position);
      CHECK(q.s1 >= actual);
      CHECK(q.actual_lo <= actual);
      positive += actual > 0.0 ? 1 : 0;
      ++checked;
    }
  }
  CHECK(checked > 100);
  CHECK(positive > 0);
}

TEST_CASE("analyze with a policy: a per-token format that never changes gives the map's S1") {
  const std::string& path = policy_trace();
  analysis::AnalysisOptions o;
  o.eps = 100.0;
  o.policy = proofs::uniform_policy(2, 2, 4, 64, 16, 0, 1, {fmt("int4-d32"), fmt("int4-d32"), fmt("int4-d32")},
                                    {fmt("int3-d64"), fmt("int3-d64"), fmt("int3-d64")});
  const auto with_policy = analysis::analyze_trace(path, o);
  analysis::AnalysisOptions m;
  m.eps = 100.0;
  m.last_queries = 117;
  m.fixed_map = [](std::int64_t, std::int64_t, std::size_t units, std::vector<proofs::Format>& keys,
                   std::vector<proofs::Format>& values) {
    keys.assign(units, fmt("int4-d32"));
    values.assign(units, fmt("int3-d64"));
  };
  const auto with_map = analysis::analyze_trace(path, m);
  REQUIRE(with_policy.heads.size() == with_map.heads.size());
  for (std::size_t i = 0; i < with_map.heads.size(); ++i) {
    REQUIRE(with_policy.heads[i].queries.size() == with_map.heads[i].queries.size());
    for (std::size_t j = 0; j < with_map.heads[i].queries.size(); ++j) {
      REQUIRE(with_policy.heads[i].queries[j].s1 == with_map.heads[i].queries[j].s1);
    }
  }
}

TEST_CASE("analyze with a policy: dense queries, then a stride, and a policy of another shape is refused") {
  const std::string& path = policy_trace();
  analysis::AnalysisOptions o;
  o.eps = 100.0;
  o.policy = test_policy(1, 1);
  o.dense_queries = 50;
  o.beyond_stride = 20;
  const auto r = analysis::analyze_trace(path, o);
  std::vector<std::int64_t> want;
  for (std::int64_t t = 0; t < 50; ++t) want.push_back(t);
  for (std::int64_t t = 50; t < 117; t += 20) want.push_back(t);
  CHECK(r.query_positions == want);
  o.policy->head_dim = 128;
  CHECK_THROWS_WITH_AS(analysis::analyze_trace(path, o), doctest::Contains("policy"), hnf::proofs::Error);
}

TEST_CASE("AgedRows: a stochastic policy's rows use its calibration seed's draws, page by page and age by age") {
  const auto trace = analysis::Trace::open(policy_trace());
  const analysis::StoredRows values(trace.file(), policy_trace(), *trace.layers()[1].v, 1, 0, 117);
  std::vector<float> x(117 * kD);
  values.read_floats(0, 117, x.data());
  proofs::PrecisionPolicy p = test_policy(1, 2);
  p.rounding = proofs::Rounding::kStochastic;
  p.calibration_seed = 12345;
  const proofs::ClassFormats formats{fmt("int4-d32"), fmt("fp16"), fmt("int3-d64")};
  const analysis::AgedRows aged(values, p, formats, 1, 1, true);
  proofs::PrecisionPolicy nearest = p;
  nearest.rounding = proofs::Rounding::kNearest;
  nearest.calibration_seed = 0;
  const analysis::AgedRows rounded(values, nearest, formats, 1, 1, true);
  std::size_t differ = 0;
  for (std::size_t length : {17, 48, 49, 80, 117}) {
    std::vector<double> got(length * kD), near(length * kD);
    aged.at(length).read(0, length, got.data());
    rounded.at(length).read(0, length, near.data());
    for (std::size_t t = 0; t < length; ++t) {
      const auto want = hnf::testing::expected_policy_row(x, kD, p, formats, t, length, nullptr, 1, 1, true, 12345);
      for (std::size_t c = 0; c < kD; ++c) REQUIRE(got[t * kD + c] == want[c]);
      for (std::size_t c = 0; c < kD; ++c) differ += got[t * kD + c] != near[t * kD + c] ? 1 : 0;
    }
  }
  CHECK(differ > 1000);  // the draws do change codes (about half of them, against round to nearest)
}
