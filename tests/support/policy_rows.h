// What a precision policy's cache stores for a row, written from the policy's rules directly
// (proofs/policy.h) with the reference quantizer: the expectation both the analysis (AgedRows)
// and the runtime cache (MixedKvCache under a policy) are tested against.
#pragma once

#include <cstddef>
#include <vector>

#include "hnf/proofs/format.h"
#include "hnf/proofs/policy.h"

namespace hnf::testing {

// Row t after `length` appends: x [rows, d] the appended rows (floats) of one (layer, kv head,
// K or V), formats the policy's [sink, recent, old] for them. A page is stored in its age
// class's format; a per-channel page that is not full, exactly; an old page in the old format
// applied to the recent format's values of the whole page (unless recent == old). Returns the
// stored values and, in *radius (when given), quantize_block's radii of the last quantization.
// A block stored in format f: quantize_block, or (dither) encode_block with those draws, decoded,
// with the stochastic radius. x [count, d] -> stored, radius [count, d].
inline void store_block(const proofs::Format& f, const std::vector<float>& x, std::size_t count, std::size_t d,
                        const proofs::BlockDither* dither, std::vector<double>& stored, std::vector<double>& radius) {
  stored.assign(count * d, 0.0);
  radius.assign(count * d, 0.0);
  if (!dither || !proofs::is_integer_encoding(f.encoding)) {
    proofs::quantize_block(f, x, count, d, stored, radius);
    return;
  }
  std::vector<std::uint16_t> codes(count * d);
  std::vector<proofs::GroupParams> groups(proofs::block_group_count(f, count, d));
  proofs::encode_block(f, x, count, d, codes, groups, dither);
  proofs::for_each_block_element(f, 0, count, d, [&](std::size_t row, std::size_t column, std::size_t k) {
    stored[row * d + column] = proofs::decode_element(f.encoding, codes[row * d + column], groups[k]);
    radius[row * d + column] = proofs::stochastic_integer_radius(groups[k]);
  });
}

// A stochastic policy (p.rounding) draws with `seed` for (layer, kv_head, values) as the runtime
// and the analysis do (proofs::dither_key, first position of the page).
inline std::vector<double> expected_policy_row(const std::vector<float>& x, std::size_t d,
                                               const proofs::PrecisionPolicy& p, const proofs::ClassFormats& f,
                                               std::size_t t, std::size_t length, std::vector<double>* radius = nullptr,
                                               std::int64_t layer = 0, std::int64_t kv_head = 0, bool values = false,
                                               std::uint64_t seed = 0) {
  const auto page = static_cast<std::size_t>(p.page);
  const std::size_t rows = x.size() / d;
  const std::size_t first = t / page * page, count = std::min(page, rows - first);
  const proofs::AgeClass age = proofs::age_class(p, static_cast<std::int64_t>(t), static_cast<std::int64_t>(length));
  const proofs::Format& format = proofs::class_format(f, age);
  std::vector<float> block(x.begin() + static_cast<std::ptrdiff_t>(first * d),
                           x.begin() + static_cast<std::ptrdiff_t>((first + count) * d));
  const auto row_of = [&](const auto& source) {
    return std::vector<double>(source.begin() + static_cast<std::ptrdiff_t>((t - first) * d),
                               source.begin() + static_cast<std::ptrdiff_t>((t - first + 1) * d));
  };
  if (format.axis == proofs::GroupAxis::kTokens && first + page > length) {
    if (radius) radius->assign(d, 0.0);
    return row_of(block);
  }
  std::vector<double> stored, r;
  const bool stochastic = p.rounding == proofs::Rounding::kStochastic;
  const auto draws = [&](proofs::AgeClass a) {
    return proofs::BlockDither{proofs::dither_key(p, seed, layer, kv_head, values, a), static_cast<std::int64_t>(first)};
  };
  const proofs::Format& recent = proofs::class_format(f, proofs::AgeClass::kRecent);
  proofs::AgeClass drawn = age;
  if (age == proofs::AgeClass::kOld && !(recent == format)) {
    const auto recent_draws = draws(proofs::AgeClass::kRecent);
    store_block(recent, block, count, d, stochastic ? &recent_draws : nullptr, stored, r);
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<float>(stored[i]);
  } else if (age == proofs::AgeClass::kOld) {
    drawn = proofs::AgeClass::kRecent;  // nothing migrated: the page keeps its recent draws
  }
  const auto format_draws = draws(drawn);
  store_block(format, block, count, d, stochastic ? &format_draws : nullptr, stored, r);
  if (radius) *radius = row_of(r);
  return row_of(stored);
}

}  // namespace hnf::testing
