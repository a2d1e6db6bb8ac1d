#include "interrupt.h"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>

#include "hnf/proofs/error.h"
#include "hnf/proofs/live_files.h"

namespace hnf::verify::cli {
namespace {

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_exit_at_once = 0;   // OnInterrupt::kExitAtOnce, until outputs_follow()
volatile std::sig_atomic_t g_stderr_is_tty = 0;  // erase a progress line before the message

// One line for stderr, built without allocating (signal handlers): longer input is cut.
class SignalSafeLine {
 public:
  SignalSafeLine() noexcept {
    if (g_stderr_is_tty != 0) add("\r\033[K");
  }
  void add(const char* text) noexcept {
    while (*text != '\0' && size_ < sizeof data_ - 1) data_[size_++] = *text++;
  }
  // Adds the newline and writes the line with write(2).
  void write_to_stderr() noexcept {
    data_[size_++] = '\n';
    const char* p = data_;
    std::size_t left = size_;
    while (left > 0) {
      const ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }

 private:
  char data_[proofs::kMaxLivePathBytes + 256] = {};
  std::size_t size_ = 0;
};

const char* signal_name(int signal_number) noexcept {
  return signal_number == SIGINT ? "SIGINT" : signal_number == SIGTERM ? "SIGTERM" : "a signal";
}

extern "C" void on_interrupt(int signal_number) {
  if (g_exit_at_once == 0) {
    g_signal = signal_number;
    return;
  }
  // Nothing is unwound: the partial outputs are removed here, as their owners would have.
  proofs::remove_partial_outputs();
  SignalSafeLine line;
  line.add("hnf-verify: interrupted by ");
  line.add(signal_name(signal_number));
  line.write_to_stderr();
  ::_exit(128 + signal_number);
}

extern "C" void on_bus_error(int signal_number, siginfo_t* info, void*) {
  // BUS_ADRERR: an access past the end of a mapped file (not a SIGBUS sent with kill).
  const char* file =
      info != nullptr && info->si_code == BUS_ADRERR ? proofs::mapped_file_at(info->si_addr) : nullptr;
  if (file == nullptr) {
    // Not one of ours: the default action (the process dies of SIGBUS), as without this handler.
    // The signal is blocked while the handler runs, so it is delivered when the handler returns.
    const int saved_errno = errno;
    struct sigaction action {};
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    ::sigaction(signal_number, &action, nullptr);
    ::raise(signal_number);
    errno = saved_errno;
    return;
  }
  proofs::remove_partial_outputs();
  SignalSafeLine line;
  line.add("hnf-verify: ");
  line.add(file);
  line.add(": truncated or changed while being read");
  line.write_to_stderr();
  ::_exit(static_cast<int>(proofs::ExitCode::kBadInput));
}

void install(int signal_number, struct sigaction* previous) noexcept {
  ::sigaction(signal_number, nullptr, previous);
  // A signal the caller chose to ignore (nohup, a background job of a script) stays ignored.
  if (previous->sa_handler == SIG_IGN) return;
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  // SA_RESETHAND: the next signal takes the default action (dies). SA_RESTART: a read or write
  // under way goes on (libraries that do not retry EINTR would report it as a failure); the
  // command stops at its next cancellation point.
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  ::sigaction(signal_number, &action, previous);
}

}  // namespace

Interrupted::Interrupted(int signal_number)
    : signal_(signal_number), message_(std::string("interrupted by ") + signal_name(signal_number)) {}

int Interrupted::exit_code() const noexcept { return 128 + signal_; }

InterruptGuard::InterruptGuard(OnInterrupt mode) noexcept : previous_exit_at_once_(g_exit_at_once) {
  g_exit_at_once = mode == OnInterrupt::kExitAtOnce ? 1 : 0;
  install(SIGINT, &previous_int_);
  install(SIGTERM, &previous_term_);
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &previous_int_, nullptr);
  ::sigaction(SIGTERM, &previous_term_, nullptr);
  g_exit_at_once = previous_exit_at_once_;
}

void InterruptGuard::outputs_follow() noexcept { g_exit_at_once = 0; }

int received_signal() noexcept { return g_signal; }

void throw_if_interrupted() {
  if (const int s = g_signal; s != 0) throw Interrupted(s);
}

void install_mapped_file_fault_handler() noexcept {
  g_stderr_is_tty = ::isatty(STDERR_FILENO) == 1 ? 1 : 0;
  struct sigaction action {};
  action.sa_sigaction = on_bus_error;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO;
  ::sigaction(SIGBUS, &action, nullptr);
}

void ignore_file_size_signal() noexcept { std::signal(SIGXFSZ, SIG_IGN); }

}  // namespace hnf::verify::cli
