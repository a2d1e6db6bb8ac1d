// The certificate's witnesses from an analysis: the map, the S1 rows of the sufficiency
// obligations and the kappa_t D_t^2 rows of the necessity obligations (docs/certificate.md),
// and their re-derivation from the trace for `hnf-verify check --recompute`. Lives in
// analysis/ because it needs the analysis; the certificate types are proofs/'s.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hnf/analysis/analyze.h"
#include "hnf/proofs/certificate.h"

namespace hnf::analysis {

[[nodiscard]] proofs::PrecisionMap precision_map(const AnalysisResult& analysis);

// One head's S2 and S3 scope: its radius and query norm, and the largest S2 bound over its
// recorded queries and its S3 bound, as exact rationals.
[[nodiscard]] proofs::HeadScope head_scope(const HeadAnalysis& head);

// Rows (kv head, query head, recorded query) with the S1 bound of each; verdict left unknown.
[[nodiscard]] proofs::Obligation sufficiency_obligation(const AnalysisResult& analysis, std::int64_t layer, double budget);

// Rows with kappa_t D_t^2 rounded up and the stored key format's precision; rows failing
// 8 budget 4^bits >= kappa_d2 (decided exactly) are listed below. For certificate `version` >= 3
// one row per (kv head, allocation unit): the unit's largest kappa D^2 and its position (the
// first on ties); before, one row per (kv head, position).
[[nodiscard]] proofs::Obligation necessity_obligation(const AnalysisResult& analysis, std::int64_t layer, double budget,
                                                      int version = proofs::kCertificateVersion);

// Re-runs the analysis of `trace` with the certificate's map and S1 scope (and, with a model
// directory, the composition constants) and compares exactly: every S1 bound, kappa_d2, Lipschitz
// and injection constant, S2 and S3 bound must be at least its recomputed value, every S2 radius
// and S3 query norm at most it, and model_sha256 / text_sha256 must be the trace's. For
// proofs::CheckOptions::recompute (run after every other check has passed).
[[nodiscard]] proofs::WitnessCheck recompute_witnesses(const proofs::Certificate& certificate, const std::string& trace_path,
                                                       const std::optional<std::filesystem::path>& model_dir);

}  // namespace hnf::analysis
