// Global per-layer constants of the composition law (proofs/THEORY.md, section 10).
//
// Two kinds of arithmetic, never mixed in one scope:
//  * loops over weights (norms, Gram matrices) run under UpwardRounding: every + * sqrt rounds
//    toward +inf, so a sum of exact products, or of upper bounds of nonnegative terms, is an
//    upper bound of the exact sum (each operation is monotone in its inputs there);
//  * the scalar formulas combining those norms use interval.h's add_up/mul_up/div_up/sqrt_up,
//    which assume round-to-nearest and step one ulp up.
// Every returned constant is therefore >= the exact real the theory names.
#include "hnf/analysis/composition.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "hnf/analysis/interval.h"
#include "hnf/proofs/error.h"
#include "hnf/proofs/json_limits.h"
#include "hnf/proofs/safetensors.h"
#include "hnf/proofs/sha256.h"

namespace hnf::analysis {
namespace {

// Upper bound of a * b for a, b >= 0 that also treats 0 * inf as 0: an exactly zero factor
// makes the exact product 0 however large the other bound is (mul_up would give NaN).
double product_up(double a, double b) { return a == 0.0 || b == 0.0 ? 0.0 : mul_up(a, b); }

}  // namespace

namespace detail {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Rounds toward +inf for its lifetime and restores the caller's mode. hnf_analysis is compiled
// with -frounding-math, so GCC neither constant-folds nor moves the operations across the switch
// (hardware + * / sqrt honour the dynamic mode, scalar and SIMD alike).
class UpwardRounding {
 public:
  UpwardRounding() : saved_(std::fegetround()) { std::fesetround(FE_UPWARD); }
  ~UpwardRounding() { std::fesetround(saved_); }
  UpwardRounding(const UpwardRounding&) = delete;
  UpwardRounding& operator=(const UpwardRounding&) = delete;

 private:
  int saved_;
};

bool is_float32(double x) { return static_cast<double>(static_cast<float>(x)) == x; }

// Entrywise enclosure lo <= X <= hi of an exact symmetric n x n matrix X.
struct SymmetricEnclosure {
  std::size_t n = 0;
  std::vector<double> lo, hi;
};

// Encloses the exact A^T A for A [rows, n]. Upward rounding: hi accumulates a_ki a_kj (exact
// inputs, each product and sum rounded up: >= the exact entry); `neg` accumulates (-a_ki) a_kj
// the same way, so -neg <= the exact entry. Only j >= i is computed (the inner loop over j has
// independent accumulators, so it vectorises without reassociation) and then mirrored.
SymmetricEnclosure enclose_gram(const Matrix& a) {
  const std::size_t n = a.cols;
  SymmetricEnclosure g{n, std::vector<double>(n * n, 0.0), std::vector<double>(n * n, 0.0)};
  std::vector<double>& neg = g.lo;  // holds the upper bound of -X until the end
  {
    const UpwardRounding up;
    for (std::size_t k = 0; k < a.rows; ++k) {
      const double* row = a.values.data() + k * n;
      for (std::size_t i = 0; i < n; ++i) {
        if (row[i] == 0.0) continue;  // contributes exact zeros
        const double ri = row[i];
        const double minus_ri = -row[i];
        double* hi = g.hi.data() + i * n;
        double* ng = neg.data() + i * n;
        for (std::size_t j = i; j < n; ++j) {
          hi[j] += ri * row[j];
          ng[j] += minus_ri * row[j];
        }
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i; j < n; ++j) {
      g.lo[i * n + j] = -neg[i * n + j];  // negation is exact
      g.lo[j * n + i] = g.lo[i * n + j];
      g.hi[j * n + i] = g.hi[i * n + j];
    }
  }
  return g;
}

// X 2^-exponent = point + E with |E_ij| <= R_ij and ||R||_F <= radius; point is symmetric.
struct PointAndRadius {
  Matrix point;
  double radius = 0.0;
  int exponent = 0;
};

// Splits an enclosure into a point matrix and a radius, scaled by a power of two so that every
// |point_ij| <= 1 (repeated squaring then never overflows). nullopt when an endpoint is not finite.
std::optional<PointAndRadius> split(const SymmetricEnclosure& x) {
  double largest = 0.0;
  for (std::size_t i = 0; i < x.lo.size(); ++i) largest = std::max({largest, std::abs(x.lo[i]), std::abs(x.hi[i])});
  if (!std::isfinite(largest)) return std::nullopt;
  PointAndRadius s{{x.n, x.n, std::vector<double>(x.n * x.n, 0.0)}, 0.0, 0};
  if (largest == 0.0) return s;
  std::frexp(largest, &s.exponent);             // largest = f 2^exponent, f in [1/2, 1)
  s.exponent = std::max(s.exponent, -1000);     // keeps 2^-exponent finite
  const double scale = std::ldexp(1.0, -s.exponent);  // a power of two, representable
  const UpwardRounding up;
  double radius_squared = 0.0;
  for (std::size_t i = 0; i < x.lo.size(); ++i) {
    const double hi = x.hi[i] * scale;       // >= exact hi 2^-e
    const double lo = -((-x.lo[i]) * scale);  // <= exact lo 2^-e
    // Rounded up twice from the exact midpoint, which is <= hi: stays in [lo, hi] (2 hi is
    // representable, so the sum rounds to at most 2 hi and the halving to at most hi).
    const double mid = (lo + hi) * 0.5;
    const double r = std::max(hi - mid, mid - lo);  // >= both exact distances
    s.point.values[i] = mid;
    radius_squared += r * r;
  }
  s.radius = std::sqrt(radius_squared);
  return s;
}

// Upper bound of ||P||_2 for a symmetric point matrix P, after `squarings` more squarings:
// ||P||_2^2 = ||P^2||_2 and P^2 2^-e = P' + E give ||P||_2 <= sqrt(2^e (||P'||_2 + ||R||_F)).
double symmetric_norm_up(const Matrix& p, int squarings) {
  if (squarings == 0) return l1_linf_up(p);  // = ||P||_inf for symmetric P, >= ||P||_2
  const auto square = split(enclose_gram(p));  // P^T P = P^2
  if (!square) return kInfinity;
  const double inner = symmetric_norm_up(square->point, squarings - 1);
  const UpwardRounding up;
  return std::sqrt((inner + square->radius) * std::ldexp(1.0, square->exponent));
}

Matrix transpose(const Matrix& w) {
  Matrix t{w.cols, w.rows, std::vector<double>(w.values.size())};
  for (std::size_t r = 0; r < w.rows; ++r) {
    for (std::size_t c = 0; c < w.cols; ++c) t.values[c * w.rows + r] = w.values[r * w.cols + c];
  }
  return t;
}

}  // namespace

double frobenius_up(const Matrix& w) {
  const UpwardRounding up;
  double sum = 0.0;
  for (const double x : w.values) sum += x * x;  // nonnegative terms rounded up: >= exact sum
  return std::sqrt(sum);
}

double l1_linf_up(const Matrix& w) {
  std::vector<double> column_sums(w.cols, 0.0);
  double max_row = 0.0;
  const UpwardRounding up;
  for (std::size_t r = 0; r < w.rows; ++r) {
    double row_sum = 0.0;
    for (std::size_t c = 0; c < w.cols; ++c) {
      row_sum += std::abs(w.at(r, c));
      column_sums[c] += std::abs(w.at(r, c));
    }
    max_row = std::max(max_row, row_sum);
  }
  const double max_column = column_sums.empty() ? 0.0 : *std::max_element(column_sums.begin(), column_sums.end());
  // ||W||_2^2 = rho(W^T W) <= ||W^T W||_inf <= ||W^T||_inf ||W||_inf = ||W||_1 ||W||_inf.
  return std::sqrt(max_column * max_row);
}

double gram_power_up(const Matrix& w, int squarings) {
  HNF_ASSERT(squarings >= 0, "gram_power_up: negative number of squarings");
  if (w.values.empty()) return 0.0;
  // ||W||_2^2 = ||W^T W||_2 = ||W W^T||_2: the smaller Gram matrix is the cheaper one.
  const auto gram = split(enclose_gram(w.rows >= w.cols ? w : transpose(w)));
  if (!gram) return kInfinity;
  const double inner = symmetric_norm_up(gram->point, squarings);
  const UpwardRounding up;
  const double bound = std::sqrt((inner + gram->radius) * std::ldexp(1.0, gram->exponent));
  return std::isnan(bound) ? kInfinity : bound;
}

namespace {

double smallest_of_three_up(const Matrix& w) {
  return std::min({frobenius_up(w), l1_linf_up(w), gram_power_up(w, kGramSquarings)});
}

// 2^shift brings max |w_ij| into [1/2, 1) when it is below 1/2, else shift = 0. Without it the
// squares of tiny entries underflow, round up to subnormals and make the bounds loose (not wrong).
int tiny_matrix_shift(const Matrix& w) {
  double largest = 0.0;
  for (const double x : w.values) largest = std::max(largest, std::abs(x));
  if (largest == 0.0 || largest >= 0.5) return 0;
  int exponent = 0;
  std::frexp(largest, &exponent);  // largest = f 2^exponent, f in [1/2, 1), exponent in [-1073, -1]
  return -exponent;
}

}  // namespace

double spectral_norm_up(const Matrix& w) {
  const int shift = tiny_matrix_shift(w);
  if (shift == 0) return smallest_of_three_up(w);
  Matrix scaled = w;
  for (double& x : scaled.values) x = std::ldexp(x, shift);  // exact: scaling up by 2^shift stays below 1
  const double bound = smallest_of_three_up(scaled);  // ||2^shift W|| = 2^shift ||W||
  const UpwardRounding up;
  return bound * std::ldexp(1.0, -shift);  // 2^-shift >= 2^-1073 is representable; the product rounds up
}

double max_row_norm_up(const Matrix& w) {
  const UpwardRounding up;
  double largest = 0.0;
  for (std::size_t r = 0; r < w.rows; ++r) {
    double sum = 0.0;
    for (std::size_t c = 0; c < w.cols; ++c) sum += w.at(r, c) * w.at(r, c);
    largest = std::max(largest, sum);
  }
  return std::sqrt(largest);
}

Matrix fold_gain(const Matrix& w, std::span<const double> g) {
  HNF_ASSERT(g.size() == w.cols, "fold_gain: the gain must have one entry per column");
  Matrix folded{w.rows, w.cols, std::vector<double>(w.values.size())};
  for (std::size_t r = 0; r < w.rows; ++r) {
    for (std::size_t c = 0; c < w.cols; ++c) {
      HNF_ASSERT(is_float32(w.at(r, c)) && is_float32(g[c]), "fold_gain: weights must be float32 values");
      folded.values[r * w.cols + c] = w.at(r, c) * g[c];  // exact: 24 + 24 significant bits
    }
  }
  return folded;
}

Matrix row_block(const Matrix& w, std::size_t first, std::size_t count) {
  HNF_ASSERT(first + count <= w.rows, "row_block: rows out of range");
  const auto begin = w.values.begin() + static_cast<std::ptrdiff_t>(first * w.cols);
  return {count, w.cols, std::vector<double>(begin, begin + static_cast<std::ptrdiff_t>(count * w.cols))};
}

Matrix column_block(const Matrix& w, std::size_t first, std::size_t count) {
  HNF_ASSERT(first + count <= w.cols, "column_block: columns out of range");
  Matrix block{w.rows, count, {}};
  block.values.reserve(w.rows * count);
  for (std::size_t r = 0; r < w.rows; ++r) {
    for (std::size_t c = first; c < first + count; ++c) block.values.push_back(w.at(r, c));
  }
  return block;
}

double rms_norm_lipschitz_up(double eps) {
  HNF_ASSERT(std::isfinite(eps) && eps > 0.0, "rms_norm_lipschitz_up: eps must be positive");
  return sqrt_up(div_up(1.0, eps));  // sqrt of an upper bound of 1/eps, rounded up
}

namespace {

void check_matrix(const Matrix& m, std::size_t rows, std::size_t cols, const char* what) {
  HNF_ASSERT(m.rows == rows && m.cols == cols && m.values.size() == rows * cols, what);
}

void check_layer(const LayerWeights& w, const LayerShape& s) {
  HNF_ASSERT(s.hidden > 0 && s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0 && s.intermediate > 0,
             "layer_bounds: every dimension must be positive");
  HNF_ASSERT(s.heads % s.kv_heads == 0, "layer_bounds: heads must be a multiple of kv_heads");
  HNF_ASSERT(w.input_norm.size() == s.hidden && w.post_attention_norm.size() == s.hidden,
             "layer_bounds: norm gains must have hidden entries");
  check_matrix(w.q_proj, s.heads * s.head_dim, s.hidden, "layer_bounds: q_proj shape");
  check_matrix(w.k_proj, s.kv_heads * s.head_dim, s.hidden, "layer_bounds: k_proj shape");
  check_matrix(w.v_proj, s.kv_heads * s.head_dim, s.hidden, "layer_bounds: v_proj shape");
  check_matrix(w.o_proj, s.hidden, s.heads * s.head_dim, "layer_bounds: o_proj shape");
  check_matrix(w.gate_proj, s.intermediate, s.hidden, "layer_bounds: gate_proj shape");
  check_matrix(w.up_proj, s.intermediate, s.hidden, "layer_bounds: up_proj shape");
  check_matrix(w.down_proj, s.hidden, s.intermediate, "layer_bounds: down_proj shape");
}

// Upper bounds of ||W diag(g)||_2 for each head's block of rows.
std::vector<double> head_norms(const Matrix& folded, std::size_t count, std::size_t head_dim) {
  std::vector<double> norms;
  for (std::size_t h = 0; h < count; ++h) norms.push_back(spectral_norm_up(row_block(folded, h * head_dim, head_dim)));
  return norms;
}

// Lemma 10.5: c_h = ||W_v G|| (1 + 2 D ||W_q^h G|| ||W_k G|| / sqrt(d_h)), with the kv head of h.
std::vector<double> head_coefficients(const LayerWeights& w, const LayerShape& s) {
  const std::vector<double> q = head_norms(fold_gain(w.q_proj, w.input_norm), s.heads, s.head_dim);
  const std::vector<double> k = head_norms(fold_gain(w.k_proj, w.input_norm), s.kv_heads, s.head_dim);
  const std::vector<double> v = head_norms(fold_gain(w.v_proj, w.input_norm), s.kv_heads, s.head_dim);
  const double inverse_sqrt_head_dim = sqrt_up(div_up(1.0, static_cast<double>(s.head_dim)));
  const double two_d = 2.0 * static_cast<double>(s.hidden);  // exact: an integer below 2^32
  const std::size_t group = s.heads / s.kv_heads;
  std::vector<double> c;
  for (std::size_t h = 0; h < s.heads; ++h) {
    const std::size_t g = h / group;
    const double score_slope = product_up(product_up(two_d, product_up(q[h], k[g])), inverse_sqrt_head_dim);
    c.push_back(product_up(v[g], add_up(1.0, score_slope)));
  }
  return c;
}

// Upper bounds of ||W_o^h||_2 for each head's block of o_proj columns.
std::vector<double> o_proj_head_norms(const Matrix& o_proj, const LayerShape& s) {
  std::vector<double> norms;
  for (std::size_t h = 0; h < s.heads; ++h) {
    norms.push_back(spectral_norm_up(column_block(o_proj, h * s.head_dim, s.head_dim)));
  }
  return norms;
}

// min(||W_o|| ||x||_2, sum_h ||W_o^h|| x_h): two upper bounds of ||W_o concat_h(y_h)|| for any
// head vectors with ||y_h|| <= x_h (one for the whole matrix, one per head and the triangle
// inequality). Lemmas 10.5 and 10.8.
double o_proj_bound_up(double o_norm, const std::vector<double>& o_head_norms, const std::vector<double>& x) {
  double sum_squares = 0.0;
  double per_head = 0.0;
  for (std::size_t h = 0; h < x.size(); ++h) {
    sum_squares = add_up(sum_squares, product_up(x[h], x[h]));
    per_head = add_up(per_head, product_up(o_head_norms[h], x[h]));
  }
  return std::min(product_up(o_norm, sqrt_up(sum_squares)), per_head);
}

// Lemma 10.6: L_M = ||W_d|| (s' ||W_g G|| B_u + A_g ||W_u G||) / sqrt(e), with
// A_g = sqrt(D) max_i ||row_i(W_g G)|| >= ||a||_inf, B_u = sqrt(D) max_i ||row_i(W_u G)|| >= ||b||_inf.
double mlp_lipschitz_up(const LayerWeights& w, const LayerShape& s, double norm_lipschitz) {
  const Matrix gate = fold_gain(w.gate_proj, w.post_attention_norm);
  const Matrix up = fold_gain(w.up_proj, w.post_attention_norm);
  const double sqrt_dim = sqrt_up(static_cast<double>(s.hidden));
  const double gate_inf = product_up(sqrt_dim, max_row_norm_up(gate));
  const double up_inf = product_up(sqrt_dim, max_row_norm_up(up));
  const double slope = add_up(product_up(product_up(kSiluSlopeUp, spectral_norm_up(gate)), up_inf),
                              product_up(gate_inf, spectral_norm_up(up)));
  return product_up(product_up(spectral_norm_up(w.down_proj), slope), norm_lipschitz);
}

}  // namespace

LayerBounds layer_bounds(const LayerWeights& w, const LayerShape& s) {
  check_layer(w, s);
  const double norm_lipschitz = rms_norm_lipschitz_up(s.rms_norm_eps);
  const double o_norm = spectral_norm_up(w.o_proj);
  const std::vector<double> o_heads = o_proj_head_norms(w.o_proj, s);
  LayerBounds b;
  b.head_coefficient = head_coefficients(w, s);
  b.attention_lipschitz = product_up(o_proj_bound_up(o_norm, o_heads, b.head_coefficient), norm_lipschitz);
  b.mlp_lipschitz = mlp_lipschitz_up(w, s, norm_lipschitz);
  b.o_proj_heads = o_proj_bound_up(o_norm, o_heads, std::vector<double>(s.heads, 1.0));
  b.lipschitz = product_up(add_up(1.0, b.attention_lipschitz), add_up(1.0, b.mlp_lipschitz));
  b.injection = product_up(b.o_proj_heads, add_up(1.0, b.mlp_lipschitz));
  return b;
}

}  // namespace detail

namespace {

using detail::LayerShape;
using detail::LayerWeights;
using detail::Matrix;
using nlohmann::json;

// The config.json fields the constants depend on, with the same defaults as the runtime's
// loader (runtime/src/llama_config.cpp), which analysis does not link.
struct ModelConfig {
  LayerShape shape;
  std::size_t layers = 0;
};

class ConfigFields {
 public:
  ConfigFields(const json& root, std::string source) : root_(root), source_(std::move(source)) {}

  [[noreturn]] void fail(std::string_view field, const std::string& problem) const {
    throw proofs::bad_input(source_, "field \"" + std::string(field) + "\" " + problem);
  }
  [[nodiscard]] const json* find(std::string_view field) const {
    const auto it = root_.find(field);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }
  [[nodiscard]] std::size_t positive_int(std::string_view field, std::optional<std::size_t> fallback = {}) const {
    const json* value = find(field);
    if (value == nullptr) {
      if (!fallback) fail(field, "is missing");
      return *fallback;
    }
    const auto n = proofs::json_integer(*value, 1, std::int64_t{1} << 30);
    if (!n) fail(field, "must be a positive integer (at most 2^30), got " + value->dump());
    return static_cast<std::size_t>(*n);
  }
  [[nodiscard]] double positive_number(std::string_view field) const {
    const json* value = find(field);
    if (value == nullptr) fail(field, "is missing");
    const auto x = proofs::json_number(*value, std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::max());
    if (!x) fail(field, "must be a positive number, got " + value->dump());
    return *x;
  }
  // A string field that, when present, must equal `expected`.
  void require_string(std::string_view field, std::string_view expected) const {
    const json* value = find(field);
    if (value != nullptr && (!value->is_string() || value->get<std::string>() != expected)) {
      fail(field, "is " + value->dump() + ", the composition constants cover only \"" + std::string(expected) + "\"");
    }
  }
  // A field that must be absent, null or false: the lemmas assume projections without bias.
  void require_off(std::string_view field) const {
    const json* value = find(field);
    if (value != nullptr && !(value->is_boolean() && !value->get<bool>())) {
      fail(field, "is " + value->dump() + ": the composition constants assume projections without bias");
    }
  }

 private:
  const json& root_;
  std::string source_;
};

json parse_json_object(const std::filesystem::path& file) {
  json root = proofs::read_json_file(file, proofs::kMaxSmallJsonBytes, "the model config");
  if (!root.is_object()) throw proofs::bad_input(file.string(), "the model config must be a JSON object");
  return root;
}

// RoPE (rope_theta, rope_scaling) and tie_word_embeddings are not read: RoPE is a rotation at
// every position whatever its angles (Lemma 10.5 uses only that it is orthogonal), and the
// embedding / lm_head are outside the decoder layers.
ModelConfig read_config(const std::filesystem::path& file) {
  const json root = parse_json_object(file);
  const ConfigFields f(root, file.string());
  f.require_string("model_type", "llama");
  f.require_string("hidden_act", "silu");
  f.require_off("attention_bias");
  f.require_off("mlp_bias");
  ModelConfig c;
  LayerShape& s = c.shape;
  s.hidden = f.positive_int("hidden_size");
  s.heads = f.positive_int("num_attention_heads");
  s.kv_heads = f.positive_int("num_key_value_heads", s.heads);
  s.intermediate = f.positive_int("intermediate_size");
  s.rms_norm_eps = f.positive_number("rms_norm_eps");
  c.layers = f.positive_int("num_hidden_layers");
  if (s.heads % s.kv_heads != 0) f.fail("num_attention_heads", "must be a multiple of \"num_key_value_heads\"");
  if (f.find("head_dim") == nullptr && s.hidden % s.heads != 0) {
    f.fail("hidden_size", "must be a multiple of \"num_attention_heads\" when head_dim is absent");
  }
  s.head_dim = f.positive_int("head_dim", s.hidden / s.heads);
  return c;
}

class TensorReader {
 public:
  explicit TensorReader(const proofs::SafetensorsFile& file) : file_(file) {}

  // The tensor `name` of exactly `shape` as doubles (exact: F32, F16 and BF16 values are floats).
  [[nodiscard]] std::vector<double> read(const std::string& name, const std::vector<std::int64_t>& shape) const {
    const std::string source = file_.path().string();
    const proofs::TensorInfo* info = file_.find(name);
    if (info == nullptr) {
      throw proofs::bad_input(source, "tensor \"" + name + "\" is missing (expected shape " +
                                          proofs::format_shape(shape) + ")");
    }
    if (info->shape != shape) {
      throw proofs::bad_input(source, "tensor \"" + name + "\" has shape " + proofs::format_shape(info->shape) +
                                          ", expected " + proofs::format_shape(shape));
    }
    if (info->dtype != proofs::Dtype::kF32 && info->dtype != proofs::Dtype::kF16 && info->dtype != proofs::Dtype::kBF16) {
      throw proofs::bad_input(source, "tensor \"" + name + "\" has dtype " +
                                          std::string(proofs::dtype_name(info->dtype)) + ", expected F32, F16 or BF16");
    }
    const auto bytes = file_.bytes(*info);
    std::vector<double> values(static_cast<std::size_t>(info->numel()));
    for (std::size_t i = 0; i < values.size(); ++i) {
      values[i] = proofs::load_float(info->dtype, bytes.data(), i);
      if (!std::isfinite(values[i])) {
        throw proofs::bad_input(source, "tensor \"" + name + "\" has a non-finite value at index " + std::to_string(i));
      }
    }
    file_.release(*info, 0, info->nbytes());
    return values;
  }

  [[nodiscard]] Matrix matrix(const std::string& name, std::size_t rows, std::size_t cols) const {
    return {rows, cols, read(name, {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)})};
  }
  [[nodiscard]] std::vector<double> vector(const std::string& name, std::size_t n) const {
    return read(name, {static_cast<std::int64_t>(n)});
  }

 private:
  const proofs::SafetensorsFile& file_;
};

LayerWeights read_layer(const TensorReader& r, const LayerShape& s, std::size_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  const std::size_t q_dim = s.heads * s.head_dim;
  const std::size_t kv_dim = s.kv_heads * s.head_dim;
  LayerWeights w;
  w.input_norm = r.vector(p + "input_layernorm.weight", s.hidden);
  w.q_proj = r.matrix(p + "self_attn.q_proj.weight", q_dim, s.hidden);
  w.k_proj = r.matrix(p + "self_attn.k_proj.weight", kv_dim, s.hidden);
  w.v_proj = r.matrix(p + "self_attn.v_proj.weight", kv_dim, s.hidden);
  w.o_proj = r.matrix(p + "self_attn.o_proj.weight", s.hidden, q_dim);
  w.post_attention_norm = r.vector(p + "post_attention_layernorm.weight", s.hidden);
  w.gate_proj = r.matrix(p + "mlp.gate_proj.weight", s.intermediate, s.hidden);
  w.up_proj = r.matrix(p + "mlp.up_proj.weight", s.intermediate, s.hidden);
  w.down_proj = r.matrix(p + "mlp.down_proj.weight", s.hidden, s.intermediate);
  return w;
}

}  // namespace

ModelConstants composition_constants(const std::filesystem::path& model_dir) {
  const ModelConfig config = read_config(model_dir / "config.json");
  const auto weights_path = model_dir / "model.safetensors";
  const proofs::SafetensorsFile file = proofs::SafetensorsFile::open(weights_path);
  const TensorReader reader(file);
  ModelConstants constants;
  constants.model_sha256 = proofs::sha256_file_hex(weights_path);
  for (std::size_t layer = 0; layer < config.layers; ++layer) {
    const detail::LayerBounds b = detail::layer_bounds(read_layer(reader, config.shape, layer), config.shape);
    constants.layers.push_back({static_cast<int>(layer), b.lipschitz, b.injection});
  }
  return constants;
}

double end_to_end_bound_up(const ModelConstants& constants, std::span<const double> layer_eps) {
  HNF_ASSERT(layer_eps.size() == constants.layers.size(), "end_to_end_bound_up: one eps per layer is required");
  double sum = 0.0;
  double tail = 1.0;  // upper bound of prod_{j > i} L_j (empty product for the last layer)
  for (std::size_t i = layer_eps.size(); i-- > 0;) {
    const LayerConstants& c = constants.layers[i];
    HNF_ASSERT(layer_eps[i] >= 0.0, "end_to_end_bound_up: eps must be >= 0");  // also rejects NaN
    HNF_ASSERT(c.lipschitz_up >= 0.0 && c.injection_up >= 0.0, "end_to_end_bound_up: constants must be >= 0");
    const double term = product_up(product_up(tail, c.injection_up), layer_eps[i]);
    if (term > 0.0) sum = add_up(sum, term);  // skipping exact zeros keeps an all-zero sum at 0
    tail = product_up(tail, c.lipschitz_up);
  }
  return sum;
}

}  // namespace hnf::analysis
