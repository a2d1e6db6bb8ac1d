// The mixed cache under a certified precision policy (tests/fixtures/hnf-llama-4m-128-policy.cert.json:
// keys int8-d64 / fp16 / int4-t16 and values fp16 / bf16 / int3-d32 for sink, recent and old
// pages of 16 positions, one sink page, two recent pages): every stored row at every step is
// the policy's value (rows migrate from fp16 and bf16 into integer pages as they age), its
// radius covers the appended value, the decode bound holds against MPFR on aged rows, aged
// pages' bytes are reused, and bits per element are the policy's.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "fixture_certificate.h"
#include "hnf/analysis/high_precision.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/policy.h"
#include "hnf/runtime/decode_attention.h"
#include "hnf/runtime/mixed_kv_cache.h"
#include "hnf/runtime/policy_pages.h"
#include "policy_rows.h"

using hnf::runtime::KvCacheShape;
using hnf::runtime::MixedKvCache;

namespace {

const KvCacheShape kShape{.num_layers = 4, .num_heads = 4, .num_kv_heads = 2, .head_dim = 64};
constexpr std::size_t kD = 64;

const hnf::proofs::CertifiedPrecisionMap& certified_policy() {
  static const hnf::proofs::CheckReport report = [] {
    hnf::proofs::CheckOptions options = hnf::testing::attested_fixture_options(
        hnf::testing::fixture_path("hnf-llama-4m-128-policy.attestation.json"));
    return hnf::proofs::check_certificate(hnf::testing::fixture_path("hnf-llama-4m-128-policy.cert.json"), options,
                                          std::string("hnf-verify ") + HNF_TOOL_VERSION);
  }();
  INFO("fixture rejected (after a version bump: bash tests/fixtures/regenerate.sh): ",
       report.problems.empty() ? std::string() : report.problems.front());
  REQUIRE(report.certified.has_value());
  REQUIRE(report.certified->policy().has_value());
  return *report.certified;
}

// Every stream's appended rows: [layers * kv_heads][positions * head_dim].
struct Appended {
  std::vector<std::vector<float>> keys, values;
};

// Appends n positions to every layer: attention-like rows (a larger first position, outlier channels).
void append_rows(MixedKvCache& cache, std::mt19937& rng, std::int64_t n, Appended& appended) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  appended.keys.resize(8);
  appended.values.resize(8);
  for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
    const auto count = static_cast<std::size_t>(kShape.num_kv_heads * n) * kD;
    std::vector<float> k(count), v(count);
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t c = i % kD;
      const bool first = cache.layer_size(l) + static_cast<std::int64_t>(i / kD) % n == 0;
      k[i] = normal(rng) * (c == 3 ? 6.0f : 1.0f) * (first ? 4.0f : 1.0f);
      v[i] = normal(rng) * (c == 7 ? 3.0f : 1.0f);
    }
    for (std::int64_t g = 0; g < kShape.num_kv_heads; ++g) {
      const auto begin = static_cast<std::ptrdiff_t>(static_cast<std::size_t>(g * n) * kD);
      const auto end = begin + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(n) * kD);
      appended.keys[static_cast<std::size_t>(l * 2 + g)].insert(appended.keys[static_cast<std::size_t>(l * 2 + g)].end(),
                                                                k.begin() + begin, k.begin() + end);
      appended.values[static_cast<std::size_t>(l * 2 + g)].insert(
          appended.values[static_cast<std::size_t>(l * 2 + g)].end(), v.begin() + begin, v.begin() + end);
    }
    cache.append(l, k.data(), v.data(), n);
  }
}

}  // namespace

TEST_CASE("policy cache: every row at every step is the policy's stored value, and its radius covers the appended value") {
  const auto& certified = certified_policy();
  const hnf::proofs::PrecisionPolicy& policy = *certified.policy();
  MixedKvCache cache(certified, kShape, 200);
  std::mt19937 rng(21);
  Appended appended;
  std::size_t compared = 0, migrated = 0;
  // A prefill, then single steps and chunks that cross page boundaries.
  for (std::int64_t n : {20, 1, 1, 9, 1, 16, 1, 30, 1, 1, 37, 3}) {
    append_rows(cache, rng, n, appended);
    const auto length = static_cast<std::size_t>(cache.size());
    for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
      for (std::int64_t g = 0; g < kShape.num_kv_heads; ++g) {
        const auto s = static_cast<std::size_t>(l * 2 + g);
        const auto view = cache.stream(l, g);
        const auto& e = policy.entries[s];
        std::vector<double> key(kD), value(kD), kr(kD), vr(kD), want_kr, want_vr;
        for (std::size_t t = 0; t < length; ++t) {
          hnf::runtime::read_position(view, static_cast<std::int64_t>(t), key.data(), value.data(), kr.data(), vr.data());
          const auto want_k = hnf::testing::expected_policy_row(appended.keys[s], kD, policy, e.keys, t, length, &want_kr);
          const auto want_v = hnf::testing::expected_policy_row(appended.values[s], kD, policy, e.values, t, length, &want_vr);
          const bool aged = hnf::proofs::age_class(policy, static_cast<std::int64_t>(t), static_cast<std::int64_t>(length)) ==
                            hnf::proofs::AgeClass::kOld;
          for (std::size_t c = 0; c < kD; ++c) {
            REQUIRE(key[c] == want_k[c]);
            REQUIRE(value[c] == want_v[c]);
            // An aged row's radius also covers the fp16/bf16 step it went through.
            const double x_k = appended.keys[s][t * kD + c], x_v = appended.values[s][t * kD + c];
            REQUIRE(kr[c] >= std::fabs(x_k - key[c]));
            REQUIRE(vr[c] >= std::fabs(x_v - value[c]));
            REQUIRE(kr[c] >= want_kr[c]);
            REQUIRE(vr[c] >= want_vr[c]);
          }
          migrated += aged ? 1 : 0;
          ++compared;
        }
        // The formats the cache reports are the policy's at this length.
        CHECK(cache.key_format(l, g, static_cast<std::int64_t>(length) - 1) ==
              hnf::proofs::class_format(e.keys, hnf::proofs::AgeClass::kRecent));
      }
    }
    // Bits per element: the policy's expansion at this length (no per-channel page is staged:
    // recent keys are fp16).
    CHECK(cache.bits_per_element() == doctest::Approx(hnf::proofs::policy_bits_per_element(policy, cache.size())).epsilon(1e-12));
  }
  CHECK(migrated > 1000);
  CHECK(compared > 5000);  // (stream, position) pairs, each of 64 channels
}

TEST_CASE("policy cache: aged pages' bytes are reused, so slabs grow with the stored bytes only") {
  MixedKvCache cache(certified_policy(), kShape, 4096);
  std::mt19937 rng(4);
  Appended appended;
  append_rows(cache, rng, 4096, appended);
  const auto m = cache.memory();
  // Without reuse every aged page (256 pages - 1 sink - 2 recent, per stream) would leave its
  // fp16 key side and bf16 value side (2 KB each) behind; with it, the slack is the slabs' tails.
  const std::size_t left_behind = 8u * 253u * 2u * 2048u;
  CHECK(m.page_slack < left_behind / 4);
}

TEST_CASE("policy cache: the decode bound holds against MPFR at every step, on rows that aged") {
  const auto& certified = certified_policy();
  MixedKvCache cache(certified, kShape, 120);
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Appended appended;
  std::size_t checked = 0;
  for (int step = 0; step < 100; ++step) {
    append_rows(cache, rng, step == 0 ? 10 : 1, appended);
    if (step % 9 != 0 && step < 95) continue;
    const std::int64_t n = cache.size();
    for (std::int64_t l : {0, 3}) {
      std::vector<float> q(static_cast<std::size_t>(kShape.num_heads) * kD), out(q.size());
      for (float& x : q) x = normal(rng) * 1.5f;
      std::vector<double> bounds(static_cast<std::size_t>(kShape.num_heads));
      cache.attend_with_bounds(l, q.data(), 1, out.data(), bounds.data());
      for (std::int64_t h = 0; h < kShape.num_heads; ++h) {
        const auto s = static_cast<std::size_t>(l * 2 + h / 2);
        const std::vector<double> qd(q.begin() + h * static_cast<std::ptrdiff_t>(kD), q.begin() + (h + 1) * static_cast<std::ptrdiff_t>(kD));
        const std::vector<double> k(appended.keys[s].begin(), appended.keys[s].begin() + n * static_cast<std::ptrdiff_t>(kD));
        const std::vector<double> v(appended.values[s].begin(), appended.values[s].begin() + n * static_cast<std::ptrdiff_t>(kD));
        const auto o = hnf::analysis::attention_output_mpfr(qd, k, v, kD);
        double sum = 0.0;
        for (std::size_t c = 0; c < kD; ++c) {
          const double diff = static_cast<double>(out[static_cast<std::size_t>(h) * kD + c]) - o[c];
          sum += diff * diff;
        }
        const double actual = std::sqrt(sum);
        CAPTURE(n);
        CHECK(bounds[static_cast<std::size_t>(h)] >= actual * (1.0 + 1e-12) + 1e-300);
        CHECK(actual > 0.0);
        ++checked;
      }
    }
  }
  CHECK(checked == 2u * 4u * 16u);  // steps 0, 9, ..., 99 and 95..98
}

TEST_CASE("policy cache: an OwnedPolicyStream stores what the cache stores") {
  const hnf::proofs::PrecisionPolicy& policy = *certified_policy().policy();
  const auto& head = policy.entries[5];
  hnf::runtime::OwnedPolicyStream stream(policy, head, static_cast<int>(kD));
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> keys, values;
  std::size_t compared = 0;
  for (std::size_t t = 0; t < 90; ++t) {
    for (std::size_t c = 0; c < kD; ++c) {
      keys.push_back(normal(rng) * (c == 9 ? 5.0f : 1.0f));
      values.push_back(normal(rng));
    }
    stream.append(keys.data() + t * kD, values.data() + t * kD);
    const std::size_t length = t + 1;
    if (length % 7 != 0 && length != 90) continue;
    std::vector<double> key(kD), value(kD), kr(kD), vr(kD);
    for (std::size_t u = 0; u < length; ++u) {
      hnf::runtime::read_position(stream.view(), static_cast<std::int64_t>(u), key.data(), value.data(), kr.data(), vr.data());
      const auto want_k = hnf::testing::expected_policy_row(keys, kD, policy, head.keys, u, length);
      const auto want_v = hnf::testing::expected_policy_row(values, kD, policy, head.values, u, length);
      for (std::size_t c = 0; c < kD; ++c) {
        REQUIRE(key[c] == want_k[c]);
        REQUIRE(value[c] == want_v[c]);
      }
      ++compared;
    }
  }
  CHECK(stream.size() == 90);
  CHECK(compared > 500);
}

TEST_CASE("policy cache: a stochastic policy's stream draws with its seed, as the analysis does") {
  hnf::proofs::PrecisionPolicy policy = *certified_policy().policy();
  policy.rounding = hnf::proofs::Rounding::kStochastic;
  policy.calibration_seed = 1;
  const auto& head = policy.entries[3];  // layer 1, kv head 1
  hnf::runtime::OwnedPolicyStream stream(policy, head, static_cast<int>(kD), 4242);
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> keys, values;
  std::size_t compared = 0;
  for (std::size_t t = 0; t < 70; ++t) {
    for (std::size_t c = 0; c < kD; ++c) {
      keys.push_back(normal(rng));
      values.push_back(normal(rng) * 2.0f);
    }
    stream.append(keys.data() + t * kD, values.data() + t * kD);
    const std::size_t length = t + 1;
    if (length % 5 != 0) continue;
    std::vector<double> key(kD), value(kD), kr(kD), vr(kD), want_kr, want_vr;
    for (std::size_t u = 0; u < length; ++u) {
      hnf::runtime::read_position(stream.view(), static_cast<std::int64_t>(u), key.data(), value.data(), kr.data(), vr.data());
      const auto want_k = hnf::testing::expected_policy_row(keys, kD, policy, head.keys, u, length, &want_kr, 1, 1, false, 4242);
      const auto want_v = hnf::testing::expected_policy_row(values, kD, policy, head.values, u, length, &want_vr, 1, 1, true, 4242);
      for (std::size_t c = 0; c < kD; ++c) {
        REQUIRE(key[c] == want_k[c]);
        REQUIRE(value[c] == want_v[c]);
        REQUIRE(kr[c] >= want_kr[c]);  // the stochastic radius s(1 + 2^-40) (plus an aged row's fp16 part)
        REQUIRE(vr[c] >= want_vr[c]);
        REQUIRE(kr[c] >= std::fabs(keys[u * kD + c] - key[c]));
        REQUIRE(vr[c] >= std::fabs(values[u * kD + c] - value[c]));
      }
      ++compared;
    }
  }
  CHECK(compared > 400);
}
