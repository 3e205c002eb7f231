/* 2-D convolution, NCHW, per image.
 * - 3x3 stride 1 (most of a UNet): Winograd F(2x2, 3x3) for the data
 *   gradient, and for the output when ctx->winograd_forward is set
 *   (winograd.c), 2.25x fewer multiplies than a GEMM.
 * - Otherwise im2col + sgemm: the columns matrix col[C*K*K, Ho*Wo] turns the
 *   convolution into out = weight . col. The weight gradient always takes
 *   this route (dweight = dout . col^T).
 * - A 1x1, stride-1, unpadded convolution is already a GEMM on the image
 *   itself and skips the copy. */
#include <stdlib.h>

#include "kernels/cpu/cpu.h"

int kn_conv2d_out_size(int in_size, int K, int stride, int pad) {
  return (in_size + 2 * pad - K) / stride + 1;
}

static int is_pointwise(int K, int stride, int pad) { return K == 1 && stride == 1 && pad == 0; }

static int winograd_forward(int W, int K, int stride, int pad) {
  return K == 3 && stride == 1 && kn_winograd_fits(W, pad);
}

/* The data gradient is a 3x3 convolution of dout (Wo wide) with padding 2 - pad. */
static int winograd_backward(int W, int K, int stride, int pad) {
  return K == 3 && stride == 1 && pad <= 2 && kn_winograd_fits(W + 2 * pad - 2, 2 - pad);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

size_t kn_conv2d_scratch_bytes(int C, int H, int W, int OC, int K, int stride, int pad) {
  if (is_pointwise(K, stride, pad)) return 0;
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  size_t floats = (size_t)C * K * K * Ho * Wo; /* im2col: forward, or the weight gradient */
  if (winograd_forward(W, K, stride, pad)) floats = max_size(floats, kn_winograd_scratch_floats(C, OC, Ho, Wo));
  if (winograd_backward(W, K, stride, pad)) floats = max_size(floats, kn_winograd_scratch_floats(OC, C, H, W));
  return floats * sizeof(float);
}

static float *conv_scratch(kn_ctx *ctx, int C, int H, int W, int OC, int K, int stride, int pad) {
  float *col = kn_ctx_scratch(ctx, kn_conv2d_scratch_bytes(C, H, W, OC, K, stride, pad));
  if (!col) abort(); /* out of memory in a planned step: nothing sensible to return */
  return col;
}

/* col[(c, ki, kj), (oy, ox)] = img[c, oy*s - p + ki, ox*s - p + kj], 0 outside. */
static void im2col(kn_ctx *ctx, float *col, const float *img, int C, int H, int W, int K,
                   int stride, int pad, int Ho, int Wo) {
  int rows = C * K * K;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)rows * Ho * Wo)) schedule(static)
  for (int r = 0; r < rows; r++) {
    int c = r / (K * K), ki = (r / K) % K, kj = r % K;
    const float *plane = img + (size_t)c * H * W;
    float *dst = col + (size_t)r * Ho * Wo;
    for (int oy = 0; oy < Ho; oy++) {
      int iy = oy * stride - pad + ki;
      float *d = dst + (size_t)oy * Wo;
      if (iy < 0 || iy >= H) {
        memset(d, 0, sizeof(float) * (size_t)Wo);
        continue;
      }
      const float *src = plane + (size_t)iy * W;
      if (stride == 1) {
        /* Valid ox: 0 <= ox - pad + kj < W. */
        int lo = pad - kj, hi = W + pad - kj;
        if (lo < 0) lo = 0;
        if (lo > Wo) lo = Wo;
        if (hi > Wo) hi = Wo;
        if (hi < lo) hi = lo;
        memset(d, 0, sizeof(float) * (size_t)lo);
        if (hi > lo) memcpy(d + lo, src + lo - pad + kj, sizeof(float) * (size_t)(hi - lo));
        memset(d + hi, 0, sizeof(float) * (size_t)(Wo - hi));
      } else {
        for (int ox = 0; ox < Wo; ox++) {
          int ix = ox * stride - pad + kj;
          d[ox] = (ix >= 0 && ix < W) ? src[ix] : 0.0f;
        }
      }
    }
  }
}

/* The adjoint of im2col: img[c] += every column entry that was read from it.
 * One thread owns one input channel, so the sums run in a fixed order. */
static void col2im_add(kn_ctx *ctx, float *img, const float *col, int C, int H, int W, int K,
                       int stride, int pad, int Ho, int Wo) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)C * K * K * Ho * Wo)) schedule(static)
  for (int c = 0; c < C; c++) {
    float *plane = img + (size_t)c * H * W;
    for (int ki = 0; ki < K; ki++) {
      for (int kj = 0; kj < K; kj++) {
        const float *src = col + ((size_t)(c * K + ki) * K + kj) * Ho * Wo;
        for (int oy = 0; oy < Ho; oy++) {
          int iy = oy * stride - pad + ki;
          if (iy < 0 || iy >= H) continue;
          float *drow = plane + (size_t)iy * W;
          const float *s = src + (size_t)oy * Wo;
          for (int ox = 0; ox < Wo; ox++) {
            int ix = ox * stride - pad + kj;
            if (ix >= 0 && ix < W) drow[ix] += s[ox];
          }
        }
      }
    }
  }
}

void kn_cpu_conv2d_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                           const float *bias, int B, int C, int H, int W, int OC, int K, int stride,
                           int pad) {
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  int HWo = Ho * Wo, CKK = C * K * K;
  int pointwise = is_pointwise(K, stride, pad);
  float *col = pointwise ? NULL : conv_scratch(ctx, C, H, W, OC, K, stride, pad);
  int winograd = ctx->winograd_forward && winograd_forward(W, K, stride, pad);
  if (winograd) kn_winograd_weights(ctx, col, weight, C, OC, 0);
  for (int b = 0; b < B; b++) {
    const float *img = inp + (size_t)b * C * H * W;
    float *o = out + (size_t)b * OC * HWo;
    if (winograd) {
      kn_winograd_conv3x3(ctx, o, img, bias, C, H, W, OC, pad, 0, col);
      continue;
    }
    if (!pointwise) im2col(ctx, col, img, C, H, W, K, stride, pad, Ho, Wo);
    kn_gemm(ctx, 0, 0, OC, HWo, CKK, 1.0f, weight, CKK, pointwise ? img : col, HWo, 0.0f, o, HWo);
    if (bias) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)OC * HWo)) schedule(static)
      for (int oc = 0; oc < OC; oc++) {
        float *row = o + (size_t)oc * HWo;
        for (int i = 0; i < HWo; i++) row[i] += bias[oc];
      }
    }
  }
}

void kn_cpu_conv2d_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                            int K, int stride, int pad) {
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  int HWo = Ho * Wo, CKK = C * K * K;
  int pointwise = is_pointwise(K, stride, pad);
  float *col = (pointwise || (!dweight && !dinp)) ? NULL : conv_scratch(ctx, C, H, W, OC, K, stride, pad);
  if (dbias) {
    /* Per output channel, images in order then pixels in order. */
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * OC * HWo)) schedule(static)
    for (int oc = 0; oc < OC; oc++) {
      double acc = 0.0;
      for (int b = 0; b < B; b++) {
        acc += kn_row_sum(dout + ((size_t)b * OC + oc) * HWo, HWo);
      }
      dbias[oc] += (float)acc;
    }
  }
  if (pointwise) {
    for (int b = 0; b < B; b++) {
      const float *img = inp + (size_t)b * C * H * W, *dob = dout + (size_t)b * OC * HWo;
      if (dweight) kn_gemm(ctx, 0, 1, OC, C, HWo, 1.0f, dob, HWo, img, HWo, 1.0f, dweight, C);
      if (dinp) kn_gemm(ctx, 1, 0, C, HWo, OC, 1.0f, weight, C, dob, HWo, 1.0f, dinp + (size_t)b * C * H * W, HWo);
    }
    return;
  }
  /* Weight gradient first for every image, then the data gradient, so that
   * Winograd's transformed weights are made once and not overwritten by
   * the columns in between. */
  if (dweight) {
    for (int b = 0; b < B; b++) {
      im2col(ctx, col, inp + (size_t)b * C * H * W, C, H, W, K, stride, pad, Ho, Wo);
      kn_gemm(ctx, 0, 1, OC, CKK, HWo, 1.0f, dout + (size_t)b * OC * HWo, HWo, col, HWo, 1.0f, dweight, CKK);
    }
  }
  if (!dinp) return;
  int winograd = winograd_backward(W, K, stride, pad);
  if (winograd) kn_winograd_weights(ctx, col, weight, OC, C, 1);
  for (int b = 0; b < B; b++) {
    const float *dob = dout + (size_t)b * OC * HWo;
    float *dimg = dinp + (size_t)b * C * H * W;
    if (winograd) {
      kn_winograd_conv3x3(ctx, dimg, dob, NULL, OC, Ho, Wo, C, 2 - pad, 1, col);
    } else {
      kn_gemm(ctx, 1, 0, CKK, HWo, OC, 1.0f, weight, CKK, dob, HWo, 0.0f, col, HWo);
      col2im_add(ctx, dimg, col, C, H, W, K, stride, pad, Ho, Wo);
    }
  }
}
