/* The UNet in bf16 mixed precision (dpo_unet_set_precision) on the CPU,
 * whose bf16 ops are kernels.h's reference (the float32 ops on bf16-rounded
 * values): against the same model in float32 (output, input gradients and
 * every parameter gradient within bf16 tolerances, and not bitwise equal:
 * the path really rounds); a frozen bf16 model (the DPO reference) computes
 * the same bits and refuses training; activation checkpointing changes no
 * bit; the optimizer rewrites the bf16 copies; activations take about half
 * the memory; the precision is fixed once planned.
 *
 * Tolerances: error = max |bf16 - f32| / max(max |f32|, 1e-3) per tensor.
 * bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 2e-3 per value);
 * through the tiny UNet's ~30 layers the output stays within TOL_OUT, and
 * the input gradients, which go through twice as many rounded tensors,
 * within TOL_GRAD. A parameter gradient is a sum over the batch and the
 * pixels in which terms cancel (a small bias's most of all), so its scaled
 * error can exceed that of the values summed; each must point the same way
 * as float32's (cosine >= MIN_COSINE) and all of them together, scaled by
 * the largest, stay within TOL_GRAD. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "tests/test.h"

#define TOL_OUT 3e-2
#define TOL_GRAD 8e-2
#define MIN_COSINE 0.99

static kn_ctx ctx;

typedef struct {
  int B, H, W, T, C, D;
  float *x, *t, *enc, *dout;
} inputs;

static dpo_unet *load(const char *fixture, kn_dtype dtype, int frozen) {
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/models/%s", fixture);
  dpo_error err = {0};
  dpo_unet *u = NULL;
  if (dpo_unet_load(test_source_path(rel), &u, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return NULL;
  }
  if (dpo_unet_set_precision(u, dtype, frozen, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
  return u;
}

static inputs make_inputs(const dpo_unet *u, int B, int S, int T) {
  const dpo_unet_config *c = dpo_unet_get_config(u);
  inputs in = {B, S, S, T, c->in_channels, c->cross_attention_dim, NULL, NULL, NULL, NULL};
  size_t nx = (size_t)B * c->in_channels * S * S, ne = (size_t)B * T * in.D;
  in.x = malloc(nx * sizeof(float));
  in.dout = malloc((size_t)B * c->out_channels * S * S * sizeof(float));
  in.enc = malloc(ne * sizeof(float));
  in.t = malloc((size_t)B * sizeof(float));
  dpo_rng_normal_fill(1, 1, 0, in.x, nx);
  dpo_rng_normal_fill(1, 2, 0, in.enc, ne);
  dpo_rng_normal_fill(1, 3, 0, in.dout, (size_t)B * c->out_channels * S * S);
  for (int b = 0; b < B; b++) in.t[b] = (float)(37 + 311 * b);
  return in;
}

static void free_inputs(inputs *in) {
  free(in->x);
  free(in->t);
  free(in->enc);
  free(in->dout);
}

/* One forward + backward: the output, dsample and dencoder copied out, the
 * parameter gradients left in the model. */
typedef struct {
  float *out, *dx, *denc;
} result;

static result run(dpo_unet *u, const inputs *in, int train) {
  const dpo_unet_config *c = dpo_unet_get_config(u);
  size_t n_out = (size_t)in->B * c->out_channels * in->H * in->W;
  size_t nx = (size_t)in->B * in->C * in->H * in->W, ne = (size_t)in->B * in->T * in->D;
  result r = {calloc(n_out, sizeof(float)), calloc(nx, sizeof(float)), calloc(ne, sizeof(float))};
  dpo_error err = {0};
  if (dpo_unet_plan(u, &ctx, in->B, in->H, in->W, in->T, train, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return r;
  }
  const float *out = dpo_unet_forward(u, &ctx, in->x, in->t, in->enc);
  CHECK(out != NULL);
  if (!out) return r;
  memcpy(r.out, out, n_out * sizeof(float));
  if (!train) return r;
  dpo_unet_zero_grads(u);
  dpo_unet_backward(u, &ctx, in->dout, r.dx, r.denc);
  return r;
}

static void free_result(result *r) {
  free(r->out);
  free(r->dx);
  free(r->denc);
}

/* bf16 against float32 on one fixture: every output within tolerance, and
 * not the same bits (the bf16 path ran). */
static void test_against_float32(const char *fixture) {
  dpo_unet *f = load(fixture, KN_F32, 0), *h = load(fixture, KN_BF16, 0);
  if (!f || !h) return;
  CHECK_INT(dpo_unet_precision(h), KN_BF16);
  inputs in = make_inputs(f, 2, 8, 5);
  result rf = run(f, &in, 1), rh = run(h, &in, 1);
  const dpo_unet_config *c = dpo_unet_get_config(f);
  size_t n_out = (size_t)in.B * c->out_channels * in.H * in.W;
  size_t nx = (size_t)in.B * in.C * in.H * in.W, ne = (size_t)in.B * in.T * in.D;
  double e_out = test_scaled_error(rh.out, rf.out, n_out);
  double e_dx = test_scaled_error(rh.dx, rf.dx, nx), e_enc = test_scaled_error(rh.denc, rf.denc, ne);
  printf("%s: bf16 vs float32: output %.2e, dsample %.2e, dencoder %.2e\n", fixture, e_out, e_dx, e_enc);
  CHECK(e_out <= TOL_OUT);
  CHECK(e_out > 0.0);
  CHECK(e_dx <= TOL_GRAD);
  CHECK(e_enc <= TOL_GRAD);
  double worst_cos = 1.0, max_diff = 0.0, max_grad = 1e-3;
  const char *worst_name = "";
  int n_weights_bf16 = 0;
  for (int i = 0; i < dpo_unet_n_params(f); i++) {
    dpo_param pf, ph;
    dpo_unet_param(f, i, &pf);
    dpo_unet_param(h, i, &ph);
    double cs = test_cosine(ph.grad, pf.grad, pf.numel);
    if (cs < worst_cos || cs != cs) {
      worst_cos = cs;
      worst_name = pf.name;
    }
    for (size_t j = 0; j < pf.numel; j++) {
      double d = fabs((double)ph.grad[j] - pf.grad[j]);
      if (d > max_diff || d != d) max_diff = d;
      if (fabs(pf.grad[j]) > max_grad) max_grad = fabs(pf.grad[j]);
    }
    /* Weights of 2+ dims carry bf16 copies (rounded from the float32 values); the rest none. */
    CHECK((ph.data_bf16 != NULL) == (pf.ndim >= 2));
    CHECK(pf.data_bf16 == NULL);
    if (ph.data_bf16) {
      n_weights_bf16++;
      for (size_t j = 0; j < ph.numel; j++)
        if (ph.data_bf16[j] != kn_bf16_from_float(ph.data[j])) {
          test_fail(__FILE__, __LINE__, "%s[%zu]: bf16 copy is not the rounded value", ph.name, j);
          break;
        }
    }
  }
  printf("%s: parameter gradients: error %.2e of the largest, lowest cosine %.5f (%s); %d bf16 weights\n",
         fixture, max_diff / max_grad, worst_cos, worst_name, n_weights_bf16);
  CHECK(max_diff / max_grad <= TOL_GRAD);
  CHECK(worst_cos >= MIN_COSINE);
  CHECK(n_weights_bf16 > 10);
  /* The activations (and their gradients) take about half the bytes. */
  double ratio = (double)dpo_unet_plan_bytes(h) / (double)dpo_unet_plan_bytes(f);
  printf("%s: plan bytes bf16 / float32 = %.3f\n", fixture, ratio);
  CHECK(ratio < 0.6);
  free_result(&rf);
  free_result(&rh);
  free_inputs(&in);
  dpo_unet_free(f);
  dpo_unet_free(h);
}

/* The DPO reference: frozen bf16 gives the trained model's bits, and no
 * training plan. */
static void test_frozen(void) {
  dpo_unet *h = load("unet_sd15", KN_BF16, 0), *z = load("unet_sd15", KN_BF16, 1);
  if (!h || !z) return;
  inputs in = make_inputs(h, 2, 8, 5);
  result rh = run(h, &in, 0), rz = run(z, &in, 0);
  CHECK(memcmp(rh.out, rz.out, (size_t)2 * 4 * 64 * sizeof(float)) == 0);
  dpo_error err = {0};
  CHECK_INT(dpo_unet_plan(z, &ctx, 2, 8, 8, 5, 1, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "frozen");
  /* Frozen needs bf16; and the precision is fixed once planned. */
  dpo_unet *f = load("unet_sd15", KN_F32, 0);
  if (f) {
    CHECK_INT(dpo_unet_set_precision(f, KN_F32, 1, &err), DPO_ERR_USAGE);
    result rf = run(f, &in, 0);
    CHECK_INT(dpo_unet_set_precision(f, KN_BF16, 0, &err), DPO_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "before the first plan");
    free_result(&rf);
  }
  free_result(&rh);
  free_result(&rz);
  free_inputs(&in);
  dpo_unet_free(h);
  dpo_unet_free(z);
  dpo_unet_free(f);
}

/* Checkpointing reruns the same bf16 arithmetic: the same gradient bits. */
static void test_checkpointing(void) {
  dpo_unet *a = load("unet_sd15", KN_BF16, 0), *b = load("unet_sd15", KN_BF16, 0);
  if (!a || !b) return;
  dpo_unet_set_checkpointing(b, 1);
  inputs in = make_inputs(a, 2, 8, 5);
  result ra = run(a, &in, 1), rb = run(b, &in, 1);
  CHECK(memcmp(ra.dx, rb.dx, (size_t)2 * 4 * 64 * sizeof(float)) == 0);
  for (int i = 0; i < dpo_unet_n_params(a); i++) {
    dpo_param pa, pb;
    dpo_unet_param(a, i, &pa);
    dpo_unet_param(b, i, &pb);
    if (memcmp(pa.grad, pb.grad, pa.numel * sizeof(float)) != 0) {
      test_fail(__FILE__, __LINE__, "%s: gradient differs with checkpointing", pa.name);
      break;
    }
  }
  CHECK(dpo_unet_plan_bytes(b) < dpo_unet_plan_bytes(a));
  free_result(&ra);
  free_result(&rb);
  free_inputs(&in);
  dpo_unet_free(a);
  dpo_unet_free(b);
}

/* An optimizer update writes the rounded value into the bf16 copy, which the
 * next forward reads. */
static void test_update_refreshes_copy(void) {
  dpo_unet *h = load("unet_sd15", KN_BF16, 0);
  if (!h) return;
  inputs in = make_inputs(h, 2, 8, 5);
  result r0 = run(h, &in, 1);
  for (int i = 0; i < dpo_unet_n_params(h); i++) {
    dpo_param p;
    dpo_unet_param(h, i, &p);
    float *m = calloc(p.numel, sizeof(float)), *v = calloc(p.numel, sizeof(float));
    kn_adamw_update(&ctx, p.data, p.data_bf16, p.grad, m, v, p.numel, 1, 1e-2, 0.9, 0.999, 1e-8, 0.0);
    free(m);
    free(v);
    if (p.data_bf16)
      for (size_t j = 0; j < p.numel; j++)
        if (p.data_bf16[j] != kn_bf16_from_float(p.data[j])) {
          test_fail(__FILE__, __LINE__, "%s[%zu]: bf16 copy not rewritten", p.name, j);
          break;
        }
  }
  result r1 = run(h, &in, 0);
  CHECK(memcmp(r0.out, r1.out, (size_t)2 * 4 * 64 * sizeof(float)) != 0);
  free_result(&r0);
  free_result(&r1);
  free_inputs(&in);
  dpo_unet_free(h);
}

/* Host conversions: nearest even, NaN stays NaN, widening exact. */
static void test_conversions(void) {
  CHECK_INT(kn_bf16_from_float(1.0f), 0x3f80);
  /* 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even 1. */
  CHECK_INT(kn_bf16_from_float(1.0f + 1.0f / 256.0f), 0x3f80);
  CHECK_INT(kn_bf16_from_float(1.0f + 3.0f / 256.0f), 0x3f82);
  CHECK(kn_bf16_to_float(kn_bf16_from_float(-2.5f)) == -2.5f);
  CHECK(isnan(kn_bf16_to_float(kn_bf16_from_float(NAN))));
  CHECK(isinf(kn_bf16_to_float(kn_bf16_from_float(INFINITY))));
  CHECK_INT(kn_dtype_size(KN_BF16), 2);
  CHECK_STR(kn_dtype_name(KN_BF16), "bf16");
}

int main(void) {
  dpo_error err = {0};
  if (kn_ctx_init(&ctx, 1, &err) != DPO_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  test_conversions();
  test_against_float32("unet_sd15");
  test_against_float32("unet_linear");
  test_frozen();
  test_checkpointing();
  test_update_refreshes_copy();
  kn_ctx_free(&ctx);
  return test_finish();
}
