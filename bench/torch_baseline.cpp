#include "torch_baseline.h"

#include <torch/torch.h>
#include <torch/version.h>

#include "hnf/proofs/error.h"

namespace hnf::bench {

void torch_set_threads(int threads) { torch::set_num_threads(threads); }
int torch_threads() { return torch::get_num_threads(); }
std::string torch_version() { return TORCH_VERSION; }

struct TorchAttention::Impl {
  torch::Tensor keys, values;  // [kv_heads, capacity, head_dim]
  int kv_heads = 0, head_dim = 0;
  std::int64_t capacity = 0;
};

TorchAttention::TorchAttention(const float* keys, const float* values, int kv_heads, std::int64_t capacity,
                               int head_dim)
    : impl_(std::make_unique<Impl>()) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat32);
  impl_->keys = torch::from_blob(const_cast<float*>(keys), {kv_heads, capacity, head_dim}, options);
  impl_->values = torch::from_blob(const_cast<float*>(values), {kv_heads, capacity, head_dim}, options);
  impl_->kv_heads = kv_heads;
  impl_->head_dim = head_dim;
  impl_->capacity = capacity;
}

TorchAttention::~TorchAttention() = default;

void TorchAttention::decode(const float* q, int heads, std::int64_t positions, float scale, float* out) const {
  HNF_ASSERT(positions >= 1 && positions <= impl_->capacity && heads % impl_->kv_heads == 0,
             "decode over the stored positions with whole query groups");
  c10::InferenceMode guard;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32);
  const int group = heads / impl_->kv_heads;
  const auto query = torch::from_blob(const_cast<float*>(q), {impl_->kv_heads, group, impl_->head_dim}, options);
  auto result = torch::from_blob(out, {impl_->kv_heads, group, impl_->head_dim}, options);
  const auto k = impl_->keys.narrow(1, 0, positions);    // [kv, P, D], each head contiguous
  const auto v = impl_->values.narrow(1, 0, positions);
  const auto scores = torch::bmm(query, k.transpose(1, 2)).mul_(scale);  // [kv, group, P]
  const auto probs = torch::softmax(scores, -1);
  torch::bmm_out(result, probs, v);  // [kv, group, D], written into out
}

}  // namespace hnf::bench
