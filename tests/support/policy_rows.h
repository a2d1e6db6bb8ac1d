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
inline std::vector<double> expected_policy_row(const std::vector<float>& x, std::size_t d,
                                               const proofs::PrecisionPolicy& p, const proofs::ClassFormats& f,
                                               std::size_t t, std::size_t length, std::vector<double>* radius = nullptr) {
  const auto page = static_cast<std::size_t>(p.page);
  const std::size_t rows = x.size() / d;
  const std::size_t first = t / page * page, count = std::min(page, rows - first);
  const proofs::AgeClass age = proofs::age_class(p, static_cast<std::int64_t>(t), static_cast<std::int64_t>(length));
  const proofs::Format& format = proofs::class_format(f, age);
  std::vector<float> block(x.begin() + static_cast<std::ptrdiff_t>(first * d),
                           x.begin() + static_cast<std::ptrdiff_t>((first + count) * d));
  const auto row_of = [&](const auto& values) {
    return std::vector<double>(values.begin() + static_cast<std::ptrdiff_t>((t - first) * d),
                               values.begin() + static_cast<std::ptrdiff_t>((t - first + 1) * d));
  };
  if (format.axis == proofs::GroupAxis::kTokens && first + page > length) {
    if (radius) radius->assign(d, 0.0);
    return row_of(block);
  }
  std::vector<double> stored(count * d), r(count * d);
  const proofs::Format& recent = proofs::class_format(f, proofs::AgeClass::kRecent);
  if (age == proofs::AgeClass::kOld && !(recent == format)) {
    proofs::quantize_block(recent, block, count, d, stored, r);
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<float>(stored[i]);
  }
  proofs::quantize_block(format, block, count, d, stored, r);
  if (radius) *radius = row_of(r);
  return row_of(stored);
}

}  // namespace hnf::testing
