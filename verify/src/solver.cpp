#include "hnf/verify/solver.h"

#include <z3++.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <sstream>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"

namespace hnf::verify {
namespace {

void check_rational(const RationalSumLe& obligation, const std::string& value) {
  if (!proofs::is_exact_rational(value)) {
    throw proofs::bad_input(obligation.name, "'" + value + "' is not an exact rational p or p/q with q > 0");
  }
}

// A solver with the query's time limit.
z3::solver limited_solver(z3::context& ctx, unsigned timeout_ms) {
  z3::solver solver(ctx);
  z3::params params(ctx);
  params.set("timeout", timeout_ms);
  solver.set(params);
  return solver;
}

// unknown -> kTimeout when Z3 gave up because of the time limit, else kUnknown.
Answer unknown_answer(const std::string& reason) {
  const bool timed_out = reason.find("timeout") != std::string::npos || reason.find("canceled") != std::string::npos;
  return timed_out ? Answer::kTimeout : Answer::kUnknown;
}

// The query names HNF_TEST_SOLVER_TIMEOUT lists (solver.h); empty when it is unset.
std::set<std::string, std::less<>> injected_timeouts() {
  std::set<std::string, std::less<>> names;
  const char* value = std::getenv(kInjectTimeoutEnv);
  std::stringstream list(value != nullptr ? value : "");
  for (std::string name; std::getline(list, name, ',');) {
    if (!name.empty()) names.insert(name);
  }
  return names;
}

const std::string kInjectedReason =
    std::string("injected by the test hook ") + kInjectTimeoutEnv + ": Z3 was not run";

}  // namespace

std::string smtlib_real(const std::string& rational) {
  HNF_ASSERT(proofs::is_exact_rational(rational), "SMT-LIB constants are exact rationals");
  const bool negative = rational.starts_with('-');
  const std::string body = negative ? rational.substr(1) : rational;
  const auto slash = body.find('/');
  const std::string value = slash == std::string::npos
                                ? body + ".0"
                                : "(/ " + body.substr(0, slash) + ".0 " + body.substr(slash + 1) + ".0)";
  return negative ? "(- " + value + ")" : value;
}

std::string_view answer_name(Answer answer) noexcept {
  switch (answer) {
    case Answer::kProved: return "proved";
    case Answer::kRefuted: return "refuted";
    case Answer::kUnknown: return "unknown";
    case Answer::kTimeout: return "timeout";
    case Answer::kError: return "error";
  }
  return "error";
}

struct Solver::Impl {
  unsigned timeout_ms;
  z3::context ctx;
  std::set<std::string, std::less<>> injected_timeouts;

  [[nodiscard]] bool timeout_injected(std::string_view name) const {
    return injected_timeouts.contains("*") || injected_timeouts.contains(name);
  }
};

Solver::Solver(unsigned timeout_ms) : impl_(std::make_unique<Impl>()) {
  HNF_ASSERT(timeout_ms >= 1, "solver timeout must be at least 1 ms");
  impl_->timeout_ms = timeout_ms;
  impl_->injected_timeouts = injected_timeouts();
}

Solver::~Solver() = default;

QueryResult Solver::check(const RationalSumLe& obligation) {
  for (const auto& t : obligation.terms) check_rational(obligation, t);
  check_rational(obligation, obligation.bound);
  QueryResult result{obligation.name, Answer::kError, {}, {}};
  if (impl_->timeout_injected(obligation.name)) {
    result.answer = Answer::kTimeout;
    result.reason = kInjectedReason;
    return result;
  }
  try {
    z3::context& ctx = impl_->ctx;
    z3::solver solver = limited_solver(ctx, impl_->timeout_ms);
    const z3::expr sum = ctx.real_const("sum");
    z3::expr total = ctx.real_val(0);
    for (const auto& t : obligation.terms) total = total + ctx.real_val(t.c_str());
    solver.add(sum == total);
    solver.add(!(sum <= ctx.real_val(obligation.bound.c_str())));
    switch (solver.check()) {
      case z3::unsat:
        result.answer = Answer::kProved;
        break;
      case z3::sat: {
        result.answer = Answer::kRefuted;
        const z3::expr value = solver.get_model().eval(sum, true);
        // Z3_get_numeral_string prints the exact rational as p/q.
        result.example = "Example: sum = " + std::string(Z3_get_numeral_string(ctx, value)) + ", bound = " + obligation.bound;
        break;
      }
      case z3::unknown:
        result.reason = solver.reason_unknown();
        result.answer = unknown_answer(result.reason);
        break;
    }
  } catch (const z3::exception& e) {
    result.answer = Answer::kError;
    result.reason = e.msg();
  }
  return result;
}

Solver::ScriptResult Solver::check_script(const std::string& script, const std::string& name) {
  ScriptResult result;
  if (impl_->timeout_injected(name)) {
    result.answer = Answer::kTimeout;
    result.reason = kInjectedReason;
    return result;
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    z3::context& ctx = impl_->ctx;
    z3::solver solver = limited_solver(ctx, impl_->timeout_ms);
    solver.add(ctx.parse_string(script.c_str()));
    switch (solver.check()) {
      case z3::unsat:
        result.answer = Answer::kProved;
        break;
      case z3::sat: {
        result.answer = Answer::kRefuted;
        const z3::model model = solver.get_model();
        for (unsigned k = 0; k < model.num_consts(); ++k) {
          const z3::func_decl decl = model.get_const_decl(k);
          if (decl.name().str() != "i") continue;
          std::int64_t value = 0;
          if (model.get_const_interp(decl).is_numeral_i64(value)) result.index = value;
        }
        break;
      }
      case z3::unknown:
        result.reason = solver.reason_unknown();
        result.answer = unknown_answer(result.reason);
        break;
    }
  } catch (const z3::exception& e) {
    result.answer = Answer::kError;
    result.reason = e.msg();
  }
  result.milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  // The limit is on the whole query, parsing included: an answer that arrives after the
  // deadline is discarded, so a limit always fails closed the same way.
  if (result.milliseconds > impl_->timeout_ms && result.answer != Answer::kError) {
    result.answer = Answer::kTimeout;
    result.index.reset();
    result.reason = "timeout: " + std::to_string(result.milliseconds) + " ms exceeds the limit of " +
                    std::to_string(impl_->timeout_ms) + " ms";
  }
  return result;
}

std::string Solver::smtlib(const RationalSumLe& obligation) const {
  for (const auto& t : obligation.terms) check_rational(obligation, t);
  check_rational(obligation, obligation.bound);
  std::string sum = "(+ 0.0";
  for (const auto& t : obligation.terms) sum += " " + smtlib_real(t);
  sum += ")";
  return "; obligation " + obligation.name + ": sum of terms <= bound. unsat = proved.\n"
         "(set-logic QF_LRA)\n"
         "(assert (not (<= " + sum + " " + smtlib_real(obligation.bound) + ")))\n"
         "(check-sat)\n";
}

}  // namespace hnf::verify
