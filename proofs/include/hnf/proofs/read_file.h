// Input files read whole (certificates, policies, evaluation JSON, texts): the bytes of one
// moment of the file, or an error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace hnf::proofs {

// Largest file read_whole_file accepts by default: far above any certificate or text the tool
// reads, and below what a failed allocation would turn into an internal error.
inline constexpr std::uint64_t kMaxWholeFileBytes = std::uint64_t{1} << 30;

// The bytes of the regular file at `path`: one fstat, reads of exactly st_size bytes, a check
// that nothing follows them, and a second fstat. A file truncated, extended or rewritten while
// it was read (size, modification or change time differ, or it ended early) is refused rather
// than parsed half old, half new; content changed in place within the clock's resolution is
// left to the hash checks of what is read. A pipe (no size to compare) is read to its end.
// Throws bad_input(path, problem) when the file cannot be opened or read, is a directory, holds
// more than `max_bytes`, or changed while read.
[[nodiscard]] std::string read_whole_file(const std::filesystem::path& path,
                                          std::uint64_t max_bytes = kMaxWholeFileBytes);

}  // namespace hnf::proofs
