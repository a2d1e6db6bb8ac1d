// The runtime's storage blocks against the reference quantizer of proofs/: the same stored
// values and radii, bit for bit, for every format of the vocabulary.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "hnf/proofs/format.h"
#include "hnf/runtime/block_format.h"

using namespace hnf;

TEST_CASE("pack_codes / unpack_code round-trip every code width, including codes across bytes") {
  std::mt19937 rng(3);
  for (int bits = 1; bits <= 8; ++bits) {
    std::vector<std::uint8_t> codes(128);
    for (auto& c : codes) c = static_cast<std::uint8_t>(rng() & ((1u << bits) - 1u));
    std::vector<std::uint8_t> packed(static_cast<std::size_t>(bits) * 128 / 8);
    runtime::pack_codes(codes, bits, packed);
    for (std::size_t i = 0; i < codes.size(); ++i) REQUIRE(runtime::unpack_code(packed.data(), bits, i) == codes[i]);
  }
  // The bit order is pinned: 3-bit codes 1, 2, 3 are 0b011'010'001 in the first two bytes.
  std::uint8_t packed[3] = {};
  const std::uint8_t codes[8] = {1, 2, 3, 0, 0, 0, 0, 7};
  runtime::pack_codes(codes, 3, packed);
  CHECK(packed[0] == 0b11'010'001);
  CHECK(packed[1] == 0b0);
  CHECK(packed[2] == 0b111'00000);
}

TEST_CASE("every vocabulary format stores exactly what proofs::quantize_block specifies") {
  const std::size_t head_dim = 128, rows = 128;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * head_dim);
  for (std::size_t i = 0; i < x.size(); ++i) {
    // Outlier channels and a few large tokens, as real keys have.
    const float scale = (i % head_dim) % 17 == 0 ? 20.0f : (i / head_dim) % 31 == 0 ? 8.0f : 1.0f;
    x[i] = scale * normal(rng);
  }
  int formats = 0;
  for (const auto& f : proofs::format_vocabulary(static_cast<int>(head_dim))) {
    CAPTURE(proofs::format_name(f));
    ++formats;
    std::vector<double> expected(x.size()), expected_radius(x.size()), stored(x.size()), radius(x.size());
    proofs::quantize_block(f, x, rows, head_dim, expected, expected_radius);
    runtime::store_and_read_back(f, x, rows, head_dim, stored, radius);
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      mismatches += stored[i] != expected[i] || radius[i] != expected_radius[i];
      // And the radius holds: the runtime's stored value is within it of the input.
      REQUIRE(std::abs(static_cast<double>(x[i]) - stored[i]) <= radius[i]);
    }
    CHECK(mismatches == 0);
  }
  CHECK(formats == 26);  // fp16, bf16, 4 widths x (d32, d64, d128, t16, t32, t64)
}

TEST_CASE("a block quantizes to the same bytes as the reference codes and parameters") {
  std::vector<float> x(32);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.25f - 3.0f;
  const auto block = runtime::quantize_group<4, 32>(std::span<const float, 32>(x.data(), 32));
  const auto p = proofs::integer_group_params(x, 4);
  CHECK(block.scale_f16 == p.scale_f16);
  CHECK(block.zero_f16 == p.zero_f16);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(runtime::unpack_code(block.codes.bytes, 4, i) == proofs::integer_code(x[i], p, 4));
  // Values the format cannot hold are bad input, as in proofs/.
  x[7] = 1e6f;
  auto quantize = [&x] { return runtime::quantize_group<4, 32>(std::span<const float, 32>(x.data(), 32)); };
  CHECK_THROWS_AS((void)quantize(), proofs::Error);
}
