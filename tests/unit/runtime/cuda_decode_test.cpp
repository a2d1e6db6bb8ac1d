// CUDA decode parity with the scalar reference: CudaLayerStreams::decode against
// decode_attention_reference, kv head by kv head, for every format of the vocabulary (head_dim
// 128, page sizes 16/32/64), streams cycling formats page by page (head_dim 64, 128, 256),
// GQA groups 1..12 (more than eight query heads per kv head take two blocks), a partial last
// page (staged f32 keys for intB-tP), positions = 1, decodes that stop inside a page, and forced
// split-K chunkings (one tile per chunk, chunks that do not divide the tiles, one chunk).
// Plain main: exits 77 (skipped) without a CUDA device or a CUDA build, 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hnf/proofs/error.h"
#include "hnf/proofs/format.h"
#include "hnf/runtime/cuda_decode.h"
#include "hnf/runtime/cuda_device.h"
#include "hnf/runtime/decode_attention.h"
#include "hnf/runtime/page_codec.h"

namespace {

using hnf::runtime::PageFormat;

// Tolerances on max|cuda - reference| / max|reference| over a layer's outputs. Both sides read
// the same stored values bit for bit (fp16/bf16 widen exactly, z + s*c is rounded once to fp32
// on the device); what differs is fp32 against double arithmetic: scores (~1e-7 relative),
// expf (2 ulp) and the weighted sums, all orders of magnitude below these bounds. A wrong code,
// scale, zero point, page or mask moves the output by far more (>= 1e-3 with these data).
constexpr double kFloatTolerance = 1e-4;         // fp16, bf16 pages
constexpr double kTokenGroupTolerance = 1e-4;    // intB-dG pages (keys and values)
constexpr double kChannelGroupTolerance = 1e-4;  // intB-tP keys (staged f32 on the last page)
constexpr double kMixedTolerance = 1e-4;         // formats cycling page by page
constexpr double kLongTolerance = 2e-4;          // 33K positions: fp32 sums of many more terms

struct Layer {
  int head_dim = 0;
  std::vector<hnf::runtime::OwnedStream> streams;
  std::vector<hnf::runtime::StreamView> views;
};

std::vector<float> random_rows(std::int64_t rows, int head_dim, std::mt19937& rng, bool keys) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows) * static_cast<std::size_t>(head_dim));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = static_cast<int>(i % static_cast<std::size_t>(head_dim));
    const float v = normal(rng);
    // Keys with outlier channels and per-channel offsets (what per-channel groups are for).
    x[i] = keys ? v * (c % 16 == 3 ? 6.0f : 1.0f) + 0.25f * static_cast<float>(c % 5) : v;
  }
  return x;
}

// kv_heads streams of `positions` positions; page p stores its keys in key_formats[p] and its
// values in value_formats[p].
Layer make_layer(int kv_heads, int head_dim, int page_size, std::int64_t positions,
                 const std::vector<PageFormat>& key_formats, const std::vector<PageFormat>& value_formats,
                 unsigned seed) {
  std::mt19937 rng(seed);
  Layer layer;
  layer.head_dim = head_dim;
  layer.streams.reserve(static_cast<std::size_t>(kv_heads));  // views point into the streams
  for (int h = 0; h < kv_heads; ++h) {
    const std::vector<float> keys = random_rows(positions, head_dim, rng, true);
    const std::vector<float> values = random_rows(positions, head_dim, rng, false);
    layer.streams.emplace_back(keys.data(), values.data(), positions, page_size, head_dim, key_formats, value_formats);
  }
  for (const auto& s : layer.streams) layer.views.push_back(s.view());
  return layer;
}

std::int64_t page_count(std::int64_t positions, int page_size) { return (positions + page_size - 1) / page_size; }

std::vector<PageFormat> repeat(const PageFormat& f, std::int64_t pages) {
  return std::vector<PageFormat>(static_cast<std::size_t>(pages), f);
}

// Page p takes formats[(stride * p + offset) % size].
std::vector<PageFormat> cycle(const std::vector<PageFormat>& formats, std::int64_t pages, std::size_t stride,
                              std::size_t offset) {
  std::vector<PageFormat> out;
  for (std::int64_t p = 0; p < pages; ++p) out.push_back(formats[(stride * static_cast<std::size_t>(p) + offset) % formats.size()]);
  return out;
}

// max|cuda - reference| / max|reference| of one decode of every query head (group per kv
// head); infinity for a non-finite output.
double decode_error(hnf::runtime::CudaLayerStreams& cuda, const Layer& layer, int group, std::int64_t positions,
                    int tiles_per_chunk, unsigned seed) {
  const int kv_heads = static_cast<int>(layer.views.size());
  const int heads = kv_heads * group;
  const auto d = static_cast<std::size_t>(layer.head_dim);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> q(static_cast<std::size_t>(heads) * d);
  for (float& x : q) x = normal(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(layer.head_dim));

  std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());
  cuda.set_tiles_per_chunk(tiles_per_chunk);
  cuda.decode(positions, q.data(), heads, scale, out.data());

  std::vector<float> ref(q.size());
  const std::size_t per_kv = static_cast<std::size_t>(group) * d;
  for (int h = 0; h < kv_heads; ++h) {
    const std::size_t at = static_cast<std::size_t>(h) * per_kv;
    hnf::runtime::decode_attention_reference(layer.views[static_cast<std::size_t>(h)], positions, q.data() + at, group,
                                             scale, ref.data() + at);
  }
  double largest = 0.0;
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    largest = std::max(largest, std::fabs(static_cast<double>(ref[i])));
    const double diff = std::fabs(static_cast<double>(out[i]) - static_cast<double>(ref[i]));
    worst = std::isfinite(diff) ? std::max(worst, diff) : std::numeric_limits<double>::infinity();
  }
  return largest > 0.0 ? worst / largest : worst;
}

struct Report {
  int failures = 0;
  void line(const std::string& name, double worst, double tolerance) {
    const bool ok = worst <= tolerance;  // false for NaN
    if (!ok) ++failures;
    std::printf("  %-34s worst %.3e  tolerance %.0e  %s\n", name.c_str(), worst, tolerance, ok ? "ok" : "FAIL");
  }
};

// The decodes every layer gets: all positions (auto chunking, and 3 tiles per chunk), one
// position, and a decode that stops inside a page (2 tiles per chunk).
double standard_decodes(const Layer& layer, int page_size, std::int64_t positions, int group, unsigned seed) {
  hnf::runtime::CudaLayerStreams cuda(layer.views.data(), static_cast<int>(layer.views.size()));
  double worst = 0.0;
  worst = std::max(worst, decode_error(cuda, layer, group, positions, 0, seed + 1));
  worst = std::max(worst, decode_error(cuda, layer, group, positions, 3, seed + 2));
  worst = std::max(worst, decode_error(cuda, layer, group, 1, 0, seed + 3));
  worst = std::max(worst, decode_error(cuda, layer, group, std::min<std::int64_t>(positions, 3 * page_size + 9), 2, seed + 4));
  return worst;
}

void test_every_format(Report& report) {
  std::puts("every format of the vocabulary, head_dim 128, 2 kv heads x 8 query heads:");
  constexpr int kHeadDim = 128;
  unsigned seed = 1000;
  for (const hnf::proofs::Format& f : hnf::proofs::format_vocabulary(kHeadDim)) {
    const PageFormat key = hnf::runtime::page_format(f);
    const bool channel_groups = f.axis == hnf::proofs::GroupAxis::kTokens;
    // intB-tP keys (their page_size is the group) with intB-d32 values of the same bits.
    const PageFormat value = channel_groups
                                 ? hnf::runtime::page_format({f.encoding, hnf::proofs::GroupAxis::kHeadDim, 32})
                                 : key;
    const std::vector<int> page_sizes = channel_groups ? std::vector<int>{f.group_size} : std::vector<int>{16, 32, 64};
    double worst = 0.0;
    for (const int page_size : page_sizes) {
      const std::int64_t positions = 7 * page_size + 5;  // a partial last page
      const std::int64_t pages = page_count(positions, page_size);
      const Layer layer = make_layer(2, kHeadDim, page_size, positions, repeat(key, pages), repeat(value, pages), seed);
      worst = std::max(worst, standard_decodes(layer, page_size, positions, 4, seed));
      seed += 10;
    }
    const double tolerance = f.axis == hnf::proofs::GroupAxis::kNone ? kFloatTolerance
                             : channel_groups                       ? kChannelGroupTolerance
                                                                    : kTokenGroupTolerance;
    std::string name = hnf::proofs::format_name(f);
    if (channel_groups) name += " keys, " + std::string(hnf::runtime::page_format_name(value)) + " values";
    report.line(name, worst, tolerance);
  }
}

// Key and value formats a page of this size can take at this head_dim.
void usable_formats(int head_dim, int page_size, std::vector<PageFormat>& keys, std::vector<PageFormat>& values) {
  for (const hnf::proofs::Format& f : hnf::proofs::format_vocabulary(head_dim)) {
    if (f.axis == hnf::proofs::GroupAxis::kTokens) {
      if (f.group_size == page_size) keys.push_back(hnf::runtime::page_format(f));
      continue;
    }
    keys.push_back(hnf::runtime::page_format(f));
    values.push_back(hnf::runtime::page_format(f));
  }
}

void test_mixed(Report& report) {
  std::puts("streams cycling formats page by page:");
  struct Case {
    int head_dim, page_size, kv_heads, group;
  };
  unsigned seed = 5000;
  for (const Case c : {Case{128, 32, 2, 4}, Case{128, 16, 2, 4}, Case{128, 64, 2, 4}, Case{64, 32, 2, 4},
                       Case{256, 16, 2, 4}, Case{128, 32, 3, 1}}) {
    std::vector<PageFormat> keys, values;
    usable_formats(c.head_dim, c.page_size, keys, values);
    const std::int64_t positions = static_cast<std::int64_t>(c.page_size) * 45 + 17;
    const std::int64_t pages = page_count(positions, c.page_size);
    const Layer layer = make_layer(c.kv_heads, c.head_dim, c.page_size, positions, cycle(keys, pages, 1, 0),
                                   cycle(values, pages, 3, 1), seed);
    double worst = standard_decodes(layer, c.page_size, positions, c.group, seed);
    {
      hnf::runtime::CudaLayerStreams cuda(layer.views.data(), c.kv_heads);
      for (const int tiles : {1, 4, 1000}) worst = std::max(worst, decode_error(cuda, layer, c.group, positions, tiles, seed + 7));
    }
    char name[96];
    std::snprintf(name, sizeof name, "mixed d%d p%d %dkv x %dq", c.head_dim, c.page_size, c.kv_heads, c.kv_heads * c.group);
    report.line(name, worst, kMixedTolerance);
    seed += 10;
  }
}

void test_groups(Report& report) {
  std::puts("query heads per kv head (the kernel takes eight at a time):");
  constexpr int kHeadDim = 128;
  constexpr int kPageSize = 32;
  std::vector<PageFormat> keys, values;
  usable_formats(kHeadDim, kPageSize, keys, values);
  const std::int64_t positions = 40 * kPageSize + 3;
  const std::int64_t pages = page_count(positions, kPageSize);
  const Layer layer = make_layer(2, kHeadDim, kPageSize, positions, cycle(keys, pages, 5, 2), cycle(values, pages, 7, 0), 7000);
  hnf::runtime::CudaLayerStreams cuda(layer.views.data(), 2);
  for (const int group : {1, 2, 7, 8, 9, 12, 16}) {
    double worst = 0.0;
    for (const int tiles : {0, 3}) worst = std::max(worst, decode_error(cuda, layer, group, positions, tiles, 7100u + static_cast<unsigned>(group)));
    report.line("mixed d128 p32 group " + std::to_string(group), worst, kMixedTolerance);
  }
}

// The benchmark's shape: 8 kv heads x 32 query heads, head_dim 128, 33000 positions.
void test_long(Report& report) {
  std::puts("long streams (8 kv heads x 32 query heads, head_dim 128, 33000 positions):");
  constexpr int kHeadDim = 128;
  constexpr int kPageSize = 32;
  constexpr std::int64_t kPositions = 33000;
  const std::int64_t pages = page_count(kPositions, kPageSize);
  for (const char* format : {"int4-d32", "fp16"}) {
    const PageFormat f = hnf::runtime::page_format(*hnf::proofs::parse_format(format));
    const Layer layer = make_layer(8, kHeadDim, kPageSize, kPositions, repeat(f, pages), repeat(f, pages), 9000);
    hnf::runtime::CudaLayerStreams cuda(layer.views.data(), 8);
    const double worst = decode_error(cuda, layer, 4, kPositions, 0, 9001);
    // Timing (informative): the best of a few decodes of every position.
    std::vector<float> q(static_cast<std::size_t>(32 * kHeadDim), 0.01f), out(q.size());
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 5; ++i) {
      cuda.decode(kPositions, q.data(), 32, 0.088f, out.data());
      best = std::min(best, cuda.last_kernel_ms());
    }
    std::printf("  %s: %.1f MB of pages, best kernel time %.3f ms, %.0f GB/s\n", format,
                static_cast<double>(cuda.device_page_bytes()) / 1e6, best,
                static_cast<double>(cuda.device_page_bytes()) / (best * 1e6));
    report.line(std::string("long ") + format, worst, kLongTolerance);
  }
}

void test_bad_input(Report& report) {
  std::puts("bad input:");
  const PageFormat f = hnf::runtime::page_format(*hnf::proofs::parse_format("fp16"));
  const Layer layer = make_layer(1, 128, 32, 40, repeat(f, 2), repeat(f, 2), 11);
  hnf::runtime::CudaLayerStreams cuda(layer.views.data(), 1);
  std::vector<float> q(128, 1.0f), out(128);
  bool threw = false;
  try {
    cuda.decode(41, q.data(), 1, 1.0f, out.data());
  } catch (const hnf::proofs::Error& e) {
    threw = e.kind() == hnf::proofs::ErrorKind::kBadInput;
  }
  report.line("positions beyond the stream throws", threw ? 0.0 : 1.0, 0.0);
}

}  // namespace

int main() {
  if (!hnf::runtime::cuda_decode_compiled()) {
    std::puts("SKIP: this build has no CUDA support");
    return 77;
  }
  if (hnf::runtime::cuda_device_count() == 0) {
    std::puts("SKIP: no CUDA device present");
    return 77;
  }
  std::printf("device 0: %s\n", hnf::runtime::cuda_device_description(0).c_str());
  Report report;
  try {
    test_every_format(report);
    test_mixed(report);
    test_groups(report);
    test_long(report);
    test_bad_input(report);
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  std::printf("%d failure(s)\n", report.failures);
  return report.failures == 0 ? 0 : 1;
}
