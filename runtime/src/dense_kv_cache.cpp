#include "hnf/runtime/dense_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "hnf/proofs/error.h"

namespace hnf::runtime {

namespace {
proofs::Error cache_error(const std::string& problem) { return proofs::bad_input("kv cache", problem); }
}  // namespace

DenseKvCache::DenseKvCache(std::int64_t num_kv_heads, std::int64_t head_dim, std::int64_t capacity)
    : num_kv_heads_(num_kv_heads), head_dim_(head_dim), capacity_(capacity) {
  if (num_kv_heads < 1 || head_dim < 1 || capacity < 1) throw cache_error("kv heads, head_dim and capacity must be positive");
  const auto n = static_cast<std::size_t>(num_kv_heads * head_dim * capacity);
  keys_.resize(n);
  values_.resize(n);
}

std::size_t DenseKvCache::offset(std::int64_t head, std::int64_t position) const {
  HNF_ASSERT(head >= 0 && head < num_kv_heads_ && position >= 0 && position < size_, "cache index out of range");
  return static_cast<std::size_t>((head * capacity_ + position) * head_dim_);
}

void DenseKvCache::append(std::span<const float> k, std::span<const float> v) {
  const auto row = static_cast<std::size_t>(num_kv_heads_ * head_dim_);
  if (k.size() != row || v.size() != row) {
    throw cache_error("append needs k and v of " + std::to_string(row) + " floats, got " + std::to_string(k.size()) +
                      " and " + std::to_string(v.size()));
  }
  if (size_ == capacity_) throw cache_error("append past capacity " + std::to_string(capacity_));
  const std::int64_t position = size_++;
  for (std::int64_t h = 0; h < num_kv_heads_; ++h) {
    const auto src = static_cast<std::size_t>(h * head_dim_);
    const std::size_t dst = offset(h, position);
    std::copy_n(k.begin() + static_cast<std::ptrdiff_t>(src), head_dim_, keys_.begin() + static_cast<std::ptrdiff_t>(dst));
    std::copy_n(v.begin() + static_cast<std::ptrdiff_t>(src), head_dim_, values_.begin() + static_cast<std::ptrdiff_t>(dst));
  }
}

std::span<const float> DenseKvCache::key(std::int64_t head, std::int64_t position) const {
  return {keys_.data() + offset(head, position), static_cast<std::size_t>(head_dim_)};
}

std::span<const float> DenseKvCache::value(std::int64_t head, std::int64_t position) const {
  return {values_.data() + offset(head, position), static_cast<std::size_t>(head_dim_)};
}

void DenseKvCache::attend(std::int64_t head, std::span<const float> q, std::span<float> out) const {
  const auto d = static_cast<std::size_t>(head_dim_);
  HNF_ASSERT(q.size() == d && out.size() == d, "attend: q and out must have head_dim elements");
  HNF_ASSERT(size_ > 0, "attend on an empty cache");
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  std::vector<double> scores(static_cast<std::size_t>(size_));
  double max_score = -INFINITY;
  for (std::int64_t t = 0; t < size_; ++t) {
    const auto k = key(head, t);
    double dot = 0.0;
    for (std::size_t i = 0; i < d; ++i) dot += static_cast<double>(q[i]) * k[i];
    scores[static_cast<std::size_t>(t)] = dot * scale;
    max_score = std::max(max_score, dot * scale);
  }
  double total = 0.0;
  for (double& s : scores) total += (s = std::exp(s - max_score));  // shifted for overflow safety
  std::vector<double> acc(d, 0.0);
  for (std::int64_t t = 0; t < size_; ++t) {
    const double weight = scores[static_cast<std::size_t>(t)] / total;
    const auto v = value(head, t);
    for (std::size_t i = 0; i < d; ++i) acc[i] += weight * v[i];
  }
  for (std::size_t i = 0; i < d; ++i) out[i] = static_cast<float>(acc[i]);
}

}  // namespace hnf::runtime
