// Certificates (docs/certificate.md) and the exact checker: the trusted core.
//
// A certificate is a JSON file holding a precision map, the hashes that tie it to a model, a
// trace and a tool version, the scope of its bounds, and obligations: closed inequalities over
// exact rationals (strings "p" or "p/q"; never printed doubles) with the verdict a solver gave.
// check_certificate() re-validates every inequality with GMP rationals, the map hash, the
// certificate's own hash and, when given, the hashes of the model and trace files. It is the
// only way to obtain a CertifiedPrecisionMap, which is what the runtime cache accepts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hnf/proofs/format.h"

namespace hnf::proofs {

inline constexpr int kCertificateVersion = 1;

// ---- Exact rationals -----------------------------------------------------------------------

// The exact value of a finite double as a canonical rational "p/q" (q a power of two) or "p".
// Throws Error(kInternal) for NaN or Inf.
[[nodiscard]] std::string exact_rational(double value);
// Exact comparison of two exact rationals: negative, zero or positive as a < b, a == b, a > b.
[[nodiscard]] int compare_rationals(const std::string& a, const std::string& b);
// The largest double <= the decimal number `text` (e.g. "0.1", "1e-3"): a budget given in
// decimal is never loosened by its conversion. Throws bad_input naming `what` when `text` is not
// a finite decimal number.
[[nodiscard]] double decimal_to_double_down(const std::string& text, const std::string& what);
// An exact rational (is_exact_rational) as the nearest double, for display only.
[[nodiscard]] double rational_to_double(const std::string& rational);
// True for "-?[0-9]+" and "-?[0-9]+/[0-9]+" with a non-zero denominator (no spaces, no '+').
[[nodiscard]] bool is_exact_rational(std::string_view text);

// ---- The precision map ---------------------------------------------------------------------

struct HeadMap {
  std::int64_t layer = 0;
  std::int64_t kv_head = 0;
  std::vector<Format> key_formats;    // [units]: unit u covers positions [u*block, (u+1)*block)
  std::vector<Format> value_formats;  // [units]
};

struct PrecisionMap {
  std::int64_t layers = 0;
  std::int64_t kv_heads = 0;
  std::int64_t heads = 0;  // query heads (grouped-query attention: heads / kv_heads per kv head)
  std::int64_t head_dim = 0;
  std::int64_t tokens = 0;  // traced length the map covers
  int block = 16;
  std::vector<HeadMap> entries;  // [layers * kv_heads], layer-major
};

// SHA-256 of the map's canonical text ("hnf-map 1", the shape, then one line per entry with
// the format names): the identity the runtime and reports use.
[[nodiscard]] std::string map_sha256(const PrecisionMap& map);
// Bits a format resolves a value to, for Theorem 5.7 (THEORY.md section 9): the code bits of
// integer formats, the significand bits of floats (fp16 11, bf16 8).
[[nodiscard]] int precision_bits(const Format& format);
// Average storage bits per K/V element of the map, metadata included.
[[nodiscard]] double map_bits_per_element(const PrecisionMap& map);
// The obstruction of Theorem 5.7 at one necessity row: the smallest precision b >= 0 with
// 8 * budget * 2^(2b) >= kappa_d2, decided exactly; kMaxNecessityBits + 1 when even
// kMaxNecessityBits bits do not suffice. Both arguments exact rationals, budget > 0. A map
// whose precision at the row is below it fails that row (it is listed in `below`).
inline constexpr int kMaxNecessityBits = 64;
[[nodiscard]] int necessity_min_bits(const std::string& kappa_d2, const std::string& budget);

// ---- Obligations ---------------------------------------------------------------------------

enum class ObligationKind { kSufficiency, kNecessity, kComposition };
// The solver's answer for the negated obligation: unsat = proved, sat = refuted.
enum class Verdict { kProved, kRefuted, kUnknown, kTimeout };
[[nodiscard]] std::string_view obligation_kind_name(ObligationKind kind) noexcept;
[[nodiscard]] std::string_view verdict_name(Verdict verdict) noexcept;

// S1 at one recorded query: bound <= the layer's budget.
struct SufficiencyRow {
  std::int64_t kv_head = 0;
  std::int64_t head = 0;      // query head
  std::int64_t position = 0;  // query position
  std::string bound;          // rational upper bound of ||o_hat - o|| (outward rounded)
};

// Theorem 5.7 at one key position: 8 * budget * 2^(2 bits) >= kappa_d2, where bits is the
// precision of the map's key format there and kappa_d2 = kappa_t * D_t^2 (rounded up).
struct NecessityRow {
  std::int64_t kv_head = 0;
  std::int64_t position = 0;
  std::string kappa_d2;
  int bits = 0;
};

struct Obligation {
  std::string name;  // "layer0_sufficiency", "layer0_necessity", "composition"
  ObligationKind kind = ObligationKind::kSufficiency;
  std::int64_t layer = -1;  // -1 for composition
  std::string budget;       // sufficiency/necessity: the layer's epsilon; composition: eps_total
  std::vector<SufficiencyRow> sufficiency;
  std::vector<NecessityRow> necessity;
  std::vector<std::int64_t> below;  // necessity rows (indices) that are below the obstruction
  std::string below_reason;
  // Composition (Theorem C): sum_i (prod_{j>i} lipschitz_j) * injection_i * layer_eps_i <= budget.
  std::vector<std::string> lipschitz;  // [layers]
  std::vector<std::string> injection;  // [layers]
  std::vector<std::string> layer_eps;  // [layers]
  Verdict verdict = Verdict::kUnknown;
  double solver_ms = 0.0;   // informational
  std::string example;      // refuted: "Example: ..." from the solver's model
  std::string detail;       // refuted: which layer/head/position and by how much; unknown: reason
  std::string smt_file;     // file name of the SMT-LIB2 query, if written
};

// ---- The certificate -------------------------------------------------------------------------

struct HeadScope {
  std::int64_t layer = 0;
  std::int64_t kv_head = 0;
  std::string s2_radius;      // S2: every query within this distance of a recorded one
  std::string s2_bound;       // the largest S2 bound over the head's recorded queries
  std::string s3_query_norm;  // S3: every query with at most this norm
  std::string s3_bound;
};

struct Scope {
  std::vector<std::int64_t> query_positions;  // S1: the recorded queries the bounds cover
  std::vector<HeadScope> heads;               // [layers * kv_heads]
  std::vector<std::string> assumptions;       // what the certificate does not prove
};

struct Certificate {
  int version = kCertificateVersion;
  std::string tool_version;  // "hnf-verify 0.5.0"
  std::string model_id;
  std::string model_sha256;  // model.safetensors the trace was recorded with
  std::string trace_file;    // file name only (no directories)
  std::string trace_sha256;
  std::string text_sha256;
  std::string map_sha256;
  std::string verdict;                 // "certified", "refuted" or "unknown"
  std::string eps;                     // the per-query budget (largest layer epsilon), rational
  std::vector<std::string> layer_eps;  // [layers]
  double bits_per_element = 0.0;       // informational: recomputed from the map by the checker
  PrecisionMap map;
  Scope scope;
  std::vector<Obligation> obligations;
  // Informational, optional: the certify command line that made it, every option explicit
  // (empty when absent: certificates made before it was recorded). Covered by
  // certificate_sha256 when present; not checked against anything.
  std::string certify_command;
};

// Canonical JSON text with "certificate_sha256" over everything else.
[[nodiscard]] std::string certificate_to_json(const Certificate& certificate);
// The certificate_sha256 of a certificate: SHA-256 of the canonical JSON of its content (what
// certificate_to_json writes and certificate_from_json checks).
[[nodiscard]] std::string certificate_sha256(const Certificate& certificate);
// Strict parse: unknown or missing fields, wrong types, malformed rationals or formats are
// bad input naming `file`. Does not validate meaning (check_certificate does).
[[nodiscard]] Certificate certificate_from_json(std::string_view text, const std::string& file);

// ---- The exact checker ---------------------------------------------------------------------

struct CheckReport;
struct CheckOptions;

// A map that the checker found certified: constructible only by check_certificate_text (the
// friend below; there is no other way to make one). The flags say what the check compared:
// a runtime that needs the map to belong to a model should require model_verified().
class CertifiedPrecisionMap {
 public:
  [[nodiscard]] const PrecisionMap& map() const noexcept { return map_; }
  [[nodiscard]] const std::string& map_sha256() const noexcept { return map_sha256_; }
  [[nodiscard]] const std::string& model_sha256() const noexcept { return model_sha256_; }
  [[nodiscard]] const std::string& trace_sha256() const noexcept { return trace_sha256_; }
  [[nodiscard]] const std::string& eps() const noexcept { return eps_; }
  [[nodiscard]] const Scope& scope() const noexcept { return scope_; }
  [[nodiscard]] bool model_verified() const noexcept { return model_verified_; }  // model file hash compared
  [[nodiscard]] bool trace_verified() const noexcept { return trace_verified_; }  // trace file hash compared
  [[nodiscard]] bool witnesses_recomputed() const noexcept { return witnesses_recomputed_; }

 private:
  CertifiedPrecisionMap() = default;
  friend CheckReport check_certificate_text(std::string_view text, const std::string& file, const CheckOptions& options,
                                            std::string_view tool_version);
  PrecisionMap map_;
  std::string map_sha256_, model_sha256_, trace_sha256_, eps_;
  Scope scope_;
  bool model_verified_ = false, trace_verified_ = false, witnesses_recomputed_ = false;
};

// What a witness re-derivation found (analysis::recompute_witnesses).
struct WitnessCheck {
  std::size_t compared = 0;
  std::vector<std::string> problems;  // witnesses below their recomputed value, claims beyond it
};

struct CheckOptions {
  std::optional<std::filesystem::path> model_dir;  // compare model.safetensors' sha256
  std::optional<std::filesystem::path> trace;      // compare the trace file's sha256
  // Re-derives the witnesses (S1 bounds, kappa_d2, Lipschitz constants, S2/S3 scope) from the
  // trace; run only on a certificate that passed every other check. The checker itself cannot
  // (proofs/ has no analysis): the CLI passes analysis::recompute_witnesses.
  std::function<WitnessCheck(const Certificate&)> recompute;
};

struct CheckReport {
  std::string verdict;                // the certificate's verdict, re-derived ("certified", ...)
  std::vector<std::string> problems;  // each a reason to reject; empty = the certificate is valid
  std::vector<std::string> notes;     // hashes not compared, tool version differences
  std::size_t inequalities = 0;       // closed inequalities re-validated exactly
  std::size_t witnesses_compared = 0;  // by options.recompute
  bool model_compared = false;         // options.model_dir given and hashed
  bool trace_compared = false;         // options.trace given and hashed
  std::optional<CertifiedPrecisionMap> certified;  // set iff valid and certified
};

// Reads and re-validates `path`. Unreadable files and malformed JSON throw bad input; every
// inconsistency of a well-formed certificate is listed in problems.
[[nodiscard]] CheckReport check_certificate(const std::filesystem::path& path, const CheckOptions& options,
                                            std::string_view tool_version);
// The same on text already read (`file` names it in messages).
[[nodiscard]] CheckReport check_certificate_text(std::string_view text, const std::string& file,
                                                 const CheckOptions& options, std::string_view tool_version);

}  // namespace hnf::proofs
