/* The arena and the context scratch (planned up front, no growth in a
 * step), and bitwise repeatability of the GEMM-based ops and reductions for
 * a fixed thread count. */
#include <stdint.h>
#include <stdio.h>

#include "tests/unit/gradcheck.h"

static void test_arena(void) {
  kn_arena a;
  dpo_error err;
  size_t plan = kn_arena_bytes(10) + kn_arena_bytes(1) + kn_arena_bytes(100);
  CHECK_INT(plan, 64 + 64 + 448);
  CHECK_INT(kn_arena_init(&a, plan, &err), DPO_OK);
  float *x = kn_arena_floats(&a, 10), *y = kn_arena_floats(&a, 1), *z = kn_arena_floats(&a, 100);
  CHECK(x && y && z);
  CHECK((uintptr_t)x % KN_ALIGN == 0 && (uintptr_t)y % KN_ALIGN == 0 && (uintptr_t)z % KN_ALIGN == 0);
  CHECK(y >= x + 10 && z >= y + 1);
  CHECK_INT(a.used, a.size);
  CHECK(kn_arena_floats(&a, 1) == NULL); /* the plan is exhausted */
  for (int i = 0; i < 10; i++) CHECK_NEAR(x[i], 0, 0); /* zeroed by init */
  CHECK_NEAR(z[99], 0, 0);
  x[3] = 5.0f;
  kn_arena_reset(&a);
  float *again = kn_arena_floats(&a, 10);
  CHECK(again == x);
  CHECK_NEAR(again[3], 5.0f, 0); /* the same memory, as it was left */
  kn_arena_free(&a);
  CHECK(a.base == NULL);
}

static void test_context(void) {
  kn_ctx ctx;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&ctx, 100000, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "threads");
  CHECK_INT(kn_ctx_init(&ctx, 0, &err), DPO_OK);
  CHECK(ctx.n_threads >= 1);
  kn_ctx_free(&ctx);
  /* A conv step inside its plan does not grow the scratch; one outside does
   * and says so. */
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  CHECK_INT(kn_ctx_reserve(&ctx, kn_conv2d_scratch_bytes(3, 9, 9, 4, 3, 1, 1), &err), DPO_OK);
  float *inp = gc_randn(2 * 3 * 81, 1, 0), *w = gc_randn(4 * 3 * 9, 1, 0), *out = gc_zeros(2 * 4 * 81);
  float *dinp = gc_zeros(2 * 3 * 81), *dw = gc_zeros(4 * 3 * 9);
  kn_conv2d_forward(&ctx, out, inp, w, NULL, 2, 3, 9, 9, 4, 3, 1, 1);
  kn_conv2d_backward(&ctx, dinp, dw, NULL, out, inp, w, 2, 3, 9, 9, 4, 3, 1, 1);
  CHECK_INT(ctx.scratch_grows, 0);
  CHECK_INT(kn_conv2d_scratch_bytes(3, 9, 9, 4, 1, 1, 0), 0); /* pointwise: no columns */
  kn_conv2d_forward(&ctx, out, inp, w, NULL, 1, 3, 9, 9, 4, 3, 1, 1);
  float *big = gc_randn(6 * 81, 1, 0), *wbig = gc_randn(4 * 6 * 9, 1, 0);
  kn_conv2d_forward(&ctx, out, big, wbig, NULL, 1, 6, 9, 9, 4, 3, 1, 1);
  CHECK_INT(ctx.scratch_grows, 1);
  free(inp), free(w), free(out), free(dinp), free(dw), free(big), free(wbig);
  kn_ctx_free(&ctx);
}

/* Runs conv forward + backward and group norm forward + backward on one
 * seed; two runs must agree bit for bit. */
static void run_ops(kn_ctx *ctx, float *result, size_t n_result) {
  gc_stream_counter = 77;
  int B = 2, C = 8, H = 33, W = 31, OC = 16;
  size_t n_in = (size_t)B * C * H * W, n_out = (size_t)B * OC * H * W;
  float *inp = gc_randn(n_in, 1, 0), *w = gc_randn((size_t)OC * C * 9, 0.2f, 0), *b = gc_randn((size_t)OC, 1, 0);
  float *out = gc_zeros(n_out), *dout = gc_randn(n_out, 1, 0);
  float *dinp = gc_zeros(n_in), *dw = gc_zeros((size_t)OC * C * 9), *db = gc_zeros((size_t)OC);
  kn_conv2d_forward(ctx, out, inp, w, b, B, C, H, W, OC, 3, 1, 1);
  kn_conv2d_backward(ctx, dinp, dw, db, dout, inp, w, B, C, H, W, OC, 3, 1, 1);
  float *gn = gc_zeros(n_out), *mean = gc_zeros(8), *rstd = gc_zeros(8), *dgn = gc_zeros(n_out);
  float *gamma = gc_randn((size_t)OC, 1, 1), *dgamma = gc_zeros((size_t)OC), *dbeta = gc_zeros((size_t)OC);
  kn_group_norm_forward(ctx, gn, mean, rstd, out, gamma, NULL, B, OC, H * W, 4, 1e-5f);
  kn_group_norm_backward(ctx, dgn, dgamma, dbeta, dout, out, mean, rstd, gamma, B, OC, H * W, 4);
  float loss;
  kn_mse_per_sample_forward(ctx, &loss, gn, dout, 1, n_out);
  size_t k = 0;
  float *parts[] = {out, dinp, dw, db, gn, dgn, dgamma, dbeta, &loss};
  size_t sizes[] = {n_out, n_in, (size_t)OC * C * 9, (size_t)OC, n_out, n_out, (size_t)OC, (size_t)OC, 1};
  for (int p = 0; p < 9; p++)
    for (size_t i = 0; i < sizes[p] && k < n_result; i++) result[k++] = parts[p][i];
  free(inp), free(w), free(b), free(out), free(dout), free(dinp), free(dw), free(db);
  free(gn), free(mean), free(rstd), free(dgn), free(gamma), free(dgamma), free(dbeta);
}

static void test_repeatable(void) {
  kn_ctx ctx;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  size_t n = 200000;
  float *r1 = gc_zeros(n), *r2 = gc_zeros(n);
  run_ops(&ctx, r1, n);
  run_ops(&ctx, r2, n);
  CHECK(memcmp(r1, r2, n * sizeof(float)) == 0);
  free(r1), free(r2);
  kn_ctx_free(&ctx);
}

/* Large products are split over threads in slabs of rows or columns
 * (kn_gemm); the gradient checks use shapes too small to be split. Linear
 * and im2col convolution with two threads must match one thread, for each
 * way a slab is cut (rows or columns, operands transposed or not). */
static void run_linear_conv(kn_ctx *ctx, float **res, int N, int IC, int OC) {
  gc_stream_counter = 500;
  float *x = gc_randn((size_t)N * IC, 1, 0), *w = gc_randn((size_t)OC * IC, 1, 0), *b = gc_randn((size_t)OC, 1, 0);
  float *dy = gc_randn((size_t)N * OC, 1, 0);
  kn_linear_forward(ctx, res[0], x, w, b, N, IC, OC);
  kn_linear_backward(ctx, res[1], res[2], res[3], dy, x, w, N, IC, OC);
  /* A stride-2 3x3 convolution takes the im2col route in both directions. */
  int C = 32, H = 33, W = 31, K = 3, OCc = 40;
  int Ho = kn_conv2d_out_size(H, K, 2, 1), Wo = kn_conv2d_out_size(W, K, 2, 1);
  float *img = gc_randn((size_t)C * H * W, 1, 0), *cw = gc_randn((size_t)OCc * C * 9, 0.2f, 0);
  float *cdy = gc_randn((size_t)OCc * Ho * Wo, 1, 0);
  kn_conv2d_forward(ctx, res[4], img, cw, NULL, 1, C, H, W, OCc, K, 2, 1);
  kn_conv2d_backward(ctx, res[5], res[6], NULL, cdy, img, cw, 1, C, H, W, OCc, K, 2, 1);
  free(x), free(w), free(b), free(dy), free(img), free(cw), free(cdy);
}

static void test_split_gemm(int N, int IC, int OC) {
  size_t sizes[7] = {(size_t)N * OC, (size_t)N * IC, (size_t)OC * IC, (size_t)OC,
                     40 * 17 * 16, 32 * 33 * 31, 40 * 32 * 9};
  const char *names[7] = {"linear out", "linear dinp", "linear dweight", "linear dbias",
                          "conv out", "conv dinp", "conv dweight"};
  float *one[7], *two[7];
  for (int i = 0; i < 7; i++) one[i] = gc_zeros(sizes[i]), two[i] = gc_zeros(sizes[i]);
  kn_ctx c1, c2;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&c1, 1, &err), DPO_OK);
  CHECK_INT(kn_ctx_init(&c2, 2, &err), DPO_OK);
  run_linear_conv(&c1, one, N, IC, OC);
  run_linear_conv(&c2, two, N, IC, OC);
  for (int i = 0; i < 7; i++) {
    double e = gc_max_rel_err(two[i], one[i], sizes[i]);
    if (e > 1e-5) test_fail(__FILE__, __LINE__, "%s (N=%d IC=%d OC=%d): 2 threads differ from 1 by %.3g", names[i], N, IC, OC, e);
    free(one[i]), free(two[i]);
  }
  kn_ctx_free(&c1);
  kn_ctx_free(&c2);
}

int main(void) {
  test_arena();
  test_context();
  test_repeatable();
  test_split_gemm(300, 200, 100); /* dweight split by columns */
  test_split_gemm(301, 100, 203); /* dweight split by rows, odd sizes */
  return test_finish();
}
