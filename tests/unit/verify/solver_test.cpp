#include <doctest/doctest.h>

#include <cstdlib>
#include <initializer_list>

#include "hnf/proofs/error.h"
#include "hnf/verify/solver.h"

using namespace hnf::verify;

TEST_CASE("a true closed rational inequality is proved") {
  Solver solver(2000);
  const auto r = solver.check({"thirds", {"1/3", "1/6"}, "1/2"});
  CHECK(r.answer == Answer::kProved);
  CHECK(r.name == "thirds");
}

TEST_CASE("a false one is refuted with an exact example") {
  Solver solver(2000);
  const auto r = solver.check({"too_tight", {"1/3", "1/6"}, "49/100"});
  CHECK(r.answer == Answer::kRefuted);
  CHECK(r.example == "Example: sum = 1/2, bound = 49/100");
  // Equality is within the bound: 1/3 + 1/6 - 1/100 = 49/100.
  CHECK(solver.check({"equal", {"1/3", "1/6", "-1/100"}, "49/100"}).answer == Answer::kProved);
}

TEST_CASE("decimal fractions are not exact rationals and are rejected") {
  Solver solver(2000);
  CHECK_THROWS_AS((void)solver.check({"decimal", {"0.1"}, "1"}), hnf::proofs::Error);
  for (const char* bad : {"1/0", "1/00", "1/", "", "--1", "1e3", "/2", "+1"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS((void)solver.check({"malformed", {bad}, "1"}), hnf::proofs::Error);
  }
  CHECK(solver.check({"negative", {"-3/4", "1/4"}, "-1/2"}).answer == Answer::kProved);
  CHECK(solver.check({"negative", {"-3/4", "1/4"}, "-51/100"}).answer == Answer::kRefuted);
}

TEST_CASE("the SMT-LIB form states the negated obligation over exact rationals") {
  Solver solver(2000);
  const std::string text = solver.smtlib({"q", {"1/3", "-2"}, "7/5"});
  CHECK(text.find("(set-logic QF_LRA)") != std::string::npos);
  CHECK(text.find("(assert (not (<= (+ 0.0 (/ 1.0 3.0) (- 2.0)) (/ 7.0 5.0))))") != std::string::npos);
  CHECK(text.find("(check-sat)") != std::string::npos);
}

TEST_CASE("the timeout test hook answers timeout for the named queries only, and never proves") {
  // The hook is read when a Solver is made; the variable is removed again before any check.
  REQUIRE(setenv(kInjectTimeoutEnv, "held_back,other", 1) == 0);
  Solver hooked(2000);
  REQUIRE(unsetenv(kInjectTimeoutEnv) == 0);
  const std::string script = "(declare-const x Real)\n(assert (and (> x 0.0) (< x 0.0)))\n";  // unsat: proved
  const auto held = hooked.check_script(script, "held_back");
  CHECK(held.answer == Answer::kTimeout);
  CHECK(held.reason.find("injected by the test hook HNF_TEST_SOLVER_TIMEOUT") != std::string::npos);
  CHECK(hooked.check_script(script, "free").answer == Answer::kProved);
  CHECK(hooked.check({"held_back", {"1/3"}, "1"}).answer == Answer::kTimeout);
  CHECK(hooked.check({"free", {"1/3"}, "1"}).answer == Answer::kProved);
  // A refutable query under the hook is withheld too (timeout), not proved.
  CHECK(hooked.check({"other", {"1/3", "1/6"}, "49/100"}).answer == Answer::kTimeout);

  REQUIRE(setenv(kInjectTimeoutEnv, "*", 1) == 0);
  Solver all(2000);
  REQUIRE(unsetenv(kInjectTimeoutEnv) == 0);
  CHECK(all.check_script(script, "anything").answer == Answer::kTimeout);
  CHECK(all.check_script(script).answer == Answer::kTimeout);
  // Without the variable nothing is held back.
  Solver plain(2000);
  CHECK(plain.check_script(script, "held_back").answer == Answer::kProved);
}
