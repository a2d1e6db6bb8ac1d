// Per-layer constants of the composition law (proofs/THEORY.md, section 10: Theorem C, Lemmas
// 10.1-10.8): a global Lipschitz constant of every decoder layer of a Llama-style
// model and the factor by which an error of the attention heads' outputs reaches the layer's
// output. Both come from the weights alone (no trace data), hold for every input and every
// sequence length, and are astronomically loose: they are reported for honesty, not for use.
//
// Norm on sequences of residual-stream vectors x = (x_0, ..., x_{T-1}), x_t in R^D:
// |||x||| = max_t ||x_t||_2. Every constant is an UPPER bound of the exact real it names:
// loops over weights run in upward rounding (UpwardRounding in composition.cpp), the scalar
// formulas use interval.h's *_up helpers in round-to-nearest.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace hnf::analysis {

struct LayerConstants {
  int layer = 0;
  // Upper bound of the Lipschitz constant of x -> layer(x) in |||.||| (Theorem 10.7).
  double lipschitz_up = 0.0;
  // Upper bound of the factor c with |||layer~(x) - layer(x)||| <= c * eps whenever every
  // attention head's output (sum_t a_t v_t, before o_proj) is off by <= eps at every position
  // and the layer input x is the same (Lemma 10.8).
  double injection_up = 0.0;
};

struct ModelConstants {
  std::string model_sha256;  // sha256 of model.safetensors
  std::vector<LayerConstants> layers;
};

// Reads model_dir/config.json and model_dir/model.safetensors (Hugging Face Llama names, F32,
// F16 or BF16) and computes every layer's constants. Throws hnf::proofs::Error (kBadInput)
// naming the file for a missing or malformed config, a missing tensor or a wrong shape or dtype,
// and for configurations the constants do not cover (biases on the projections, a hidden_act
// other than silu, a model_type other than llama).
[[nodiscard]] ModelConstants composition_constants(const std::filesystem::path& model_dir);

// Theorem C: upper bound of sum_i (prod_{j>i} L_j) * injection_i * eps_i, rounded toward +inf.
// layer_eps[i] is the head-output error bound of layer i at the inputs it actually receives
// (THEORY section 10, assumption (H)). Preconditions (HNF_ASSERT, kInternal): one eps per layer,
// each >= 0 and not NaN. A term with eps_i = 0 contributes exactly 0 (even with an infinite
// product); an overflow gives +inf, still an upper bound.
[[nodiscard]] double end_to_end_bound_up(const ModelConstants& constants, std::span<const double> layer_eps);

namespace detail {

// Row-major dense matrix of exact reals stored as doubles.
struct Matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<double> values;  // [rows * cols]

  [[nodiscard]] double at(std::size_t r, std::size_t c) const { return values[r * cols + c]; }
};

// sup_z |silu'(z)| <= 1 + e^-2 = 1.13533... < kSiluSlopeUp (Lemma 10.2; the true sup is 1.0998...).
inline constexpr double kSiluSlopeUp = 1.1354;

// Upper bounds of the spectral norm ||W||_2 (largest singular value). Each is valid alone.
[[nodiscard]] double frobenius_up(const Matrix& w);  // ||W||_F
[[nodiscard]] double l1_linf_up(const Matrix& w);    // sqrt(||W||_1 ||W||_inf)
// Lemma 10.4, Gram-power bound: ||W||_2 <= ||G^(2^m)||_inf^(1/2^(m+1)) for the Gram matrix G
// (W^T W or W W^T, the smaller), m = squarings >= 0, with every matrix product enclosed in
// upward rounding and each level split into a point matrix plus a radius (computed exactly, the
// overhead factor is at most n^(1/2^(m+2)) for an n x n Gram matrix). Returns +inf when an
// intermediate overflows (the other bounds then decide), 0 for a zero matrix.
[[nodiscard]] double gram_power_up(const Matrix& w, int squarings);
// min(frobenius_up, l1_linf_up, gram_power_up(w, kGramSquarings)).
inline constexpr int kGramSquarings = 5;
[[nodiscard]] double spectral_norm_up(const Matrix& w);
// Upper bound of max_i ||row_i(W)||_2 (the infinity norm of W u over ||u||_2 <= 1).
[[nodiscard]] double max_row_norm_up(const Matrix& w);

// W diag(g): the RMSNorm gain folded into the next projection. Precondition (HNF_ASSERT):
// every entry of w and g is a float32 value (a checkpoint's F32/F16/BF16 values are), so each
// product of two 24-bit significands is exact in double and the result is the exact W diag(g).
[[nodiscard]] Matrix fold_gain(const Matrix& w, std::span<const double> g);
// Rows [first, first + count) of w (a head's block of q/k/v_proj).
[[nodiscard]] Matrix row_block(const Matrix& w, std::size_t first, std::size_t count);
// Columns [first, first + count) of w (a head's block of o_proj).
[[nodiscard]] Matrix column_block(const Matrix& w, std::size_t first, std::size_t count);

// Upper bound of 1/sqrt(eps): the global Lipschitz constant of x -> x / sqrt(mean(x^2) + eps)
// (Lemma 10.1, attained at x = 0). Precondition: eps > 0.
[[nodiscard]] double rms_norm_lipschitz_up(double eps);

struct LayerShape {
  std::size_t hidden = 0;        // D
  std::size_t heads = 0;         // H query heads
  std::size_t kv_heads = 0;      // key/value heads; query head h uses kv head h / (H / kv_heads)
  std::size_t head_dim = 0;      // d_h
  std::size_t intermediate = 0;  // MLP width
  double rms_norm_eps = 0.0;     // e_n > 0
};

// One decoder layer's weights as exact doubles, in Hugging Face shapes ([out, in]).
struct LayerWeights {
  std::vector<double> input_norm;           // [D]
  Matrix q_proj, k_proj, v_proj, o_proj;    // [H d_h, D], [kv d_h, D], [kv d_h, D], [D, H d_h]
  std::vector<double> post_attention_norm;  // [D]
  Matrix gate_proj, up_proj, down_proj;     // [I, D], [I, D], [D, I]
};

// Every intermediate constant of one layer (all upper bounds), for reports and tests.
struct LayerBounds {
  std::vector<double> head_coefficient;  // [H] c_h of Lemma 10.5: Lipschitz of u -> o_h on the sqrt(D)-ball
  double attention_lipschitz = 0.0;      // L_A: x -> o_proj(heads(RMSNorm(x))) (Lemma 10.5)
  double mlp_lipschitz = 0.0;            // L_M: h -> MLP(RMSNorm(h)) (Lemma 10.6)
  double o_proj_heads = 0.0;             // min(sqrt(H) ||W_o||, sum_h ||W_o^h||) (Lemma 10.8)
  double lipschitz = 0.0;                // (1 + L_A)(1 + L_M) (Theorem 10.7)
  double injection = 0.0;                // o_proj_heads * (1 + L_M) (Lemma 10.8)
};

// Checks the shapes (HNF_ASSERT) and the float32 precondition of fold_gain.
[[nodiscard]] LayerBounds layer_bounds(const LayerWeights& w, const LayerShape& shape);

}  // namespace detail
}  // namespace hnf::analysis
