// SMT-LIB2 scripts of the certificate's obligations, negated: "unsat" means the obligation holds.
// Every constant is an exact rational from the certificate; the scripts are linear (a numeral
// times a term), so z3 and cvc5 (Debian's, built without nonlinear support) both decide them.
#include <gmpxx.h>

#include <map>
#include <sstream>

#include "hnf/proofs/error.h"
#include "hnf/verify/certify.h"
#include "hnf/verify/solver.h"

namespace hnf::verify {
namespace {

// 2^p for p in 0..128 as a bounded lookup: Z3 cannot decide pw(2, p) with symbolic p.
std::string make_pow2_lookup() {
  std::string body = "0.0";
  for (int p = 128; p >= 0; --p) {
    // 2^p as a decimal integer (exact): repeated doubling of a digit string.
    std::string digits = "1";
    for (int k = 0; k < p; ++k) {
      int carry = 0;
      for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
        const int d = (*it - '0') * 2 + carry;
        *it = static_cast<char>('0' + d % 10);
        carry = d / 10;
      }
      if (carry) digits.insert(digits.begin(), static_cast<char>('0' + carry));
    }
    body = "(ite (= p " + std::to_string(p) + ") " + digits + ".0 " + body + ")";
  }
  return "(define-fun pow2 ((p Int)) Real " + body + ")\n";
}

// The same text for every necessity script: built once.
const std::string& pow2_lookup() {
  static const std::string lookup = make_pow2_lookup();
  return lookup;
}

std::string header(const proofs::Obligation& o, const char* statement, const char* logic) {
  return "; hnf-kv obligation " + o.name + " (" + std::string(proofs::obligation_kind_name(o.kind)) + "): " + statement +
         "\n; The script asserts the negation: unsat = proved, sat = refuted (i is the failing row).\n"
         "(set-logic " + logic + ")\n";
}

std::string sufficiency(const proofs::Obligation& o) {
  std::ostringstream s;
  s << header(o, "every row's S1 bound <= budget", "QF_LIRA");
  s << "(define-fun budget () Real " << smtlib_real(o.budget) << ")\n(declare-const i Int)\n(assert (or false";
  for (std::size_t r = 0; r < o.sufficiency.size(); ++r) {
    s << "\n  (and (= i " << r << ") (> " << smtlib_real(o.sufficiency[r].bound) << " budget))";
  }
  s << "))\n(check-sat)\n";
  return s.str();
}

// Rows listed below the obstruction are excluded (they are reported, not required); the
// solver sees one row per kv head and precision (necessity_classes.h).
std::string necessity(const proofs::Obligation& o) {
  std::ostringstream s;
  s << header(o, "8 budget 2^(2 bits) >= kappa_d2 for every row not listed below; one row per kv head and precision, "
                 "holding the largest kappa_d2 of the positions stored at that precision", "QF_LIRA");
  s << pow2_lookup() << "(define-fun budget () Real " << smtlib_real(o.budget) << ")\n(declare-const i Int)\n(assert (or false";
  const auto classes = necessity_classes(o);
  for (std::size_t r = 0; r < classes.size(); ++r) {
    s << "\n  (and (= i " << r << ") (< (* 8.0 budget (pow2 " << 2 * classes[r].bits << ")) "
      << smtlib_real(classes[r].max_kappa_d2) << "))";
  }
  s << "))\n(check-sat)\n";
  return s.str();
}

}  // namespace

std::vector<NecessityClass> necessity_classes(const proofs::Obligation& o) {
  std::map<std::pair<std::int64_t, int>, std::pair<NecessityClass, mpq_class>> classes;
  std::size_t next_below = 0;
  for (std::size_t r = 0; r < o.necessity.size(); ++r) {
    if (next_below < o.below.size() && o.below[next_below] == static_cast<std::int64_t>(r)) {
      ++next_below;
      continue;
    }
    const auto& row = o.necessity[r];
    const mpq_class value(row.kappa_d2);
    auto [it, inserted] = classes.try_emplace({row.kv_head, row.bits});
    auto& [c, largest] = it->second;
    if (inserted || value > largest) {
      c.kv_head = row.kv_head;
      c.bits = row.bits;
      c.max_kappa_d2 = row.kappa_d2;
      c.max_row = r;
      largest = value;
    }
    ++c.rows;
  }
  std::vector<NecessityClass> out;
  for (auto& [key, value] : classes) out.push_back(std::move(value.first));
  return out;
}

namespace {

std::string composition(const proofs::Obligation& o) {
  std::ostringstream s;
  s << header(o, "sum_i (prod_{j>i} L_j) injection_i eps_i <= budget (Theorem C)", "QF_LRA");
  s << "(assert (not (<= (+ 0.0";
  for (std::size_t i = 0; i < o.lipschitz.size(); ++i) {
    s << "\n  (* " << smtlib_real(o.injection[i]) << " " << smtlib_real(o.layer_eps[i]);
    for (std::size_t j = i + 1; j < o.lipschitz.size(); ++j) s << " " << smtlib_real(o.lipschitz[j]);
    s << ")";
  }
  s << ") " << smtlib_real(o.budget) << ")))\n(check-sat)\n";
  return s.str();
}

}  // namespace

std::string obligation_smtlib(const proofs::Obligation& obligation) {
  switch (obligation.kind) {
    case proofs::ObligationKind::kSufficiency: return sufficiency(obligation);
    case proofs::ObligationKind::kNecessity: return necessity(obligation);
    case proofs::ObligationKind::kComposition: return composition(obligation);
  }
  return {};
}

}  // namespace hnf::verify
