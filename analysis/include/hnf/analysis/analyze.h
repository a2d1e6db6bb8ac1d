// The analysis of a trace (proofs/THEORY.md is the reference for every quantity here):
// per-position attention statistics, curvature, Lipschitz constants, diameter and obstruction
// bound; a precision map chosen from the format vocabulary; and for that map the S1, S2 and
// S3 upper bounds of the attention-output error of every (layer, head, recorded query).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hnf/analysis/trace.h"
#include "hnf/proofs/format.h"
#include "hnf/proofs/certificate.h"

namespace hnf::analysis {

struct AnalysisOptions {
  // Exactly one of eps / bits. eps: the budget for the attention output error of every
  // (layer, query head, recorded query), Euclidean norm over head_dim. bits: average storage
  // bits per K/V element (metadata included), the same for every (layer, kv head); per head
  // the map with the smallest separable-model budget at that size is chosen, and the largest
  // S1 bound over all heads is reported as the achieved epsilon.
  std::optional<double> eps;
  std::optional<double> bits;
  // Optional per-layer budgets (one per layer, with eps set): layer l uses layer_eps[l]. An
  // end-to-end budget split by the composition law needs the layers' Lipschitz constants,
  // which a trace does not hold (the verify stage).
  std::vector<double> layer_eps;
  // Recorded-query subset: the `last_queries` newest recorded queries plus every
  // `query_stride`-th recorded query (0: a stride giving about `last_queries` more).
  std::int64_t last_queries = 32;
  std::int64_t query_stride = 0;
  // Instead of last_queries/query_stride: exactly the recorded queries at these positions
  // (strictly increasing; each must be recorded). Used to re-derive a certificate's S1 scope.
  std::vector<std::int64_t> query_positions;
  // Allocation unit in positions (16, 32 or 64); per-channel key formats group this many positions.
  int block = 16;
  // S2 radius per head: this quantile of the distance between a recorded query and the query one position earlier.
  double s2_quantile = 0.5;
  // Allocation objective per query: "rms" (default) predicts the error as
  // sqrt(sum_t a_t^2 (delta_t^2 ||v_t - o||^2 + ||dv_t||^2)), the size of a sum of independent
  // residuals; "bound" is the rigorous separable bound sum_t a_t (|delta_t| ||v_t - o|| + ||dv_t||)
  // (THEORY.md, Theorem B). Either way the chosen map is certified by its S1 bounds only.
  std::string model = "rms";
  // Formats whose score perturbation |q.dk/sqrt(d)| exceeds this (nats) somewhere in a unit
  // are not offered for that unit (the separable model's factor is e^{2 cap}); bound model only.
  double delta_cap = 1.0;
  // Optional held-out trace of another text with the same shape: S2 coverage and sharpness.
  std::string holdout_trace;
  // Instead of allocating, evaluate this map: called per (layer, kv head) with the number of
  // allocation units, it fills one format per unit for keys and for values (formats must be
  // offered at this block size). For adversarial and baseline maps; eps then only sets p_min.
  std::function<void(std::int64_t layer, std::int64_t kv_head, std::size_t units, std::vector<proofs::Format>& keys,
                     std::vector<proofs::Format>& values)>
      fixed_map;
  // Instead of a map: certify this precision policy (proofs/policy.h). The map analysed for S2,
  // S3 and necessity is the policy's expansion at the trace's length (block = the policy's page),
  // and each query's S1 is taken against the cache state the policy gives at that query's step
  // (the rows it sees at the ages they have then; THEORY.md section 14). Without
  // query_positions the queries are every recorded position below `dense_queries` and every
  // `beyond_stride`-th recorded query after it. eps then only sets the budget and p_min.
  std::optional<proofs::PrecisionPolicy> policy;
  std::int64_t dense_queries = 4096;
  std::int64_t beyond_stride = 64;
  // Called with a stage name and the fraction done (0..1) of the (layer, kv head) pairs.
  std::function<void(std::string_view, double)> progress;
};

// Per position of one (layer, kv head), over the subset's queries of all its query heads.
// Rounded to nearest (statistics and necessity estimates, not certified bounds). Kept for every
// head of the trace, so the figures only reported are floats (the weights they come from are);
// kappa and the diameter, which the necessity rows are computed from, stay doubles.
struct PositionAnalysis {
  std::vector<float> max_weight;    // [tokens] largest attention weight a_jt
  std::vector<float> mean_weight;   // [tokens] mean of a_jt over the queries that see t
  std::vector<double> kappa;        // [tokens] curvature kappa_t (THEORY.md, Definition 4)
  std::vector<float> lipschitz_k;   // [tokens] max_j ||d o_j / d k_t||
  std::vector<float> lipschitz_v;   // [tokens] max_j ||d o_j / d v_t|| = max_j a_jt
  std::vector<double> diameter;     // [tokens] D_t = max_i k_ti - min_i k_ti
  std::vector<std::int16_t> p_min;  // [tokens] obstruction bound (Theorem 5.7) at the layer's epsilon
};

struct QueryBound {
  std::int64_t head = 0;      // query head
  std::int64_t position = 0;  // query position; it attends to positions 0..position
  double s1 = 0.0;            // certified upper bound (rounded up) of ||o_hat - o|| for this query
  double actual_lo = 0.0;     // rigorous lower bound of the actual error (for sharpness)
  double s2 = 0.0;            // upper bound over every query within the head's radius R of this one
  double model = 0.0;         // allocation model's value for this query (rounded to nearest; 1e30 = outside the cap)
};

struct HeadAnalysis {
  std::int64_t layer = 0;
  std::int64_t kv_head = 0;
  double eps = 0.0;                           // this layer's budget (0 in --bits mode)
  std::string map_source;                     // "allocated", "allocated, reweighted by S1" (--bits),
                                              // "uniform K,V" (a baseline won), "given", "fp16 ..."
  std::vector<proofs::Format> key_formats;    // [units] format of each block of `block` positions
  std::vector<proofs::Format> value_formats;  // [units]
  PositionAnalysis positions;
  std::vector<QueryBound> queries;
  double s2_radius = 0.0;        // R of this kv head
  double s3_query_norm = 0.0;    // Q: the largest query norm of the trace for this head's query heads
  double s3 = 0.0;               // upper bound over every query with ||q|| <= Q at any position
  double bytes = 0.0;            // of this head's K and V with the map (metadata included)
  double lower_bound_bytes = 0.0;  // Lagrangian lower bound for the same model and budget; meaningful
                                   // only when map_source is "allocated" (else 0)
  double model_budget = 0.0;     // the separable model's budget the map was allocated for
  double obstruction_bits = 0.0; // mean over positions of max(p_min, 0), keys
  // S2 on the held-out trace: recorded positions whose held-out query lies within R, and for
  // those, the S2 bound over the actual error of the held-out query on this cache.
  std::int64_t holdout_total = 0;
  std::int64_t holdout_inside = 0;
  std::vector<double> holdout_ratios;
};

struct AnalysisResult {
  std::string trace_path;
  TraceShape shape;
  AnalysisOptions options;             // progress callback cleared
  std::vector<std::int64_t> query_positions;  // the recorded-query subset analysed
  std::int64_t query_stride = 0;               // the stride used (options.query_stride or the automatic one)
  double eps = 0.0;                    // the budget met (given; the largest --layer-eps; or achieved for --bits)
  bool feasible = true;
  double min_feasible_eps = 0.0;       // the all-fp16 map's largest S1 bound (set when infeasible)
  std::vector<std::string> infeasible;  // "layer L head H position P: S1 X with fp16 everywhere"
  std::vector<HeadAnalysis> heads;     // per (layer, kv head)
  double bits_per_element = 0.0;       // whole map, metadata and the map's own format ids included
  double lower_bound_bits = 0.0;       // Lagrangian lower bound for the same model; NaN unless every head's map was allocated
  double obstruction_bits = 0.0;       // mean obstruction minimum over keys
  double seconds = 0.0;
};

// Throws proofs::Error(kBadInput) for invalid options or a trace with NaN/Inf, naming the problem.
[[nodiscard]] AnalysisResult analyze_trace(const std::string& trace_path, AnalysisOptions options);

// A policy's analysed queries (AnalysisOptions::policy): indices into `recorded` (sorted positions)
// of every position below `dense` and every `stride`-th recorded query after them.
[[nodiscard]] std::vector<std::size_t> policy_query_indices(const std::vector<std::int64_t>& recorded, std::int64_t dense,
                                                            std::int64_t stride);

// Obstruction bound of Theorem 5.7 (THEORY.md): the smallest p with kappa (D 2^-p)^2 / 8 <= eps,
// i.e. ceil(log2(kappa D^2 / (8 eps)) / 2), at least 0.
[[nodiscard]] int obstruction_bits(double kappa, double diameter, double eps);

}  // namespace hnf::analysis
