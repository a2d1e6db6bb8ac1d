// decode_error_bound (THEORY.md section 13) against an MPFR evaluation of the exact attention
// over the *appended* float keys and values: sound for every format, mixed pages, peaky and
// flat queries, sinks and outliers, for the reference and the CPU backend; sharp enough to be
// useful; and each of its terms is needed.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "hnf/analysis/high_precision.h"
#include "hnf/proofs/format.h"
#include "hnf/runtime/decode_attention.h"
#include "hnf/runtime/decode_bound.h"
#include "hnf/runtime/page_codec.h"
#include "hnf/runtime/policy_pages.h"
#include "hnf/proofs/policy.h"

namespace {

using hnf::runtime::DecodeBoundTerms;
using hnf::runtime::OwnedStream;
using hnf::runtime::PageFormat;

constexpr int kDim = 64;

// Synthetic keys and values with the features that matter: per-channel offsets, outlier
// channels, an attention sink at position 0 (a key aligned with the queries' mean direction).
struct Rows {
  std::vector<float> keys, values;  // [n, kDim]
};

Rows make_rows(std::int64_t n, std::mt19937_64& rng, bool sink, bool outliers) {
  std::normal_distribution<float> normal(0.0F, 1.0F);
  Rows r;
  const auto size = static_cast<std::size_t>(n) * kDim;
  r.keys.resize(size);
  r.values.resize(size);
  std::vector<float> bias(kDim);
  for (float& b : bias) b = 0.5F * normal(rng);
  for (std::int64_t t = 0; t < n; ++t) {
    for (int c = 0; c < kDim; ++c) {
      const auto i = static_cast<std::size_t>(t) * kDim + static_cast<std::size_t>(c);
      const float key_scale = outliers && (c == 3 || c == 17) ? 12.0F : 1.0F;
      const float value_scale = outliers && c == 5 ? 8.0F : 1.0F;
      r.keys[i] = key_scale * normal(rng) + bias[static_cast<std::size_t>(c)];
      r.values[i] = value_scale * normal(rng);
    }
  }
  if (sink) {
    for (int c = 0; c < kDim; ++c) r.keys[static_cast<std::size_t>(c)] = 3.0F * bias[static_cast<std::size_t>(c)] + 2.0F;
  }
  return r;
}

std::vector<float> make_query(std::mt19937_64& rng, float scale) {
  std::normal_distribution<float> normal(0.0F, 1.0F);
  std::vector<float> q(kDim);
  for (float& x : q) x = scale * (normal(rng) + 0.3F);
  return q;
}

// The exact attention over the appended rows (MPFR, 128 bits, rounded to nearest double).
std::vector<double> exact_attention(const Rows& r, std::int64_t n, const std::vector<float>& q) {
  const auto size = static_cast<std::size_t>(n) * kDim;
  const std::vector<double> qd(q.begin(), q.end());
  const std::vector<double> k(r.keys.begin(), r.keys.begin() + static_cast<std::ptrdiff_t>(size));
  const std::vector<double> v(r.values.begin(), r.values.begin() + static_cast<std::ptrdiff_t>(size));
  return hnf::analysis::attention_output_mpfr(qd, k, v, kDim);
}

// ||out - o|| in double, and a margin that covers the rounding of o to doubles (<= 2^-52 |o_i|
// each) and of the norm itself (relative 1e-13): the true norm is <= actual + margin.
struct Actual {
  double error = 0.0;
  double margin = 0.0;
};
Actual actual_error(const float* out, const std::vector<double>& o) {
  double sum = 0.0, norm = 0.0;
  for (int c = 0; c < kDim; ++c) {
    const double diff = static_cast<double>(out[c]) - o[static_cast<std::size_t>(c)];
    sum += diff * diff;
    norm += o[static_cast<std::size_t>(c)] * o[static_cast<std::size_t>(c)];
  }
  const double error = std::sqrt(sum);
  return {error, 1e-13 * error + std::ldexp(std::sqrt(norm), -50)};
}

PageFormat value_format_for(const hnf::proofs::Format& f) {
  // Value pages never use the per-channel token axis: a -tP key format is paired with the
  // same bits per token in groups of 32.
  if (f.axis != hnf::proofs::GroupAxis::kTokens) return hnf::runtime::page_format(f);
  return hnf::runtime::page_format(hnf::proofs::Format{f.encoding, hnf::proofs::GroupAxis::kHeadDim, 32});
}

std::string family(const PageFormat& f) {
  const std::string name = hnf::runtime::page_format_name(f);
  return name.substr(0, name.find('-'));
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  return x[x.size() / 2];
}

// Soundness of one (stream, query) with both backends; returns bound / actual of the
// reference's output (0 when the actual error is 0).
double check_case(const OwnedStream& stream, const Rows& rows, std::int64_t n, const std::vector<float>& q) {
  const std::vector<double> o = exact_attention(rows, n, q);
  const float scale = 1.0F / std::sqrt(static_cast<float>(kDim));
  std::vector<float> out_ref(kDim), out_cpu(kDim);
  hnf::runtime::decode_attention_reference(stream.view(), n, q.data(), 1, scale, out_ref.data());
  hnf::runtime::decode_attention_cpu(stream.view(), n, q.data(), 1, scale, out_cpu.data());
  double ratio = 0.0;
  for (const std::vector<float>* out : {&out_ref, &out_cpu}) {
    const double bound = hnf::runtime::decode_error_bound(stream.view(), n, q.data(), out->data());
    const Actual actual = actual_error(out->data(), o);
    CHECK(std::isfinite(bound));
    CHECK(bound >= actual.error + actual.margin);
    if (out == &out_ref && actual.error > 0.0) ratio = bound / actual.error;
  }
  return ratio;
}

OwnedStream uniform_stream(const Rows& rows, std::int64_t n, const hnf::proofs::Format& f) {
  const int page_size = f.axis == hnf::proofs::GroupAxis::kTokens ? f.group_size : 32;
  const auto pages = static_cast<std::size_t>((n + page_size - 1) / page_size);
  return OwnedStream(rows.keys.data(), rows.values.data(), n, page_size, kDim,
                     std::vector<PageFormat>(pages, hnf::runtime::page_format(f)),
                     std::vector<PageFormat>(pages, value_format_for(f)));
}

}  // namespace

TEST_CASE("decode bound: every vocabulary format as a uniform stream, sound and useful") {
  std::mt19937_64 rng(20240611);
  const std::vector<std::int64_t> lengths = {1, 37, 256, 600};
  const std::vector<float> query_scales = {0.25F, 1.0F, 4.0F};
  // bound / actual per family, separately for plain rows and rows with a sink and outlier
  // channels (wide integer groups, large worst-case score perturbations).
  std::map<std::string, std::vector<double>> plain, outlier;
  std::vector<Rows> rows;
  for (const std::int64_t n : lengths) {
    rows.push_back(make_rows(n, rng, false, false));
    rows.push_back(make_rows(n, rng, true, true));
  }
  for (const hnf::proofs::Format& f : hnf::proofs::format_vocabulary(kDim)) {
    CAPTURE(hnf::proofs::format_name(f));
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const std::int64_t n = lengths[i / 2];
      const OwnedStream stream = uniform_stream(rows[i], n, f);
      for (const float s : query_scales) {
        CAPTURE(n);
        CAPTURE(s);
        const double ratio = check_case(stream, rows[i], n, make_query(rng, s));
        std::map<std::string, std::vector<double>>& into = i % 2 == 0 ? plain : outlier;
        if (ratio > 0.0) into[family(hnf::runtime::page_format(f))].push_back(ratio);
        // One position: o = v_0, the bound is ||out - v^_0|| plus the value radius, against a
        // residual of one draw: sqrt(3) for uniform residuals.
        if (n == 1) CHECK(ratio < 3.0);
      }
    }
  }
  for (const auto* set : {&plain, &outlier}) {
    for (const auto& [name, r] : *set) {
      std::printf("decode bound sharpness %-8s %-18s bound/actual median %7.2f max %8.2f (%zu cases)\n",
                  set == &plain ? "plain" : "outlier", name.c_str(), median(r), *std::max_element(r.begin(), r.end()),
                  r.size());
    }
  }
  // Useful, not just sound. The bound is the worst case over the radii, the actual error one
  // draw of the residuals: for a flat softmax over n positions the value errors average out
  // (~sqrt(n)) and the worst-case score perturbation sum_i |q_i| rk_i exceeds the typical
  // |q . dk| by ~sqrt(d), so the factor grows with the context. Measured (seed above):
  // fp16/bf16/int8 median 11-36, max 144; int4-int2 median 8-26, max 423.
  for (const auto* set : {&plain, &outlier}) {
    for (const auto& [name, r] : *set) {
      CAPTURE(name);
      const double worst = *std::max_element(r.begin(), r.end());
      if (name == "fp16" || name == "bf16" || name == "int8") {
        CHECK(median(r) < 50.0);
        CHECK(worst < 250.0);
      }
      CHECK(median(r) < 100.0);
      CHECK(worst < 1000.0);
    }
  }
}

TEST_CASE("decode bound: mixed streams (per-page key and value formats, staged pages)") {
  std::mt19937_64 rng(77);
  const std::vector<hnf::proofs::Format> vocabulary = hnf::proofs::format_vocabulary(kDim);
  for (const int page_size : {16, 32, 64}) {
    for (const std::int64_t n : {std::int64_t{5}, std::int64_t{129}, std::int64_t{500}}) {
      const Rows rows = make_rows(n, rng, true, true);
      const auto pages = static_cast<std::size_t>((n + page_size - 1) / page_size);
      std::vector<PageFormat> key_formats, value_formats;
      std::uniform_int_distribution<std::size_t> pick(0, vocabulary.size() - 1);
      for (std::size_t p = 0; p < pages; ++p) {
        hnf::proofs::Format kf = vocabulary[pick(rng)];
        // A -t key format must have the page's size; others are drawn again.
        while (kf.axis == hnf::proofs::GroupAxis::kTokens && kf.group_size != page_size) kf = vocabulary[pick(rng)];
        hnf::proofs::Format vf = vocabulary[pick(rng)];
        while (vf.axis == hnf::proofs::GroupAxis::kTokens) vf = vocabulary[pick(rng)];
        key_formats.push_back(hnf::runtime::page_format(kf));
        value_formats.push_back(hnf::runtime::page_format(vf));
      }
      const OwnedStream stream(rows.keys.data(), rows.values.data(), n, page_size, kDim, key_formats, value_formats);
      for (const float s : {0.5F, 2.0F, 6.0F}) {
        CAPTURE(page_size);
        CAPTURE(n);
        CAPTURE(s);
        // Every prefix length a decode step sees is a valid stream length too.
        for (const std::int64_t m : {std::int64_t{1}, (n + 1) / 2, n}) (void)check_case(stream, rows, m, make_query(rng, s));
      }
    }
  }
}

TEST_CASE("decode bound: peaky softmax from large-norm queries and queries aligned with a key") {
  std::mt19937_64 rng(5);
  const std::int64_t n = 300;
  const Rows rows = make_rows(n, rng, true, true);
  for (const char* name : {"fp16", "int8-d32", "int4-d64", "int2-t32"}) {
    const hnf::proofs::Format f = *hnf::proofs::parse_format(name);
    const OwnedStream stream = uniform_stream(rows, n, f);
    CAPTURE(name);
    for (const float s : {10.0F, 40.0F}) {
      CAPTURE(s);
      (void)check_case(stream, rows, n, make_query(rng, s));
    }
    // q = alpha k_j: the weight concentrates on j (and the sink), scores span hundreds.
    for (const float alpha : {0.5F, 3.0F}) {
      CAPTURE(alpha);
      std::vector<float> q(rows.keys.begin() + 123 * kDim, rows.keys.begin() + 124 * kDim);
      for (float& x : q) x *= alpha;
      (void)check_case(stream, rows, n, q);
    }
  }
}

TEST_CASE("decode bound: each term is needed") {
  std::mt19937_64 rng(11);
  const float scale = 1.0F / std::sqrt(static_cast<float>(kDim));
  const auto run = [&](const OwnedStream& stream, const Rows& rows, std::int64_t n, const std::vector<float>& q,
                       const std::vector<float>& out) {
    const DecodeBoundTerms terms = hnf::runtime::decode_error_bound_terms(stream.view(), n, q.data(), out.data());
    const Actual actual = actual_error(out.data(), exact_attention(rows, n, q));
    CHECK(terms.total == hnf::runtime::decode_error_bound(stream.view(), n, q.data(), out.data()));
    CHECK(terms.total >= actual.error + actual.margin);
    CHECK(terms.total <= terms.arithmetic + std::min(terms.key + terms.value, terms.cap) * (1.0 + 1e-12));
    return std::pair{terms, actual.error};
  };

  SUBCASE("the value term: exact (staged) keys, 2-bit values") {
    // 40 positions of a 64-position int4-t64 key page: the keys stay staged as floats (radius 0).
    const std::int64_t n = 40;
    const Rows rows = make_rows(n, rng, false, false);
    const OwnedStream stream(rows.keys.data(), rows.values.data(), n, 64, kDim,
                             {hnf::runtime::page_format(*hnf::proofs::parse_format("int4-t64"))},
                             {hnf::runtime::page_format(*hnf::proofs::parse_format("int2-d32"))});
    const std::vector<float> q = make_query(rng, 1.0F);
    std::vector<float> out(kDim);
    hnf::runtime::decode_attention_reference(stream.view(), n, q.data(), 1, scale, out.data());
    const auto [terms, actual] = run(stream, rows, n, q, out);
    CHECK(terms.key < 1e-12);
    CHECK(terms.arithmetic + terms.key < 0.01 * actual);  // without the value term: far below the error
  }

  SUBCASE("the key term: 2-bit keys, half-precision values") {
    const std::int64_t n = 200;
    const Rows rows = make_rows(n, rng, false, false);
    const OwnedStream stream(rows.keys.data(), rows.values.data(), n, 32, kDim,
                             std::vector<PageFormat>(7, hnf::runtime::page_format(*hnf::proofs::parse_format("int2-d32"))),
                             std::vector<PageFormat>(7, hnf::runtime::page_format(*hnf::proofs::parse_format("fp16"))));
    const std::vector<float> q = make_query(rng, 1.0F);
    std::vector<float> out(kDim);
    hnf::runtime::decode_attention_reference(stream.view(), n, q.data(), 1, scale, out.data());
    const auto [terms, actual] = run(stream, rows, n, q, out);
    CHECK(terms.arithmetic + terms.value < 0.1 * actual);  // without the key term: far below the error
    CHECK(terms.key > actual);
  }

  SUBCASE("the arithmetic term: a backend whose output is off") {
    const std::int64_t n = 100;
    const Rows rows = make_rows(n, rng, false, false);
    const OwnedStream stream = uniform_stream(rows, n, *hnf::proofs::parse_format("fp16"));
    const std::vector<float> q = make_query(rng, 1.0F);
    std::vector<float> out(kDim);
    hnf::runtime::decode_attention_reference(stream.view(), n, q.data(), 1, scale, out.data());
    out[7] += 0.5F;  // e.g. a kernel bug
    const auto [terms, actual] = run(stream, rows, n, q, out);
    CHECK(std::min(terms.key + terms.value, terms.cap) < 0.1 * actual);  // without it: below the error
    CHECK(terms.arithmetic >= 0.49);
  }

  SUBCASE("the cap: 2-bit keys under a huge query stay finite and below the value spread") {
    const std::int64_t n = 200;
    const Rows rows = make_rows(n, rng, true, true);
    const OwnedStream stream = uniform_stream(rows, n, *hnf::proofs::parse_format("int2-d64"));
    const std::vector<float> q = make_query(rng, 200.0F);
    std::vector<float> out(kDim);
    hnf::runtime::decode_attention_reference(stream.view(), n, q.data(), 1, scale, out.data());
    const auto [terms, actual] = run(stream, rows, n, q, out);
    CHECK(std::isfinite(terms.total));
    CHECK(terms.cap < terms.key);  // the weight perturbation is hopeless; convexity still bounds it
  }
}

TEST_CASE("decode bound: one position, non-finite inputs") {
  std::mt19937_64 rng(3);
  const Rows rows = make_rows(1, rng, false, false);
  const OwnedStream stream = uniform_stream(rows, 1, *hnf::proofs::parse_format("int8-d32"));
  std::vector<float> q = make_query(rng, 1.0F);
  // One position: o = v_0 whatever the keys; the bound covers the value radius only.
  std::vector<float> out(rows.values.begin(), rows.values.begin() + kDim);
  const DecodeBoundTerms terms = hnf::runtime::decode_error_bound_terms(stream.view(), 1, q.data(), out.data());
  CHECK(terms.total >= 0.0);
  CHECK(terms.total <= 1.01 * (terms.arithmetic + terms.value) + 1e-12);
  out[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(hnf::runtime::decode_error_bound(stream.view(), 1, q.data(), out.data()) == std::numeric_limits<double>::infinity());
  out[0] = 0.0F;
  q[3] = std::numeric_limits<float>::infinity();
  CHECK(hnf::runtime::decode_error_bound(stream.view(), 1, q.data(), out.data()) == std::numeric_limits<double>::infinity());
}

// The probabilistic guard (THEORY.md section 15) on stochastically rounded policy streams: over
// many seeds and rows, never below the actual error (at delta 1e-6 a violation would be a 1e-6
// event per row: with about 2,000 rows, any violation fails the test), tighter than the
// deterministic bound, and its random parts are needed (the bias parts alone fall below).
TEST_CASE("probabilistic guard: sound against MPFR over seeds, tighter than the deterministic bound") {
  using hnf::proofs::parse_format;
  std::mt19937_64 rng(17);
  std::vector<double> ratio_p, ratio_d;
  std::size_t rows = 0, bias_only_below = 0;
  for (const auto& [kname, vname] : {std::pair<const char*, const char*>{"int4-t16", "int4-d64"}, {"int3-t16", "int3-d32"},
                                     {"int8-d64", "int8-d64"}, {"int2-t16", "int4-d64"}}) {
    hnf::proofs::PrecisionPolicy policy = hnf::proofs::uniform_policy(
        1, 1, 1, kDim, 16, 1, 1, {*parse_format("fp16"), *parse_format("fp16"), *parse_format(kname)},
        {*parse_format("fp16"), *parse_format("fp16"), *parse_format(vname)});
    policy.rounding = hnf::proofs::Rounding::kStochastic;
    policy.calibration_seed = 1;
    for (const std::int64_t n : {40, 200, 600}) {
      const Rows r = make_rows(n, rng, true, n == 200);
      for (std::uint64_t seed = 1; seed <= 12; ++seed) {
        hnf::runtime::OwnedPolicyStream stream(policy, policy.entries[0], kDim, seed * 7919);
        for (std::int64_t t = 0; t < n; ++t) {
          stream.append(r.keys.data() + t * kDim, r.values.data() + t * kDim);
        }
        for (const float scale : {0.5F, 1.5F}) {
          const auto q = make_query(rng, scale);
          std::vector<float> out(kDim);
          hnf::runtime::decode_attention_cpu(stream.view(), n, q.data(), 1, 1.0F / std::sqrt(static_cast<float>(kDim)), out.data());
          const auto o = exact_attention(r, n, q);
          const Actual actual = actual_error(out.data(), o);
          const auto g = hnf::runtime::decode_guard_terms(stream.view(), n, q.data(), out.data(), 1e-6);
          CAPTURE(kname);
          CAPTURE(n);
          CAPTURE(seed);
          REQUIRE(g.probabilistic >= actual.error + actual.margin);
          REQUIRE(g.deterministic.total >= actual.error + actual.margin);
          CHECK(g.deterministic.total == hnf::runtime::decode_error_bound(stream.view(), n, q.data(), out.data()));
          // The group form (the stream decoded once for several rows) gives the same doubles.
          std::vector<float> q2(q), out2(out);
          q2.insert(q2.end(), q.begin(), q.end());
          out2.insert(out2.end(), out.begin(), out.end());
          hnf::runtime::GuardBoundTerms pair[2];
          hnf::runtime::decode_guard_group(stream.view(), n, q2.data(), out2.data(), 2, 1e-6, pair);
          CHECK(pair[1].probabilistic == g.probabilistic);
          CHECK(pair[0].deterministic.total == g.deterministic.total);
          if (actual.error > 0.0) {
            ratio_p.push_back(g.probabilistic / actual.error);
            ratio_d.push_back(g.deterministic.total / actual.error);
          }
          bias_only_below += g.deterministic.arithmetic + g.key_bias + g.value_bias < actual.error ? 1 : 0;
          ++rows;
        }
      }
    }
  }
  MESSAGE("probabilistic guard, bound / actual median " << median(ratio_p) << " (deterministic " << median(ratio_d)
                                                         << ") over " << rows << " rows");
  CHECK(rows == 4u * 3u * 12u * 2u);
  CHECK(median(ratio_p) < median(ratio_d));
  CHECK(bias_only_below > rows / 2);  // the random parts carry the bound
}
