#include "hnf/proofs/live_files.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "hnf/proofs/error.h"

namespace hnf::proofs {
namespace {

enum State : int { kFree = 0, kClaimed = 1, kLive = 2 };

// One registered file. Its fields are written while it is kClaimed and read (by a signal
// handler, maybe) only while it is kLive; `next` never changes once the entry is in its list.
struct Entry {
  std::atomic<int> state{kClaimed};
  Entry* next = nullptr;
  std::uintptr_t begin = 0;  // mappings: [begin, end)
  std::uintptr_t end = 0;
  char text[kMaxLivePathBytes + 1] = {};  // mappings: the printable name; partial outputs: the path
};
static_assert(std::atomic<int>::is_always_lock_free, "the registries must be async-signal-safe");
static_assert(std::atomic<Entry*>::is_always_lock_free, "the registries must be async-signal-safe");

std::atomic<Entry*> g_mappings{nullptr};
std::atomic<Entry*> g_partials{nullptr};

// A free entry of `list`, claimed; or a new one pushed on its front. nullptr without memory.
Entry* claim(std::atomic<Entry*>& list) noexcept {
  for (Entry* e = list.load(std::memory_order_acquire); e != nullptr; e = e->next) {
    int expected = kFree;
    if (e->state.compare_exchange_strong(expected, kClaimed, std::memory_order_acquire)) return e;
  }
  auto* e = new (std::nothrow) Entry;
  if (e == nullptr) return nullptr;
  Entry* head = list.load(std::memory_order_relaxed);
  do {
    e->next = head;
  } while (!list.compare_exchange_weak(head, e, std::memory_order_release, std::memory_order_relaxed));
  return e;
}

void set_text(Entry* e, std::string_view text) noexcept {
  const std::size_t n = std::min(text.size(), kMaxLivePathBytes);
  std::memcpy(e->text, text.data(), n);
  e->text[n] = '\0';
}

}  // namespace

LiveFileRegistration::LiveFileRegistration(LiveFileRegistration&& other) noexcept
    : entry_(std::exchange(other.entry_, nullptr)) {}

LiveFileRegistration& LiveFileRegistration::operator=(LiveFileRegistration&& other) noexcept {
  if (this != &other) {
    reset();
    entry_ = std::exchange(other.entry_, nullptr);
  }
  return *this;
}

LiveFileRegistration::~LiveFileRegistration() { reset(); }

void LiveFileRegistration::reset() noexcept {
  if (entry_ == nullptr) return;
  static_cast<Entry*>(std::exchange(entry_, nullptr))->state.store(kFree, std::memory_order_release);
}

LiveFileRegistration register_mapping(const void* begin, std::size_t length, std::string_view path) noexcept {
  Entry* e = claim(g_mappings);
  if (e == nullptr) return {};
  e->begin = reinterpret_cast<std::uintptr_t>(begin);
  e->end = e->begin + length;
  try {
    set_text(e, printable_line(path));
  } catch (...) {  // no memory for the printable copy: the name as given, cut
    set_text(e, path);
  }
  e->state.store(kLive, std::memory_order_release);
  return LiveFileRegistration(e);
}

const char* mapped_file_at(const void* address) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  for (Entry* e = g_mappings.load(std::memory_order_acquire); e != nullptr; e = e->next) {
    if (e->state.load(std::memory_order_acquire) == kLive && e->begin <= a && a < e->end) return e->text;
  }
  return nullptr;
}

LiveFileRegistration register_partial_output(std::string_view partial_path) noexcept {
  if (partial_path.empty() || partial_path.size() > kMaxLivePathBytes) return {};
  Entry* e = claim(g_partials);
  if (e == nullptr) return {};
  set_text(e, partial_path);
  e->state.store(kLive, std::memory_order_release);
  return LiveFileRegistration(e);
}

void remove_partial_outputs() noexcept {
  for (Entry* e = g_partials.load(std::memory_order_acquire); e != nullptr; e = e->next) {
    if (e->state.load(std::memory_order_acquire) == kLive) ::unlink(e->text);
  }
}

}  // namespace hnf::proofs
