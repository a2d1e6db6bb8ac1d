#include "hnf/baselines/h2o_cache.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "attention_rows.h"
#include "hnf/proofs/error.h"

namespace hnf::baselines {

using detail::dim;

H2oCache::H2oCache(const runtime::KvCacheShape& shape, std::int64_t capacity, H2oOptions options,
                   std::shared_ptr<StorageMeter> meter)
    : KvCache(shape, capacity), options_(options), meter_(std::move(meter)) {
  if (options.recent < 0 || options.keep <= options.recent) {
    throw proofs::bad_input("h2o cache", "keep (" + std::to_string(options.keep) + ") must exceed recent (" +
                                             std::to_string(options.recent) + ") >= 0: at least one heavy hitter");
  }
  const auto d = static_cast<std::size_t>(shape.head_dim);
  const auto slots = static_cast<std::size_t>(options.keep + 1);
  streams_.resize(static_cast<std::size_t>(shape.num_layers * shape.num_kv_heads));
  for (auto& s : streams_) {
    s.pending_k.resize(static_cast<std::size_t>(capacity) * d);
    s.pending_v.resize(static_cast<std::size_t>(capacity) * d);
    s.kept_k.resize(slots * d);
    s.kept_v.resize(slots * d);
    s.kept_position.resize(slots);
    s.score.resize(slots);
  }
}

H2oCache::~H2oCache() {
  if (meter_) meter_->add_cache(stored_bytes(), stored_elements());
}

void H2oCache::do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) {
  const std::int64_t d = head_dim();
  for (std::int64_t g = 0; g < num_kv_heads(); ++g) {
    Stream& s = streams_[detail::stream_index(layer, g, num_kv_heads())];
    for (std::int64_t i = 0; i < n * d; ++i) {  // k, v [kv_heads, n, head_dim]
      s.pending_k[static_cast<std::size_t>(first * d + i)] = detail::round_to_fp16(k[g * n * d + i]);
      s.pending_v[static_cast<std::size_t>(first * d + i)] = detail::round_to_fp16(v[g * n * d + i]);
    }
  }
}

void H2oCache::do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const {
  const std::int64_t d = head_dim();
  const auto du = static_cast<std::size_t>(d);
  const std::int64_t group = num_heads() / num_kv_heads();
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  std::vector<float> w(static_cast<std::size_t>(options_.keep + 1));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t p = first + i;
    for (std::int64_t g = 0; g < num_kv_heads(); ++g) {
      Stream& s = streams_[detail::stream_index(layer, g, num_kv_heads())];
      // The query's own position joins the set.
      const auto slot = static_cast<std::size_t>(s.count++);
      std::copy_n(s.pending_k.begin() + static_cast<std::ptrdiff_t>(p * d), d, s.kept_k.begin() + static_cast<std::ptrdiff_t>(slot * du));
      std::copy_n(s.pending_v.begin() + static_cast<std::ptrdiff_t>(p * d), d, s.kept_v.begin() + static_cast<std::ptrdiff_t>(slot * du));
      s.kept_position[slot] = p;
      s.score[slot] = 0.0;
      const auto count = static_cast<std::size_t>(s.count);
      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        const float* qh = q + (h * n + i) * d;  // q [heads, n, head_dim]
        float* oh = out + (h * n + i) * d;      // out [heads, n, head_dim]
        // w [count] = kept_k [count, d] . q / sqrt(d), then softmax (shifted by its maximum).
        cblas_sgemv(CblasRowMajor, CblasNoTrans, dim(s.count), dim(d), scale, s.kept_k.data(), dim(d), qh, 1, 0.0f,
                    w.data(), 1);
        const float max_score = *std::max_element(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(count));
        double total = 0.0;
        for (std::size_t j = 0; j < count; ++j) total += (w[j] = std::exp(w[j] - max_score));
        const auto inverse = static_cast<float>(1.0 / total);
        for (std::size_t j = 0; j < count; ++j) {
          w[j] *= inverse;
          s.score[j] += static_cast<double>(w[j]);
        }
        // oh [d] = kept_v [count, d]^T . w
        cblas_sgemv(CblasRowMajor, CblasTrans, dim(s.count), dim(d), 1.0f, s.kept_v.data(), dim(d), w.data(), 1, 0.0f,
                    oh, 1);
      }
      if (s.count <= options_.keep) continue;
      // Evict the older position with the least attention so far (never one of the `recent` newest).
      std::size_t victim = count;
      for (std::size_t j = 0; j < count; ++j) {
        if (s.kept_position[j] > p - options_.recent) continue;
        if (victim == count || s.score[j] < s.score[victim]) victim = j;
      }
      HNF_ASSERT(victim < count, "keep > recent leaves an older position to evict");
      const std::size_t last = count - 1;
      std::copy_n(s.kept_k.begin() + static_cast<std::ptrdiff_t>(last * du), d, s.kept_k.begin() + static_cast<std::ptrdiff_t>(victim * du));
      std::copy_n(s.kept_v.begin() + static_cast<std::ptrdiff_t>(last * du), d, s.kept_v.begin() + static_cast<std::ptrdiff_t>(victim * du));
      s.kept_position[victim] = s.kept_position[last];
      s.score[victim] = s.score[last];
      --s.count;
    }
  }
}

double H2oCache::stored_bytes() const {
  double kept = 0.0;
  for (const Stream& s : streams_) kept += static_cast<double>(s.count);
  return kept * (4.0 * static_cast<double>(head_dim()) + 4.0);  // K, V rows in fp16 + one fp32 score
}

double H2oCache::stored_elements() const {
  return 2.0 * static_cast<double>(streams_.size()) * static_cast<double>(size()) * static_cast<double>(head_dim());
}

std::vector<std::int64_t> H2oCache::kept_positions(std::int64_t layer, std::int64_t kv_head) const {
  const Stream& s = streams_[detail::stream_index(layer, kv_head, num_kv_heads())];
  return {s.kept_position.begin(), s.kept_position.begin() + static_cast<std::ptrdiff_t>(s.count)};
}

}  // namespace hnf::baselines
