// The optimised CPU decode (decode_cpu.cpp: its AVX-512, AVX2 and portable paths) against
// the double-precision reference (decode_reference.cpp) on the same pages: every format of the
// vocabulary, mixed streams, GQA layers, prefixes that end inside a page.
//
// Errors are max |out - out_ref| / max |out_ref| over all query heads and channels. The
// tolerances are named per format family; they sit 3-5x above the fp32 rounding the kernels
// show on these data (at most 2.1e-6 for float and -d pages, 3.2e-6 for -t keys) and about an
// order of magnitude below what ONE code off by one quantization step at one position does
// (1.5e-4: "decode: the tolerance catches ..."), so a wrong unpack (bit shift, group index,
// swapped scale and zero point) cannot pass: it changes many codes by many steps.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../../../runtime/src/decode_cpu.h"  // private: the paths, callable one by one
#include "hnf/proofs/format.h"
#include "hnf/runtime/decode_attention.h"
#include "hnf/runtime/page_codec.h"

using namespace hnf;
using runtime::PageFormat;

namespace {

// fp16 / bf16 / staged-f32 pages: only the kernels' fp32 rounding (scores, exp, sums).
constexpr double kTolFloat = 1e-5;
// intB-dG pages: the same, plus z + s*c rounded to fp32 (one rounding per element).
constexpr double kTolInteger = 1e-5;
// intB-tP keys: the factored score sum q z + sum (q s) c adds terms of larger magnitude than
// the score itself (z is a channel's minimum), so its rounding is a few times larger.
constexpr double kTolTokenKeys = 2e-5;

// Keys and values [positions, head_dim] and queries [heads, head_dim] that look like a real
// layer's: normal entries, outlier channels in the keys (x8) and values (x4), queries that
// share a direction, and an attention sink at position 0 (its key along that direction, so it
// takes a large share of every head's weight).
struct Layer {
  std::vector<float> keys, values, queries;
};

Layer make_layer(std::int64_t positions, int head_dim, int heads, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto d = static_cast<std::size_t>(head_dim);
  const auto n = static_cast<std::size_t>(positions);
  Layer layer;
  layer.keys.resize(n * d);
  layer.values.resize(n * d);
  layer.queries.resize(static_cast<std::size_t>(heads) * d);
  for (std::size_t t = 0; t < n; ++t) {
    for (std::size_t c = 0; c < d; ++c) {
      const float key_scale = c == 5 || c == d / 2 + 3 ? 8.0f : 1.0f;
      const float value_scale = c == 9 ? 4.0f : 1.0f;
      layer.keys[t * d + c] = key_scale * normal(rng);
      layer.values[t * d + c] = value_scale * normal(rng);
    }
  }
  std::vector<float> direction(d);
  for (auto& x : direction) x = normal(rng);
  for (std::size_t i = 0; i < layer.queries.size(); ++i) layer.queries[i] = direction[i % d] + 0.5f * normal(rng);
  for (std::size_t c = 0; c < d; ++c) layer.keys[c] = 0.6f * direction[c];
  return layer;
}

float softmax_scale(int head_dim) { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }

PageFormat format_named(const char* name) {
  const auto f = proofs::parse_format(name);
  REQUIRE(f.has_value());
  return runtime::page_format(*f);
}

std::vector<PageFormat> repeat(const PageFormat& f, std::int64_t pages) {
  return std::vector<PageFormat>(static_cast<std::size_t>(pages), f);
}

std::int64_t page_count(std::int64_t positions, int page_size) { return (positions + page_size - 1) / page_size; }

// max |out - ref| / max |ref|.
double relative_error(const std::vector<float>& out, const std::vector<float>& ref) {
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(out[i]) - static_cast<double>(ref[i])));
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  return diff / scale;
}

std::vector<float> run_reference(const runtime::StreamView& view, std::int64_t positions, const float* q, int group,
                                 float scale) {
  std::vector<float> out(static_cast<std::size_t>(group * view.head_dim));
  runtime::decode_attention_reference(view, positions, q, group, scale, out.data());
  return out;
}

std::vector<float> run_path(runtime::detail::CpuDecodePath path, const runtime::StreamView& view,
                            std::int64_t positions, const float* q, int group, float scale) {
  std::vector<float> out(static_cast<std::size_t>(group * view.head_dim), -1.0f);
  runtime::detail::decode_attention_cpu_path(path, view, positions, q, group, scale, out.data());
  return out;
}

std::vector<float> run_cpu(const runtime::StreamView& view, std::int64_t positions, const float* q, int group,
                           float scale) {
  std::vector<float> out(static_cast<std::size_t>(group * view.head_dim), -1.0f);
  runtime::decode_attention_cpu(view, positions, q, group, scale, out.data());
  return out;
}

// The SIMD paths, widest first, with their names for messages.
constexpr runtime::detail::CpuDecodePath kSimdPaths[] = {runtime::detail::CpuDecodePath::kAvx512,
                                                         runtime::detail::CpuDecodePath::kAvx2};
std::string path_name(runtime::detail::CpuDecodePath path) {
  switch (path) {
    case runtime::detail::CpuDecodePath::kAvx512: return "AVX-512";
    case runtime::detail::CpuDecodePath::kAvx2: return "AVX2";
    default: return "portable";
  }
}

// Checks decode_attention_cpu and every path this CPU has (AVX2 and AVX-512 where it has them)
// against the reference on the first `positions` positions; returns the largest relative
// error seen.
double check_parity(const runtime::StreamView& view, std::int64_t positions, const float* q, int group, float scale,
                    double tolerance, const std::string& what) {
  const std::vector<float> ref = run_reference(view, positions, q, group, scale);
  double worst = relative_error(run_cpu(view, positions, q, group, scale), ref);
  CHECK_MESSAGE(worst <= tolerance, what << " (default path): " << worst);
  const double portable =
      relative_error(run_path(runtime::detail::CpuDecodePath::kPortable, view, positions, q, group, scale), ref);
  CHECK_MESSAGE(portable <= tolerance, what << " (portable path): " << portable);
  worst = std::max(worst, portable);
  for (const auto path : kSimdPaths) {
    if (!runtime::detail::cpu_decode_path_supported(path, view.head_dim)) continue;
    const double err = relative_error(run_path(path, view, positions, q, group, scale), ref);
    CHECK_MESSAGE(err <= tolerance, what << " (" << path_name(path) << " path): " << err);
    worst = std::max(worst, err);
  }
  return worst;
}

double tolerance_for(const PageFormat& key, const PageFormat& value) {
  if (key.axis == runtime::kAxisTokens) return kTolTokenKeys;
  if (key.axis == runtime::kAxisHeadDim || value.axis == runtime::kAxisHeadDim) return kTolInteger;
  return kTolFloat;
}

}  // namespace

TEST_CASE("decode: every vocabulary format, full pages and a partial last page, every CPU path") {
  constexpr std::int64_t kPositions = 1000;
  constexpr int kGroup = 4;
  if (!runtime::cpu_decode_uses_avx2()) MESSAGE("this CPU has no AVX2/FMA/F16C: only the portable path is checked");
  if (!runtime::detail::cpu_decode_path_supported(runtime::detail::CpuDecodePath::kAvx512, 128)) {
    MESSAGE("this CPU has no AVX-512 F/BW/VL/DQ: the AVX-512 path is not checked");
  }
  for (const int head_dim : {128, 64}) {
    const Layer layer = make_layer(kPositions, head_dim, kGroup, 11u + static_cast<std::uint32_t>(head_dim));
    const float scale = softmax_scale(head_dim);
    double worst = 0.0;
    for (const proofs::Format& f : proofs::format_vocabulary(head_dim)) {
      const PageFormat key = runtime::page_format(f);
      const bool tokens = key.axis == runtime::kAxisTokens;
      // -t pages hold exactly one channel group: the page is as long as the group. The last page
      // (1000 is no multiple of 16, 32 or 64) is partial, so a -t stream ends with a staged page.
      const int page_size = tokens ? key.group : 16;
      const std::int64_t pages = page_count(kPositions, page_size);
      std::vector<PageFormat> value_formats = {key};
      if (tokens) value_formats = {format_named("fp16"), format_named("int4-d32")};
      for (const PageFormat& value : value_formats) {
        const runtime::OwnedStream stream(layer.keys.data(), layer.values.data(), kPositions, page_size, head_dim,
                                          repeat(key, pages), repeat(value, pages));
        const std::string what = "d" + std::to_string(head_dim) + " keys " + runtime::page_format_name(key) +
                                 " values " + runtime::page_format_name(value);
        CAPTURE(what);
        worst = std::max(worst, check_parity(stream.view(), kPositions, layer.queries.data(), kGroup, scale,
                                             tolerance_for(key, value), what));
      }
    }
    MESSAGE("head_dim " << head_dim << ": largest relative error over the vocabulary " << worst);
  }
}

TEST_CASE("decode: a mixed stream whose pages cycle through formats") {
  // 5000 positions: three chunks of 2048 (decode_cpu.cpp decodes chunks separately and merges
  // their softmax states), the last one partial, ending in a partial page.
  constexpr std::int64_t kPositions = 5000;
  constexpr int kHeadDim = 128, kPageSize = 16, kGroup = 4;
  const Layer layer = make_layer(kPositions, kHeadDim, kGroup, 7);
  const std::vector<PageFormat> key_cycle = {
      format_named("fp16"),      format_named("int4-d32"), format_named("int2-t16"), format_named("int8-d64"),
      format_named("int3-d128"), format_named("bf16"),     format_named("int3-t16"), format_named("int2-d32")};
  const std::vector<PageFormat> value_cycle = {format_named("int4-d32"), format_named("fp16"), format_named("int3-d32"),
                                               format_named("int2-d64"), format_named("bf16")};
  const std::int64_t pages = page_count(kPositions, kPageSize);
  std::vector<PageFormat> keys, values;
  for (std::int64_t p = 0; p < pages; ++p) {
    keys.push_back(key_cycle[static_cast<std::size_t>(p) % key_cycle.size()]);
    values.push_back(value_cycle[static_cast<std::size_t>(p) % value_cycle.size()]);
  }
  keys.back() = format_named("int4-t16");  // partial: kept staged
  const runtime::OwnedStream stream(layer.keys.data(), layer.values.data(), kPositions, kPageSize, kHeadDim, keys,
                                    values);
  CHECK(stream.view().pages[pages - 1].key_format.encoding == runtime::kPageStagedF32);
  const double err = check_parity(stream.view(), kPositions, layer.queries.data(), kGroup, softmax_scale(kHeadDim),
                                  kTolTokenKeys, "mixed stream");
  MESSAGE("mixed stream: relative error " << err);
}

TEST_CASE("decode: query-head counts 1..9 share one pass (register blocks of 1-4 heads)") {
  constexpr std::int64_t kPositions = 300;
  constexpr int kHeadDim = 128, kPageSize = 16;
  const std::int64_t pages = page_count(kPositions, kPageSize);
  std::vector<PageFormat> keys, values;
  for (std::int64_t p = 0; p < pages; ++p) {
    keys.push_back(p % 2 == 0 ? format_named("int4-d32") : format_named("int2-t16"));
    values.push_back(p % 3 == 0 ? format_named("fp16") : format_named("int3-d64"));
  }
  keys.back() = format_named("int8-d128");
  for (const int group : {1, 2, 3, 5, 8, 9}) {
    const Layer layer = make_layer(kPositions, kHeadDim, group, 100u + static_cast<std::uint32_t>(group));
    const runtime::OwnedStream stream(layer.keys.data(), layer.values.data(), kPositions, kPageSize, kHeadDim, keys,
                                      values);
    CAPTURE(group);
    check_parity(stream.view(), kPositions, layer.queries.data(), group, softmax_scale(kHeadDim), kTolTokenKeys,
                 "group " + std::to_string(group));
  }
}

TEST_CASE("decode: head_dim not a multiple of 32 (AVX-512 tail), of 16 (AVX2 tail, no AVX-512) or of 8 (portable)") {
  constexpr std::int64_t kPositions = 200;
  constexpr int kGroup = 4;
  for (const int head_dim : {80, 72, 36}) {
    const Layer layer = make_layer(kPositions, head_dim, kGroup, 3);
    for (const char* name : {"fp16", "bf16", "int4-t16", "int3-t16"}) {
      const PageFormat key = format_named(name);
      const PageFormat value = key.axis == runtime::kAxisTokens ? format_named("bf16") : key;
      const std::int64_t pages = page_count(kPositions, 16);
      const runtime::OwnedStream stream(layer.keys.data(), layer.values.data(), kPositions, 16, head_dim,
                                        repeat(key, pages), repeat(value, pages));
      CAPTURE(head_dim);
      CAPTURE(name);
      check_parity(stream.view(), kPositions, layer.queries.data(), kGroup, softmax_scale(head_dim),
                   tolerance_for(key, value), std::string(name) + " d" + std::to_string(head_dim));
    }
  }
}

TEST_CASE("decode: one position, and prefixes that end inside a page") {
  constexpr int kHeadDim = 128, kGroup = 4;
  const float scale = softmax_scale(kHeadDim);
  SUBCASE("a stream of one position") {
    const Layer layer = make_layer(1, kHeadDim, kGroup, 5);
    for (const char* name : {"fp16", "int4-d32", "int2-t16"}) {
      const PageFormat f = format_named(name);
      const PageFormat value = f.axis == runtime::kAxisTokens ? format_named("int3-d32") : f;
      const runtime::OwnedStream stream(layer.keys.data(), layer.values.data(), 1, 16, kHeadDim, {f}, {value});
      CAPTURE(name);
      check_parity(stream.view(), 1, layer.queries.data(), kGroup, scale, kTolTokenKeys, name);
      // One position: the output is that position's stored value, for every head.
      double stored_key[kHeadDim], stored_value[kHeadDim], key_radius[kHeadDim], value_radius[kHeadDim];
      runtime::read_position(stream.view(), 0, stored_key, stored_value, key_radius, value_radius);
      const std::vector<float> out = run_cpu(stream.view(), 1, layer.queries.data(), kGroup, scale);
      for (int g = 0; g < kGroup; ++g) {
        for (int c = 0; c < kHeadDim; ++c) {
          CHECK(out[static_cast<std::size_t>(g * kHeadDim + c)] == doctest::Approx(stored_value[c]).epsilon(1e-6));
        }
      }
    }
  }
  SUBCASE("prefixes of a longer stream: first position, inside a page, inside the last page") {
    constexpr std::int64_t kPositions = 1000;
    const Layer layer = make_layer(kPositions, kHeadDim, kGroup, 9);
    for (const char* name : {"fp16", "int4-d32", "int3-d64", "int2-t16", "int4-t32", "int8-t64"}) {
      const PageFormat f = format_named(name);
      const bool tokens = f.axis == runtime::kAxisTokens;
      const int page_size = tokens ? f.group : 16;
      const PageFormat value = tokens ? format_named("int4-d32") : f;
      const std::int64_t pages = page_count(kPositions, page_size);
      const runtime::OwnedStream stream(layer.keys.data(), layer.values.data(), kPositions, page_size, kHeadDim,
                                        repeat(f, pages), repeat(value, pages));
      // 1; inside the first page; one past a page boundary; inside a quantized -t page (it is
      // full, only part of it is read); inside the partial last page.
      for (const std::int64_t prefix : {std::int64_t{1}, std::int64_t{7}, std::int64_t{page_size + 1},
                                        std::int64_t{5 * page_size - 3}, kPositions - 3}) {
        CAPTURE(name);
        CAPTURE(prefix);
        check_parity(stream.view(), prefix, layer.queries.data(), kGroup, scale, kTolTokenKeys,
                     std::string(name) + " prefix " + std::to_string(prefix));
      }
    }
  }
}

TEST_CASE("decode: decode_layer_cpu on a GQA layer matches the reference per kv head") {
  // 2 kv heads, 8 query heads. 4500 positions: three chunks per stream run in parallel (of
  // 2048 positions: 128 pages of 16, 32 pages of 64), the last chunk partial and ending in a
  // partial page; the two streams have different page sizes.
  constexpr std::int64_t kPositions = 4500;
  constexpr int kHeadDim = 128, kKvHeads = 2, kHeads = 8, kGroup = kHeads / kKvHeads;
  const float scale = softmax_scale(kHeadDim);
  std::vector<Layer> layers;
  std::vector<runtime::OwnedStream> streams;
  std::vector<float> q;
  for (int h = 0; h < kKvHeads; ++h) {
    layers.push_back(make_layer(kPositions, kHeadDim, kGroup, 40u + static_cast<std::uint32_t>(h)));
    q.insert(q.end(), layers.back().queries.begin(), layers.back().queries.end());
    const PageFormat key = h == 0 ? format_named("int4-d32") : format_named("int2-t64");
    const PageFormat value = h == 0 ? format_named("int4-d32") : format_named("fp16");
    const int page_size = h == 0 ? 16 : 64;
    const std::int64_t pages = page_count(kPositions, page_size);
    streams.emplace_back(layers.back().keys.data(), layers.back().values.data(), kPositions, page_size, kHeadDim,
                         repeat(key, pages), repeat(value, pages));
  }
  std::vector<runtime::StreamView> views;
  for (const auto& s : streams) views.push_back(s.view());
  std::vector<float> out(static_cast<std::size_t>(kHeads * kHeadDim), -1.0f);
  runtime::decode_layer_cpu(views.data(), kKvHeads, kPositions, q.data(), kHeads, scale, out.data());
  const auto per_head = static_cast<std::size_t>(kGroup * kHeadDim);
  for (int h = 0; h < kKvHeads; ++h) {
    const std::size_t offset = static_cast<std::size_t>(h) * per_head;
    const runtime::StreamView& view = views[static_cast<std::size_t>(h)];
    const std::vector<float> ref = run_reference(view, kPositions, q.data() + offset, kGroup, scale);
    const std::vector<float> got(out.begin() + static_cast<std::ptrdiff_t>(offset),
                                 out.begin() + static_cast<std::ptrdiff_t>(offset + per_head));
    CAPTURE(h);
    CHECK(relative_error(got, ref) <= kTolTokenKeys);
    // The same chunks and merge as one decode_attention_cpu per kv head: equal bit for bit,
    // whatever the number of threads.
    CHECK(got == run_cpu(view, kPositions, q.data() + offset, kGroup, scale));
  }
  // Bad arguments are rejected before any work.
  CHECK_THROWS(runtime::decode_layer_cpu(views.data(), kKvHeads, kPositions + 1, q.data(), kHeads, scale, out.data()));
  CHECK_THROWS(runtime::decode_layer_cpu(views.data(), 3, kPositions, q.data(), kHeads, scale, out.data()));
}

TEST_CASE("decode: the tolerance catches one code off by one step in one page") {
  // One value code of one position of one page moved by one quantization step (the low bit of
  // one int4 code flipped): the smallest error a wrong unpack can make. The decode of the
  // corrupted bytes must differ from the reference of the intact ones by well over the
  // tolerance, while agreeing with the reference of the corrupted bytes.
  constexpr std::int64_t kPositions = 1000;
  constexpr int kHeadDim = 128, kPageSize = 16, kGroup = 4;
  const float scale = softmax_scale(kHeadDim);
  const Layer layer = make_layer(kPositions, kHeadDim, kGroup, 21);
  const std::int64_t pages = page_count(kPositions, kPageSize);
  const PageFormat f = format_named("int4-d32");
  runtime::OwnedStream stream(layer.keys.data(), layer.values.data(), kPositions, kPageSize, kHeadDim, repeat(f, pages),
                              repeat(f, pages));
  const std::vector<float> intact = run_reference(stream.view(), kPositions, layer.queries.data(), kGroup, scale);
  for (const bool keys : {false, true}) {
    CAPTURE(keys);
    // Page 31, row 5, group 2 (channels 64..95), code byte 3 (channels 70 and 71). The stream
    // owns its bytes; the view hands them out as const, this test writes one of them.
    const runtime::PageRef& page = stream.view().pages[31];
    auto* byte = const_cast<std::uint8_t*>(keys ? page.keys : page.values) +
                 (5 * (kHeadDim / 32) + 2) * runtime::integer_group_bytes(4, 32) + 4 + 3;
    // Keys: a bigger change (the high bit, eight steps), as a key error reaches the output
    // only through one position's weight.
    const std::uint8_t flip = keys ? 0x80 : 0x01;
    *byte ^= flip;
    const std::vector<float> corrupted_ref =
        run_reference(stream.view(), kPositions, layer.queries.data(), kGroup, scale);
    for (const auto path : {runtime::detail::CpuDecodePath::kPortable, runtime::detail::CpuDecodePath::kAvx2,
                            runtime::detail::CpuDecodePath::kAvx512}) {
      if (!runtime::detail::cpu_decode_path_supported(path, kHeadDim)) continue;
      const std::string path_label = path_name(path);
      CAPTURE(path_label);
      const std::vector<float> out = run_path(path, stream.view(), kPositions, layer.queries.data(), kGroup, scale);
      const double vs_intact = relative_error(out, intact);
      MESSAGE(std::string(keys ? "key" : "value")
              << " code corrupted: relative difference " << vs_intact << " (tolerance " << kTolInteger << ")");
      CHECK(vs_intact > 5 * kTolInteger);
      CHECK(relative_error(out, corrupted_ref) <= kTolInteger);
    }
    *byte ^= flip;
  }
}
