/* 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
 * (Lavin & Gray 2015): each 2x2 output tile costs 16 multiplies per channel
 * pair instead of 36. The weights and 4x4 input tiles are transformed
 * (U = G g G^T, V = B^T d B), the 16 transformed positions become 16
 * independent GEMMs M[xi] = U[xi] . V[xi] over channels, and each output
 * tile is Y = A^T M A. F(2x2, 3x3) has small, exact transform constants
 * (0, +-1, 1/2), so its float error stays within a few ulps of the direct
 * sum; the gradient checks and PyTorch goldens run through this path. */
#include "kernels/cpu/cpu.h"

size_t kn_winograd_scratch_floats(int C, int OC, int Ho, int Wo) {
  size_t tiles = (size_t)((Ho + 1) / 2) * ((Wo + 1) / 2);
  return 16 * ((size_t)OC * C + (size_t)C * tiles + (size_t)OC * tiles);
}

/* U[xi][o * C + i] = (G g G^T)[xi] for each output/input channel pair; with
 * flip set, g is the transposed, 180-degree rotated kernel of w[i][o] (the
 * data gradient of a convolution is such a convolution). */
static void transform_weights(kn_ctx *ctx, float *U, const float *w, int C, int OC, int flip) {
  size_t plane = (size_t)OC * C;
#pragma omp parallel for num_threads(kn_team(ctx, plane * 16)) schedule(static)
  for (int o = 0; o < OC; o++) {
    for (int i = 0; i < C; i++) {
      float g[3][3];
      for (int r = 0; r < 3; r++)
        for (int s = 0; s < 3; s++)
          g[r][s] = flip ? w[((size_t)i * OC + o) * 9 + (2 - r) * 3 + (2 - s)]
                         : w[((size_t)o * C + i) * 9 + r * 3 + s];
      /* t = G g (4x3), G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1] */
      float t[4][3];
      for (int s = 0; s < 3; s++) {
        t[0][s] = g[0][s];
        t[1][s] = 0.5f * (g[0][s] + g[1][s] + g[2][s]);
        t[2][s] = 0.5f * (g[0][s] - g[1][s] + g[2][s]);
        t[3][s] = g[2][s];
      }
      size_t at = (size_t)o * C + i;
      for (int r = 0; r < 4; r++) {
        U[(size_t)(r * 4 + 0) * plane + at] = t[r][0];
        U[(size_t)(r * 4 + 1) * plane + at] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
        U[(size_t)(r * 4 + 2) * plane + at] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
        U[(size_t)(r * 4 + 3) * plane + at] = t[r][2];
      }
    }
  }
}

/* V[xi][c * T + t] = (B^T d B)[xi] for the 4x4 input patch d of tile t,
 * zero outside the image. B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
 * One row of tiles at a time: the four input rows are copied into padded
 * buffers, B^T runs down the columns of all tiles at once, then B along
 * each tile's columns; every loop runs over the tiles of the row, so it
 * vectorises and writes the 16 planes contiguously. */
#define MAX_ROW 1040 /* padded row width handled on the stack: images up to 1036 wide */

static void transform_input_row(float *V, const float *x, int H, int W, int pad, int ty,
                                int tiles_w, size_t plane, size_t at) {
  int Wp = 2 * tiles_w + 2;
  float rows[4][MAX_ROW], t[4][MAX_ROW];
  for (int r = 0; r < 4; r++) {
    int y = 2 * ty - pad + r;
    for (int xp = 0; xp < Wp; xp++) {
      int xx = xp - pad;
      rows[r][xp] = (y >= 0 && y < H && xx >= 0 && xx < W) ? x[(size_t)y * W + xx] : 0.0f;
    }
  }
  for (int xp = 0; xp < Wp; xp++) {
    t[0][xp] = rows[0][xp] - rows[2][xp];
    t[1][xp] = rows[1][xp] + rows[2][xp];
    t[2][xp] = rows[2][xp] - rows[1][xp];
    t[3][xp] = rows[1][xp] - rows[3][xp];
  }
  for (int k = 0; k < 4; k++) {
    float *v0 = V + (size_t)(k * 4 + 0) * plane + at, *v1 = V + (size_t)(k * 4 + 1) * plane + at;
    float *v2 = V + (size_t)(k * 4 + 2) * plane + at, *v3 = V + (size_t)(k * 4 + 3) * plane + at;
    const float *tk = t[k];
    for (int tx = 0; tx < tiles_w; tx++) {
      float a = tk[2 * tx], b = tk[2 * tx + 1], c = tk[2 * tx + 2], d = tk[2 * tx + 3];
      v0[tx] = a - c;
      v1[tx] = b + c;
      v2[tx] = c - b;
      v3[tx] = b - d;
    }
  }
}

static void transform_input(kn_ctx *ctx, float *V, const float *img, int C, int H, int W, int pad,
                            int tiles_h, int tiles_w) {
  size_t T = (size_t)tiles_h * tiles_w, plane = (size_t)C * T;
#pragma omp parallel for num_threads(kn_team(ctx, plane * 16)) schedule(static)
  for (int c = 0; c < C; c++) {
    const float *x = img + (size_t)c * H * W;
    for (int ty = 0; ty < tiles_h; ty++)
      transform_input_row(V, x, H, W, pad, ty, tiles_w, plane, (size_t)c * T + (size_t)ty * tiles_w);
  }
}

/* out[o] (+)= A^T M A for each tile, A^T = [1 1 1 0; 0 1 -1 -1], plus bias.
 * Like the input, one row of tiles at a time with loops over the tiles. */
static void transform_output_row(float *y, const float *M, const float *bias_o, int Ho, int Wo,
                                 int ty, int tiles_w, size_t plane, size_t at, int accumulate) {
  float t[2][4][MAX_ROW / 2];
  for (int s = 0; s < 4; s++) {
    const float *m0 = M + (size_t)(0 * 4 + s) * plane + at, *m1 = M + (size_t)(1 * 4 + s) * plane + at;
    const float *m2 = M + (size_t)(2 * 4 + s) * plane + at, *m3 = M + (size_t)(3 * 4 + s) * plane + at;
    for (int tx = 0; tx < tiles_w; tx++) {
      t[0][s][tx] = m0[tx] + m1[tx] + m2[tx];
      t[1][s][tx] = m1[tx] - m2[tx] - m3[tx];
    }
  }
  float b = bias_o ? *bias_o : 0.0f;
  for (int r = 0; r < 2; r++) {
    int oy = 2 * ty + r;
    if (oy >= Ho) break;
    float *row = y + (size_t)oy * Wo;
    const float *a0 = t[r][0], *a1 = t[r][1], *a2 = t[r][2], *a3 = t[r][3];
    int full = Wo / 2; /* tiles whose two columns are both inside */
    if (accumulate) {
      for (int tx = 0; tx < full; tx++) {
        row[2 * tx] += a0[tx] + a1[tx] + a2[tx] + b;
        row[2 * tx + 1] += a1[tx] - a2[tx] - a3[tx] + b;
      }
    } else {
      for (int tx = 0; tx < full; tx++) {
        row[2 * tx] = a0[tx] + a1[tx] + a2[tx] + b;
        row[2 * tx + 1] = a1[tx] - a2[tx] - a3[tx] + b;
      }
    }
    if (Wo % 2) {
      int tx = full;
      float v = a0[tx] + a1[tx] + a2[tx] + b;
      row[2 * tx] = accumulate ? row[2 * tx] + v : v;
    }
  }
}

static void transform_output(kn_ctx *ctx, float *out, const float *M, const float *bias, int OC,
                             int Ho, int Wo, int tiles_h, int tiles_w, int accumulate) {
  size_t T = (size_t)tiles_h * tiles_w, plane = (size_t)OC * T;
#pragma omp parallel for num_threads(kn_team(ctx, plane * 16)) schedule(static)
  for (int o = 0; o < OC; o++)
    for (int ty = 0; ty < tiles_h; ty++)
      transform_output_row(out + (size_t)o * Ho * Wo, M, bias ? bias + o : NULL, Ho, Wo, ty, tiles_w,
                           plane, (size_t)o * T + (size_t)ty * tiles_w, accumulate);
}

int kn_winograd_fits(int W, int pad) { return 2 * ((W + 2 * pad - 1) / 2) + 2 <= MAX_ROW; }

void kn_winograd_weights(kn_ctx *ctx, float *scratch, const float *weight, int C, int OC, int flip) {
  transform_weights(ctx, scratch, weight, C, OC, flip);
}

void kn_winograd_conv3x3(kn_ctx *ctx, float *out, const float *img, const float *bias, int C, int H,
                         int W, int OC, int pad, int accumulate, float *scratch) {
  int Ho = H + 2 * pad - 2, Wo = W + 2 * pad - 2;
  int tiles_h = (Ho + 1) / 2, tiles_w = (Wo + 1) / 2, T = tiles_h * tiles_w;
  float *U = scratch, *V = U + 16 * (size_t)OC * C, *M = V + 16 * (size_t)C * T;
  transform_input(ctx, V, img, C, H, W, pad, tiles_h, tiles_w);
  /* The 16 products are independent: one thread each, single-threaded sgemm. */
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)16 * OC * C * T)) schedule(static)
  for (int xi = 0; xi < 16; xi++)
    kn_sgemm(0, 0, OC, T, C, 1.0f, U + (size_t)xi * OC * C, C, V + (size_t)xi * C * T, T, 0.0f,
             M + (size_t)xi * OC * T, T);
  transform_output(ctx, out, M, bias, OC, Ho, Wo, tiles_h, tiles_w, accumulate);
}
