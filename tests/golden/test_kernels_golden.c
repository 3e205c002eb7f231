/* Every kernel against PyTorch: forward output and every gradient for a
 * fixed upstream gradient, from tests/fixtures/kernels (made by the pinned
 * script tests/fixtures/make_kernel_fixtures.py, torch.nn.functional on the
 * CPU). Tolerances, relative to the largest magnitude in the reference
 * tensor: forward 2e-5, gradients 1e-4 (float32 on both sides, different
 * summation orders); the timestep embedding 3e-4 (sin/cos of arguments up to
 * 1000 in float32, where one ulp of the argument is 6e-5). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "kernels/kernels.h"
#include "tests/test.h"

static float *blob;
static size_t blob_floats;

typedef struct {
  const json_t *tensors;
  const json_t *params;
  const char *name;
} golden_case;

/* The tensor `key` of a case, with its element count; NULL (and a failure)
 * when it is missing or out of the blob's range. */
static const float *tensor(const golden_case *c, const char *key, size_t *numel) {
  const json_t *t = json_object_get(c->tensors, key);
  const json_t *shape = t ? json_object_get(t, "shape") : NULL;
  const json_t *off = t ? json_object_get(t, "offset") : NULL;
  if (!json_is_array(shape) || !json_is_integer(off)) {
    test_fail(__FILE__, __LINE__, "%s: no tensor \"%s\" in the index", c->name, key);
    return NULL;
  }
  size_t n = 1;
  for (size_t i = 0; i < json_array_size(shape); i++) n *= (size_t)json_integer_value(json_array_get(shape, i));
  size_t o = (size_t)json_integer_value(off);
  if (o > blob_floats || n > blob_floats - o) {
    test_fail(__FILE__, __LINE__, "%s: tensor \"%s\" lies outside golden.bin", c->name, key);
    return NULL;
  }
  if (numel) *numel = n;
  return blob + o;
}

static int iparam(const golden_case *c, const char *key) {
  const json_t *v = json_object_get(c->params, key);
  if (!json_is_number(v)) test_fail(__FILE__, __LINE__, "%s: no parameter \"%s\"", c->name, key);
  return json_is_integer(v) ? (int)json_integer_value(v) : (int)json_number_value(v);
}

static float fparam(const golden_case *c, const char *key) {
  const json_t *v = json_object_get(c->params, key);
  if (!json_is_number(v)) test_fail(__FILE__, __LINE__, "%s: no parameter \"%s\"", c->name, key);
  return (float)json_number_value(v);
}

/* A zeroed buffer the size of the reference tensor `key`. */
static float *zeros_like(const golden_case *c, const char *key) {
  size_t n = 0;
  if (!tensor(c, key, &n)) n = 1;
  float *p = calloc(n ? n : 1, sizeof(float));
  if (!p) abort();
  return p;
}

static void compare(const golden_case *c, const char *key, const float *got, double tol) {
  size_t n = 0;
  const float *want = tensor(c, key, &n);
  if (!want || !got) return;
  double max_ref = 0, max_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < n; i++) max_ref = fmax(max_ref, fabs(want[i]));
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    if (isnan(e)) e = INFINITY;
    if (e > max_err) max_err = e, worst = i;
  }
  if (max_err > tol * (max_ref > 0 ? max_ref : 1))
    test_fail(__FILE__, __LINE__, "%s: %s[%zu] = %.8g, PyTorch %.8g (max error %.3g of max %.3g, tol %g)",
              c->name, key, worst, got[worst], want[worst], max_err, max_ref, tol);
}

#define FWD_TOL 2e-5
#define BWD_TOL 1e-4

static void run_linear(kn_ctx *ctx, const golden_case *c) {
  int N = iparam(c, "N"), IC = iparam(c, "IC"), OC = iparam(c, "OC");
  const float *inp = tensor(c, "inp", NULL), *w = tensor(c, "weight", NULL), *b = tensor(c, "bias", NULL);
  const float *dout = tensor(c, "dout", NULL);
  float *out = zeros_like(c, "out"), *dinp = zeros_like(c, "dinp"), *dw = zeros_like(c, "dweight");
  float *db = zeros_like(c, "dbias");
  kn_linear_forward(ctx, out, inp, w, b, N, IC, OC);
  kn_linear_backward(ctx, dinp, dw, db, dout, inp, w, N, IC, OC);
  compare(c, "out", out, FWD_TOL);
  compare(c, "dinp", dinp, BWD_TOL);
  compare(c, "dweight", dw, BWD_TOL);
  compare(c, "dbias", db, BWD_TOL);
  free(out), free(dinp), free(dw), free(db);
}

static void run_conv2d_once(kn_ctx *ctx, const golden_case *c);

/* Both forward routes: im2col + sgemm (the default) and Winograd. */
static void run_conv2d(kn_ctx *ctx, const golden_case *c) {
  for (int winograd = 0; winograd <= 1; winograd++) {
    ctx->winograd_forward = winograd;
    run_conv2d_once(ctx, c);
  }
  ctx->winograd_forward = 0;
}

static void run_conv2d_once(kn_ctx *ctx, const golden_case *c) {
  int B = iparam(c, "B"), C = iparam(c, "C"), H = iparam(c, "H"), W = iparam(c, "W");
  int OC = iparam(c, "OC"), K = iparam(c, "K"), s = iparam(c, "stride"), p = iparam(c, "pad");
  const float *inp = tensor(c, "inp", NULL), *w = tensor(c, "weight", NULL), *b = tensor(c, "bias", NULL);
  const float *dout = tensor(c, "dout", NULL);
  float *out = zeros_like(c, "out"), *dinp = zeros_like(c, "dinp"), *dw = zeros_like(c, "dweight");
  float *db = zeros_like(c, "dbias");
  kn_conv2d_forward(ctx, out, inp, w, b, B, C, H, W, OC, K, s, p);
  kn_conv2d_backward(ctx, dinp, dw, db, dout, inp, w, B, C, H, W, OC, K, s, p);
  compare(c, "out", out, FWD_TOL);
  compare(c, "dinp", dinp, BWD_TOL);
  compare(c, "dweight", dw, BWD_TOL);
  compare(c, "dbias", db, BWD_TOL);
  free(out), free(dinp), free(dw), free(db);
}

static void run_norm(kn_ctx *ctx, const golden_case *c, int layer) {
  const float *inp = tensor(c, "inp", NULL), *gamma = tensor(c, "gamma", NULL), *beta = tensor(c, "beta", NULL);
  const float *dout = tensor(c, "dout", NULL);
  float *out = zeros_like(c, "out"), *dinp = zeros_like(c, "dinp"), *dg = zeros_like(c, "dgamma");
  float *dbeta = zeros_like(c, "dbeta");
  float mean[64], rstd[64];
  float eps = fparam(c, "eps");
  if (layer) {
    int N = iparam(c, "N"), C = iparam(c, "C");
    if (N > 64) return;
    kn_layer_norm_forward(ctx, out, mean, rstd, inp, gamma, beta, N, C, eps);
    kn_layer_norm_backward(ctx, dinp, dg, dbeta, dout, inp, mean, rstd, gamma, N, C);
  } else {
    int B = iparam(c, "B"), C = iparam(c, "C"), HW = iparam(c, "HW"), G = iparam(c, "G");
    if (B * G > 64) return;
    kn_group_norm_forward(ctx, out, mean, rstd, inp, gamma, beta, B, C, HW, G, eps);
    kn_group_norm_backward(ctx, dinp, dg, dbeta, dout, inp, mean, rstd, gamma, B, C, HW, G);
  }
  compare(c, "out", out, FWD_TOL);
  compare(c, "dinp", dinp, BWD_TOL);
  compare(c, "dgamma", dg, BWD_TOL);
  compare(c, "dbeta", dbeta, BWD_TOL);
  free(out), free(dinp), free(dg), free(dbeta);
}

static kn_activation activation_named(const char *op) {
  if (!strcmp(op, "silu")) return KN_ACT_SILU;
  if (!strcmp(op, "gelu")) return KN_ACT_GELU;
  if (!strcmp(op, "gelu_tanh")) return KN_ACT_GELU_TANH;
  return KN_ACT_QUICK_GELU;
}

/* Ops with one input `inp` and one output. */
static void run_unary(kn_ctx *ctx, const golden_case *c, const char *op) {
  size_t n = 0;
  const float *inp = tensor(c, "inp", &n), *dout = tensor(c, "dout", NULL);
  float *out = zeros_like(c, "out"), *dinp = zeros_like(c, "dinp");
  if (!inp || !dout) return;
  if (!strcmp(op, "geglu")) {
    int N = iparam(c, "N"), D = iparam(c, "D");
    kn_geglu_forward(ctx, out, inp, N, D);
    kn_geglu_backward(ctx, dinp, dout, inp, N, D);
  } else if (!strcmp(op, "softmax")) {
    int N = iparam(c, "N"), C = iparam(c, "C");
    kn_softmax_forward(ctx, out, inp, N, C);
    kn_softmax_backward(ctx, dinp, dout, out, N, C);
  } else if (!strcmp(op, "logsigmoid")) {
    kn_logsigmoid_forward(ctx, out, inp, n);
    kn_logsigmoid_backward(ctx, dinp, dout, inp, n);
  } else if (!strcmp(op, "scale")) {
    kn_scale_forward(ctx, out, inp, fparam(c, "scale"), n);
    kn_scale_backward(ctx, dinp, dout, fparam(c, "scale"), n);
  } else if (!strcmp(op, "sum")) {
    kn_sum_forward(ctx, out, inp, n);
    kn_sum_backward(ctx, dinp, dout, n);
  } else if (!strcmp(op, "mean")) {
    kn_mean_forward(ctx, out, inp, n);
    kn_mean_backward(ctx, dinp, dout, n);
  } else {
    kn_activation act = activation_named(op);
    kn_activation_forward(ctx, act, out, inp, n);
    kn_activation_backward(ctx, act, dinp, dout, inp, n);
  }
  compare(c, "out", out, FWD_TOL);
  compare(c, "dinp", dinp, BWD_TOL);
  free(out), free(dinp);
}

static void run_attention(kn_ctx *ctx, const golden_case *c) {
  int B = iparam(c, "B"), H = iparam(c, "H"), Nq = iparam(c, "Nq"), Nk = iparam(c, "Nk");
  int D = iparam(c, "D"), causal = iparam(c, "causal");
  float scale = fparam(c, "scale");
  const float *q = tensor(c, "q", NULL), *k = tensor(c, "k", NULL), *v = tensor(c, "v", NULL);
  const float *dout = tensor(c, "dout", NULL);
  float *out = zeros_like(c, "out"), *lse = zeros_like(c, "lse"), *dq = zeros_like(c, "dq");
  float *dk = zeros_like(c, "dk"), *dv = zeros_like(c, "dv");
  kn_attention_forward(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
  kn_attention_backward(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, causal);
  compare(c, "out", out, FWD_TOL);
  compare(c, "lse", lse, FWD_TOL);
  compare(c, "dq", dq, BWD_TOL);
  compare(c, "dk", dk, BWD_TOL);
  compare(c, "dv", dv, BWD_TOL);
  free(out), free(lse), free(dq), free(dk), free(dv);
}

static void run_upsample(kn_ctx *ctx, const golden_case *c) {
  int B = iparam(c, "B"), C = iparam(c, "C"), H = iparam(c, "H"), W = iparam(c, "W");
  float *out = zeros_like(c, "out"), *dinp = zeros_like(c, "dinp");
  kn_upsample2x_forward(ctx, out, tensor(c, "inp", NULL), B, C, H, W);
  kn_upsample2x_backward(ctx, dinp, tensor(c, "dout", NULL), B, C, H, W);
  compare(c, "out", out, FWD_TOL);
  compare(c, "dinp", dinp, BWD_TOL);
  free(out), free(dinp);
}

static void run_add(kn_ctx *ctx, const golden_case *c) {
  size_t n = 0;
  const float *a = tensor(c, "a", &n), *b = tensor(c, "b", NULL);
  float *out = zeros_like(c, "out"), *da = zeros_like(c, "da"), *db = zeros_like(c, "db");
  kn_add_forward(ctx, out, a, b, n);
  kn_add_backward(ctx, da, db, tensor(c, "dout", NULL), n);
  compare(c, "out", out, FWD_TOL);
  compare(c, "da", da, BWD_TOL);
  compare(c, "db", db, BWD_TOL);
  free(out), free(da), free(db);
}

static void run_concat_split(kn_ctx *ctx, const golden_case *c, int split) {
  int outer = iparam(c, "outer"), Ca = iparam(c, "Ca"), Cb = iparam(c, "Cb"), inner = iparam(c, "inner");
  const float *dout = tensor(c, "dout", NULL);
  if (!split) {
    float *out = zeros_like(c, "out"), *da = zeros_like(c, "da"), *db = zeros_like(c, "db");
    kn_concat_forward(ctx, out, tensor(c, "a", NULL), tensor(c, "b", NULL), outer, Ca, Cb, inner);
    kn_concat_backward(ctx, da, db, dout, outer, Ca, Cb, inner);
    compare(c, "out", out, FWD_TOL);
    compare(c, "da", da, BWD_TOL);
    compare(c, "db", db, BWD_TOL);
    free(out), free(da), free(db);
    return;
  }
  /* PyTorch's two outputs are stored flat, one after the other. */
  size_t na = (size_t)outer * Ca * inner;
  float *out = zeros_like(c, "out"), *dinp = zeros_like(c, "dinp");
  kn_split_forward(ctx, out, out + na, tensor(c, "inp", NULL), outer, Ca, Cb, inner);
  kn_split_backward(ctx, dinp, dout, dout + na, outer, Ca, Cb, inner);
  compare(c, "out", out, FWD_TOL);
  compare(c, "dinp", dinp, BWD_TOL);
  free(out), free(dinp);
}

static void run_timestep(kn_ctx *ctx, const golden_case *c) {
  int B = iparam(c, "B"), dim = iparam(c, "dim"), flip = iparam(c, "flip_sin_to_cos");
  float shift = fparam(c, "downscale_freq_shift"), scale = fparam(c, "scale");
  float period = fparam(c, "max_period");
  const float *t = tensor(c, "timesteps", NULL);
  float *out = zeros_like(c, "out"), *dt = zeros_like(c, "dtimesteps");
  kn_timestep_embedding_forward(ctx, out, t, B, dim, flip, shift, scale, period);
  kn_timestep_embedding_backward(ctx, dt, tensor(c, "dout", NULL), t, B, dim, flip, shift, scale, period);
  compare(c, "out", out, 3e-4);
  compare(c, "dtimesteps", dt, 3e-4);
  free(out), free(dt);
}

static void run_embedding(kn_ctx *ctx, const golden_case *c) {
  int B = iparam(c, "B"), T = iparam(c, "T"), C = iparam(c, "C"), V = iparam(c, "V");
  size_t n_ids = 0;
  const float *fids = tensor(c, "ids", &n_ids);
  int32_t ids[64];
  if (!fids || n_ids > 64 || n_ids != (size_t)B * T) {
    test_fail(__FILE__, __LINE__, "%s: ids do not fit B x T <= 64", c->name);
    return;
  }
  for (size_t i = 0; i < n_ids; i++) {
    ids[i] = (int32_t)fids[i];
    if (ids[i] < 0 || ids[i] >= V) {
      test_fail(__FILE__, __LINE__, "%s: id %d outside the vocabulary", c->name, ids[i]);
      return;
    }
  }
  float *out = zeros_like(c, "out"), *dwte = zeros_like(c, "dwte"), *dwpe = zeros_like(c, "dwpe");
  kn_embedding_forward(ctx, out, ids, tensor(c, "wte", NULL), tensor(c, "wpe", NULL), B, T, C);
  kn_embedding_backward(ctx, dwte, dwpe, tensor(c, "dout", NULL), ids, B, T, C);
  compare(c, "out", out, FWD_TOL);
  compare(c, "dwte", dwte, BWD_TOL);
  compare(c, "dwpe", dwpe, BWD_TOL);
  free(out), free(dwte), free(dwpe);
}

static void run_mse(kn_ctx *ctx, const golden_case *c) {
  int B = iparam(c, "B");
  size_t n = (size_t)iparam(c, "n");
  const float *pred = tensor(c, "pred", NULL), *target = tensor(c, "target", NULL);
  float *out = zeros_like(c, "out"), *dp = zeros_like(c, "dpred"), *dt = zeros_like(c, "dtarget");
  kn_mse_per_sample_forward(ctx, out, pred, target, B, n);
  kn_mse_per_sample_backward(ctx, dp, dt, tensor(c, "dout", NULL), pred, target, B, n);
  compare(c, "out", out, FWD_TOL);
  compare(c, "dpred", dp, BWD_TOL);
  compare(c, "dtarget", dt, BWD_TOL);
  free(out), free(dp), free(dt);
}

/* Every op of kernels.h must have at least one case. */
static const char *required_ops[] = {"linear", "conv2d", "group_norm", "layer_norm", "silu", "gelu",
                                     "gelu_tanh", "quick_gelu", "geglu", "softmax", "attention",
                                     "upsample2x", "timestep_embedding", "embedding", "add",
                                     "concat", "split", "mse_per_sample", "sum", "mean", "scale",
                                     "logsigmoid"};
#define N_REQUIRED ((int)(sizeof required_ops / sizeof required_ops[0]))

static void run_case(kn_ctx *ctx, const golden_case *c, const char *op) {
  if (!strcmp(op, "linear")) run_linear(ctx, c);
  else if (!strcmp(op, "conv2d")) run_conv2d(ctx, c);
  else if (!strcmp(op, "group_norm")) run_norm(ctx, c, 0);
  else if (!strcmp(op, "layer_norm")) run_norm(ctx, c, 1);
  else if (!strcmp(op, "attention")) run_attention(ctx, c);
  else if (!strcmp(op, "upsample2x")) run_upsample(ctx, c);
  else if (!strcmp(op, "add")) run_add(ctx, c);
  else if (!strcmp(op, "concat")) run_concat_split(ctx, c, 0);
  else if (!strcmp(op, "split")) run_concat_split(ctx, c, 1);
  else if (!strcmp(op, "timestep_embedding")) run_timestep(ctx, c);
  else if (!strcmp(op, "embedding")) run_embedding(ctx, c);
  else if (!strcmp(op, "mse_per_sample")) run_mse(ctx, c);
  else run_unary(ctx, c, op);
}

int main(void) {
  dpo_error err;
  char *data = NULL;
  size_t len = 0;
  json_t *index = dpo_json_load_file(test_source_path("tests/fixtures/kernels/index.json"), 1 << 20, &err);
  CHECK(index != NULL);
  CHECK_INT(dpo_read_file(test_source_path("tests/fixtures/kernels/golden.bin"), 16u << 20, &data, &len, &err),
            DPO_OK);
  if (!index || !data) return test_finish();
  int64_t n_floats = 0;
  CHECK_INT(dpo_json_get_int(index, "n_floats", &n_floats, "index.json", &err), DPO_OK);
  CHECK_INT(len, (size_t)n_floats * sizeof(float));
  blob = (float *)(void *)data; /* malloc'd by dpo_read_file, so aligned for floats */
  blob_floats = len / sizeof(float);
  kn_ctx ctx;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  const json_t *cases = json_object_get(index, "cases");
  int seen[N_REQUIRED] = {0};
  CHECK(json_array_size(cases) > 0);
  for (size_t i = 0; i < json_array_size(cases); i++) {
    const json_t *jc = json_array_get(cases, i);
    golden_case c = {json_object_get(jc, "tensors"), json_object_get(jc, "params"),
                     json_string_value(json_object_get(jc, "name"))};
    const char *op = json_string_value(json_object_get(jc, "op"));
    if (!op || !c.name || !json_is_object(c.tensors) || !json_is_object(c.params)) {
      test_fail(__FILE__, __LINE__, "case %zu of index.json is malformed", i);
      continue;
    }
    for (int r = 0; r < N_REQUIRED; r++)
      if (!strcmp(op, required_ops[r])) seen[r]++;
    run_case(&ctx, &c, op);
  }
  for (int r = 0; r < N_REQUIRED; r++)
    if (!seen[r]) test_fail(__FILE__, __LINE__, "no golden case for %s", required_ops[r]);
  kn_ctx_free(&ctx);
  json_decref(index);
  free(data);
  return test_finish();
}
