#include "interrupt.h"

#include <csignal>

namespace hnf::verify::cli {
namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void record_signal(int signal_number) { g_signal = signal_number; }

void install(int signal_number, struct sigaction* previous) noexcept {
  ::sigaction(signal_number, nullptr, previous);
  // A signal the caller chose to ignore (nohup, a background job of a script) stays ignored.
  if (previous->sa_handler == SIG_IGN) return;
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESETHAND: the next signal takes the default action (dies). SA_RESTART: a read or write
  // under way goes on (libraries that do not retry EINTR would report it as a failure); the
  // command stops at its next cancellation point.
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  ::sigaction(signal_number, &action, previous);
}

}  // namespace

Interrupted::Interrupted(int signal_number)
    : signal_(signal_number),
      message_(std::string("interrupted by ") +
               (signal_number == SIGINT ? "SIGINT" : signal_number == SIGTERM ? "SIGTERM" : "a signal")) {}

int Interrupted::exit_code() const noexcept { return 128 + signal_; }

InterruptGuard::InterruptGuard() noexcept {
  install(SIGINT, &previous_int_);
  install(SIGTERM, &previous_term_);
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &previous_int_, nullptr);
  ::sigaction(SIGTERM, &previous_term_, nullptr);
}

int received_signal() noexcept { return g_signal; }

void throw_if_interrupted() {
  if (const int s = g_signal; s != 0) throw Interrupted(s);
}

void ignore_file_size_signal() noexcept { std::signal(SIGXFSZ, SIG_IGN); }

}  // namespace hnf::verify::cli
