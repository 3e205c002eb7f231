/* Group norm and layer norm. Statistics are summed in double (the shapes
 * reach 320 x 64 x 64 values per group), variance is biased and eps sits
 * inside the square root, as in PyTorch. */
#include "kernels/cpu/cpu.h"

/* mean and 1/sqrt(var + eps) of n values: float lanes within chunks of
 * 4096 values, double across chunks (two passes, so no cancellation). */
#define NORM_CHUNK 4096

static void moments(const float *x, size_t n, float eps, float *mean_out, float *rstd_out) {
  double sum = 0.0;
  for (size_t i = 0; i < n; i += NORM_CHUNK)
    sum += kn_row_sum(x + i, (int)(n - i < NORM_CHUNK ? n - i : NORM_CHUNK));
  float mean = (float)(sum / (double)n);
  double var = 0.0;
  for (size_t i = 0; i < n; i += NORM_CHUNK)
    var += kn_row_sq_centered(x + i, mean, (int)(n - i < NORM_CHUNK ? n - i : NORM_CHUNK));
  var /= (double)n;
  *mean_out = mean;
  *rstd_out = (float)(1.0 / sqrt(var + (double)eps));
}

void kn_cpu_group_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                               const float *gamma, const float *beta, int B, int C, int HW, int G,
                               float eps) {
  int cpg = C / G;
  size_t group_size = (size_t)cpg * HW;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * HW)) schedule(static)
  for (int bg = 0; bg < B * G; bg++) {
    const float *x = inp + (size_t)bg * group_size;
    float *y = out + (size_t)bg * group_size;
    float m, r;
    moments(x, group_size, eps, &m, &r);
    mean[bg] = m;
    rstd[bg] = r;
    int g = bg % G;
    for (int cc = 0; cc < cpg; cc++) {
      int c = g * cpg + cc;
      float w = gamma ? gamma[c] : 1.0f, bb = beta ? beta[c] : 0.0f;
      float a = r * w;
      const float *xc = x + (size_t)cc * HW;
      float *yc = y + (size_t)cc * HW;
      /* (x - m) a + beta rather than x a + (beta - m a): no cancellation
       * between two large terms when the variance is small. */
      for (int i = 0; i < HW; i++) yc[i] = (xc[i] - m) * a + bb;
    }
  }
}

/* One pass per group reads x and dy once for all three gradients: the
 * per-channel sums that dgamma and dbeta need are the same ones that dx's
 * two means are built from. A thread owns a group for every image, so it
 * owns that group's channels of dgamma and dbeta and adds the images into
 * them in order. dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),
 * dxhat = dy gamma. */
void kn_cpu_group_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                                const float *dout, const float *inp, const float *mean,
                                const float *rstd, const float *gamma, int B, int C, int HW, int G) {
  int cpg = C / G;
  size_t group_size = (size_t)cpg * HW;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * C * HW)) schedule(static)
  for (int g = 0; g < G; g++) {
    for (int b = 0; b < B; b++) {
      size_t bg = (size_t)b * G + g;
      const float *x = inp + bg * group_size, *dy = dout + bg * group_size;
      float m = mean[bg], r = rstd[bg];
      double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
      for (int cc = 0; cc < cpg; cc++) {
        int c = g * cpg + cc;
        float w = gamma ? gamma[c] : 1.0f;
        const float *xc = x + (size_t)cc * HW, *dyc = dy + (size_t)cc * HW;
        float sum_dy = kn_row_sum(dyc, HW);
        float sum_dy_xhat = r * kn_row_dot_centered(dyc, xc, m, HW);
        if (dgamma) dgamma[c] += sum_dy_xhat;
        if (dbeta) dbeta[c] += sum_dy;
        sum_dxhat += (double)w * sum_dy;
        sum_dxhat_xhat += (double)w * sum_dy_xhat;
      }
      if (!dinp) continue;
      float mean_dxhat = (float)(sum_dxhat / (double)group_size);
      float mean_dxhat_xhat = (float)(sum_dxhat_xhat / (double)group_size);
      float *dx = dinp + bg * group_size;
      for (int cc = 0; cc < cpg; cc++) {
        float w = gamma ? gamma[g * cpg + cc] : 1.0f;
        const float *xc = x + (size_t)cc * HW, *dyc = dy + (size_t)cc * HW;
        float *dxc = dx + (size_t)cc * HW;
        for (int i = 0; i < HW; i++) {
          float xhat = (xc[i] - m) * r;
          dxc[i] += r * (dyc[i] * w - mean_dxhat - xhat * mean_dxhat_xhat);
        }
      }
    }
  }
}

void kn_cpu_layer_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                               const float *gamma, const float *beta, int N, int C, float eps) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * C)) schedule(static)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *y = out + (size_t)n * C;
    float m, r;
    moments(x, (size_t)C, eps, &m, &r);
    mean[n] = m;
    rstd[n] = r;
    for (int c = 0; c < C; c++) {
      float xhat = (x[c] - m) * r;
      y[c] = xhat * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
    }
  }
}

/* Rows are taken in fixed chunks; each chunk sums its rows' dgamma and
 * dbeta terms into its own partial (in the scratch) while the rows are in
 * cache for dx, and the partials are added chunk by chunk in order at the
 * end. x and dy are read once, and the result does not depend on the
 * thread count. */
#define LN_CHUNK_ROWS 64

size_t kn_layer_norm_scratch_bytes(int N, int C) {
  size_t chunks = (size_t)(N + LN_CHUNK_ROWS - 1) / LN_CHUNK_ROWS;
  return chunks * 2 * (size_t)C * sizeof(float);
}

/* dx of one row: rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)). */
static void layer_norm_row_dx(float *dx, const float *dy, const float *x, const float *gamma,
                              float m, float r, int C) {
  kn_f16 l1 = {0}, l2 = {0};
  int c = 0;
  for (; c + KN_LANES <= C; c += KN_LANES) {
    kn_f16 dxhat = kn_load16(dy + c);
    if (gamma) dxhat *= kn_load16(gamma + c);
    l1 += dxhat;
    l2 += dxhat * (kn_load16(x + c) - m);
  }
  float s1 = kn_f16_total(l1), s2 = kn_f16_total(l2);
  for (; c < C; c++) {
    float dxhat = dy[c] * (gamma ? gamma[c] : 1.0f);
    s1 += dxhat;
    s2 += dxhat * (x[c] - m);
  }
  s1 /= (float)C;
  s2 = s2 * r / (float)C;
  for (c = 0; c < C; c++) {
    float xhat = (x[c] - m) * r;
    dx[c] += r * (dy[c] * (gamma ? gamma[c] : 1.0f) - s1 - xhat * s2);
  }
}

void kn_cpu_layer_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                                const float *dout, const float *inp, const float *mean,
                                const float *rstd, const float *gamma, int N, int C) {
  int n_chunks = (N + LN_CHUNK_ROWS - 1) / LN_CHUNK_ROWS;
  int params = dgamma || dbeta;
  float *partial = params ? kn_ctx_scratch(ctx, kn_layer_norm_scratch_bytes(N, C)) : NULL;
  if (params && !partial) abort(); /* out of memory in a planned step */
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * C)) schedule(static)
  for (int chunk = 0; chunk < n_chunks; chunk++) {
    float *pg = params ? partial + (size_t)chunk * 2 * C : NULL, *pb = pg ? pg + C : NULL;
    if (params) memset(pg, 0, sizeof(float) * 2 * (size_t)C);
    int n1 = (chunk + 1) * LN_CHUNK_ROWS < N ? (chunk + 1) * LN_CHUNK_ROWS : N;
    for (int n = chunk * LN_CHUNK_ROWS; n < n1; n++) {
      const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
      float m = mean[n], r = rstd[n];
      if (dinp) layer_norm_row_dx(dinp + (size_t)n * C, dy, x, gamma, m, r, C);
      if (!params) continue;
      for (int c = 0; c < C; c++) {
        pg[c] += dy[c] * (x[c] - m) * r;
        pb[c] += dy[c];
      }
    }
  }
  if (!params) return;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)n_chunks * C)) schedule(static)
  for (int c = 0; c < C; c++) {
    float sg = 0.0f, sb = 0.0f;
    for (int chunk = 0; chunk < n_chunks; chunk++) {
      sg += partial[(size_t)chunk * 2 * C + c];
      sb += partial[(size_t)chunk * 2 * C + C + c];
    }
    if (dgamma) dgamma[c] += sg;
    if (dbeta) dbeta[c] += sb;
  }
}
