// Pages under a precision policy (proofs/policy.h, THEORY.md section 14.1): the one place the
// runtime applies a policy's age rules. MixedKvCache appends through append_policy_position;
// OwnedPolicyStream builds one stream in memory the same way (tests, and certify's prediction
// of the guard on its calibration trace).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "hnf/proofs/policy.h"
#include "hnf/runtime/kv_pages.h"
#include "hnf/runtime/page_codec.h"

namespace hnf::runtime {

// Appends position `position` (the stream's next) of one (layer, kv head): when it opens a page,
// the page that leaves the recent window is re-quantized to the old formats (PageWriter::migrate),
// and the new page opens in the sink or recent formats. key, value [head_dim]. Bad input as
// PageWriter::append.
void append_policy_position(PageWriter& writer, std::vector<PageRef>& pages, const proofs::PrecisionPolicy& policy,
                            const proofs::HeadPolicy& head, std::int64_t position, const float* key, const float* value,
                            const PageWriter::Allocate& allocate, const PageWriter::Release& release);

// One stream of a policy cache, in memory (page sides allocated one by one, released sides reused).
class OwnedPolicyStream {
 public:
  // head: the policy's entry for this stream; policy must be well formed (policy_problem empty).
  // A stochastic policy's codes use the draws of `seed` for stream layer * kv_heads + kv_head.
  OwnedPolicyStream(const proofs::PrecisionPolicy& policy, const proofs::HeadPolicy& head, int head_dim,
                    std::uint64_t seed = 0);
  OwnedPolicyStream(const OwnedPolicyStream&) = delete;
  OwnedPolicyStream& operator=(const OwnedPolicyStream&) = delete;
  // Appends the next position: key, value [head_dim].
  void append(const float* key, const float* value);
  [[nodiscard]] std::int64_t size() const noexcept { return size_; }
  [[nodiscard]] StreamView view() const noexcept {
    return {pages_.data(), static_cast<std::int64_t>(pages_.size()), rule_.page, head_dim_};
  }

 private:
  proofs::PrecisionPolicy rule_;  // page and age rule (entries empty)
  proofs::HeadPolicy head_;
  int head_dim_;
  std::int64_t size_ = 0;
  PageWriter writer_;
  std::vector<PageRef> pages_;
  std::vector<std::unique_ptr<std::uint8_t[]>> blocks_;
  std::multimap<std::size_t, std::uint8_t*> released_;  // size -> a released side of blocks_
};

}  // namespace hnf::runtime
