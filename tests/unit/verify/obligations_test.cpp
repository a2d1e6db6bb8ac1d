// The obligations' SMT-LIB scripts through Z3: proved, refuted with the failing row, and
// time limits that fail closed.
#include <doctest/doctest.h>

#include <string>

#include "hnf/proofs/certificate.h"
#include "hnf/verify/certify.h"
#include "hnf/verify/solver.h"

using namespace hnf;
using namespace hnf::verify;

namespace {

proofs::Obligation sufficiency(std::initializer_list<const char*> bounds, const char* budget) {
  proofs::Obligation o;
  o.name = "layer0_sufficiency";
  o.kind = proofs::ObligationKind::kSufficiency;
  o.layer = 0;
  o.budget = budget;
  std::int64_t p = 0;
  for (const char* b : bounds) o.sufficiency.push_back({0, 0, p++, b});
  return o;
}

proofs::Obligation necessity(int rows, int bits, const char* kappa_d2, const char* budget) {
  proofs::Obligation o;
  o.name = "layer0_necessity";
  o.kind = proofs::ObligationKind::kNecessity;
  o.layer = 0;
  o.budget = budget;
  for (int t = 0; t < rows; ++t) o.necessity.push_back({t % 2, t / 2, kappa_d2, bits});
  return o;
}

}  // namespace

TEST_CASE("sufficiency: proved when every bound is within the budget, refuted at the failing row") {
  Solver solver(10000);
  CHECK(solver.check_script(obligation_smtlib(sufficiency({"1/100", "1/20", "0"}, "1/20"))).answer == Answer::kProved);
  const auto refuted = solver.check_script(obligation_smtlib(sufficiency({"1/100", "1/20", "51/1000", "0"}, "1/20")));
  CHECK(refuted.answer == Answer::kRefuted);
  REQUIRE(refuted.index.has_value());
  CHECK(*refuted.index == 2);
  // A negative bound far below and one just above: the one just above is found.
  const auto tiny = solver.check_script(
      obligation_smtlib(sufficiency({"-5", "3602879701896398/72057594037927936"}, "3602879701896397/72057594037927936")));
  CHECK(tiny.answer == Answer::kRefuted);
  CHECK(tiny.index == 1);
}

TEST_CASE("necessity: 2^(2 bits) through the bounded lookup, exact at the boundary") {
  Solver solver(10000);
  // 8 * (1/8) * 4^4 = 256: kappa_d2 = 256 holds, 257 fails.
  CHECK(solver.check_script(obligation_smtlib(necessity(6, 4, "256", "1/8"))).answer == Answer::kProved);
  auto failing = necessity(6, 4, "256", "1/8");
  failing.necessity[5].kappa_d2 = "257";
  const auto r = solver.check_script(obligation_smtlib(failing));
  CHECK(r.answer == Answer::kRefuted);
  REQUIRE(r.index.has_value());
  const auto classes = necessity_classes(failing);
  REQUIRE(classes.size() == 2);  // kv heads 0 and 1, both at 4 bits
  CHECK(classes[static_cast<std::size_t>(*r.index)].max_row == 5);
  // Listing the failing row below the obstruction removes it from the obligation.
  failing.below = {5};
  CHECK(solver.check_script(obligation_smtlib(failing)).answer == Answer::kProved);
  // 64 bits: 4^64 = 2^128, the top of the lookup.
  CHECK(solver.check_script(obligation_smtlib(necessity(2, 64, "340282366920938463463374607431768211456", "1/8"))).answer ==
        Answer::kProved);
  CHECK(solver.check_script(obligation_smtlib(necessity(2, 64, "340282366920938463463374607431768211457", "1/8"))).answer ==
        Answer::kRefuted);
}

TEST_CASE("composition: the n-fold law over exact rationals") {
  proofs::Obligation o;
  o.name = "composition";
  o.kind = proofs::ObligationKind::kComposition;
  o.lipschitz = {"2", "3"};
  o.injection = {"1", "1"};
  o.layer_eps = {"1/10", "1/10"};
  o.budget = "2/5";  // 3 * 1/10 + 1/10 = 2/5
  Solver solver(10000);
  CHECK(solver.check_script(obligation_smtlib(o)).answer == Answer::kProved);
  o.budget = "399/1000";
  CHECK(solver.check_script(obligation_smtlib(o)).answer == Answer::kRefuted);
}

TEST_CASE("a time limit fails closed: never proved") {
  // 20,000 sufficiency rows take longer than 1 ms to parse and decide.
  proofs::Obligation big = sufficiency({}, "1");
  for (int r = 0; r < 20000; ++r) big.sufficiency.push_back({0, 0, r, "1/3"});
  Solver fast(1);
  const auto r = fast.check_script(obligation_smtlib(big));
  CHECK(r.answer == Answer::kTimeout);
  CHECK_FALSE(r.index.has_value());
  // A script Z3 cannot parse is an error, not a proof.
  Solver solver(1000);
  CHECK(solver.check_script("(assert (> x 1))").answer == Answer::kError);
}
