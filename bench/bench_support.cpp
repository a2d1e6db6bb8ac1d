#include "bench_support.h"

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define HNF_BENCH_X86 1
// GCC 12's AVX-512 intrinsics read a deliberately uninitialised value (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#define HNF_BENCH_X86 0
#endif

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <system_error>
#include <thread>

#include "hnf/proofs/error.h"

namespace hnf::bench {
namespace {

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t");
  const auto last = s.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
}

// "32768K", "32 MiB", "300M" as sysfs and /proc write cache sizes.
std::size_t parse_size(const std::string& text) {
  std::size_t value = 0, i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') value = value * 10 + static_cast<std::size_t>(text[i++] - '0');
  while (i < text.size() && text[i] == ' ') ++i;
  if (i < text.size()) {
    const char unit = text[i];
    if (unit == 'K' || unit == 'k') value *= 1024;
    if (unit == 'M' || unit == 'm') value *= 1024 * 1024;
    if (unit == 'G' || unit == 'g') value *= 1024 * 1024 * 1024;
  }
  return value;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

MachineInfo machine_info() {
  MachineInfo info;
  info.cpu_model = "unknown";
  {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("model name", 0) == 0) {
        const auto colon = line.find(':');
        if (colon != std::string::npos) info.cpu_model = trim(line.substr(colon + 1));
        break;
      }
    }
  }
  info.logical_cpus = std::thread::hardware_concurrency();
  {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index3/size");
    std::string text;
    if (f && std::getline(f, text)) info.l3_bytes = parse_size(trim(text));
  }
  if (info.l3_bytes == 0) {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) info.l3_bytes = static_cast<std::size_t>(l3);
  }
  {
    std::ifstream f("/proc/meminfo");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("MemTotal:", 0) == 0) {
        info.memory_bytes = parse_size(trim(line.substr(9)));  // "23 456 789 kB"
        break;
      }
    }
  }
  return info;
}

double load_average() {
  std::ifstream f("/proc/loadavg");
  double value = -1.0;
  if (!(f >> value)) return -1.0;
  return value;
}

TriadResult run_triad(std::size_t array_bytes, int repeats, int threads) {
  HNF_ASSERT(repeats >= 1 && threads >= 1, "the triad runs at least once on at least one thread");
  const std::size_t n = array_bytes / sizeof(double);
  HNF_ASSERT(n > 0, "triad arrays are not empty");
  const auto count = static_cast<std::int64_t>(n);
  std::unique_ptr<double[]> a(new double[n]), b(new double[n]), c(new double[n]);
  double* pa = a.get();
  double* pb = b.get();
  double* pc = c.get();
  // First touch by the threads that will run the triad (page placement, as STREAM does).
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t i = 0; i < count; ++i) {
    pa[i] = 0.0;
    pb[i] = 1.0 + static_cast<double>(i % 7);
    pc[i] = 2.0 - static_cast<double>(i % 5);
  }
  const double s = 3.0;
  std::vector<double> seconds;
  for (int r = 0; r < repeats + 1; ++r) {
    const double start = now_seconds();
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < count; ++i) pa[i] = pb[i] + s * pc[i];
    const double elapsed = now_seconds() - start;
    if (r > 0) seconds.push_back(elapsed);  // the first pass is a warm-up
  }
  TriadResult result;
  result.array_bytes = n * sizeof(double);
  result.repeats = repeats;
  const double bytes = 3.0 * static_cast<double>(result.array_bytes);
  result.best_gbs = bytes / *std::min_element(seconds.begin(), seconds.end()) / 1e9;
  result.median_gbs = bytes / median(seconds) / 1e9;
  double sum = 0.0;
  for (std::size_t i = 0; i < n; i += 4096) sum += pa[i];
  result.checksum = sum;
  return result;
}

namespace {

// Chains per thread: more than the FMA latency (4 cycles) x the FMA units (2) needs, so the
// loop is bound by FMA throughput, not latency.
constexpr int kFmaChains = 12;
constexpr std::int64_t kFmaIterations = 20'000'000;

#if HNF_BENCH_X86
// kFmaChains independent chains x = x * a + b (a < 1, so nothing overflows), iterations x
// kFmaChains FMA instructions. The empty asm keeps `a` in a register each iteration, so the
// compiler can neither fold the chains nor hoist them.
__attribute__((target("avx512f"))) double fma_chains_avx512(std::int64_t iterations) {
  __m512 x[kFmaChains];
  for (int k = 0; k < kFmaChains; ++k) x[k] = _mm512_set1_ps(0.001f * static_cast<float>(k));
  __m512 a = _mm512_set1_ps(0.999f);
  const __m512 b = _mm512_set1_ps(0.001f);
  for (std::int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < kFmaChains; ++k) x[k] = _mm512_fmadd_ps(x[k], a, b);
    asm("" : "+v"(a));
  }
  __m512 sum = x[0];
  for (int k = 1; k < kFmaChains; ++k) sum = _mm512_add_ps(sum, x[k]);
  return static_cast<double>(_mm512_reduce_add_ps(sum));
}

__attribute__((target("avx2,fma"))) double fma_chains_avx2(std::int64_t iterations) {
  __m256 x[kFmaChains];
  for (int k = 0; k < kFmaChains; ++k) x[k] = _mm256_set1_ps(0.001f * static_cast<float>(k));
  __m256 a = _mm256_set1_ps(0.999f);
  const __m256 b = _mm256_set1_ps(0.001f);
  for (std::int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < kFmaChains; ++k) x[k] = _mm256_fmadd_ps(x[k], a, b);
    asm("" : "+x"(a));
  }
  alignas(32) float lanes[8];
  __m256 sum = x[0];
  for (int k = 1; k < kFmaChains; ++k) sum = _mm256_add_ps(sum, x[k]);
  _mm256_store_ps(lanes, sum);
  double total = 0.0;
  for (float v : lanes) total += static_cast<double>(v);
  return total;
}
#endif

}  // namespace

FmaPeakResult run_fma_peak(int repeats, int threads) {
  HNF_ASSERT(repeats >= 1 && threads >= 1, "the FMA peak runs at least once on at least one thread");
  FmaPeakResult result;
#if HNF_BENCH_X86
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
  if (!avx512 && !avx2) {
    result.isa = "none";
    return result;
  }
  result.isa = avx512 ? "AVX-512" : "AVX2/FMA";
  result.chains = kFmaChains;
  result.iterations = kFmaIterations;
  result.vector_lanes = avx512 ? 16 : 8;
  double best = 0.0;
  for (int r = 0; r < repeats + 1; ++r) {
    double checksum = 0.0;
    const double start = now_seconds();
#pragma omp parallel num_threads(threads) reduction(+ : checksum)
    checksum += avx512 ? fma_chains_avx512(kFmaIterations) : fma_chains_avx2(kFmaIterations);
    const double elapsed = now_seconds() - start;
    result.checksum += checksum;
    if (r == 0) continue;  // warm-up (clock ramp)
    const double lane_fmas = static_cast<double>(threads) * static_cast<double>(kFmaIterations) * kFmaChains *
                             static_cast<double>(result.vector_lanes);
    best = std::max(best, lane_fmas / elapsed);
  }
  result.lane_fmas_per_s = best;
#else
  result.isa = "none";
#endif
  return result;
}

CacheEvictor::CacheEvictor(std::size_t bytes) : buffer_(bytes / sizeof(std::uint64_t), 1) {}

void CacheEvictor::evict() {
  if (buffer_.empty()) return;
  ++round_;
  std::uint64_t* p = buffer_.data();
  const auto count = static_cast<std::int64_t>(buffer_.size());
  const std::uint64_t round = round_;
  std::uint64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
  for (std::int64_t i = 0; i < count; ++i) {
    p[i] = p[i] * 3 + round;
    sum += p[i];
  }
  sink_ = sink_ + sum;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> values) {
  HNF_ASSERT(!values.empty(), "a median of at least one value");
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

void fill_synthetic(float* data, std::size_t rows, int head_dim, std::uint64_t seed, int outlier_channels) {
  constexpr std::size_t kChunk = 1024;  // rows per generator: the result does not depend on threads
  const auto d = static_cast<std::size_t>(head_dim);
  const auto chunks = static_cast<std::int64_t>((rows + kChunk - 1) / kChunk);
  std::vector<char> outlier(d, 0);
  for (int j = 0; j < outlier_channels && j < head_dim; ++j) {
    outlier[(static_cast<std::size_t>(j) * d / static_cast<std::size_t>(outlier_channels) + 3) % d] = 1;
  }
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
    std::mt19937_64 rng(splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(chunk))));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    const std::size_t first = static_cast<std::size_t>(chunk) * kChunk;
    const std::size_t last = std::min(rows, first + kChunk);
    for (std::size_t r = first; r < last; ++r) {
      float* row = data + r * d;
      for (std::size_t c = 0; c < d; ++c) {
        float x = normal(rng);
        if (outlier[c]) x *= 8.0f;
        if (unit(rng) < 1e-3f) x = (x < 0.0f ? -1.0f : 1.0f) * (8.0f + 8.0f * unit(rng));
        row[c] = x;
      }
    }
  }
}

}  // namespace hnf::bench
