// Certification: analysis -> obligations -> Z3 -> certificate (docs/certificate.md).
//
// The obligations are closed statements over the exact rationals of the analysis's outward-
// rounded bounds. Each is written as an SMT-LIB2 script holding its negation (unsat = proved),
// discharged by Z3 under a time limit, and recorded in the certificate with its verdict. Z3 is
// not trusted: proofs::check_certificate re-validates every inequality exactly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hnf/analysis/analyze.h"
#include "hnf/proofs/certificate.h"

namespace hnf::verify {

struct CertifyOptions {
  // The certificate's per-query budget; per-layer budgets when layer_eps is set (one per layer).
  double eps = 0.0;
  std::vector<double> layer_eps;
  // Allocate for this storage size (bits per element) instead of for eps; eps is still the budget.
  std::optional<double> bits;
  // Analysis settings (subset, block, model...); eps/bits/layer_eps/progress are set from above.
  analysis::AnalysisOptions analysis;
  // The model directory the trace was recorded with: adds the composition obligation.
  std::optional<std::filesystem::path> model_dir;
  // End-to-end budget of the composition obligation; default: the composed bound, rounded up.
  std::optional<double> eps_total;
  // Certify's forecast of the runtime guard (a policy certificate), written into the certificate.
  std::optional<proofs::GuardPrediction> prediction;
  unsigned timeout_ms = 10000;  // per solver query
  bool keep_smt = false;        // return each obligation's SMT-LIB2 script (CertifyResult::smt_scripts)
  std::string tool_version;     // "hnf-verify X.Y.Z"
  std::function<void(std::string_view stage, double fraction)> progress;
};

struct CertifyResult {
  proofs::Certificate certificate;
  double analysis_seconds = 0.0;
  double solver_seconds = 0.0;
  double largest_solver_ms = 0.0;
  std::vector<std::string> refutations;  // one line per refuted obligation, then its Example line
  std::vector<std::string> unresolved;   // unknown or timeout, with the solver's reason
  // With keep_smt: (file name, script) per obligation; the file name is also the obligation's smt_file.
  std::vector<std::pair<std::string, std::string>> smt_scripts;
};

// Writes nothing. Throws proofs::Error(kBadInput) for bad options, an unreadable or malformed
// trace or model, and Error(kInternal) when Z3 cannot read a script (a bug of ours).
[[nodiscard]] CertifyResult certify(const std::string& trace_path, const CertifyOptions& options);

// SMT-LIB2 script of an obligation's negation (QF_LIRA/QF_LRA; the Int `i` names a failing row).
[[nodiscard]] std::string obligation_smtlib(const proofs::Obligation& obligation);

// The necessity obligation as the solver sees it: per kv head and precision, the largest
// kappa_d2 over the positions stored at that precision and not listed below the obstruction.
// Equivalent to every row holding (the capacity 8 eps 4^bits depends on the precision only),
// and a handful of rows per layer instead of one per position (65,536 at 32K tokens); the
// checker still re-validates every row of the certificate exactly.
struct NecessityClass {
  std::int64_t kv_head = 0;
  int bits = 0;
  std::string max_kappa_d2;  // exact rational: the largest over the class's rows not listed below
  std::size_t max_row = 0;   // the row holding it
  std::size_t rows = 0;      // rows of the class not listed below
};

// Classes with at least one row not listed below, ordered by kv head, then bits.
[[nodiscard]] std::vector<NecessityClass> necessity_classes(const proofs::Obligation& obligation);

}  // namespace hnf::verify
