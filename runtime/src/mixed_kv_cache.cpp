#include "hnf/runtime/mixed_kv_cache.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "hnf/proofs/error.h"
#include "hnf/runtime/decode_bound.h"
#include "hnf/runtime/page_codec.h"
#include "hnf/runtime/policy_pages.h"

namespace hnf::runtime {

namespace {

// Page sides start on 16-byte boundaries (vector loads; the padding is page slack).
constexpr std::size_t kPageAlign = 16;
// A slab holds this many pages of the widest format (fp16 keys and values), so the unused tail
// of a full slab is at most a few percent of it.
constexpr std::size_t kPagesPerSlab = 32;

std::size_t align_up(std::size_t n) { return (n + kPageAlign - 1) / kPageAlign * kPageAlign; }

std::string shape_text(std::int64_t layers, std::int64_t kv_heads, std::int64_t heads, std::int64_t head_dim) {
  return std::to_string(layers) + " layers, " + std::to_string(kv_heads) + " kv heads, " + std::to_string(heads) +
         " query heads, head_dim " + std::to_string(head_dim);
}

// The largest magnitude every format of the vocabulary can store (fp16's largest finite value:
// integer groups keep an fp16 zero point and scale).
constexpr float kLargestStorable = 65504.0f;

// Checks x [count] before anything is written, so that an append either stores every row or
// none. Names the first offending element.
void check_storable(const float* x, std::size_t count, const char* what, std::int64_t kv_head, std::int64_t position,
                    std::size_t d) {
  for (std::size_t i = 0; i < count; ++i) {
    if (std::isfinite(x[i]) && std::fabs(x[i]) <= kLargestStorable) continue;
    throw proofs::bad_input("kv cache", std::string(what) + " of kv head " + std::to_string(kv_head) + " at position " +
                                            std::to_string(position + static_cast<std::int64_t>(i / d)) + ", channel " +
                                            std::to_string(i % d) + " is " + std::to_string(x[i]) +
                                            ": not a finite value within the fp16 range the formats store");
  }
}

// 64 bits from the operating system's entropy source (the dither seed of a stochastic cache).
std::uint64_t os_seed() {
  std::random_device device;
  return static_cast<std::uint64_t>(device()) << 32 | static_cast<std::uint64_t>(device());
}

}  // namespace

// One (layer, kv head): its pages, the slabs they live in, and the staging rows of an intB-tP
// key page that is not full yet.
struct MixedKvCache::Stream {
  Stream(int page_size, int head_dim, std::size_t slab_size) : writer(page_size, head_dim), slab_bytes(slab_size) {}
  std::vector<PageRef> pages;
  PageWriter writer;  // opens pages, encodes rows, stages intB-tP key pages; counts code and parameter bytes
  std::vector<std::unique_ptr<std::uint8_t[]>> slabs;
  std::size_t slab_bytes = 0;  // size of every slab
  std::size_t slab_used = 0;   // bytes used in slabs.back()
  // Page sides given back when a page aged into another format (policy caches): reused by the
  // next side of the same aligned size (a recent page's), so an aging cache does not grow slabs.
  std::vector<std::pair<std::size_t, std::uint8_t*>> released;

  // Uninitialised bytes (never touched until written, so unwritten slack stays out of RSS).
  std::uint8_t* allocate(std::size_t bytes) {
    HNF_ASSERT(bytes <= slab_bytes, "a page side fits in a slab");
    for (std::size_t i = 0; i < released.size(); ++i) {
      if (released[i].first != align_up(bytes)) continue;
      std::uint8_t* p = released[i].second;
      released[i] = released.back();
      released.pop_back();
      return p;
    }
    if (slabs.empty() || slab_used + bytes > slab_bytes) {
      slabs.emplace_back(new std::uint8_t[slab_bytes]);
      slab_used = 0;
    }
    std::uint8_t* p = slabs.back().get() + slab_used;
    slab_used += align_up(bytes);
    return p;
  }
  void release(const std::uint8_t* bytes, std::size_t size) {
    released.emplace_back(align_up(size), const_cast<std::uint8_t*>(bytes));  // bytes this stream allocated
  }
};

MixedKvCache::MixedKvCache(const proofs::CertifiedPrecisionMap& certified, const KvCacheShape& shape,
                           std::int64_t capacity, const MixedKvCacheOptions& options)
    : KvCache(shape, capacity), map_(certified.map()), map_sha256_(certified.map_sha256()), options_(options) {
  if (!certified.model_verified()) {
    throw proofs::bad_input("kv cache", "the certificate was not compared with a model: check it with the model "
                                        "folder (hnf-verify check CERT --model DIR) before building a cache from it");
  }
  if (!certified.witnesses_verified() && !options.allow_unverified_witnesses) {
    throw proofs::bad_input("kv cache", "the certificate's witnesses were neither re-derived from its trace nor attested: "
                                        "check it with --recompute, or verify an attestation (check --recompute --sign), "
                                        "before building a cache from it");
  }
  if (map_.layers != shape.num_layers || map_.kv_heads != shape.num_kv_heads || map_.heads != shape.num_heads ||
      map_.head_dim != shape.head_dim) {
    throw proofs::bad_input("kv cache", "the certificate's map is for a model with " +
                                            shape_text(map_.layers, map_.kv_heads, map_.heads, map_.head_dim) +
                                            "; this model has " +
                                            shape_text(shape.num_layers, shape.num_kv_heads, shape.num_heads, shape.head_dim));
  }
  page_size_ = map_.block;
  if (!(options.guard_delta > 0.0 && options.guard_delta < 1.0)) {
    throw proofs::bad_input("kv cache", "the guard's failure probability must be in (0, 1)");
  }
  if (certified.policy()) {
    policy_ = certified.policy();
    HNF_ASSERT(policy_->page == page_size_, "a checked policy certificate's map is its expansion (block = page)");
  }
  monitor_ = options_.monitor ? options_.monitor : std::make_shared<DecodeMonitor>();
  if (!certified.witnesses_verified()) monitor_->unverified_witnesses = true;
  for (const auto& e : map_.entries) {
    HNF_ASSERT(!e.key_formats.empty() && e.key_formats.size() == e.value_formats.size(), "a checked map has units");
    for (const auto& f : e.key_formats) {
      if (f.axis == proofs::GroupAxis::kTokens && f.group_size != page_size_) {
        throw proofs::bad_input("kv cache", "the map stores keys of layer " + std::to_string(e.layer) + " kv head " +
                                                std::to_string(e.kv_head) + " as " + proofs::format_name(f) +
                                                ", but this build stores per-channel groups only of the map's block (" +
                                                std::to_string(page_size_) + " positions)");
      }
    }
  }
  for (const auto& e : certified.layer_eps()) {
    layer_eps_down_.push_back(std::nextafter(proofs::rational_to_double(e), 0.0));  // rounded down
  }
  for (const auto& h : certified.scope().heads) {
    s2_radius_.push_back(std::nextafter(proofs::rational_to_double(h.s2_radius), 0.0));  // rounded down
  }
  const std::size_t d = static_cast<std::size_t>(shape.head_dim);
  const std::size_t widest_page = 2 * 2 * static_cast<std::size_t>(page_size_) * d + 2 * kPageAlign;
  for (std::int64_t i = 0; i < shape.num_layers * shape.num_kv_heads; ++i) {
    streams_.push_back(std::make_unique<Stream>(page_size_, static_cast<int>(shape.head_dim), kPagesPerSlab * widest_page));
  }
  if (policy_ && policy_->rounding == proofs::Rounding::kStochastic) {
    const std::uint64_t seed = options.dither_seed ? *options.dither_seed : os_seed();
    for (std::size_t i = 0; i < streams_.size(); ++i) streams_[i]->writer.set_dither(seed, static_cast<std::uint32_t>(i));
  }
}

MixedKvCache::~MixedKvCache() {
  const CacheMemory m = memory();
  monitor_->caches_closed += 1;
  monitor_->stored_bytes += static_cast<double>(m.codes + m.group_params + staged_bytes());
  monitor_->stored_elements += 2.0 * static_cast<double>(num_layers() * num_kv_heads() * size() * head_dim());
}

std::size_t MixedKvCache::staged_bytes() const {
  std::size_t bytes = 0;
  for (const auto& s : streams_) {
    if (!s->pages.empty() && s->pages.back().key_format.encoding == kPageStagedF32) {
      bytes += static_cast<std::size_t>(s->pages.back().rows) * static_cast<std::size_t>(head_dim()) * sizeof(float);
    }
  }
  return bytes;
}

MixedKvCache::Stream& MixedKvCache::stream_at(std::int64_t layer, std::int64_t kv_head) {
  HNF_ASSERT(layer >= 0 && layer < num_layers() && kv_head >= 0 && kv_head < num_kv_heads(), "stream index in range");
  return *streams_[static_cast<std::size_t>(layer * num_kv_heads() + kv_head)];
}
const MixedKvCache::Stream& MixedKvCache::stream_at(std::int64_t layer, std::int64_t kv_head) const {
  HNF_ASSERT(layer >= 0 && layer < num_layers() && kv_head >= 0 && kv_head < num_kv_heads(), "stream index in range");
  return *streams_[static_cast<std::size_t>(layer * num_kv_heads() + kv_head)];
}

namespace {
// The map unit of a position: its block, or the newest traced block beyond the traced length.
std::size_t unit_of(const proofs::HeadMap& e, std::int64_t position, int block) {
  const auto unit = static_cast<std::size_t>(position / block);
  return std::min(unit, e.key_formats.size() - 1);
}
}  // namespace

proofs::AgeClass MixedKvCache::age_at(std::int64_t layer, std::int64_t position) const {
  return proofs::age_class(*policy_, position, std::max(layer_size(layer), position + 1));
}

proofs::Format MixedKvCache::key_format(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const {
  HNF_ASSERT(layer >= 0 && layer < num_layers() && kv_head >= 0 && kv_head < num_kv_heads() && position >= 0, "index in range");
  if (policy_) {
    return proofs::class_format(policy_->entries[static_cast<std::size_t>(layer * num_kv_heads() + kv_head)].keys,
                                age_at(layer, position));
  }
  const auto& e = map_.entries[static_cast<std::size_t>(layer * num_kv_heads() + kv_head)];
  return e.key_formats[unit_of(e, position, page_size_)];
}

proofs::Format MixedKvCache::value_format(std::int64_t layer, std::int64_t kv_head, std::int64_t position) const {
  HNF_ASSERT(layer >= 0 && layer < num_layers() && kv_head >= 0 && kv_head < num_kv_heads() && position >= 0, "index in range");
  if (policy_) {
    return proofs::class_format(policy_->entries[static_cast<std::size_t>(layer * num_kv_heads() + kv_head)].values,
                                age_at(layer, position));
  }
  const auto& e = map_.entries[static_cast<std::size_t>(layer * num_kv_heads() + kv_head)];
  return e.value_formats[unit_of(e, position, page_size_)];
}


StreamView MixedKvCache::stream(std::int64_t layer, std::int64_t kv_head) const {
  const Stream& s = stream_at(layer, kv_head);
  return {s.pages.data(), static_cast<std::int64_t>(s.pages.size()), page_size_, static_cast<std::int32_t>(head_dim())};
}

void MixedKvCache::do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t first) {
  const auto d = static_cast<std::size_t>(head_dim());
  const auto rows = static_cast<std::size_t>(n);
  for (std::int64_t g = 0; g < num_kv_heads(); ++g) {
    check_storable(k + static_cast<std::size_t>(g) * rows * d, rows * d, "key", g, first, d);
    check_storable(v + static_cast<std::size_t>(g) * rows * d, rows * d, "value", g, first, d);
  }
  for (std::int64_t g = 0; g < num_kv_heads(); ++g) {
    Stream& s = stream_at(layer, g);
    const PageWriter::Allocate allocate = [&s](std::size_t bytes) { return s.allocate(bytes); };
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t position = first + i;
      const std::size_t row = static_cast<std::size_t>(g) * rows + static_cast<std::size_t>(i);
      if (policy_) {
        append_policy_position(s.writer, s.pages, *policy_,
                               policy_->entries[static_cast<std::size_t>(layer * num_kv_heads() + g)], position,
                               k + row * d, v + row * d, allocate,
                               [&s](const std::uint8_t* bytes, std::size_t size) { s.release(bytes, size); });
        continue;
      }
      // The formats of the position's block; used only when the position opens a page.
      s.writer.append(s.pages, page_format(key_format(layer, g, position)), page_format(value_format(layer, g, position)),
                      k + row * d, v + row * d, allocate);
    }
  }
}

void MixedKvCache::do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const {
  const auto start = std::chrono::steady_clock::now();
  attend_rows(layer, q, n, first, out);
  monitor_->attend_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  observe(layer, q, n, first, out);
}

void MixedKvCache::attend_rows(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, float* out) const {
  const auto d = static_cast<std::size_t>(head_dim());
  const auto heads = static_cast<std::size_t>(num_heads());
  const auto group = static_cast<int>(num_heads() / num_kv_heads());
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  std::vector<StreamView> views;
  for (std::int64_t g = 0; g < num_kv_heads(); ++g) views.push_back(stream(layer, g));
  if (n == 1 && options_.backend == DecodeBackend::kCpu) {
    // One decode step: q and out are [heads, 1, head_dim] = [heads, head_dim]; the layer kernel
    // splits long streams across threads.
    decode_layer_cpu(views.data(), static_cast<int>(views.size()), first + 1, q, static_cast<int>(heads), scale, out);
  } else {
    // A prefill: the n queries are independent decodes (query i sees positions 0 .. first+i);
    // they run in parallel, one (query, kv head) at a time on a thread.
    const std::int64_t items = n * num_kv_heads();
#pragma omp parallel for schedule(dynamic, 4) if (options_.backend == DecodeBackend::kCpu && items > 1)
    for (std::int64_t item = 0; item < items; ++item) {
      const std::int64_t i = item / num_kv_heads();
      const auto g = static_cast<std::size_t>(item % num_kv_heads());
      thread_local std::vector<float> q_rows, out_rows;  // [group, head_dim]
      q_rows.resize(static_cast<std::size_t>(group) * d);
      out_rows.resize(q_rows.size());
      for (std::size_t r = 0; r < static_cast<std::size_t>(group); ++r) {
        const std::size_t h = g * static_cast<std::size_t>(group) + r;
        std::copy_n(q + (h * static_cast<std::size_t>(n) + static_cast<std::size_t>(i)) * d, d, q_rows.data() + r * d);
      }
      if (options_.backend == DecodeBackend::kReference) {
        decode_attention_reference(views[g], first + i + 1, q_rows.data(), group, scale, out_rows.data());
      } else {
        decode_attention_cpu(views[g], first + i + 1, q_rows.data(), group, scale, out_rows.data());
      }
      for (std::size_t r = 0; r < static_cast<std::size_t>(group); ++r) {
        const std::size_t h = g * static_cast<std::size_t>(group) + r;
        std::copy_n(out_rows.data() + r * d, d, out + (h * static_cast<std::size_t>(n) + static_cast<std::size_t>(i)) * d);
      }
    }
  }
}

void MixedKvCache::bound_rows(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, const float* out) const {
  const auto start = std::chrono::steady_clock::now();
  const auto d = static_cast<std::size_t>(head_dim());
  const std::int64_t group = num_heads() / num_kv_heads();
  last_bounds_.resize(static_cast<std::size_t>(num_heads() * n));
  last_deterministic_.resize(last_bounds_.size());
  const std::int64_t rows = num_heads() * n;
  const bool probabilistic = guard_is_probabilistic();
  // One item per (kv head, query position): its group of query heads, the stream decoded once.
  const std::int64_t items = num_kv_heads() * n;
#pragma omp parallel for schedule(dynamic) if (items > 1)
  for (std::int64_t item = 0; item < items; ++item) {
    const std::int64_t g = item / n, i = item % n;
    std::vector<float> q_rows(static_cast<std::size_t>(group) * d), out_rows(q_rows.size());  // [group, head_dim]
    for (std::int64_t r = 0; r < group; ++r) {
      const auto at = static_cast<std::size_t>((g * group + r) * n + i) * d;
      std::copy_n(q + at, d, q_rows.data() + static_cast<std::size_t>(r) * d);
      std::copy_n(out + at, d, out_rows.data() + static_cast<std::size_t>(r) * d);
    }
    std::vector<GuardBoundTerms> terms(static_cast<std::size_t>(group));
    decode_guard_group(stream(layer, g), first + i + 1, q_rows.data(), out_rows.data(), static_cast<int>(group),
                       probabilistic ? options_.guard_delta : 0.0, terms.data());
    for (std::int64_t r = 0; r < group; ++r) {
      const auto at = static_cast<std::size_t>((g * group + r) * n + i);
      const auto& t = terms[static_cast<std::size_t>(r)];
      last_deterministic_[at] = t.deterministic.total;
      last_bounds_[at] = probabilistic ? t.probabilistic : t.deterministic.total;
    }
  }
  GuardStatus status;
  status.rows = rows;
  const double eps = layer_eps_down_[static_cast<std::size_t>(layer)];
  for (std::size_t r = 0; r < last_bounds_.size(); ++r) {
    status.within += last_bounds_[r] <= eps ? 1 : 0;
    status.deterministic_within += last_deterministic_[r] <= eps ? 1 : 0;
    status.max_bound = std::max(status.max_bound, last_bounds_[r]);
  }
  last_guard_ = status;
  monitor_->guard_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void MixedKvCache::observe(std::int64_t layer, const float* q, std::int64_t n, std::int64_t first, const float* out) const {
  const auto d = static_cast<std::size_t>(head_dim());
  const std::int64_t group = num_heads() / num_kv_heads();
  monitor_->queries += num_heads() * n;
  const bool bounded = options_.monitor_bounds || options_.guard != GuardMode::kOff;
  if (bounded) {
    bound_rows(layer, q, n, first, out);
    if (options_.guard != GuardMode::kOff) {
      monitor_->guard_rows += last_guard_.rows;
      monitor_->guard_within += last_guard_.within;
      monitor_->guard_deterministic_within += last_guard_.deterministic_within;
      monitor_->guard_probabilistic = guard_is_probabilistic();
      monitor_->guard_delta = guard_is_probabilistic() ? options_.guard_delta : 0.0;
      monitor_->guard_steps += 1;
      monitor_->guard_steps_held += last_guard_.held() ? 1 : 0;
    }
  }
  for (std::int64_t h = 0; h < num_heads(); ++h) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float* q_row = q + static_cast<std::size_t>(h * n + i) * d;
      if (options_.monitor_bounds) {
        const double b = last_bounds_[static_cast<std::size_t>(h * n + i)];
        ++monitor_->bounded;
        monitor_->max_bound = std::max(monitor_->max_bound, b);
        monitor_->sum_bound += b;
      }
      if (s2_.positions.empty()) continue;
      ++monitor_->s2_checked;
      const std::int64_t position = first + i;
      const auto it = std::lower_bound(s2_.positions.begin(), s2_.positions.end(), position);
      if (it == s2_.positions.end() || *it != position) {
        ++monitor_->outside_s2;  // S2 covers recorded positions only
        continue;
      }
      const auto j = static_cast<std::size_t>(it - s2_.positions.begin());
      const float* recorded = s2_.queries[static_cast<std::size_t>(layer)].data() +
                              (static_cast<std::size_t>(h) * s2_.positions.size() + j) * d;
      double squared = 0.0;
      for (std::size_t c = 0; c < d; ++c) {
        const double diff = static_cast<double>(q_row[c]) - static_cast<double>(recorded[c]);
        squared += diff * diff;
      }
      // A relative 1e-12 margin covers the rounding of the sum and the root (d <= 2^20 terms).
      const double distance_up = std::sqrt(squared) * (1.0 + 1e-12);
      if (!(distance_up <= s2_radius_[static_cast<std::size_t>(layer * num_kv_heads() + h / group)])) ++monitor_->outside_s2;
    }
  }
}

GuardStatus MixedKvCache::attend_guarded(std::int64_t layer, const float* q, std::int64_t n, float* out,
                                         double* bounds, double* deterministic_bounds) const {
  HNF_ASSERT(options_.guard != GuardMode::kOff, "attend_guarded needs a cache built with a guard");
  attend(layer, q, n, out);
  if (bounds) std::copy(last_bounds_.begin(), last_bounds_.end(), bounds);
  if (deterministic_bounds) std::copy(last_deterministic_.begin(), last_deterministic_.end(), deterministic_bounds);
  return last_guard_;
}

void MixedKvCache::attend_with_bounds(std::int64_t layer, const float* q, std::int64_t n, float* out,
                                      double* bounds) const {
  attend(layer, q, n, out);
  const auto d = static_cast<std::size_t>(head_dim());
  const std::int64_t first = layer_size(layer) - n;
  const std::int64_t group = num_heads() / num_kv_heads();
  for (std::int64_t h = 0; h < num_heads(); ++h) {
    for (std::int64_t i = 0; i < n; ++i) {
      const auto row = static_cast<std::size_t>(h * n + i);
      bounds[row] = decode_error_bound(stream(layer, h / group), first + i + 1, q + row * d, out + row * d);
    }
  }
}

void MixedKvCache::set_s2_reference(S2Reference reference) {
  const auto d = static_cast<std::size_t>(head_dim());
  const std::size_t expected = static_cast<std::size_t>(num_heads()) * reference.positions.size() * d;
  if (static_cast<std::int64_t>(reference.queries.size()) != num_layers()) {
    throw proofs::bad_input("kv cache", "the S2 reference has queries of " + std::to_string(reference.queries.size()) +
                                            " layers; the cache has " + std::to_string(num_layers()));
  }
  for (const auto& layer : reference.queries) {
    if (layer.size() != expected) throw proofs::bad_input("kv cache", "the S2 reference's queries are not [heads, positions, head_dim]");
  }
  if (!std::is_sorted(reference.positions.begin(), reference.positions.end())) {
    throw proofs::bad_input("kv cache", "the S2 reference's positions are not sorted");
  }
  if (s2_radius_.size() != static_cast<std::size_t>(num_layers() * num_kv_heads())) {
    throw proofs::bad_input("kv cache", "the certificate's scope has no S2 radius for every (layer, kv head)");
  }
  s2_ = std::move(reference);
}

CacheMemory MixedKvCache::memory() const {
  CacheMemory m;
  m.map_metadata = sizeof(*this) + streams_.capacity() * sizeof(streams_[0]) + s2_radius_.capacity() * sizeof(double) +
                   map_.entries.capacity() * sizeof(proofs::HeadMap);
  for (const auto& e : map_.entries) m.map_metadata += (e.key_formats.capacity() + e.value_formats.capacity()) * sizeof(proofs::Format);
  for (const auto& s : streams_) {
    const std::size_t slab_total = s->slabs.size() * s->slab_bytes;
    m.codes += s->writer.code_bytes();
    m.group_params += s->writer.param_bytes();
    m.page_slack += slab_total - s->writer.code_bytes() - s->writer.param_bytes();
    m.staging += s->writer.staging_bytes();
    m.map_metadata += sizeof(Stream) + s->pages.capacity() * sizeof(PageRef) + s->slabs.capacity() * sizeof(s->slabs[0]);
  }
  return m;
}

double MixedKvCache::bits_per_element() const {
  const CacheMemory m = memory();
  const double elements = 2.0 * static_cast<double>(num_layers() * num_kv_heads() * size() * head_dim());
  return elements == 0.0 ? 0.0 : static_cast<double>(m.codes + m.group_params + staged_bytes()) * 8.0 / elements;
}

}  // namespace hnf::runtime
