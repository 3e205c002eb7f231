/* Sinusoidal timestep embedding (diffusers) and token + position lookup. */
#include "kernels/cpu/cpu.h"

/* Frequency of column i < half, computed in float32 in diffusers' order:
 * exponent = -ln(max_period) * i / (half - shift), freq = exp(exponent). */
static float timestep_freq(int i, int half, float shift, float max_period) {
  float exponent = -logf(max_period) * (float)i;
  exponent = exponent / ((float)half - shift);
  return expf(exponent);
}

void kn_cpu_timestep_embedding_forward(kn_ctx *ctx, float *out, const float *timesteps, int B, int dim,
                                       int flip_sin_to_cos, float downscale_freq_shift, float scale,
                                       float max_period) {
  int half = dim / 2;
  int sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * dim * 16)) schedule(static)
  for (int b = 0; b < B; b++) {
    float *row = out + (size_t)b * dim;
    for (int i = 0; i < half; i++) {
      float arg = scale * (timesteps[b] * timestep_freq(i, half, downscale_freq_shift, max_period));
      row[sin_at + i] = sinf(arg);
      row[cos_at + i] = cosf(arg);
    }
    if (dim % 2 == 1) row[dim - 1] = 0.0f;
  }
}

void kn_cpu_timestep_embedding_backward(kn_ctx *ctx, float *dtimesteps, const float *dout,
                                        const float *timesteps, int B, int dim, int flip_sin_to_cos,
                                        float downscale_freq_shift, float scale, float max_period) {
  int half = dim / 2;
  int sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * dim * 16)) schedule(static)
  for (int b = 0; b < B; b++) {
    const float *dy = dout + (size_t)b * dim;
    double acc = 0.0;
    for (int i = 0; i < half; i++) {
      float f = scale * timestep_freq(i, half, downscale_freq_shift, max_period);
      float arg = f * timesteps[b];
      acc += (double)dy[sin_at + i] * f * cosf(arg) - (double)dy[cos_at + i] * f * sinf(arg);
    }
    dtimesteps[b] += (float)acc;
  }
}

void kn_cpu_embedding_forward(kn_ctx *ctx, float *out, const int32_t *ids, const float *wte,
                              const float *wpe, int B, int T, int C) {
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * T * C)) schedule(static)
  for (int bt = 0; bt < B * T; bt++) {
    const float *tok = wte + (size_t)ids[bt] * C;
    const float *pos = wpe ? wpe + (size_t)(bt % T) * C : NULL;
    float *o = out + (size_t)bt * C;
    for (int c = 0; c < C; c++) o[c] = tok[c] + (pos ? pos[c] : 0.0f);
  }
}

/* A token id may repeat, so rows of dwte are shared between positions: each
 * thread owns a block of channels and walks the tokens in order, which keeps
 * the sums race-free and in a fixed order. */
void kn_cpu_embedding_backward(kn_ctx *ctx, float *dwte, float *dwpe, const float *dout,
                               const int32_t *ids, int B, int T, int C) {
  const int block = 64;
  int n_blocks = (C + block - 1) / block;
#pragma omp parallel for num_threads(kn_team(ctx, (size_t)B * T * C)) schedule(static)
  for (int blk = 0; blk < n_blocks; blk++) {
    int c0 = blk * block, c1 = c0 + block < C ? c0 + block : C;
    for (int bt = 0; bt < B * T; bt++) {
      const float *dy = dout + (size_t)bt * C;
      if (dwte) {
        float *g = dwte + (size_t)ids[bt] * C;
        for (int c = c0; c < c1; c++) g[c] += dy[c];
      }
      if (dwpe) {
        float *g = dwpe + (size_t)(bt % T) * C;
        for (int c = c0; c < c1; c++) g[c] += dy[c];
      }
    }
  }
}
