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

#include "hnf/proofs/attestation.h"
#include "hnf/proofs/format.h"
#include "hnf/proofs/policy.h"

namespace hnf::proofs {

// Version 2 (tool 0.5.0 after issue 17): necessity obligations are diagnostics, a composition
// without an end-to-end budget is recorded, not proved. Version 3: a necessity obligation has one
// row per (kv head, allocation unit), the unit's largest kappa D^2 (one per position made a
// 1M-token certificate gigabytes). Versions 1 and 2 are still judged (obligation_standing reads
// them with the same meaning; their necessity rows are per position).
// Version 4: a certificate may certify a precision policy (policy.h): it then carries the policy and
// its hash, its map is the policy's expansion at the trace's length, and its S1 rows are taken
// at each query's aged cache state.
inline constexpr int kCertificateVersion = 4;
// The first version that may carry a policy.
inline constexpr int kPolicyVersion = 4;
// The first version whose necessity rows are per allocation unit.
inline constexpr int kPerUnitNecessityVersion = 3;
inline constexpr int kOldestCertificateVersion = 1;

// Limits of the certificate reader (docs/hostile-input.md). A certificate of 1M tokens x one
// kv head is about 100 MB; the limit leaves room for ten such and refuses what would exhaust
// memory (the parsed document takes several times the file's size).
inline constexpr std::uint64_t kMaxCertificateBytes = std::uint64_t{1} << 30;
// Longest exact rational: every finite double's exact value ("p/q", q <= 2^1074) has under 400
// characters, and the checker's GMP arithmetic stays cheap on 1024.
inline constexpr std::size_t kMaxRationalChars = 1024;
// Longest hash field (model_sha256, trace_sha256, text_sha256, map_sha256, certificate_sha256):
// 64 hex digits, or a short placeholder such as "none".
inline constexpr std::size_t kMaxHashChars = 64;
// Longest trace_file and smt_file: a file name (NAME_MAX).
inline constexpr std::size_t kMaxFileNameChars = 255;
// Longest other string (names, details, examples, assumptions, the certify command line).
inline constexpr std::size_t kMaxCertificateTextBytes = std::size_t{64} << 10;

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
// The solver's answer for the negated obligation: unsat = proved, sat = refuted. Two verdicts
// are not answers and never count as proved: kDiagnostic (necessity: Theorem 5.7's figures, which
// hold by construction once the rows below the obstruction are listed) and kRecorded (a
// composition without an end-to-end budget: the composed bound itself, stated as its budget).
enum class Verdict { kProved, kRefuted, kUnknown, kTimeout, kDiagnostic, kRecorded };
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

// Version 4, optional: certify's forecast of the runtime guard on its calibration trace (the guard
// of THEORY.md section 14.4 run on the policy's cache, every analysed query at its step). Parsed
// and hashed, not checked: a forecast the checker cannot re-derive (proofs/ has no runtime), which
// `eval` then measures. Rows are (query head, position) pairs; a held-out split (queries in odd
// 64-position blocks) was not used to choose epsilon.
struct GuardPrediction {
  std::string rule;                        // how epsilon was chosen
  std::string kind;                        // the guard's class: "probabilistic" or "deterministic"
  double delta = 0.0;                      // its failure probability per row (0: deterministic)
  double eps_rel = 0.0;                    // epsilon / the layer's median ||o|| (0: epsilon was given)
  std::vector<double> output_norm_median;  // [layers] median ||o|| of the calibration's queries
  std::int64_t calibration_rows = 0;       // rows epsilon was chosen on
  std::int64_t calibration_within = 0;     // of those, guard bound <= epsilon
  std::int64_t heldout_rows = 0;
  std::int64_t heldout_within = 0;         // the fraction expected on unseen text
  double median_actual = 0.0;              // median actual error of the calibration rows that read an integer page
  std::vector<std::int64_t> layer_rows;    // [layers] rows of both splits
  std::vector<std::int64_t> layer_within;  // [layers] of those, within the layer's epsilon
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
  // Version 4, optional: the certified precision policy. When present, map is
  // expand_policy(*policy, map.tokens) and the sufficiency rows hold at the aged states.
  std::optional<PrecisionPolicy> policy;
  std::string policy_sha256;  // policy_sha256(*policy); empty without a policy
  std::optional<GuardPrediction> prediction;  // version 4, optional
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
// `text` (a JSON object) with certificate_sha256 replaced by the hash of the rest, computed as
// certificate_to_json computes it: what anyone who edits a certificate can do (the content hash
// catches accidents, not forgery). For tests, and for the fuzz target certificate_resealed, which
// would otherwise never get past the hash check. Bad input naming `file` when `text` is not a
// JSON object.
[[nodiscard]] std::string reseal_certificate_json(std::string_view text, const std::string& file);
// The claim hash: SHA-256 of the canonical JSON of the certificate's claims (model, trace and text
// hashes, map, scope, budgets, obligations with their rows, verdicts and details, tool version,
// schema version), leaving out what says where or how it was made: trace_file, certify_command,
// each obligation's solver_ms and smt_file. The same claims made elsewhere hash the same; an
// attestation signs this hash.
[[nodiscard]] std::string certificate_claim_sha256(const Certificate& certificate);

// How an obligation counts towards the certificate's verdict. Only kProved and kRefuted are
// answers about the map; kDiagnostic and kRecorded are figures that cannot fail and never
// count as proved. Version 1 certificates wrote "proved" for both: there, every necessity
// obligation is a diagnostic and a composition is recorded unless the recorded certify command
// names --eps-total (the only evidence of a real end-to-end budget).
enum class Standing { kProved, kRefuted, kOpen, kDiagnostic, kRecorded };
[[nodiscard]] Standing obligation_standing(const Certificate& certificate, const Obligation& obligation);
[[nodiscard]] std::string_view standing_name(Standing standing) noexcept;  // proved, refuted, open, diagnostic, recorded
struct ObligationCounts {
  std::size_t proved = 0, refuted = 0, open = 0, diagnostic = 0, recorded = 0;
};
[[nodiscard]] ObligationCounts count_obligations(const Certificate& certificate);
// "certified" when every obligation that is an answer was proved (and at least one was), "refuted"
// when one was refuted, "unknown" otherwise.
[[nodiscard]] std::string derived_verdict(const Certificate& certificate);
// The composed end-to-end bound of a composition obligation, sum_i (prod_{j>i} L_j) injection_i
// eps_i, as an exact rational; empty when its columns are not one entry per layer.
[[nodiscard]] std::string composed_bound(const Obligation& composition);

// Strict parse: unknown or missing fields, wrong types, malformed rationals or formats are
// bad input naming `file`. Does not validate meaning (check_certificate does).
[[nodiscard]] Certificate certificate_from_json(std::string_view text, const std::string& file);

// ---- The exact checker ---------------------------------------------------------------------

struct CheckReport;
struct CheckOptions;

// A map that the checker found certified: constructible only by check_certificate_text (the
// friend below; there is no other way to make one). The flags say what the check compared:
// a runtime that needs the map to belong to a model should require model_verified(), and one
// that needs its bounds to be the trace's should require witnesses_verified().
class CertifiedPrecisionMap {
 public:
  [[nodiscard]] const PrecisionMap& map() const noexcept { return map_; }
  [[nodiscard]] const std::string& map_sha256() const noexcept { return map_sha256_; }
  [[nodiscard]] const std::string& model_sha256() const noexcept { return model_sha256_; }
  [[nodiscard]] const std::string& trace_sha256() const noexcept { return trace_sha256_; }
  [[nodiscard]] const std::string& eps() const noexcept { return eps_; }
  // The per-layer budgets, exact rationals [layers] (what the runtime guard compares with).
  [[nodiscard]] const std::vector<std::string>& layer_eps() const noexcept { return layer_eps_; }
  [[nodiscard]] const Scope& scope() const noexcept { return scope_; }
  // The certified policy, when the certificate certifies one (the runtime then follows it).
  [[nodiscard]] const std::optional<PrecisionPolicy>& policy() const noexcept { return policy_; }
  [[nodiscard]] bool model_verified() const noexcept { return model_verified_; }  // model file hash compared
  [[nodiscard]] bool trace_verified() const noexcept { return trace_verified_; }  // trace file hash compared
  [[nodiscard]] bool witnesses_recomputed() const noexcept { return witnesses_recomputed_; }
  // An attestation of this certificate verified under the configured public key: its witnesses
  // were re-derived by the attesting check (check --recompute --sign).
  [[nodiscard]] bool witnesses_attested() const noexcept { return witnesses_attested_; }
  // Re-derived now or attested: what a runtime cache requires by default.
  [[nodiscard]] bool witnesses_verified() const noexcept { return witnesses_recomputed_ || witnesses_attested_; }

 private:
  CertifiedPrecisionMap() = default;
  friend CheckReport check_certificate_text(std::string_view text, const std::string& file, const CheckOptions& options,
                                            std::string_view tool_version);
  PrecisionMap map_;
  std::optional<PrecisionPolicy> policy_;
  std::string map_sha256_, model_sha256_, trace_sha256_, eps_;
  std::vector<std::string> layer_eps_;
  Scope scope_;
  bool model_verified_ = false, trace_verified_ = false, witnesses_recomputed_ = false, witnesses_attested_ = false;
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
  // An attestation of the certificate (attestation.h) and the public key it must verify under.
  std::optional<Attestation> attestation;
  std::optional<PublicKey> trusted_key;
};

struct CheckReport {
  std::string verdict;                // the certificate's verdict, re-derived ("certified", ...)
  std::vector<std::string> problems;  // each a reason to reject; empty = the certificate is valid
  std::vector<std::string> notes;     // hashes not compared, tool version differences
  std::size_t inequalities = 0;       // closed inequalities re-validated exactly
  std::size_t witnesses_compared = 0;  // by options.recompute
  bool model_compared = false;         // options.model_dir given and hashed
  bool trace_compared = false;         // options.trace given and hashed
  bool attested = false;               // options.attestation verified under options.trusted_key
  std::optional<CertifiedPrecisionMap> certified;  // set iff valid and certified
};

// The text of the certificate file `path`: a regular file of at most kMaxCertificateBytes, read
// as one consistent snapshot (json_limits.h read_regular_file). Bad input naming `path` otherwise.
[[nodiscard]] std::string read_certificate_text(const std::filesystem::path& path);
// Reads (read_certificate_text) and re-validates `path`. Unreadable files and malformed JSON
// throw bad input; every inconsistency of a well-formed certificate is listed in problems.
[[nodiscard]] CheckReport check_certificate(const std::filesystem::path& path, const CheckOptions& options,
                                            std::string_view tool_version);
// The same on text already read (`file` names it in messages).
[[nodiscard]] CheckReport check_certificate_text(std::string_view text, const std::string& file,
                                                 const CheckOptions& options, std::string_view tool_version);

}  // namespace hnf::proofs
