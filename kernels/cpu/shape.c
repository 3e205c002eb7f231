/* Ops that move values: nearest 2x upsample, residual add, concat and split. */
#include "kernels/cpu/cpu.h"

void kn_cpu_upsample2x_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int H, int W) {
  int W2 = 2 * W;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * H * W)) schedule(static)
  for (int bc = 0; bc < B * C; bc++) {
    const float *x = inp + (size_t)bc * H * W;
    float *y = out + (size_t)bc * 4 * H * W;
    for (int i = 0; i < H; i++) {
      float *row = y + (size_t)(2 * i) * W2;
      for (int j = 0; j < W; j++) row[2 * j] = row[2 * j + 1] = x[(size_t)i * W + j];
      memcpy(row + W2, row, sizeof(float) * (size_t)W2);
    }
  }
}

void kn_cpu_upsample2x_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int H, int W) {
  int W2 = 2 * W;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * H * W)) schedule(static)
  for (int bc = 0; bc < B * C; bc++) {
    float *dx = dinp + (size_t)bc * H * W;
    const float *dy = dout + (size_t)bc * 4 * H * W;
    for (int i = 0; i < H; i++) {
      const float *r0 = dy + (size_t)(2 * i) * W2, *r1 = r0 + W2;
      for (int j = 0; j < W; j++)
        dx[(size_t)i * W + j] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
    }
  }
}

void kn_cpu_add_forward(kn_ctx *ctx, float *out, const float *a, const float *b, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) out[i] = a[i] + b[i];
}

void kn_cpu_add_backward(kn_ctx *ctx, float *da, float *db, const float *dout, size_t n) {
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) {
    if (da) da[i] += dout[i];
    if (db) db[i] += dout[i];
  }
}

/* Copies (accumulate = 0) or adds (accumulate = 1) rows of `inner` values. */
static void move_slab(float *dst, const float *src, size_t n, int accumulate) {
  if (!accumulate) {
    memcpy(dst, src, sizeof(float) * n);
    return;
  }
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void kn_cpu_concat_forward(kn_ctx *ctx, float *out, const float *a, const float *b, int outer, int Ca,
                           int Cb, int inner) {
  size_t na = (size_t)Ca * inner, nb = (size_t)Cb * inner;
#pragma omp parallel for num_threads(kn_team(ctx, (na + nb) * (size_t)outer)) schedule(static)
  for (int o = 0; o < outer; o++) {
    float *dst = out + (size_t)o * (na + nb);
    move_slab(dst, a + (size_t)o * na, na, 0);
    move_slab(dst + na, b + (size_t)o * nb, nb, 0);
  }
}

void kn_cpu_concat_backward(kn_ctx *ctx, float *da, float *db, const float *dout, int outer, int Ca,
                            int Cb, int inner) {
  size_t na = (size_t)Ca * inner, nb = (size_t)Cb * inner;
#pragma omp parallel for num_threads(kn_team(ctx, (na + nb) * (size_t)outer)) schedule(static)
  for (int o = 0; o < outer; o++) {
    const float *src = dout + (size_t)o * (na + nb);
    if (da) move_slab(da + (size_t)o * na, src, na, 1);
    if (db) move_slab(db + (size_t)o * nb, src + na, nb, 1);
  }
}

void kn_cpu_split_forward(kn_ctx *ctx, float *a, float *b, const float *inp, int outer, int Ca, int Cb,
                          int inner) {
  size_t na = (size_t)Ca * inner, nb = (size_t)Cb * inner;
#pragma omp parallel for num_threads(kn_team(ctx, (na + nb) * (size_t)outer)) schedule(static)
  for (int o = 0; o < outer; o++) {
    const float *src = inp + (size_t)o * (na + nb);
    if (a) move_slab(a + (size_t)o * na, src, na, 0);
    if (b) move_slab(b + (size_t)o * nb, src + na, nb, 0);
  }
}

void kn_cpu_split_backward(kn_ctx *ctx, float *dinp, const float *da, const float *db, int outer,
                           int Ca, int Cb, int inner) {
  size_t na = (size_t)Ca * inner, nb = (size_t)Cb * inner;
#pragma omp parallel for num_threads(kn_team(ctx, (na + nb) * (size_t)outer)) schedule(static)
  for (int o = 0; o < outer; o++) {
    float *dst = dinp + (size_t)o * (na + nb);
    if (da) move_slab(dst, da + (size_t)o * na, na, 1);
    if (db) move_slab(dst + na, db + (size_t)o * nb, nb, 1);
  }
}
