// Attestations: "the witnesses of this certificate were re-derived from its trace and model",
// signed with an Ed25519 key the operator controls (libsodium).
//
// Re-deriving witnesses costs an analysis of the trace (which may be tens of GB); serving must not
// need it. `hnf-verify check --recompute --sign KEY` re-derives them once and writes an
// attestation over the certificate's claim hash (certificate_claim_sha256: its claims, not file
// names, command lines or timings). A consumer holding the operator's public key verifies the
// signature instead of re-deriving. The trust anchor is the public key the consumer configures,
// never the key written in the attestation file.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace hnf::proofs {

struct Certificate;

inline constexpr int kAttestationVersion = 1;

// Ed25519 keys (libsodium's crypto_sign_*), raw bytes.
struct PublicKey {
  std::array<std::uint8_t, 32> bytes{};
};
struct SecretKey {
  std::array<std::uint8_t, 64> bytes{};  // libsodium's seed || public key
};
struct KeyPair {
  PublicKey public_key;
  SecretKey secret_key;
};

// A fresh key pair from the system's random source.
[[nodiscard]] KeyPair generate_key_pair();
// Key files are one line: "hnf-ed25519-public-key <64 hex>" / "hnf-ed25519-secret-key <128 hex>".
[[nodiscard]] std::string public_key_text(const PublicKey& key);
[[nodiscard]] std::string secret_key_text(const SecretKey& key);
// Read a key file; bad input naming `path` when it is not such a file.
[[nodiscard]] PublicKey read_public_key(const std::filesystem::path& path);
[[nodiscard]] SecretKey read_secret_key(const std::filesystem::path& path);
[[nodiscard]] std::string key_hex(const PublicKey& key);

// What the attesting check compared. An attestation is only made when all three were.
struct Attestation {
  int version = kAttestationVersion;
  std::string claim_sha256;        // certificate_claim_sha256 of the attested certificate
  std::string model_sha256;        // the model file whose hash the check compared
  std::string trace_sha256;        // the trace file whose hash the check compared
  std::uint64_t witnesses_compared = 0;  // witnesses the analysis re-derived (> 0)
  std::string tool_version;        // the checker that re-derived them
  std::string public_key_hex;      // the signer's key (informational: verification uses the configured key)
  std::string signature_hex;       // Ed25519 over attestation_message()
};

// The exact bytes signed: every field but the key and the signature, one per line.
[[nodiscard]] std::string attestation_message(const Attestation& a);
// Signs `a` (all fields but public_key_hex and signature_hex set) with `key`.
[[nodiscard]] Attestation sign_attestation(Attestation a, const SecretKey& key);
[[nodiscard]] std::string attestation_to_json(const Attestation& a);
// Strict parse (unknown or missing fields, wrong types, malformed hex: bad input naming `file`).
[[nodiscard]] Attestation attestation_from_json(std::string_view text, const std::string& file);
// Reads and parses an attestation file (a regular file of at most kMaxAttestationBytes).
inline constexpr std::uint64_t kMaxAttestationBytes = 64 * 1024;
[[nodiscard]] Attestation read_attestation(const std::filesystem::path& path);

// Empty when `a` is a valid attestation of `certificate` by `trusted`: the signature verifies
// under the trusted key, the claim hash is the certificate's, and its model and trace hashes are
// the certificate's; otherwise the first reason it is not.
[[nodiscard]] std::string attestation_problem(const Attestation& a, const Certificate& certificate,
                                              const PublicKey& trusted);

}  // namespace hnf::proofs
