#include "hnf/proofs/sha256.h"

#include <openssl/evp.h>

#include <array>
#include <fstream>
#include <memory>
#include <vector>

#include "hnf/proofs/error.h"

namespace hnf::proofs {
namespace {

using DigestContext = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

DigestContext new_context() {
  DigestContext ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  HNF_ASSERT(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1, "SHA-256 initialisation failed");
  return ctx;
}

std::string finish_hex(EVP_MD_CTX* ctx) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  HNF_ASSERT(EVP_DigestFinal_ex(ctx, digest.data(), &length) == 1 && length == 32, "SHA-256 finalisation failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

}  // namespace

std::string sha256_hex(std::span<const std::byte> bytes) {
  auto ctx = new_context();
  HNF_ASSERT(EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) == 1, "SHA-256 update failed");
  return finish_hex(ctx.get());
}

std::string sha256_file_hex(const std::filesystem::path& path) {
  // A FIFO would block the open and /dev/zero never ends: only regular files are hashed.
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
    throw bad_input(path.string(), "is not a regular file: cannot hash it");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw bad_input(path.string(), "cannot read to hash it");
  auto ctx = new_context();
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    HNF_ASSERT(EVP_DigestUpdate(ctx.get(), buffer.data(), got) == 1, "SHA-256 update failed");
  }
  if (in.bad()) throw bad_input(path.string(), "read error while hashing");
  return finish_hex(ctx.get());
}

}  // namespace hnf::proofs
