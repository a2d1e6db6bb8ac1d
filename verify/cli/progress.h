// Progress line on stderr for long runs: shown only when stderr is a terminal and the run has
// lasted over half a second, redrawn at most 10 times a second, erased when done.
//
// Also the long runs' cancellation: while a Progress lives, SIGINT and SIGTERM are recorded
// (interrupt.h), and update() is the cancellation point that throws Interrupted.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "interrupt.h"

namespace hnf::verify::cli {

class Progress {
 public:
  Progress(std::string label, std::uint64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Throws Interrupted when SIGINT or SIGTERM arrived (whether or not the line is shown).
  void update(std::uint64_t done);
  // For runs whose total is known only once they have started.
  void update(std::uint64_t done, std::uint64_t total) {
    total_ = total;
    update(done);
  }

 private:
  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  InterruptGuard interrupt_guard_;
};

}  // namespace hnf::verify::cli
