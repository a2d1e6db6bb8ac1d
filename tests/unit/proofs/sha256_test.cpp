#include <doctest/doctest.h>

#include <string>

#include "hnf/proofs/error.h"
#include "hnf/proofs/sha256.h"
#include "test_files.h"

using namespace hnf::proofs;

namespace {
std::string hash_of(const std::string& text) { return sha256_hex(std::as_bytes(std::span(text.data(), text.size()))); }
}  // namespace

TEST_CASE("SHA-256 matches the FIPS 180-2 test vectors") {
  CHECK(hash_of("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hash_of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hash_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("file hashing streams the whole file and names a missing one") {
  hnf::testing::TempDir dir;
  std::string big(3 * (1 << 20) + 17, 'a');  // crosses the 1 MiB read chunks
  hnf::testing::write_file(dir / "big.txt", big);
  CHECK(sha256_file_hex(dir / "big.txt") == hash_of(big));
  try {
    (void)sha256_file_hex(dir / "none.txt");
    FAIL("hashing a missing file succeeded");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("none.txt: cannot read") != std::string::npos);
  }
}
