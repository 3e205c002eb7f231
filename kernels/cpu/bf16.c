/* bf16 storage on the CPU: the host conversions (what the device's
 * __float2bfloat16_rn does) and the conversion ops of kernels.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

size_t kn_dtype_size(kn_dtype dtype) { return dtype == KN_BF16 ? sizeof(kn_bf16) : sizeof(float); }

const char *kn_dtype_name(kn_dtype dtype) { return dtype == KN_BF16 ? "bf16" : "float32"; }

int kn_dtype_resolve(const char *name, kn_dtype *out, dpo_error *err) {
  *out = KN_F32;
  if (!name || strcmp(name, "float32") == 0 || strcmp(name, "fp32") == 0) return DPO_OK;
  if (strcmp(name, "bf16") == 0) {
    *out = KN_BF16;
    return DPO_OK;
  }
  return dpo_fail(err, DPO_ERR_USAGE, "--precision: unknown precision '%s' (expected float32 or bf16)", name);
}

kn_bf16 kn_bf16_from_float(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (kn_bf16)((bits >> 16) | 0x40u); /* quiet NaN */
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);                            /* to nearest even */
  return (kn_bf16)((bits + rounding) >> 16);
}

float kn_bf16_to_float(kn_bf16 x) {
  uint32_t bits = (uint32_t)x << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

void kn_cpu_to_bf16(kn_ctx *ctx, kn_bf16 *out, const float *inp, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) out[i] = kn_bf16_from_float(inp[i]);
}

void kn_cpu_from_bf16(kn_ctx *ctx, float *out, const kn_bf16 *inp, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) out[i] = kn_bf16_to_float(inp[i]);
}

/* ------------------------------------------------ bf16 ops (reference) */

/* Each op below widens its bf16 inputs to float32 working copies, runs the
 * float32 CPU op, and rounds its bf16 outputs once: the numerics that
 * kernels.h states for the bf16 ops, and the reference of the CUDA ones. */

/* A float32 copy of n bf16 values; NULL for NULL (an absent gradient). */
static float *widen(const kn_bf16 *x, size_t n) {
  if (!x) return NULL;
  float *y = calloc(n ? n : 1, sizeof(float)); /* zeroed: gcc cannot see the loop fill it */
  if (!y) {
    fprintf(stderr, "dpo: out of memory in a bf16 CPU op (%zu values)\n", n);
    abort();
  }
  for (size_t i = 0; i < n; i++) y[i] = kn_bf16_to_float(x[i]);
  return y;
}

/* A float32 buffer (zeroed) for an output that the op overwrites. */
static float *scratch_floats(size_t n) {
  float *y = calloc(n ? n : 1, sizeof(float));
  if (!y) {
    fprintf(stderr, "dpo: out of memory in a bf16 CPU op (%zu values)\n", n);
    abort();
  }
  return y;
}

/* Rounds src into dst (when dst is not NULL) and frees src. */
static void narrow_free(kn_bf16 *dst, float *src, size_t n) {
  if (dst && src)
    for (size_t i = 0; i < n; i++) dst[i] = kn_bf16_from_float(src[i]);
  free(src);
}

void kn_cpu_linear_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp,
                                const kn_bf16 *weight,
                                const float *bias, int N, int IC, int OC) {
  size_t n_out = (size_t)N * OC;
  float *x = widen(inp, (size_t)N * IC), *w = widen(weight, (size_t)OC * IC), *y = scratch_floats(n_out);
  kn_cpu_linear_forward(ctx, y, x, w, bias, N, IC, OC);
  narrow_free(out, y, n_out);
  free(x);
  free(w);
}

void kn_cpu_linear_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int N,
                                 int IC, int OC) {
  size_t n_in = (size_t)N * IC;
  float *dy = widen(dout, (size_t)N * OC), *x = widen(inp, n_in), *w = widen(weight, (size_t)OC * IC);
  float *dx = widen(dinp, n_in);
  kn_cpu_linear_backward(ctx, dx, dweight, dbias, dy, x, w, N, IC, OC);
  narrow_free(dinp, dx, n_in);
  free(dy);
  free(x);
  free(w);
}

void kn_cpu_conv2d_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp,
                                const kn_bf16 *weight,
                                const float *bias, int B, int C, int H, int W, int OC, int K, int stride,
                                int pad) {
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  size_t n_out = (size_t)B * OC * Ho * Wo;
  float *x = widen(inp, (size_t)B * C * H * W), *w = widen(weight, (size_t)OC * C * K * K);
  float *y = scratch_floats(n_out);
  kn_cpu_conv2d_forward(ctx, y, x, w, bias, B, C, H, W, OC, K, stride, pad);
  narrow_free(out, y, n_out);
  free(x);
  free(w);
}

void kn_cpu_conv2d_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int B,
                                 int C, int H, int W, int OC, int K, int stride, int pad) {
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  size_t n_in = (size_t)B * C * H * W;
  float *dy = widen(dout, (size_t)B * OC * Ho * Wo), *x = widen(inp, n_in);
  float *w = widen(weight, (size_t)OC * C * K * K), *dx = widen(dinp, n_in);
  kn_cpu_conv2d_backward(ctx, dx, dweight, dbias, dy, x, w, B, C, H, W, OC, K, stride, pad);
  narrow_free(dinp, dx, n_in);
  free(dy);
  free(x);
  free(w);
}

void kn_cpu_group_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                    const kn_bf16 *inp, const float *gamma, const float *beta, int B,
                                    int C, int HW, int G, float eps, int fuse_silu) {
  size_t n = (size_t)B * C * HW;
  float *x = widen(inp, n), *y = scratch_floats(n);
  kn_cpu_group_norm_forward(ctx, y, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
  if (fuse_silu) kn_cpu_activation_forward(ctx, KN_ACT_SILU, x, y, n); /* x is free now */
  narrow_free(out, fuse_silu ? x : y, n);
  free(fuse_silu ? y : x);
}

/* y = gamma * (x - mean) * rstd + beta: the normalised value that the fused
 * SiLU's backward needs (what the forward computed before its SiLU). */
static void group_norm_recompute(float *y, const float *x, const float *mean, const float *rstd,
                                 const float *gamma, const float *beta, int B, int C, int HW, int G) {
  int per = C / G;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++) {
      int g = c / per;
      float m = mean[b * G + g], r = rstd[b * G + g];
      size_t base = ((size_t)b * C + c) * HW;
      for (int i = 0; i < HW; i++) y[base + i] = (x[base + i] - m) * r * gamma[c] + beta[c];
    }
}

void kn_cpu_group_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                     const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                     const float *rstd, const float *gamma, const float *beta, int B,
                                     int C, int HW, int G, int fuse_silu) {
  size_t n = (size_t)B * C * HW;
  float *x = widen(inp, n), *dy = widen(dout, n), *dx = widen(dinp, n);
  if (fuse_silu) {
    /* d norm = d out * silu'(normalised), the normalised value recomputed. */
    float *y = scratch_floats(n), *dnorm = scratch_floats(n);
    group_norm_recompute(y, x, mean, rstd, gamma, beta, B, C, HW, G);
    kn_cpu_activation_backward(ctx, KN_ACT_SILU, dnorm, dy, y, n);
    free(y);
    free(dy);
    dy = dnorm;
  }
  kn_cpu_group_norm_backward(ctx, dx, dgamma, dbeta, dy, x, mean, rstd, gamma, B, C, HW, G);
  narrow_free(dinp, dx, n);
  free(x);
  free(dy);
}

void kn_cpu_layer_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                    const kn_bf16 *inp, const float *gamma, const float *beta, int N,
                                    int C, float eps) {
  size_t n = (size_t)N * C;
  float *x = widen(inp, n), *y = scratch_floats(n);
  kn_cpu_layer_norm_forward(ctx, y, mean, rstd, x, gamma, beta, N, C, eps);
  narrow_free(out, y, n);
  free(x);
}

void kn_cpu_layer_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                     const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                     const float *rstd, const float *gamma, int N, int C) {
  size_t n = (size_t)N * C;
  float *x = widen(inp, n), *dy = widen(dout, n), *dx = widen(dinp, n);
  kn_cpu_layer_norm_backward(ctx, dx, dgamma, dbeta, dy, x, mean, rstd, gamma, N, C);
  narrow_free(dinp, dx, n);
  free(x);
  free(dy);
}

void kn_cpu_activation_forward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *out,
                                    const kn_bf16 *inp,
                                    size_t n) {
  float *x = widen(inp, n), *y = scratch_floats(n);
  kn_cpu_activation_forward(ctx, act, y, x, n);
  narrow_free(out, y, n);
  free(x);
}

void kn_cpu_activation_backward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *dinp,
                                     const kn_bf16 *dout, const kn_bf16 *inp, size_t n) {
  float *x = widen(inp, n), *dy = widen(dout, n), *dx = widen(dinp, n);
  kn_cpu_activation_backward(ctx, act, dx, dy, x, n);
  narrow_free(dinp, dx, n);
  free(x);
  free(dy);
}

void kn_cpu_geglu_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int N, int D) {
  size_t n_out = (size_t)N * D;
  float *x = widen(inp, 2 * n_out), *y = scratch_floats(n_out);
  kn_cpu_geglu_forward(ctx, y, x, N, D);
  narrow_free(out, y, n_out);
  free(x);
}

void kn_cpu_geglu_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, const kn_bf16 *inp,
                                int N, int D) {
  size_t n_out = (size_t)N * D;
  float *x = widen(inp, 2 * n_out), *dy = widen(dout, n_out), *dx = widen(dinp, 2 * n_out);
  kn_cpu_geglu_backward(ctx, dx, dy, x, N, D);
  narrow_free(dinp, dx, 2 * n_out);
  free(x);
  free(dy);
}

void kn_cpu_attention_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *lse, const kn_bf16 *q,
                                   const kn_bf16 *k, const kn_bf16 *v, int B, int H, int Nq, int Nk,
                                   int D, float scale, int causal) {
  size_t nq = (size_t)B * Nq * H * D, nk = (size_t)B * Nk * H * D;
  float *fq = widen(q, nq), *fk = widen(k, nk), *fv = widen(v, nk), *y = scratch_floats(nq);
  kn_cpu_attention_forward(ctx, y, lse, fq, fk, fv, B, H, Nq, Nk, D, scale, causal);
  narrow_free(out, y, nq);
  free(fq);
  free(fk);
  free(fv);
}

void kn_cpu_attention_backward_bf16(kn_ctx *ctx, kn_bf16 *dq, kn_bf16 *dk, kn_bf16 *dv,
                                    const kn_bf16 *dout, const kn_bf16 *q, const kn_bf16 *k,
                                    const kn_bf16 *v, const kn_bf16 *out, const float *lse, int B,
                                    int H, int Nq, int Nk, int D, float scale, int causal) {
  size_t nq = (size_t)B * Nq * H * D, nk = (size_t)B * Nk * H * D;
  float *fq = widen(q, nq), *fk = widen(k, nk), *fv = widen(v, nk);
  float *fo = widen(out, nq), *fdo = widen(dout, nq);
  float *fdq = widen(dq, nq), *fdk = widen(dk, nk), *fdv = widen(dv, nk);
  kn_cpu_attention_backward(ctx, fdq, fdk, fdv, fdo, fq, fk, fv, fo, lse, B, H, Nq, Nk, D, scale,
                            causal);
  narrow_free(dq, fdq, nq);
  narrow_free(dk, fdk, nk);
  narrow_free(dv, fdv, nk);
  free(fq);
  free(fk);
  free(fv);
  free(fo);
  free(fdo);
}

void kn_cpu_upsample2x_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C,
                                    int H,
                                    int W) {
  size_t n = (size_t)B * C * H * W;
  float *x = widen(inp, n), *y = scratch_floats(4 * n);
  kn_cpu_upsample2x_forward(ctx, y, x, B, C, H, W);
  narrow_free(out, y, 4 * n);
  free(x);
}

void kn_cpu_upsample2x_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                     int H, int W) {
  size_t n = (size_t)B * C * H * W;
  float *dy = widen(dout, 4 * n), *dx = widen(dinp, n);
  kn_cpu_upsample2x_backward(ctx, dx, dy, B, C, H, W);
  narrow_free(dinp, dx, n);
  free(dy);
}

void kn_cpu_add_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b,
                             size_t n) {
  float *fa = widen(a, n), *fb = widen(b, n), *y = scratch_floats(n);
  kn_cpu_add_forward(ctx, y, fa, fb, n);
  narrow_free(out, y, n);
  free(fa);
  free(fb);
}

void kn_cpu_add_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout,
                              size_t n) {
  float *dy = widen(dout, n), *fda = widen(da, n), *fdb = widen(db, n);
  kn_cpu_add_backward(ctx, fda, fdb, dy, n);
  narrow_free(da, fda, n);
  narrow_free(db, fdb, n);
  free(dy);
}

void kn_cpu_concat_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b,
                                int outer, int Ca, int Cb, int inner) {
  size_t na = (size_t)outer * Ca * inner, nb = (size_t)outer * Cb * inner;
  float *fa = widen(a, na), *fb = widen(b, nb), *y = scratch_floats(na + nb);
  kn_cpu_concat_forward(ctx, y, fa, fb, outer, Ca, Cb, inner);
  narrow_free(out, y, na + nb);
  free(fa);
  free(fb);
}

void kn_cpu_concat_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout,
                                 int outer,
                                 int Ca, int Cb, int inner) {
  size_t na = (size_t)outer * Ca * inner, nb = (size_t)outer * Cb * inner;
  float *dy = widen(dout, na + nb), *fda = widen(da, na), *fdb = widen(db, nb);
  kn_cpu_concat_backward(ctx, fda, fdb, dy, outer, Ca, Cb, inner);
  narrow_free(da, fda, na);
  narrow_free(db, fdb, nb);
  free(dy);
}

void kn_cpu_transpose_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C,
                                   int A) {
  size_t n = (size_t)B * C * A;
  float *x = widen(inp, n), *y = scratch_floats(n);
  kn_cpu_transpose_forward(ctx, y, x, B, C, A);
  narrow_free(out, y, n);
  free(x);
}

void kn_cpu_transpose_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                    int A) {
  size_t n = (size_t)B * C * A;
  float *dy = widen(dout, n), *dx = widen(dinp, n);
  kn_cpu_transpose_backward(ctx, dx, dy, B, C, A);
  narrow_free(dinp, dx, n);
  free(dy);
}

void kn_cpu_add_channel_forward_bf16(kn_ctx *ctx, kn_bf16 *x, const kn_bf16 *v, int B, int C,
                                     int HW) {
  size_t n = (size_t)B * C * HW;
  float *fx = widen(x, n), *fv = widen(v, (size_t)B * C);
  kn_cpu_add_channel_forward(ctx, fx, fv, B, C, HW);
  narrow_free(x, fx, n);
  free(fv);
}

void kn_cpu_add_channel_backward_bf16(kn_ctx *ctx, kn_bf16 *dv, const kn_bf16 *dx, int B, int C,
                                      int HW) {
  size_t n = (size_t)B * C * HW;
  float *fdx = widen(dx, n), *fdv = widen(dv, (size_t)B * C);
  kn_cpu_add_channel_backward(ctx, fdv, fdx, B, C, HW);
  narrow_free(dv, fdv, (size_t)B * C);
  free(fdx);
}
