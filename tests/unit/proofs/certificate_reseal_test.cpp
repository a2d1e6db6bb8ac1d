// reseal_certificate_json: the fuzz target certificate_resealed relies on it computing exactly the
// hash certificate_from_json checks; if the two drifted apart, that target would silently stop
// reaching the checker's rules.
#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "hnf/proofs/certificate.h"
#include "hnf/proofs/error.h"
#include "tiny_certificate.h"

using namespace hnf::proofs;
using Json = nlohmann::json;

TEST_CASE("reseal_certificate_json recomputes the hash the parser checks, and only that") {
  const Certificate original = hnf::testing::tiny_certificate();
  const std::string text = certificate_to_json(original);
  // Resealing an intact certificate gives the same text.
  CHECK(reseal_certificate_json(text, "c.json") == text);

  Json edited = Json::parse(text);
  edited["model_id"] = "edited";
  const std::string stale = edited.dump(1);
  CHECK_THROWS_WITH_AS((void)certificate_from_json(stale, "c.json"),
                       "c.json: certificate_sha256 does not match the content: the certificate was modified", Error);
  const Certificate resealed = certificate_from_json(reseal_certificate_json(stale, "c.json"), "c.json");
  CHECK(resealed.model_id == "edited");
  CHECK(certificate_sha256(resealed) != certificate_sha256(original));

  // Without a hash at all, too.
  edited.erase("certificate_sha256");
  CHECK(certificate_from_json(reseal_certificate_json(edited.dump(), "c.json"), "c.json").model_id == "edited");
}

TEST_CASE("reseal_certificate_json rejects what is not a JSON object as bad input naming the file") {
  CHECK_THROWS_WITH_AS((void)reseal_certificate_json("[1, 2]", "c.json"), "c.json: certificate is not a JSON object", Error);
  CHECK_THROWS_AS((void)reseal_certificate_json("{\"a\": ", "c.json"), Error);
}
