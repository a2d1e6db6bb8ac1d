// Pieces of the runtime benchmark that know nothing about formats or LibTorch: the machine's
// description, the STREAM-style triad, last-level-cache eviction, timing, synthetic K/V data
// and the atomic report write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hnf::bench {

struct MachineInfo {
  std::string cpu_model;           // "model name" of /proc/cpuinfo ("unknown" when absent)
  unsigned logical_cpus = 0;       // std::thread::hardware_concurrency()
  std::size_t l3_bytes = 0;        // as the OS reports it (0 when it does not)
  std::size_t memory_bytes = 0;    // MemTotal of /proc/meminfo (0 when absent)
};
[[nodiscard]] MachineInfo machine_info();
// The 1-minute load average of /proc/loadavg; negative when it cannot be read. The report
// shows it at the start and the end of the run: other work on the machine skews the timings.
[[nodiscard]] double load_average();

struct TriadResult {
  std::size_t array_bytes = 0;     // bytes of each of the three arrays
  int repeats = 0;
  double best_gbs = 0.0;           // STREAM convention: 3 arrays * bytes / best time
  double median_gbs = 0.0;
  double checksum = 0.0;           // keeps the stores observable
};
// a[i] = b[i] + s*c[i] over three double arrays of array_bytes each, on `threads` OpenMP
// threads (first touch by the same threads). Memory is released before it returns.
[[nodiscard]] TriadResult run_triad(std::size_t array_bytes, int repeats, int threads);

struct FmaPeakResult {
  int vector_lanes = 0;            // fp32 lanes per FMA instruction measured (16 AVX-512, 8 AVX2; 0: not measured)
  std::string isa;                 // "AVX-512", "AVX2/FMA", or "none" (not an x86 CPU with FMA)
  int chains = 0;                  // independent FMA chains per thread
  std::int64_t iterations = 0;     // FMAs per chain per pass
  double lane_fmas_per_s = 0.0;    // fp32 multiply-adds per second on all threads (best pass)
  double checksum = 0.0;           // keeps the results observable
};
// The machine's fp32 fused multiply-add peak: independent FMA chains in registers (no memory
// traffic) on `threads` OpenMP threads, with the widest vectors the CPU has, best of `repeats`
// passes. It bounds any fp32 kernel that does k FMAs per byte it reads at peak/k bytes/s: the
// decode does one per query head per stored K and V element.
[[nodiscard]] FmaPeakResult run_fma_peak(int repeats, int threads);

// Writes and reads a buffer larger than the last-level cache, so that the next timed run reads
// its data from memory. A no-op when built with 0 bytes.
class CacheEvictor {
 public:
  explicit CacheEvictor(std::size_t bytes);
  void evict();
  [[nodiscard]] std::size_t bytes() const noexcept { return buffer_.size() * sizeof(std::uint64_t); }

 private:
  std::vector<std::uint64_t> buffer_;
  std::uint64_t round_ = 0;
  volatile std::uint64_t sink_ = 0;
};

// Seconds of a monotonic clock.
[[nodiscard]] double now_seconds();
// Median of a non-empty sample (the mean of the two middle values for an even count).
[[nodiscard]] double median(std::vector<double> values);

// Synthetic K/V rows, deterministic for a seed regardless of the thread count: normal values,
// `outlier_channels` channels of every row scaled by 8 (the outlier channels of real keys) and
// about one element in 1000 replaced by a spike of +-(8..16). data [rows, head_dim].
void fill_synthetic(float* data, std::size_t rows, int head_dim, std::uint64_t seed, int outlier_channels);

}  // namespace hnf::bench
