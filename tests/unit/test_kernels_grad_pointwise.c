/* Gradient checks of group norm, layer norm, the activations, GEGLU and
 * softmax, at several shapes including odd ones. These ops are smooth but
 * not linear, so the central difference carries an O(h^2) error:
 * h = 1e-2 with rtol 1e-2 and atol 1e-3 of the largest gradient (group and
 * layer norm over few values have large curvature; 2e-2 there). */
#include <stdio.h>

#include "tests/unit/gradcheck.h"

static const gc_tol smooth_tol = {1e-2, 1e-2, 1e-3, 0};
static const gc_tol norm_tol = {1e-2, 2e-2, 2e-3, 0};

typedef struct {
  gc_op op;
  float *inp, *gamma, *beta, *dinp, *dgamma, *dbeta, *mean, *rstd;
  int B, C, HW, G, layer;
} norm_case;

static void norm_fwd(gc_op *op) {
  norm_case *c = (norm_case *)op;
  if (c->layer)
    kn_layer_norm_forward(op->ctx, op->out, c->mean, c->rstd, c->inp, c->gamma, c->beta, c->B, c->C, 1e-5f);
  else
    kn_group_norm_forward(op->ctx, op->out, c->mean, c->rstd, c->inp, c->gamma, c->beta, c->B, c->C,
                          c->HW, c->G, 1e-5f);
}

static void norm_bwd(gc_op *op) {
  norm_case *c = (norm_case *)op;
  if (c->layer)
    kn_layer_norm_backward(op->ctx, c->dinp, c->dgamma, c->dbeta, op->dout, c->inp, c->mean, c->rstd,
                           c->gamma, c->B, c->C);
  else
    kn_group_norm_backward(op->ctx, c->dinp, c->dgamma, c->dbeta, op->dout, c->inp, c->mean, c->rstd,
                           c->gamma, c->B, c->C, c->HW, c->G);
}

/* layer = 1: layer norm over rows [B, C] (HW and G unused). */
static void check_norm(kn_ctx *ctx, int layer, int B, int C, int HW, int G) {
  norm_case c = {.B = B, .C = C, .HW = layer ? 1 : HW, .G = G, .layer = layer};
  size_t n = (size_t)B * C * c.HW;
  c.inp = gc_randn(n, 1.5f, 0.3f), c.gamma = gc_randn((size_t)C, 0.5f, 1), c.beta = gc_randn((size_t)C, 1, 0);
  c.dinp = gc_zeros(n), c.dgamma = gc_zeros((size_t)C), c.dbeta = gc_zeros((size_t)C);
  c.mean = gc_zeros((size_t)B * (layer ? 1 : G)), c.rstd = gc_zeros((size_t)B * (layer ? 1 : G));
  c.op = (gc_op){.forward = norm_fwd, .backward = norm_bwd, .ctx = ctx, .n_out = n};
  c.op.out = gc_zeros(n), c.op.dout = gc_randn(n, 1, 0);
  gc_add_tensor(&c.op, "inp", c.inp, c.dinp, n);
  gc_add_tensor(&c.op, "gamma", c.gamma, c.dgamma, (size_t)C);
  gc_add_tensor(&c.op, "beta", c.beta, c.dbeta, (size_t)C);
  char label[128];
  if (layer) snprintf(label, sizeof label, "layer_norm N=%d C=%d", B, C);
  else snprintf(label, sizeof label, "group_norm B=%d C=%d HW=%d G=%d", B, C, HW, G);
  CHECK_INT(gc_check(&c.op, label, norm_tol), 0);
  /* The output of each group (row) has mean beta-ish: check the statistics
   * themselves against a direct computation. */
  int groups = layer ? B : B * G;
  size_t gsize = n / (size_t)groups;
  for (int g = 0; g < groups; g++) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < gsize; i++) s += c.inp[g * gsize + i];
    double m = s / (double)gsize;
    for (size_t i = 0; i < gsize; i++) s2 += (c.inp[g * gsize + i] - m) * (c.inp[g * gsize + i] - m);
    CHECK_NEAR(c.mean[g], m, 1e-5);
    CHECK_NEAR(c.rstd[g], 1.0 / sqrt(s2 / (double)gsize + 1e-5), 1e-4 * c.rstd[g]);
  }
  free(c.inp), free(c.gamma), free(c.beta), free(c.dinp), free(c.dgamma), free(c.dbeta);
  free(c.mean), free(c.rstd), free(c.op.out), free(c.op.dout);
}

typedef struct {
  gc_op op;
  float *inp, *dinp;
  int kind; /* 0..3 activation, 4 GEGLU, 5 softmax */
  int N, D;
} pointwise_case;

static void pw_fwd(gc_op *op) {
  pointwise_case *c = (pointwise_case *)op;
  if (c->kind < 4) kn_activation_forward(op->ctx, (kn_activation)c->kind, op->out, c->inp, (size_t)c->N * c->D);
  else if (c->kind == 4) kn_geglu_forward(op->ctx, op->out, c->inp, c->N, c->D);
  else kn_softmax_forward(op->ctx, op->out, c->inp, c->N, c->D);
}

static void pw_bwd(gc_op *op) {
  pointwise_case *c = (pointwise_case *)op;
  if (c->kind < 4)
    kn_activation_backward(op->ctx, (kn_activation)c->kind, c->dinp, op->dout, c->inp, (size_t)c->N * c->D);
  else if (c->kind == 4) kn_geglu_backward(op->ctx, c->dinp, op->dout, c->inp, c->N, c->D);
  else kn_softmax_backward(op->ctx, c->dinp, op->dout, op->out, c->N, c->D);
}

static const char *kind_names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu", "geglu", "softmax"};

/* A scalar reference value of each activation, in double. */
static double act_reference(int kind, double x) {
  switch (kind) {
  case 0: return x / (1 + exp(-x));
  case 1: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
  case 2: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  default: return x / (1 + exp(-1.702 * x));
  }
}

static void check_pointwise(kn_ctx *ctx, int kind, int N, int D) {
  pointwise_case c = {.kind = kind, .N = N, .D = D};
  size_t n_in = (size_t)N * D * (kind == 4 ? 2 : 1), n_out = (size_t)N * D;
  c.inp = gc_randn(n_in, 2.0f, 0), c.dinp = gc_zeros(n_in);
  c.op = (gc_op){.forward = pw_fwd, .backward = pw_bwd, .ctx = ctx, .n_out = n_out};
  c.op.out = gc_zeros(n_out), c.op.dout = gc_randn(n_out, 1, 0);
  gc_add_tensor(&c.op, "inp", c.inp, c.dinp, n_in);
  char label[96];
  snprintf(label, sizeof label, "%s N=%d D=%d", kind_names[kind], N, D);
  CHECK_INT(gc_check(&c.op, label, smooth_tol), 0);
  for (int n = 0; n < N; n++) {
    double row_sum = 0;
    for (int d = 0; d < D; d++) {
      double want;
      if (kind < 4) want = act_reference(kind, c.inp[n * D + d]);
      else if (kind == 4) want = c.inp[n * 2 * D + d] * act_reference(1, c.inp[n * 2 * D + D + d]);
      else want = c.op.out[n * D + d];
      row_sum += c.op.out[n * D + d];
      CHECK_NEAR(c.op.out[n * D + d], want, 1e-5 * (1 + fabs(want)));
    }
    if (kind == 5) CHECK_NEAR(row_sum, 1.0, 1e-5);
  }
  free(c.inp), free(c.dinp), free(c.op.out), free(c.op.dout);
}

int main(void) {
  kn_ctx ctx;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  check_norm(&ctx, 0, 2, 4, 3, 2);
  check_norm(&ctx, 0, 1, 6, 5, 3);
  check_norm(&ctx, 0, 3, 5, 7, 1);
  check_norm(&ctx, 0, 1, 3, 3, 3); /* one channel per group */
  check_norm(&ctx, 1, 3, 7, 0, 0);
  check_norm(&ctx, 1, 1, 3, 0, 0);
  check_norm(&ctx, 1, 5, 70, 0, 0); /* more than one 64-channel block of dgamma */
  for (int kind = 0; kind < 6; kind++) {
    check_pointwise(&ctx, kind, 1, 1);
    check_pointwise(&ctx, kind, 3, 7);
    check_pointwise(&ctx, kind, 2, 16);
  }
  kn_ctx_free(&ctx);
  return test_finish();
}
