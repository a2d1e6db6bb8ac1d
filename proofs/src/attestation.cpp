// Ed25519 attestations through libsodium (docs/certificate.md, "Attestations").
#include "hnf/proofs/attestation.h"

#include <sodium.h>

#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"

namespace hnf::proofs {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kPublicKeyTag = "hnf-ed25519-public-key";
constexpr std::string_view kSecretKeyTag = "hnf-ed25519-secret-key";
// Key files are one short line; anything longer is not a key file.
constexpr std::uintmax_t kMaxKeyFileBytes = 4096;

static_assert(crypto_sign_PUBLICKEYBYTES == 32 && crypto_sign_SECRETKEYBYTES == 64 && crypto_sign_BYTES == 64,
              "the key and signature sizes of the file formats are Ed25519's");

void init_sodium() {
  // sodium_init is idempotent and thread-safe; it fails only when no random source exists.
  if (sodium_init() < 0) throw Error(ErrorKind::kInternal, "libsodium could not be initialised");
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
  std::string hex(2 * size + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), data, size);
  hex.pop_back();
  return hex;
}

// Exactly `out.size()` bytes of lowercase or uppercase hex, nothing else; false otherwise.
template <std::size_t N>
bool from_hex(std::string_view hex, std::array<std::uint8_t, N>& out) {
  if (hex.size() != 2 * N) return false;
  std::size_t written = 0;
  const char* end = nullptr;
  return sodium_hex2bin(out.data(), N, hex.data(), hex.size(), nullptr, &written, &end) == 0 && written == N &&
         end == hex.data() + hex.size();
}

// The key's hex after `tag` on the file's one line.
std::string read_key_line(const std::filesystem::path& path, std::string_view tag) {
  const std::string text = read_regular_file(path, kMaxKeyFileBytes, "a key file");
  const std::string line = text.substr(0, text.find('\n'));
  const std::string prefix = std::string(tag) + " ";
  if (!line.starts_with(prefix)) throw bad_input(path.string(), "is not a key file: the line must start with '" + std::string(tag) + "'");
  return line.substr(prefix.size());
}

bool is_lower_hex64(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

KeyPair generate_key_pair() {
  init_sodium();
  KeyPair k;
  crypto_sign_keypair(k.public_key.bytes.data(), k.secret_key.bytes.data());
  return k;
}

std::string key_hex(const PublicKey& key) { return to_hex(key.bytes.data(), key.bytes.size()); }

std::string public_key_text(const PublicKey& key) { return std::string(kPublicKeyTag) + " " + key_hex(key) + "\n"; }

std::string secret_key_text(const SecretKey& key) {
  return std::string(kSecretKeyTag) + " " + to_hex(key.bytes.data(), key.bytes.size()) + "\n";
}

PublicKey read_public_key(const std::filesystem::path& path) {
  PublicKey key;
  if (!from_hex(read_key_line(path, kPublicKeyTag), key.bytes)) throw bad_input(path.string(), "the public key is not 64 hex digits");
  return key;
}

SecretKey read_secret_key(const std::filesystem::path& path) {
  SecretKey key;
  if (!from_hex(read_key_line(path, kSecretKeyTag), key.bytes)) throw bad_input(path.string(), "the secret key is not 128 hex digits");
  return key;
}

std::string attestation_message(const Attestation& a) {
  std::ostringstream m;
  m << "hnf-attestation " << a.version << "\nclaim_sha256 " << a.claim_sha256 << "\nmodel_sha256 " << a.model_sha256
    << "\ntrace_sha256 " << a.trace_sha256 << "\ncompared model trace witnesses\nwitnesses_compared "
    << a.witnesses_compared << "\ntool_version " << a.tool_version << "\n";
  return m.str();
}

Attestation sign_attestation(Attestation a, const SecretKey& key) {
  init_sodium();
  HNF_ASSERT(a.witnesses_compared > 0, "an attestation records re-derived witnesses");
  PublicKey pub;
  crypto_sign_ed25519_sk_to_pk(pub.bytes.data(), key.bytes.data());
  a.public_key_hex = key_hex(pub);
  const std::string message = attestation_message(a);
  std::array<std::uint8_t, crypto_sign_BYTES> signature{};
  crypto_sign_detached(signature.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       key.bytes.data());
  a.signature_hex = to_hex(signature.data(), signature.size());
  return a;
}

std::string attestation_to_json(const Attestation& a) {
  const Json j = {{"format", "hnf-attestation"},
                  {"version", a.version},
                  {"claim_sha256", a.claim_sha256},
                  {"model_sha256", a.model_sha256},
                  {"trace_sha256", a.trace_sha256},
                  {"compared", {"model", "trace", "witnesses"}},
                  {"witnesses_compared", a.witnesses_compared},
                  {"tool_version", a.tool_version},
                  {"public_key", a.public_key_hex},
                  {"signature", a.signature_hex}};
  return j.dump(1) + "\n";
}

Attestation attestation_from_json(std::string_view text, const std::string& file) {
  const Json j = parse_json(text, file, "an attestation");
  if (!j.is_object()) throw bad_input(file, "is not a JSON object");
  const std::set<std::string> fields = {"format", "version", "claim_sha256", "model_sha256", "trace_sha256", "compared",
                                        "witnesses_compared", "tool_version", "public_key", "signature"};
  for (const auto& [key, value] : j.items()) {
    if (!fields.contains(key)) throw bad_input(file, "attestation field '" + key + "' is not a field of this schema");
  }
  for (const auto& key : fields) {
    if (!j.contains(key)) throw bad_input(file, "attestation field '" + key + "' is missing");
  }
  auto str = [&](const char* key) {
    if (!j[key].is_string()) throw bad_input(file, std::string("attestation field '") + key + "' is not a string");
    return j[key].get<std::string>();
  };
  if (str("format") != "hnf-attestation") throw bad_input(file, "is not an hnf-attestation");
  const Json& version = j["version"];
  if (!version.is_number_unsigned() || version.get<std::uint64_t>() != kAttestationVersion) {
    throw bad_input(file, "attestation version is not " + std::to_string(kAttestationVersion) + ", the one this tool reads");
  }
  if (j["compared"] != Json({"model", "trace", "witnesses"})) {
    throw bad_input(file, "attestation field 'compared' must be [\"model\", \"trace\", \"witnesses\"]");
  }
  const Json& witnesses = j["witnesses_compared"];
  if (!witnesses.is_number_unsigned() || witnesses.get<std::uint64_t>() == 0) {
    throw bad_input(file, "attestation field 'witnesses_compared' must be a positive integer");
  }
  Attestation a;
  a.claim_sha256 = str("claim_sha256");
  a.model_sha256 = str("model_sha256");
  a.trace_sha256 = str("trace_sha256");
  a.witnesses_compared = witnesses.get<std::uint64_t>();
  a.tool_version = str("tool_version");
  a.public_key_hex = str("public_key");
  a.signature_hex = str("signature");
  for (const auto* hash : {&a.claim_sha256, &a.model_sha256, &a.trace_sha256}) {
    if (!is_lower_hex64(*hash)) throw bad_input(file, "attestation hashes must be 64 lowercase hex digits");
  }
  if (a.tool_version.size() > 256) throw bad_input(file, "attestation field 'tool_version' is too long");
  return a;
}

Attestation read_attestation(const std::filesystem::path& path) {
  return attestation_from_json(read_regular_file(path, kMaxAttestationBytes, "an attestation"), path.string());
}

std::string attestation_problem(const Attestation& a, const Certificate& certificate, const PublicKey& trusted) {
  init_sodium();
  std::array<std::uint8_t, crypto_sign_BYTES> signature{};
  if (!from_hex(a.signature_hex, signature)) return "the attestation's signature is not 128 hex digits";
  const std::string message = attestation_message(a);
  if (crypto_sign_verify_detached(signature.data(), reinterpret_cast<const unsigned char*>(message.data()),
                                  message.size(), trusted.bytes.data()) != 0) {
    return "the attestation's signature does not verify under the configured public key " + key_hex(trusted).substr(0, 16) + "...";
  }
  if (a.claim_sha256 != certificate_claim_sha256(certificate)) {
    return "the attestation is for another certificate (claim_sha256 " + a.claim_sha256.substr(0, 12) + "..., this one is " +
           certificate_claim_sha256(certificate).substr(0, 12) + "...)";
  }
  if (a.model_sha256 != certificate.model_sha256 || a.trace_sha256 != certificate.trace_sha256) {
    return "the attestation's model and trace hashes are not the certificate's";
  }
  return {};
}

}  // namespace hnf::proofs
