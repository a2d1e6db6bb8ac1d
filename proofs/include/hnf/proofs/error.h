// The project's one error model (see docs/architecture.md).
//
// Library boundaries report failures by throwing hnf::proofs::Error. Its kind decides the
// CLI's exit code; its message is one line that names the offending file (or argument)
// and the problem, and is printed as it is. Internal invariants use HNF_ASSERT, which stays
// on in release builds and throws an Error of kind kInternal.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace hnf::proofs {

// Exit codes of every hnf-verify subcommand. Stable: scripts and CI gates depend on them.
enum class ExitCode : int {
  kSuccess = 0,   // success; for certify/check: certified
  kRefuted = 1,   // an obligation was refuted (a counterexample exists)
  kUnknown = 2,   // the solver answered unknown or timed out: never "certified"
  kBadInput = 3,  // bad input file, bad arguments or usage
  kInternal = 4,  // a broken invariant inside the tool: a bug to report
  kWriteFailed = 5,  // an output could not be written (full disk, file size limit, I/O error); none was left behind
  // Stopped by a signal before its outputs were written (the shell's 128 + signal number).
  kInterrupted = 130,  // SIGINT
  kTerminated = 143,   // SIGTERM
};

enum class ErrorKind {
  kBadInput,  // the caller's input (file, argument) is malformed or inconsistent
  kInternal,  // an invariant of the tool itself does not hold
  kWriteFailed,  // writing an output failed after it was opened (ENOSPC, EFBIG, EIO, ...)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}

  [[nodiscard]] ErrorKind kind() const noexcept { return kind_; }
  [[nodiscard]] ExitCode exit_code() const noexcept {
    switch (kind_) {
      case ErrorKind::kBadInput: return ExitCode::kBadInput;
      case ErrorKind::kWriteFailed: return ExitCode::kWriteFailed;
      case ErrorKind::kInternal: break;
    }
    return ExitCode::kInternal;
  }

 private:
  ErrorKind kind_;
};

// Longest problem text an error message keeps: a problem may quote a hostile file's content
// (a 100 MB string, a field name), and the message must stay one readable line.
inline constexpr std::size_t kMaxProblemBytes = 2048;

// `text` as one line of at most `max_bytes` bytes (plus a note of how much was cut): control
// characters (a newline in a quoted JSON key, ESC) are written as \xNN, and a cut never splits
// a UTF-8 sequence. Every message that quotes untrusted text goes through it.
[[nodiscard]] std::string printable_line(std::string_view text, std::size_t max_bytes = kMaxProblemBytes);

// "<file>: <problem>" as a bad-input error. The file is printed as given by the user; both
// parts go through printable_line.
[[nodiscard]] Error bad_input(std::string_view file, std::string_view problem);

// "<file>: <problem>" as a write failure (exit 5): the output `file` could not be completed.
[[nodiscard]] Error write_failed(std::string_view file, std::string_view problem);

[[noreturn]] void assert_failed(const char* condition, const char* file, int line,
                                std::string_view message);

}  // namespace hnf::proofs

// Always-on invariant check (never compiled out, unlike assert()).
#define HNF_ASSERT(cond, msg)                                                  \
  do {                                                                         \
    if (!(cond)) ::hnf::proofs::assert_failed(#cond, __FILE__, __LINE__, msg); \
  } while (false)
