#include "hnf/analysis/allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "hnf/proofs/error.h"

namespace hnf::analysis {

std::size_t AllocationProblem::add_unit(const std::vector<double>& choice_bytes) {
  HNF_ASSERT(!choice_bytes.empty(), "a unit needs at least one choice");
  unit_offset_.push_back(bytes_.size());
  bytes_.insert(bytes_.end(), choice_bytes.begin(), choice_bytes.end());
  costs_.resize(bytes_.size() * num_constraints_, Cost(0.0));
  return unit_offset_.size() - 1;
}

std::size_t AllocationProblem::num_choices(std::size_t unit) const noexcept {
  const std::size_t end = unit + 1 < unit_offset_.size() ? unit_offset_[unit + 1] : bytes_.size();
  return end - unit_offset_[unit];
}

std::vector<double> AllocationProblem::constraint_totals(const std::vector<std::size_t>& choices) const {
  std::vector<double> totals(num_constraints_, 0.0);
  for (std::size_t u = 0; u < num_units(); ++u) {
    const Cost* c = cost(u, choices[u]);
    for (std::size_t j = 0; j < num_constraints_; ++j) totals[j] += c[j];
  }
  return totals;
}

double AllocationProblem::total_bytes(const std::vector<std::size_t>& choices) const {
  double total = 0.0;
  for (std::size_t u = 0; u < num_units(); ++u) total += bytes(u, choices[u]);
  return total;
}

RunMap::RunMap(const std::vector<std::size_t>& choices) {
  for (std::size_t u = 0; u < choices.size(); ++u)
    if (u == 0 || choices[u] != choices[u - 1]) append(u, choices[u]);
}

void RunMap::append(std::size_t first_unit, std::size_t choice) {
  HNF_ASSERT(runs_.empty() || runs_.back().first < first_unit, "runs are appended in unit order");
  runs_.emplace_back(first_unit, choice);
}

std::size_t RunMap::choice_at(std::size_t unit) const {
  HNF_ASSERT(!runs_.empty() && runs_.front().first <= unit, "a run map covers the unit");
  const auto it = std::upper_bound(runs_.begin(), runs_.end(), unit,
                                   [](std::size_t u, const auto& run) { return u < run.first; });
  return std::prev(it)->second;
}

std::vector<std::size_t> RunMap::expand(std::size_t units) const {
  std::vector<std::size_t> choices(units);
  each_run(units, [&](std::size_t first, std::size_t end, std::size_t c) {
    std::fill(choices.begin() + static_cast<std::ptrdiff_t>(first), choices.begin() + static_cast<std::ptrdiff_t>(end), c);
  });
  HNF_ASSERT(units == 0 || (!runs_.empty() && runs_.front().first == 0), "a run map starts at unit 0");
  return choices;
}

std::vector<double> AllocationProblem::constraint_totals(const RunMap& choices) const {
  std::vector<double> totals(num_constraints_, 0.0);
  choices.each_run(num_units(), [&](std::size_t first, std::size_t end, std::size_t choice) {
    for (std::size_t u = first; u < end; ++u) {
      const Cost* c = cost(u, choice);
      for (std::size_t j = 0; j < num_constraints_; ++j) totals[j] += c[j];
    }
  });
  return totals;
}

double AllocationProblem::total_bytes(const RunMap& choices) const {
  double total = 0.0;
  choices.each_run(num_units(), [&](std::size_t first, std::size_t end, std::size_t choice) {
    for (std::size_t u = first; u < end; ++u) total += bytes(u, choice);
  });
  return total;
}

namespace {

bool meets(const std::vector<double>& totals, double budget) {
  return std::all_of(totals.begin(), totals.end(), [&](double t) { return t <= budget; });
}

// argmin_c bytes + lambda.cost per unit, and the Lagrangian value at lambda.
double relaxed_choices(const AllocationProblem& p, const std::vector<double>& lambda, double budget,
                       std::vector<std::size_t>& choices) {
  double value = -budget * std::accumulate(lambda.begin(), lambda.end(), 0.0);
  choices.resize(p.num_units());
  const std::size_t units = p.num_units();
#pragma omp parallel for reduction(+ : value) schedule(static) if (units * lambda.size() > 65536)
  for (std::size_t u = 0; u < units; ++u) {
    double best = std::numeric_limits<double>::infinity();
    for (std::size_t c = 0; c < p.num_choices(u); ++c) {
      const Cost* cost = p.cost(u, c);
      // Four partial sums: independent chains the compiler can overlap.
      double v0 = 0.0, v1 = 0.0, v2 = 0.0, v3 = 0.0;
      std::size_t j = 0;
      for (; j + 4 <= lambda.size(); j += 4) {
        v0 += lambda[j] * cost[j];
        v1 += lambda[j + 1] * cost[j + 1];
        v2 += lambda[j + 2] * cost[j + 2];
        v3 += lambda[j + 3] * cost[j + 3];
      }
      for (; j < lambda.size(); ++j) v0 += lambda[j] * cost[j];
      const double v = p.bytes(u, c) + ((v0 + v1) + (v2 + v3));
      if (v < best) {
        best = v;
        choices[u] = c;
      }
    }
    value += best;
  }
  return value;
}

// Greedy clean-up of a feasible map: per unit in index order, the cheapest choice that keeps
// every constraint met.
void downgrade_while_feasible(const AllocationProblem& p, double budget, std::vector<std::size_t>& choices,
                              std::vector<double>& totals) {
  std::vector<std::size_t> order(p.num_units());
  std::iota(order.begin(), order.end(), 0);
  for (std::size_t u : order) {
    const Cost* current = p.cost(u, choices[u]);
    std::size_t best = choices[u];
    for (std::size_t c = 0; c < p.num_choices(u); ++c) {
      if (p.bytes(u, c) >= p.bytes(u, best)) continue;
      const Cost* candidate = p.cost(u, c);
      bool ok = true;
      for (std::size_t j = 0; j < totals.size() && ok; ++j) ok = totals[j] - current[j] + candidate[j] <= budget;
      if (ok) best = c;
    }
    if (best != choices[u]) {
      const Cost* candidate = p.cost(u, best);
      for (std::size_t j = 0; j < totals.size(); ++j) totals[j] += candidate[j] - current[j];
      choices[u] = best;
    }
  }
}

double violation(const std::vector<double>& totals, double budget) {
  double v = 0.0;
  for (double t : totals) v += std::max(0.0, t - budget);
  return v;
}

// From an infeasible map, repeatedly applies the single-unit change that most reduces the total
// violation sum_j max(0, T_j - budget) (ties: fewer bytes) until feasible or stuck.
void repair_greedily(const AllocationProblem& p, double budget, std::vector<std::size_t>& choices, int max_steps) {
  auto totals = p.constraint_totals(choices);
  double current = violation(totals, budget);
  std::vector<double> trial(totals.size());
  for (int step = 0; step < max_steps && current > 0.0; ++step) {
    double best = current;
    std::size_t best_unit = 0, best_choice = choices[0];
    double best_bytes = 0.0;
    for (std::size_t u = 0; u < p.num_units(); ++u) {
      const Cost* now = p.cost(u, choices[u]);
      for (std::size_t c = 0; c < p.num_choices(u); ++c) {
        if (c == choices[u]) continue;
        const Cost* next = p.cost(u, c);
        double v = 0.0;
        for (std::size_t j = 0; j < totals.size(); ++j) v += std::max(0.0, totals[j] - now[j] + next[j] - budget);
        const double extra = p.bytes(u, c) - p.bytes(u, choices[u]);
        if (v < best || (v == best && v < current && extra < best_bytes)) {
          best = v;
          best_unit = u;
          best_choice = c;
          best_bytes = extra;
        }
      }
    }
    if (best >= current) return;
    const Cost* now = p.cost(best_unit, choices[best_unit]);
    const Cost* next = p.cost(best_unit, best_choice);
    for (std::size_t j = 0; j < totals.size(); ++j) totals[j] += next[j] - now[j];
    choices[best_unit] = best_choice;
    current = violation(totals, budget);
  }
}

// Every map of a small problem, in odometer order; calls f(choices).
template <typename F>
void for_each_map(const AllocationProblem& p, F&& f) {
  std::vector<std::size_t> c(p.num_units(), 0);
  while (true) {
    f(c);
    std::size_t u = 0;
    while (u < c.size() && ++c[u] == p.num_choices(u)) c[u++] = 0;
    if (u == c.size()) return;
  }
}

double map_count(const AllocationProblem& p) {
  double n = 1.0;
  for (std::size_t u = 0; u < p.num_units(); ++u) n *= static_cast<double>(p.num_choices(u));
  return n;
}

}  // namespace

AllocationResult allocate(const AllocationProblem& p, double budget,
                          const std::vector<RunMap>& uniform_candidates, int iterations,
                          AllocationState* state) {
  HNF_ASSERT(budget > 0.0 && std::isfinite(budget), "allocation budget must be positive and finite");
  const std::size_t units = p.num_units();
  const std::size_t m = p.num_constraints();
  AllocationResult result;

  // The smallest achievable total per constraint (each unit at its least-cost choice for
  // that constraint): a budget below the largest of them is infeasible for every map.
  std::vector<double> least(m, 0.0);
  std::vector<std::size_t> cheapest_cost(units, 0);
  for (std::size_t u = 0; u < units; ++u) {
    for (std::size_t j = 0; j < m; ++j) {
      double best = std::numeric_limits<double>::infinity();
      for (std::size_t c = 0; c < p.num_choices(u); ++c) best = std::min(best, static_cast<double>(p.cost(u, c)[j]));
      least[j] += best;
    }
    // The choice with the smallest summed cost (ties: fewer bytes) stands in when infeasible.
    double best_sum = std::numeric_limits<double>::infinity();
    for (std::size_t c = 0; c < p.num_choices(u); ++c) {
      const Cost* cost = p.cost(u, c);
      const double sum = std::accumulate(cost, cost + m, 0.0);
      if (sum < best_sum || (sum == best_sum && p.bytes(u, c) < p.bytes(u, cheapest_cost[u]))) {
        best_sum = sum;
        cheapest_cost[u] = c;
      }
    }
  }
  result.min_feasible_budget = m == 0 ? 0.0 : *std::max_element(least.begin(), least.end());

  std::vector<std::size_t> best_feasible;
  double best_bytes = std::numeric_limits<double>::infinity();
  auto consider = [&](std::vector<std::size_t> choices) {
    auto totals = p.constraint_totals(choices);
    if (!meets(totals, budget)) return;
    downgrade_while_feasible(p, budget, choices, totals);
    const double bytes = p.total_bytes(choices);
    if (bytes < best_bytes) {
      best_bytes = bytes;
      best_feasible = std::move(choices);
    }
  };
  consider(cheapest_cost);
  AllocationState local;
  AllocationState& st = state ? *state : local;
  if (st.candidate_totals.size() != uniform_candidates.size()) {
    st.candidate_totals.clear();
    for (const auto& uniform : uniform_candidates) st.candidate_totals.push_back(p.constraint_totals(uniform));
  }
  for (std::size_t i = 0; i < uniform_candidates.size(); ++i)
    if (meets(st.candidate_totals[i], budget)) consider(uniform_candidates[i].expand(units));

  // Dual ascent on lambda >= 0 with a Polyak step towards the best primal value.
  std::vector<double> lambda(m, 0.0);
  std::vector<std::size_t> choices;
  double lower = relaxed_choices(p, lambda, budget, choices);  // lambda = 0: every unit at its fewest bytes
  consider(choices);

  for (int it = 0; it < iterations && m > 0; ++it) {
    const double value = relaxed_choices(p, lambda, budget, choices);
    lower = std::max(lower, value);
    const auto totals = p.constraint_totals(choices);
    if (meets(totals, budget)) consider(choices);
    double norm2 = 0.0;
    for (std::size_t j = 0; j < m; ++j) {
      const double g = totals[j] - budget;
      if (lambda[j] > 0.0 || g > 0.0) norm2 += g * g;
    }
    if (norm2 == 0.0) break;  // lambda is optimal for the relaxation
    const double target = std::isfinite(best_bytes) ? best_bytes : value + 1.0 + std::fabs(value);
    const double step = 1.5 * std::max(target - value, 1e-9 * std::fabs(target)) / norm2;
    for (std::size_t j = 0; j < m; ++j) lambda[j] = std::max(0.0, lambda[j] + step * (totals[j] - budget));
    // Now and then a primal from a scaled-up lambda: more weight on the costs until the map
    // is feasible.
    if (!meets(totals, budget) && (it % 8 == 7 || it + 1 == iterations)) {
      std::vector<double> scaled = lambda;
      for (int k = 0; k < 30; ++k) {
        for (double& l : scaled) l *= 2.0;
        std::vector<std::size_t> repaired;
        relaxed_choices(p, scaled, budget, repaired);
        if (meets(p.constraint_totals(repaired), budget)) {
          consider(repaired);
          break;
        }
      }
    }
  }

  if (!std::isfinite(best_bytes)) {
    // The dual's maps never met the budget: repair the least-cost map greedily.
    std::vector<std::size_t> repaired = cheapest_cost;
    repair_greedily(p, budget, repaired, 200);
    consider(repaired);
  }
  // Small problems are solved exactly: the optimum is then also the lower bound.
  if (map_count(p) <= kExhaustiveMaps) {
    std::vector<std::size_t> optimum;
    double optimum_bytes = std::numeric_limits<double>::infinity();
    for_each_map(p, [&](const std::vector<std::size_t>& c) {
      const double bytes = p.total_bytes(c);
      if (bytes < optimum_bytes && meets(p.constraint_totals(c), budget)) {
        optimum_bytes = bytes;
        optimum = c;
      }
    });
    if (std::isfinite(optimum_bytes)) {
      best_bytes = optimum_bytes;
      best_feasible = optimum;
      lower = std::max(lower, optimum_bytes);
    }
  }

  result.lower_bound = lower;
  if (std::isfinite(best_bytes)) {
    result.feasible = true;
    result.choices = std::move(best_feasible);
  } else {
    result.choices = cheapest_cost;
  }
  result.bytes = p.total_bytes(result.choices);
  result.totals = p.constraint_totals(result.choices);
  return result;
}

}  // namespace hnf::analysis
