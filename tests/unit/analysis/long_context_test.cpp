// Long traces and pathological attention (issue 17, item 8): element indices past 2^31 through
// the trace reader, and the synthetic patterns producing the attention they are named after,
// with finite bounds. Soundness against MPFR and certify/check of the same patterns run in
// tests/soundness/run_pathological.sh; the 128K and 1M runs in scripts/bench_long_context.sh.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "hnf/analysis/analyze.h"
#include "hnf/analysis/kv_rows.h"
#include "hnf/analysis/synthetic_trace.h"
#include "hnf/analysis/trace.h"
#include "hnf/proofs/float16.h"
#include "hnf/proofs/safetensors.h"
#include "test_files.h"

using namespace hnf;
using hnf::testing::TempDir;

namespace {

// One layer, one head, 2^25 + 1 tokens of head_dim 64 in F16: k, k_pre_rope and v hold
// 2^31 + 64 elements each (4 GiB), the file about 12 GiB, all of it a hole of a sparse file
// (ftruncate), so no disk or memory is spent. Returns the file offset where the data starts.
constexpr std::int64_t kLongTokens = (std::int64_t{1} << 25) + 1;
constexpr std::int64_t kLongDim = 64;

std::uint64_t write_sparse_long_trace(const std::filesystem::path& path) {
  const std::uint64_t kv_bytes = static_cast<std::uint64_t>(kLongTokens * kLongDim) * 2;
  const std::uint64_t q_bytes = kLongDim * 2;
  std::string header = R"({"__metadata__":{"format":"hnf-trace","format_version":"1","model_id":"sparse",)"
                       R"("model_sha256":"none","tokenizer":"none","text_source":"sparse test","text_sha256":"none",)"
                       R"("num_tokens":")" + std::to_string(kLongTokens) +
                       R"(","num_layers":"1","dtype":"F16","rope":"llama","rope_theta":"10000"})";
  std::uint64_t offset = 0;
  auto tensor = [&](const std::string& name, const char* dtype, const std::string& shape, std::uint64_t bytes) {
    header += ",\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  };
  const std::string kv_shape = "1," + std::to_string(kLongTokens) + "," + std::to_string(kLongDim);
  tensor("layers.0.q", "F16", "1,1," + std::to_string(kLongDim), q_bytes);
  tensor("layers.0.k", "F16", kv_shape, kv_bytes);
  tensor("layers.0.k_pre_rope", "F16", kv_shape, kv_bytes);
  tensor("layers.0.v", "F16", kv_shape, kv_bytes);
  tensor("query_positions", "I64", "1", 8);
  header += "}";
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  const std::uint64_t n = header.size();
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));
  REQUIRE(::write(fd, length, 8) == 8);
  REQUIRE(::write(fd, header.data(), n) == static_cast<ssize_t>(n));
  const std::uint64_t data = 8 + n;
  REQUIRE(::ftruncate(fd, static_cast<off_t>(data + offset)) == 0);
  const std::int64_t last_position = kLongTokens - 1;
  REQUIRE(::pwrite(fd, &last_position, 8, static_cast<off_t>(data + offset - 8)) == 8);
  ::close(fd);
  return data;
}

void write_half(const std::filesystem::path& path, std::uint64_t file_offset, float value) {
  const std::uint16_t h = proofs::float_to_half_bits(value);
  const int fd = ::open(path.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, &h, 2, static_cast<off_t>(file_offset)) == 2);
  ::close(fd);
}

analysis::AnalysisResult analyze_pattern(const TempDir& dir, analysis::SyntheticPattern pattern, std::int64_t sinks = 1) {
  analysis::SyntheticTraceSpec spec;
  spec.num_layers = 1;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  spec.num_tokens = 256;
  spec.pattern = pattern;
  spec.sinks = sinks;
  const auto path = dir / (std::string(analysis::synthetic_pattern_name(pattern)) + ".safetensors");
  analysis::write_synthetic_trace(path, spec);
  analysis::AnalysisOptions options;
  options.eps = 0.05;
  options.last_queries = 8;
  return analysis::analyze_trace(path.string(), options);
}

// Every bound of the result is a finite number at least its rigorous lower bound.
void check_bounds_finite(const analysis::AnalysisResult& r) {
  for (const auto& h : r.heads) {
    CHECK(std::isfinite(h.s3));
    CHECK(std::isfinite(h.s2_radius));
    for (const auto& q : h.queries) {
      CHECK(std::isfinite(q.s1));
      CHECK(std::isfinite(q.s2));
      CHECK(q.s1 >= q.actual_lo);
    }
  }
}

std::int64_t smallest_position(const analysis::AnalysisResult& r) {
  return *std::min_element(r.query_positions.begin(), r.query_positions.end());
}

}  // namespace

TEST_CASE("trace elements past index 2^31 are read at the right place (sparse 12 GiB trace)") {
  TempDir dir;
  const auto path = dir / "long.safetensors";
  const std::uint64_t data = write_sparse_long_trace(path);
  const auto trace = analysis::Trace::open(path);
  const auto& layer = trace.layers().at(0);
  REQUIRE(trace.shape().num_tokens == kLongTokens);
  CHECK(layer.v->numel() > (std::uint64_t{1} << 31));
  // The last element of v and the element just past 2^31 of k: indices that wrap in 32 bits.
  const std::uint64_t last = static_cast<std::uint64_t>(kLongTokens * kLongDim) - 1;
  const std::uint64_t past = std::uint64_t{1} << 31;
  const auto v_begin = static_cast<std::uint64_t>(trace.file().bytes(*layer.v).data() - trace.file().bytes(*layer.q).data());
  const auto k_begin = static_cast<std::uint64_t>(trace.file().bytes(*layer.k).data() - trace.file().bytes(*layer.q).data());
  write_half(path, data + v_begin + 2 * last, 3.5f);
  write_half(path, data + k_begin + 2 * past, -1.25f);
  const auto reread = analysis::Trace::open(path);
  const auto& l = reread.layers().at(0);
  CHECK(proofs::load_float(reread.dtype(), reread.file().bytes(*l.v).data(), last) == 3.5f);
  CHECK(proofs::load_float(reread.dtype(), reread.file().bytes(*l.k).data(), past) == -1.25f);
  // Their neighbours are holes (zeros): each value sits exactly at its 64-bit index (an int32
  // index would have gone negative here).
  CHECK(proofs::load_float(reread.dtype(), reread.file().bytes(*l.v).data(), last - 1) == 0.0f);
  CHECK(proofs::load_float(reread.dtype(), reread.file().bytes(*l.k).data(), past - 1) == 0.0f);
  CHECK(proofs::load_float(reread.dtype(), reread.file().bytes(*l.k).data(), past + 1) == 0.0f);
  CHECK(reread.query_positions() == std::vector<std::int64_t>{kLongTokens - 1});
  // The analysis's own copies (StoredRows) of the rows around element 2^31 of k and of v's last
  // row: the same values at the same places.
  const std::int64_t row_of_past = static_cast<std::int64_t>(past / kLongDim);
  const analysis::StoredRows k_rows(reread.file(), path.string(), *l.k, 0, row_of_past - 1, 2);
  std::vector<double> k_read(2 * kLongDim);
  k_rows.read(0, 2, k_read.data());
  CHECK(k_read[kLongDim] == -1.25);  // element 2^31: the first of row 2^25
  CHECK(k_read[kLongDim - 1] == 0.0);
  CHECK(k_read[kLongDim + 1] == 0.0);
  const analysis::StoredRows v_rows(reread.file(), path.string(), *l.v, 0, kLongTokens - 1, 1);
  std::vector<double> v_read(kLongDim);
  v_rows.read(0, 1, v_read.data());
  CHECK(v_read[kLongDim - 1] == 3.5);
  CHECK(v_read[kLongDim - 2] == 0.0);
}

TEST_CASE("uniform and equal-key patterns attend uniformly") {
  TempDir dir;
  for (const auto pattern : {analysis::SyntheticPattern::kUniform, analysis::SyntheticPattern::kEqualKeys}) {
    CAPTURE(analysis::synthetic_pattern_name(pattern));
    const auto r = analyze_pattern(dir, pattern);
    check_bounds_finite(r);
    // Every query at position p gives each of positions 0..p the weight 1 / (p + 1), so the
    // largest weight of position 0 is that of the earliest analysed query.
    const double expected = 1.0 / static_cast<double>(smallest_position(r) + 1);
    for (const auto& h : r.heads) {
      CHECK(h.positions.max_weight[0] == doctest::Approx(expected).epsilon(1e-6));
      CHECK(h.positions.max_weight[255] == doctest::Approx(1.0 / 256.0).epsilon(1e-6));
      if (pattern == analysis::SyntheticPattern::kEqualKeys)
        CHECK(h.positions.diameter[0] == h.positions.diameter[200]);
    }
  }
}

TEST_CASE("spike, sinks and outlier patterns concentrate attention where they say") {
  TempDir dir;
  const auto spike = analyze_pattern(dir, analysis::SyntheticPattern::kSpike);
  check_bounds_finite(spike);
  CHECK(spike.heads[0].positions.max_weight[128] > 0.9);
  CHECK(spike.heads[0].positions.max_weight[127] < 0.01);
  for (std::int64_t sinks = 1; sinks <= 5; ++sinks) {
    CAPTURE(sinks);
    const auto r = analyze_pattern(dir, analysis::SyntheticPattern::kSinks, sinks);
    check_bounds_finite(r);
    const auto& w = r.heads[0].positions.mean_weight;
    double on_sinks = 0.0;
    for (std::int64_t t = 0; t < sinks; ++t) on_sinks += w[static_cast<std::size_t>(t)];
    CHECK(on_sinks > 0.9);
    CHECK(*std::max_element(w.begin() + sinks, w.end()) < 0.01);
  }
  const auto outliers = analyze_pattern(dir, analysis::SyntheticPattern::kOutliers);
  check_bounds_finite(outliers);
  // Rows 0, 97, 194 carry +-1e4 on channel 3: they take most of the attention (a query whose
  // channel 3 is near zero still spreads it, so this is about the mean, not every query).
  const auto& p = outliers.heads[0].positions;
  const auto top = static_cast<std::size_t>(std::max_element(p.max_weight.begin(), p.max_weight.end()) - p.max_weight.begin());
  CHECK(top % 97 == 0);
  CHECK(p.mean_weight[0] + p.mean_weight[97] + p.mean_weight[194] > 0.5);
}

TEST_CASE("the denormal pattern stores subnormal keys and values, and its bounds stay finite") {
  TempDir dir;
  for (const auto dtype : {proofs::Dtype::kF16, proofs::Dtype::kF32}) {
    analysis::SyntheticTraceSpec spec;
    spec.num_layers = 1;
    spec.num_heads = 2;
    spec.num_kv_heads = 1;
    spec.num_tokens = 128;
    spec.dtype = dtype;
    spec.pattern = analysis::SyntheticPattern::kDenormal;
    const auto path = dir / "denormal.safetensors";
    analysis::write_synthetic_trace(path, spec);
    const auto trace = analysis::Trace::open(path);
    const float smallest_normal = dtype == proofs::Dtype::kF16 ? 0x1p-14f : 0x1p-126f;
    for (const auto* t : {trace.layers()[0].k, trace.layers()[0].v}) {
      std::uint64_t subnormal = 0;
      for (std::uint64_t i = 0; i < t->numel(); ++i) {
        const float x = proofs::load_float(dtype, trace.file().bytes(*t).data(), i);
        if (x != 0.0f && std::fabs(x) < smallest_normal) ++subnormal;
      }
      CHECK(subnormal > t->numel() * 9 / 10);
    }
    analysis::AnalysisOptions options;
    options.eps = 0.05;
    options.last_queries = 8;
    check_bounds_finite(analysis::analyze_trace(path.string(), options));
  }
}
