#include "hnf/baselines/plan_cache.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "attention_rows.h"
#include "hnf/proofs/error.h"

namespace hnf::baselines {
namespace {

using detail::dim;

void check_format(const proofs::Format& f, std::int64_t head_dim, std::int64_t layer, std::int64_t kv_head,
                  std::int64_t position) {
  if (!proofs::is_valid_format(f, static_cast<int>(head_dim))) {
    throw proofs::bad_input("storage plan", "layer " + std::to_string(layer) + " kv head " + std::to_string(kv_head) +
                                                " position " + std::to_string(position) + ": format " +
                                                proofs::format_name(f) + " is not valid for head_dim " +
                                                std::to_string(head_dim));
  }
}

// Stores rows x [rows, d] in format f and writes the stored values, rounded to fp32, to out [rows, d].
void store_rows(const proofs::Format& f, const float* x, std::size_t rows, std::size_t d, float* out) {
  std::vector<double> stored(rows * d), radius(rows * d);
  proofs::quantize_block(f, {x, rows * d}, rows, d, stored, radius);
  for (std::size_t i = 0; i < rows * d; ++i) out[i] = static_cast<float>(stored[i]);
}

// Last position of the group holding `position` in format f (itself unless per-channel).
std::int64_t release_of(const proofs::Format& f, std::int64_t position) {
  if (f.axis != proofs::GroupAxis::kTokens) return position;
  return (position / f.group_size + 1) * f.group_size - 1;
}

}  // namespace

PlanCache::PlanCache(const runtime::KvCacheShape& shape, std::int64_t capacity, StoragePlan plan,
                     std::shared_ptr<StorageMeter> meter)
    : KvCache(shape, capacity), plan_(std::move(plan)), meter_(std::move(meter)) {
  HNF_ASSERT(plan_.key_format && plan_.value_format && plan_.recent >= 0 && plan_.metadata_unit >= 1,
             "a storage plan needs both format functions");
  const auto rows = static_cast<std::size_t>(capacity * shape.head_dim);
  streams_.resize(static_cast<std::size_t>(shape.num_layers * shape.num_kv_heads));
  for (auto& s : streams_) {
    s.settled_k.resize(rows);
    s.settled_v.resize(rows);
    if (plan_.recent > 0) {
      s.recent_k.resize(rows);
      s.recent_v.resize(rows);
    }
    s.key_bits.resize(static_cast<std::size_t>(capacity));
    s.value_bits.resize(static_cast<std::size_t>(capacity));
    s.key_release.resize(static_cast<std::size_t>(capacity));
    s.key_formats.resize(static_cast<std::size_t>(capacity));
  }
}

PlanCache::~PlanCache() {
  if (meter_) meter_->add_cache(stored_bytes(), stored_elements());
}

void PlanCache::do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) {
  const std::int64_t d = head_dim();
  const auto du = static_cast<std::size_t>(d);
  for (std::int64_t g = 0; g < num_kv_heads(); ++g) {
    Stream& s = streams_[detail::stream_index(layer, g, num_kv_heads())];
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t t = first + i;
      const auto tu = static_cast<std::size_t>(t);
      const float* k_row = k + (g * n + i) * d;  // k [kv_heads, n, head_dim]
      const float* v_row = v + (g * n + i) * d;
      const proofs::Format kf = plan_.key_format(layer, g, t);
      const proofs::Format vf = plan_.value_format(layer, g, t);
      check_format(kf, d, layer, g, t);
      check_format(vf, d, layer, g, t);
      if (vf.axis == proofs::GroupAxis::kTokens) {
        throw proofs::bad_input("storage plan", "per-channel format " + proofs::format_name(vf) + " for values (keys only)");
      }
      s.key_formats[tu] = kf;
      s.key_release[tu] = release_of(kf, t);
      float* settled_k = s.settled_k.data() + tu * du;
      if (kf.axis == proofs::GroupAxis::kTokens) {
        std::copy_n(k_row, d, settled_k);  // staged in f32 until its group is cached
        s.key_bits[tu] = 32.0;
      } else {
        store_rows(kf, k_row, 1, du, settled_k);
        s.key_bits[tu] = proofs::storage_bits_per_element(kf);
      }
      store_rows(vf, v_row, 1, du, s.settled_v.data() + tu * du);
      s.value_bits[tu] = proofs::storage_bits_per_element(vf);
      if (plan_.recent > 0) {
        for (std::size_t c = 0; c < du; ++c) {
          s.recent_k[tu * du + c] = detail::round_to_fp16(k_row[c]);
          s.recent_v[tu * du + c] = detail::round_to_fp16(v_row[c]);
        }
      }
    }
    settle_key_groups(s, layer, first + n);
  }
}

// Quantizes every per-channel key group whose positions are all cached and that is still staged.
void PlanCache::settle_key_groups(Stream& s, std::int64_t layer, std::int64_t size) {
  const auto du = static_cast<std::size_t>(head_dim());
  for (std::int64_t t = 0; t < size;) {
    const proofs::Format f = s.key_formats[static_cast<std::size_t>(t)];
    if (f.axis != proofs::GroupAxis::kTokens) {
      ++t;
      continue;
    }
    const std::int64_t begin = t, end = t + f.group_size;
    if (begin % f.group_size != 0) {
      throw proofs::bad_input("storage plan", "layer " + std::to_string(layer) + ": per-channel group of " +
                                                  proofs::format_name(f) + " begins at position " + std::to_string(begin) +
                                                  ", not at a multiple of its size");
    }
    if (end > size) break;
    if (s.key_bits[static_cast<std::size_t>(begin)] == 32.0) {
      for (std::int64_t u = begin; u < end; ++u) {
        if (!(s.key_formats[static_cast<std::size_t>(u)] == f)) {
          throw proofs::bad_input("storage plan", "layer " + std::to_string(layer) + ": positions " + std::to_string(begin) +
                                                      ".." + std::to_string(end - 1) + " share a per-channel group of " +
                                                      proofs::format_name(f) + " but not its format");
        }
      }
      float* rows = s.settled_k.data() + static_cast<std::size_t>(begin) * du;
      store_rows(f, rows, static_cast<std::size_t>(f.group_size), du, rows);
      std::fill_n(s.key_bits.begin() + begin, f.group_size, proofs::storage_bits_per_element(f));
    }
    t = end;
  }
}

std::int64_t PlanCache::key_residual_start(const Stream& s, std::int64_t p) const {
  if (plan_.recent == 0) return p + 1;
  // The first t whose group's last position is among the newest `recent`: release[t] > p - recent.
  const auto it = std::upper_bound(s.key_release.begin(), s.key_release.begin() + (p + 1), p - plan_.recent);
  return static_cast<std::int64_t>(it - s.key_release.begin());
}

std::int64_t PlanCache::value_residual_start(std::int64_t p) const {
  // A value is its own group: positions p - recent + 1 .. p.
  return plan_.recent == 0 ? p + 1 : std::max<std::int64_t>(0, p - plan_.recent + 1);
}

void PlanCache::do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const {
  const std::int64_t d = head_dim();
  const std::int64_t group = num_heads() / num_kv_heads();
  const std::int64_t visible = first + n;
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const bool residual = plan_.recent > 0;
  // Scores of the n queries against the settled keys, and (residual) against the fp16 keys: [n, visible].
  std::vector<float> settled_scores(static_cast<std::size_t>(n * visible));
  std::vector<float> recent_scores(residual ? settled_scores.size() : 0);
  std::vector<float> w_settled(settled_scores.size()), w_recent(residual ? settled_scores.size() : 0);
  for (std::int64_t h = 0; h < num_heads(); ++h) {
    const Stream& s = streams_[detail::stream_index(layer, h / group, num_kv_heads())];
    const float* qh = q + h * n * d;  // q [heads, n, head_dim]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, dim(n), dim(visible), dim(d), scale, qh, dim(d),
                s.settled_k.data(), dim(d), 0.0f, settled_scores.data(), dim(visible));
    if (residual) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, dim(n), dim(visible), dim(d), scale, qh, dim(d),
                  s.recent_k.data(), dim(d), 0.0f, recent_scores.data(), dim(visible));
    }
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t p = first + i;
      const std::int64_t key_fp16_from = key_residual_start(s, p);
      const std::int64_t value_fp16_from = value_residual_start(p);
      const auto row = static_cast<std::size_t>(i * visible);
      float* score = settled_scores.data() + row;  // becomes this row's chosen scores
      for (std::int64_t t = key_fp16_from; t <= p; ++t) score[t] = recent_scores[row + static_cast<std::size_t>(t)];
      // Shift by the maximum so that exp never overflows.
      const float max_score = *std::max_element(score, score + p + 1);
      double total = 0.0;
      for (std::int64_t t = 0; t <= p; ++t) total += (score[t] = std::exp(score[t] - max_score));
      const auto inverse = static_cast<float>(1.0 / total);
      float* ws = w_settled.data() + row;
      for (std::int64_t t = 0; t < visible; ++t) ws[t] = t <= p && t < value_fp16_from ? score[t] * inverse : 0.0f;
      if (residual) {
        float* wr = w_recent.data() + row;
        for (std::int64_t t = 0; t < visible; ++t) wr[t] = t <= p && t >= value_fp16_from ? score[t] * inverse : 0.0f;
      }
    }
    float* oh = out + h * n * d;  // out [heads, n, head_dim]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dim(n), dim(d), dim(visible), 1.0f, w_settled.data(),
                dim(visible), s.settled_v.data(), dim(d), 0.0f, oh, dim(d));
    if (residual) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dim(n), dim(d), dim(visible), 1.0f, w_recent.data(),
                  dim(visible), s.recent_v.data(), dim(d), 1.0f, oh, dim(d));
    }
  }
}

double PlanCache::stored_bytes() const {
  const std::int64_t positions = size();
  if (positions == 0) return 0.0;
  const double d = static_cast<double>(head_dim());
  const std::int64_t p = positions - 1;  // as the newest position's query reads the cache
  double bits = 0.0;
  for (const Stream& s : streams_) {
    const std::int64_t key_fp16_from = key_residual_start(s, p);
    const std::int64_t value_fp16_from = value_residual_start(p);
    for (std::int64_t t = 0; t < positions; ++t) {
      const auto tu = static_cast<std::size_t>(t);
      bits += d * (t >= key_fp16_from ? 16.0 : s.key_bits[tu]);
      bits += d * (t >= value_fp16_from ? 16.0 : s.value_bits[tu]);
    }
  }
  const auto units = static_cast<double>((positions + plan_.metadata_unit - 1) / plan_.metadata_unit);
  return bits / 8.0 + static_cast<double>(streams_.size()) * units * plan_.metadata_bytes_per_unit;
}

double PlanCache::stored_elements() const {
  return 2.0 * static_cast<double>(streams_.size()) * static_cast<double>(size()) * static_cast<double>(head_dim());
}

}  // namespace hnf::baselines
