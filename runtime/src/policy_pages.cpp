#include "hnf/runtime/policy_pages.h"

#include "hnf/proofs/error.h"
#include "hnf/runtime/decode_attention.h"

namespace hnf::runtime {

void append_policy_position(PageWriter& writer, std::vector<PageRef>& pages, const proofs::PrecisionPolicy& policy,
                            const proofs::HeadPolicy& head, std::int64_t position, const float* key, const float* value,
                            const PageWriter::Allocate& allocate, const PageWriter::Release& release) {
  HNF_ASSERT(position == (pages.empty() ? 0 : static_cast<std::int64_t>(pages.size() - 1) * policy.page + pages.back().rows),
             "positions are appended in order");
  if (position % policy.page == 0) {
    // A new page opens: the oldest recent page leaves the recent window (THEORY.md 14.1).
    const std::int64_t leaving = position / policy.page - policy.recent_pages;
    if (leaving >= policy.sink_pages && leaving >= 0) {
      writer.migrate(pages[static_cast<std::size_t>(leaving)], leaving * policy.page,
                     page_format(proofs::class_format(head.keys, proofs::AgeClass::kOld)),
                     page_format(proofs::class_format(head.values, proofs::AgeClass::kOld)), allocate, release);
    }
  }
  // The formats the position's page opens in (used only when it opens one): the page is new, so
  // it is a sink page or a recent one.
  const proofs::AgeClass age = proofs::age_class(policy, position, position + 1);
  writer.append(pages, page_format(proofs::class_format(head.keys, age)), page_format(proofs::class_format(head.values, age)),
                key, value, allocate, static_cast<std::uint8_t>(age));
}

OwnedPolicyStream::OwnedPolicyStream(const proofs::PrecisionPolicy& policy, const proofs::HeadPolicy& head, int head_dim,
                                     std::uint64_t seed)
    : head_(head), head_dim_(head_dim), writer_(policy.page, head_dim) {
  HNF_ASSERT(policy.head_dim == head_dim, "the stream's head_dim is the policy's");
  if (policy.rounding == proofs::Rounding::kStochastic) {
    writer_.set_dither(seed, static_cast<std::uint32_t>(head.layer * policy.kv_heads + head.kv_head));
  }
  rule_.page = policy.page;
  rule_.sink_pages = policy.sink_pages;
  rule_.recent_pages = policy.recent_pages;
}

void OwnedPolicyStream::append(const float* key, const float* value) {
  const PageWriter::Allocate allocate = [this](std::size_t bytes) {
    if (const auto it = released_.find(bytes); it != released_.end()) {
      std::uint8_t* p = it->second;
      released_.erase(it);
      return p;
    }
    blocks_.emplace_back(new std::uint8_t[bytes]);
    return blocks_.back().get();
  };
  const PageWriter::Release release = [this](const std::uint8_t* bytes, std::size_t size) {
    released_.emplace(size, const_cast<std::uint8_t*>(bytes));  // a side of blocks_
  };
  append_policy_position(writer_, pages_, rule_, head_, size_, key, value, allocate, release);
  ++size_;
}

}  // namespace hnf::runtime
