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

void kn_group_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
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
void kn_group_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
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

void kn_layer_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
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

void kn_layer_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                            const float *dout, const float *inp, const float *mean,
                            const float *rstd, const float *gamma, int N, int C) {
  if (dinp) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * C)) schedule(static)
    for (int n = 0; n < N; n++) {
      const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
      float *dx = dinp + (size_t)n * C;
      float m = mean[n], r = rstd[n];
      float l1[KN_LANES] = {0}, l2[KN_LANES] = {0};
      int c = 0;
      for (; c + KN_LANES <= C; c += KN_LANES)
        for (int l = 0; l < KN_LANES; l++) {
          float dxhat = dy[c + l] * (gamma ? gamma[c + l] : 1.0f);
          l1[l] += dxhat;
          l2[l] += dxhat * (x[c + l] - m);
        }
      float s1 = 0.0f, s2 = 0.0f;
      for (int l = 0; l < KN_LANES; l++) s1 += l1[l], s2 += l2[l];
      for (; c < C; c++) {
        float dxhat = dy[c] * (gamma ? gamma[c] : 1.0f);
        s1 += dxhat;
        s2 += dxhat * (x[c] - m);
      }
      s1 /= (float)C;
      s2 = s2 * r / (float)C;
      for (int c = 0; c < C; c++) {
        float xhat = (x[c] - m) * r;
        dx[c] += r * (dy[c] * (gamma ? gamma[c] : 1.0f) - s1 - xhat * s2);
      }
    }
  }
  if (dgamma || dbeta) {
    /* Blocks of channels per thread, rows in order within each block. */
    const int block = 64;
    int n_blocks = (C + block - 1) / block;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)N * C)) schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
      int c0 = blk * block, c1 = c0 + block < C ? c0 + block : C;
      float sg[64] = {0}, sb[64] = {0};
      for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float m = mean[n], r = rstd[n];
        for (int c = c0; c < c1; c++) {
          sg[c - c0] += dy[c] * (x[c] - m) * r;
          sb[c - c0] += dy[c];
        }
      }
      for (int c = c0; c < c1; c++) {
        if (dgamma) dgamma[c] += sg[c - c0];
        if (dbeta) dbeta[c] += sb[c - c0];
      }
    }
  }
}
