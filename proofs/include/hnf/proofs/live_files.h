// The files a fatal signal handler must know about: the inputs the process has memory-mapped and
// the partial outputs ("<out>.partial") it is writing.
//
// A mapped file that another process truncates raises SIGBUS at the first access past its new
// end; no exception can unwind from there. The CLI's handler (verify/cli/interrupt.h) asks
// mapped_file_at() whether the faulting address lies in a mapping registered here, names that
// file, removes every registered partial output (remove_partial_outputs()) and exits 3. An
// interrupt that ends a command at once (the commands without cancellation points) removes them
// the same way. The readers and writers of proofs/ register themselves
// (proofs::SafetensorsFile, proofs::SafetensorsWriter, proofs::write_texts_atomically).
//
// The registries are lists of entries that are allocated on first need and never freed (a freed
// entry is reused), claimed and published with lock-free atomics, so that mapped_file_at() and
// remove_partial_outputs() are async-signal-safe: no lock, no allocation, only unlink(2).
#pragma once

#include <cstddef>
#include <string_view>

namespace hnf::proofs {

// A registered entry; unregisters when it ends. Move-only. An empty registration (default, moved
// from, or one that could not be made: no memory, a path over kMaxLivePathBytes) does nothing.
class LiveFileRegistration {
 public:
  LiveFileRegistration() noexcept = default;
  LiveFileRegistration(LiveFileRegistration&& other) noexcept;
  LiveFileRegistration& operator=(LiveFileRegistration&& other) noexcept;
  LiveFileRegistration(const LiveFileRegistration&) = delete;
  LiveFileRegistration& operator=(const LiveFileRegistration&) = delete;
  ~LiveFileRegistration();

  // Unregisters now (idempotent).
  void reset() noexcept;
  [[nodiscard]] bool active() const noexcept { return entry_ != nullptr; }

 private:
  friend LiveFileRegistration register_mapping(const void*, std::size_t, std::string_view) noexcept;
  friend LiveFileRegistration register_partial_output(std::string_view) noexcept;
  explicit LiveFileRegistration(void* entry) noexcept : entry_(entry) {}
  void* entry_ = nullptr;
};

// Longest path (in bytes) a registration keeps; longer partial-output paths are not registered
// (open(2) refuses them anyway), longer mapped-file names are cut for the message.
inline constexpr std::size_t kMaxLivePathBytes = 4095;

// Registers the mapping [begin, begin + length) of the file `path` (as the user gave it: the
// message names it, through printable_line).
[[nodiscard]] LiveFileRegistration register_mapping(const void* begin, std::size_t length,
                                                   std::string_view path) noexcept;

// The printable name of the registered file whose mapping holds `address`, or nullptr.
// Async-signal-safe.
[[nodiscard]] const char* mapped_file_at(const void* address) noexcept;

// Registers a partial output file (the exact path to unlink). Register before creating it: a
// signal in between then removes nothing that exists, rather than leaving the file behind.
[[nodiscard]] LiveFileRegistration register_partial_output(std::string_view partial_path) noexcept;

// Unlinks every registered partial output. Async-signal-safe; for a handler that ends the
// process without unwinding.
void remove_partial_outputs() noexcept;

}  // namespace hnf::proofs
