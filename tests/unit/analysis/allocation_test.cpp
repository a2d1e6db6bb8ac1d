// allocate() against brute force on small multiple-choice problems: the map it returns is
// feasible whenever one exists, never beats the optimum, its Lagrangian bound never exceeds
// the optimum, and it never loses to a feasible uniform candidate.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "hnf/analysis/allocation.h"
#include "hnf/proofs/error.h"

using hnf::analysis::allocate;
using hnf::analysis::AllocationProblem;
using hnf::analysis::RunMap;
using hnf::analysis::AllocationResult;

namespace {

struct Random {
  AllocationProblem problem{0};
  std::vector<hnf::analysis::RunMap> uniform;  // empty when units have different choice counts
  double budget = 1.0;
};

bool meets(const std::vector<double>& totals, double budget) {
  return std::all_of(totals.begin(), totals.end(), [&](double t) { return t <= budget; });
}

// Calls f(choices) for every map of the problem.
template <typename F>
void for_each_map(const AllocationProblem& p, F&& f) {
  std::vector<std::size_t> c(p.num_units(), 0);
  while (true) {
    f(c);
    std::size_t u = 0;
    for (; u < c.size(); ++u) {
      if (++c[u] < p.num_choices(u)) break;
      c[u] = 0;
    }
    if (u == c.size()) return;
  }
}

double max_or_zero(const std::vector<double>& x) { return x.empty() ? 0.0 : *std::max_element(x.begin(), x.end()); }

Random make_problem(std::mt19937_64& rng, int index) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const std::size_t units = 1 + static_cast<std::size_t>(rng() % 6);
  const std::size_t constraints = index % 17 == 0 ? 0 : 1 + static_cast<std::size_t>(rng() % 3);
  const bool shared = index % 2 == 0;
  const std::size_t shared_choices = 1 + static_cast<std::size_t>(rng() % 4);
  const bool integer_bytes = index % 3 == 0;
  const bool monotone = index % 4 != 1;  // more bytes, less cost (like formats); else arbitrary
  Random r;
  r.problem = AllocationProblem(constraints);
  for (std::size_t u = 0; u < units; ++u) {
    const std::size_t choices = shared ? shared_choices : 1 + static_cast<std::size_t>(rng() % 4);
    std::vector<double> bytes(choices);
    for (auto& b : bytes) b = integer_bytes ? static_cast<double>(1 + rng() % 12) : 0.5 + 20.0 * unit(rng);
    r.problem.add_unit(bytes);
  }
  for (std::size_t u = 0; u < units; ++u) {
    for (std::size_t c = 0; c < r.problem.num_choices(u); ++c) {
      auto* cost = r.problem.cost(u, c);
      for (std::size_t j = 0; j < constraints; ++j) {
        const double x = unit(rng);
        if (monotone) {
          // Cost roughly inversely related to bytes, with noise; some zero-cost choices.
          cost[j] = x < 0.1 ? 0.0 : x / r.problem.bytes(u, c);
        } else {
          cost[j] = x < 0.05 ? 1e30 : (x < 0.15 ? 0.0 : x);
        }
      }
    }
  }
  if (shared) {
    for (std::size_t c = 0; c < shared_choices; ++c) r.uniform.emplace_back(std::vector<std::size_t>(units, c));
  }
  // A budget near what some map needs (sometimes exactly it, a tie with the constraint).
  std::vector<std::size_t> some(units);
  for (std::size_t u = 0; u < units; ++u) some[u] = static_cast<std::size_t>(rng() % r.problem.num_choices(u));
  const double needed = max_or_zero(r.problem.constraint_totals(some));
  const double factor = index % 5 == 0 ? 1.0 : 0.5 + unit(rng);
  r.budget = needed * factor;
  if (!(r.budget > 0.0) || r.budget > 1e29) r.budget = 0.1 + unit(rng);
  return r;
}

}  // namespace

TEST_CASE("RunMap keeps a map as runs and expands it to the same choices") {
  const std::vector<std::size_t> choices = {2, 2, 0, 0, 0, 1, 2, 2};
  const RunMap m(choices);
  CHECK(m.expand(choices.size()) == choices);
  for (std::size_t u = 0; u < choices.size(); ++u) CHECK(m.choice_at(u) == choices[u]);
  AllocationProblem p(2);
  for (std::size_t u = 0; u < choices.size(); ++u) {
    p.add_unit({1.0, 2.0, 4.0});
    for (std::size_t c = 0; c < 3; ++c) {
      p.cost(u, c)[0] = static_cast<double>(u + c);
      p.cost(u, c)[1] = 1.0 / static_cast<double>(1 + u * c);
    }
  }
  CHECK(p.constraint_totals(m) == p.constraint_totals(choices));
  CHECK(p.total_bytes(m) == p.total_bytes(choices));
  RunMap two;
  two.append(0, 1);
  two.append(5, 2);
  CHECK(two.expand(8) == std::vector<std::size_t>{1, 1, 1, 1, 1, 2, 2, 2});
  CHECK_THROWS_AS(two.append(3, 0), hnf::proofs::Error);  // runs go in unit order
}

TEST_CASE("allocate agrees with brute force on 2,500 small random problems") {
  std::mt19937_64 rng(42);
  int feasible_cases = 0, infeasible_cases = 0, optimal_cases = 0, uniform_cases = 0, missed = 0;
  for (int index = 0; index < 2500; ++index) {
    CAPTURE(index);
    const Random r = make_problem(rng, index);
    const AllocationProblem& p = r.problem;
    const std::size_t m = p.num_constraints();
    CAPTURE(p.num_units());
    CAPTURE(m);
    CAPTURE(r.budget);

    // Brute force: the optimum, and the least budget any map needs.
    double optimum = std::numeric_limits<double>::infinity();
    double least_needed = std::numeric_limits<double>::infinity();
    for_each_map(p, [&](const std::vector<std::size_t>& c) {
      const auto totals = p.constraint_totals(c);
      least_needed = std::min(least_needed, max_or_zero(totals));
      if (meets(totals, r.budget)) optimum = std::min(optimum, p.total_bytes(c));
    });
    const bool brute_feasible = std::isfinite(optimum);

    const AllocationResult result = allocate(p, r.budget, r.uniform);

    // Consistency of the result with the problem.
    REQUIRE(result.choices.size() == p.num_units());
    for (std::size_t u = 0; u < p.num_units(); ++u) REQUIRE(result.choices[u] < p.num_choices(u));
    CHECK(result.bytes == p.total_bytes(result.choices));
    CHECK(result.totals == p.constraint_totals(result.choices));

    // min_feasible_budget: max_j sum_u min_c cost, a budget no map can go below.
    std::vector<double> least(m, 0.0);
    for (std::size_t u = 0; u < p.num_units(); ++u) {
      for (std::size_t j = 0; j < m; ++j) {
        double best = std::numeric_limits<double>::infinity();
        for (std::size_t c = 0; c < p.num_choices(u); ++c) best = std::min(best, static_cast<double>(p.cost(u, c)[j]));
        least[j] += best;
      }
    }
    CHECK(result.min_feasible_budget == max_or_zero(least));
    CHECK(result.min_feasible_budget <= least_needed);
    if (m == 1) CHECK(result.min_feasible_budget == least_needed);  // one constraint: exact

    if (brute_feasible) {
      ++feasible_cases;
      CAPTURE(optimum);
      CAPTURE(result.bytes);
      CAPTURE(result.lower_bound);
      CHECK(r.budget >= result.min_feasible_budget);
      // Weak duality: the dual value never exceeds the optimum, found or not.
      CHECK(result.lower_bound <= optimum + 1e-9 * std::fabs(optimum));
      if (result.feasible) {
        CHECK(meets(result.totals, r.budget));
        CHECK(result.bytes >= optimum);
        CHECK(result.lower_bound <= result.bytes + 1e-9 * std::fabs(result.bytes));
        if (result.bytes == optimum) ++optimal_cases;
      } else {
        // A feasible map exists but the heuristic found none: counted here, asserted in the
        // (skipped, known library bug) test case below.
        ++missed;
      }
    } else {
      ++infeasible_cases;
      CHECK(!result.feasible);
      // With one constraint min_feasible_budget is exact; with several it is only necessary.
      if (m == 1) CHECK(result.min_feasible_budget > r.budget);
    }
    if (!result.feasible) {
      // Infeasible: per unit the choice with the smallest summed cost.
      for (std::size_t u = 0; u < p.num_units(); ++u) {
        auto sum = [&](std::size_t c) {
          double s = 0.0;
          for (std::size_t j = 0; j < m; ++j) s += p.cost(u, c)[j];
          return s;
        };
        for (std::size_t c = 0; c < p.num_choices(u); ++c) CHECK(sum(result.choices[u]) <= sum(c));
      }
    }

    // Never worse than a feasible uniform candidate.
    double best_uniform = std::numeric_limits<double>::infinity();
    for (const auto& c : r.uniform)
      if (meets(p.constraint_totals(c), r.budget)) best_uniform = std::min(best_uniform, p.total_bytes(c));
    if (std::isfinite(best_uniform)) {
      ++uniform_cases;
      REQUIRE(result.feasible);
      CHECK(result.bytes <= best_uniform);
    }
  }
  MESSAGE("feasible " << feasible_cases << ", infeasible " << infeasible_cases << ", optimal " << optimal_cases
                      << ", with a feasible uniform candidate " << uniform_cases << ", feasible but missed " << missed);
  // The generator must exercise both outcomes and the uniform path.
  CHECK(feasible_cases > 1000);
  CHECK(infeasible_cases > 200);
  CHECK(uniform_cases > 400);
  // The Lagrangian heuristic plus the greedy clean-up finds the optimum of most tiny problems.
  CHECK(optimal_cases > feasible_cases * 3 / 4);
}

TEST_CASE("allocate: hand-made problems") {
  SUBCASE("one constraint: trade bytes for cost") {
    // Two units, choices (bytes, cost): cheap (1, 1.0), medium (2, 0.5), expensive (4, 0.0).
    AllocationProblem p(1);
    for (int u = 0; u < 2; ++u) {
      const auto unit = p.add_unit({1.0, 2.0, 4.0});
      p.cost(unit, 0)[0] = 1.0;
      p.cost(unit, 1)[0] = 0.5;
      p.cost(unit, 2)[0] = 0.0;
    }
    CHECK(p.num_units() == 2);
    CHECK(p.num_choices(0) == 3);
    // Budget 1.5: {cheap, medium} (3 bytes, cost 1.5) is optimal.
    const auto r = allocate(p, 1.5, {});
    CHECK(r.feasible);
    CHECK(r.bytes == 3.0);
    CHECK(r.totals.size() == 1);
    CHECK(r.totals[0] <= 1.5);
    CHECK(r.lower_bound <= 3.0);
    CHECK(r.min_feasible_budget == 0.0);
    // Budget 2: all cheap.
    const auto loose = allocate(p, 2.0, {});
    CHECK(loose.feasible);
    CHECK(loose.bytes == 2.0);
    CHECK(loose.lower_bound <= 2.0 + 1e-12);
  }
  SUBCASE("two constraints: min_feasible_budget is necessary, not sufficient") {
    // One unit, choice 0 costs (0, 10), choice 1 costs (10, 0): every map needs budget 10,
    // but each constraint alone could reach 0.
    AllocationProblem p(2);
    p.add_unit({1.0, 1.0});
    p.cost(0, 0)[1] = 10.0;
    p.cost(0, 1)[0] = 10.0;
    const auto r = allocate(p, 5.0, {});
    CHECK(!r.feasible);
    CHECK(r.min_feasible_budget == 0.0);
    const auto ok = allocate(p, 10.0, {});
    CHECK(ok.feasible);
    CHECK(ok.bytes == 1.0);
  }
  SUBCASE("uniform candidates are in the search space") {
    AllocationProblem p(2);
    for (int u = 0; u < 3; ++u) {
      const auto unit = p.add_unit({1.0, 5.0});
      p.cost(unit, 0)[0] = 1.0;
      p.cost(unit, 0)[1] = 1.0;
    }
    // Only all-expensive (15 bytes, cost 0) meets budget 0.5.
    const auto r = allocate(p, 0.5, {RunMap(std::vector<std::size_t>{0, 0, 0}), RunMap(std::vector<std::size_t>{1, 1, 1})});
    CHECK(r.feasible);
    CHECK(r.bytes == 15.0);
    CHECK(r.choices == std::vector<std::size_t>{1, 1, 1});
    CHECK(r.lower_bound <= 15.0);
  }
  SUBCASE("invalid budgets are internal errors") {
    AllocationProblem p(1);
    p.add_unit({1.0});
    CHECK_THROWS_AS((void)allocate(p, 0.0, {}), hnf::proofs::Error);
    CHECK_THROWS_AS((void)allocate(p, -1.0, {}), hnf::proofs::Error);
    CHECK_THROWS_AS((void)allocate(p, std::numeric_limits<double>::infinity(), {}), hnf::proofs::Error);
    CHECK_THROWS_AS((void)allocate(p, std::nan(""), {}), hnf::proofs::Error);
    CHECK_THROWS_AS(p.add_unit({}), hnf::proofs::Error);
  }
}

// Was a library bug (fixed by the greedy repair and exact small problems; analysis/src/allocation.cpp, allocate()): the
// result is infeasible although a feasible map exists whenever that map is never the minimiser
// of bytes + lambda.cost for any lambda >= 0 (it is not on the lower convex hull of the
// choices), is not the smallest-summed-cost map, and is not a uniform candidate. One unit
// with choices (bytes; costs) A (1; 6, 0), B (1; 0, 6), C (5; 5, 5) and budget 5: only C is
// feasible, and C beats A and B in the relaxation only if l1 > 4 + 5 l2 and l2 > 4 + 5 l1,
// which no lambda satisfies. The random sweep of the test case above hits this in a few
// problems (reported there as "feasible but missed").
TEST_CASE("allocate finds a feasible map whenever one exists") {
  AllocationProblem p(2);
  p.add_unit({1.0, 1.0, 5.0});
  p.cost(0, 0)[0] = 6.0;
  p.cost(0, 1)[1] = 6.0;
  p.cost(0, 2)[0] = 5.0;
  p.cost(0, 2)[1] = 5.0;
  const auto r = allocate(p, 5.0, {});
  CHECK(r.feasible);
  CHECK(r.bytes == 5.0);

  std::mt19937_64 rng(42);
  int missed = 0;
  for (int index = 0; index < 2500; ++index) {
    const Random problem = make_problem(rng, index);
    bool exists = false;
    for_each_map(problem.problem, [&](const std::vector<std::size_t>& c) {
      exists = exists || meets(problem.problem.constraint_totals(c), problem.budget);
    });
    if (exists && !allocate(problem.problem, problem.budget, problem.uniform).feasible) ++missed;
  }
  CHECK(missed == 0);
}
