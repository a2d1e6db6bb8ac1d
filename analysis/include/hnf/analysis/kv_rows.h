// Compact copies of one kv head's K or V for the analysis of long traces. The analysis needs
// every row of a head at once; as doubles that is 8 bytes an element, several times the
// trace itself at 128K tokens. These keep the exact rows in the trace's own element type
// (2 bytes for F16/BF16) and a quantized map's rows as its codes and group parameters (1 byte an
// element for the integer formats), and give rows back as exact doubles through RowSource.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "hnf/analysis/attention_enclosure.h"
#include "hnf/proofs/format.h"
#include "hnf/proofs/certificate.h"
#include "hnf/proofs/safetensors.h"

namespace hnf::analysis {

// Exact rows as the trace stores them: [rows, dim] elements of an F32, F16 or BF16 tensor.
class StoredRows final : public RowSource {
 public:
  // What every value must be: finite (queries), or also storable by every cache format
  // (proofs::integer_storable: keys and values, which the quantizers read inside parallel loops).
  enum class Values : std::uint8_t { kFinite, kCacheStorable };

  StoredRows() = default;
  // Copies rows [first, first + count) of `tensor` [n0, n1, dim] at outer index `outer` out of
  // `file`. Throws bad input naming `path`, the tensor and the element when a value is not as
  // `values` requires.
  StoredRows(const proofs::SafetensorsFile& file, const std::string& path, const proofs::TensorInfo& tensor,
             std::int64_t outer, std::int64_t first, std::int64_t count, Values values = Values::kCacheStorable);

  [[nodiscard]] std::size_t rows() const noexcept override { return rows_; }
  [[nodiscard]] std::size_t dim() const noexcept override { return dim_; }
  void read(std::size_t first, std::size_t count, double* out) const override;
  // The same rows as the floats they are (the quantizer's input): out [count, dim].
  void read_floats(std::size_t first, std::size_t count, float* out) const;

 private:
  proofs::Dtype dtype_ = proofs::Dtype::kF32;
  std::size_t rows_ = 0, dim_ = 0;
  std::vector<std::byte> bytes_;  // [rows, dim] elements of dtype_
};

// The rows of a head quantized with a map: unit u (rows [u*block, (u+1)*block)) in its own
// format. Codes are kept, not values: one byte per element (the low byte; float formats keep
// their high bytes per unit aside) and each unit's group parameters.
class QuantizedRows final : public RowSource {
 public:
  QuantizedRows() = default;
  QuantizedRows(std::size_t rows, std::size_t dim, std::size_t block);

  [[nodiscard]] std::size_t rows() const noexcept override { return rows_; }
  [[nodiscard]] std::size_t dim() const noexcept override { return dim_; }
  [[nodiscard]] std::size_t units() const noexcept { return formats_.size(); }
  [[nodiscard]] std::size_t block() const noexcept { return block_; }
  // Whether unit u holds the rows quantized in f (false before its first assign).
  [[nodiscard]] bool holds(std::size_t unit, const proofs::Format& f) const noexcept;
  // Quantizes unit u in format f: x [rows of the unit, dim] are the unit's exact floats; with
  // `dither`, integer codes are stochastically rounded (its first_position is the unit's first row).
  // Throws as proofs::encode_block. Different units may be assigned concurrently.
  void assign(std::size_t unit, const proofs::Format& f, std::span<const float> x, const proofs::BlockDither* dither = nullptr);
  void read(std::size_t first, std::size_t count, double* out) const override;

 private:
  std::size_t rows_ = 0, dim_ = 0, block_ = 0, group_capacity_ = 0;
  std::vector<proofs::Format> formats_;                // [units]
  std::vector<std::uint8_t> assigned_;                 // [units] 1 once assigned
  std::vector<std::uint8_t> low_;                      // [rows, dim] low byte of each code
  std::vector<std::vector<std::uint8_t>> high_;        // [units] high bytes (float formats), else empty
  std::vector<proofs::GroupParams> groups_;            // [units, group_capacity]
};

// The rows of one (layer, kv head, K or V) as a policy's cache holds them while it grows
// (proofs/policy.h, THEORY.md section 14): after n appends, page g is stored in the format of its
// age class then; a recent page that ages is re-quantized to the old format from its recent
// (fp16/bf16) values; a page whose format groups per channel (intB-tP) and that is not full
// yet is held exactly (the runtime stages it in f32). Keeps one compact copy per class format.
class AgedRows {
 public:
  // exact [rows, dim]: the appended rows of (layer, kv head, keys or values); formats: the
  // policy's [sink, recent, old] for them. A stochastic policy's codes use its calibration seed's
  // draws (proofs::dither_key). Throws as proofs::encode_block. `exact` must outlive this object.
  AgedRows(const StoredRows& exact, const proofs::PrecisionPolicy& policy, const proofs::ClassFormats& formats,
           std::int64_t layer = 0, std::int64_t kv_head = 0, bool values = false);

  // The cache state after `length` appends, rows [0, length): a RowSource over this object.
  class State final : public RowSource {
   public:
    State(const AgedRows& rows, std::size_t length) : rows_(&rows), length_(length) {}
    [[nodiscard]] std::size_t rows() const noexcept override { return length_; }
    [[nodiscard]] std::size_t dim() const noexcept override { return rows_->dim_; }
    void read(std::size_t first, std::size_t count, double* out) const override;

   private:
    const AgedRows* rows_;
    std::size_t length_;
  };
  [[nodiscard]] State at(std::size_t length) const { return State(*this, length); }
  // Upper bounds of the norms of rows [0, length) at that state: out [length].
  void norms_up(std::size_t length, std::vector<double>& out) const;

  // How page g is stored after `length` appends.
  enum class Version : std::uint8_t { kExact, kSink, kRecent, kOld };
  [[nodiscard]] Version version(std::size_t page, std::size_t length) const noexcept;

 private:
  [[nodiscard]] const RowSource& source(Version v) const noexcept;
  const StoredRows* exact_;
  proofs::PrecisionPolicy rule_;  // page and age rule only (entries empty)
  proofs::ClassFormats formats_;
  std::size_t rows_ = 0, dim_ = 0;
  QuantizedRows sink_, recent_, old_;  // each assigned on the pages its class can hold
  bool old_is_recent_ = false;         // recent == old: nothing migrates, old_ unused
  std::array<std::vector<double>, 4> norms_;  // [Version][rows] upper bounds
};

}  // namespace hnf::analysis
