// The committed certificate fixture (tests/fixtures/hnf-llama-4m-128.cert.json, a certificate of
// the reference model) with the attestation of its witnesses
// (hnf-llama-4m-128.attestation.json, signed by the key whose public half is fixture.pub):
// what a runtime cache needs to be built from it. tests/fixtures/regenerate.sh remakes both.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

#include "hnf/proofs/attestation.h"
#include "hnf/proofs/certificate.h"

namespace hnf::testing {

inline std::string fixture_path(const std::string& name) { return std::string(HNF_SOURCE_DIR) + "/tests/fixtures/" + name; }
inline const std::string kFixtureCertificate = fixture_path("hnf-llama-4m-128.cert.json");
inline const std::string kFixtureAttestation = fixture_path("hnf-llama-4m-128.attestation.json");
inline const std::string kFixturePublicKey = fixture_path("fixture.pub");
inline const std::string kReferenceModel = std::string(HNF_SOURCE_DIR) + "/models/hnf-llama-4m";

// Checker options comparing the reference model and verifying the fixture's attestation.
inline proofs::CheckOptions attested_fixture_options(const std::string& attestation = kFixtureAttestation) {
  proofs::CheckOptions options;
  options.model_dir = kReferenceModel;
  std::ifstream in(attestation, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  options.attestation = proofs::attestation_from_json(text, attestation);
  options.trusted_key = proofs::read_public_key(kFixturePublicKey);
  return options;
}

}  // namespace hnf::testing
