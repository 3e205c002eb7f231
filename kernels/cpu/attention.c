/* Scaled dot-product attention, flash-attention style.
 *
 * Forward takes a block of Q_BLOCK queries of one head and walks the keys in
 * blocks of KV_BLOCK: the score tile S = scale q k^T is one sgemm, an online
 * softmax keeps each row's running max m and sum l (rescaling what was
 * accumulated when m grows), and out += P v is a second sgemm. Only the row
 * log-sum-exp m + log l is kept; backward recomputes P from it tile by tile.
 * Memory is threads x tiles of Q_BLOCK x KV_BLOCK, whatever Nq and Nk are,
 * and each tile stays in the core's L2 through the softmax passes.
 *
 * Threads: OpenMP splits the (batch, head, query block) tasks and each task
 * calls single-threaded sgemms. Backward splits over (batch, head) only,
 * because dk and dv of one head sum over its query blocks, which a single
 * thread then does in a fixed order. */
#include <omp.h>
#include <stdlib.h>

#include "kernels/cpu/cpu.h"

/* Tile sizes: a 256 x 256 float tile is 256 KiB, so forward's tile and
 * backward's two (P and dP) fit the 1 MiB L2 of a Zen 4 core. Of the sizes
 * tried there (32..512 x 64..512) at SD1.5 shapes, this was fastest in both
 * directions (process CPU time, one thread, 4096 tokens, heads of 40). */
#define Q_BLOCK 256
#define KV_BLOCK 256

/* Per thread: the scores tile, its gradient, and two floats per query row. */
static size_t floats_per_thread(void) { return (size_t)Q_BLOCK * KV_BLOCK * 2 + 2 * Q_BLOCK; }

size_t kn_attention_scratch_bytes(int ctx_threads, int Nq, int Nk) {
  (void)Nq, (void)Nk;
  if (ctx_threads < 1) ctx_threads = 1;
  return (size_t)ctx_threads * floats_per_thread() * sizeof(float);
}

static float *attention_scratch(kn_ctx *ctx) {
  float *s = kn_ctx_scratch(ctx, kn_attention_scratch_bytes(kn_threads(ctx), 0, 0));
  if (!s) abort(); /* out of memory in a planned step */
  return s;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* Keys that query row i may see: all, or 0..i under the causal mask. */
static int visible_keys(int i, int Nk, int causal) { return causal ? min_int(i + 1, Nk) : Nk; }

/* Of the keys j0 .. j0+cols-1, how many query row i sees (a prefix). */
static int visible_in_block(int i, int j0, int cols, int Nk, int causal) {
  int v = visible_keys(i, Nk, causal) - j0;
  return v < 0 ? 0 : min_int(v, cols);
}

/* One query block of one head. q_blk, out_blk: rows HD apart; k_head,
 * v_head: the head's first key row. m and l are per-row scratch. */
static void forward_block(float *S, float *m, float *l, float *out_blk, float *lse_blk,
                          const float *q_blk, const float *k_head, const float *v_head, int i0,
                          int rows, int Nk, int D, int HD, float scale, int causal) {
  int nk = causal ? visible_keys(i0 + rows - 1, Nk, 1) : Nk;
  for (int j0 = 0; j0 < nk; j0 += KV_BLOCK) {
    int cols = min_int(KV_BLOCK, nk - j0);
    kn_sgemm(0, 1, rows, cols, D, scale, q_blk, HD, k_head + (size_t)j0 * HD, HD, 0.0f, S, cols);
    for (int r = 0; r < rows; r++) {
      float *s = S + (size_t)r * cols;
      int valid = visible_in_block(i0 + r, j0, cols, Nk, causal);
      float m_old = j0 == 0 ? -INFINITY : m[r];
      float m_new = valid > 0 ? kn_row_max(s, valid) : m_old;
      if (m_old > m_new) m_new = m_old;
      float sum = valid > 0 ? kn_row_exp_sum(s, valid, m_new) : 0.0f;
      for (int j = valid; j < cols; j++) s[j] = 0.0f;
      if (j0 == 0) {
        l[r] = sum;
      } else {
        /* The running max grew: what was accumulated shrinks by e^(m_old - m_new). */
        float alpha = m_old == m_new ? 1.0f : kn_expf(m_old - m_new);
        l[r] = l[r] * alpha + sum;
        if (alpha != 1.0f) {
          float *o = out_blk + (size_t)r * HD;
          for (int d = 0; d < D; d++) o[d] *= alpha;
        }
      }
      m[r] = m_new;
    }
    kn_sgemm(0, 0, rows, D, cols, 1.0f, S, cols, v_head + (size_t)j0 * HD, HD, j0 == 0 ? 0.0f : 1.0f,
             out_blk, HD);
  }
  for (int r = 0; r < rows; r++) {
    float inv = 1.0f / l[r], *o = out_blk + (size_t)r * HD;
    for (int d = 0; d < D; d++) o[d] *= inv;
    lse_blk[r] = m[r] + logf(l[r]);
  }
}

void kn_cpu_attention_forward(kn_ctx *ctx, float *out, float *lse, const float *q, const float *k,
                              const float *v, int B, int H, int Nq, int Nk, int D, float scale,
                              int causal) {
  int HD = H * D;
  int n_blocks = (Nq + Q_BLOCK - 1) / Q_BLOCK;
  int n_tasks = B * H * n_blocks;
  float *scratch = attention_scratch(ctx);
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * H * Nq * Nk * D)) schedule(static)
  for (int t = 0; t < n_tasks; t++) {
    int blk = t % n_blocks, h = (t / n_blocks) % H, b = t / (n_blocks * H);
    int i0 = blk * Q_BLOCK, rows = min_int(Nq - i0, Q_BLOCK);
    float *S = scratch + (size_t)omp_get_thread_num() * floats_per_thread();
    float *m = S + (size_t)Q_BLOCK * KV_BLOCK * 2, *l = m + Q_BLOCK;
    size_t q_off = ((size_t)b * Nq + i0) * HD + (size_t)h * D;
    size_t kv_off = (size_t)b * Nk * HD + (size_t)h * D;
    forward_block(S, m, l, out + q_off, lse + ((size_t)b * H + h) * Nq + i0, q + q_off, k + kv_off,
                  v + kv_off, i0, rows, Nk, D, HD, scale, causal);
  }
}

/* Backward of one head: query blocks in order, key blocks in order within. */
static void backward_head(float *work, float *dq_head, float *dk_head, float *dv_head,
                          const float *dout_head, const float *q_head, const float *k_head,
                          const float *v_head, const float *out_head, const float *lse_head,
                          int Nq, int Nk, int D, int HD, float scale, int causal) {
  float *P = work, *dP = work + (size_t)Q_BLOCK * KV_BLOCK, *delta = dP + (size_t)Q_BLOCK * KV_BLOCK;
  for (int i0 = 0; i0 < Nq; i0 += Q_BLOCK) {
    int rows = min_int(Nq - i0, Q_BLOCK);
    int nk = causal ? visible_keys(i0 + rows - 1, Nk, 1) : Nk;
    const float *q_blk = q_head + (size_t)i0 * HD, *do_blk = dout_head + (size_t)i0 * HD;
    /* delta_i = sum_j P_ij dP_ij = dout_i . out_i */
    for (int r = 0; r < rows; r++) {
      const float *o = out_head + (size_t)(i0 + r) * HD, *dy = do_blk + (size_t)r * HD;
      float acc = 0.0f;
      for (int d = 0; d < D; d++) acc += o[d] * dy[d];
      delta[r] = acc;
    }
    for (int j0 = 0; j0 < nk; j0 += KV_BLOCK) {
      int cols = min_int(KV_BLOCK, nk - j0);
      const float *k_blk = k_head + (size_t)j0 * HD, *v_blk = v_head + (size_t)j0 * HD;
      kn_sgemm(0, 1, rows, cols, D, scale, q_blk, HD, k_blk, HD, 0.0f, P, cols);
      for (int r = 0; r < rows; r++) {
        float *p = P + (size_t)r * cols;
        int valid = visible_in_block(i0 + r, j0, cols, Nk, causal);
        float lr = lse_head[i0 + r];
        for (int j = 0; j < valid; j++) p[j] = kn_expf(p[j] - lr); /* vectorised */
        for (int j = valid; j < cols; j++) p[j] = 0.0f;
      }
      if (dv_head) kn_sgemm(1, 0, cols, D, rows, 1.0f, P, cols, do_blk, HD, 1.0f, dv_head + (size_t)j0 * HD, HD);
      if (!dq_head && !dk_head) continue;
      kn_sgemm(0, 1, rows, cols, D, 1.0f, do_blk, HD, v_blk, HD, 0.0f, dP, cols);
      for (int r = 0; r < rows; r++) {
        float *ds = dP + (size_t)r * cols;
        const float *p = P + (size_t)r * cols;
        for (int j = 0; j < cols; j++) ds[j] = p[j] * (ds[j] - delta[r]);
      }
      if (dq_head)
        kn_sgemm(0, 0, rows, D, cols, scale, dP, cols, k_blk, HD, 1.0f, dq_head + (size_t)i0 * HD, HD);
      if (dk_head)
        kn_sgemm(1, 0, cols, D, rows, scale, dP, cols, q_blk, HD, 1.0f, dk_head + (size_t)j0 * HD, HD);
    }
  }
}

void kn_cpu_attention_backward(kn_ctx *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *out,
                               const float *lse, int B, int H, int Nq, int Nk, int D, float scale,
                               int causal) {
  int HD = H * D;
  float *scratch = attention_scratch(ctx);
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * H * Nq * Nk * D)) schedule(static)
  for (int t = 0; t < B * H; t++) {
    int h = t % H, b = t / H;
    size_t q_off = (size_t)b * Nq * HD + (size_t)h * D;
    size_t kv_off = (size_t)b * Nk * HD + (size_t)h * D;
    float *work = scratch + (size_t)omp_get_thread_num() * floats_per_thread();
    backward_head(work, dq ? dq + q_off : NULL, dk ? dk + kv_off : NULL, dv ? dv + kv_off : NULL,
                  dout + q_off, q + q_off, k + kv_off, v + kv_off, out + q_off,
                  lse + ((size_t)b * H + h) * Nq, Nq, Nk, D, HD, scale, causal);
  }
}
