#include "hnf/verify/solver.h"

#include <z3++.h>

#include <algorithm>
#include <cctype>

#include "hnf/proofs/error.h"

namespace hnf::verify {
namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

// "-?[0-9]+(/[0-9]+)?" with a non-zero denominator.
bool is_exact_rational(std::string_view s) {
  if (s.starts_with('-')) s.remove_prefix(1);
  const auto slash = s.find('/');
  if (slash == std::string_view::npos) return all_digits(s);
  const std::string_view denominator = s.substr(slash + 1);
  return all_digits(s.substr(0, slash)) && all_digits(denominator) &&
         denominator.find_first_not_of('0') != std::string_view::npos;
}

void check_rational(const RationalSumLe& obligation, const std::string& value) {
  if (!is_exact_rational(value)) {
    throw proofs::bad_input(obligation.name, "'" + value + "' is not an exact rational p or p/q with q > 0");
  }
}

}  // namespace

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
};

Solver::Solver(unsigned timeout_ms) : impl_(std::make_unique<Impl>()) {
  HNF_ASSERT(timeout_ms >= 1, "solver timeout must be at least 1 ms");
  impl_->timeout_ms = timeout_ms;
}

Solver::~Solver() = default;

QueryResult Solver::check(const RationalSumLe& obligation) {
  for (const auto& t : obligation.terms) check_rational(obligation, t);
  check_rational(obligation, obligation.bound);
  QueryResult result{obligation.name, Answer::kError, {}, {}};
  try {
    z3::context& ctx = impl_->ctx;
    z3::solver solver(ctx);
    z3::params params(ctx);
    params.set("timeout", impl_->timeout_ms);
    solver.set(params);
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
      case z3::unknown: {
        result.reason = solver.reason_unknown();
        const bool timed_out = result.reason.find("timeout") != std::string::npos ||
                               result.reason.find("canceled") != std::string::npos;
        result.answer = timed_out ? Answer::kTimeout : Answer::kUnknown;
        break;
      }
    }
  } catch (const z3::exception& e) {
    result.answer = Answer::kError;
    result.reason = e.msg();
  }
  return result;
}

std::string Solver::smtlib(const RationalSumLe& obligation) const {
  for (const auto& t : obligation.terms) check_rational(obligation, t);
  check_rational(obligation, obligation.bound);
  auto literal = [](const std::string& r) {
    const bool negative = r.starts_with('-');
    std::string body = negative ? r.substr(1) : r;
    const auto slash = body.find('/');
    std::string value = slash == std::string::npos ? body + ".0"
                                                   : "(/ " + body.substr(0, slash) + ".0 " + body.substr(slash + 1) + ".0)";
    return negative ? "(- " + value + ")" : value;
  };
  std::string sum = "(+ 0.0";
  for (const auto& t : obligation.terms) sum += " " + literal(t);
  sum += ")";
  return "; obligation " + obligation.name + ": sum of terms <= bound. unsat = proved.\n"
         "(set-logic QF_LRA)\n"
         "(assert (not (<= " + sum + " " + literal(obligation.bound) + ")))\n"
         "(check-sat)\n";
}

}  // namespace hnf::verify
