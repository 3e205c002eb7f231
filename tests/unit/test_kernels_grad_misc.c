/* Gradient checks of the routing, embedding and loss ops: upsample, add,
 * concat, split, timestep embedding, token + position embedding, per-sample
 * MSE, sum, mean, scale and log-sigmoid, at several shapes including odd
 * ones. Linear ops use rtol 1e-3; the smooth ones (sin/cos, squares,
 * log-sigmoid) rtol 1e-2; h = 1e-2 throughout, atol 1e-3 of the largest
 * gradient. */
#include <stdio.h>

#include "tests/unit/gradcheck.h"

static const gc_tol linear_tol = {1e-2, 1e-3, 1e-3, 0};
static const gc_tol smooth_tol = {1e-2, 1e-2, 1e-3, 0};

typedef enum {
  M_UPSAMPLE, M_ADD, M_CONCAT, M_SPLIT, M_TIMESTEP, M_EMBED, M_MSE, M_SUM, M_MEAN, M_SCALE, M_LOGSIG
} misc_kind;

static const char *misc_names[] = {"upsample2x", "add", "concat", "split", "timestep_embedding",
                                   "embedding", "mse_per_sample", "sum", "mean", "scale", "logsigmoid"};

/* d[] holds the shape: upsample B C H W; add/scale/sum/mean/logsig n;
 * concat/split outer Ca Cb inner; timestep B dim flip; embed B T C V;
 * mse B n. */
typedef struct {
  gc_op op;
  misc_kind kind;
  int d[4];
  float *x0, *x1, *g0, *g1;
  int32_t *ids;
} misc_case;

static void misc_fwd(gc_op *op) {
  misc_case *c = (misc_case *)op;
  int *d = c->d;
  kn_ctx *ctx = op->ctx;
  switch (c->kind) {
  case M_UPSAMPLE: kn_upsample2x_forward(ctx, op->out, c->x0, d[0], d[1], d[2], d[3]); break;
  case M_ADD: kn_add_forward(ctx, op->out, c->x0, c->x1, (size_t)d[0]); break;
  case M_CONCAT: kn_concat_forward(ctx, op->out, c->x0, c->x1, d[0], d[1], d[2], d[3]); break;
  case M_SPLIT:
    kn_split_forward(ctx, op->out, op->out + (size_t)d[0] * d[1] * d[3], c->x0, d[0], d[1], d[2], d[3]);
    break;
  case M_TIMESTEP: kn_timestep_embedding_forward(ctx, op->out, c->x0, d[0], d[1], d[2], 1.0f, 1.0f, 10000.0f); break;
  case M_EMBED: kn_embedding_forward(ctx, op->out, c->ids, c->x0, c->x1, d[0], d[1], d[2]); break;
  case M_MSE: kn_mse_per_sample_forward(ctx, op->out, c->x0, c->x1, d[0], (size_t)d[1]); break;
  case M_SUM: kn_sum_forward(ctx, op->out, c->x0, (size_t)d[0]); break;
  case M_MEAN: kn_mean_forward(ctx, op->out, c->x0, (size_t)d[0]); break;
  case M_SCALE: kn_scale_forward(ctx, op->out, c->x0, -2.5f, (size_t)d[0]); break;
  case M_LOGSIG: kn_logsigmoid_forward(ctx, op->out, c->x0, (size_t)d[0]); break;
  }
}

static void misc_bwd(gc_op *op) {
  misc_case *c = (misc_case *)op;
  int *d = c->d;
  kn_ctx *ctx = op->ctx;
  switch (c->kind) {
  case M_UPSAMPLE: kn_upsample2x_backward(ctx, c->g0, op->dout, d[0], d[1], d[2], d[3]); break;
  case M_ADD: kn_add_backward(ctx, c->g0, c->g1, op->dout, (size_t)d[0]); break;
  case M_CONCAT: kn_concat_backward(ctx, c->g0, c->g1, op->dout, d[0], d[1], d[2], d[3]); break;
  case M_SPLIT:
    kn_split_backward(ctx, c->g0, op->dout, op->dout + (size_t)d[0] * d[1] * d[3], d[0], d[1], d[2], d[3]);
    break;
  case M_TIMESTEP:
    kn_timestep_embedding_backward(ctx, c->g0, op->dout, c->x0, d[0], d[1], d[2], 1.0f, 1.0f, 10000.0f);
    break;
  case M_EMBED: kn_embedding_backward(ctx, c->g0, c->g1, op->dout, c->ids, d[0], d[1], d[2]); break;
  case M_MSE: kn_mse_per_sample_backward(ctx, c->g0, c->g1, op->dout, c->x0, c->x1, d[0], (size_t)d[1]); break;
  case M_SUM: kn_sum_backward(ctx, c->g0, op->dout, (size_t)d[0]); break;
  case M_MEAN: kn_mean_backward(ctx, c->g0, op->dout, (size_t)d[0]); break;
  case M_SCALE: kn_scale_backward(ctx, c->g0, op->dout, -2.5f, (size_t)d[0]); break;
  case M_LOGSIG: kn_logsigmoid_backward(ctx, c->g0, op->dout, c->x0, (size_t)d[0]); break;
  }
}

static void check_misc(kn_ctx *ctx, misc_kind kind, int d0, int d1, int d2, int d3) {
  misc_case c = {.kind = kind, .d = {d0, d1, d2, d3}};
  size_t n0 = 0, n1 = 0, n_out = 0;
  switch (kind) {
  case M_UPSAMPLE: n0 = (size_t)d0 * d1 * d2 * d3, n_out = 4 * n0; break;
  case M_ADD: n0 = n1 = n_out = (size_t)d0; break;
  case M_CONCAT:
  case M_SPLIT:
    n0 = (size_t)d0 * d1 * d3, n1 = (size_t)d0 * d2 * d3, n_out = n0 + n1;
    if (kind == M_SPLIT) n0 = n_out, n1 = 0;
    break;
  case M_TIMESTEP: n0 = (size_t)d0, n_out = (size_t)d0 * d1; break;
  case M_EMBED: n0 = (size_t)d3 * d2, n1 = (size_t)d1 * d2, n_out = (size_t)d0 * d1 * d2; break;
  case M_MSE: n0 = n1 = (size_t)d0 * d1, n_out = (size_t)d0; break;
  case M_SUM:
  case M_MEAN: n0 = (size_t)d0, n_out = 1; break;
  case M_SCALE:
  case M_LOGSIG: n0 = n_out = (size_t)d0; break;
  }
  c.x0 = gc_randn(n0, kind == M_LOGSIG ? 4.0f : 1.0f, 0), c.g0 = gc_zeros(n0);
  c.x1 = gc_randn(n1, 1, 0), c.g1 = gc_zeros(n1);
  if (kind == M_TIMESTEP)
    for (size_t i = 0; i < n0; i++) c.x0[i] = 0.5f + 1.7f * (float)i;
  c.ids = calloc((size_t)(d0 * d1 > 0 ? d0 * d1 : 1), sizeof(int32_t));
  if (kind == M_EMBED)
    for (int i = 0; i < d0 * d1; i++) c.ids[i] = (i * 7 + 3) % d3; /* repeats when B*T > V */
  c.op = (gc_op){.forward = misc_fwd, .backward = misc_bwd, .ctx = ctx, .n_out = n_out};
  c.op.out = gc_zeros(n_out), c.op.dout = gc_randn(n_out, 1, 0);
  gc_add_tensor(&c.op, kind == M_EMBED ? "wte" : "x0", c.x0, c.g0, n0);
  if (n1) gc_add_tensor(&c.op, kind == M_EMBED ? "wpe" : "x1", c.x1, c.g1, n1);
  char label[128];
  snprintf(label, sizeof label, "%s %d %d %d %d", misc_names[kind], d0, d1, d2, d3);
  int smooth = kind == M_TIMESTEP || kind == M_MSE || kind == M_LOGSIG;
  CHECK_INT(gc_check(&c.op, label, smooth ? smooth_tol : linear_tol), 0);
  free(c.x0), free(c.x1), free(c.g0), free(c.g1), free(c.ids), free(c.op.out), free(c.op.dout);
}

/* Forward values that the gradient check cannot see. */
static void test_forward_values(kn_ctx *ctx) {
  float x[6] = {1, 2, 3, 4, 5, 6}, up[24];
  kn_upsample2x_forward(ctx, up, x, 1, 1, 2, 3);
  CHECK_NEAR(up[0], 1, 0);
  CHECK_NEAR(up[1], 1, 0);
  CHECK_NEAR(up[6], 1, 0);
  CHECK_NEAR(up[23], 6, 0);
  CHECK_NEAR(up[12 + 2], 5, 0); /* row 2, column 2 comes from x[1][1] */
  float a[4] = {1, 2, 3, 4}, b[2] = {9, 8}, cat[6], sa[4], sb[2];
  kn_concat_forward(ctx, cat, a, b, 2, 2, 1, 1); /* [1 2 9 | 3 4 8] */
  float want_cat[6] = {1, 2, 9, 3, 4, 8};
  for (int i = 0; i < 6; i++) CHECK_NEAR(cat[i], want_cat[i], 0);
  kn_split_forward(ctx, sa, sb, cat, 2, 2, 1, 1);
  for (int i = 0; i < 4; i++) CHECK_NEAR(sa[i], a[i], 0);
  for (int i = 0; i < 2; i++) CHECK_NEAR(sb[i], b[i], 0);
  /* Sum over many chunks equals the exact sum, for 1 and 2 threads. */
  size_t n = 3 * 4096 * 50 + 17; /* many KN_REDUCE_CHUNK-sized chunks */
  float *ones = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) ones[i] = (float)(i % 3);
  float s1, s2;
  kn_sum_forward(ctx, &s1, ones, n);
  kn_ctx one;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&one, 1, &err), DPO_OK);
  kn_sum_forward(&one, &s2, ones, n);
  CHECK_NEAR(s1, (double)((n / 3) * 3 + (n % 3 == 2 ? 1 : 0)), 0);
  CHECK(memcmp(&s1, &s2, sizeof s1) == 0);
  kn_ctx_free(&one);
  free(ones);
  /* log-sigmoid far from 0: no overflow, the right limits. */
  float big[2] = {-100.0f, 100.0f}, ls[2];
  kn_logsigmoid_forward(ctx, ls, big, 2);
  CHECK_NEAR(ls[0], -100.0, 1e-4);
  CHECK_NEAR(ls[1], 0.0, 1e-30);
  /* Timestep embedding of t = 0: sin 0 = 0, cos 0 = 1, odd dim padded. */
  float t0 = 0.0f, emb[5];
  kn_timestep_embedding_forward(ctx, emb, &t0, 1, 5, 0, 1.0f, 1.0f, 10000.0f);
  CHECK_NEAR(emb[0], 0, 0);
  CHECK_NEAR(emb[1], 0, 0);
  CHECK_NEAR(emb[2], 1, 0);
  CHECK_NEAR(emb[3], 1, 0);
  CHECK_NEAR(emb[4], 0, 0);
}

int main(void) {
  kn_ctx ctx;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  check_misc(&ctx, M_UPSAMPLE, 1, 1, 1, 1);
  check_misc(&ctx, M_UPSAMPLE, 2, 3, 3, 5);
  check_misc(&ctx, M_ADD, 1, 0, 0, 0);
  check_misc(&ctx, M_ADD, 37, 0, 0, 0);
  check_misc(&ctx, M_CONCAT, 2, 3, 1, 5);
  check_misc(&ctx, M_CONCAT, 1, 2, 4, 1);
  check_misc(&ctx, M_SPLIT, 3, 1, 2, 3);
  check_misc(&ctx, M_SPLIT, 2, 4, 3, 1);
  check_misc(&ctx, M_TIMESTEP, 3, 8, 0, 0);
  check_misc(&ctx, M_TIMESTEP, 2, 9, 1, 0); /* odd dim, flipped */
  check_misc(&ctx, M_EMBED, 2, 5, 3, 4);
  check_misc(&ctx, M_EMBED, 1, 3, 67, 7);
  check_misc(&ctx, M_MSE, 3, 5, 0, 0);
  check_misc(&ctx, M_MSE, 1, 1, 0, 0);
  check_misc(&ctx, M_SUM, 1, 0, 0, 0);
  check_misc(&ctx, M_SUM, 23, 0, 0, 0);
  check_misc(&ctx, M_MEAN, 19, 0, 0, 0);
  check_misc(&ctx, M_SCALE, 11, 0, 0, 0);
  check_misc(&ctx, M_LOGSIG, 13, 0, 0, 0);
  test_forward_values(&ctx);
  kn_ctx_free(&ctx);
  return test_finish();
}
