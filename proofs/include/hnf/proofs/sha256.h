// SHA-256 of files and byte strings (OpenSSL's libcrypto), as lowercase hex: the identity of
// models, texts, traces and maps in trace metadata and certificates.
#pragma once

#include <filesystem>
#include <span>
#include <string>

namespace hnf::proofs {

// 64 lowercase hex digits.
[[nodiscard]] std::string sha256_hex(std::span<const std::byte> bytes);
// Streams the file in chunks. Throws Error(kBadInput) "<path>: cannot read ..." when unreadable.
[[nodiscard]] std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace hnf::proofs
