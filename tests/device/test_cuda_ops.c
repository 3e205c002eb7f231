/* CUDA backend vs the CPU reference, op by op, on random inputs; then a
 * tiny DPO step (two-layer noise predictor, policy + frozen reference, DPO
 * loss, backward, AdamW) on both backends.
 *
 * Needs a GPU: without one it prints why and exits 77, which ctest reports
 * as skipped (never as passed). Registered with label `device`; `make test`
 * leaves that label out, tests/device/run.sh runs it.
 *
 * Tolerances (stated, per tensor): the error is max |gpu - cpu| divided by
 * max(max |cpu|, 1e-3), i.e. relative to the tensor's scale.
 *   TOL_EXACTISH 1e-6  data movement, elementwise sums (bitwise in practice)
 *   TOL_POINT    2e-5  elementwise transcendental ops (device expf/erff vs
 *                      the CPU's polynomial approximations)
 *   TOL_REDUCE   1e-4  float32 reductions, GEMMs, convolutions, norms,
 *                      attention (different summation orders)
 *   TOL_PHASE    1e-3  timestep embedding: sin/cos of arguments up to 1000
 *                      rad, where a 1-2 ulp difference between the device's
 *                      expf and libm's in the frequency moves the argument
 *                      by about 1e-4
 *   TOL_BF16     2e-2  bf16 operands with float32 accumulation, against the
 *                      CPU on the same bf16-rounded inputs (8-bit mantissa).
 *                      Also bf16 attention on tensor cores, which rounds the
 *                      probabilities P and dS to bf16 for its products (as
 *                      FlashAttention does): a relative 2^-9 per term, of
 *                      random sign, averages out in sums over many keys far
 *                      below this; the bf16 output rounding is the same size
 *   TOL_STEP     1e-2  the tiny DPO step's parameter updates, relative to
 *                      their size (about lr): Adam divides by sqrt(v), which
 *                      amplifies float32 differences in small gradients */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/kernels_cuda.h"
#include "kernels/kernels.h"
#include "tests/test.h"
#include "trainer/trainer.h"

#define TOL_EXACTISH 1e-6
#define TOL_POINT 2e-5
#define TOL_REDUCE 1e-4
#define TOL_PHASE 1e-3
#define TOL_BF16 2e-2
#define TOL_STEP 1e-2

static kn_ctx cpu;
static kn_cuda_ctx gpu;
static uint64_t next_stream = 1;
static int n_checked;

/* ------------------------------------------------------------ helpers */

static float *host_random(size_t n, float scale) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  dpo_rng_normal_fill(12345, next_stream++, 0, x, n);
  for (size_t i = 0; i < n; i++) x[i] *= scale;
  return x;
}

static float *host_copy(const float *x, size_t n) {
  float *y = malloc(sizeof(float) * (n ? n : 1));
  memcpy(y, x, sizeof(float) * n);
  return y;
}

static float *device_copy(const float *x, size_t n) {
  float *d = kn_cuda_malloc(&gpu, sizeof(float) * (n ? n : 1));
  if (d && n) kn_cuda_upload(&gpu, d, x, sizeof(float) * n);
  return d;
}

/* Compares a device tensor with the CPU's; prints one line per tensor. */
static void compare(const char *what, const float *cpu_values, const float *device_values, size_t n, double tol) {
  float *got = malloc(sizeof(float) * (n ? n : 1));
  kn_cuda_download(&gpu, got, device_values, sizeof(float) * n);
  dpo_error err = {0};
  if (kn_cuda_ctx_check(&gpu, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
    free(got);
    return;
  }
  double max_ref = 0.0, max_diff = 0.0;
  size_t worst = 0;
  for (size_t i = 0; i < n; i++) {
    double r = fabs((double)cpu_values[i]);
    if (r > max_ref) max_ref = r;
    double d = fabs((double)got[i] - (double)cpu_values[i]);
    if (!(d <= max_diff)) { /* catches NaN too */
      max_diff = isnan(d) ? INFINITY : d;
      worst = i;
    }
  }
  double rel = max_diff / (max_ref > 1e-3 ? max_ref : 1e-3);
  int ok = rel <= tol;
  printf("  %-36s n=%-8zu max|cpu|=%-10.4g rel.err=%-10.3g tol=%-7.0e %s\n", what, n, max_ref, rel, tol,
         ok ? "ok" : "FAIL");
  if (!ok)
    test_fail(__FILE__, __LINE__, "%s: element %zu cpu %.9g gpu %.9g (rel.err %.3g > %.0e)", what, worst,
              (double)cpu_values[worst], (double)got[worst], rel, tol);
  n_checked++;
  free(got);
}

/* A gradient buffer that starts non-zero on both sides (backward accumulates). */
typedef struct {
  float *cpu;
  float *dev;
  size_t n;
} pair_buf;

static pair_buf pair_random(size_t n, float scale) {
  pair_buf p = {host_random(n, scale), NULL, n};
  p.dev = device_copy(p.cpu, n);
  return p;
}

static pair_buf pair_zero(size_t n) {
  pair_buf p = {calloc(n ? n : 1, sizeof(float)), NULL, n};
  p.dev = device_copy(p.cpu, n);
  return p;
}

static void pair_free(pair_buf *p) {
  free(p->cpu);
  kn_cuda_free(p->dev);
  memset(p, 0, sizeof *p);
}

static void pair_compare(const char *what, const pair_buf *p, double tol) { compare(what, p->cpu, p->dev, p->n, tol); }

/* Rounds host values to bf16 in place (both sides then see the same inputs). */
static void round_bf16(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = kn_bf16_to_float(kn_bf16_from_float(x[i]));
}

static kn_bf16 *device_bf16(const float *x, size_t n) {
  kn_bf16 *h = malloc(sizeof(kn_bf16) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) h[i] = kn_bf16_from_float(x[i]);
  kn_bf16 *d = kn_cuda_malloc(&gpu, sizeof(kn_bf16) * (n ? n : 1));
  if (d) kn_cuda_upload(&gpu, d, h, sizeof(kn_bf16) * n);
  free(h);
  return d;
}

static void compare_bf16(const char *what, const float *cpu_values, const kn_bf16 *device_values, size_t n,
                         double tol) {
  float *as_float = kn_cuda_malloc(&gpu, sizeof(float) * (n ? n : 1));
  kn_cuda_from_bf16(&gpu, as_float, device_values, n);
  compare(what, cpu_values, as_float, n, tol);
  kn_cuda_free(as_float);
}

/* ---------------------------------------------------------------- ops */

static void test_linear(int N, int IC, int OC) {
  printf("linear N=%d IC=%d OC=%d\n", N, IC, OC);
  pair_buf inp = pair_random((size_t)N * IC, 1.0f), w = pair_random((size_t)OC * IC, 0.1f);
  pair_buf bias = pair_random(OC, 0.1f), out = pair_zero((size_t)N * OC), dout = pair_random((size_t)N * OC, 1.0f);
  kn_linear_forward(&cpu, out.cpu, inp.cpu, w.cpu, bias.cpu, N, IC, OC);
  kn_cuda_linear_forward(&gpu, out.dev, inp.dev, w.dev, bias.dev, N, IC, OC);
  pair_compare("linear forward", &out, TOL_REDUCE);
  pair_buf dinp = pair_random((size_t)N * IC, 1.0f), dw = pair_random((size_t)OC * IC, 1.0f), db = pair_random(OC, 1.0f);
  kn_linear_backward(&cpu, dinp.cpu, dw.cpu, db.cpu, dout.cpu, inp.cpu, w.cpu, N, IC, OC);
  kn_cuda_linear_backward(&gpu, dinp.dev, dw.dev, db.dev, dout.dev, inp.dev, w.dev, N, IC, OC);
  pair_compare("linear dinp", &dinp, TOL_REDUCE);
  pair_compare("linear dweight", &dw, TOL_REDUCE);
  pair_compare("linear dbias", &db, TOL_REDUCE);

  /* bf16: the same inputs rounded to bf16; the CPU computes in float32 on them. */
  round_bf16(inp.cpu, inp.n);
  round_bf16(w.cpu, w.n);
  round_bf16(dout.cpu, dout.n);
  kn_bf16 *inp16 = device_bf16(inp.cpu, inp.n), *w16 = device_bf16(w.cpu, w.n), *dout16 = device_bf16(dout.cpu, dout.n);
  kn_bf16 *out16 = kn_cuda_malloc(&gpu, sizeof(kn_bf16) * out.n);
  kn_linear_forward(&cpu, out.cpu, inp.cpu, w.cpu, bias.cpu, N, IC, OC);
  kn_cuda_linear_forward_bf16(&gpu, out16, inp16, w16, bias.dev, N, IC, OC);
  compare_bf16("linear forward bf16", out.cpu, out16, out.n, TOL_BF16);
  pair_buf dw32 = pair_zero(w.n), db32 = pair_zero(OC), dinp32 = pair_zero(inp.n);
  kn_bf16 *dinp16 = kn_cuda_malloc(&gpu, sizeof(kn_bf16) * inp.n); /* zeroed */
  kn_linear_backward(&cpu, dinp32.cpu, dw32.cpu, db32.cpu, dout.cpu, inp.cpu, w.cpu, N, IC, OC);
  kn_cuda_linear_backward_bf16(&gpu, dinp16, dw32.dev, db32.dev, dout16, inp16, w16, N, IC, OC);
  compare_bf16("linear dinp bf16", dinp32.cpu, dinp16, inp.n, TOL_BF16);
  pair_compare("linear dweight bf16 (fp32 grad)", &dw32, TOL_BF16);
  pair_compare("linear dbias bf16 (fp32 grad)", &db32, TOL_BF16);
  kn_cuda_free(inp16);
  kn_cuda_free(w16);
  kn_cuda_free(dout16);
  kn_cuda_free(out16);
  kn_cuda_free(dinp16);
  pair_free(&dw32), pair_free(&db32), pair_free(&dinp32);
  pair_free(&inp), pair_free(&w), pair_free(&bias), pair_free(&out), pair_free(&dout);
  pair_free(&dinp), pair_free(&dw), pair_free(&db);
}

static void test_conv2d(int B, int C, int H, int W, int OC, int K, int stride, int pad) {
  printf("conv2d B=%d C=%d H=%d W=%d OC=%d K=%d stride=%d pad=%d\n", B, C, H, W, OC, K, stride, pad);
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  size_t n_in = (size_t)B * C * H * W, n_w = (size_t)OC * C * K * K, n_out = (size_t)B * OC * Ho * Wo;
  pair_buf inp = pair_random(n_in, 1.0f), w = pair_random(n_w, 0.2f), bias = pair_random(OC, 0.1f);
  pair_buf out = pair_zero(n_out), dout = pair_random(n_out, 1.0f);
  kn_conv2d_forward(&cpu, out.cpu, inp.cpu, w.cpu, bias.cpu, B, C, H, W, OC, K, stride, pad);
  kn_cuda_conv2d_forward(&gpu, out.dev, inp.dev, w.dev, bias.dev, B, C, H, W, OC, K, stride, pad);
  pair_compare("conv2d forward", &out, TOL_REDUCE);
  pair_buf dinp = pair_random(n_in, 1.0f), dw = pair_random(n_w, 1.0f), db = pair_random(OC, 1.0f);
  kn_conv2d_backward(&cpu, dinp.cpu, dw.cpu, db.cpu, dout.cpu, inp.cpu, w.cpu, B, C, H, W, OC, K, stride, pad);
  kn_cuda_conv2d_backward(&gpu, dinp.dev, dw.dev, db.dev, dout.dev, inp.dev, w.dev, B, C, H, W, OC, K, stride, pad);
  pair_compare("conv2d dinp", &dinp, TOL_REDUCE);
  pair_compare("conv2d dweight", &dw, TOL_REDUCE);
  pair_compare("conv2d dbias", &db, TOL_REDUCE);
  pair_free(&inp), pair_free(&w), pair_free(&bias), pair_free(&out), pair_free(&dout);
  pair_free(&dinp), pair_free(&dw), pair_free(&db);
}

static void test_group_norm(int B, int C, int HW, int G) {
  printf("group norm B=%d C=%d HW=%d G=%d (+ fused SiLU)\n", B, C, HW, G);
  size_t n = (size_t)B * C * HW;
  pair_buf inp = pair_random(n, 2.0f), gamma = pair_random(C, 1.0f), beta = pair_random(C, 0.5f);
  for (size_t i = 0; i < n; i++) inp.cpu[i] += 0.7f; /* a non-zero mean */
  kn_cuda_upload(&gpu, inp.dev, inp.cpu, sizeof(float) * n);
  pair_buf out = pair_zero(n), mean = pair_zero((size_t)B * G), rstd = pair_zero((size_t)B * G);
  kn_group_norm_forward(&cpu, out.cpu, mean.cpu, rstd.cpu, inp.cpu, gamma.cpu, beta.cpu, B, C, HW, G, 1e-5f);
  kn_cuda_group_norm_forward(&gpu, out.dev, mean.dev, rstd.dev, inp.dev, gamma.dev, beta.dev, B, C, HW, G, 1e-5f);
  pair_compare("group norm forward", &out, TOL_REDUCE);
  pair_compare("group norm mean", &mean, TOL_REDUCE);
  pair_compare("group norm rstd", &rstd, TOL_REDUCE);
  pair_buf dout = pair_random(n, 1.0f), dinp = pair_random(n, 1.0f), dg = pair_random(C, 1.0f), dbt = pair_random(C, 1.0f);
  kn_group_norm_backward(&cpu, dinp.cpu, dg.cpu, dbt.cpu, dout.cpu, inp.cpu, mean.cpu, rstd.cpu, gamma.cpu, B, C, HW, G);
  kn_cuda_group_norm_backward(&gpu, dinp.dev, dg.dev, dbt.dev, dout.dev, inp.dev, mean.dev, rstd.dev, gamma.dev, B, C,
                              HW, G);
  pair_compare("group norm dinp", &dinp, TOL_REDUCE);
  pair_compare("group norm dgamma", &dg, TOL_REDUCE);
  pair_compare("group norm dbeta", &dbt, TOL_REDUCE);

  /* Fused GN+SiLU against the CPU's two ops in sequence. */
  float *normed = calloc(n, sizeof(float)), *dnormed = calloc(n, sizeof(float));
  kn_group_norm_forward(&cpu, normed, mean.cpu, rstd.cpu, inp.cpu, gamma.cpu, beta.cpu, B, C, HW, G, 1e-5f);
  kn_activation_forward(&cpu, KN_ACT_SILU, out.cpu, normed, n);
  kn_cuda_group_norm_silu_forward(&gpu, out.dev, mean.dev, rstd.dev, inp.dev, gamma.dev, beta.dev, B, C, HW, G, 1e-5f);
  pair_compare("group norm+silu forward", &out, TOL_REDUCE);
  kn_activation_backward(&cpu, KN_ACT_SILU, dnormed, dout.cpu, normed, n);
  kn_group_norm_backward(&cpu, dinp.cpu, dg.cpu, dbt.cpu, dnormed, inp.cpu, mean.cpu, rstd.cpu, gamma.cpu, B, C, HW, G);
  kn_cuda_group_norm_silu_backward(&gpu, dinp.dev, dg.dev, dbt.dev, dout.dev, inp.dev, mean.dev, rstd.dev, gamma.dev,
                                   beta.dev, B, C, HW, G);
  pair_compare("group norm+silu dinp", &dinp, TOL_REDUCE);
  pair_compare("group norm+silu dgamma", &dg, TOL_REDUCE);
  pair_compare("group norm+silu dbeta", &dbt, TOL_REDUCE);
  free(normed);
  free(dnormed);
  pair_free(&inp), pair_free(&gamma), pair_free(&beta), pair_free(&out), pair_free(&mean), pair_free(&rstd);
  pair_free(&dout), pair_free(&dinp), pair_free(&dg), pair_free(&dbt);
}

static void test_layer_norm(int N, int C) {
  printf("layer norm N=%d C=%d\n", N, C);
  size_t n = (size_t)N * C;
  pair_buf inp = pair_random(n, 1.5f), gamma = pair_random(C, 1.0f), beta = pair_random(C, 0.5f);
  pair_buf out = pair_zero(n), mean = pair_zero(N), rstd = pair_zero(N);
  kn_layer_norm_forward(&cpu, out.cpu, mean.cpu, rstd.cpu, inp.cpu, gamma.cpu, beta.cpu, N, C, 1e-5f);
  kn_cuda_layer_norm_forward(&gpu, out.dev, mean.dev, rstd.dev, inp.dev, gamma.dev, beta.dev, N, C, 1e-5f);
  pair_compare("layer norm forward", &out, TOL_REDUCE);
  pair_compare("layer norm mean", &mean, TOL_REDUCE);
  pair_compare("layer norm rstd", &rstd, TOL_REDUCE);
  pair_buf dout = pair_random(n, 1.0f), dinp = pair_random(n, 1.0f), dg = pair_random(C, 1.0f), dbt = pair_random(C, 1.0f);
  kn_layer_norm_backward(&cpu, dinp.cpu, dg.cpu, dbt.cpu, dout.cpu, inp.cpu, mean.cpu, rstd.cpu, gamma.cpu, N, C);
  kn_cuda_layer_norm_backward(&gpu, dinp.dev, dg.dev, dbt.dev, dout.dev, inp.dev, mean.dev, rstd.dev, gamma.dev, N, C);
  pair_compare("layer norm dinp", &dinp, TOL_REDUCE);
  pair_compare("layer norm dgamma", &dg, TOL_REDUCE);
  pair_compare("layer norm dbeta", &dbt, TOL_REDUCE);
  pair_free(&inp), pair_free(&gamma), pair_free(&beta), pair_free(&out), pair_free(&mean), pair_free(&rstd);
  pair_free(&dout), pair_free(&dinp), pair_free(&dg), pair_free(&dbt);
}

static void test_activations(void) {
  printf("activations, GEGLU, softmax\n");
  const size_t n = 10007;
  const char *names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};
  pair_buf inp = pair_random(n, 3.0f), out = pair_zero(n), dout = pair_random(n, 1.0f);
  for (int a = 0; a < 4; a++) {
    char what[64];
    pair_buf dinp = pair_random(n, 1.0f);
    kn_activation_forward(&cpu, (kn_activation)a, out.cpu, inp.cpu, n);
    kn_cuda_activation_forward(&gpu, (kn_activation)a, out.dev, inp.dev, n);
    snprintf(what, sizeof what, "%s forward", names[a]);
    pair_compare(what, &out, TOL_POINT);
    kn_activation_backward(&cpu, (kn_activation)a, dinp.cpu, dout.cpu, inp.cpu, n);
    kn_cuda_activation_backward(&gpu, (kn_activation)a, dinp.dev, dout.dev, inp.dev, n);
    snprintf(what, sizeof what, "%s backward", names[a]);
    pair_compare(what, &dinp, TOL_POINT);
    pair_free(&dinp);
  }
  int N = 37, D = 96;
  pair_buf g_in = pair_random((size_t)N * 2 * D, 2.0f), g_out = pair_zero((size_t)N * D);
  pair_buf g_dout = pair_random((size_t)N * D, 1.0f), g_dinp = pair_random((size_t)N * 2 * D, 1.0f);
  kn_geglu_forward(&cpu, g_out.cpu, g_in.cpu, N, D);
  kn_cuda_geglu_forward(&gpu, g_out.dev, g_in.dev, N, D);
  pair_compare("geglu forward", &g_out, TOL_POINT);
  kn_geglu_backward(&cpu, g_dinp.cpu, g_dout.cpu, g_in.cpu, N, D);
  kn_cuda_geglu_backward(&gpu, g_dinp.dev, g_dout.dev, g_in.dev, N, D);
  pair_compare("geglu backward", &g_dinp, TOL_POINT);
  int C = 77;
  pair_buf s_in = pair_random((size_t)N * C, 3.0f), s_out = pair_zero((size_t)N * C);
  pair_buf s_dout = pair_random((size_t)N * C, 1.0f), s_dinp = pair_random((size_t)N * C, 1.0f);
  kn_softmax_forward(&cpu, s_out.cpu, s_in.cpu, N, C);
  kn_cuda_softmax_forward(&gpu, s_out.dev, s_in.dev, N, C);
  pair_compare("softmax forward", &s_out, TOL_POINT);
  kn_softmax_backward(&cpu, s_dinp.cpu, s_dout.cpu, s_out.cpu, N, C);
  kn_cuda_softmax_backward(&gpu, s_dinp.dev, s_dout.dev, s_out.dev, N, C);
  pair_compare("softmax backward", &s_dinp, TOL_REDUCE);
  pair_free(&inp), pair_free(&out), pair_free(&dout);
  pair_free(&g_in), pair_free(&g_out), pair_free(&g_dout), pair_free(&g_dinp);
  pair_free(&s_in), pair_free(&s_out), pair_free(&s_dout), pair_free(&s_dinp);
}

static void test_attention(int B, int H, int Nq, int Nk, int D, int causal) {
  printf("attention B=%d H=%d Nq=%d Nk=%d D=%d causal=%d\n", B, H, Nq, Nk, D, causal);
  size_t nq = (size_t)B * Nq * H * D, nk = (size_t)B * Nk * H * D, nl = (size_t)B * H * Nq;
  float scale = 1.0f / sqrtf((float)D);
  pair_buf q = pair_random(nq, 1.0f), k = pair_random(nk, 1.0f), v = pair_random(nk, 1.0f);
  pair_buf out = pair_zero(nq), lse = pair_zero(nl), dout = pair_random(nq, 1.0f);
  kn_attention_forward(&cpu, out.cpu, lse.cpu, q.cpu, k.cpu, v.cpu, B, H, Nq, Nk, D, scale, causal);
  kn_cuda_attention_forward(&gpu, out.dev, lse.dev, q.dev, k.dev, v.dev, B, H, Nq, Nk, D, scale, causal);
  pair_compare("attention out", &out, TOL_REDUCE);
  pair_compare("attention lse", &lse, TOL_REDUCE);
  pair_buf dq = pair_random(nq, 1.0f), dk = pair_random(nk, 1.0f), dv = pair_random(nk, 1.0f);
  kn_attention_backward(&cpu, dq.cpu, dk.cpu, dv.cpu, dout.cpu, q.cpu, k.cpu, v.cpu, out.cpu, lse.cpu, B, H, Nq, Nk,
                        D, scale, causal);
  kn_cuda_attention_backward(&gpu, dq.dev, dk.dev, dv.dev, dout.dev, q.dev, k.dev, v.dev, out.dev, lse.dev, B, H, Nq,
                             Nk, D, scale, causal);
  pair_compare("attention dq", &dq, TOL_REDUCE);
  pair_compare("attention dk", &dk, TOL_REDUCE);
  pair_compare("attention dv", &dv, TOL_REDUCE);
  pair_free(&q), pair_free(&k), pair_free(&v), pair_free(&out), pair_free(&lse), pair_free(&dout);
  pair_free(&dq), pair_free(&dk), pair_free(&dv);
}

static void test_shape_ops(void) {
  printf("upsample, add, concat, split\n");
  int B = 2, C = 5, H = 7, W = 9;
  size_t n = (size_t)B * C * H * W;
  pair_buf x = pair_random(n, 1.0f), up = pair_zero(4 * n), dup = pair_random(4 * n, 1.0f), dx = pair_random(n, 1.0f);
  kn_upsample2x_forward(&cpu, up.cpu, x.cpu, B, C, H, W);
  kn_cuda_upsample2x_forward(&gpu, up.dev, x.dev, B, C, H, W);
  pair_compare("upsample2x forward", &up, TOL_EXACTISH);
  kn_upsample2x_backward(&cpu, dx.cpu, dup.cpu, B, C, H, W);
  kn_cuda_upsample2x_backward(&gpu, dx.dev, dup.dev, B, C, H, W);
  pair_compare("upsample2x backward", &dx, TOL_EXACTISH);

  pair_buf a = pair_random(n, 1.0f), b = pair_random(n, 1.0f), sum = pair_zero(n);
  pair_buf da = pair_random(n, 1.0f), db = pair_random(n, 1.0f), dsum = pair_random(n, 1.0f);
  kn_add_forward(&cpu, sum.cpu, a.cpu, b.cpu, n);
  kn_cuda_add_forward(&gpu, sum.dev, a.dev, b.dev, n);
  pair_compare("add forward", &sum, TOL_EXACTISH);
  kn_add_backward(&cpu, da.cpu, db.cpu, dsum.cpu, n);
  kn_cuda_add_backward(&gpu, da.dev, db.dev, dsum.dev, n);
  pair_compare("add backward da", &da, TOL_EXACTISH);
  pair_compare("add backward db", &db, TOL_EXACTISH);

  int outer = 3, Ca = 4, Cb = 6, inner = 11;
  size_t na = (size_t)outer * Ca * inner, nb = (size_t)outer * Cb * inner, nj = na + nb;
  pair_buf pa = pair_random(na, 1.0f), pb = pair_random(nb, 1.0f), joint = pair_zero(nj);
  kn_concat_forward(&cpu, joint.cpu, pa.cpu, pb.cpu, outer, Ca, Cb, inner);
  kn_cuda_concat_forward(&gpu, joint.dev, pa.dev, pb.dev, outer, Ca, Cb, inner);
  pair_compare("concat forward", &joint, TOL_EXACTISH);
  pair_buf djoint = pair_random(nj, 1.0f), dpa = pair_random(na, 1.0f), dpb = pair_random(nb, 1.0f);
  kn_concat_backward(&cpu, dpa.cpu, dpb.cpu, djoint.cpu, outer, Ca, Cb, inner);
  kn_cuda_concat_backward(&gpu, dpa.dev, dpb.dev, djoint.dev, outer, Ca, Cb, inner);
  pair_compare("concat backward da", &dpa, TOL_EXACTISH);
  pair_compare("concat backward db", &dpb, TOL_EXACTISH);
  kn_split_forward(&cpu, pa.cpu, pb.cpu, joint.cpu, outer, Ca, Cb, inner);
  kn_cuda_split_forward(&gpu, pa.dev, pb.dev, joint.dev, outer, Ca, Cb, inner);
  pair_compare("split forward a", &pa, TOL_EXACTISH);
  pair_compare("split forward b", &pb, TOL_EXACTISH);
  kn_split_backward(&cpu, djoint.cpu, dpa.cpu, NULL, outer, Ca, Cb, inner);
  kn_cuda_split_backward(&gpu, djoint.dev, dpa.dev, NULL, outer, Ca, Cb, inner);
  pair_compare("split backward (db NULL)", &djoint, TOL_EXACTISH);
  pair_free(&x), pair_free(&up), pair_free(&dup), pair_free(&dx);
  pair_free(&a), pair_free(&b), pair_free(&sum), pair_free(&da), pair_free(&db), pair_free(&dsum);
  pair_free(&pa), pair_free(&pb), pair_free(&joint), pair_free(&djoint), pair_free(&dpa), pair_free(&dpb);
}

static void test_embeddings(void) {
  printf("timestep embedding, token embedding\n");
  int B = 3;
  float t_host[3] = {999.0f, 500.5f, 1.0f};
  pair_buf t = pair_zero(B);
  memcpy(t.cpu, t_host, sizeof t_host);
  kn_cuda_upload(&gpu, t.dev, t_host, sizeof t_host);
  int dims[2] = {320, 7}, flips[2] = {1, 0};
  float shifts[2] = {0.0f, 1.0f};
  for (int c = 0; c < 2; c++) {
    size_t n = (size_t)B * dims[c];
    pair_buf out = pair_zero(n), dout = pair_random(n, 1.0f), dt = pair_random(B, 1.0f);
    kn_timestep_embedding_forward(&cpu, out.cpu, t.cpu, B, dims[c], flips[c], shifts[c], 1.0f, 10000.0f);
    kn_cuda_timestep_embedding_forward(&gpu, out.dev, t.dev, B, dims[c], flips[c], shifts[c], 1.0f, 10000.0f);
    pair_compare(c == 0 ? "timestep embedding forward (320)" : "timestep embedding forward (7)", &out, TOL_PHASE);
    kn_timestep_embedding_backward(&cpu, dt.cpu, dout.cpu, t.cpu, B, dims[c], flips[c], shifts[c], 1.0f, 10000.0f);
    kn_cuda_timestep_embedding_backward(&gpu, dt.dev, dout.dev, t.dev, B, dims[c], flips[c], shifts[c], 1.0f, 10000.0f);
    pair_compare(c == 0 ? "timestep embedding backward (320)" : "timestep embedding backward (7)", &dt, TOL_PHASE);
    pair_free(&out), pair_free(&dout), pair_free(&dt);
  }
  pair_free(&t);

  int T = 5, C = 16, V = 10;
  int32_t ids[10] = {3, 1, 3, 9, 0, 3, 3, 2, 1, 0}; /* repeats on purpose */
  int32_t *ids_dev = kn_cuda_malloc(&gpu, sizeof ids);
  kn_cuda_upload(&gpu, ids_dev, ids, sizeof ids);
  pair_buf wte = pair_random((size_t)V * C, 1.0f), wpe = pair_random((size_t)T * C, 1.0f), out = pair_zero((size_t)2 * T * C);
  kn_embedding_forward(&cpu, out.cpu, ids, wte.cpu, wpe.cpu, 2, T, C);
  kn_cuda_embedding_forward(&gpu, out.dev, ids_dev, wte.dev, wpe.dev, 2, T, C);
  pair_compare("embedding forward", &out, TOL_EXACTISH);
  pair_buf dout = pair_random(out.n, 1.0f), dwte = pair_random(wte.n, 1.0f), dwpe = pair_random(wpe.n, 1.0f);
  kn_embedding_backward(&cpu, dwte.cpu, dwpe.cpu, dout.cpu, ids, 2, T, C);
  kn_cuda_embedding_backward(&gpu, dwte.dev, dwpe.dev, dout.dev, ids_dev, 2, T, C);
  pair_compare("embedding dwte", &dwte, TOL_EXACTISH);
  pair_compare("embedding dwpe", &dwpe, TOL_EXACTISH);
  kn_cuda_free(ids_dev);
  pair_free(&wte), pair_free(&wpe), pair_free(&out), pair_free(&dout), pair_free(&dwte), pair_free(&dwpe);
}

static void test_losses(void) {
  printf("mse per sample, sum, mean, scale, logsigmoid, DPO loss\n");
  int B = 4;
  size_t n = 4 * 16 * 16;
  pair_buf pred = pair_random(B * n, 1.0f), target = pair_random(B * n, 1.0f), loss = pair_zero(B);
  kn_mse_per_sample_forward(&cpu, loss.cpu, pred.cpu, target.cpu, B, n);
  kn_cuda_mse_per_sample_forward(&gpu, loss.dev, pred.dev, target.dev, B, n);
  pair_compare("mse per sample forward", &loss, TOL_REDUCE);
  pair_buf dloss = pair_random(B, 1.0f), dpred = pair_random(B * n, 1.0f), dtarget = pair_random(B * n, 1.0f);
  kn_mse_per_sample_backward(&cpu, dpred.cpu, dtarget.cpu, dloss.cpu, pred.cpu, target.cpu, B, n);
  kn_cuda_mse_per_sample_backward(&gpu, dpred.dev, dtarget.dev, dloss.dev, pred.dev, target.dev, B, n);
  pair_compare("mse dpred", &dpred, TOL_POINT);
  pair_compare("mse dtarget", &dtarget, TOL_POINT);

  pair_buf s = pair_zero(1), ds = pair_random(1, 1.0f), dx = pair_random(B * n, 1.0f);
  kn_sum_forward(&cpu, s.cpu, pred.cpu, B * n);
  kn_cuda_sum_forward(&gpu, s.dev, pred.dev, B * n);
  pair_compare("sum forward", &s, TOL_REDUCE);
  kn_mean_forward(&cpu, s.cpu, pred.cpu, B * n);
  kn_cuda_mean_forward(&gpu, s.dev, pred.dev, B * n);
  pair_compare("mean forward", &s, TOL_REDUCE);
  kn_sum_backward(&cpu, dx.cpu, ds.cpu, B * n);
  kn_cuda_sum_backward(&gpu, dx.dev, ds.dev, B * n);
  kn_mean_backward(&cpu, dx.cpu, ds.cpu, B * n);
  kn_cuda_mean_backward(&gpu, dx.dev, ds.dev, B * n);
  pair_compare("sum + mean backward", &dx, TOL_POINT);
  kn_scale_forward(&cpu, dpred.cpu, pred.cpu, -2.5f, B * n);
  kn_cuda_scale_forward(&gpu, dpred.dev, pred.dev, -2.5f, B * n);
  pair_compare("scale forward", &dpred, TOL_EXACTISH);
  kn_scale_backward(&cpu, dx.cpu, dpred.cpu, 0.5f, B * n);
  kn_cuda_scale_backward(&gpu, dx.dev, dpred.dev, 0.5f, B * n);
  pair_compare("scale backward", &dx, TOL_EXACTISH);
  pair_buf ls_in = pair_random(1000, 20.0f), ls_out = pair_zero(1000), ls_d = pair_random(1000, 1.0f);
  kn_logsigmoid_forward(&cpu, ls_out.cpu, ls_in.cpu, 1000);
  kn_cuda_logsigmoid_forward(&gpu, ls_out.dev, ls_in.dev, 1000);
  pair_compare("logsigmoid forward", &ls_out, TOL_POINT);
  kn_logsigmoid_backward(&cpu, ls_d.cpu, ls_out.cpu, ls_in.cpu, 1000);
  kn_cuda_logsigmoid_backward(&gpu, ls_d.dev, ls_out.dev, ls_in.dev, 1000);
  pair_compare("logsigmoid backward", &ls_d, TOL_POINT);

  /* The DPO loss against trainer/loss.c, with a tie among the labels. */
  int np = 5;
  float mw[5] = {0.11f, 0.20f, 0.31f, 0.05f, 0.5f}, ml[5] = {0.12f, 0.18f, 0.33f, 0.07f, 0.49f};
  float rw[5] = {0.115f, 0.19f, 0.30f, 0.06f, 0.52f}, rl[5] = {0.11f, 0.19f, 0.34f, 0.06f, 0.48f};
  float label[5] = {1.0f, 1.0f, 0.5f, 1.0f, 1.0f};
  float gw[5], gl[5];
  dpo_loss_stats st;
  dpo_error err = {0};
  CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, label, np, 2500.0, gw, gl, &st, &err), DPO_OK);
  float *dmw = device_copy(mw, np), *dml = device_copy(ml, np), *drw = device_copy(rw, np), *drl = device_copy(rl, np);
  float *dlabel = device_copy(label, np);
  float *dloss_v = kn_cuda_malloc(&gpu, sizeof(float)), *dgw = kn_cuda_malloc(&gpu, sizeof(float) * np);
  float *dgl = kn_cuda_malloc(&gpu, sizeof(float) * np), *dstats = kn_cuda_malloc(&gpu, sizeof(float) * 4);
  kn_cuda_dpo_loss(&gpu, dloss_v, dgw, dgl, dstats, dmw, dml, drw, drl, dlabel, np, 2500.0);
  float want_loss = (float)st.loss;
  float want_stats[4] = {(float)st.implicit_acc, (float)st.reward_w, (float)st.reward_l, (float)st.reward_margin};
  compare("dpo loss", &want_loss, dloss_v, 1, TOL_EXACTISH);
  compare("dpo grad model_w", gw, dgw, np, TOL_EXACTISH);
  compare("dpo grad model_l", gl, dgl, np, TOL_EXACTISH);
  compare("dpo stats (acc, rewards, margin)", want_stats, dstats, 4, TOL_EXACTISH);
  kn_cuda_free(dmw), kn_cuda_free(dml), kn_cuda_free(drw), kn_cuda_free(drl), kn_cuda_free(dlabel);
  kn_cuda_free(dloss_v), kn_cuda_free(dgw), kn_cuda_free(dgl), kn_cuda_free(dstats);
  pair_free(&pred), pair_free(&target), pair_free(&loss), pair_free(&dloss), pair_free(&dpred), pair_free(&dtarget);
  pair_free(&s), pair_free(&ds), pair_free(&dx), pair_free(&ls_in), pair_free(&ls_out), pair_free(&ls_d);
}

static void test_adamw(void) {
  printf("fused AdamW (3 steps, weight decay 1e-2) vs trainer/optim.c, bf16 copy\n");
  size_t n = 4099;
  float *data = host_random(n, 1.0f), *grad = host_random(n, 0.01f);
  float *d_data = device_copy(data, n), *d_grad = device_copy(grad, n);
  float *d_m = kn_cuda_malloc(&gpu, sizeof(float) * n), *d_v = kn_cuda_malloc(&gpu, sizeof(float) * n);
  kn_bf16 *d_bf16 = kn_cuda_malloc(&gpu, sizeof(kn_bf16) * n);
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAMW);
  dpo_optim_param param = {.name = "w", .ndim = 1, .shape = {(int64_t)n}, .data = data, .grad = grad};
  dpo_optimizer opt;
  dpo_error err = {0};
  CHECK_INT(dpo_optim_init(&opt, &cfg, &param, 1, &err), DPO_OK);
  for (int step = 1; step <= 3; step++) {
    dpo_optim_step(&opt, 1e-3);
    kn_cuda_adamw_update(&gpu, d_data, d_bf16, d_grad, d_m, d_v, n, step, 1e-3, cfg.beta1, cfg.beta2, cfg.eps,
                         cfg.weight_decay);
  }
  CHECK_INT(opt.step, 3);
  compare("adamw params", data, d_data, n, TOL_EXACTISH);
  compare("adamw exp_avg", opt.slots[0].exp_avg, d_m, n, TOL_EXACTISH);
  compare("adamw exp_avg_sq", opt.slots[0].exp_avg_sq, d_v, n, TOL_EXACTISH);
  float *rounded = host_copy(data, n);
  round_bf16(rounded, n);
  compare_bf16("adamw bf16 copy", rounded, d_bf16, n, TOL_EXACTISH);
  dpo_optim_free(&opt);
  free(rounded), free(data), free(grad);
  kn_cuda_free(d_data), kn_cuda_free(d_grad), kn_cuda_free(d_m), kn_cuda_free(d_v), kn_cuda_free(d_bf16);
}

/* ------------------------------------------------------------ bf16 ops */

/* A host tensor rounded to bf16 and its bf16 device copy: both backends see
 * the same values. */
typedef struct {
  float *cpu;
  kn_bf16 *dev;
  size_t n;
} bf16_buf;

static bf16_buf bf16_random(size_t n, float scale) {
  bf16_buf b = {host_random(n, scale), NULL, n};
  round_bf16(b.cpu, n);
  b.dev = device_bf16(b.cpu, n);
  return b;
}

static bf16_buf bf16_zero(size_t n) {
  bf16_buf b = {calloc(n ? n : 1, sizeof(float)), NULL, n};
  b.dev = device_bf16(b.cpu, n);
  return b;
}

static void bf16_free(bf16_buf *b) {
  free(b->cpu);
  kn_cuda_free(b->dev);
  memset(b, 0, sizeof *b);
}

static void bf16_compare(const char *what, const bf16_buf *b) { compare_bf16(what, b->cpu, b->dev, b->n, TOL_BF16); }

/* bf16 attention against the CPU on the same bf16-rounded inputs. Head sizes
 * D <= 160 run on the tensor cores (attention_tc.cu), larger ones on the
 * scalar kernels. grad_scale 0: the gradients start at zero, else random of
 * that scale (backward accumulates). A second backward with dq and dk NULL
 * must leave them alone and add to dv again. */
static void test_bf16_attention(int B, int H, int Nq, int Nk, int D, int causal, float grad_scale) {
  printf("attention bf16 B=%d H=%d Nq=%d Nk=%d D=%d causal=%d grad0=%g (%s)\n", B, H, Nq, Nk, D, causal,
         (double)grad_scale, D <= 160 ? "tensor cores" : "scalar");
  size_t nq = (size_t)B * Nq * H * D, nk = (size_t)B * Nk * H * D, nl = (size_t)B * H * Nq;
  float scale = 1.0f / sqrtf((float)D);
  bf16_buf q = bf16_random(nq, 1.0f), k = bf16_random(nk, 1.0f), v = bf16_random(nk, 1.0f), dout = bf16_random(nq, 1.0f);
  bf16_buf out = bf16_zero(nq);
  bf16_buf dq = grad_scale > 0 ? bf16_random(nq, grad_scale) : bf16_zero(nq);
  bf16_buf dk = grad_scale > 0 ? bf16_random(nk, grad_scale) : bf16_zero(nk);
  bf16_buf dv = grad_scale > 0 ? bf16_random(nk, grad_scale) : bf16_zero(nk);
  pair_buf lse = pair_zero(nl);
  kn_attention_forward(&cpu, out.cpu, lse.cpu, q.cpu, k.cpu, v.cpu, B, H, Nq, Nk, D, scale, causal);
  kn_cuda_attention_forward_bf16(&gpu, out.dev, lse.dev, q.dev, k.dev, v.dev, B, H, Nq, Nk, D, scale, causal);
  bf16_compare("attention bf16 out", &out);
  pair_compare("attention bf16 lse (float32)", &lse, TOL_BF16);
  /* Backward reads the device's own out and lse (as a step would); the CPU
   * uses its own: both are the forward of the same bf16 inputs. */
  kn_attention_backward(&cpu, dq.cpu, dk.cpu, dv.cpu, dout.cpu, q.cpu, k.cpu, v.cpu, out.cpu, lse.cpu, B, H, Nq, Nk,
                        D, scale, causal);
  kn_cuda_attention_backward_bf16(&gpu, dq.dev, dk.dev, dv.dev, dout.dev, q.dev, k.dev, v.dev, out.dev, lse.dev, B, H,
                                  Nq, Nk, D, scale, causal);
  bf16_compare("attention bf16 dq", &dq);
  bf16_compare("attention bf16 dk", &dk);
  bf16_compare("attention bf16 dv", &dv);
  kn_attention_backward(&cpu, NULL, NULL, dv.cpu, dout.cpu, q.cpu, k.cpu, v.cpu, out.cpu, lse.cpu, B, H, Nq, Nk, D,
                        scale, causal);
  kn_cuda_attention_backward_bf16(&gpu, NULL, NULL, dv.dev, dout.dev, q.dev, k.dev, v.dev, out.dev, lse.dev, B, H, Nq,
                                  Nk, D, scale, causal);
  bf16_compare("attention bf16 dq (NULL: kept)", &dq);
  bf16_compare("attention bf16 dk (NULL: kept)", &dk);
  bf16_compare("attention bf16 dv (twice)", &dv);
  bf16_free(&q), bf16_free(&k), bf16_free(&v), bf16_free(&dout), bf16_free(&out);
  bf16_free(&dq), bf16_free(&dk), bf16_free(&dv), pair_free(&lse);
}

static void test_bf16_pointwise_and_norms(void) {
  printf("bf16 storage: group norm (+SiLU), layer norm, GELU, GEGLU, add\n");
  int B = 2, C = 64, HW = 63, G = 32;
  size_t n = (size_t)B * C * HW;
  bf16_buf x = bf16_random(n, 2.0f), y = bf16_zero(n), dy = bf16_random(n, 1.0f), dx = bf16_zero(n);
  pair_buf gamma = pair_random(C, 1.0f), beta = pair_random(C, 0.5f), mean = pair_zero((size_t)B * G);
  pair_buf rstd = pair_zero((size_t)B * G), dg = pair_zero(C), db = pair_zero(C);
  float *normed = calloc(n, sizeof(float)), *dnormed = calloc(n, sizeof(float));
  kn_group_norm_forward(&cpu, normed, mean.cpu, rstd.cpu, x.cpu, gamma.cpu, beta.cpu, B, C, HW, G, 1e-5f);
  kn_activation_forward(&cpu, KN_ACT_SILU, y.cpu, normed, n);
  kn_cuda_group_norm_silu_forward_bf16(&gpu, y.dev, mean.dev, rstd.dev, x.dev, gamma.dev, beta.dev, B, C, HW, G, 1e-5f,
                                       1);
  bf16_compare("group norm+silu bf16 forward", &y);
  pair_compare("group norm bf16 rstd", &rstd, TOL_BF16);
  kn_activation_backward(&cpu, KN_ACT_SILU, dnormed, dy.cpu, normed, n);
  kn_group_norm_backward(&cpu, dx.cpu, dg.cpu, db.cpu, dnormed, x.cpu, mean.cpu, rstd.cpu, gamma.cpu, B, C, HW, G);
  kn_cuda_group_norm_silu_backward_bf16(&gpu, dx.dev, dg.dev, db.dev, dy.dev, x.dev, mean.dev, rstd.dev, gamma.dev,
                                        beta.dev, B, C, HW, G, 1);
  bf16_compare("group norm+silu bf16 dinp", &dx);
  pair_compare("group norm+silu bf16 dgamma", &dg, TOL_BF16);
  pair_compare("group norm+silu bf16 dbeta", &db, TOL_BF16);
  free(normed), free(dnormed);

  int N = 77, LC = 320;
  size_t ln = (size_t)N * LC;
  bf16_buf lx = bf16_random(ln, 1.5f), ly = bf16_zero(ln), ldy = bf16_random(ln, 1.0f), ldx = bf16_zero(ln);
  pair_buf lg = pair_random(LC, 1.0f), lb = pair_random(LC, 0.5f), lm = pair_zero(N), lr = pair_zero(N);
  pair_buf ldg = pair_zero(LC), ldb = pair_zero(LC);
  kn_layer_norm_forward(&cpu, ly.cpu, lm.cpu, lr.cpu, lx.cpu, lg.cpu, lb.cpu, N, LC, 1e-5f);
  kn_cuda_layer_norm_forward_bf16(&gpu, ly.dev, lm.dev, lr.dev, lx.dev, lg.dev, lb.dev, N, LC, 1e-5f);
  bf16_compare("layer norm bf16 forward", &ly);
  kn_layer_norm_backward(&cpu, ldx.cpu, ldg.cpu, ldb.cpu, ldy.cpu, lx.cpu, lm.cpu, lr.cpu, lg.cpu, N, LC);
  kn_cuda_layer_norm_backward_bf16(&gpu, ldx.dev, ldg.dev, ldb.dev, ldy.dev, lx.dev, lm.dev, lr.dev, lg.dev, N, LC);
  bf16_compare("layer norm bf16 dinp", &ldx);
  pair_compare("layer norm bf16 dgamma", &ldg, TOL_BF16);
  pair_compare("layer norm bf16 dbeta", &ldb, TOL_BF16);

  bf16_buf a_out = bf16_zero(ln), a_din = bf16_zero(ln);
  kn_activation_forward(&cpu, KN_ACT_GELU, a_out.cpu, lx.cpu, ln);
  kn_cuda_activation_forward_bf16(&gpu, KN_ACT_GELU, a_out.dev, lx.dev, ln);
  bf16_compare("gelu bf16 forward", &a_out);
  kn_activation_backward(&cpu, KN_ACT_GELU, a_din.cpu, ldy.cpu, lx.cpu, ln);
  kn_cuda_activation_backward_bf16(&gpu, KN_ACT_GELU, a_din.dev, ldy.dev, lx.dev, ln);
  bf16_compare("gelu bf16 backward", &a_din);

  int D = LC / 2; /* GEGLU over lx read as [N, 2D] */
  bf16_buf g_out = bf16_zero((size_t)N * D), g_dout = bf16_random((size_t)N * D, 1.0f), g_din = bf16_zero(ln);
  kn_geglu_forward(&cpu, g_out.cpu, lx.cpu, N, D);
  kn_cuda_geglu_forward_bf16(&gpu, g_out.dev, lx.dev, N, D);
  bf16_compare("geglu bf16 forward", &g_out);
  kn_geglu_backward(&cpu, g_din.cpu, g_dout.cpu, lx.cpu, N, D);
  kn_cuda_geglu_backward_bf16(&gpu, g_din.dev, g_dout.dev, lx.dev, N, D);
  bf16_compare("geglu bf16 backward", &g_din);

  bf16_buf sum = bf16_zero(ln), da = bf16_zero(ln);
  kn_add_forward(&cpu, sum.cpu, lx.cpu, ldy.cpu, ln);
  kn_cuda_add_forward_bf16(&gpu, sum.dev, lx.dev, ldy.dev, ln);
  bf16_compare("add bf16 forward", &sum);
  kn_add_backward(&cpu, da.cpu, NULL, ldy.cpu, ln);
  kn_cuda_add_backward_bf16(&gpu, da.dev, NULL, ldy.dev, ln);
  bf16_compare("add bf16 backward", &da);

  bf16_free(&x), bf16_free(&y), bf16_free(&dy), bf16_free(&dx);
  pair_free(&gamma), pair_free(&beta), pair_free(&mean), pair_free(&rstd), pair_free(&dg), pair_free(&db);
  bf16_free(&lx), bf16_free(&ly), bf16_free(&ldy), bf16_free(&ldx);
  pair_free(&lg), pair_free(&lb), pair_free(&lm), pair_free(&lr), pair_free(&ldg), pair_free(&ldb);
  bf16_free(&a_out), bf16_free(&a_din), bf16_free(&g_out), bf16_free(&g_dout), bf16_free(&g_din);
  bf16_free(&sum), bf16_free(&da);
}

/* conv2d in bf16 against the CPU's float32 conv on the same bf16 inputs:
 * forward with bias; backward into non-zero gradients (dinp bf16, dweight
 * and dbias float32), then again with NULL gradients, which must be left
 * alone. */
static void test_bf16_conv2d(int B, int C, int H, int W, int OC, int K, int stride, int pad) {
  printf("conv2d bf16 B=%d C=%d H=%d W=%d OC=%d K=%d stride=%d pad=%d\n", B, C, H, W, OC, K, stride, pad);
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  size_t n_in = (size_t)B * C * H * W, n_w = (size_t)OC * C * K * K, n_out = (size_t)B * OC * Ho * Wo;
  bf16_buf inp = bf16_random(n_in, 1.0f), w = bf16_random(n_w, 0.2f), out = bf16_zero(n_out);
  bf16_buf dout = bf16_random(n_out, 1.0f), dinp = bf16_random(n_in, 1.0f);
  pair_buf bias = pair_random(OC, 0.1f), dw = pair_random(n_w, 1.0f), db = pair_random(OC, 1.0f);
  kn_conv2d_forward(&cpu, out.cpu, inp.cpu, w.cpu, bias.cpu, B, C, H, W, OC, K, stride, pad);
  kn_cuda_conv2d_forward_bf16(&gpu, out.dev, inp.dev, w.dev, bias.dev, B, C, H, W, OC, K, stride, pad);
  bf16_compare("conv2d bf16 forward", &out);
  kn_conv2d_backward(&cpu, dinp.cpu, dw.cpu, db.cpu, dout.cpu, inp.cpu, w.cpu, B, C, H, W, OC, K, stride, pad);
  kn_cuda_conv2d_backward_bf16(&gpu, dinp.dev, dw.dev, db.dev, dout.dev, inp.dev, w.dev, B, C, H, W, OC, K, stride,
                               pad);
  bf16_compare("conv2d bf16 dinp (accumulated)", &dinp);
  pair_compare("conv2d bf16 dweight (fp32 grad)", &dw, TOL_BF16);
  pair_compare("conv2d bf16 dbias (fp32 grad)", &db, TOL_BF16);
  /* dweight alone, then dinp alone: the NULL ones keep their values. */
  kn_conv2d_backward(&cpu, NULL, dw.cpu, NULL, dout.cpu, inp.cpu, w.cpu, B, C, H, W, OC, K, stride, pad);
  kn_cuda_conv2d_backward_bf16(&gpu, NULL, dw.dev, NULL, dout.dev, inp.dev, w.dev, B, C, H, W, OC, K, stride, pad);
  kn_conv2d_backward(&cpu, dinp.cpu, NULL, NULL, dout.cpu, inp.cpu, w.cpu, B, C, H, W, OC, K, stride, pad);
  kn_cuda_conv2d_backward_bf16(&gpu, dinp.dev, NULL, NULL, dout.dev, inp.dev, w.dev, B, C, H, W, OC, K, stride, pad);
  bf16_compare("conv2d bf16 dinp (twice)", &dinp);
  pair_compare("conv2d bf16 dweight (twice)", &dw, TOL_BF16);
  pair_compare("conv2d bf16 dbias (NULL: kept)", &db, TOL_BF16);
  bf16_free(&inp), bf16_free(&w), bf16_free(&out), bf16_free(&dout), bf16_free(&dinp);
  pair_free(&bias), pair_free(&dw), pair_free(&db);
}

/* Upsample, concat, transpose and add_channel in bf16: copies must be exact,
 * accumulations (into non-zero gradients) match to one bf16 rounding. */
static void test_bf16_shape_ops(void) {
  printf("bf16 storage: upsample, concat, transpose, add_channel\n");
  int B = 2, C = 5, H = 7, W = 9;
  size_t n = (size_t)B * C * H * W;
  bf16_buf x = bf16_random(n, 1.0f), up = bf16_zero(4 * n), dup = bf16_random(4 * n, 1.0f), dx = bf16_random(n, 1.0f);
  kn_upsample2x_forward(&cpu, up.cpu, x.cpu, B, C, H, W);
  kn_cuda_upsample2x_forward_bf16(&gpu, up.dev, x.dev, B, C, H, W);
  compare_bf16("upsample2x bf16 forward", up.cpu, up.dev, up.n, TOL_EXACTISH);
  kn_upsample2x_backward(&cpu, dx.cpu, dup.cpu, B, C, H, W);
  kn_cuda_upsample2x_backward_bf16(&gpu, dx.dev, dup.dev, B, C, H, W);
  kn_cuda_upsample2x_backward_bf16(&gpu, NULL, dup.dev, B, C, H, W); /* skipped */
  bf16_compare("upsample2x bf16 backward", &dx);

  int outer = 3, Ca = 4, Cb = 6, inner = 11;
  size_t na = (size_t)outer * Ca * inner, nb = (size_t)outer * Cb * inner, nj = na + nb;
  bf16_buf pa = bf16_random(na, 1.0f), pb = bf16_random(nb, 1.0f), joint = bf16_zero(nj);
  kn_concat_forward(&cpu, joint.cpu, pa.cpu, pb.cpu, outer, Ca, Cb, inner);
  kn_cuda_concat_forward_bf16(&gpu, joint.dev, pa.dev, pb.dev, outer, Ca, Cb, inner);
  compare_bf16("concat bf16 forward", joint.cpu, joint.dev, nj, TOL_EXACTISH);
  bf16_buf djoint = bf16_random(nj, 1.0f), dpa = bf16_random(na, 1.0f), dpb = bf16_random(nb, 1.0f);
  kn_concat_backward(&cpu, dpa.cpu, dpb.cpu, djoint.cpu, outer, Ca, Cb, inner);
  kn_cuda_concat_backward_bf16(&gpu, dpa.dev, dpb.dev, djoint.dev, outer, Ca, Cb, inner);
  kn_concat_backward(&cpu, NULL, dpb.cpu, djoint.cpu, outer, Ca, Cb, inner);
  kn_cuda_concat_backward_bf16(&gpu, NULL, dpb.dev, djoint.dev, outer, Ca, Cb, inner);
  bf16_compare("concat bf16 backward da", &dpa);
  bf16_compare("concat bf16 backward db (twice)", &dpb);

  int TB = 2, TC = 320, TA = 77; /* tokens: [B, C, A] -> [B, A, C] */
  size_t nt = (size_t)TB * TC * TA;
  bf16_buf t_in = bf16_random(nt, 1.0f), t_out = bf16_zero(nt), t_dout = bf16_random(nt, 1.0f);
  bf16_buf t_din = bf16_random(nt, 1.0f);
  kn_transpose_forward(&cpu, t_out.cpu, t_in.cpu, TB, TC, TA);
  kn_cuda_transpose_forward_bf16(&gpu, t_out.dev, t_in.dev, TB, TC, TA);
  compare_bf16("transpose bf16 forward", t_out.cpu, t_out.dev, nt, TOL_EXACTISH);
  kn_transpose_backward(&cpu, t_din.cpu, t_dout.cpu, TB, TC, TA);
  kn_cuda_transpose_backward_bf16(&gpu, t_din.dev, t_dout.dev, TB, TC, TA);
  kn_cuda_transpose_backward_bf16(&gpu, NULL, t_dout.dev, TB, TC, TA); /* skipped */
  bf16_compare("transpose bf16 backward", &t_din);

  int AB = 2, AC = 320, HW = 1024; /* the time embedding added to a 32x32 map */
  size_t nx = (size_t)AB * AC * HW;
  bf16_buf ax = bf16_random(nx, 1.0f), av = bf16_random((size_t)AB * AC, 1.0f);
  bf16_buf adx = bf16_random(nx, 1.0f), adv = bf16_random((size_t)AB * AC, 1.0f);
  kn_add_channel_forward(&cpu, ax.cpu, av.cpu, AB, AC, HW);
  kn_cuda_add_channel_forward_bf16(&gpu, ax.dev, av.dev, AB, AC, HW);
  bf16_compare("add_channel bf16 forward", &ax);
  kn_add_channel_backward(&cpu, adv.cpu, adx.cpu, AB, AC, HW);
  kn_cuda_add_channel_backward_bf16(&gpu, adv.dev, adx.dev, AB, AC, HW);
  kn_cuda_add_channel_backward_bf16(&gpu, NULL, adx.dev, AB, AC, HW); /* skipped */
  bf16_compare("add_channel bf16 backward", &adv);

  bf16_free(&x), bf16_free(&up), bf16_free(&dup), bf16_free(&dx);
  bf16_free(&pa), bf16_free(&pb), bf16_free(&joint), bf16_free(&djoint), bf16_free(&dpa), bf16_free(&dpb);
  bf16_free(&t_in), bf16_free(&t_out), bf16_free(&t_dout), bf16_free(&t_din);
  bf16_free(&ax), bf16_free(&av), bf16_free(&adx), bf16_free(&adv);
}

/* Adafactor over a factored 3-D parameter and a plain 1-D one, 3 steps, with
 * transformers' defaults and with beta1 and weight decay. */
static void test_adafactor(double beta1, double weight_decay) {
  printf("fused Adafactor (3 steps, beta1 %g, weight decay %g) vs trainer/optim.c\n", beta1, weight_decay);
  int64_t outer = 3, rows = 37, cols = 53, n_mat = outer * rows * cols, n_vec = 101;
  float *w = host_random((size_t)n_mat, 1.0f), *gw = host_random((size_t)n_mat, 0.01f);
  float *b = host_random((size_t)n_vec, 1.0f), *gb = host_random((size_t)n_vec, 0.01f);
  float *d_w = device_copy(w, n_mat), *d_gw = device_copy(gw, n_mat), *d_b = device_copy(b, n_vec);
  float *d_gb = device_copy(gb, n_vec);
  float *d_row = kn_cuda_malloc(&gpu, sizeof(float) * outer * rows), *d_col = kn_cuda_malloc(&gpu, sizeof(float) * outer * cols);
  float *d_mw = kn_cuda_malloc(&gpu, sizeof(float) * n_mat), *d_mb = kn_cuda_malloc(&gpu, sizeof(float) * n_vec);
  float *d_vb = kn_cuda_malloc(&gpu, sizeof(float) * n_vec);
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAFACTOR);
  cfg.adafactor_beta1 = beta1;
  cfg.weight_decay = weight_decay;
  dpo_optim_param params[2] = {
      {.name = "w", .ndim = 3, .shape = {outer, rows, cols}, .data = w, .grad = gw},
      {.name = "b", .ndim = 1, .shape = {n_vec}, .data = b, .grad = gb},
  };
  dpo_optimizer opt;
  dpo_error err = {0};
  CHECK_INT(dpo_optim_init(&opt, &cfg, params, 2, &err), DPO_OK);
  for (int step = 1; step <= 3; step++) {
    dpo_optim_step(&opt, 1e-2);
    kn_cuda_adafactor_update(&gpu, d_w, NULL, d_gw, d_mw, NULL, d_row, d_col, outer, rows, cols, step, 1e-2, cfg.eps1,
                             cfg.clip_threshold, cfg.decay_rate, beta1, weight_decay);
    kn_cuda_adafactor_update(&gpu, d_b, NULL, d_gb, d_mb, d_vb, NULL, NULL, 1, 1, n_vec, step, 1e-2, cfg.eps1,
                             cfg.clip_threshold, cfg.decay_rate, beta1, weight_decay);
  }
  compare("adafactor matrix params", w, d_w, (size_t)n_mat, TOL_POINT);
  compare("adafactor row moments", opt.slots[0].exp_avg_sq_row, d_row, (size_t)(outer * rows), TOL_POINT);
  compare("adafactor column moments", opt.slots[0].exp_avg_sq_col, d_col, (size_t)(outer * cols), TOL_POINT);
  compare("adafactor vector params", b, d_b, (size_t)n_vec, TOL_POINT);
  compare("adafactor vector moments", opt.slots[1].exp_avg_sq, d_vb, (size_t)n_vec, TOL_POINT);
  if (beta1 > 0) compare("adafactor first moment", opt.slots[0].exp_avg, d_mw, (size_t)n_mat, TOL_POINT);
  dpo_optim_free(&opt);
  free(w), free(gw), free(b), free(gb);
  float *dev[] = {d_w, d_gw, d_b, d_gb, d_row, d_col, d_mw, d_mb, d_vb};
  for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) kn_cuda_free(dev[i]);
}

static void test_rng(void) {
  printf("Philox on the device vs core/rng.c\n");
  size_t n = 100003;
  uint64_t seed = 0x1234567890abcdefull, stream = dpo_rng_stream_id("noise", 7, 3), offset = 12345;
  float *want = malloc(sizeof(float) * n);
  float *dev = kn_cuda_malloc(&gpu, sizeof(float) * n);
  dpo_rng_uniform_fill(seed, stream, offset, want, n);
  kn_cuda_rng_uniform_fill(&gpu, dev, seed, stream, offset, n);
  compare("rng uniform (bitwise)", want, dev, n, 0.0);
  dpo_rng_normal_fill(seed, stream, offset + 1, want, n); /* an odd offset: the second of a pair first */
  kn_cuda_rng_normal_fill(&gpu, dev, seed, stream, offset + 1, n);
  compare("rng normal", want, dev, n, TOL_EXACTISH);
  free(want);
  kn_cuda_free(dev);
}

/* ------------------------------------------------------- tiny DPO step */

/* A noise predictor eps(x) = W2 silu(W1 x + b1) + b2 over rows of F
 * features: policy and frozen reference start equal, the DPO loss compares
 * their MSEs on a winner and a loser batch, and one AdamW step updates the
 * policy. Both backends run the same sequence of ops. */
typedef struct {
  float *w1, *b1, *w2, *b2;
} tiny_net;

typedef struct {
  int rows, F, Hd;
  float *hidden_pre, *hidden, *pred, *mse; /* activations */
  float *d_pred, *d_hidden, *d_hidden_pre, *d_mse;
} tiny_acts;

static void tiny_forward(int on_gpu, const tiny_net *net, tiny_acts *a, const float *x, const float *noise, int B) {
  int R = a->rows, F = a->F, Hd = a->Hd;
  if (on_gpu) {
    kn_cuda_linear_forward(&gpu, a->hidden_pre, x, net->w1, net->b1, R, F, Hd);
    kn_cuda_activation_forward(&gpu, KN_ACT_SILU, a->hidden, a->hidden_pre, (size_t)R * Hd);
    kn_cuda_linear_forward(&gpu, a->pred, a->hidden, net->w2, net->b2, R, Hd, F);
    kn_cuda_mse_per_sample_forward(&gpu, a->mse, a->pred, noise, B, (size_t)R / B * F);
  } else {
    kn_linear_forward(&cpu, a->hidden_pre, x, net->w1, net->b1, R, F, Hd);
    kn_activation_forward(&cpu, KN_ACT_SILU, a->hidden, a->hidden_pre, (size_t)R * Hd);
    kn_linear_forward(&cpu, a->pred, a->hidden, net->w2, net->b2, R, Hd, F);
    kn_mse_per_sample_forward(&cpu, a->mse, a->pred, noise, B, (size_t)R / B * F);
  }
}

static void tiny_backward(int on_gpu, const tiny_net *net, tiny_net *grad, tiny_acts *a, const float *x,
                          const float *noise, int B) {
  int R = a->rows, F = a->F, Hd = a->Hd;
  size_t n_per = (size_t)R / B * F;
  if (on_gpu) {
    kn_cuda_zero(&gpu, a->d_pred, sizeof(float) * R * F);
    kn_cuda_zero(&gpu, a->d_hidden, sizeof(float) * R * Hd);
    kn_cuda_zero(&gpu, a->d_hidden_pre, sizeof(float) * R * Hd);
    kn_cuda_mse_per_sample_backward(&gpu, a->d_pred, NULL, a->d_mse, a->pred, noise, B, n_per);
    kn_cuda_linear_backward(&gpu, a->d_hidden, grad->w2, grad->b2, a->d_pred, a->hidden, net->w2, R, Hd, F);
    kn_cuda_activation_backward(&gpu, KN_ACT_SILU, a->d_hidden_pre, a->d_hidden, a->hidden_pre, (size_t)R * Hd);
    kn_cuda_linear_backward(&gpu, NULL, grad->w1, grad->b1, a->d_hidden_pre, x, net->w1, R, F, Hd);
  } else {
    memset(a->d_pred, 0, sizeof(float) * R * F);
    memset(a->d_hidden, 0, sizeof(float) * R * Hd);
    memset(a->d_hidden_pre, 0, sizeof(float) * R * Hd);
    kn_mse_per_sample_backward(&cpu, a->d_pred, NULL, a->d_mse, a->pred, noise, B, n_per);
    kn_linear_backward(&cpu, a->d_hidden, grad->w2, grad->b2, a->d_pred, a->hidden, net->w2, R, Hd, F);
    kn_activation_backward(&cpu, KN_ACT_SILU, a->d_hidden_pre, a->d_hidden, a->hidden_pre, (size_t)R * Hd);
    kn_linear_backward(&cpu, NULL, grad->w1, grad->b1, a->d_hidden_pre, x, net->w1, R, F, Hd);
  }
}

#define TINY_F 16
#define TINY_HD 32

static float *buffer(int on_gpu, size_t n) {
  return on_gpu ? kn_cuda_malloc(&gpu, sizeof(float) * n) : calloc(n, sizeof(float));
}

static void test_tiny_dpo_step(void) {
  printf("tiny DPO step (policy + frozen reference, 4 pairs, AdamW) CUDA vs CPU\n");
  const int B = 4, T = 8, F = TINY_F, Hd = TINY_HD, R = B * T;
  size_t sizes[4] = {(size_t)Hd * F, (size_t)Hd, (size_t)F * Hd, (size_t)F};
  float *init[4], *xw = host_random((size_t)R * F, 1.0f), *xl = host_random((size_t)R * F, 1.0f);
  float *noise = malloc(sizeof(float) * R * F);
  dpo_rng_normal_fill(7, dpo_rng_stream_id("tiny-noise", 0, 0), 0, noise, (size_t)R * F);
  for (int i = 0; i < 4; i++) init[i] = host_random(sizes[i], 0.2f);
  static float final_params[2][4][TINY_HD * TINY_F], final_grads[2][4][TINY_HD * TINY_F];
  float losses[2];
  for (int on_gpu = 0; on_gpu < 2; on_gpu++) {
    tiny_net policy, ref, grad;
    float **pp = &policy.w1, **rp = &ref.w1, **gp = &grad.w1;
    for (int i = 0; i < 4; i++) {
      pp[i] = on_gpu ? device_copy(init[i], sizes[i]) : host_copy(init[i], sizes[i]);
      rp[i] = on_gpu ? device_copy(init[i], sizes[i]) : host_copy(init[i], sizes[i]);
      gp[i] = buffer(on_gpu, sizes[i]);
    }
    /* The reference drifts from the policy a little, so the DPO margin is not 0. */
    float *perturbed = host_copy(init[2], sizes[2]);
    for (size_t i = 0; i < sizes[2]; i++) perturbed[i] *= 1.05f;
    if (on_gpu) kn_cuda_upload(&gpu, rp[2], perturbed, sizeof(float) * sizes[2]);
    else memcpy(rp[2], perturbed, sizeof(float) * sizes[2]);
    free(perturbed);
    float *x[2] = {on_gpu ? device_copy(xw, (size_t)R * F) : xw, on_gpu ? device_copy(xl, (size_t)R * F) : xl};
    float *eps = on_gpu ? device_copy(noise, (size_t)R * F) : noise;
    tiny_acts acts[2], ref_acts[2];
    for (int s = 0; s < 2; s++) {
      tiny_acts *sets[2] = {&acts[s], &ref_acts[s]};
      for (int k = 0; k < 2; k++) {
        tiny_acts *a = sets[k];
        a->rows = R, a->F = F, a->Hd = Hd;
        a->hidden_pre = buffer(on_gpu, (size_t)R * Hd), a->hidden = buffer(on_gpu, (size_t)R * Hd);
        a->pred = buffer(on_gpu, (size_t)R * F), a->mse = buffer(on_gpu, B);
        a->d_pred = buffer(on_gpu, (size_t)R * F), a->d_hidden = buffer(on_gpu, (size_t)R * Hd);
        a->d_hidden_pre = buffer(on_gpu, (size_t)R * Hd), a->d_mse = buffer(on_gpu, B);
      }
    }
    for (int s = 0; s < 2; s++) {
      tiny_forward(on_gpu, &policy, &acts[s], x[s], eps, B);
      tiny_forward(on_gpu, &ref, &ref_acts[s], x[s], eps, B);
    }
    float *moments[8];
    for (int i = 0; i < 8; i++) moments[i] = buffer(on_gpu, sizes[i % 4]);
    if (on_gpu) {
      float *loss = buffer(1, 1);
      kn_cuda_dpo_loss(&gpu, loss, acts[0].d_mse, acts[1].d_mse, NULL, acts[0].mse, acts[1].mse, ref_acts[0].mse,
                       ref_acts[1].mse, NULL, B, 5000.0);
      kn_cuda_download(&gpu, &losses[1], loss, sizeof(float));
      kn_cuda_free(loss);
      for (int s = 0; s < 2; s++) tiny_backward(1, &policy, &grad, &acts[s], x[s], eps, B);
      for (int i = 0; i < 4; i++)
        kn_cuda_adamw_update(&gpu, pp[i], NULL, gp[i], moments[i], moments[4 + i], sizes[i], 1, 1e-3, 0.9, 0.999,
                             1e-8, 1e-2);
      for (int i = 0; i < 4; i++) {
        kn_cuda_download(&gpu, final_params[1][i], pp[i], sizeof(float) * sizes[i]);
        kn_cuda_download(&gpu, final_grads[1][i], gp[i], sizeof(float) * sizes[i]);
      }
    } else {
      dpo_loss_stats st;
      dpo_error err = {0};
      CHECK_INT(dpo_loss_dpo(acts[0].mse, acts[1].mse, ref_acts[0].mse, ref_acts[1].mse, NULL, B, 5000.0,
                             acts[0].d_mse, acts[1].d_mse, &st, &err),
                DPO_OK);
      losses[0] = (float)st.loss;
      for (int s = 0; s < 2; s++) tiny_backward(0, &policy, &grad, &acts[s], x[s], eps, B);
      dpo_optim_config cfg;
      dpo_optim_config_default(&cfg, DPO_OPTIM_ADAMW);
      const char *names[4] = {"w1", "b1", "w2", "b2"};
      dpo_optim_param params[4];
      for (int i = 0; i < 4; i++)
        params[i] = (dpo_optim_param){.name = names[i], .ndim = 1, .shape = {(int64_t)sizes[i]}, .data = pp[i],
                                      .grad = gp[i]};
      dpo_optimizer opt;
      CHECK_INT(dpo_optim_init(&opt, &cfg, params, 4, &err), DPO_OK);
      dpo_optim_step(&opt, 1e-3);
      dpo_optim_free(&opt);
      for (int i = 0; i < 4; i++) {
        memcpy(final_params[0][i], pp[i], sizeof(float) * sizes[i]);
        memcpy(final_grads[0][i], gp[i], sizeof(float) * sizes[i]);
      }
    }
    /* Release this backend's buffers. */
    for (int s = 0; s < 2; s++) {
      tiny_acts *sets[2] = {&acts[s], &ref_acts[s]};
      for (int k = 0; k < 2; k++) {
        float *bufs[8] = {sets[k]->hidden_pre, sets[k]->hidden, sets[k]->pred, sets[k]->mse,
                          sets[k]->d_pred, sets[k]->d_hidden, sets[k]->d_hidden_pre, sets[k]->d_mse};
        for (int i = 0; i < 8; i++) on_gpu ? kn_cuda_free(bufs[i]) : free(bufs[i]);
      }
    }
    for (int i = 0; i < 8; i++) on_gpu ? kn_cuda_free(moments[i]) : free(moments[i]);
    for (int i = 0; i < 4; i++) {
      on_gpu ? kn_cuda_free(pp[i]) : free(pp[i]);
      on_gpu ? kn_cuda_free(rp[i]) : free(rp[i]);
      on_gpu ? kn_cuda_free(gp[i]) : free(gp[i]);
    }
    if (on_gpu) {
      kn_cuda_free(x[0]), kn_cuda_free(x[1]), kn_cuda_free(eps);
    }
  }
  printf("  dpo loss cpu %.7g cuda %.7g\n", (double)losses[0], (double)losses[1]);
  CHECK_NEAR(losses[1], losses[0], 1e-4 * fabs((double)losses[0]) + 1e-6);
  /* The gradients, then the updates (param after - before). Adam's first
   * update is about lr sign(g) for any |g| >> eps, so an element whose
   * gradient is within float noise of 0 may move either way on either
   * backend: those (|g| < 1e-5 max|g|) are left out of the update check. */
  const char *grad_names[4] = {"step: grad w1", "step: grad b1", "step: grad w2", "step: grad b2"};
  const char *update_names[4] = {"step: update w1", "step: update b1", "step: update w2", "step: update b2"};
  for (int i = 0; i < 4; i++) {
    float *dev = device_copy(final_grads[1][i], sizes[i]);
    compare(grad_names[i], final_grads[0][i], dev, sizes[i], TOL_REDUCE);
    kn_cuda_free(dev);
    float max_g = 0.0f;
    for (size_t j = 0; j < sizes[i]; j++) max_g = fmaxf(max_g, fabsf(final_grads[0][i][j]));
    float *want = malloc(sizeof(float) * sizes[i]), *got = malloc(sizeof(float) * sizes[i]);
    for (size_t j = 0; j < sizes[i]; j++) {
      int settled = fabsf(final_grads[0][i][j]) >= 1e-5f * max_g;
      want[j] = settled ? final_params[0][i][j] - init[i][j] : 0.0f;
      got[j] = settled ? final_params[1][i][j] - init[i][j] : 0.0f;
    }
    dev = device_copy(got, sizes[i]);
    compare(update_names[i], want, dev, sizes[i], TOL_STEP);
    kn_cuda_free(dev);
    free(want), free(got);
  }
  for (int i = 0; i < 4; i++) free(init[i]);
  free(xw), free(xl), free(noise);
}

int main(void) {
  int n_devices = kn_cuda_device_count();
  if (n_devices < 1) {
    printf("test_cuda_ops: no CUDA device visible; skipped (exit 77), nothing was compared\n");
    return 77;
  }
  char name[256];
  kn_cuda_device_name(0, name, sizeof name);
  printf("device: %s\n", name);
  dpo_error err = {0};
  if (kn_ctx_init(&cpu, 0, &err) != DPO_OK || kn_cuda_ctx_init(&gpu, 0, &err) != DPO_OK) {
    fprintf(stderr, "test_cuda_ops: %s\n", err.msg);
    return 1;
  }
  test_linear(64, 96, 80);
  test_linear(77, 768, 320);
  test_conv2d(2, 8, 12, 10, 16, 3, 1, 1);
  test_conv2d(2, 8, 12, 10, 16, 3, 2, 1);
  test_conv2d(2, 16, 9, 9, 8, 1, 1, 0);
  test_group_norm(2, 64, 63, 32);
  test_layer_norm(300, 320);
  test_activations();
  test_attention(2, 3, 70, 45, 40, 0);
  test_attention(1, 2, 77, 77, 64, 1);
  test_attention(1, 2, 100, 77, 160, 0);
  test_attention(1, 1, 33, 33, 256, 1);
  /* The wider kernels (16 dimensions per lane): heads past 256, up to the
   * VAE's one 512-channel mid-block head (over 8x8 latents here). */
  test_attention(1, 1, 70, 45, 300, 1);
  test_attention(2, 1, 64, 64, 512, 0);
  test_bf16_attention(1, 2, 77, 77, 64, 1, 0.0f);
  test_bf16_attention(2, 8, 256, 77, 40, 0, 0.0f);
  /* The tensor-core path's edges: N not a multiple of its 64-row tiles,
   * padded heads (24 -> 32, 40 -> 48, 36 -> 48 with element loads, 8 -> 16),
   * causal with Nq != Nk either way, one query row, accumulation into
   * non-zero gradients; then SD1.5's first-level heads (40) over 32x32 latents. */
  test_bf16_attention(1, 2, 100, 77, 40, 0, 0.5f);
  test_bf16_attention(1, 2, 100, 77, 24, 1, 0.5f);
  test_bf16_attention(1, 3, 77, 130, 64, 1, 0.5f);
  test_bf16_attention(2, 2, 130, 200, 36, 1, 0.5f);
  test_bf16_attention(1, 2, 1, 70, 8, 0, 0.5f);
  test_bf16_attention(1, 2, 65, 1, 40, 1, 0.5f);
  test_bf16_attention(1, 8, 1024, 1024, 40, 0, 0.5f);
  /* Wide heads on the tensor cores (DP > 64: results leave in passes of 64
   * columns; above DP = 96 dk and dv run as two passes): SD1.5's 80 at
   * 32x32 latents (self and cross) and its 160 at 16x16; padded heads
   * (72 -> 80, 100 -> 112 and 150 -> 160 with element loads), causal. */
  test_bf16_attention(1, 8, 1024, 1024, 80, 0, 0.5f);
  test_bf16_attention(1, 8, 1024, 77, 80, 0, 0.5f);
  test_bf16_attention(2, 8, 256, 256, 160, 0, 0.5f);
  test_bf16_attention(1, 2, 100, 77, 72, 1, 0.5f);
  test_bf16_attention(1, 2, 130, 70, 100, 1, 0.5f);
  test_bf16_attention(1, 2, 70, 130, 150, 1, 0.5f);
  /* Past the tensor cores' 160: the scalar kernels. */
  test_bf16_attention(1, 2, 100, 77, 192, 1, 0.5f);
  test_bf16_attention(2, 1, 64, 64, 512, 0, 0.5f);
  test_bf16_pointwise_and_norms();
  test_bf16_conv2d(2, 8, 12, 10, 16, 3, 1, 1);
  test_bf16_conv2d(2, 8, 12, 10, 16, 3, 2, 1);
  test_bf16_conv2d(2, 16, 9, 9, 8, 1, 1, 0);
  test_bf16_conv2d(2, 320, 32, 32, 320, 3, 1, 1); /* SD1.5's first block at a 32x32 latent */
  test_bf16_conv2d(2, 320, 32, 32, 320, 3, 2, 1); /* its downsampler */
  test_bf16_conv2d(2, 640, 16, 16, 320, 1, 1, 0); /* a 1x1 shortcut */
  test_bf16_shape_ops();
  test_shape_ops();
  test_embeddings();
  test_losses();
  test_adamw();
  test_adafactor(0.0, 0.0);
  test_adafactor(0.9, 1e-2);
  test_rng();
  test_tiny_dpo_step();
  CHECK_INT(gpu.status, 0);
  printf("%d tensors compared; workspace grew %d times\n", n_checked, gpu.workspace_grows);
  kn_cuda_ctx_free(&gpu);
  kn_ctx_free(&cpu);
  return test_finish();
}
