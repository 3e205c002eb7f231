/* Attention: gradient checks of dq, dk, dv (self and cross, causal or not,
 * odd sizes, more queries than one block), forward and backward against
 * the naive O(N^2) formula in double, the lse it saves, and bitwise
 * repeatability with two threads. Gradcheck tolerances: h = 1e-2, rtol
 * 1e-2, atol 1e-3 of the largest gradient (softmax is smooth, curvature
 * O(1) on N(0,1) inputs). */
#include <stdio.h>

#include "tests/unit/gradcheck.h"

static const gc_tol attn_tol = {1e-2, 1e-2, 1e-3, 40};

typedef struct {
  gc_op op;
  float *q, *k, *v, *dq, *dk, *dv, *lse;
  int B, H, Nq, Nk, D, causal;
  float scale;
} attn_case;

static void attn_fwd(gc_op *op) {
  attn_case *c = (attn_case *)op;
  kn_attention_forward(op->ctx, op->out, c->lse, c->q, c->k, c->v, c->B, c->H, c->Nq, c->Nk, c->D,
                       c->scale, c->causal);
}

static void attn_bwd(gc_op *op) {
  attn_case *c = (attn_case *)op;
  kn_attention_backward(op->ctx, c->dq, c->dk, c->dv, op->dout, c->q, c->k, c->v, op->out, c->lse,
                        c->B, c->H, c->Nq, c->Nk, c->D, c->scale, c->causal);
}

static attn_case make_case(kn_ctx *ctx, int B, int H, int Nq, int Nk, int D, int causal) {
  attn_case c = {.B = B, .H = H, .Nq = Nq, .Nk = Nk, .D = D, .causal = causal};
  c.scale = 1.0f / sqrtf((float)D);
  size_t nq = (size_t)B * Nq * H * D, nk = (size_t)B * Nk * H * D;
  c.q = gc_randn(nq, 1, 0), c.k = gc_randn(nk, 1, 0), c.v = gc_randn(nk, 1, 0);
  c.dq = gc_zeros(nq), c.dk = gc_zeros(nk), c.dv = gc_zeros(nk), c.lse = gc_zeros((size_t)B * H * Nq);
  c.op = (gc_op){.forward = attn_fwd, .backward = attn_bwd, .ctx = ctx, .n_out = nq};
  c.op.out = gc_zeros(nq), c.op.dout = gc_randn(nq, 1, 0);
  gc_add_tensor(&c.op, "q", c.q, c.dq, nq);
  gc_add_tensor(&c.op, "k", c.k, c.dk, nk);
  gc_add_tensor(&c.op, "v", c.v, c.dv, nk);
  return c;
}

static void free_case(attn_case *c) {
  free(c->q), free(c->k), free(c->v), free(c->dq), free(c->dk), free(c->dv), free(c->lse);
  free(c->op.out), free(c->op.dout);
}

static void check_grad(kn_ctx *ctx, int B, int H, int Nq, int Nk, int D, int causal) {
  attn_case c = make_case(ctx, B, H, Nq, Nk, D, causal);
  char label[128];
  snprintf(label, sizeof label, "attention B=%d H=%d Nq=%d Nk=%d D=%d causal=%d", B, H, Nq, Nk, D, causal);
  CHECK_INT(gc_check(&c.op, label, attn_tol), 0);
  free_case(&c);
}

/* The textbook formula per (b, h): S = scale q k^T, P = softmax(S), O = P v;
 * dP = dO v^T, dS = P (dP - rowsum(dP P)), dq = scale dS k, dk = scale dS^T q,
 * dv = P^T dO. All in double, O(Nq Nk) memory. */
static void check_naive(kn_ctx *ctx, int B, int H, int Nq, int Nk, int D, int causal) {
  attn_case c = make_case(ctx, B, H, Nq, Nk, D, causal);
  attn_fwd(&c.op);
  attn_bwd(&c.op);
  int HD = H * D;
  size_t nq = (size_t)B * Nq * HD, nk = (size_t)B * Nk * HD;
  double *P = malloc(sizeof(double) * (size_t)Nq * Nk), *dS = malloc(sizeof(double) * (size_t)Nq * Nk);
  float *out = gc_zeros(nq), *dq = gc_zeros(nq), *dk = gc_zeros(nk), *dv = gc_zeros(nk);
  float *lse = gc_zeros((size_t)B * H * Nq);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
#define Q(i, d) c.q[((size_t)(b * Nq + (i))) * HD + h * D + (d)]
#define K(j, d) c.k[((size_t)(b * Nk + (j))) * HD + h * D + (d)]
#define V(j, d) c.v[((size_t)(b * Nk + (j))) * HD + h * D + (d)]
#define DO(i, d) c.op.dout[((size_t)(b * Nq + (i))) * HD + h * D + (d)]
      for (int i = 0; i < Nq; i++) {
        double m = -INFINITY, sum = 0;
        for (int j = 0; j < Nk; j++) {
          double s = 0;
          for (int d = 0; d < D; d++) s += (double)Q(i, d) * K(j, d);
          s *= c.scale;
          if (causal && j > i) s = -INFINITY;
          P[(size_t)i * Nk + j] = s;
          if (s > m) m = s;
        }
        for (int j = 0; j < Nk; j++) sum += (P[(size_t)i * Nk + j] = exp(P[(size_t)i * Nk + j] - m));
        for (int j = 0; j < Nk; j++) P[(size_t)i * Nk + j] /= sum;
        lse[((size_t)b * H + h) * Nq + i] = (float)(m + log(sum));
        for (int d = 0; d < D; d++) {
          double o = 0;
          for (int j = 0; j < Nk; j++) o += P[(size_t)i * Nk + j] * V(j, d);
          out[((size_t)(b * Nq + i)) * HD + h * D + d] = (float)o;
        }
        double rowdot = 0;
        for (int j = 0; j < Nk; j++) {
          double dp = 0;
          for (int d = 0; d < D; d++) dp += (double)DO(i, d) * V(j, d);
          dS[(size_t)i * Nk + j] = dp;
          rowdot += dp * P[(size_t)i * Nk + j];
        }
        for (int j = 0; j < Nk; j++) dS[(size_t)i * Nk + j] = P[(size_t)i * Nk + j] * (dS[(size_t)i * Nk + j] - rowdot);
      }
      for (int i = 0; i < Nq; i++)
        for (int d = 0; d < D; d++) {
          double g = 0;
          for (int j = 0; j < Nk; j++) g += dS[(size_t)i * Nk + j] * K(j, d);
          dq[((size_t)(b * Nq + i)) * HD + h * D + d] = (float)(c.scale * g);
        }
      for (int j = 0; j < Nk; j++)
        for (int d = 0; d < D; d++) {
          double gk = 0, gv = 0;
          for (int i = 0; i < Nq; i++) {
            gk += dS[(size_t)i * Nk + j] * Q(i, d);
            gv += P[(size_t)i * Nk + j] * DO(i, d);
          }
          dk[((size_t)(b * Nk + j)) * HD + h * D + d] = (float)(c.scale * gk);
          dv[((size_t)(b * Nk + j)) * HD + h * D + d] = (float)gv;
        }
#undef Q
#undef K
#undef V
#undef DO
    }
  char label[128];
  snprintf(label, sizeof label, "naive attention B=%d H=%d Nq=%d Nk=%d D=%d causal=%d", B, H, Nq, Nk, D, causal);
  double e_out = gc_max_rel_err(c.op.out, out, nq), e_lse = gc_max_rel_err(c.lse, lse, (size_t)B * H * Nq);
  double e_dq = gc_max_rel_err(c.dq, dq, nq), e_dk = gc_max_rel_err(c.dk, dk, nk);
  double e_dv = gc_max_rel_err(c.dv, dv, nk);
  if (e_out > 1e-5 || e_lse > 1e-5 || e_dq > 1e-4 || e_dk > 1e-4 || e_dv > 1e-4)
    test_fail(__FILE__, __LINE__, "%s: relative errors out %.3g lse %.3g dq %.3g dk %.3g dv %.3g", label,
              e_out, e_lse, e_dq, e_dk, e_dv);
  free(P), free(dS), free(out), free(dq), free(dk), free(dv), free(lse);
  free_case(&c);
}

/* Two runs with the same thread count give the same bits. */
static void check_repeatable(kn_ctx *ctx) {
  attn_case c = make_case(ctx, 2, 3, 150, 97, 8, 0);
  size_t nq = (size_t)2 * 150 * 24, nk = (size_t)2 * 97 * 24;
  attn_fwd(&c.op);
  attn_bwd(&c.op);
  float *o1 = malloc(nq * sizeof(float)), *k1 = malloc(nk * sizeof(float));
  memcpy(o1, c.op.out, nq * sizeof(float));
  memcpy(k1, c.dk, nk * sizeof(float));
  memset(c.dk, 0, nk * sizeof(float));
  attn_fwd(&c.op);
  attn_bwd(&c.op);
  CHECK(memcmp(o1, c.op.out, nq * sizeof(float)) == 0);
  CHECK(memcmp(k1, c.dk, nk * sizeof(float)) == 0);
  free(o1), free(k1);
  free_case(&c);
}

/* The scratch that a planner reserves is enough: no growth in the step, and
 * it depends on neither Nq nor Nk (tiles only). */
static void check_scratch_plan(void) {
  kn_ctx ctx;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  CHECK_INT(kn_ctx_reserve(&ctx, kn_attention_scratch_bytes(2, 200, 90), &err), DPO_OK);
  attn_case c = make_case(&ctx, 1, 2, 200, 90, 4, 1);
  attn_fwd(&c.op);
  attn_bwd(&c.op);
  CHECK_INT(ctx.scratch_grows, 0);
  CHECK(kn_attention_scratch_bytes(2, 4096, 4096) < (size_t)4096 * 4096 * sizeof(float) / 4);
  CHECK(kn_attention_scratch_bytes(2, 8192, 4096) == kn_attention_scratch_bytes(2, 4096, 4096));
  CHECK(kn_attention_scratch_bytes(2, 4096, 8192) == kn_attention_scratch_bytes(2, 4096, 77));
  free_case(&c);
  kn_ctx_free(&ctx);
}

int main(void) {
  kn_ctx ctx;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  check_grad(&ctx, 1, 1, 1, 1, 1, 0);
  check_grad(&ctx, 1, 2, 5, 5, 3, 0);
  check_grad(&ctx, 2, 1, 5, 5, 4, 1);
  check_grad(&ctx, 1, 2, 6, 3, 5, 0);  /* cross-attention: fewer keys than queries */
  check_grad(&ctx, 1, 1, 3, 7, 2, 1);  /* causal with more keys than queries */
  check_grad(&ctx, 1, 1, 70, 9, 3, 0); /* more than one query block */
  check_grad(&ctx, 1, 1, 67, 67, 2, 1);
  check_grad(&ctx, 1, 1, 3, 530, 2, 0); /* three key blocks: the online softmax rescales */
  check_naive(&ctx, 2, 3, 130, 77, 5, 0);
  check_naive(&ctx, 1, 2, 130, 130, 8, 1);
  check_naive(&ctx, 1, 1, 64, 200, 3, 1);
  check_naive(&ctx, 1, 2, 300, 600, 4, 0);  /* several query and key blocks */
  check_naive(&ctx, 1, 1, 300, 300, 3, 1);
  check_naive(&ctx, 1, 1, 5, 700, 2, 1);    /* causal, far more keys than queries */
  check_repeatable(&ctx);
  check_scratch_plan();
  kn_ctx_free(&ctx);
  return test_finish();
}
