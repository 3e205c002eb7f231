/* Elementwise activations, GEGLU and softmax. */
#include "kernels/cpu/cpu.h"

#define KN_SQRT1_2 0.70710678118654752f
#define KN_INV_SQRT_2PI 0.39894228040143268f
#define KN_SQRT_2_OVER_PI 0.79788456080286536f
#define KN_GELU_TANH_C 0.044715f
#define KN_QUICK_GELU_C 1.702f

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float act_value(kn_activation act, float x) {
  switch (act) {
  case KN_ACT_SILU: return x * sigmoidf(x);
  case KN_ACT_GELU: return 0.5f * x * (1.0f + erff(x * KN_SQRT1_2));
  case KN_ACT_GELU_TANH: {
    float u = KN_SQRT_2_OVER_PI * (x + KN_GELU_TANH_C * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
  }
  case KN_ACT_QUICK_GELU: return x * sigmoidf(KN_QUICK_GELU_C * x);
  }
  return 0.0f;
}

/* d act(x) / dx. */
static inline float act_grad(kn_activation act, float x) {
  switch (act) {
  case KN_ACT_SILU: {
    float s = sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
  }
  case KN_ACT_GELU:
    return 0.5f * (1.0f + erff(x * KN_SQRT1_2)) + x * KN_INV_SQRT_2PI * expf(-0.5f * x * x);
  case KN_ACT_GELU_TANH: {
    float u = KN_SQRT_2_OVER_PI * (x + KN_GELU_TANH_C * x * x * x);
    float t = tanhf(u);
    float du = KN_SQRT_2_OVER_PI * (1.0f + 3.0f * KN_GELU_TANH_C * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
  }
  case KN_ACT_QUICK_GELU: {
    float s = sigmoidf(KN_QUICK_GELU_C * x);
    return s + KN_QUICK_GELU_C * x * s * (1.0f - s);
  }
  }
  return 0.0f;
}

void kn_activation_forward(kn_ctx *ctx, kn_activation act, float *out, const float *inp, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) out[i] = act_value(act, inp[i]);
}

void kn_activation_backward(kn_ctx *ctx, kn_activation act, float *dinp, const float *dout,
                            const float *inp, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) dinp[i] += dout[i] * act_grad(act, inp[i]);
}

void kn_geglu_forward(kn_ctx *ctx, float *out, const float *inp, int N, int D) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * D)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *hidden = inp + (size_t)n * 2 * D, *gate = hidden + D;
    float *o = out + (size_t)n * D;
    for (int d = 0; d < D; d++) o[d] = hidden[d] * act_value(KN_ACT_GELU, gate[d]);
  }
}

void kn_geglu_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp, int N, int D) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * D)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *hidden = inp + (size_t)n * 2 * D, *gate = hidden + D;
    float *dhidden = dinp + (size_t)n * 2 * D, *dgate = dhidden + D;
    const float *dy = dout + (size_t)n * D;
    for (int d = 0; d < D; d++) {
      dhidden[d] += dy[d] * act_value(KN_ACT_GELU, gate[d]);
      dgate[d] += dy[d] * hidden[d] * act_grad(KN_ACT_GELU, gate[d]);
    }
  }
}

void kn_softmax_forward(kn_ctx *ctx, float *out, const float *inp, int N, int C) {
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

void kn_softmax_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *out, int N, int C) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * C)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *y = out + (size_t)n * C, *dy = dout + (size_t)n * C;
    float *dx = dinp + (size_t)n * C;
    float dot = 0.0f;
    for (int c = 0; c < C; c++) dot += dy[c] * y[c];
    for (int c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
  }
}
