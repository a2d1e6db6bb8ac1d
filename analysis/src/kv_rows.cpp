#include "hnf/analysis/kv_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "hnf/proofs/error.h"
#include "hnf/proofs/float16.h"

namespace hnf::analysis {

using proofs::Dtype;

namespace {

// The float of every fp16 bit pattern (256 KB, built once): the exact rows of an F16 trace are
// decoded for every query of every enclosure, where half_bits_to_float's branches were the hot spot.
const std::vector<float>& half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(1u << 16);
    for (std::uint32_t h = 0; h < t.size(); ++h) t[h] = proofs::half_bits_to_float(static_cast<std::uint16_t>(h));
    return t;
  }();
  return table;
}

}  // namespace

StoredRows::StoredRows(const proofs::SafetensorsFile& file, const std::string& path, const proofs::TensorInfo& tensor,
                       std::int64_t outer, std::int64_t first, std::int64_t count, Values values)
    : dtype_(tensor.dtype), rows_(static_cast<std::size_t>(count)), dim_(static_cast<std::size_t>(tensor.shape[2])) {
  HNF_ASSERT(dtype_ == Dtype::kF32 || dtype_ == Dtype::kF16 || dtype_ == Dtype::kBF16,
             "trace tensors are F32, F16 or BF16 (Trace::open checks)");
  const std::size_t element = proofs::dtype_size(dtype_);
  const auto begin = static_cast<std::uint64_t>((outer * tensor.shape[1] + first) * tensor.shape[2]);
  const auto bytes = file.bytes(tensor).subspan(begin * element, rows_ * dim_ * element);
  bytes_.assign(bytes.begin(), bytes.end());
  // Keys and values are checked here, before any quantizer runs inside a parallel loop (where an
  // exception would end the process).
  const bool storable = values == Values::kCacheStorable;
  for (std::size_t i = 0; i < rows_ * dim_; ++i) {
    const float x = proofs::load_float(dtype_, bytes_.data(), i);
    if (storable ? proofs::integer_storable(x) : std::isfinite(x)) continue;
    const auto flat = begin + i;
    const std::string where = " at element " + std::to_string(flat) + " (row " + std::to_string(flat / dim_) + ")";
    if (!std::isfinite(x)) throw proofs::bad_input(path, "tensor " + tensor.name + " holds a non-finite value" + where);
    throw proofs::bad_input(path, "tensor " + tensor.name + " holds " + fmt::format("{}", x) + where + ", which " +
                                      proofs::integer_value_problem(x) + ": no cache format stores it");
  }
}

namespace {

// Decodes n elements of dtype from data into out (float or double: the widening is exact), with
// one branch per call, not per element (load_float's switch was the hot spot).
template <class T>
void decode_elements(Dtype dtype, const std::byte* data, std::size_t n, T* out) {
  if (dtype == Dtype::kF32) {
    for (std::size_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, data + 4 * i, 4);
      out[i] = f;
    }
    return;
  }
  const bool half = dtype == Dtype::kF16;
  const std::vector<float>& table = half_table();
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, data + 2 * i, 2);
    out[i] = half ? table[bits] : proofs::bf16_bits_to_float(bits);
  }
}

}  // namespace

void StoredRows::read_floats(std::size_t first, std::size_t count, float* out) const {
  HNF_ASSERT(first <= rows_ && count <= rows_ - first, "StoredRows::read past the last row");
  decode_elements(dtype_, bytes_.data() + first * dim_ * proofs::dtype_size(dtype_), count * dim_, out);
}

void StoredRows::read(std::size_t first, std::size_t count, double* out) const {
  HNF_ASSERT(first <= rows_ && count <= rows_ - first, "StoredRows::read past the last row");
  decode_elements(dtype_, bytes_.data() + first * dim_ * proofs::dtype_size(dtype_), count * dim_, out);
}

QuantizedRows::QuantizedRows(std::size_t rows, std::size_t dim, std::size_t block)
    : rows_(rows), dim_(dim), block_(block) {
  HNF_ASSERT(block > 0 && dim > 0, "a quantized matrix has a positive block and dim");
  const std::size_t units = (rows + block - 1) / block;
  for (const proofs::Format& f : proofs::format_vocabulary(static_cast<int>(dim)))
    group_capacity_ = std::max(group_capacity_, proofs::block_group_count(f, block, dim));
  formats_.resize(units);
  assigned_.assign(units, 0);
  low_.resize(rows * dim);
  high_.resize(units);
  groups_.resize(units * group_capacity_);
}

bool QuantizedRows::holds(std::size_t unit, const proofs::Format& f) const noexcept {
  return assigned_[unit] != 0 && formats_[unit] == f;
}

void QuantizedRows::assign(std::size_t unit, const proofs::Format& f, std::span<const float> x,
                           const proofs::BlockDither* dither) {
  const std::size_t first = unit * block_;
  const std::size_t count = std::min(block_, rows_ - first);
  HNF_ASSERT(x.size() == count * dim_, "assign: x must hold the unit's rows");
  const std::size_t group_count = proofs::block_group_count(f, count, dim_);
  HNF_ASSERT(group_count <= group_capacity_, "a unit's groups fit the capacity of a full block");
  std::vector<std::uint16_t> codes(count * dim_);
  proofs::encode_block(f, x, count, dim_, codes, std::span(groups_).subspan(unit * group_capacity_, group_count), dither);
  std::uint8_t* low = low_.data() + first * dim_;
  for (std::size_t i = 0; i < codes.size(); ++i) low[i] = static_cast<std::uint8_t>(codes[i] & 0xffu);
  if (proofs::is_integer_encoding(f.encoding)) {
    std::vector<std::uint8_t>().swap(high_[unit]);
  } else {
    high_[unit].resize(codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) high_[unit][i] = static_cast<std::uint8_t>(codes[i] >> 8);
  }
  formats_[unit] = f;
  assigned_[unit] = 1;
}

void QuantizedRows::read(std::size_t first, std::size_t count, double* out) const {
  HNF_ASSERT(first <= rows_ && count <= rows_ - first, "QuantizedRows::read past the last row");
  std::vector<double> zero(group_capacity_), scale(group_capacity_);
  std::size_t t = first;
  const std::size_t end = first + count;
  while (t < end) {
    const std::size_t unit = t / block_;
    const std::size_t unit_first = unit * block_;
    const std::size_t stop = std::min(end, std::min(rows_, unit_first + block_));
    HNF_ASSERT(assigned_[unit] != 0, "QuantizedRows::read of a unit never assigned");
    const proofs::Format& f = formats_[unit];
    const std::uint8_t* low = low_.data() + t * dim_;
    double* o = out + (t - first) * dim_;
    const std::size_t n = (stop - t) * dim_;
    if (!proofs::is_integer_encoding(f.encoding)) {
      const std::uint8_t* high = high_[unit].data() + (t - unit_first) * dim_;
      for (std::size_t i = 0; i < n; ++i)
        o[i] = proofs::decode_element(f.encoding, static_cast<std::uint16_t>(high[i] << 8 | low[i]), {});
    } else {
      // Each group's zero point and scale once per read, then z + s*c per element: exactly the
      // value decode_element gives (z + s*c is exact, proofs/format.h).
      const std::size_t rows_in_unit = std::min(block_, rows_ - unit_first);
      const std::size_t group_count = proofs::block_group_count(f, rows_in_unit, dim_);
      const proofs::GroupParams* groups = groups_.data() + unit * group_capacity_;
      for (std::size_t k = 0; k < group_count; ++k) {
        zero[k] = static_cast<double>(proofs::half_bits_to_float(groups[k].zero_f16));
        scale[k] = static_cast<double>(proofs::half_bits_to_float(groups[k].scale_f16));
      }
      const std::size_t row0 = t - unit_first;
      proofs::for_each_block_element(f, row0, stop - unit_first, dim_,
                                     [&](std::size_t row, std::size_t column, std::size_t k) {
                                       const std::size_t i = (row - row0) * dim_ + column;
                                       o[i] = zero[k] + scale[k] * static_cast<double>(low[i]);
                                     });
    }
    t = stop;
  }
}

AgedRows::AgedRows(const StoredRows& exact, const proofs::PrecisionPolicy& policy, const proofs::ClassFormats& formats,
                   std::int64_t layer, std::int64_t kv_head, bool values)
    : exact_(&exact), formats_(formats), rows_(exact.rows()), dim_(exact.dim()) {
  rule_.page = policy.page;
  rule_.sink_pages = policy.sink_pages;
  rule_.recent_pages = policy.recent_pages;
  const auto page = static_cast<std::size_t>(policy.page);
  const proofs::Format& recent = proofs::class_format(formats, proofs::AgeClass::kRecent);
  const proofs::Format& old = proofs::class_format(formats, proofs::AgeClass::kOld);
  old_is_recent_ = recent == old;
  HNF_ASSERT(old_is_recent_ || !proofs::is_integer_encoding(recent.encoding),
             "a recent format that migrates is fp16 or bf16 (proofs::policy_problem)");
  sink_ = QuantizedRows(rows_, dim_, page);
  recent_ = QuantizedRows(rows_, dim_, page);
  old_ = QuantizedRows(rows_, dim_, page);
  for (auto& n : norms_) n.assign(rows_, 0.0);
  std::vector<float> x(page * dim_);
  std::vector<double> stored(page * dim_);
  auto record_norms = [&](const RowSource& source, Version v, std::size_t first, std::size_t count) {
    source.read(first, count, stored.data());
    for (std::size_t r = 0; r < count; ++r) {
      norms_[static_cast<std::size_t>(v)][first + r] = norm_up(stored.data() + r * dim_, dim_, 0);
    }
  };
  const bool stochastic = policy.rounding == proofs::Rounding::kStochastic;
  auto dither = [&](proofs::AgeClass age, std::size_t first) {
    return proofs::BlockDither{proofs::dither_key(policy, policy.calibration_seed, layer, kv_head, values, age),
                               static_cast<std::int64_t>(first)};
  };
  for (std::size_t u = 0, first = 0; first < rows_; ++u, first += page) {
    const std::size_t count = std::min(page, rows_ - first);
    const auto sink_draws = dither(proofs::AgeClass::kSink, first), recent_draws = dither(proofs::AgeClass::kRecent, first),
               old_draws = dither(proofs::AgeClass::kOld, first);
    const std::span<float> unit_x(x.data(), count * dim_);
    exact.read_floats(first, count, unit_x.data());
    record_norms(exact, Version::kExact, first, count);
    if (static_cast<std::int64_t>(u) < policy.sink_pages) {
      sink_.assign(u, proofs::class_format(formats, proofs::AgeClass::kSink), unit_x, stochastic ? &sink_draws : nullptr);
      record_norms(sink_, Version::kSink, first, count);
      continue;
    }
    recent_.assign(u, recent, unit_x, stochastic ? &recent_draws : nullptr);
    record_norms(recent_, Version::kRecent, first, count);
    if (old_is_recent_) continue;
    // Re-quantized from what the cache holds: the recent copy's fp16/bf16 values, which are
    // floats, so the conversion below is exact.
    recent_.read(first, count, stored.data());
    for (std::size_t i = 0; i < count * dim_; ++i) unit_x[i] = static_cast<float>(stored[i]);
    old_.assign(u, old, unit_x, stochastic ? &old_draws : nullptr);
    record_norms(old_, Version::kOld, first, count);
  }
}

AgedRows::Version AgedRows::version(std::size_t page, std::size_t length) const noexcept {
  const auto p = static_cast<std::size_t>(rule_.page);
  const proofs::AgeClass age =
      proofs::age_class(rule_, static_cast<std::int64_t>(page * p), static_cast<std::int64_t>(length));
  if (proofs::class_format(formats_, age).axis == proofs::GroupAxis::kTokens && (page + 1) * p > length) {
    return Version::kExact;  // a per-channel page waits for its last position in f32
  }
  switch (age) {
    case proofs::AgeClass::kSink: return Version::kSink;
    case proofs::AgeClass::kRecent: return Version::kRecent;
    case proofs::AgeClass::kOld: break;
  }
  return old_is_recent_ ? Version::kRecent : Version::kOld;
}

const RowSource& AgedRows::source(Version v) const noexcept {
  switch (v) {
    case Version::kExact: return *exact_;
    case Version::kSink: return sink_;
    case Version::kRecent: return recent_;
    case Version::kOld: break;
  }
  return old_;
}

void AgedRows::State::read(std::size_t first, std::size_t count, double* out) const {
  HNF_ASSERT(first <= length_ && count <= length_ - first, "AgedRows::State::read past the state's length");
  const auto p = static_cast<std::size_t>(rows_->rule_.page);
  for (std::size_t t = first, end = first + count; t < end;) {
    const std::size_t page = t / p;
    const std::size_t stop = std::min(end, (page + 1) * p);
    rows_->source(rows_->version(page, length_)).read(t, stop - t, out + (t - first) * rows_->dim_);
    t = stop;
  }
}

void AgedRows::norms_up(std::size_t length, std::vector<double>& out) const {
  HNF_ASSERT(length <= rows_, "AgedRows::norms_up past the last row");
  out.resize(length);
  const auto p = static_cast<std::size_t>(rule_.page);
  for (std::size_t first = 0; first < length; first += p) {
    const std::size_t stop = std::min(length, first + p);
    const auto& norms = norms_[static_cast<std::size_t>(version(first / p, length))];
    std::copy(norms.begin() + static_cast<std::ptrdiff_t>(first), norms.begin() + static_cast<std::ptrdiff_t>(stop),
              out.begin() + static_cast<std::ptrdiff_t>(first));
  }
}

}  // namespace hnf::analysis
