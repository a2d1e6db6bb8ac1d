// The Z3 seam. z3++.h stays inside verify/src; callers see only these types.
//
// An obligation is a closed statement over exact rationals. The solver is asked whether its
// negation is satisfiable: unsat means proved, sat means refuted (with an example), and
// unknown or a timeout is reported as such, never as proved.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hnf::verify {

enum class Answer { kProved, kRefuted, kUnknown, kTimeout, kError };

// An exact rational "p" or "p/q" as an SMT-LIB real literal: "p.0", "(/ p.0 q.0)", "(- ...)".
[[nodiscard]] std::string smtlib_real(const std::string& rational);
[[nodiscard]] std::string_view answer_name(Answer answer) noexcept;

// sum(terms) <= bound, every value an exact rational written "p" or "p/q" (decimal integers,
// q > 0). Decimal fractions are rejected on purpose: printed doubles are not exact.
struct RationalSumLe {
  std::string name;  // names the query in answers and SMT-LIB files, e.g. "layer3_sufficiency"
  std::vector<std::string> terms;
  std::string bound;
};

struct QueryResult {
  std::string name;
  Answer answer = Answer::kError;
  std::string example;  // for kRefuted: "Example: sum = 59/60, bound = 49/100"
  std::string reason;   // for kUnknown / kTimeout / kError: the solver's reason
};

// Test hook, so that a timeout golden does not depend on a wall clock (docs/interfaces.md):
// HNF_TEST_SOLVER_TIMEOUT, read when a Solver is made, lists query names (comma-separated; "*"
// is every query) that answer kTimeout without running Z3, with a reason that says so. It can
// only withhold a proof, never give one: a run that uses it is never certified.
inline constexpr const char* kInjectTimeoutEnv = "HNF_TEST_SOLVER_TIMEOUT";

class Solver {
 public:
  // Every query runs under `timeout_ms` milliseconds (>= 1).
  explicit Solver(unsigned timeout_ms);
  ~Solver();
  Solver(const Solver&) = delete;
  Solver& operator=(const Solver&) = delete;

  // Throws proofs::Error(kBadInput) for a malformed rational.
  [[nodiscard]] QueryResult check(const RationalSumLe& obligation);
  // The negated obligation as a self-contained SMT-LIB2 script (answer "unsat" = proved).
  [[nodiscard]] std::string smtlib(const RationalSumLe& obligation) const;

  // Runs a self-contained SMT-LIB2 script holding the negation of an obligation, under the
  // time limit. If the script declares an Int constant `i` (the index of a failing row), a
  // sat answer reports its value. Unparsable scripts answer kError with the parser's reason.
  // `name` names the query (the obligation) for the test hook above.
  struct ScriptResult {
    Answer answer = Answer::kError;
    std::optional<std::int64_t> index;  // the model's value of i, for kRefuted
    std::string reason;                 // for kUnknown / kTimeout / kError
    double milliseconds = 0.0;          // wall time of parse and check
  };
  [[nodiscard]] ScriptResult check_script(const std::string& script, const std::string& name = "");

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hnf::verify
