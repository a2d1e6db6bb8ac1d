// Stopping a long command cleanly on SIGINT or SIGTERM.
//
// While an InterruptGuard lives (every Progress holds one), the first SIGINT or SIGTERM only
// records its number (async-signal-safe); the command notices it at its next cancellation point
// (throw_if_interrupted, called by Progress::update) and unwinds with Interrupted, so every
// partial output is removed by its owner's destructor (proofs::SafetensorsWriter, the atomic
// text writers) and main exits 128 + the signal (130 for SIGINT, 143 for SIGTERM). A second
// signal kills the process at once (the handler is one-shot), for a user who will not wait.
#pragma once

#include <signal.h>

#include <exception>
#include <string>

namespace hnf::verify::cli {

class Interrupted : public std::exception {
 public:
  explicit Interrupted(int signal_number);
  [[nodiscard]] const char* what() const noexcept override { return message_.c_str(); }
  // 128 + the signal number, as a shell reports a process the signal killed.
  [[nodiscard]] int exit_code() const noexcept;

 private:
  int signal_;
  std::string message_;
};

// Installs the recording handler for SIGINT and SIGTERM (one the caller ignores, as nohup or a
// script's background job does, stays ignored); restores the previous handlers when it ends.
class InterruptGuard {
 public:
  InterruptGuard() noexcept;
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

// The signal recorded since the program started (SIGINT or SIGTERM), or 0.
[[nodiscard]] int received_signal() noexcept;

// A cancellation point: throws Interrupted if a signal was recorded.
void throw_if_interrupted();

// The tool's outputs report write failures (EFBIG) instead of dying of SIGXFSZ under a file
// size limit: call once at start-up.
void ignore_file_size_signal() noexcept;

}  // namespace hnf::verify::cli
