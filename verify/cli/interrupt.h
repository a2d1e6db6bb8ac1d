// Stopping a long command cleanly on SIGINT or SIGTERM.
//
// While an InterruptGuard lives (every Progress holds one), the first SIGINT or SIGTERM only
// records its number (async-signal-safe); the command notices it at its next cancellation point
// (throw_if_interrupted, called by Progress::update) and unwinds with Interrupted, so every
// partial output is removed by its owner's destructor (proofs::SafetensorsWriter, the atomic
// text writers) and main exits 128 + the signal (130 for SIGINT, 143 for SIGTERM). A second
// signal kills the process at once (the handler is one-shot), for a user who will not wait.
//
// Commands whose long stretch has no cancellation point (check --recompute re-running the
// analysis, report and gate doing the same, attention) use an InterruptGuard that ends the
// process at once instead: the handler removes every partial output registered with
// proofs/live_files.h, prints the same line and exits 128 + the signal. Such a command calls
// outputs_follow() before it starts writing, so that a later signal is only recorded and its
// outputs are written whole (main then says the signal arrived after the outputs were complete).
//
// SIGBUS from a memory-mapped input that another process truncated (see
// install_mapped_file_fault_handler) also ends the process at once, with exit 3.
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

// What SIGINT or SIGTERM does while an InterruptGuard lives.
enum class OnInterrupt {
  kStopAtCancellationPoint,  // recorded; the command throws Interrupted at its next cancellation point
  kExitAtOnce,               // the handler removes the partial outputs, prints the line and exits
};

// Installs the handler for SIGINT and SIGTERM (one the caller ignores, as nohup or a script's
// background job does, stays ignored); restores the previous handlers and mode when it ends.
class InterruptGuard {
 public:
  explicit InterruptGuard(OnInterrupt mode = OnInterrupt::kStopAtCancellationPoint) noexcept;
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  // A kExitAtOnce command is about to write its outputs: from now on a signal is only recorded.
  void outputs_follow() noexcept;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
  int previous_exit_at_once_ = 0;
};

// The signal recorded since the program started (SIGINT or SIGTERM), or 0.
[[nodiscard]] int received_signal() noexcept;

// A cancellation point: throws Interrupted if a signal was recorded.
void throw_if_interrupted();

// A memory-mapped input (proofs::SafetensorsFile: traces, checkpoints) that another process
// truncates while it is read raises SIGBUS at the first access past its new end. Installs, once
// at start-up, a handler that turns that into bad input: when the faulting address lies in a
// mapping registered with proofs/live_files.h it removes every registered partial output, writes
// "hnf-verify: FILE: truncated or changed while being read" on stderr and exits 3. Any other
// SIGBUS takes the default action, as without the handler.
void install_mapped_file_fault_handler() noexcept;

// The tool's outputs report write failures (EFBIG) instead of dying of SIGXFSZ under a file
// size limit: call once at start-up.
void ignore_file_size_signal() noexcept;

}  // namespace hnf::verify::cli
