// The mixed-precision cache on a real certificate of the committed reference model
// (tests/fixtures/hnf-llama-4m-128.cert.json, 128 traced tokens, blocks of 16 positions, a map
// that mixes int8/int4/int3/int2 per-token groups with per-channel key groups).
#include <doctest/doctest.h>
#include <malloc.h>

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fixture_certificate.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/runtime/dense_kv_cache.h"
#include "hnf/runtime/mixed_kv_cache.h"
#include "hnf/runtime/page_codec.h"
#include "skip.h"

using hnf::runtime::KvCacheShape;
using hnf::runtime::MixedKvCache;

namespace {

const std::string kSource = HNF_SOURCE_DIR;
const std::string kFixture = kSource + "/tests/fixtures/hnf-llama-4m-128.cert.json";
const std::string kModel = kSource + "/models/hnf-llama-4m";
const std::string kToolVersion = std::string("hnf-verify ") + HNF_TOOL_VERSION;
// The reference model's attention shape: 4 layers, 4 query heads over 2 kv heads, head_dim 64.
const KvCacheShape kShape{.num_layers = 4, .num_heads = 4, .num_kv_heads = 2, .head_dim = 64};

hnf::proofs::CheckReport check_fixture(bool with_model) {
  hnf::proofs::CheckOptions options;
  if (with_model) options = hnf::testing::attested_fixture_options();
  auto report = hnf::proofs::check_certificate(kFixture, options, kToolVersion);
  INFO("fixture rejected (after a version bump: bash tests/fixtures/regenerate.sh): ",
       report.problems.empty() ? std::string() : report.problems.front());
  REQUIRE(report.certified.has_value());
  return report;
}

const hnf::proofs::CertifiedPrecisionMap& certified() {
  static const hnf::proofs::CheckReport report = check_fixture(true);
  return *report.certified;
}

// Keys and values of one step for every kv head: [kv_heads, n, head_dim], attention-like rows
// (normal values, a few outlier channels, a larger first position: a sink).
struct Step {
  std::vector<float> k, v;
};
Step make_step(std::mt19937& rng, std::int64_t n, std::int64_t first) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto count = static_cast<std::size_t>(kShape.num_kv_heads * n * kShape.head_dim);
  Step s{std::vector<float>(count), std::vector<float>(count)};
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t c = i % static_cast<std::size_t>(kShape.head_dim);
    const std::int64_t position = first + static_cast<std::int64_t>(i / static_cast<std::size_t>(kShape.head_dim)) % n;
    const float outlier = (c == 3 || c == 40) ? 6.0f : 1.0f;
    const float sink = position == 0 ? 4.0f : 1.0f;
    s.k[i] = normal(rng) * outlier * sink;
    s.v[i] = normal(rng) * (c == 7 ? 3.0f : 1.0f);
  }
  return s;
}

// Appends n positions to every layer (the same rows, layer-shifted so layers differ).
void append_positions(MixedKvCache& cache, std::mt19937& rng, std::int64_t n) {
  for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
    const Step s = make_step(rng, n, cache.size());
    cache.append(l, s.k.data(), s.v.data(), n);
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hnf::proofs::Error& e) {
    CHECK(e.kind() == hnf::proofs::ErrorKind::kBadInput);
    return e.what();
  }
  return "(no error)";
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitizedAllocator = true;  // ASan owns malloc: mallinfo2 and RSS do not measure the heap
#else
constexpr bool kSanitizedAllocator = false;
#endif

std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;  // arena bytes in use + mmap'ed blocks
}

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST_CASE("mixed cache: only a certificate checked against its model builds one") {
  CHECK_NOTHROW(MixedKvCache(certified(), kShape, 64));
  static const hnf::proofs::CheckReport unverified = check_fixture(false);
  CHECK(error_of([&] { MixedKvCache cache(*unverified.certified, kShape, 64); }).find("was not compared with a model") !=
        std::string::npos);
  KvCacheShape other = kShape;
  other.head_dim = 128;
  CHECK(error_of([&] { MixedKvCache cache(certified(), other, 64); }) ==
        "kv cache: the certificate's map is for a model with 4 layers, 2 kv heads, 4 query heads, head_dim 64; this "
        "model has 4 layers, 2 kv heads, 4 query heads, head_dim 128");
}

TEST_CASE("mixed cache: unverified witnesses are refused unless the named opt-out, which the monitor records") {
  // Compared with the model, but neither re-derived nor attested.
  hnf::proofs::CheckOptions model_only;
  model_only.model_dir = hnf::testing::kReferenceModel;
  const auto report = hnf::proofs::check_certificate(kFixture, model_only, kToolVersion);
  REQUIRE(report.certified.has_value());
  REQUIRE(report.certified->model_verified());
  REQUIRE_FALSE(report.certified->witnesses_verified());
  CHECK(error_of([&] { MixedKvCache cache(*report.certified, kShape, 64); }).find("neither re-derived") != std::string::npos);
  hnf::runtime::MixedKvCacheOptions opt_out;
  opt_out.allow_unverified_witnesses = true;
  MixedKvCache unverified(*report.certified, kShape, 64, opt_out);
  CHECK(unverified.monitor().unverified_witnesses);
  // The attested fixture needs no opt-out and is not flagged.
  REQUIRE(certified().witnesses_attested());
  MixedKvCache attested(certified(), kShape, 64);
  CHECK_FALSE(attested.monitor().unverified_witnesses);
}

TEST_CASE("mixed cache: positions are stored in their block's formats, then by the newest-block policy") {
  MixedKvCache cache(certified(), kShape, 300);
  const auto& map = certified().map();
  REQUIRE(map.tokens == 128);
  REQUIRE(cache.page_size() == 16);
  std::mt19937 rng(7);
  append_positions(cache, rng, 300);
  for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
    for (std::int64_t g = 0; g < kShape.num_kv_heads; ++g) {
      const auto& e = map.entries[static_cast<std::size_t>(l * kShape.num_kv_heads + g)];
      const auto view = cache.stream(l, g);
      REQUIRE(view.num_pages == 19);  // ceil(300 / 16)
      for (std::int64_t p = 0; p < view.num_pages; ++p) {
        const std::size_t unit = std::min<std::size_t>(static_cast<std::size_t>(p), e.key_formats.size() - 1);
        CHECK(cache.key_format(l, g, p * 16) == e.key_formats[unit]);
        CHECK(cache.value_format(l, g, p * 16) == e.value_formats[unit]);
        const bool full = p < view.num_pages - 1;  // 300 = 18 * 16 + 12
        const auto expected_key = full || e.key_formats[unit].axis != hnf::proofs::GroupAxis::kTokens
                                      ? hnf::runtime::page_format(e.key_formats[unit])
                                      : hnf::runtime::staged_page_format();
        CHECK(view.pages[p].key_format.encoding == expected_key.encoding);
        CHECK(view.pages[p].key_format.group == expected_key.group);
        CHECK(view.pages[p].rows == (full ? 16 : 12));
      }
    }
  }
}

TEST_CASE("mixed cache: stored values are bit-exact with the reference quantizer, page by page") {
  MixedKvCache cache(certified(), kShape, 160);
  std::mt19937 rng(11);
  std::vector<Step> steps;
  // One prefill of 100 positions, then 60 single-token decode steps: pages fill across calls.
  std::vector<float> keys[8], values[8];  // per stream [positions, head_dim]
  auto append_recorded = [&](std::int64_t n) {
    for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
      const Step s = make_step(rng, n, cache.size());
      for (std::int64_t g = 0; g < kShape.num_kv_heads; ++g) {
        const auto begin = static_cast<std::ptrdiff_t>(g * n * kShape.head_dim);
        const auto end = begin + static_cast<std::ptrdiff_t>(n * kShape.head_dim);
        keys[l * 2 + g].insert(keys[l * 2 + g].end(), s.k.begin() + begin, s.k.begin() + end);
        values[l * 2 + g].insert(values[l * 2 + g].end(), s.v.begin() + begin, s.v.begin() + end);
      }
      cache.append(l, s.k.data(), s.v.data(), n);
    }
  };
  append_recorded(100);
  for (int i = 0; i < 60; ++i) append_recorded(1);
  REQUIRE(cache.size() == 160);
  const auto d = static_cast<std::size_t>(kShape.head_dim);
  std::size_t compared = 0;
  for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
    for (std::int64_t g = 0; g < kShape.num_kv_heads; ++g) {
      const auto view = cache.stream(l, g);
      for (std::int64_t p = 0; p < view.num_pages; ++p) {
        const std::size_t rows = 16;
        const float* k = keys[l * 2 + g].data() + static_cast<std::size_t>(p) * rows * d;
        const float* v = values[l * 2 + g].data() + static_cast<std::size_t>(p) * rows * d;
        std::vector<double> k_hat(rows * d), k_r(rows * d), v_hat(rows * d), v_r(rows * d);
        hnf::proofs::quantize_block(cache.key_format(l, g, p * 16), {k, rows * d}, rows, d, k_hat, k_r);
        hnf::proofs::quantize_block(cache.value_format(l, g, p * 16), {v, rows * d}, rows, d, v_hat, v_r);
        std::vector<double> key(d), value(d), kr(d), vr(d);
        for (std::size_t t = 0; t < rows; ++t) {
          hnf::runtime::read_position(view, p * 16 + static_cast<std::int64_t>(t), key.data(), value.data(), kr.data(), vr.data());
          for (std::size_t c = 0; c < d; ++c) {
            REQUIRE(key[c] == k_hat[t * d + c]);
            REQUIRE(kr[c] == k_r[t * d + c]);
            REQUIRE(value[c] == v_hat[t * d + c]);
            REQUIRE(vr[c] == v_r[t * d + c]);
            ++compared;
          }
        }
      }
    }
  }
  CHECK(compared == 160u * 8u * d);
}

TEST_CASE("mixed cache: a per-channel key page is staged exactly until its last position, then quantized") {
  const auto& map = certified().map();
  // The first (layer, kv head, block) whose keys are per-channel groups.
  std::int64_t layer = -1, kv_head = -1, block = -1;
  for (const auto& e : map.entries) {
    for (std::size_t u = 0; u < e.key_formats.size() && layer < 0; ++u) {
      if (e.key_formats[u].axis == hnf::proofs::GroupAxis::kTokens) {
        layer = e.layer, kv_head = e.kv_head, block = static_cast<std::int64_t>(u);
      }
    }
  }
  REQUIRE(layer >= 0);  // the fixture's map has intB-tP keys
  MixedKvCache cache(certified(), kShape, 128);
  std::mt19937 rng(3);
  append_positions(cache, rng, block * 16 + 9);
  auto view = cache.stream(layer, kv_head);
  CHECK(view.pages[block].key_format.encoding == hnf::runtime::kPageStagedF32);
  std::vector<double> key(64), value(64), kr(64), vr(64);
  hnf::runtime::read_position(view, block * 16 + 8, key.data(), value.data(), kr.data(), vr.data());
  for (double r : kr) CHECK(r == 0.0);  // staged keys are exact
  append_positions(cache, rng, 7);
  view = cache.stream(layer, kv_head);
  CHECK(view.pages[block].key_format.axis == hnf::runtime::kAxisTokens);
  hnf::runtime::read_position(view, block * 16 + 8, key.data(), value.data(), kr.data(), vr.data());
  for (double r : kr) CHECK(r > 0.0);
}

TEST_CASE("mixed cache: attention equals the reference decode of its own pages, and is close to full precision") {
  const KvCacheShape shape = kShape;
  hnf::runtime::MixedKvCacheOptions reference_options;
  reference_options.backend = hnf::runtime::DecodeBackend::kReference;
  MixedKvCache reference_cache(certified(), shape, 200, reference_options);
  MixedKvCache cpu_cache(certified(), shape, 200);
  hnf::runtime::DenseKvCache dense(shape, 200);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto d = static_cast<std::size_t>(shape.head_dim);
  double worst_cpu = 0.0, worst_dense = 0.0, largest = 0.0;
  for (std::int64_t n : {120, 1, 1, 40, 1}) {
    for (std::int64_t l = 0; l < shape.num_layers; ++l) {
      const Step s = make_step(rng, n, dense.size());
      for (hnf::runtime::KvCache* c : std::initializer_list<hnf::runtime::KvCache*>{&reference_cache, &cpu_cache, &dense}) {
        c->append(l, s.k.data(), s.v.data(), n);
      }
      std::vector<float> q(static_cast<std::size_t>(shape.num_heads * n) * d);  // [heads, n, head_dim]
      for (float& x : q) x = normal(rng) * 2.0f;
      std::vector<float> out_ref(q.size()), out_cpu(q.size()), out_dense(q.size());
      reference_cache.attend(l, q.data(), n, out_ref.data());
      cpu_cache.attend(l, q.data(), n, out_cpu.data());
      dense.attend(l, q.data(), n, out_dense.data());
      // The reference backend is decode_attention_reference on the cache's pages, row by row.
      const std::int64_t first = reference_cache.layer_size(l) - n;
      const auto group = static_cast<std::size_t>(shape.num_heads / shape.num_kv_heads);
      for (std::int64_t i = 0; i < n; i += std::max<std::int64_t>(1, n / 7)) {
        for (std::size_t h = 0; h < static_cast<std::size_t>(shape.num_heads); ++h) {
          std::vector<float> out(d);
          const std::size_t row = (h * static_cast<std::size_t>(n) + static_cast<std::size_t>(i)) * d;
          hnf::runtime::decode_attention_reference(reference_cache.stream(l, static_cast<std::int64_t>(h / group)), first + i + 1,
                                                   q.data() + row, 1, static_cast<float>(1.0 / std::sqrt(64.0)), out.data());
          for (std::size_t c = 0; c < d; ++c) REQUIRE(out[c] == out_ref[row + c]);
        }
      }
      for (std::size_t i = 0; i < q.size(); ++i) {
        largest = std::max(largest, std::fabs(static_cast<double>(out_ref[i])));
        worst_cpu = std::max(worst_cpu, std::fabs(static_cast<double>(out_cpu[i]) - out_ref[i]));
        worst_dense = std::max(worst_dense, std::fabs(static_cast<double>(out_dense[i]) - out_ref[i]));
      }
    }
  }
  CHECK(worst_cpu <= 1e-4 * largest);  // fp32 kernel vs double reference on the same stored values
  CHECK(worst_dense > 1e-3 * largest);  // the map really quantizes (how much: the decode bound's tests)
}

TEST_CASE("mixed cache: refused appends (past capacity, values it cannot store) write nothing") {
  MixedKvCache cache(certified(), kShape, 40);
  std::mt19937 rng(9);
  append_positions(cache, rng, 30);
  const auto before = cache.memory();
  Step s = make_step(rng, 11, 30);
  CHECK(error_of([&] { cache.append(0, s.k.data(), s.v.data(), 11); }) ==
        "kv cache: append of 11 positions to 30 cached exceeds capacity 40");
  s = make_step(rng, 2, 30);
  s.v[64 + 5] = std::nanf("");  // kv head 0, second position, channel 5
  CHECK(error_of([&] { cache.append(0, s.k.data(), s.v.data(), 2); }) ==
        "kv cache: value of kv head 0 at position 31, channel 5 is nan: not a finite value within the fp16 range the "
        "formats store");
  s.v[64 + 5] = 0.5f;
  s.k[2 * 64 + 1] = 70000.0f;  // kv head 1, first position ([kv_heads, n, head_dim])
  CHECK(error_of([&] { cache.append(0, s.k.data(), s.v.data(), 2); }).find("key of kv head 1 at position 30, channel 1") !=
        std::string::npos);
  CHECK(cache.size() == 30);
  CHECK(cache.layer_size(0) == 30);
  CHECK(cache.memory().codes == before.codes);
  CHECK(cache.memory().total() == before.total());
  for (std::int64_t g = 0; g < 2; ++g) CHECK(cache.stream(0, g).pages[1].rows == 14);
}

TEST_CASE("mixed cache: the memory report matches the allocator within 2 percent") {
  if (kSanitizedAllocator) HNF_SKIP("ASan owns malloc: mallinfo2 and RSS do not measure the heap");
  const std::size_t heap_before = heap_in_use();
  auto cache = std::make_unique<MixedKvCache>(certified(), kShape, 20000);
  std::mt19937 rng(13);
  for (int chunk = 0; chunk < 10; ++chunk) append_positions(*cache, rng, 2000);
  // Measured after the appends; the rows they were made from are freed by now.
  const std::size_t heap_after = heap_in_use();
  const auto m = cache->memory();
  const double allocated = static_cast<double>(heap_after) - static_cast<double>(heap_before);
  INFO("allocated ", allocated, " reported ", m.total(), " codes ", m.codes, " params ", m.group_params, " slack ",
       m.page_slack, " metadata ", m.map_metadata, " staging ", m.staging);
  CHECK(std::fabs(static_cast<double>(m.total()) - allocated) <= 0.02 * allocated);
  CHECK(m.codes > 0);
  CHECK(m.group_params > 0);
  CHECK(m.page_slack < m.total() / 10);
  // Bits per element: what the map says, measured on the stored bytes.
  CHECK(cache->bits_per_element() > 2.0);
  CHECK(cache->bits_per_element() < 8.6);
}

TEST_CASE("mixed cache: resident memory of a 128K-token cache grows by what the report says") {
  if (kSanitizedAllocator) HNF_SKIP("ASan owns malloc: mallinfo2 and RSS do not measure the heap");
  constexpr std::int64_t kTokens = 131072;
  auto cache = std::make_unique<MixedKvCache>(certified(), kShape, kTokens);
  std::mt19937 rng(17);
  append_positions(*cache, rng, 1024);  // warm up the allocator's own structures
  const std::size_t rss_before = resident_bytes();
  const std::size_t reported_before = cache->memory().total();
  for (std::int64_t done = 1024; done < kTokens; done += 1024) append_positions(*cache, rng, 1024);
  const std::size_t rss_after = resident_bytes();
  const double grown = static_cast<double>(rss_after) - static_cast<double>(rss_before);
  const double reported = static_cast<double>(cache->memory().total() - reported_before);
  MESSAGE("128K-token cache: resident growth ", grown / 1048576.0, " MiB, reported ", reported / 1048576.0, " MiB, ",
          cache->bits_per_element(), " bits per element");
  CHECK(std::fabs(grown - reported) <= 0.02 * reported);
}

TEST_CASE("mixed cache: queries are counted outside S2 unless recorded at their position and within the radius") {
  const auto& scope = certified().scope();
  const double radius = hnf::proofs::rational_to_double(scope.heads[0].s2_radius);  // layer 0, kv head 0
  REQUIRE(radius > 0.0);
  MixedKvCache cache(certified(), kShape, 64);
  std::mt19937 rng(21);
  append_positions(cache, rng, 4);
  // The reference records positions 1 and 3; every query of the test is the same vector.
  const auto d = static_cast<std::size_t>(kShape.head_dim);
  std::vector<float> q(static_cast<std::size_t>(kShape.num_heads) * d, 0.25f);  // [heads, 1, head_dim]
  hnf::runtime::S2Reference ref;
  ref.positions = {1, 3};
  for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
    std::vector<float> layer(static_cast<std::size_t>(kShape.num_heads) * 2 * d, 0.25f);  // [heads, 2, head_dim]
    ref.queries.push_back(layer);
  }
  // Head 0 (kv head 0) at recorded position 3: moved by 1.5 radii in channel 0 of layer 0.
  ref.queries[0][(0 * 2 + 1) * d] = 0.25f + static_cast<float>(1.5 * radius);
  cache.set_s2_reference(ref);
  std::vector<float> out(q.size());
  // Position 4 (not recorded): all 4 heads outside, in layer 0.
  cache.append(0, make_step(rng, 1, 4).k.data(), make_step(rng, 1, 4).v.data(), 1);
  cache.attend(0, q.data(), 1, out.data());
  CHECK(cache.monitor().s2_checked == 4);
  CHECK(cache.monitor().outside_s2 == 4);
  // The recorded queries at position 3: layer 1 reads them exactly (inside); layer 0's head 0
  // is 1.5 radii away (outside), its other heads inside.
  MixedKvCache second(certified(), kShape, 64);
  second.set_s2_reference(ref);
  append_positions(second, rng, 3);
  for (std::int64_t l = 0; l < kShape.num_layers; ++l) {
    const Step s = make_step(rng, 1, 3);
    second.append(l, s.k.data(), s.v.data(), 1);
    second.attend(l, q.data(), 1, out.data());
  }
  CHECK(second.monitor().s2_checked == 16);
  CHECK(second.monitor().outside_s2 == 1);
  // A reference of the wrong shape is refused.
  ref.queries.pop_back();
  CHECK(error_of([&] { second.set_s2_reference(ref); }).find("queries of 3 layers") != std::string::npos);
}
