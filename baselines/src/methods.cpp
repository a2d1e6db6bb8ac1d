#include "hnf/baselines/methods.h"

#include <cmath>
#include <fmt/format.h>

#include "hnf/baselines/h2o_cache.h"
#include "hnf/baselines/plan_cache.h"
#include "hnf/proofs/error.h"
#include "hnf/runtime/mixed_kv_cache.h"

namespace hnf::baselines {
namespace {

constexpr std::int64_t kKiviResidual = 128;
constexpr int kKiviGroup = 32;

proofs::Format integer_format(int bits, proofs::GroupAxis axis, int group) {
  const proofs::Encoding e = bits == 8   ? proofs::Encoding::kInt8
                             : bits == 4 ? proofs::Encoding::kInt4
                             : bits == 3 ? proofs::Encoding::kInt3
                                         : proofs::Encoding::kInt2;
  HNF_ASSERT(bits == 8 || bits == 4 || bits == 3 || bits == 2, "integer formats have 8, 4, 3 or 2 bits");
  return {e, axis, group};
}

// A factory of PlanCaches of `plan` that report to `meter`.
runtime::CacheFactory plan_factory(StoragePlan plan, const std::shared_ptr<StorageMeter>& meter) {
  return [plan = std::move(plan), meter](const runtime::KvCacheShape& shape, std::int64_t capacity) {
    return std::unique_ptr<runtime::KvCache>(std::make_unique<PlanCache>(shape, capacity, plan, meter));
  };
}

StoragePlan uniform_plan(proofs::Format keys, proofs::Format values) {
  StoragePlan plan;
  plan.key_format = [keys](std::int64_t, std::int64_t, std::int64_t) { return keys; };
  plan.value_format = [values](std::int64_t, std::int64_t, std::int64_t) { return values; };
  return plan;
}

// The runtime cache of a certified map, metered: its measured storage plus the map's format ids.
class MeteredMixedCache final : public runtime::KvCache {
 public:
  MeteredMixedCache(const proofs::CertifiedPrecisionMap& map, const runtime::KvCacheShape& shape, std::int64_t capacity,
                    std::shared_ptr<StorageMeter> meter)
      : KvCache(shape, capacity), inner_(map, shape, capacity), block_(map.map().block), meter_(std::move(meter)) {}
  ~MeteredMixedCache() override {
    const double elements = 2.0 * static_cast<double>(num_layers() * num_kv_heads() * size() * head_dim());
    const auto units = static_cast<double>((size() + block_ - 1) / block_);
    meter_->add_cache(inner_.bits_per_element() / 8.0 * elements +
                          kMapIdBytesPerUnit * units * static_cast<double>(num_layers() * num_kv_heads()),
                      elements);
  }

 private:
  void do_append(std::int64_t layer, const float* k, const float* v, std::int64_t n, std::int64_t) override {
    inner_.append(layer, k, v, n);
  }
  void do_attend(std::int64_t layer, const float* q, std::int64_t n, std::int64_t, float* out) const override {
    inner_.attend(layer, q, n, out);
  }
  runtime::MixedKvCache inner_;
  std::int64_t block_;
  std::shared_ptr<StorageMeter> meter_;
};

}  // namespace

Method fp16_method() {
  Method m{.name = "fp16", .family = "fp16", .setting = "K and V in fp16 (the reference)", .budget_bits = std::nullopt, .make = {}};
  const proofs::Format fp16{proofs::Encoding::kF16, proofs::GroupAxis::kNone, 0};
  m.make = plan_factory(uniform_plan(fp16, fp16), m.meter);
  return m;
}

Method uniform_method(int bits, int group) {
  const proofs::Format f = integer_format(bits, proofs::GroupAxis::kHeadDim, group);
  Method m{.name = proofs::format_name(f), .family = "uniform",
           .setting = fmt::format("K and V int{}, per-token groups of {} channels", bits, group), .budget_bits = std::nullopt, .make = {}};
  m.make = plan_factory(uniform_plan(f, f), m.meter);
  return m;
}

Method kivi_method(int bits) {
  Method m{.name = fmt::format("KIVI-{}", bits), .family = "kivi",
           .setting = fmt::format("keys int{0}-t{1} (per channel), values int{0}-d{1} (per token), newest {2} in fp16", bits,
                                  kKiviGroup, kKiviResidual),
           .budget_bits = std::nullopt, .make = {}};
  StoragePlan plan = uniform_plan(integer_format(bits, proofs::GroupAxis::kTokens, kKiviGroup),
                                  integer_format(bits, proofs::GroupAxis::kHeadDim, kKiviGroup));
  plan.recent = kKiviResidual;
  m.make = plan_factory(std::move(plan), m.meter);
  return m;
}

Method h2o_method(double budget_bits, std::int64_t context, std::int64_t head_dim) {
  const double d = static_cast<double>(head_dim);
  const auto keep = static_cast<std::int64_t>(std::floor(budget_bits / 8.0 * 2.0 * d * static_cast<double>(context) / (4.0 * d + 4.0)));
  if (keep < 2) throw proofs::bad_input("h2o", fmt::format("a budget of {} bits at context {} keeps fewer than 2 positions", budget_bits, context));
  const H2oOptions options{.keep = keep, .recent = keep / 2};
  Method m{.name = fmt::format("H2O {:g} bits", budget_bits), .family = "h2o",
           .setting = fmt::format("keep {} of {} positions in fp16 ({} heavy hitters, {} recent)", keep, context,
                                  keep - options.recent, options.recent),
           .budget_bits = budget_bits, .make = {}};
  m.make = [options, meter = m.meter](const runtime::KvCacheShape& shape, std::int64_t capacity) {
    return std::unique_ptr<runtime::KvCache>(std::make_unique<H2oCache>(shape, capacity, options, meter));
  };
  return m;
}

Method map_method(std::string name, std::string family, std::string setting, std::optional<double> budget_bits,
                  proofs::PrecisionMap map) {
  Method m{.name = std::move(name), .family = std::move(family), .setting = std::move(setting), .budget_bits = budget_bits, .make = {}};
  auto shared = std::make_shared<const proofs::PrecisionMap>(std::move(map));
  auto format_of = [shared](bool keys) {
    return [shared, keys](std::int64_t layer, std::int64_t kv_head, std::int64_t position) {
      const auto& e = shared->entries[static_cast<std::size_t>(layer * shared->kv_heads + kv_head)];
      const auto& formats = keys ? e.key_formats : e.value_formats;
      // Beyond the traced length: the newest traced block's formats (MixedKvCache's policy).
      const auto unit = std::min(static_cast<std::size_t>(position / shared->block), formats.size() - 1);
      return formats[unit];
    };
  };
  StoragePlan plan;
  plan.key_format = format_of(true);
  plan.value_format = format_of(false);
  plan.metadata_bytes_per_unit = kMapIdBytesPerUnit;
  plan.metadata_unit = shared->block;
  m.make = plan_factory(std::move(plan), m.meter);
  return m;
}

Method certified_method(std::string name, std::string setting, std::shared_ptr<const proofs::CertifiedPrecisionMap> map) {
  Method m{.name = std::move(name), .family = "certified", .setting = std::move(setting), .budget_bits = std::nullopt, .make = {}};
  m.make = [map = std::move(map), meter = m.meter](const runtime::KvCacheShape& shape, std::int64_t capacity) {
    return std::unique_ptr<runtime::KvCache>(std::make_unique<MeteredMixedCache>(*map, shape, capacity, meter));
  };
  return m;
}

}  // namespace hnf::baselines
