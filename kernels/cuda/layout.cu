/* Layout helpers of the models on the device: NCHW <-> token transpose, the
 * per-channel add of the time embedding (and its row sums), dst += alpha src
 * and out = a x + b. Each output value is written by one thread; the row sums
 * run in double in row order, as kernels/cpu/layout.c does. Transpose and
 * add_channel also come in bf16 storage (float32 arithmetic, each output
 * rounded once) through the same templated kernels. Untested on a device so
 * far (no GPU where this was written): tests/device checks them. */
#include "kernels/cuda/cuda_internal.cuh"

#define THREADS 256

/* One thread per output element of out[B, A, C] (or of dinp[B, C, A]). */
template <typename T>
__global__ void transpose_kernel(T *dst, const T *src, int C, int A, size_t n, int accumulate) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    size_t per = (size_t)C * A, b = i / per, r = i % per;
    if (!accumulate) {
      /* dst[b, a, c] = src[b, c, a]; i walks dst */
      size_t a = r / C, c = r % C;
      dst[i] = src[b * per + c * A + a]; /* a copy: no rounding */
    } else {
      /* dst[b, c, a] += src[b, a, c]; i walks dst */
      size_t c = r / A, a = r % A;
      kn_store(dst + i, kn_load(dst + i) + kn_load(src + b * per + a * C + c));
    }
  }
}

void kn_cuda_transpose_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int B, int C, int A) {
  size_t n = (size_t)B * C * A;
  if (n == 0) return;
  transpose_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(out, inp, C, A, n, 0);
  kn_cuda_launched(ctx, "transpose forward");
}

void kn_cuda_transpose_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, int B, int C, int A) {
  size_t n = (size_t)B * C * A;
  if (n == 0 || !dinp) return; /* a NULL gradient is not computed (kernels.h) */
  transpose_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(dinp, dout, C, A, n, 1);
  kn_cuda_launched(ctx, "transpose backward");
}

template <typename T>
__global__ void add_channel_forward_kernel(T *x, const T *v, int HW, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    kn_store(x + i, kn_load(x + i) + kn_load(v + i / HW));
}

/* One warp per row would reorder the sum; one thread per row keeps the CPU's
 * order (rows are B*C, a few thousand, each HW long). */
template <typename T>
__global__ void add_channel_backward_kernel(T *dv, const T *dx, int rows, int HW) {
  int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const T *row = dx + (size_t)r * HW;
  double sum = 0.0;
  for (int i = 0; i < HW; i++) sum += kn_load(row + i);
  /* the CPU's (float)sum, then one add in float32 and (bf16) one rounding */
  kn_store(dv + r, kn_load(dv + r) + (float)sum);
}

void kn_cuda_add_channel_forward(kn_cuda_ctx *ctx, float *x, const float *v, int B, int C, int HW) {
  size_t n = (size_t)B * C * HW;
  if (n == 0) return;
  add_channel_forward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(x, v, HW, n);
  kn_cuda_launched(ctx, "add_channel forward");
}

void kn_cuda_add_channel_backward(kn_cuda_ctx *ctx, float *dv, const float *dx, int B, int C, int HW) {
  int rows = B * C;
  if (rows <= 0 || HW <= 0 || !dv) return; /* a NULL gradient is not computed (kernels.h) */
  add_channel_backward_kernel<float><<<(rows + 127) / 128, 128, 0, kn_stream(ctx)>>>(dv, dx, rows, HW);
  kn_cuda_launched(ctx, "add_channel backward");
}

__global__ void axpy_kernel(float *dst, float alpha, const float *src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] += alpha * src[i];
}

__global__ void affine_kernel(float *out, const float *inp, float a, float b, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = a * inp[i] + b;
}

void kn_cuda_axpy(kn_cuda_ctx *ctx, float *dst, float alpha, const float *src, size_t n) {
  if (n == 0) return;
  axpy_kernel<<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(dst, alpha, src, n);
  kn_cuda_launched(ctx, "axpy");
}

void kn_cuda_affine_forward(kn_cuda_ctx *ctx, float *out, const float *inp, float a, float b, size_t n) {
  if (n == 0) return;
  affine_kernel<<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(out, inp, a, b, n);
  kn_cuda_launched(ctx, "affine");
}

/* ---------------------------------------------------------------- bf16 */

typedef __nv_bfloat16 bf;

void kn_cuda_transpose_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int A) {
  size_t n = (size_t)B * C * A;
  if (n == 0) return;
  transpose_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)out, (const bf *)inp, C, A, n, 0);
  kn_cuda_launched(ctx, "transpose forward bf16");
}

void kn_cuda_transpose_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C, int A) {
  size_t n = (size_t)B * C * A;
  if (n == 0 || !dinp) return;
  transpose_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)dinp, (const bf *)dout, C, A, n,
                                                                               1);
  kn_cuda_launched(ctx, "transpose backward bf16");
}

void kn_cuda_add_channel_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *x, const kn_bf16 *v, int B, int C, int HW) {
  size_t n = (size_t)B * C * HW;
  if (n == 0) return;
  add_channel_forward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)x, (const bf *)v, HW, n);
  kn_cuda_launched(ctx, "add_channel forward bf16");
}

void kn_cuda_add_channel_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dv, const kn_bf16 *dx, int B, int C, int HW) {
  int rows = B * C;
  if (rows <= 0 || HW <= 0 || !dv) return;
  add_channel_backward_kernel<bf><<<(rows + 127) / 128, 128, 0, kn_stream(ctx)>>>((bf *)dv, (const bf *)dx, rows, HW);
  kn_cuda_launched(ctx, "add_channel backward bf16");
}
