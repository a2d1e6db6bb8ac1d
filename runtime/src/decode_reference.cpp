// The scalar reference decode, read_position, and the page-format vocabulary mapping.
#include <algorithm>
#include <cmath>
#include <vector>

#include "hnf/proofs/directed.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"
#include "hnf/runtime/block_format.h"
#include "hnf/runtime/decode_attention.h"

namespace hnf::runtime {

PageFormat page_format(const proofs::Format& f) {
  PageFormat p{};
  p.encoding = static_cast<std::uint8_t>(f.encoding);
  p.axis = static_cast<std::uint8_t>(f.axis);
  p.bits = static_cast<std::uint8_t>(proofs::code_bits(f.encoding));
  p.group = static_cast<std::uint16_t>(f.group_size);
  return p;
}

PageFormat staged_page_format() {
  PageFormat p{};
  p.encoding = kPageStagedF32;
  p.axis = kAxisNone;
  p.bits = 32;
  return p;
}

proofs::Format vocabulary_format(const PageFormat& f) {
  HNF_ASSERT(f.encoding != kPageStagedF32, "the staging layout is not a vocabulary format");
  return {static_cast<proofs::Encoding>(f.encoding), static_cast<proofs::GroupAxis>(f.axis), f.group};
}

std::string page_format_name(const PageFormat& f) {
  return f.encoding == kPageStagedF32 ? "f32-staged" : proofs::format_name(vocabulary_format(f));
}

namespace {

// Stored values and radii of row `row` of one page side (keys or values) in format f.
// out, radius [head_dim].
void read_row(const std::uint8_t* data, const PageFormat& f, int page_size, int head_dim, int row, double* out,
              double* radius) {
  const auto d = static_cast<std::size_t>(head_dim);
  if (f.encoding == kPageStagedF32) {
    const auto* x = reinterpret_cast<const float*>(data) + static_cast<std::size_t>(row) * d;
    for (std::size_t c = 0; c < d; ++c) {
      out[c] = x[c];
      radius[c] = 0.0;
    }
    return;
  }
  if (f.axis == kAxisNone) {
    const auto* x = reinterpret_cast<const std::uint16_t*>(data) + static_cast<std::size_t>(row) * d;
    const auto encoding = static_cast<proofs::Encoding>(f.encoding);
    for (std::size_t c = 0; c < d; ++c) {
      out[c] = f.encoding == kPageF16 ? proofs::half_bits_to_float(x[c]) : proofs::bf16_bits_to_float(x[c]);
      radius[c] = proofs::float_format_radius(encoding, x[c]);
    }
    return;
  }
  const std::size_t group_bytes = integer_group_bytes(f.bits, f.group);
  const auto value_of = [&](const std::uint8_t* group, std::size_t i, double* value, double* r) {
    proofs::GroupParams p{};
    std::copy_n(group, 2, reinterpret_cast<std::uint8_t*>(&p.scale_f16));
    std::copy_n(group + 2, 2, reinterpret_cast<std::uint8_t*>(&p.zero_f16));
    *value = proofs::dequantize_code(unpack_code(group + 4, f.bits, i), p);
    *r = f.rounding == 1 ? proofs::stochastic_integer_radius(p) : proofs::integer_radius(p);
  };
  if (f.axis == kAxisHeadDim) {
    const std::size_t groups = d / f.group;
    for (std::size_t c = 0; c < d; ++c) {
      const std::uint8_t* group = data + (static_cast<std::size_t>(row) * groups + c / f.group) * group_bytes;
      value_of(group, c % f.group, out + c, radius + c);
    }
    return;
  }
  HNF_ASSERT(f.group == page_size, "a token-group page holds exactly one group of page_size positions");
  for (std::size_t c = 0; c < d; ++c) value_of(data + c * group_bytes, static_cast<std::size_t>(row), out + c, radius + c);
}

// A re-quantized integer side: x was first stored as a float y (fp16/bf16, radius r_f(y)), and
// y as the integer value out (|y - out| <= radius). So |x - out| <= radius + r_f(y), and
// |y| <= |out| + radius bounds r_f(y) (THEORY.md section 14.3).
void add_origin_radius(const PageFormat& f, int head_dim, const double* out, double* radius) {
  if (f.origin == kOriginAppended) return;
  HNF_ASSERT(f.origin == kOriginFromF16 || f.origin == kOriginFromBF16, "a known page origin");
  const auto from = f.origin == kOriginFromF16 ? proofs::Encoding::kF16 : proofs::Encoding::kBF16;
  for (std::size_t c = 0; c < static_cast<std::size_t>(head_dim); ++c) {
    const double size = proofs::add_up(std::fabs(out[c]), radius[c]);
    radius[c] = proofs::add_up(radius[c], proofs::float_radius_at_most(from, size));
  }
}

}  // namespace

namespace {

enum class Side { kKeys, kValues };

// The stored row and radii of position t on one side of its page. out, radius [head_dim].
void read_side(const StreamView& stream, std::int64_t t, Side side, double* out, double* radius) {
  HNF_ASSERT(t >= 0, "position is not negative");
  const std::int64_t page = t / stream.page_size;
  HNF_ASSERT(page < stream.num_pages, "position is in the stream");
  const PageRef& p = stream.pages[page];
  const auto row = static_cast<int>(t % stream.page_size);
  HNF_ASSERT(row < p.rows, "position is in the stream");
  const PageFormat& f = side == Side::kKeys ? p.key_format : p.value_format;
  read_row(side == Side::kKeys ? p.keys : p.values, f, stream.page_size, stream.head_dim, row, out, radius);
  add_origin_radius(f, stream.head_dim, out, radius);
}

}  // namespace

void read_position(const StreamView& stream, std::int64_t t, double* key, double* value, double* key_radius,
                   double* value_radius) {
  read_side(stream, t, Side::kKeys, key, key_radius);
  read_side(stream, t, Side::kValues, value, value_radius);
}

namespace {
void read_side_law(const StreamView& stream, std::int64_t t, Side side, const SideRead& out) {
  const PageRef& p = stream.pages[t / stream.page_size];
  const auto row = static_cast<int>(t % stream.page_size);
  const PageFormat& f = side == Side::kKeys ? p.key_format : p.value_format;
  read_row(side == Side::kKeys ? p.keys : p.values, f, stream.page_size, stream.head_dim, row, out.value, out.radius);
  const auto d = static_cast<std::size_t>(stream.head_dim);
  const bool stochastic = f.rounding == 1;
  for (std::size_t c = 0; c < d; ++c) {
    // The own quantization: stochastic codes err by a random part in an interval of length s (the
    // radius is s(1 + 2^-40) >= s) with a mean within s 2^-30; other formats' error is all bias.
    const double own = out.radius[c];
    out.proxy[c] = stochastic ? proofs::mul_up(proofs::mul_up(own, own), 0.25) : 0.0;
    out.bias[c] = stochastic ? own * proofs::kStochasticBiasFraction : own;
  }
  if (f.origin == kOriginAppended) return;
  std::vector<double> carried(out.radius, out.radius + d);
  add_origin_radius(f, stream.head_dim, out.value, carried.data());  // own + the float rounding before it
  for (std::size_t c = 0; c < d; ++c) {
    out.bias[c] = proofs::add_up(out.bias[c], proofs::sub_up(carried[c], out.radius[c]));
    out.radius[c] = carried[c];
  }
}
}  // namespace

void read_position_law(const StreamView& stream, std::int64_t t, const SideRead& key, const SideRead& value) {
  HNF_ASSERT(t >= 0 && t / stream.page_size < stream.num_pages, "position is in the stream");
  read_side_law(stream, t, Side::kKeys, key);
  read_side_law(stream, t, Side::kValues, value);
}

void decode_attention_reference(const StreamView& stream, std::int64_t positions, const float* q, int group,
                                float scale, float* out) {
  HNF_ASSERT(positions >= 1 && group >= 1, "decode needs a position and a query");
  const auto d = static_cast<std::size_t>(stream.head_dim);
  const auto n = static_cast<std::size_t>(positions);
  std::vector<double> row(d), radius(d);  // one position's stored keys (first pass) or values (second)
  std::vector<double> scores(n * static_cast<std::size_t>(group));  // [group, positions]
  for (std::size_t t = 0; t < n; ++t) {
    read_side(stream, static_cast<std::int64_t>(t), Side::kKeys, row.data(), radius.data());
    for (std::size_t g = 0; g < static_cast<std::size_t>(group); ++g) {
      double dot = 0.0;
      for (std::size_t c = 0; c < d; ++c) dot += static_cast<double>(q[g * d + c]) * row[c];
      scores[g * n + t] = dot * static_cast<double>(scale);
    }
  }
  std::vector<double> acc(d * static_cast<std::size_t>(group), 0.0);  // [group, head_dim]
  std::vector<double> total(static_cast<std::size_t>(group), 0.0);
  for (std::size_t g = 0; g < static_cast<std::size_t>(group); ++g) {
    double* s = scores.data() + g * n;
    const double m = *std::max_element(s, s + n);
    for (std::size_t t = 0; t < n; ++t) total[g] += (s[t] = std::exp(s[t] - m));
  }
  for (std::size_t t = 0; t < n; ++t) {
    read_side(stream, static_cast<std::int64_t>(t), Side::kValues, row.data(), radius.data());
    for (std::size_t g = 0; g < static_cast<std::size_t>(group); ++g) {
      const double w = scores[g * n + t];
      for (std::size_t c = 0; c < d; ++c) acc[g * d + c] += w * row[c];
    }
  }
  for (std::size_t g = 0; g < static_cast<std::size_t>(group); ++g) {
    for (std::size_t c = 0; c < d; ++c) out[g * d + c] = static_cast<float>(acc[g * d + c] / total[g]);
  }
}

}  // namespace hnf::runtime
