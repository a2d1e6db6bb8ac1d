// hnf-bench-runtime: decode attention read straight from the mixed-precision pages
// (runtime/decode_attention.h), measured in one run against
//   - the machine's memory bandwidth (a STREAM-style triad measured in the same run),
//   - LibTorch's dense fp32 attention on the same keys and values and the same thread count,
// for uniform formats and certified mixed precision maps, in two shapes (the reference model's
// and one layer of a Llama-3-8B-like model), plus the append (quantize) throughput. Writes a
// Markdown report (default reports/runtime-bench.md, atomically); progress goes to stderr.
// Every number in the report is computed in the run that writes it.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench_support.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/write_file.h"
#include "hnf/proofs/format.h"
#include "hnf/reports/markdown_table.h"
#include "hnf/runtime/cuda_decode.h"
#include "hnf/runtime/cuda_device.h"
#include "hnf/runtime/decode_attention.h"
#include "hnf/runtime/kv_pages.h"
#include "hnf/runtime/llama_config.h"
#include "hnf/runtime/page_codec.h"
#include "torch_baseline.h"

#ifndef HNF_VERSION
#error "HNF_VERSION must be defined by the build"
#endif

namespace {

using hnf::proofs::Format;
using hnf::proofs::PrecisionMap;
using hnf::reports::Align;
using hnf::reports::MarkdownTable;
using hnf::runtime::PageFormat;
namespace runtime = hnf::runtime;
namespace proofs = hnf::proofs;
namespace bench = hnf::bench;

constexpr const char* kToolVersion = "hnf-verify " HNF_VERSION;
constexpr std::int64_t kPositionQuantum = 64;  // the largest page: every prefix is whole pages
constexpr double kBandwidthTarget = 0.60;       // of the triad, at 32K and 128K, large shape
constexpr double kSpeedupTarget = 3.0;          // over LibTorch fp32 at 32K, ~3 bits/element
constexpr std::int64_t kTargetPositions32K = 32768;
constexpr std::int64_t kTargetPositions128K = 131072;

// ---- Options ---------------------------------------------------------------------------------

struct Options {
  std::string out = "reports/runtime-bench.md";
  std::string model = "models/hnf-llama-4m";
  std::string ref_cert, large_cert;
  std::string positions_text = "4096,32768,131072";
  std::string formats_text = "fp16,int8-d64,int4-d64,int2-d64,int2-d32,int3-d128";
  std::string target_format = "int2-d32";
  int threads = 0;
  int repeats = 9;
  std::int64_t append_tokens = 8192;
  std::size_t triad_mib = 512;
  long evict_mib = -1;  // -1: twice the reported last-level cache, at least 64 MiB, at most 1 GiB
  std::uint64_t seed = 1;
  bool quick = false;
  std::string command_line;
};

std::vector<std::int64_t> parse_positions(const std::string& text) {
  std::vector<std::int64_t> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::int64_t value = 0;
    bool ok = !item.empty() && item.size() <= 12;
    for (const char c : item) ok = ok && c >= '0' && c <= '9';
    if (ok) value = std::stoll(item);
    if (!ok || value <= 0 || value % kPositionQuantum != 0) {
      throw proofs::bad_input("--positions", "'" + item + "' is not a positive multiple of " +
                                                 std::to_string(kPositionQuantum) + " (whole pages)");
    }
    out.push_back(value);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<Format> parse_formats(const std::string& text, const std::string& option) {
  std::vector<Format> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto f = proofs::parse_format(item);
    if (!f) throw proofs::bad_input(option, "'" + item + "' is not a format name (fp16, bf16, int4-d64, int2-t16, ...)");
    if (std::find(out.begin(), out.end(), *f) == out.end()) out.push_back(*f);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// ---- Shapes, formats, streams ------------------------------------------------------------

struct Shape {
  std::string key;    // "ref", "large"
  std::string title;
  std::string source;
  int layers = 0, heads = 0, kv_heads = 0, head_dim = 0;
};

// What one table row stores: a uniform format, or a certified map.
struct Variant {
  std::string label;  // "int4-d64", "mixed map"
  std::optional<Format> uniform;
  const PrecisionMap* map = nullptr;  // set for the certified mixed map
  [[nodiscard]] int page_size() const {
    if (map != nullptr) return map->block;
    if (uniform->axis == proofs::GroupAxis::kTokens) return uniform->group_size;
    return 16;
  }
};

// Page formats of stream (layer, kv head) for `pages` pages: the uniform format, or the map's
// unit formats with the newest-block policy beyond the traced units.
void page_formats(const Variant& v, int layer, int kv_head, int kv_heads, std::int64_t pages, std::vector<PageFormat>& keys,
                  std::vector<PageFormat>& values) {
  keys.resize(static_cast<std::size_t>(pages));
  values.resize(static_cast<std::size_t>(pages));
  if (v.uniform) {
    std::fill(keys.begin(), keys.end(), runtime::page_format(*v.uniform));
    std::fill(values.begin(), values.end(), runtime::page_format(*v.uniform));
    return;
  }
  const auto& entry = v.map->entries[static_cast<std::size_t>(layer * kv_heads + kv_head)];
  const auto units = static_cast<std::int64_t>(entry.key_formats.size());
  for (std::int64_t p = 0; p < pages; ++p) {
    const auto u = static_cast<std::size_t>(std::min(p, units - 1));
    keys[static_cast<std::size_t>(p)] = runtime::page_format(entry.key_formats[u]);
    values[static_cast<std::size_t>(p)] = runtime::page_format(entry.value_formats[u]);
  }
}

std::size_t padded(std::size_t bytes) { return (bytes + 7) / 8 * 8; }

// Bytes of the first `positions` positions of a stream (whole pages), as OwnedStream stores them.
std::size_t prefix_bytes(const runtime::StreamView& s, std::int64_t positions) {
  std::size_t total = 0;
  const std::int64_t pages = (positions + s.page_size - 1) / s.page_size;
  for (std::int64_t p = 0; p < pages; ++p) {
    const auto& page = s.pages[p];
    total += padded(runtime::page_bytes(page.key_format, s.page_size, s.head_dim));
    total += padded(runtime::page_bytes(page.value_format, s.page_size, s.head_dim));
  }
  return total;
}

// The synthetic keys and values of one shape: per layer [kv_heads, capacity, head_dim] fp32,
// the layout LibTorch's baseline reads; stream (l, h) is rows h*capacity .. of layer l.
struct ShapeData {
  std::int64_t capacity = 0;
  std::vector<std::vector<float>> keys, values;  // [layers]
  [[nodiscard]] const float* key_rows(int layer, int kv_head, int head_dim) const {
    return keys[static_cast<std::size_t>(layer)].data() + static_cast<std::size_t>(kv_head) * static_cast<std::size_t>(capacity) * static_cast<std::size_t>(head_dim);
  }
  [[nodiscard]] const float* value_rows(int layer, int kv_head, int head_dim) const {
    return values[static_cast<std::size_t>(layer)].data() + static_cast<std::size_t>(kv_head) * static_cast<std::size_t>(capacity) * static_cast<std::size_t>(head_dim);
  }
};

ShapeData make_data(const Shape& shape, std::int64_t capacity, std::uint64_t seed) {
  ShapeData data;
  data.capacity = capacity;
  const std::size_t rows = static_cast<std::size_t>(shape.kv_heads) * static_cast<std::size_t>(capacity);
  const std::size_t count = rows * static_cast<std::size_t>(shape.head_dim);
  for (int l = 0; l < shape.layers; ++l) {
    data.keys.emplace_back(count);
    data.values.emplace_back(count);
    const auto s = seed * 1000 + static_cast<std::uint64_t>(l) * 2;
    bench::fill_synthetic(data.keys.back().data(), rows, shape.head_dim, s, 2);      // keys: outlier channels
    bench::fill_synthetic(data.values.back().data(), rows, shape.head_dim, s + 1, 0);  // values: spikes only
  }
  return data;
}

struct BuiltStreams {
  std::vector<std::unique_ptr<runtime::OwnedStream>> streams;  // [layers * kv_heads]
  std::vector<std::vector<runtime::StreamView>> views;          // [layers][kv_heads]
  std::size_t stored_bytes = 0;
};

BuiltStreams build_streams(const Shape& shape, const ShapeData& data, const Variant& v) {
  BuiltStreams b;
  const int n = shape.layers * shape.kv_heads;
  b.streams.resize(static_cast<std::size_t>(n));
  const int page_size = v.page_size();
  const std::int64_t pages = (data.capacity + page_size - 1) / page_size;
  std::string error;
#pragma omp parallel for schedule(dynamic)
  for (int i = 0; i < n; ++i) {
    const int l = i / shape.kv_heads, h = i % shape.kv_heads;
    try {
      std::vector<PageFormat> kf, vf;
      page_formats(v, l, h, shape.kv_heads, pages, kf, vf);
      b.streams[static_cast<std::size_t>(i)] = std::make_unique<runtime::OwnedStream>(
          data.key_rows(l, h, shape.head_dim), data.value_rows(l, h, shape.head_dim), data.capacity, page_size,
          shape.head_dim, kf, vf);
    } catch (const std::exception& e) {
#pragma omp critical
      error = e.what();
    }
  }
  if (!error.empty()) throw proofs::Error(proofs::ErrorKind::kInternal, v.label + ": building the pages failed: " + error);
  b.views.resize(static_cast<std::size_t>(shape.layers));
  for (int i = 0; i < n; ++i) {
    b.views[static_cast<std::size_t>(i / shape.kv_heads)].push_back(b.streams[static_cast<std::size_t>(i)]->view());
    b.stored_bytes += b.streams[static_cast<std::size_t>(i)]->stored_bytes();
  }
  return b;
}

// ---- Measurements --------------------------------------------------------------------------

struct Timing {
  double median_s = 0.0;
  double min_s = 0.0;
};

template <class F>
Timing time_runs(int repeats, bench::CacheEvictor& evictor, F&& run) {
  run();  // warm-up (page faults, thread pool start)
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    evictor.evict();
    const double start = bench::now_seconds();
    run();
    seconds.push_back(bench::now_seconds() - start);
  }
  return {bench::median(seconds), *std::min_element(seconds.begin(), seconds.end())};
}

struct TorchPoint {
  std::int64_t positions = 0;
  Timing timing;
  std::vector<std::vector<float>> out;  // [layers][heads * head_dim]
};

struct DecodeRow {
  std::string label;
  std::int64_t positions = 0;
  std::size_t bytes = 0;  // stored bytes of the decoded positions, all layers and kv heads
  double bits = 0.0;      // bytes * 8 / K and V elements
  Timing timing;
  double torch_s = 0.0;
  double max_diff = 0.0;  // max |ours - LibTorch fp32| over the outputs
};

// One GPU decode row: device kernel time (CudaLayerStreams::last_kernel_ms, summed over layers).
struct GpuRow {
  std::string label;
  std::int64_t positions = 0;
  std::size_t bytes = 0;
  double bits = 0.0;
  double kernel_s = 0.0;  // median over the timed decodes
  double cpu_s = 0.0;     // our CPU decode of the same row
  double torch_s = 0.0;   // LibTorch fp32 on the CPU
  double max_diff = 0.0;  // max |GPU - LibTorch fp32|
};

struct AppendRow {
  std::string label;
  std::int64_t tokens = 0;  // tokens appended per layer
  Timing timing;            // all layers
  double tokens_per_s = 0.0;
};

struct ShapeResult {
  Shape shape;
  std::vector<std::string> notes;
  std::vector<TorchPoint> torch;
  std::vector<DecodeRow> rows;
  std::vector<AppendRow> appends;
  std::vector<GpuRow> gpu;
  std::vector<std::string> gpu_notes;
};

// True when this run measures the GPU: the build has the CUDA decode kernels and a device exists.
bool gpu_available() { return runtime::cuda_decode_compiled() && runtime::cuda_device_count() > 0; }

// The GPU decode of every position count of `positions` on the pages of `built` (copied to
// device 0, one CudaLayerStreams per layer). Appends to result.gpu; a stream the kernels do not
// take is a note, not a failure.
void measure_gpu(const Shape& shape, const BuiltStreams& built, const std::string& label, const std::vector<std::int64_t>& positions,
                 const std::vector<std::vector<float>>& q, float scale, int repeats, ShapeResult& result) {
  std::vector<runtime::CudaLayerStreams> device;
  try {
    for (const auto& layer : built.views) device.emplace_back(layer.data(), shape.kv_heads);
  } catch (const proofs::Error& e) {
    result.gpu_notes.push_back(fmt::format("`{}`: not measured on the GPU ({})", label, e.what()));
    fmt::print(stderr, "[{}] GPU {}: not measured ({})\n", shape.key, label, e.what());
    return;
  }
  const std::size_t out_size = static_cast<std::size_t>(shape.heads) * static_cast<std::size_t>(shape.head_dim);
  std::vector<float> out(out_size);
  const double elements_per_position = 2.0 * shape.layers * shape.kv_heads * shape.head_dim;
  for (std::size_t pi = 0; pi < positions.size(); ++pi) {
    const std::int64_t p = positions[pi];
    GpuRow row;
    row.label = label;
    row.positions = p;
    for (const auto& layer : built.views) {
      for (const auto& s : layer) row.bytes += prefix_bytes(s, p);
    }
    row.bits = static_cast<double>(row.bytes) * 8.0 / (elements_per_position * static_cast<double>(p));
    double diff = 0.0;
    for (int l = 0; l < shape.layers; ++l) {  // also the warm-up
      device[static_cast<std::size_t>(l)].decode(p, q[static_cast<std::size_t>(l)].data(), shape.heads, scale, out.data());
      const auto& ref = result.torch[pi].out[static_cast<std::size_t>(l)];
      for (std::size_t i = 0; i < out_size; ++i) diff = std::max(diff, static_cast<double>(std::fabs(out[i] - ref[i])));
    }
    row.max_diff = diff;
    std::vector<double> seconds;
    for (int r = 0; r < repeats; ++r) {
      double ms = 0.0;
      for (int l = 0; l < shape.layers; ++l) {
        device[static_cast<std::size_t>(l)].decode(p, q[static_cast<std::size_t>(l)].data(), shape.heads, scale, out.data());
        ms += device[static_cast<std::size_t>(l)].last_kernel_ms();
      }
      seconds.push_back(ms * 1e-3);
    }
    row.kernel_s = bench::median(seconds);
    row.torch_s = result.torch[pi].timing.median_s;
    for (const auto& cpu : result.rows) {
      if (cpu.label == label && cpu.positions == p) row.cpu_s = cpu.timing.median_s;
    }
    fmt::print(stderr, "[{}] GPU {} @ {:>6}: {:.1f} us kernel time, {:.1f} GB/s\n", shape.key, label, p, row.kernel_s * 1e6,
               static_cast<double>(row.bytes) / row.kernel_s / 1e9);
    result.gpu.push_back(row);
  }
}

// Appends `tokens` positions to every (layer, kv head) stream as the cache does per token:
// encode_row of the key and the value into the page of the position; intB-tP keys staged in
// f32 and quantized with encode_token_groups when their page is full. Single thread.
AppendRow measure_append(const Shape& shape, const ShapeData& data, const Variant& v, std::int64_t tokens,
                         int repeats, bench::CacheEvictor& evictor) {
  const int page_size = v.page_size();
  const std::int64_t pages = (tokens + page_size - 1) / page_size;
  const auto d = static_cast<std::size_t>(shape.head_dim);
  const int n = shape.layers * shape.kv_heads;
  struct Buffers {
    std::vector<PageFormat> kf, vf;
    std::vector<std::size_t> key_offset, value_offset;
    std::vector<std::uint8_t> bytes;
    std::vector<float> staged;
  };
  std::vector<Buffers> streams(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& s = streams[static_cast<std::size_t>(i)];
    page_formats(v, i / shape.kv_heads, i % shape.kv_heads, shape.kv_heads, pages, s.kf, s.vf);
    std::size_t total = 0;
    for (std::int64_t p = 0; p < pages; ++p) {
      s.key_offset.push_back(total);
      total += padded(runtime::page_bytes(s.kf[static_cast<std::size_t>(p)], page_size, shape.head_dim));
      s.value_offset.push_back(total);
      total += padded(runtime::page_bytes(s.vf[static_cast<std::size_t>(p)], page_size, shape.head_dim));
    }
    s.bytes.assign(total, 0);
    s.staged.assign(static_cast<std::size_t>(page_size) * d, 0.0f);
  }
  const PageFormat staged = runtime::staged_page_format();
  auto run = [&] {
    for (std::int64_t t = 0; t < tokens; ++t) {
      const auto p = static_cast<std::size_t>(t / page_size);
      const int row = static_cast<int>(t % page_size);
      const auto src = static_cast<std::size_t>(t % data.capacity) * d;
      for (int i = 0; i < n; ++i) {
        auto& s = streams[static_cast<std::size_t>(i)];
        const int l = i / shape.kv_heads, h = i % shape.kv_heads;
        const float* k = data.key_rows(l, h, shape.head_dim) + src;
        const float* val = data.value_rows(l, h, shape.head_dim) + src;
        const PageFormat& kf = s.kf[p];
        if (kf.axis == runtime::kAxisTokens) {
          runtime::encode_row(staged, page_size, shape.head_dim, row, k, reinterpret_cast<std::uint8_t*>(s.staged.data()));
          if (row == page_size - 1) runtime::encode_token_groups(kf, page_size, shape.head_dim, s.staged.data(), s.bytes.data() + s.key_offset[p]);
        } else {
          runtime::encode_row(kf, page_size, shape.head_dim, row, k, s.bytes.data() + s.key_offset[p]);
        }
        runtime::encode_row(s.vf[p], page_size, shape.head_dim, row, val, s.bytes.data() + s.value_offset[p]);
      }
    }
  };
  AppendRow r;
  r.label = v.label;
  r.tokens = tokens;
  r.timing = time_runs(repeats, evictor, run);
  r.tokens_per_s = static_cast<double>(tokens) * shape.layers / r.timing.median_s;
  return r;
}

std::vector<float> synthetic_queries(const Shape& shape, std::uint64_t seed) {
  std::vector<float> q(static_cast<std::size_t>(shape.heads) * static_cast<std::size_t>(shape.head_dim));
  bench::fill_synthetic(q.data(), static_cast<std::size_t>(shape.heads), shape.head_dim, seed, 0);
  return q;
}

ShapeResult run_shape(const Shape& shape, const std::vector<std::int64_t>& positions, std::vector<Variant> variants,
                      std::vector<std::string> notes, const Options& o, bench::CacheEvictor& evictor) {
  ShapeResult result;
  result.shape = shape;
  result.notes = std::move(notes);
  const std::int64_t capacity =
      std::max(positions.back(), (o.append_tokens + kPositionQuantum - 1) / kPositionQuantum * kPositionQuantum);
  fmt::print(stderr, "[{}] generating synthetic keys and values: {} layers x {} kv heads x {} positions x {}\n",
             shape.key, shape.layers, shape.kv_heads, capacity, shape.head_dim);
  const ShapeData data = make_data(shape, capacity, o.seed + (shape.key == "ref" ? 0 : 7));
  std::vector<std::vector<float>> q;  // [layers][heads * head_dim]
  for (int l = 0; l < shape.layers; ++l) q.push_back(synthetic_queries(shape, o.seed * 31 + static_cast<std::uint64_t>(l) + (shape.key == "ref" ? 0 : 100)));
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const std::size_t out_size = static_cast<std::size_t>(shape.heads) * static_cast<std::size_t>(shape.head_dim);

  // LibTorch fp32, dense, once per position count.
  std::vector<std::unique_ptr<bench::TorchAttention>> torch_layers;
  for (int l = 0; l < shape.layers; ++l) {
    torch_layers.push_back(std::make_unique<bench::TorchAttention>(data.keys[static_cast<std::size_t>(l)].data(),
                                                                   data.values[static_cast<std::size_t>(l)].data(),
                                                                   shape.kv_heads, capacity, shape.head_dim));
  }
  for (const std::int64_t p : positions) {
    TorchPoint point;
    point.positions = p;
    point.out.assign(static_cast<std::size_t>(shape.layers), std::vector<float>(out_size));
    point.timing = time_runs(o.repeats, evictor, [&] {
      for (int l = 0; l < shape.layers; ++l) {
        torch_layers[static_cast<std::size_t>(l)]->decode(q[static_cast<std::size_t>(l)].data(), shape.heads, p, scale,
                                                          point.out[static_cast<std::size_t>(l)].data());
      }
    });
    fmt::print(stderr, "[{}] LibTorch fp32 @ {:>6}: {:.1f} us\n", shape.key, p, point.timing.median_s * 1e6);
    result.torch.push_back(std::move(point));
  }

  std::vector<float> out(out_size);
  const double elements_per_position = 2.0 * shape.layers * shape.kv_heads * shape.head_dim;
  for (const auto& v : variants) {
    const double start = bench::now_seconds();
    BuiltStreams built = build_streams(shape, data, v);
    fmt::print(stderr, "[{}] {}: pages of {} streams x {} positions built in {:.1f} s ({:.1f} MiB)\n", shape.key, v.label,
               built.streams.size(), capacity, bench::now_seconds() - start,
               static_cast<double>(built.stored_bytes) / 1048576.0);
    for (std::size_t pi = 0; pi < positions.size(); ++pi) {
      const std::int64_t p = positions[pi];
      DecodeRow row;
      row.label = v.label;
      row.positions = p;
      for (const auto& layer : built.views) {
        for (const auto& s : layer) row.bytes += prefix_bytes(s, p);
      }
      row.bits = static_cast<double>(row.bytes) * 8.0 / (elements_per_position * static_cast<double>(p));
      HNF_ASSERT(p != capacity || row.bytes == built.stored_bytes, "the page bytes add up to the streams' stored bytes");
      // Correctness against the fp32 baseline (outside the timed runs).
      double diff = 0.0;
      for (int l = 0; l < shape.layers; ++l) {
        runtime::decode_layer_cpu(built.views[static_cast<std::size_t>(l)].data(), shape.kv_heads, p,
                                  q[static_cast<std::size_t>(l)].data(), shape.heads, scale, out.data());
        const auto& ref = result.torch[pi].out[static_cast<std::size_t>(l)];
        for (std::size_t i = 0; i < out_size; ++i) diff = std::max(diff, static_cast<double>(std::fabs(out[i] - ref[i])));
      }
      row.max_diff = diff;
      row.timing = time_runs(o.repeats, evictor, [&] {
        for (int l = 0; l < shape.layers; ++l) {
          runtime::decode_layer_cpu(built.views[static_cast<std::size_t>(l)].data(), shape.kv_heads, p,
                                    q[static_cast<std::size_t>(l)].data(), shape.heads, scale, out.data());
        }
      });
      row.torch_s = result.torch[pi].timing.median_s;
      fmt::print(stderr, "[{}] {} @ {:>6}: {:.1f} us, {:.2f} GB/s, {:.3f} bits/element, {:.2f}x LibTorch\n", shape.key,
                 v.label, p, row.timing.median_s * 1e6, static_cast<double>(row.bytes) / row.timing.median_s / 1e9, row.bits,
                 row.torch_s / row.timing.median_s);
      result.rows.push_back(row);
    }
    if (gpu_available()) measure_gpu(shape, built, v.label, positions, q, scale, o.repeats, result);
  }

  const int append_repeats = std::min(o.repeats, 3);
  for (const auto& v : variants) {
    result.appends.push_back(measure_append(shape, data, v, o.append_tokens, append_repeats, evictor));
    fmt::print(stderr, "[{}] append {}: {:.0f} tokens/s\n", shape.key, v.label, result.appends.back().tokens_per_s);
  }
  return result;
}

// ---- Certificates ----------------------------------------------------------------------------

struct LoadedMap {
  std::optional<proofs::CertifiedPrecisionMap> certified;
  std::string note;  // what the report says about the mixed rows
};

LoadedMap load_map(const std::string& path, const Shape& shape, const std::optional<std::string>& model_dir,
                   const std::string& option) {
  LoadedMap loaded;
  if (path.empty()) {
    loaded.note = "no " + option + " certificate given: the certified mixed-map rows are omitted";
    return loaded;
  }
  proofs::CheckOptions options;
  if (model_dir) options.model_dir = *model_dir;
  auto report = proofs::check_certificate(path, options, kToolVersion);
  if (!report.certified) {
    std::string why = report.verdict.empty() ? "" : "verdict " + report.verdict;
    for (const auto& p : report.problems) why += (why.empty() ? "" : "; ") + p;
    loaded.note = "certificate " + path + " was not accepted by the exact checker (" + why + "): mixed-map rows omitted";
    fmt::print(stderr, "warning: {}\n", loaded.note);
    return loaded;
  }
  const PrecisionMap& m = report.certified->map();
  if (m.layers != shape.layers || m.kv_heads != shape.kv_heads || m.heads != shape.heads || m.head_dim != shape.head_dim) {
    loaded.note = fmt::format("certificate {} has the shape {} layers, {} heads, {} kv heads, head_dim {}, not this shape's: "
                              "mixed-map rows omitted", path, m.layers, m.heads, m.kv_heads, m.head_dim);
    fmt::print(stderr, "warning: {}\n", loaded.note);
    return loaded;
  }
  for (const auto& e : m.entries) {
    for (const auto& f : e.key_formats) {
      if (f.axis == proofs::GroupAxis::kTokens && f.group_size != m.block) {
        loaded.note = fmt::format("certificate {} uses {} with {}-position blocks, which pages cannot store: mixed-map rows omitted",
                                  path, proofs::format_name(f), m.block);
        fmt::print(stderr, "warning: {}\n", loaded.note);
        return loaded;
      }
    }
  }
  std::vector<std::string> notes_checked;
  for (const auto& n : report.notes) notes_checked.push_back(n);
  std::string joined;
  for (const auto& n : notes_checked) joined += (joined.empty() ? "" : "; ") + n;
  loaded.note = fmt::format(
      "mixed map: certificate `{}`, accepted by the exact checker ({} inequalities re-validated{}{}); map sha256 {}, "
      "eps {:.6g}, traced {} positions in blocks of {}, map average {:.4f} bits/element (metadata included). Positions "
      "beyond the traced {} follow the newest-block policy (every new page takes the formats of the map's last block).",
      path, report.inequalities, joined.empty() ? "" : "; ", joined, report.certified->map_sha256(),
      proofs::rational_to_double(report.certified->eps()), m.tokens, m.block, proofs::map_bits_per_element(m), m.tokens);
  loaded.certified = std::move(report.certified);
  return loaded;
}

// ---- The report ------------------------------------------------------------------------------

std::string fixed(double value, int digits) { return fmt::format("{:.{}f}", value, digits); }

std::string positions_label(std::int64_t p) {
  return p % 1024 == 0 ? fmt::format("{}K", p / 1024) : std::to_string(p);
}

// The bandwidth (GB/s of stored bytes) at which a shape's decode would use the whole measured
// fp32 FMA peak on multiply-adds alone: one FMA per query head per stored K and V element, so
// peak / (heads per kv head) elements per second, of bits/8 bytes each. No fp32 kernel reads
// faster; 0 when the peak was not measured.
double fma_roof_gbs(const Shape& shape, double bits, const bench::FmaPeakResult& fma) {
  const double group = static_cast<double>(shape.heads) / static_cast<double>(shape.kv_heads);
  return fma.lane_fmas_per_s * bits / (8.0 * group) / 1e9;
}

std::string roof_label(double roof_gbs, double triad_gbs) {
  return roof_gbs > 0.0 ? fixed(100.0 * roof_gbs / triad_gbs, 0) + "%" : "n/a";
}

std::string decode_table(const ShapeResult& r, double triad_gbs, const bench::FmaPeakResult& fma) {
  MarkdownTable t({{"format"}, {"bits/elem", Align::kRight}, {"positions", Align::kRight}, {"decode (us)", Align::kRight},
                   {"GB/s", Align::kRight}, {"% of triad", Align::kRight}, {"FMA roof", Align::kRight},
                   {"LibTorch fp32 (us)", Align::kRight}, {"speedup", Align::kRight}, {"max abs diff", Align::kRight}});
  const double fp32_elements = 2.0 * r.shape.layers * r.shape.kv_heads * r.shape.head_dim;
  for (const auto& tp : r.torch) {
    const double bytes = fp32_elements * static_cast<double>(tp.positions) * 4.0;
    const double gbs = bytes / tp.timing.median_s / 1e9;
    t.add_row({"LibTorch fp32 (dense)", "32.000", positions_label(tp.positions), fixed(tp.timing.median_s * 1e6, 1), fixed(gbs, 2),
               fixed(100.0 * gbs / triad_gbs, 1) + "%", roof_label(fma_roof_gbs(r.shape, 32.0, fma), triad_gbs),
               fixed(tp.timing.median_s * 1e6, 1), "1.00x", "0 (baseline)"});
    for (const auto& row : r.rows) {
      if (row.positions != tp.positions) continue;
      const double rgbs = static_cast<double>(row.bytes) / row.timing.median_s / 1e9;
      t.add_row({row.label, fixed(row.bits, 3), positions_label(row.positions), fixed(row.timing.median_s * 1e6, 1), fixed(rgbs, 2),
                 fixed(100.0 * rgbs / triad_gbs, 1) + "%", roof_label(fma_roof_gbs(r.shape, row.bits, fma), triad_gbs),
                 fixed(row.torch_s * 1e6, 1), fixed(row.torch_s / row.timing.median_s, 2) + "x", fmt::format("{:.2e}", row.max_diff)});
    }
  }
  return t.render();
}

std::string gpu_section(const std::vector<ShapeResult>& results) {
  std::string s = "## GPU\n\n";
  const int devices = runtime::cuda_device_count();
  if (!gpu_available()) {
    s += fmt::format("No GPU in this run (CUDA decode kernels in this build: {}; CUDA devices found: {}), so there is no GPU "
                     "decode table.\n\n",
                     runtime::cuda_decode_compiled() ? "yes" : "no", std::max(0, devices));
    return s;
  }
  s += fmt::format("{} CUDA device(s); measured on device 0: {}. The same decodes as above, on the same pages copied to the "
                   "device once (`runtime::CudaLayerStreams`, one per layer); time = the device time of the decode's kernels "
                   "(`last_kernel_ms`, summed over the layers; host copies of q and out not included), median of the timed "
                   "decodes after one warm-up. GB/s = the stored bytes of the decoded positions / that time.\n\n",
                   devices, runtime::cuda_device_description(0));
  s += "The card's own memory bandwidth is not measured: the runtime's CUDA interface offers no device-to-device copy or "
       "device triad, so there is no percentage column. The device's L2 cache is not flushed between decodes (the "
       "interface has no way to), so the smallest caches may be served partly from L2.\n\n";
  for (const auto& r : results) {
    s += fmt::format("### {}\n\n", r.shape.title);
    for (const auto& n : r.gpu_notes) s += "- " + n + "\n";
    if (!r.gpu_notes.empty()) s += "\n";
    if (r.gpu.empty()) {
      s += "No GPU rows for this shape.\n\n";
      continue;
    }
    MarkdownTable t({{"format"}, {"bits/elem", Align::kRight}, {"positions", Align::kRight}, {"kernel time (us)", Align::kRight},
                     {"GB/s", Align::kRight}, {"CPU decode (us)", Align::kRight}, {"vs CPU", Align::kRight},
                     {"LibTorch fp32 CPU (us)", Align::kRight}, {"max abs diff", Align::kRight}});
    for (const auto& row : r.gpu) {
      t.add_row({row.label, fixed(row.bits, 3), positions_label(row.positions), fixed(row.kernel_s * 1e6, 1),
                 fixed(static_cast<double>(row.bytes) / row.kernel_s / 1e9, 1), fixed(row.cpu_s * 1e6, 1),
                 fixed(row.cpu_s / row.kernel_s, 1) + "x", fixed(row.torch_s * 1e6, 1), fmt::format("{:.2e}", row.max_diff)});
    }
    s += t.render() + "\n";
  }
  return s;
}

std::string targets_section(const std::vector<ShapeResult>& results, double triad_gbs, const bench::FmaPeakResult& fma,
                            const std::string& target_label) {
  std::string s = "## Targets\n\n";
  const ShapeResult* large = nullptr;
  for (const auto& r : results) {
    if (r.shape.key == "large") large = &r;
  }
  // 1. Bandwidth at 32K and 128K on the large shape.
  s += fmt::format("### Decode at >= {:.0f}% of the triad bandwidth at 32K and 128K tokens, large shape\n\n", 100 * kBandwidthTarget);
  {
    MarkdownTable t({{"format"}, {"positions", Align::kRight}, {"% of triad", Align::kRight}, {"FMA roof", Align::kRight},
                     {"target", Align::kLeft}});
    int rows = 0, met = 0, above_roof = 0;
    if (large != nullptr) {
      for (const auto& row : large->rows) {
        if (row.positions != kTargetPositions32K && row.positions != kTargetPositions128K) continue;
        const double frac = static_cast<double>(row.bytes) / row.timing.median_s / 1e9 / triad_gbs;
        const double roof = fma_roof_gbs(large->shape, row.bits, fma);
        const bool unreachable = roof > 0.0 && roof < kBandwidthTarget * triad_gbs;
        ++rows;
        met += frac >= kBandwidthTarget ? 1 : 0;
        above_roof += unreachable && frac < kBandwidthTarget ? 1 : 0;
        std::string verdict = frac >= kBandwidthTarget ? "met" : "not met";
        if (unreachable && frac < kBandwidthTarget) verdict += " (target above the FMA roof)";
        t.add_row({row.label, positions_label(row.positions), fixed(100.0 * frac, 1) + "%", roof_label(roof, triad_gbs), verdict});
      }
    }
    if (rows == 0) {
      s += "Not measured in this run: the positions measured do not include 32768 or 131072 on the large shape.\n\n";
    } else {
      s += t.render() + "\n";
      s += fmt::format("**{}**: {} of {} rows reach {:.0f}% of the triad.", met == rows ? "Met" : "Not met", met, rows,
                       100 * kBandwidthTarget);
      if (above_roof > 0) {
        s += fmt::format(" {} of the rows that miss it cannot reach it on this machine with fp32 arithmetic: their FMA roof "
                         "(one FMA per query head per stored element at the measured FMA peak) is below {:.0f}% of the "
                         "triad.",
                         above_roof, 100 * kBandwidthTarget);
      }
      s += "\n\n";
    }
  }
  // 2. Speed-up over LibTorch at ~3 bits/element, 32K.
  s += fmt::format("### At ~3 bits/element, >= {:.0f}x faster than LibTorch's dense fp32 attention at 32K tokens\n\n", kSpeedupTarget);
  s += fmt::format("Evaluated on `{}` (its bits per element, group scales and zero points included, are measured on the pages "
                   "in the tables above); the other rows between 2.5 and 3.5 bits per element at 32K (e.g. int3-d128, or the "
                   "mixed map when it lands there) are listed for information.\n\n",
                   target_label);
  {
    MarkdownTable t({{"shape"}, {"format"}, {"bits/elem", Align::kRight}, {"speedup at 32K", Align::kRight}, {"target", Align::kLeft}});
    int rows = 0, met = 0;
    for (const auto& r : results) {
      for (const auto& row : r.rows) {
        if (row.positions != kTargetPositions32K) continue;
        const bool is_target = row.label == target_label;
        const bool near_three = row.bits >= 2.5 && row.bits <= 3.5;
        if (!is_target && !near_three) continue;
        const double speedup = row.torch_s / row.timing.median_s;
        std::string verdict = speedup >= kSpeedupTarget ? "met" : "not met";
        if (is_target) {
          ++rows;
          met += speedup >= kSpeedupTarget ? 1 : 0;
        } else {
          verdict += " (information)";
        }
        t.add_row({r.shape.title, row.label, fixed(row.bits, 3), fixed(speedup, 2) + "x", verdict});
      }
    }
    if (rows == 0) {
      s += "Not measured in this run: the positions measured do not include 32768.\n\n";
    } else {
      s += t.render() + "\n";
      s += fmt::format("**{}** for `{}`: {} of {} shapes reach {:.0f}x.\n\n", met == rows ? "Met" : "Not met", target_label, met,
                       rows, kSpeedupTarget);
    }
  }
  return s;
}

std::string render_report(const Options& o, const bench::MachineInfo& machine, const bench::TriadResult& triad,
                          const bench::FmaPeakResult& fma, int threads,
                          std::size_t evict_bytes, const std::vector<ShapeResult>& results, const std::string& target_label,
                          double total_s, double load_start, double load_end) {
  std::string s = "# Runtime benchmark: decode attention from the mixed-precision KV cache\n\n";
  s += fmt::format("Written by `hnf-bench-runtime` (hnf-kv {}) in one run of {:.0f} s; every figure below was measured in that "
                   "run. Command: `{}`\n\n",
                   HNF_VERSION, total_s, o.command_line);
  if (o.quick) s += "**Quick smoke run** (`--quick`): tiny sizes that fit in the caches; the figures say nothing about performance.\n\n";
  s += "## Machine\n\n";
  MarkdownTable m({{"item"}, {"value"}});
  m.add_row({"CPU", machine.cpu_model});
  m.add_row({"logical CPUs", std::to_string(machine.logical_cpus)});
  m.add_row({"threads used", fmt::format("{} (runtime OpenMP and LibTorch intra-op: {})", threads, bench::torch_threads())});
  m.add_row({"AVX2/FMA/F16C decode path", runtime::cpu_decode_uses_avx2() ? "on" : "off (portable path)"});
  m.add_row({"last-level cache (as the OS reports it)", machine.l3_bytes > 0 ? fmt::format("{} MiB", machine.l3_bytes >> 20) : "not reported"});
  m.add_row({"memory", machine.memory_bytes > 0 ? fmt::format("{:.1f} GiB", static_cast<double>(machine.memory_bytes) / (1ull << 30)) : "not reported"});
  m.add_row({"LibTorch", bench::torch_version()});
  m.add_row({"load average (1 min) at the start / end of the run",
             load_start < 0 || load_end < 0 ? "not reported" : fmt::format("{:.2f} / {:.2f}", load_start, load_end)});
  m.add_row({"CUDA devices", gpu_available() ? fmt::format("{}: {}", runtime::cuda_device_count(), runtime::cuda_device_description(0))
                                            : std::to_string(std::max(0, runtime::cuda_device_count()))});
  s += m.render() + "\n";

  s += "## Memory bandwidth (STREAM-style triad)\n\n";
  s += fmt::format("`a[i] = b[i] + s*c[i]` on three double arrays of {} MiB each ({:.2f} GiB in all), {} threads, first touch by "
                   "the same threads, {} timed passes after one warm-up. Bytes counted as STREAM counts them (3 x 8 per "
                   "element, no write-allocate traffic).\n\n",
                   triad.array_bytes >> 20, 3.0 * static_cast<double>(triad.array_bytes) / (1ull << 30), threads, triad.repeats);
  s += fmt::format("**Triad: {:.2f} GB/s** (best pass; median pass {:.2f} GB/s). The \"% of triad\" columns below are of the best "
                   "pass.\n\n",
                   triad.best_gbs, triad.median_gbs);

  s += "## Arithmetic peak (fp32 FMA)\n\n";
  if (fma.lane_fmas_per_s > 0.0) {
    s += fmt::format("{} independent chains of {} {} FMAs (x = x*a + b, {} fp32 lanes) per thread in registers, {} threads, best "
                     "pass: **{:.1f} G multiply-adds/s** ({:.1f} GFLOP/s). The decode does one FMA per query head per stored "
                     "K and V element, so a decode that does them as fp32 FMAs, on a shape with g query heads per kv head, reads at most peak x "
                     "bits / (8 g) bytes/s: the \"FMA roof\" columns give that bound as a percentage of the triad (above "
                     "100%: memory bound; below the target: the target cannot be met with fp32 arithmetic here).\n\n",
                     fma.chains, fma.iterations, fma.isa, fma.vector_lanes, threads, fma.lane_fmas_per_s / 1e9, 2.0 * fma.lane_fmas_per_s / 1e9);
  } else {
    s += "Not measured: the CPU has neither AVX-512 nor AVX2/FMA (the \"FMA roof\" columns say n/a).\n\n";
  }

  s += "## Method\n\n";
  s += fmt::format(
      "- One decode: one query per query head attends over all cached positions, in every layer of the shape, with "
      "`runtime::decode_layer_cpu` (one call per layer, OpenMP across kv heads), reading the pages directly.\n"
      "- Time: median of {} timed decodes after one warm-up. Before each timed decode a {} MiB buffer is written and read, "
      "so the cache is read from memory, as in a real model whose other layers evict it.\n"
      "- bits/elem: the stored bytes of the decoded positions (codes, fp16 group scales and zero points; pages of "
      "16 positions, or of the map's block) x 8 / the K and V elements. GB/s: those bytes / time.\n"
      "- LibTorch fp32 (dense): `bmm(q, K^T) * scale`, `softmax`, `bmm(., V)` per layer on [kv_heads, positions, head_dim] "
      "fp32 tensors of the same keys and values (grouped-query attention: q viewed [kv_heads, heads/kv_heads, head_dim]), "
      "with the same thread count; its GB/s counts the fp32 K and V bytes. speedup = LibTorch time / our time.\n"
      "- max abs diff: the largest |ours - LibTorch fp32| over the outputs: the quantization error of the format plus "
      "rounding (a sanity check that the formats really quantize, not a bound).\n"
      "- Keys and values: synthetic, seeded normal values; keys carry two outlier channels scaled by 8; about one element "
      "in 1000 is a spike of magnitude 8 to 16. Queries: seeded normal. Scale 1/sqrt(head_dim).\n\n",
      o.repeats, evict_bytes >> 20);

  for (const auto& r : results) {
    s += fmt::format("## {}\n\n", r.shape.title);
    s += fmt::format("{}: {} layer{}, {} query heads, {} kv heads, head_dim {}. One decode = {}.\n\n", r.shape.source,
                     r.shape.layers, r.shape.layers == 1 ? "" : "s", r.shape.heads, r.shape.kv_heads, r.shape.head_dim,
                     r.shape.layers == 1 ? "one layer" : fmt::format("all {} layers", r.shape.layers));
    for (const auto& n : r.notes) s += "- " + n + "\n";
    if (!r.notes.empty()) s += "\n";
    s += decode_table(r, triad.best_gbs, fma) + "\n";
  }

  s += "## Append (quantize) throughput\n\n";
  s += "A token is one position of all kv heads of one layer, keys and values: `runtime::encode_row` of the key and "
       "the value of every kv head into the page of the position (what the cache does per appended token; intB-tP keys "
       "are staged in f32 and quantized with `encode_token_groups` when their page fills). One thread; median of the timed "
       "runs; tokens/s counts the tokens of every layer.\n\n";
  MarkdownTable a({{"shape"}, {"format"}, {"tokens per layer", Align::kRight}, {"tokens/s", Align::kRight}, {"us/token", Align::kRight}});
  for (const auto& r : results) {
    for (const auto& row : r.appends) {
      a.add_row({r.shape.title, row.label, std::to_string(row.tokens), fmt::format("{:.0f}", row.tokens_per_s), fixed(1e6 / row.tokens_per_s, 2)});
    }
  }
  s += a.render() + "\n";
  s += gpu_section(results);
  s += targets_section(results, triad.best_gbs, fma, target_label);
  return s;
}

// ---- Main ------------------------------------------------------------------------------------

int run(const Options& opts_in) {
  Options o = opts_in;
  const double t0 = bench::now_seconds();
  const double load_start = bench::load_average();
  if (o.quick) {
    if (o.positions_text == Options{}.positions_text) o.positions_text = "256,1024";
    o.repeats = std::min(o.repeats, 3);
    o.append_tokens = std::min<std::int64_t>(o.append_tokens, 256);
    o.triad_mib = std::min<std::size_t>(o.triad_mib, 16);
    if (o.evict_mib < 0) o.evict_mib = 8;
  }
  if (o.repeats < 1) throw proofs::bad_input("--repeats", "must be at least 1");
  if (o.append_tokens < 1) throw proofs::bad_input("--append-tokens", "must be at least 1");
  if (o.triad_mib < 1) throw proofs::bad_input("--triad-mib", "must be at least 1");
  const auto positions = parse_positions(o.positions_text);
  auto formats = parse_formats(o.formats_text, "--formats");
  const auto target = parse_formats(o.target_format, "--target-format");
  if (target.size() != 1) throw proofs::bad_input("--target-format", "give one format");
  if (std::find(formats.begin(), formats.end(), target[0]) == formats.end()) formats.push_back(target[0]);

  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  bench::torch_set_threads(threads);
  const bench::MachineInfo machine = bench::machine_info();
  fmt::print(stderr, "hnf-bench-runtime: {} ({} logical CPUs), {} threads, AVX2 decode path {}\n", machine.cpu_model,
             machine.logical_cpus, threads, runtime::cpu_decode_uses_avx2() ? "on" : "off");

  // Shapes: the reference model's, from its config; one Llama-3-8B-like layer.
  const auto config = runtime::load_llama_config(o.model + "/config.json");
  Shape ref{"ref", "Reference model shape", fmt::format("`{}` (config.json)", o.model), static_cast<int>(config.num_hidden_layers),
            static_cast<int>(config.num_attention_heads), static_cast<int>(config.num_key_value_heads), static_cast<int>(config.head_dim)};
  Shape large{"large", "Llama-3-8B-like layer (large shape)",
              "One layer of a Llama-3-8B-like model, synthetic values", 1, 32, 8, 128};

  const auto ref_map = load_map(o.ref_cert, ref, o.model, "--ref-cert");
  const auto large_map = load_map(o.large_cert, large, std::nullopt, "--large-cert");

  // Memory bandwidth first, alone on the machine's memory.
  fmt::print(stderr, "triad: 3 x {} MiB, {} threads\n", o.triad_mib, threads);
  const bench::TriadResult triad = bench::run_triad(o.triad_mib << 20, std::max(o.repeats, 5), threads);
  fmt::print(stderr, "triad: {:.2f} GB/s (best), {:.2f} GB/s (median)\n", triad.best_gbs, triad.median_gbs);
  const bench::FmaPeakResult fma = bench::run_fma_peak(o.quick ? 1 : 5, threads);
  fmt::print(stderr, "fp32 FMA peak ({}): {:.1f} G multiply-adds/s\n", fma.isa, fma.lane_fmas_per_s / 1e9);

  std::size_t evict_bytes = 0;
  if (o.evict_mib >= 0) {
    evict_bytes = static_cast<std::size_t>(o.evict_mib) << 20;
  } else {
    evict_bytes = std::clamp<std::size_t>(2 * machine.l3_bytes, std::size_t{64} << 20, std::size_t{1} << 30);
  }
  bench::CacheEvictor evictor(evict_bytes);

  std::vector<ShapeResult> results;
  for (const auto* shape : {&ref, &large}) {
    const auto& loaded = shape == &ref ? ref_map : large_map;
    std::vector<Variant> variants;
    std::vector<std::string> notes;
    for (const auto& f : formats) {
      if (!proofs::is_valid_format(f, shape->head_dim)) {
        notes.push_back(fmt::format("`{}` is not a format for head_dim {}: not measured on this shape", proofs::format_name(f),
                                    shape->head_dim));
        continue;
      }
      variants.push_back(Variant{proofs::format_name(f), f, nullptr});
    }
    if (loaded.certified) variants.push_back(Variant{"mixed map (certified)", std::nullopt, &loaded.certified->map()});
    notes.push_back(loaded.note);
    results.push_back(run_shape(*shape, positions, std::move(variants), std::move(notes), o, evictor));
  }

  const std::string report = render_report(o, machine, triad, fma, threads, evictor.bytes(), results, proofs::format_name(target[0]),
                                           bench::now_seconds() - t0, load_start, bench::load_average());
  const std::filesystem::path out(o.out);
  if (out.has_parent_path()) proofs::ensure_directory(out.parent_path().string(), "--out");
  proofs::write_text_atomically(o.out, report);
  fmt::print(stderr, "wrote {}\n", o.out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Under a file size limit the report's write fails with EFBIG (exit 5, no partial file)
  // instead of the process dying of SIGXFSZ.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"hnf-bench-runtime: decode attention from the mixed-precision KV cache against the measured memory "
               "bandwidth and LibTorch's dense fp32 attention; writes a Markdown report"};
  app.set_version_flag("--version", "hnf-bench-runtime " HNF_VERSION);
  Options o;
  app.add_option("--out", o.out, "Report file (Markdown, written atomically)")->capture_default_str();
  app.add_option("--model", o.model, "Reference model directory (its config.json gives the reference shape)")->capture_default_str();
  app.add_option("--ref-cert", o.ref_cert, "Certificate of the reference model (mixed-map rows of the reference shape)");
  app.add_option("--large-cert", o.large_cert, "Certificate of a synthetic trace of the large shape (1 layer, 32 heads, 8 kv heads, head_dim 128)");
  app.add_option("--positions", o.positions_text, "Cached positions, comma-separated multiples of 64")->capture_default_str();
  app.add_option("--formats", o.formats_text, "Uniform formats to measure, comma-separated")->capture_default_str();
  app.add_option("--target-format", o.target_format, "The ~3 bits/element format of the LibTorch speed-up target")->capture_default_str();
  app.add_option("--threads", o.threads, "Threads for our kernels and LibTorch (0: OpenMP's default)")->capture_default_str();
  app.add_option("--repeats", o.repeats, "Timed runs per measurement (the median is reported)")->capture_default_str();
  app.add_option("--append-tokens", o.append_tokens, "Tokens per layer of the append measurement")->capture_default_str();
  app.add_option("--triad-mib", o.triad_mib, "MiB of each of the triad's three arrays")->capture_default_str();
  app.add_option("--evict-mib", o.evict_mib, "MiB written between timed runs to evict the caches (-1: twice the last-level cache)")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the synthetic keys, values and queries")->capture_default_str();
  app.add_flag("--quick", o.quick, "Tiny smoke run (positions 256,1024, small triad): seconds, no meaningful figures");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : static_cast<int>(proofs::ExitCode::kBadInput);
  }
  for (int i = 0; i < argc; ++i) o.command_line += (i == 0 ? "" : " ") + std::string(argv[i]);
  try {
    return run(o);
  } catch (const proofs::Error& e) {
    std::fprintf(stderr, "hnf-bench-runtime: %s\n", e.what());
    return static_cast<int>(e.exit_code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hnf-bench-runtime: internal error: %s\n", e.what());
    return static_cast<int>(proofs::ExitCode::kInternal);
  }
}
