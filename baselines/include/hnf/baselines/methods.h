// The methods of the quality benchmark (docs/quality.md): each a cache factory with a storage
// meter, so that every method's bytes per element are counted the same way (StorageMeter).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "hnf/baselines/storage_meter.h"
#include "hnf/proofs/certificate.h"
#include "hnf/runtime/evaluate.h"

namespace hnf::baselines {

// A precision map's own metadata as every method counts it: one format-id byte for K and one
// for V per unit of map.block positions of each (layer, kv head).
inline constexpr double kMapIdBytesPerUnit = 2.0;
// Those bytes per K/V element: kMapIdBytesPerUnit x 8 over the unit's 2 x block x head_dim elements.
[[nodiscard]] inline double map_id_bits_per_element(const proofs::PrecisionMap& map) {
  return kMapIdBytesPerUnit * 8.0 / (2.0 * static_cast<double>(map.block) * static_cast<double>(map.head_dim));
}

struct Method {
  std::string name;     // unique display name, e.g. "int4-d64", "KIVI-2", "H2O 3 bits"
  std::string family;   // "fp16", "uniform", "kivi", "h2o", "curvature", "certified"
  std::string setting;  // one line on the configuration
  std::optional<double> budget_bits;  // the storage budget it was configured for, if any
  runtime::CacheFactory make;         // each cache it makes adds its storage to `meter` when destroyed
  std::shared_ptr<StorageMeter> meter = std::make_shared<StorageMeter>();
};

// K and V in fp16 (rounded to nearest): the reference of the benchmark.
[[nodiscard]] Method fp16_method();
// K and V in intB with per-token groups of `group` channels (formats intB-dG).
[[nodiscard]] Method uniform_method(int bits, int group);
// KIVI-style: keys per channel over groups of 32 positions (intB-t32), values per token in
// groups of 32 channels (intB-d32), the newest 128 positions in fp16 (KIVI's residual).
[[nodiscard]] Method kivi_method(int bits);
// H2O-style eviction holding the bytes a `budget_bits` per element cache holds at `context`
// positions: keep = floor(budget_bits / 8 x 2 head_dim x context / (4 head_dim + 4)) positions
// per (layer, kv head), half of them (rounded down) the recent window. Bad input when that
// keeps fewer than 2 positions.
[[nodiscard]] Method h2o_method(double budget_bits, std::int64_t context, std::int64_t head_dim);
// A precision map run without a certificate (PlanCache): positions beyond map.tokens take the
// newest traced block's formats, as MixedKvCache does; one format id byte per unit for K and
// for V counted as metadata.
[[nodiscard]] Method map_method(std::string name, std::string family, std::string setting,
                                std::optional<double> budget_bits, proofs::PrecisionMap map);
// A certified map in the runtime's MixedKvCache (the cache a deployment builds): bytes are
// the cache's own measured codes, group parameters and staged rows, plus the same format id
// bytes as map_method.
[[nodiscard]] Method certified_method(std::string name, std::string setting,
                                      std::shared_ptr<const proofs::CertifiedPrecisionMap> map);

}  // namespace hnf::baselines
