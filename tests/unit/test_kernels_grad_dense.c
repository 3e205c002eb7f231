/* Gradient checks of the GEMM-based ops: linear and conv2d (kernel 1 and 3,
 * stride 1 and 2, padding, bias), at several shapes including odd ones.
 * Tolerances: h = 1e-2 on N(0,1) inputs; the ops are linear in each
 * argument, so central differences are exact up to float rounding of L:
 * rtol 1e-3 and atol 1e-3 of the largest gradient. */
#include <stdio.h>

#include "tests/unit/gradcheck.h"

static const gc_tol linear_tol = {1e-2, 1e-3, 1e-3, 0};

typedef struct {
  gc_op op;
  float *inp, *w, *b, *dinp, *dw, *db;
  int N, IC, OC, use_bias;
} linear_case;

static void linear_fwd(gc_op *op) {
  linear_case *c = (linear_case *)op;
  kn_linear_forward(op->ctx, op->out, c->inp, c->w, c->use_bias ? c->b : NULL, c->N, c->IC, c->OC);
}

static void linear_bwd(gc_op *op) {
  linear_case *c = (linear_case *)op;
  kn_linear_backward(op->ctx, c->dinp, c->dw, c->use_bias ? c->db : NULL, op->dout, c->inp, c->w,
                     c->N, c->IC, c->OC);
}

static void check_linear(kn_ctx *ctx, int N, int IC, int OC, int use_bias) {
  linear_case c = {.N = N, .IC = IC, .OC = OC, .use_bias = use_bias};
  c.inp = gc_randn((size_t)N * IC, 1, 0), c.w = gc_randn((size_t)OC * IC, 0.5f, 0);
  c.b = gc_randn((size_t)OC, 1, 0);
  c.dinp = gc_zeros((size_t)N * IC), c.dw = gc_zeros((size_t)OC * IC), c.db = gc_zeros((size_t)OC);
  c.op = (gc_op){.forward = linear_fwd, .backward = linear_bwd, .ctx = ctx};
  c.op.n_out = (size_t)N * OC;
  c.op.out = gc_zeros(c.op.n_out), c.op.dout = gc_randn(c.op.n_out, 1, 0);
  gc_add_tensor(&c.op, "inp", c.inp, c.dinp, (size_t)N * IC);
  gc_add_tensor(&c.op, "weight", c.w, c.dw, (size_t)OC * IC);
  if (use_bias) gc_add_tensor(&c.op, "bias", c.b, c.db, (size_t)OC);
  char label[128];
  snprintf(label, sizeof label, "linear N=%d IC=%d OC=%d bias=%d", N, IC, OC, use_bias);
  CHECK_INT(gc_check(&c.op, label, linear_tol), 0);
  /* Forward against the defining sum. */
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      double s = use_bias ? c.b[o] : 0.0;
      for (int i = 0; i < IC; i++) s += (double)c.inp[n * IC + i] * c.w[o * IC + i];
      CHECK_NEAR(c.op.out[n * OC + o], s, 1e-4 * (1 + fabs(s)));
    }
  free(c.inp), free(c.w), free(c.b), free(c.dinp), free(c.dw), free(c.db), free(c.op.out), free(c.op.dout);
}

typedef struct {
  gc_op op;
  float *inp, *w, *b, *dinp, *dw, *db;
  int B, C, H, W, OC, K, stride, pad;
} conv_case;

static void conv_fwd(gc_op *op) {
  conv_case *c = (conv_case *)op;
  kn_conv2d_forward(op->ctx, op->out, c->inp, c->w, c->b, c->B, c->C, c->H, c->W, c->OC, c->K,
                    c->stride, c->pad);
}

static void conv_bwd(gc_op *op) {
  conv_case *c = (conv_case *)op;
  kn_conv2d_backward(op->ctx, c->dinp, c->dw, c->db, op->dout, c->inp, c->w, c->B, c->C, c->H, c->W,
                     c->OC, c->K, c->stride, c->pad);
}

/* The convolution by its definition, in double, for the forward check. */
static double conv_reference(const conv_case *c, int b, int oc, int oy, int ox) {
  double s = c->b[oc];
  for (int ic = 0; ic < c->C; ic++)
    for (int ki = 0; ki < c->K; ki++)
      for (int kj = 0; kj < c->K; kj++) {
        int iy = oy * c->stride - c->pad + ki, ix = ox * c->stride - c->pad + kj;
        if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
        s += (double)c->inp[(((size_t)b * c->C + ic) * c->H + iy) * c->W + ix] *
             c->w[(((size_t)oc * c->C + ic) * c->K + ki) * c->K + kj];
      }
  return s;
}

static void check_conv_probes(kn_ctx *ctx, int B, int C, int H, int W, int OC, int K, int stride,
                              int pad, size_t probes) {
  conv_case c = {.B = B, .C = C, .H = H, .W = W, .OC = OC, .K = K, .stride = stride, .pad = pad};
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  size_t n_in = (size_t)B * C * H * W, n_w = (size_t)OC * C * K * K;
  c.inp = gc_randn(n_in, 1, 0), c.w = gc_randn(n_w, 0.5f, 0), c.b = gc_randn((size_t)OC, 1, 0);
  c.dinp = gc_zeros(n_in), c.dw = gc_zeros(n_w), c.db = gc_zeros((size_t)OC);
  c.op = (gc_op){.forward = conv_fwd, .backward = conv_bwd, .ctx = ctx};
  c.op.n_out = (size_t)B * OC * Ho * Wo;
  c.op.out = gc_zeros(c.op.n_out), c.op.dout = gc_randn(c.op.n_out, 1, 0);
  gc_add_tensor(&c.op, "inp", c.inp, c.dinp, n_in);
  gc_add_tensor(&c.op, "weight", c.w, c.dw, n_w);
  gc_add_tensor(&c.op, "bias", c.b, c.db, (size_t)OC);
  char label[160];
  snprintf(label, sizeof label, "conv2d B=%d C=%d %dx%d OC=%d K=%d stride=%d pad=%d", B, C, H, W, OC,
           K, stride, pad);
  gc_tol tol = linear_tol;
  tol.max_probe = probes;
  CHECK_INT(gc_check(&c.op, label, tol), 0);
  for (int b = 0; b < B; b++)
    for (int oc = 0; oc < OC; oc++)
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++) {
          double want = conv_reference(&c, b, oc, oy, ox);
          float got = c.op.out[(((size_t)b * OC + oc) * Ho + oy) * Wo + ox];
          if (fabs(got - want) > 1e-4 * (1 + fabs(want))) {
            test_fail(__FILE__, __LINE__, "%s: out[%d,%d,%d,%d] = %g, expected %g", label, b, oc, oy,
                      ox, got, want);
            b = B, oc = OC, oy = Ho, ox = Wo; /* one message is enough */
          }
        }
  free(c.inp), free(c.w), free(c.b), free(c.dinp), free(c.dw), free(c.db), free(c.op.out), free(c.op.dout);
}

static void check_conv(kn_ctx *ctx, int B, int C, int H, int W, int OC, int K, int stride, int pad) {
  check_conv_probes(ctx, B, C, H, W, OC, K, stride, pad, 0);
}

int main(void) {
  kn_ctx ctx;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  check_linear(&ctx, 1, 1, 1, 1);
  check_linear(&ctx, 3, 5, 7, 1);
  check_linear(&ctx, 6, 4, 3, 0);
  check_linear(&ctx, 9, 17, 66, 1); /* more than one 64-column block of dbias */
  /* Every conv case under both forward routes: im2col + sgemm (the default) and Winograd. */
  for (int winograd = 0; winograd <= 1; winograd++) {
    ctx.winograd_forward = winograd;
    check_conv(&ctx, 1, 2, 5, 5, 3, 3, 1, 1);
    check_conv(&ctx, 2, 3, 7, 6, 2, 3, 2, 1);
    check_conv(&ctx, 2, 2, 6, 5, 3, 3, 1, 0);
    check_conv(&ctx, 1, 3, 4, 7, 5, 1, 1, 0);
    check_conv(&ctx, 2, 3, 5, 5, 2, 1, 2, 0);
    check_conv(&ctx, 1, 2, 3, 3, 2, 3, 1, 2); /* padding wider than the image edge */
    check_conv(&ctx, 1, 1, 1, 1, 1, 3, 1, 1);
    check_conv(&ctx, 1, 1, 4, 4, 1, 3, 1, 3); /* pad 3: Winograd forward, im2col data gradient */
    check_conv(&ctx, 3, 2, 5, 4, 3, 3, 1, 1); /* several images share the transformed weights */
    /* Wider than Winograd's row buffer: the im2col route for a 3x3 stride-1 conv. */
    check_conv_probes(&ctx, 1, 1, 3, 1100, 2, 3, 1, 1, 40);
  }
  kn_ctx_free(&ctx);
  return test_finish();
}
