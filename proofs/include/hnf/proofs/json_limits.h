// Reading files a user did not make: whole files and JSON, with limits. Every JSON reader
// (certificate, safetensors header, config.json, gate policy, eval JSON) goes through here, so
// a FIFO, /dev/zero, a file of many gigabytes, JSON nested a million deep or a number such as
// 1e999 becomes one bad-input line naming the file (exit 3), never a hang, exhausted memory, a
// stack overflow or an "internal error". docs/hostile-input.md lists the limits.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hnf::proofs {

// Deepest nesting of arrays and objects a JSON reader accepts. The deepest file of this
// project (a certificate: obligations[i].rows.kv_head[j]) nests 4 deep.
inline constexpr int kMaxJsonDepth = 32;
// Largest small JSON file read whole: config.json, a gate policy, an eval JSON. Hugging Face
// configs and policies are a few kilobytes.
inline constexpr std::uint64_t kMaxSmallJsonBytes = std::uint64_t{16} << 20;

// The whole of `path`, which must be a regular file of at most `max_bytes` bytes: a FIFO, a
// device (/dev/zero) or a directory is refused before it is opened, so reading can neither hang
// nor grow without bound; read_whole_file (read_file.h) then refuses a file that changes while it
// is read. Throws bad_input naming `path`; `what` names the file's role ("a certificate").
[[nodiscard]] std::string read_regular_file(const std::filesystem::path& path, std::uint64_t max_bytes,
                                            std::string_view what);

// Parses `text`. Throws bad_input naming `file` on a syntax error, nesting deeper than
// kMaxJsonDepth, or a number beyond the range of a double (nlohmann::json refuses 1e999 with an
// out_of_range exception; a number below the smallest double, 1e-999, reads as 0). `what`, when
// given, prefixes the problem ("header is not valid JSON ...").
[[nodiscard]] nlohmann::json parse_json(std::string_view text, std::string_view file, std::string_view what = {});

// read_regular_file, then parse_json.
[[nodiscard]] nlohmann::json read_json_file(const std::filesystem::path& path, std::uint64_t max_bytes,
                                            std::string_view what);

// The value of a JSON integer within [min, max]; nullopt for anything else: a float (1.0,
// 1e2), a string, an unsigned value above INT64_MAX, a value outside the range. The one way an
// integer is read from untrusted JSON: never narrowed, never wrapped.
[[nodiscard]] std::optional<std::int64_t> json_integer(const nlohmann::json& value, std::int64_t min,
                                                       std::int64_t max) noexcept;
// The value of a JSON number (integer or float) within [min, max]; nullopt otherwise.
[[nodiscard]] std::optional<double> json_number(const nlohmann::json& value, double min, double max) noexcept;

}  // namespace hnf::proofs
