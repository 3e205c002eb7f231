/* Per-sample MSE and the scalar reductions of the training losses. Sums run
 * in double over fixed chunks combined in order, so the result is the same
 * for any thread count. */
#include <stdlib.h>

#include "kernels/cpu/cpu.h"

/* Sum of (a - b)^2 over n values, or when b is NULL of a alone (square: of
 * a^2), in double over fixed chunks of KN_REDUCE_CHUNK combined in order. */
double kn_cpu_chunked_sum(kn_ctx *ctx, const float *a, const float *b, size_t n, int square) {
  long long n_chunks = (long long)((n + KN_REDUCE_CHUNK - 1) / KN_REDUCE_CHUNK);
  double total = 0.0;
  /* Chunks are summed in parallel into a small stack array per pass. */
  enum { PASS = 256 };
  double partial[PASS];
  for (long long base = 0; base < n_chunks; base += PASS) {
    long long m = n_chunks - base < PASS ? n_chunks - base : PASS;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)m * KN_REDUCE_CHUNK)) schedule(static)
    for (long long c = 0; c < m; c++) {
      size_t i0 = (size_t)(base + c) * KN_REDUCE_CHUNK;
      size_t i1 = i0 + KN_REDUCE_CHUNK < n ? i0 + KN_REDUCE_CHUNK : n;
      double s = 0.0;
      for (size_t i = i0; i < i1; i++) {
        double d = b ? (double)a[i] - (double)b[i] : (double)a[i];
        s += b || square ? d * d : d;
      }
      partial[c] = s;
    }
    for (long long c = 0; c < m; c++) total += partial[c];
  }
  return total;
}

void kn_cpu_mse_per_sample_forward(kn_ctx *ctx, float *loss, const float *pred, const float *target,
                                   int B, size_t n) {
  for (int b = 0; b < B; b++)
    loss[b] = (float)(kn_cpu_chunked_sum(ctx, pred + (size_t)b * n, target + (size_t)b * n, n, 0) / (double)n);
}

void kn_cpu_mse_per_sample_backward(kn_ctx *ctx, float *dpred, float *dtarget, const float *dloss,
                                    const float *pred, const float *target, int B, size_t n) {
  for (int b = 0; b < B; b++) {
    float g = 2.0f * dloss[b] / (float)n;
    const float *p = pred + (size_t)b * n, *t = target + (size_t)b * n;
    float *dp = dpred ? dpred + (size_t)b * n : NULL, *dt = dtarget ? dtarget + (size_t)b * n : NULL;
    long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
    for (long long i = 0; i < count; i++) {
      float d = g * (p[i] - t[i]);
      if (dp) dp[i] += d;
      if (dt) dt[i] -= d;
    }
  }
}

void kn_cpu_sum_forward(kn_ctx *ctx, float *out, const float *inp, size_t n) {
  *out = (float)kn_cpu_chunked_sum(ctx, inp, NULL, n, 0);
}

static void broadcast_add(kn_ctx *ctx, float *dinp, float g, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) dinp[i] += g;
}

void kn_cpu_sum_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n) {
  broadcast_add(ctx, dinp, *dout, n);
}

void kn_cpu_mean_forward(kn_ctx *ctx, float *out, const float *inp, size_t n) {
  *out = (float)(kn_cpu_chunked_sum(ctx, inp, NULL, n, 0) / (double)n);
}

void kn_cpu_mean_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n) {
  broadcast_add(ctx, dinp, *dout / (float)n, n);
}

void kn_cpu_scale_forward(kn_ctx *ctx, float *out, const float *inp, float scale, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) out[i] = scale * inp[i];
}

void kn_cpu_scale_backward(kn_ctx *ctx, float *dinp, const float *dout, float scale, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) dinp[i] += scale * dout[i];
}

/* log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)): no overflow either way. */
void kn_cpu_logsigmoid_forward(kn_ctx *ctx, float *out, const float *inp, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = (x < 0.0f ? x : 0.0f) - log1pf(expf(-fabsf(x)));
  }
}

/* d/dx log sigmoid(x) = sigmoid(-x) = 1 - sigmoid(x). */
void kn_cpu_logsigmoid_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float s = x >= 0.0f ? expf(-x) / (1.0f + expf(-x)) : 1.0f / (1.0f + expf(x));
    dinp[i] += dout[i] * s;
  }
}
