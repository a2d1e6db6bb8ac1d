// hnf-verify keygen: an Ed25519 key pair for attestations (check --recompute --sign). The secret
// key file is created with mode 0600 and never overwritten; the public key is what serving
// configures (--public-key or HNF_PUBLIC_KEY).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "hnf/proofs/attestation.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/write_file.h"

namespace hnf::verify::cli {
namespace {

// Creates `path` readable by its owner only; refuses to replace an existing file (a key is
// never overwritten by accident).
void write_secret_file(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw proofs::bad_input(path, std::string("cannot create the secret key file: ") + std::strerror(errno));
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const bool closed = ::close(fd) == 0;
  if (!written || !closed) {
    ::unlink(path.c_str());
    throw proofs::bad_input(path, "cannot write the secret key file");
  }
}

int run_keygen(const std::string& prefix) {
  const std::string secret = prefix + ".key", pub = prefix + ".pub";
  if (std::filesystem::exists(pub)) throw proofs::bad_input(pub, "exists already: keygen never replaces a key");
  const proofs::KeyPair keys = proofs::generate_key_pair();
  write_secret_file(secret, proofs::secret_key_text(keys.secret_key));
  try {
    proofs::write_text_atomically(pub, proofs::public_key_text(keys.public_key));
  } catch (...) {
    ::unlink(secret.c_str());  // both files or neither
    throw;
  }
  std::printf("secret key   %s (mode 0600: keep it where only the attesting checker runs)\n", secret.c_str());
  std::printf("public key   %s (%s): give it to serving as --public-key or HNF_PUBLIC_KEY\n", pub.c_str(),
              proofs::key_hex(keys.public_key).c_str());
  return 0;
}

}  // namespace

void register_keygen(CLI::App& app, int* exit_code) {
  auto prefix = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "keygen", "Make an Ed25519 key pair for attestations: PREFIX.key (secret, mode 0600) and PREFIX.pub. Exit 0, or 3 "
                "when a file exists or cannot be written");
  cmd->add_option("--out", *prefix, "Path prefix of the two key files")->required();
  cmd->callback([prefix, exit_code] { *exit_code = run_keygen(*prefix); });
}

}  // namespace hnf::verify::cli
