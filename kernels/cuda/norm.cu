/* Group norm (optionally fused with SiLU) and layer norm, float32.
 *
 * Group norm: one block per (image, group); a group of NCHW is contiguous
 * (cpg channels of HW values), so the block reads it coalesced, twice for
 * the moments (mean, then centred variance: no cancellation) and once to
 * write. Parameter gradients: one block per channel over every image, so
 * nothing is summed by two blocks. Layer norm: one warp per row; its
 * parameter gradients are column sums over fixed chunks of rows.
 * Templated on the storage of inp, out, dout and dinp (float or bf16);
 * gamma, beta, mean, rstd and the parameter gradients are float32, and so
 * is every sum. */
#include "kernels/cuda/cuda_internal.cuh"

#define NORM_THREADS 256

/* ---------------------------------------------------------- group norm */

template <typename T>
__global__ void group_norm_forward_kernel(T *out, float *mean, float *rstd, const T *inp,
                                          const float *gamma, const float *beta, int C, int HW,
                                          int G, float eps, int fuse_silu) {
  __shared__ float shared[32];
  int bg = blockIdx.x, g = bg % G, cpg = C / G;
  size_t size = (size_t)cpg * HW;
  const T *x = inp + (size_t)bg * size;
  T *y = out + (size_t)bg * size;
  float s = 0.0f;
  for (size_t i = threadIdx.x; i < size; i += blockDim.x) s += kn_load(x + i);
  float m = kn_block_sum(s, shared) / (float)size;
  float sq = 0.0f;
  for (size_t i = threadIdx.x; i < size; i += blockDim.x) {
    float d = kn_load(x + i) - m;
    sq += d * d;
  }
  float var = kn_block_sum(sq, shared) / (float)size;
  float r = rsqrtf(var + eps);
  if (threadIdx.x == 0) {
    mean[bg] = m;
    rstd[bg] = r;
  }
  for (size_t i = threadIdx.x; i < size; i += blockDim.x) {
    int c = g * cpg + (int)(i / HW);
    float v = (kn_load(x + i) - m) * r * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
    kn_store(y + i, fuse_silu ? v * kn_sigmoid(v) : v);
  }
}

/* The gradient reaching the normalised-and-scaled value: dout itself, or
 * through SiLU recomputed from the pre-activation. */
__device__ __forceinline__ float norm_output_grad(float dy, float xhat, float w, float b, int fuse_silu) {
  if (!fuse_silu) return dy;
  float v = xhat * w + b, s = kn_sigmoid(v);
  return dy * s * (1.0f + v * (1.0f - s));
}

template <typename T>
__global__ void group_norm_dinp_kernel(T *dinp, const T *dout, const T *inp,
                                       const float *mean, const float *rstd, const float *gamma,
                                       const float *beta, int C, int HW, int G, int fuse_silu) {
  __shared__ float shared[32];
  int bg = blockIdx.x, g = bg % G, cpg = C / G;
  size_t size = (size_t)cpg * HW;
  const T *x = inp + (size_t)bg * size, *dy = dout + (size_t)bg * size;
  T *dx = dinp + (size_t)bg * size;
  float m = mean[bg], r = rstd[bg];
  float s1 = 0.0f, s2 = 0.0f;
  for (size_t i = threadIdx.x; i < size; i += blockDim.x) {
    int c = g * cpg + (int)(i / HW);
    float w = gamma ? gamma[c] : 1.0f, b = beta ? beta[c] : 0.0f;
    float xhat = (kn_load(x + i) - m) * r;
    float dxhat = norm_output_grad(kn_load(dy + i), xhat, w, b, fuse_silu) * w;
    s1 += dxhat;
    s2 += dxhat * xhat;
  }
  float mean_dxhat = kn_block_sum(s1, shared) / (float)size;
  float mean_dxhat_xhat = kn_block_sum(s2, shared) / (float)size;
  for (size_t i = threadIdx.x; i < size; i += blockDim.x) {
    int c = g * cpg + (int)(i / HW);
    float w = gamma ? gamma[c] : 1.0f, b = beta ? beta[c] : 0.0f;
    float xhat = (kn_load(x + i) - m) * r;
    float dxhat = norm_output_grad(kn_load(dy + i), xhat, w, b, fuse_silu) * w;
    kn_store(dx + i, kn_load(dx + i) + r * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
  }
}

template <typename T>
__global__ void group_norm_params_kernel(float *dgamma, float *dbeta, const T *dout,
                                         const T *inp, const float *mean, const float *rstd,
                                         const float *gamma, const float *beta, int B, int C,
                                         int HW, int G, int fuse_silu) {
  __shared__ float shared[32];
  int c = blockIdx.x, g = c / (C / G);
  float w = gamma ? gamma[c] : 1.0f, b = beta ? beta[c] : 0.0f;
  float sg = 0.0f, sb = 0.0f;
  for (int img = 0; img < B; img++) {
    const T *x = inp + ((size_t)img * C + c) * HW, *dy = dout + ((size_t)img * C + c) * HW;
    float m = mean[img * G + g], r = rstd[img * G + g];
    for (int i = threadIdx.x; i < HW; i += blockDim.x) {
      float xhat = (kn_load(x + i) - m) * r;
      float d = norm_output_grad(kn_load(dy + i), xhat, w, b, fuse_silu);
      sg += d * xhat;
      sb += d;
    }
  }
  sg = kn_block_sum(sg, shared);
  sb = kn_block_sum(sb, shared);
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[c] += sg;
    if (dbeta) dbeta[c] += sb;
  }
}

template <typename T>
static void group_norm_forward(kn_cuda_ctx *ctx, T *out, float *mean, float *rstd, const T *inp,
                               const float *gamma, const float *beta, int B, int C, int HW, int G, float eps,
                               int fuse_silu) {
  group_norm_forward_kernel<T><<<B * G, NORM_THREADS, 0, kn_stream(ctx)>>>(out, mean, rstd, inp, gamma, beta, C, HW,
                                                                        G, eps, fuse_silu);
  kn_cuda_launched(ctx, "group norm forward");
}

template <typename T>
static void group_norm_backward(kn_cuda_ctx *ctx, T *dinp, float *dgamma, float *dbeta, const T *dout,
                                const T *inp, const float *mean, const float *rstd, const float *gamma,
                                const float *beta, int B, int C, int HW, int G, int fuse_silu) {
  if (dinp) {
    group_norm_dinp_kernel<T><<<B * G, NORM_THREADS, 0, kn_stream(ctx)>>>(dinp, dout, inp, mean, rstd, gamma, beta,
                                                                       C, HW, G, fuse_silu);
    kn_cuda_launched(ctx, "group norm dinp");
  }
  if (dgamma || dbeta) {
    group_norm_params_kernel<T><<<C, NORM_THREADS, 0, kn_stream(ctx)>>>(dgamma, dbeta, dout, inp, mean, rstd, gamma,
                                                                     beta, B, C, HW, G, fuse_silu);
    kn_cuda_launched(ctx, "group norm dgamma/dbeta");
  }
}

void kn_cuda_group_norm_forward(kn_cuda_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                                const float *gamma, const float *beta, int B, int C, int HW, int G, float eps) {
  group_norm_forward(ctx, out, mean, rstd, inp, gamma, beta, B, C, HW, G, eps, 0);
}

void kn_cuda_group_norm_backward(kn_cuda_ctx *ctx, float *dinp, float *dgamma, float *dbeta, const float *dout,
                                 const float *inp, const float *mean, const float *rstd, const float *gamma, int B,
                                 int C, int HW, int G) {
  group_norm_backward(ctx, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, NULL, B, C, HW, G, 0);
}

void kn_cuda_group_norm_silu_forward(kn_cuda_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                                     const float *gamma, const float *beta, int B, int C, int HW, int G,
                                     float eps) {
  group_norm_forward(ctx, out, mean, rstd, inp, gamma, beta, B, C, HW, G, eps, 1);
}

void kn_cuda_group_norm_silu_backward(kn_cuda_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                                      const float *dout, const float *inp, const float *mean, const float *rstd,
                                      const float *gamma, const float *beta, int B, int C, int HW, int G) {
  group_norm_backward(ctx, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, beta, B, C, HW, G, 1);
}

/* ---------------------------------------------------------- layer norm */

#define LN_WARPS 4 /* rows per block */

template <typename T>
__global__ void layer_norm_forward_kernel(T *out, float *mean, float *rstd, const T *inp,
                                          const float *gamma, const float *beta, int N, int C, float eps) {
  int lane = threadIdx.x % 32, row = blockIdx.x * LN_WARPS + threadIdx.x / 32;
  if (row >= N) return;
  const T *x = inp + (size_t)row * C;
  T *y = out + (size_t)row * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += kn_load(x + c);
  float m = kn_warp_sum(s) / (float)C;
  float sq = 0.0f;
  for (int c = lane; c < C; c += 32) sq += (kn_load(x + c) - m) * (kn_load(x + c) - m);
  float r = rsqrtf(kn_warp_sum(sq) / (float)C + eps);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
  for (int c = lane; c < C; c += 32)
    kn_store(y + c, (kn_load(x + c) - m) * r * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f));
}

template <typename T>
__global__ void layer_norm_dinp_kernel(T *dinp, const T *dout, const T *inp, const float *mean,
                                       const float *rstd, const float *gamma, int N, int C) {
  int lane = threadIdx.x % 32, row = blockIdx.x * LN_WARPS + threadIdx.x / 32;
  if (row >= N) return;
  const T *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
  T *dx = dinp + (size_t)row * C;
  float m = mean[row], r = rstd[row];
  float s1 = 0.0f, s2 = 0.0f;
  for (int c = lane; c < C; c += 32) {
    float dxhat = kn_load(dy + c) * (gamma ? gamma[c] : 1.0f);
    s1 += dxhat;
    s2 += dxhat * (kn_load(x + c) - m) * r;
  }
  s1 = kn_warp_sum(s1) / (float)C;
  s2 = kn_warp_sum(s2) / (float)C;
  for (int c = lane; c < C; c += 32) {
    float xhat = (kn_load(x + c) - m) * r;
    kn_store(dx + c, kn_load(dx + c) + r * (kn_load(dy + c) * (gamma ? gamma[c] : 1.0f) - s1 - xhat * s2));
  }
}

#define LN_ROWS_PER_CHUNK 256

/* partial[0][chunk][c] = sum dy xhat, partial[1][chunk][c] = sum dy over the chunk's rows. */
template <typename T>
__global__ void layer_norm_param_partials_kernel(float *partial, const T *dout, const T *inp,
                                                 const float *mean, const float *rstd, int N, int C,
                                                 int n_chunks) {
  int c = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
  if (c >= C) return;
  int r0 = chunk * LN_ROWS_PER_CHUNK, r1 = min(N, r0 + LN_ROWS_PER_CHUNK);
  float sg = 0.0f, sb = 0.0f;
  for (int r = r0; r < r1; r++) {
    float dy = kn_load(dout + (size_t)r * C + c);
    sg += dy * (kn_load(inp + (size_t)r * C + c) - mean[r]) * rstd[r];
    sb += dy;
  }
  partial[(size_t)chunk * C + c] = sg;
  partial[((size_t)n_chunks + chunk) * C + c] = sb;
}

__global__ void layer_norm_param_finish_kernel(float *dgamma, float *dbeta, const float *partial, int C,
                                               int n_chunks) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sg = 0.0f, sb = 0.0f;
  for (int k = 0; k < n_chunks; k++) {
    sg += partial[(size_t)k * C + c];
    sb += partial[((size_t)n_chunks + k) * C + c];
  }
  if (dgamma) dgamma[c] += sg;
  if (dbeta) dbeta[c] += sb;
}

template <typename T>
static void layer_norm_forward(kn_cuda_ctx *ctx, T *out, float *mean, float *rstd, const T *inp, const float *gamma,
                               const float *beta, int N, int C, float eps) {
  int blocks = (N + LN_WARPS - 1) / LN_WARPS;
  layer_norm_forward_kernel<T><<<blocks, 32 * LN_WARPS, 0, kn_stream(ctx)>>>(out, mean, rstd, inp, gamma, beta, N,
                                                                             C, eps);
  kn_cuda_launched(ctx, "layer norm forward");
}

template <typename T>
static void layer_norm_backward(kn_cuda_ctx *ctx, T *dinp, float *dgamma, float *dbeta, const T *dout, const T *inp,
                                const float *mean, const float *rstd, const float *gamma, int N, int C) {
  if (dinp) {
    int blocks = (N + LN_WARPS - 1) / LN_WARPS;
    layer_norm_dinp_kernel<T><<<blocks, 32 * LN_WARPS, 0, kn_stream(ctx)>>>(dinp, dout, inp, mean, rstd, gamma, N,
                                                                            C);
    kn_cuda_launched(ctx, "layer norm dinp");
  }
  if (dgamma || dbeta) {
    int n_chunks = (N + LN_ROWS_PER_CHUNK - 1) / LN_ROWS_PER_CHUNK;
    float *partial = (float *)kn_cuda_workspace(ctx, 2 * (size_t)n_chunks * C * sizeof(float));
    if (!partial) return;
    dim3 grid((C + 127) / 128, n_chunks);
    layer_norm_param_partials_kernel<T><<<grid, 128, 0, kn_stream(ctx)>>>(partial, dout, inp, mean, rstd, N, C,
                                                                          n_chunks);
    layer_norm_param_finish_kernel<<<(C + 127) / 128, 128, 0, kn_stream(ctx)>>>(dgamma, dbeta, partial, C,
                                                                                n_chunks);
    kn_cuda_launched(ctx, "layer norm dgamma/dbeta");
  }
}

void kn_cuda_layer_norm_forward(kn_cuda_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                                const float *gamma, const float *beta, int N, int C, float eps) {
  layer_norm_forward(ctx, out, mean, rstd, inp, gamma, beta, N, C, eps);
}

void kn_cuda_layer_norm_backward(kn_cuda_ctx *ctx, float *dinp, float *dgamma, float *dbeta, const float *dout,
                                 const float *inp, const float *mean, const float *rstd, const float *gamma, int N,
                                 int C) {
  layer_norm_backward(ctx, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, N, C);
}

/* ---------------------------------------------------------------- bf16 */

typedef __nv_bfloat16 bf;

void kn_cuda_group_norm_silu_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                          const kn_bf16 *inp, const float *gamma, const float *beta, int B, int C,
                                          int HW, int G, float eps, int fuse_silu) {
  group_norm_forward(ctx, (bf *)out, mean, rstd, (const bf *)inp, gamma, beta, B, C, HW, G, eps, fuse_silu);
}

void kn_cuda_group_norm_silu_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                           const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                           const float *rstd, const float *gamma, const float *beta, int B, int C,
                                           int HW, int G, int fuse_silu) {
  group_norm_backward(ctx, (bf *)dinp, dgamma, dbeta, (const bf *)dout, (const bf *)inp, mean, rstd, gamma, beta, B,
                      C, HW, G, fuse_silu);
}

void kn_cuda_layer_norm_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, float *mean, float *rstd, const kn_bf16 *inp,
                                     const float *gamma, const float *beta, int N, int C, float eps) {
  layer_norm_forward(ctx, (bf *)out, mean, rstd, (const bf *)inp, gamma, beta, N, C, eps);
}

void kn_cuda_layer_norm_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                      const kn_bf16 *dout, const kn_bf16 *inp, const float *mean, const float *rstd,
                                      const float *gamma, int N, int C) {
  layer_norm_backward(ctx, (bf *)dinp, dgamma, dbeta, (const bf *)dout, (const bf *)inp, mean, rstd, gamma, N, C);
}
