#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "hnf/analysis/synthetic_trace.h"
#include "hnf/analysis/tensor_stats.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "small_trace.h"
#include "test_files.h"

using namespace hnf;
using hnf::testing::SmallTrace;
using hnf::testing::contains;
using hnf::testing::TempDir;
using hnf::testing::write_small_trace;

namespace {

std::string trace_error(const std::filesystem::path& path) {
  try {
    (void)analysis::Trace::open(path);
  } catch (const proofs::Error& e) {
    CHECK(e.kind() == proofs::ErrorKind::kBadInput);
    CHECK(std::string(e.what()).starts_with(path.string() + ": "));
    return e.what();
  }
  return "";
}


}  // namespace

TEST_CASE("a valid trace opens with its shape and implicit query positions") {
  TempDir dir;
  write_small_trace(dir / "t.safetensors", SmallTrace{});
  const auto trace = analysis::Trace::open(dir / "t.safetensors");
  const auto& s = trace.shape();
  CHECK(s.num_layers == 2);
  CHECK(s.num_heads == 4);
  CHECK(s.num_kv_heads == 2);
  CHECK(s.num_tokens == 8);
  CHECK(s.num_queries == 8);
  CHECK(s.head_dim == 4);
  CHECK(trace.dtype() == proofs::Dtype::kF32);
  CHECK(trace.has_rope());
  REQUIRE(trace.layers().size() == 2);
  CHECK(trace.layers()[1].v->name == "layers.1.v");
  CHECK(trace.query_positions() == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("schema violations name exactly what is wrong") {
  TempDir dir;
  const auto path = dir / "bad.safetensors";
  auto expect = [&](SmallTrace spec, const std::string& expected) {
    write_small_trace(path, spec);
    const std::string message = trace_error(path);
    CHECK_MESSAGE(contains(message, expected), message);
  };
  SUBCASE("missing layer") {
    SmallTrace s;
    s.layers = 3;
    s.skip = [](const std::string& n) { return n.starts_with("layers.1."); };
    expect(s, "trace is missing layer 1 (metadata num_layers is 3)");
  }
  SUBCASE("last layer missing is caught through num_layers") {
    SmallTrace s;
    s.metadata_overrides = {{"num_layers", "3"}};
    expect(s, "trace is missing layer 2");
  }
  SUBCASE("missing tensor") {
    SmallTrace s;
    s.skip = [](const std::string& n) { return n == "layers.1.k_pre_rope"; };
    expect(s, "layer 1 is missing tensor 'layers.1.k_pre_rope'");
  }
  SUBCASE("mismatched query heads") {
    SmallTrace s;
    s.reshape = [](const std::string& n, std::vector<std::int64_t> shape) {
      if (n == "layers.1.q") shape[0] = 8;
      return shape;
    };
    expect(s, "layer 1 has 8 query heads but layer 0 has 4");
  }
  SUBCASE("mismatched kv heads") {
    SmallTrace s;
    s.reshape = [](const std::string& n, std::vector<std::int64_t> shape) {
      if (n.starts_with("layers.1.k") || n == "layers.1.v") shape[0] = 1;
      return shape;
    };
    expect(s, "layer 1 has 1 kv heads but layer 0 has 2");
  }
  SUBCASE("v shape differs from k") {
    SmallTrace s;
    s.reshape = [](const std::string& n, std::vector<std::int64_t> shape) {
      if (n == "layers.0.v") shape[2] = 8;
      return shape;
    };
    expect(s, "tensor 'layers.0.v' has shape [2, 8, 8] but 'layers.0.k' has [2, 8, 4]");
  }
  SUBCASE("query heads not a multiple of kv heads") {
    SmallTrace s;
    s.heads = 3;
    expect(s, "3 query heads are not a multiple of 2 kv heads");
  }
  SUBCASE("token count disagrees with metadata") {
    SmallTrace s;
    s.metadata_overrides = {{"num_tokens", "9"}};
    expect(s, "keys hold 8 tokens but metadata num_tokens is 9");
  }
  SUBCASE("dtype disagrees with metadata") {
    SmallTrace s;
    s.metadata_overrides = {{"dtype", "F16"}};
    expect(s, "has dtype F32 but metadata dtype is F16");
  }
  SUBCASE("not a trace") {
    SmallTrace s;
    s.metadata_overrides = {{"format", "pt"}};
    expect(s, "not an hnf trace");
  }
  SUBCASE("unsupported format version") {
    SmallTrace s;
    s.metadata_overrides = {{"format_version", "2"}};
    expect(s, "unsupported trace format_version '2'");
  }
  SUBCASE("rope without theta") {
    SmallTrace s;
    s.metadata_overrides = {{"rope_theta", "-1"}};
    expect(s, "rope_theta is missing or not a positive number");
  }
  SUBCASE("rank is not 3") {
    SmallTrace s;
    s.reshape = [](const std::string& n, std::vector<std::int64_t> shape) {
      if (n == "layers.0.q") shape = {4, 32};
      return shape;
    };
    expect(s, "tensor 'layers.0.q' has shape [4, 32], expected rank 3");
  }
  SUBCASE("fewer queries than tokens without positions") {
    SmallTrace s;
    s.reshape = [](const std::string& n, std::vector<std::int64_t> shape) {
      if (n.ends_with(".q")) shape[1] = 4;
      return shape;
    };
    expect(s, "4 queries recorded for 8 tokens but no 'query_positions' tensor says which");
  }
}

TEST_CASE("unexpected tensors are rejected") {
  TempDir dir;
  const auto path = dir / "extra.safetensors";
  const proofs::Metadata meta = analysis::make_trace_metadata({.model_id = "m", .model_sha256 = "-", .tokenizer = "-",
                                                               .text_source = "-", .text_sha256 = "-", .num_tokens = 1,
                                                               .num_layers = 1, .dtype = proofs::Dtype::kF32, .rope_theta = std::nullopt});
  proofs::SafetensorsWriter w(path, {{"layers.0.q", proofs::Dtype::kF32, {1, 1, 2}},
                                     {"layers.0.k", proofs::Dtype::kF32, {1, 1, 2}},
                                     {"layers.0.v", proofs::Dtype::kF32, {1, 1, 2}},
                                     {"layers.0.attn_out", proofs::Dtype::kF32, {1}}},
                              meta);
  const float x[2] = {1, 2};
  for (const char* n : {"layers.0.q", "layers.0.k", "layers.0.v"}) w.append(n, std::as_bytes(std::span(x)));
  w.append("layers.0.attn_out", std::as_bytes(std::span(x).first(1)));
  w.finish();
  CHECK(contains(trace_error(path), "unexpected tensor 'layers.0.attn_out'"));
}

TEST_CASE("tensor statistics count NaN and Inf and summarise the finite values") {
  TempDir dir;
  SmallTrace s;
  s.value = [](const std::string& name, std::uint64_t i) {
    if (name == "layers.0.v" && i == 3) return NAN;
    if (name == "layers.0.v" && i == 5) return -INFINITY;
    return name == "layers.0.v" ? (i % 2 ? -2.0f : 1.0f) : 0.5f;
  };
  write_small_trace(dir / "t.safetensors", s);
  const auto trace = analysis::Trace::open(dir / "t.safetensors");
  const auto stats = analysis::compute_stats(trace.file(), *trace.layers()[0].v);
  CHECK(stats.numel == 64);
  CHECK(stats.nan_count == 1);
  CHECK(stats.inf_count == 1);
  CHECK(stats.finite_count == 62);
  CHECK(stats.min_abs == 1.0);
  CHECK(stats.max_abs == 2.0);
  // 32 even indices give 1, 32 odd give 2; index 3 (odd) and 5 (odd) are excluded.
  CHECK(stats.mean_abs == doctest::Approx((32 * 1.0 + 30 * 2.0) / 62).epsilon(1e-15));
  const auto q = analysis::compute_stats(trace.file(), *trace.layers()[1].q);
  CHECK(q.nan_count + q.inf_count == 0);
  CHECK(q.max_abs == 0.5);
}

TEST_CASE("synthetic traces are deterministic, schema-valid and RoPE-consistent") {
  TempDir dir;
  analysis::SyntheticTraceSpec spec;
  spec.num_tokens = 40;
  spec.query_stride = 3;
  spec.dtype = proofs::Dtype::kF32;
  analysis::write_synthetic_trace(dir / "a.safetensors", spec);
  analysis::write_synthetic_trace(dir / "b.safetensors", spec);
  CHECK(hnf::testing::read_file(dir / "a.safetensors") == hnf::testing::read_file(dir / "b.safetensors"));
  spec.seed = 2;
  analysis::write_synthetic_trace(dir / "c.safetensors", spec);
  CHECK(hnf::testing::read_file(dir / "a.safetensors") != hnf::testing::read_file(dir / "c.safetensors"));

  const auto trace = analysis::Trace::open(dir / "a.safetensors");
  CHECK(trace.shape().num_queries == 14);  // positions 0, 3, ..., 39
  CHECK(trace.query_positions().front() == 0);
  CHECK(trace.query_positions().back() == 39);
  // k is k_pre_rope rotated: per pair (i, i + d/2) the norm is kept and position 0 is unrotated.
  const auto& layer = trace.layers()[1];
  const auto* k = trace.file().bytes(*layer.k).data();
  const auto* pre = trace.file().bytes(*layer.k_pre_rope).data();
  const std::int64_t d = trace.shape().head_dim;
  for (std::int64_t t = 0; t < trace.shape().num_tokens; ++t) {
    std::vector<float> row(static_cast<std::size_t>(d));
    for (std::int64_t i = 0; i < d; ++i) row[static_cast<std::size_t>(i)] = proofs::load_float(trace.dtype(), pre, static_cast<std::uint64_t>(t * d + i));
    analysis::apply_rope(row.data(), d, t, 10000.0);
    for (std::int64_t i = 0; i < d; ++i) {
      const float stored = proofs::load_float(trace.dtype(), k, static_cast<std::uint64_t>(t * d + i));
      REQUIRE(stored == row[static_cast<std::size_t>(i)]);
      if (t == 0) REQUIRE(stored == proofs::load_float(trace.dtype(), pre, static_cast<std::uint64_t>(i)));
    }
  }
}

TEST_CASE("apply_rope rotates pairs by position times the frequency") {
  std::vector<float> x{1.0f, 0.0f, 0.0f, 0.0f};  // head_dim 4: pairs (0,2) and (1,3)
  analysis::apply_rope(x.data(), 4, 3, 10000.0);
  CHECK(x[0] == doctest::Approx(std::cos(3.0)));
  CHECK(x[2] == doctest::Approx(std::sin(3.0)));
  std::vector<float> y{0.0f, 1.0f, 0.0f, 0.0f};  // second pair: frequency 10000^(-1/2) = 0.01
  analysis::apply_rope(y.data(), 4, 3, 10000.0);
  CHECK(y[1] == doctest::Approx(std::cos(0.03)));
  CHECK(y[3] == doctest::Approx(std::sin(0.03)));
}

TEST_CASE("a 128K-token trace of the reference shape round-trips bit-exactly") {
  // One layer of 4 query / 2 KV heads, head_dim 64, 131072 tokens, F16: 160 MiB written in
  // 1 MiB chunks and read back through the memory map. Every 16-bit pattern (NaN included)
  // is stored, so any offset, chunking or conversion error shows.
  TempDir dir;
  const auto path = dir / "long.safetensors";
  constexpr std::int64_t kTokens = 131072;
  constexpr std::int64_t kDim = 64;
  auto pattern = [](std::uint64_t tensor, std::uint64_t i) {
    std::uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull ^ tensor << 56;
    z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
    return static_cast<std::uint16_t>(z >> 40);
  };
  const std::vector<std::pair<std::string, std::int64_t>> tensors{
      {"layers.0.q", 4}, {"layers.0.k", 2}, {"layers.0.k_pre_rope", 2}, {"layers.0.v", 2}};
  {
    std::vector<proofs::TensorSpec> specs;
    for (const auto& [name, heads] : tensors) specs.push_back({name, proofs::Dtype::kF16, {heads, kTokens, kDim}});
    const proofs::Metadata meta = analysis::make_trace_metadata(
        {.model_id = "m", .model_sha256 = "-", .tokenizer = "-", .text_source = "-", .text_sha256 = "-",
         .num_tokens = kTokens, .num_layers = 1, .dtype = proofs::Dtype::kF16, .rope_theta = 500000.0});
    proofs::SafetensorsWriter writer(path, specs, meta);
    std::vector<std::uint16_t> chunk(1 << 19);
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      const auto numel = static_cast<std::uint64_t>(tensors[t].second * kTokens * kDim);
      for (std::uint64_t first = 0; first < numel; first += chunk.size()) {
        for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = pattern(t, first + i);
        writer.append(tensors[t].first, std::as_bytes(std::span(chunk)));
      }
    }
    writer.finish();
  }
  const auto trace = analysis::Trace::open(path);
  CHECK(trace.shape().num_tokens == kTokens);
  CHECK(trace.shape().num_heads == 4);
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const auto* info = trace.file().find(tensors[t].first);
    REQUIRE(info != nullptr);
    const auto bytes = trace.file().bytes(*info);
    const auto numel = info->numel();
    std::uint64_t mismatches = 0;
    for (std::uint64_t i = 0; i < numel; ++i) {
      std::uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      mismatches += h != pattern(t, i);
    }
    CHECK(mismatches == 0);
  }
}
