/* Layout and broadcast helpers of the models: NCHW <-> token transpose, the
 * per-channel add of the time embedding, dst += alpha src and an affine map.
 * They were loops in models/layers.c; as ops they run on either backend.
 * Each output value is computed by one thread in a fixed order, so results
 * do not depend on the thread count (and match the loops they replace). */
#include "kernels/cpu/cpu.h"

void kn_cpu_transpose_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int A) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * A)) schedule(static)
  for (int b = 0; b < B; b++) {
    const float *src = inp + (size_t)b * C * A;
    float *dst = out + (size_t)b * C * A;
    for (int c = 0; c < C; c++)
      for (int a = 0; a < A; a++) dst[(size_t)a * C + c] = src[(size_t)c * A + a];
  }
}

void kn_cpu_transpose_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int A) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * A)) schedule(static)
  for (int b = 0; b < B; b++) {
    float *dst = dinp + (size_t)b * C * A;
    const float *src = dout + (size_t)b * C * A;
    for (int c = 0; c < C; c++)
      for (int a = 0; a < A; a++) dst[(size_t)c * A + a] += src[(size_t)a * C + c];
  }
}

void kn_cpu_add_channel_forward(kn_ctx *ctx, float *x, const float *v, int B, int C, int HW) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * HW)) schedule(static)
  for (int bc = 0; bc < B * C; bc++) {
    float *row = x + (size_t)bc * HW;
    for (int i = 0; i < HW; i++) row[i] += v[bc];
  }
}

void kn_cpu_add_channel_backward(kn_ctx *ctx, float *dv, const float *dx, int B, int C, int HW) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * HW)) schedule(static)
  for (int bc = 0; bc < B * C; bc++) {
    const float *row = dx + (size_t)bc * HW;
    double sum = 0.0;
    for (int i = 0; i < HW; i++) sum += row[i];
    dv[bc] += (float)sum;
  }
}

void kn_cpu_axpy(kn_ctx *ctx, float *dst, float alpha, const float *src, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) dst[i] += alpha * src[i];
}

void kn_cpu_affine_forward(kn_ctx *ctx, float *out, const float *inp, float a, float b, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) out[i] = a * inp[i] + b;
}
