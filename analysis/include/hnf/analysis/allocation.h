// Precision allocation as a multiple-choice problem with one constraint per recorded query:
//   minimise   sum_u bytes[u][c_u]
//   subject to sum_u cost[u][c_u][j] <= budget   for every constraint j,
// where unit u is a block of positions of K or of V of one (layer, kv head) and c_u its
// format. The costs are the separable S1 sensitivities of proofs/THEORY.md (section
// "Allocation"). Solved by Lagrangian relaxation: the dual value is a lower bound on the
// optimum of this model (weak duality), the primal a feasible map, so the gap is a number.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "hnf/proofs/float16.h"

namespace hnf::analysis {

// One cost of the model, stored in 16 bits (bfloat16: round to nearest even, 8 significant
// bits, the range of a float). The cost matrix is units x choices x constraints, the largest
// array of a long-context analysis; the allocator is a heuristic whose maps are certified by
// their S1 bounds alone, so the model it optimises is the one these stored values define (its
// Lagrangian lower bound included).
class Cost {
 public:
  Cost() = default;
  Cost(double value) noexcept  // NOLINT(google-explicit-constructor): costs are assigned from doubles
      : bits_(proofs::float_to_bf16_bits(static_cast<float>(value))) {}
  operator double() const noexcept {  // NOLINT(google-explicit-constructor)
    return static_cast<double>(proofs::bf16_bits_to_float(bits_));
  }

 private:
  std::uint16_t bits_ = 0;
};
static_assert(sizeof(Cost) == 2, "a stored cost is 16 bits");

// A choice per unit stored as runs: units [first_i, first_{i+1}) take choice_i. A uniform map of
// K and V is two runs however many units a long trace has (as full vectors the allocator's
// uniform candidates alone were 140 x units x 8 bytes).
class RunMap {
 public:
  RunMap() = default;
  explicit RunMap(const std::vector<std::size_t>& choices);  // one run per change of choice
  // Units from first_unit on (to the next run) take `choice`; runs are appended in unit order.
  void append(std::size_t first_unit, std::size_t choice);
  [[nodiscard]] std::size_t choice_at(std::size_t unit) const;
  [[nodiscard]] std::vector<std::size_t> expand(std::size_t units) const;  // [units]
  // Calls f(first, end, choice) per run, clipped to [0, units).
  template <class F>
  void each_run(std::size_t units, F&& f) const {
    for (std::size_t i = 0; i < runs_.size(); ++i) {
      const std::size_t end = i + 1 < runs_.size() ? runs_[i + 1].first : units;
      if (runs_[i].first < end) f(runs_[i].first, std::min(end, units), runs_[i].second);
    }
  }

 private:
  std::vector<std::pair<std::size_t, std::size_t>> runs_;  // (first unit, choice), increasing first
};

class AllocationProblem {
 public:
  explicit AllocationProblem(std::size_t num_constraints) : num_constraints_(num_constraints) {}

  // Adds a unit whose choices have these byte costs; returns its index. Its constraint
  // costs start at 0 and are filled through cost().
  std::size_t add_unit(const std::vector<double>& choice_bytes);

  [[nodiscard]] std::size_t num_units() const noexcept { return unit_offset_.size(); }
  [[nodiscard]] std::size_t num_constraints() const noexcept { return num_constraints_; }
  [[nodiscard]] std::size_t num_choices(std::size_t unit) const noexcept;
  [[nodiscard]] double bytes(std::size_t unit, std::size_t choice) const noexcept {
    return bytes_[unit_offset_[unit] + choice];
  }
  // cost[j] of choosing `choice` for `unit`, [num_constraints].
  [[nodiscard]] Cost* cost(std::size_t unit, std::size_t choice) noexcept {
    return costs_.data() + (unit_offset_[unit] + choice) * num_constraints_;
  }
  [[nodiscard]] const Cost* cost(std::size_t unit, std::size_t choice) const noexcept {
    return costs_.data() + (unit_offset_[unit] + choice) * num_constraints_;
  }

  // Per constraint, sum over units of the cost of the given choices, [num_constraints].
  [[nodiscard]] std::vector<double> constraint_totals(const std::vector<std::size_t>& choices) const;
  [[nodiscard]] double total_bytes(const std::vector<std::size_t>& choices) const;
  [[nodiscard]] std::vector<double> constraint_totals(const RunMap& choices) const;
  [[nodiscard]] double total_bytes(const RunMap& choices) const;

 private:
  std::size_t num_constraints_;
  std::vector<std::size_t> unit_offset_;  // first choice index of each unit
  std::vector<double> bytes_;             // [total choices]
  std::vector<Cost> costs_;               // [total choices, num_constraints]
};

struct AllocationResult {
  bool feasible = false;               // a map meeting every constraint was found
  std::vector<std::size_t> choices;    // [units]; the cheapest-cost map when infeasible
  double bytes = 0.0;                  // of `choices`
  double lower_bound = 0.0;            // Lagrangian dual value (or the exact optimum of a small problem):
                                       // no feasible map has fewer bytes
  double min_feasible_budget = 0.0;    // max_j sum_u min_c cost: no budget below this is feasible
  std::vector<double> totals;          // constraint_totals(choices)
};

// Problems with at most this many maps are solved exactly by enumeration.
inline constexpr double kExhaustiveMaps = 4096;

// Solves the problem for `budget` (> 0). When the dual's maps are all infeasible, the
// least-cost map is repaired greedily; finding a feasible map of a large problem is not
// guaranteed (the multi-constraint choice problem is NP-hard), small ones are exact. `iterations` subgradient steps on the dual.
// Every uniform map (the same choice index in every unit, where units share a choice list)
// is in the search space through `uniform_candidates`: each entry is a full choice vector
// that the result must not be worse than when feasible.
// Carried between calls on the same problem and candidates (a bisection over budgets): the
// candidates' constraint totals are computed once. (Warm-starting the multipliers from another
// budget was tried and gave maps with more bytes.)
struct AllocationState {
  std::vector<std::vector<double>> candidate_totals;  // [candidates][num_constraints]
};

[[nodiscard]] AllocationResult allocate(const AllocationProblem& problem, double budget,
                                        const std::vector<RunMap>& uniform_candidates,
                                        int iterations = 40, AllocationState* state = nullptr);

}  // namespace hnf::analysis
