/* Elementwise activations, GEGLU and softmax. */
#include "kernels/cpu/cpu.h"

#define KN_SQRT1_2 0.70710678118654752f
#define KN_INV_SQRT_2PI 0.39894228040143268f
#define KN_SQRT_2_OVER_PI 0.79788456080286536f
#define KN_GELU_TANH_C 0.044715f
#define KN_QUICK_GELU_C 1.702f

/* The activations are written with kn_expf and a polynomial erf so that
 * each loop below vectorises (libm's expf, erff and tanhf keep a loop
 * scalar under strict C11). */
static inline float sigmoid_fast(float x) { return 1.0f / (1.0f + kn_expf(-x)); }

/* erf by Abramowitz & Stegun 7.1.26: |error| < 1.5e-7. */
static inline float erf_fast(float x) {
  float a = fabsf(x);
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  float y = 1.0f - poly * kn_expf(-a * a);
  return copysignf(y, x);
}

/* tanh(u) = 1 - 2 / (1 + e^{2u}); saturates cleanly because kn_expf clamps. */
static inline float tanh_fast(float u) { return 1.0f - 2.0f / (1.0f + kn_expf(2.0f * u)); }

static inline float gelu_value(float x) { return 0.5f * x * (1.0f + erf_fast(x * KN_SQRT1_2)); }

static inline float gelu_grad(float x) {
  return 0.5f * (1.0f + erf_fast(x * KN_SQRT1_2)) + x * KN_INV_SQRT_2PI * kn_expf(-0.5f * x * x);
}

static inline float gelu_tanh_value(float x) {
  float u = KN_SQRT_2_OVER_PI * (x + KN_GELU_TANH_C * x * x * x);
  return 0.5f * x * (1.0f + tanh_fast(u));
}

static inline float gelu_tanh_grad(float x) {
  float u = KN_SQRT_2_OVER_PI * (x + KN_GELU_TANH_C * x * x * x);
  float t = tanh_fast(u);
  float du = KN_SQRT_2_OVER_PI * (1.0f + 3.0f * KN_GELU_TANH_C * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

static inline float silu_grad(float x) {
  float s = sigmoid_fast(x);
  return s * (1.0f + x * (1.0f - s));
}

static inline float quick_gelu_grad(float x) {
  float s = sigmoid_fast(KN_QUICK_GELU_C * x);
  return s + KN_QUICK_GELU_C * x * s * (1.0f - s);
}

/* One loop per activation (a switch inside the loop would not vectorise). */
static void activation_range(kn_activation act, float *restrict out, const float *restrict inp, size_t n) {
  switch (act) {
  case KN_ACT_SILU:
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoid_fast(inp[i]);
    break;
  case KN_ACT_GELU:
    for (size_t i = 0; i < n; i++) out[i] = gelu_value(inp[i]);
    break;
  case KN_ACT_GELU_TANH:
    for (size_t i = 0; i < n; i++) out[i] = gelu_tanh_value(inp[i]);
    break;
  case KN_ACT_QUICK_GELU:
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoid_fast(KN_QUICK_GELU_C * inp[i]);
    break;
  }
}

static void activation_grad_range(kn_activation act, float *restrict dinp, const float *restrict dout,
                                  const float *restrict inp, size_t n) {
  switch (act) {
  case KN_ACT_SILU:
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * silu_grad(inp[i]);
    break;
  case KN_ACT_GELU:
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * gelu_grad(inp[i]);
    break;
  case KN_ACT_GELU_TANH:
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * gelu_tanh_grad(inp[i]);
    break;
  case KN_ACT_QUICK_GELU:
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * quick_gelu_grad(inp[i]);
    break;
  }
}

/* Work is split into fixed chunks so that each thread runs the vector loop. */
#define ACT_CHUNK 4096

void kn_cpu_activation_forward(kn_ctx *ctx, kn_activation act, float *out, const float *inp, size_t n) {
  long long n_chunks = (long long)((n + ACT_CHUNK - 1) / ACT_CHUNK);
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long c = 0; c < n_chunks; c++) {
    size_t i0 = (size_t)c * ACT_CHUNK, len = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
    activation_range(act, out + i0, inp + i0, len);
  }
}

void kn_cpu_activation_backward(kn_ctx *ctx, kn_activation act, float *dinp, const float *dout,
                                const float *inp, size_t n) {
  long long n_chunks = (long long)((n + ACT_CHUNK - 1) / ACT_CHUNK);
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long c = 0; c < n_chunks; c++) {
    size_t i0 = (size_t)c * ACT_CHUNK, len = n - i0 < ACT_CHUNK ? n - i0 : ACT_CHUNK;
    activation_grad_range(act, dinp + i0, dout + i0, inp + i0, len);
  }
}

void kn_cpu_geglu_forward(kn_ctx *ctx, float *out, const float *inp, int N, int D) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * D)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *hidden = inp + (size_t)n * 2 * D, *gate = hidden + D;
    float *o = out + (size_t)n * D;
    for (int d = 0; d < D; d++) o[d] = hidden[d] * gelu_value(gate[d]);
  }
}

void kn_cpu_geglu_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp, int N, int D) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * D)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *hidden = inp + (size_t)n * 2 * D, *gate = hidden + D;
    float *dhidden = dinp + (size_t)n * 2 * D, *dgate = dhidden + D;
    const float *dy = dout + (size_t)n * D;
    for (int d = 0; d < D; d++) {
      dhidden[d] += dy[d] * gelu_value(gate[d]);
      dgate[d] += dy[d] * hidden[d] * gelu_grad(gate[d]);
    }
  }
}

void kn_cpu_softmax_forward(kn_ctx *ctx, float *out, const float *inp, int N, int C) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * C)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *y = out + (size_t)n * C;
    float m = kn_row_max(x, C);
    memcpy(y, x, sizeof(float) * (size_t)C);
    float sum = kn_row_exp_sum(y, C, m);
    float inv = 1.0f / sum;
    for (int c = 0; c < C; c++) y[c] *= inv;
  }
}

void kn_cpu_softmax_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *out, int N, int C) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * C)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *y = out + (size_t)n * C, *dy = dout + (size_t)n * C;
    float *dx = dinp + (size_t)n * C;
    float dot = 0.0f;
    for (int c = 0; c < C; c++) dot += dy[c] * y[c];
    for (int c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
  }
}
