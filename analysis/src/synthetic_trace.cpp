#include "hnf/analysis/synthetic_trace.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "hnf/analysis/trace.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"

namespace hnf::analysis {
namespace {

using proofs::Dtype;

// SplitMix64: a small, portable, fully specified generator, so the same spec gives the same
// bytes on every machine with the same libm.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1).
  double uniform() noexcept { return (static_cast<double>(next() >> 11) + 0.5) * 0x1p-53; }
  // Standard normal (Box-Muller; each pair of uniforms gives two normals).
  double normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double angle = 2.0 * std::numbers::pi * uniform();
    spare_ = r * std::sin(angle);
    has_spare_ = true;
    return r * std::cos(angle);
  }

 private:
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

enum class Stream : std::uint64_t { kQuery = 1, kKey = 2, kValue = 3, kDirection = 4 };

std::uint64_t stream_seed(std::uint64_t seed, std::int64_t layer, Stream stream, std::int64_t head) {
  SplitMix64 mix(seed ^ (static_cast<std::uint64_t>(layer) << 40) ^ (static_cast<std::uint64_t>(stream) << 32) ^
                 static_cast<std::uint64_t>(head));
  return mix.next();
}

// Keys of real models have a few outlier channels; mimic that so formats see the shape.
float channel_scale(std::int64_t channel) { return channel % 16 == 3 ? 4.0f : 1.0f; }

void append_block(proofs::SafetensorsWriter& writer, const std::string& name, Dtype dtype,
                  const std::vector<float>& values, std::vector<std::byte>& scratch) {
  const std::size_t element = proofs::dtype_size(dtype);
  scratch.resize(values.size() * element);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (dtype == Dtype::kF32) {
      std::memcpy(scratch.data() + 4 * i, &values[i], 4);
    } else {
      const std::uint16_t h = dtype == Dtype::kF16 ? proofs::float_to_half_bits(values[i])
                                                   : proofs::float_to_bf16_bits(values[i]);
      std::memcpy(scratch.data() + 2 * i, &h, 2);
    }
  }
  writer.append(name, scratch);
}

constexpr std::pair<SyntheticPattern, std::string_view> kPatternNames[] = {
    {SyntheticPattern::kGaussian, "gaussian"}, {SyntheticPattern::kUniform, "uniform"},
    {SyntheticPattern::kEqualKeys, "equal-keys"}, {SyntheticPattern::kSpike, "spike"},
    {SyntheticPattern::kSinks, "sinks"},         {SyntheticPattern::kOutliers, "outliers"},
    {SyntheticPattern::kDenormal, "denormal"},
};

void check_spec(const std::filesystem::path& out, const SyntheticTraceSpec& s) {
  auto fail = [&](const std::string& problem) { return proofs::bad_input(out.string(), problem); };
  if (s.num_layers < 1 || s.num_heads < 1 || s.num_kv_heads < 1 || s.num_tokens < 1 || s.head_dim < 2 ||
      s.query_stride < 1)
    throw fail("synthetic trace needs layers, heads, kv heads, tokens, query stride >= 1 and head_dim >= 2");
  if (s.num_heads % s.num_kv_heads != 0) throw fail("heads must be a multiple of kv heads");
  if (s.head_dim % 2 != 0) throw fail("head_dim must be even for rotary embedding");
  if (!proofs::is_floating(s.dtype)) throw fail("synthetic trace dtype must be F32, F16 or BF16");
  if (!(s.rope_theta > 0.0)) throw fail("rope_theta must be positive");
  if (s.pattern == SyntheticPattern::kSinks && (s.sinks < 1 || s.sinks > s.num_tokens))
    throw fail("sinks must lie in 1..tokens");
}

// The pathological patterns. Their q and k are written post-RoPE, as attention sees them; the
// trace's k_pre_rope is k rotated back, so RoPE cannot smear the pattern.
constexpr double kQueryAlong = 6.0;      // queries: kQueryAlong u + kQueryNoise N(0, I)
constexpr double kQueryNoise = 0.3;
constexpr double kSpikeAlong = 20.0;     // spike and sink keys: kSpikeAlong u (score ~ 15 nats above the rest)
constexpr double kOutlier = 1e4;         // the outlier channel's magnitude
constexpr std::int64_t kOutlierEvery = 97;
constexpr std::size_t kOutlierChannel = 3;

// Half the smallest normal number of the dtype: every N(0,1) multiple below 2 is subnormal there.
float subnormal_scale(Dtype dtype) { return dtype == Dtype::kF16 ? 0x1p-15f : 0x1p-127f; }

// A unit direction per layer (queries and spikes of every head share it).
std::vector<double> unit_direction(const SyntheticTraceSpec& s, std::int64_t layer) {
  SplitMix64 rng(stream_seed(s.seed, layer, Stream::kDirection, 0));
  std::vector<double> u(static_cast<std::size_t>(s.head_dim));
  double norm = 0.0;
  for (double& x : u) {
    x = rng.normal();
    norm += x * x;
  }
  for (double& x : u) x /= std::sqrt(norm);
  return u;
}

bool aligned_queries(SyntheticPattern p) { return p == SyntheticPattern::kSpike || p == SyntheticPattern::kSinks; }

// Post-RoPE queries of one head, [queries, d].
void pattern_queries(const SyntheticTraceSpec& s, const std::vector<double>& u, SplitMix64& rng, std::size_t rows,
                     std::vector<float>& block) {
  const auto d = static_cast<std::size_t>(s.head_dim);
  block.resize(rows * d);
  for (std::size_t i = 0; i < block.size(); ++i) {
    const double noise = rng.normal();
    block[i] = s.pattern == SyntheticPattern::kUniform ? 0.0f
               : aligned_queries(s.pattern)            ? static_cast<float>(kQueryAlong * u[i % d] + kQueryNoise * noise)
                                                       : static_cast<float>(noise);
  }
}

// Post-RoPE keys of one kv head, [tokens, d].
void pattern_keys(const SyntheticTraceSpec& s, const std::vector<double>& u, SplitMix64& rng, std::vector<float>& block) {
  const auto d = static_cast<std::size_t>(s.head_dim);
  const auto tokens = static_cast<std::size_t>(s.num_tokens);
  block.resize(tokens * d);
  for (std::size_t i = 0; i < block.size(); ++i)
    block[i] = static_cast<float>(rng.normal()) * channel_scale(static_cast<std::int64_t>(i % d));
  auto spike = [&](std::size_t t) {
    for (std::size_t c = 0; c < d; ++c) block[t * d + c] = static_cast<float>(kSpikeAlong * u[c]);
  };
  switch (s.pattern) {
    case SyntheticPattern::kGaussian:
    case SyntheticPattern::kUniform: break;
    case SyntheticPattern::kEqualKeys:
      for (std::size_t t = 1; t < tokens; ++t) std::copy_n(block.begin(), d, block.begin() + static_cast<std::ptrdiff_t>(t * d));
      break;
    case SyntheticPattern::kSpike: spike(tokens / 2); break;
    case SyntheticPattern::kSinks:
      for (std::size_t t = 0; t < static_cast<std::size_t>(s.sinks); ++t) spike(t);
      break;
    case SyntheticPattern::kOutliers:
      for (std::size_t t = 0; t < tokens; t += kOutlierEvery)
        block[t * d + kOutlierChannel] = static_cast<float>((t / kOutlierEvery) % 2 == 0 ? kOutlier : -kOutlier);
      break;
    case SyntheticPattern::kDenormal:
      // Without the outlier channels' x4, so that |x| < 2 keeps an element subnormal.
      for (std::size_t i = 0; i < block.size(); ++i)
        block[i] = block[i] / channel_scale(static_cast<std::int64_t>(i % d)) * subnormal_scale(s.dtype);
      break;
  }
}

// One layer of a pathological pattern: q, k (post-RoPE), k_pre_rope (k rotated back), v.
void append_pattern_layer(proofs::SafetensorsWriter& writer, const SyntheticTraceSpec& s, std::int64_t l,
                          std::size_t num_queries, std::vector<float>& block, std::vector<std::byte>& scratch) {
  const std::string prefix = "layers." + std::to_string(l) + ".";
  const auto d = static_cast<std::size_t>(s.head_dim);
  const std::vector<double> u = unit_direction(s, l);
  for (std::int64_t h = 0; h < s.num_heads; ++h) {
    SplitMix64 rng(stream_seed(s.seed, l, Stream::kQuery, h));
    pattern_queries(s, u, rng, num_queries, block);
    append_block(writer, prefix + "q", s.dtype, block, scratch);
  }
  for (std::int64_t h = 0; h < s.num_kv_heads; ++h) {
    SplitMix64 key_rng(stream_seed(s.seed, l, Stream::kKey, h));
    pattern_keys(s, u, key_rng, block);
    append_block(writer, prefix + "k", s.dtype, block, scratch);
    for (std::int64_t t = 0; t < s.num_tokens; ++t)
      apply_rope(block.data() + static_cast<std::size_t>(t) * d, s.head_dim, -t, s.rope_theta);
    append_block(writer, prefix + "k_pre_rope", s.dtype, block, scratch);

    SplitMix64 value_rng(stream_seed(s.seed, l, Stream::kValue, h));
    const float value_scale = s.pattern == SyntheticPattern::kDenormal ? subnormal_scale(s.dtype) : 1.0f;
    for (float& x : block) x = static_cast<float>(value_rng.normal()) * value_scale;
    append_block(writer, prefix + "v", s.dtype, block, scratch);
  }
}

}  // namespace

std::optional<SyntheticPattern> parse_synthetic_pattern(std::string_view name) {
  for (const auto& [pattern, spelled] : kPatternNames)
    if (spelled == name) return pattern;
  return std::nullopt;
}

std::string_view synthetic_pattern_name(SyntheticPattern pattern) {
  for (const auto& [p, spelled] : kPatternNames)
    if (p == pattern) return spelled;
  return "unknown";
}

void apply_rope(float* x, std::int64_t head_dim, std::int64_t position, double theta) noexcept {
  // The frequencies depend only on (head_dim, theta): computed once per pair of them.
  thread_local std::vector<double> inv_freq;
  thread_local std::int64_t cached_dim = 0;
  thread_local double cached_theta = 0.0;
  const std::int64_t half = head_dim / 2;
  if (cached_dim != head_dim || cached_theta != theta) {
    inv_freq.resize(static_cast<std::size_t>(half));
    for (std::int64_t i = 0; i < half; ++i)
      inv_freq[static_cast<std::size_t>(i)] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    cached_dim = head_dim;
    cached_theta = theta;
  }
  for (std::int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(position) * inv_freq[static_cast<std::size_t>(i)];
    const double c = std::cos(angle);
    const double s = std::sin(angle);
    const double a = x[i];
    const double b = x[i + half];
    x[i] = static_cast<float>(a * c - b * s);
    x[i + half] = static_cast<float>(b * c + a * s);
  }
}

namespace {

// The trace's text_source: the seed, and the pattern unless it is the default (whose metadata,
// and so bytes, stay what they were before patterns existed).
std::string synthetic_source(const SyntheticTraceSpec& s) {
  std::string pattern;
  if (s.pattern != SyntheticPattern::kGaussian) pattern = ", pattern " + std::string(synthetic_pattern_name(s.pattern));
  if (s.pattern == SyntheticPattern::kSinks) pattern += " " + std::to_string(s.sinks);
  return "synthetic (seed " + std::to_string(s.seed) + pattern + "; not model data)";
}

}  // namespace

void write_synthetic_trace(const std::filesystem::path& out, const SyntheticTraceSpec& s,
                           const std::function<void(std::int64_t)>& on_layer) {
  check_spec(out, s);
  std::vector<std::int64_t> positions;
  for (std::int64_t p = (s.num_tokens - 1) % s.query_stride; p < s.num_tokens; p += s.query_stride) positions.push_back(p);
  const auto num_queries = static_cast<std::int64_t>(positions.size());

  const bool record_positions = num_queries != s.num_tokens;
  auto specs = trace_tensor_specs({s.num_layers, s.num_heads, s.num_kv_heads, s.num_tokens, num_queries, s.head_dim}, s.dtype);

  const proofs::Metadata metadata = make_trace_metadata({
      .model_id = "synthetic",
      .model_sha256 = "none",
      .tokenizer = "none",
      .text_source = synthetic_source(s),
      .text_sha256 = "none",
      .num_tokens = s.num_tokens,
      .num_layers = s.num_layers,
      .dtype = s.dtype,
      .rope_theta = s.rope_theta,
  });
  proofs::SafetensorsWriter writer(out, std::move(specs), metadata);

  const auto d = static_cast<std::size_t>(s.head_dim);
  std::vector<float> block;
  std::vector<std::byte> scratch;
  for (std::int64_t l = 0; l < s.num_layers; ++l) {
    if (s.pattern != SyntheticPattern::kGaussian) {
      append_pattern_layer(writer, s, l, positions.size(), block, scratch);
      if (on_layer) on_layer(l);
      continue;
    }
    const std::string prefix = "layers." + std::to_string(l) + ".";
    for (std::int64_t h = 0; h < s.num_heads; ++h) {
      SplitMix64 rng(stream_seed(s.seed, l, Stream::kQuery, h));
      block.resize(positions.size() * d);
      for (std::size_t i = 0; i < positions.size(); ++i) {
        float* row = block.data() + i * d;
        for (std::size_t c = 0; c < d; ++c) row[c] = static_cast<float>(rng.normal());
        apply_rope(row, s.head_dim, positions[i], s.rope_theta);
      }
      append_block(writer, prefix + "q", s.dtype, block, scratch);
    }
    for (std::int64_t h = 0; h < s.num_kv_heads; ++h) {
      SplitMix64 key_rng(stream_seed(s.seed, l, Stream::kKey, h));
      block.resize(static_cast<std::size_t>(s.num_tokens) * d);
      for (std::size_t i = 0; i < block.size(); ++i)
        block[i] = static_cast<float>(key_rng.normal()) * channel_scale(static_cast<std::int64_t>(i % d));
      append_block(writer, prefix + "k_pre_rope", s.dtype, block, scratch);
      for (std::int64_t t = 0; t < s.num_tokens; ++t) apply_rope(block.data() + static_cast<std::size_t>(t) * d, s.head_dim, t, s.rope_theta);
      append_block(writer, prefix + "k", s.dtype, block, scratch);

      SplitMix64 value_rng(stream_seed(s.seed, l, Stream::kValue, h));
      for (float& x : block) x = static_cast<float>(value_rng.normal());
      append_block(writer, prefix + "v", s.dtype, block, scratch);
    }
    if (on_layer) on_layer(l);
  }
  if (record_positions) writer.append("query_positions", std::as_bytes(std::span(positions)));
  writer.finish();
}

}  // namespace hnf::analysis
