/* Helpers shared by the CUDA kernels (private to kernels/cuda). */
#ifndef DPO_KERNELS_CUDA_INTERNAL_CUH
#define DPO_KERNELS_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <math.h>

#include "kernels/cuda/kernels_cuda.h"

/* Records the first failure in the context; later ones are dropped so the
 * message names the cause, not a consequence. Defined in context.cu. */
void kn_cuda_fail(kn_cuda_ctx *ctx, const char *what, const char *detail);

static inline cudaStream_t kn_stream(const kn_cuda_ctx *ctx) { return (cudaStream_t)ctx->stream; }
static inline cublasHandle_t kn_cublas(const kn_cuda_ctx *ctx) { return (cublasHandle_t)ctx->cublas; }
static inline cudnnHandle_t kn_cudnn(const kn_cuda_ctx *ctx) { return (cudnnHandle_t)ctx->cudnn; }

/* Checks after each library call or launch; a failure is recorded, never
 * printed, and the op returns (later ops still run but the step is void). */
static inline int kn_cuda_ok(kn_cuda_ctx *ctx, cudaError_t rc, const char *what) {
  if (rc == cudaSuccess) return 1;
  kn_cuda_fail(ctx, what, cudaGetErrorString(rc));
  return 0;
}

static inline int kn_cublas_ok(kn_cuda_ctx *ctx, cublasStatus_t rc, const char *what) {
  if (rc == CUBLAS_STATUS_SUCCESS) return 1;
  kn_cuda_fail(ctx, what, cublasGetStatusString(rc));
  return 0;
}

static inline int kn_cudnn_ok(kn_cuda_ctx *ctx, cudnnStatus_t rc, const char *what) {
  if (rc == CUDNN_STATUS_SUCCESS) return 1;
  kn_cuda_fail(ctx, what, cudnnGetErrorString(rc));
  return 0;
}

/* After a kernel launch: catches bad launch configurations at once. */
static inline void kn_cuda_launched(kn_cuda_ctx *ctx, const char *what) {
  kn_cuda_ok(ctx, cudaGetLastError(), what);
}

/* Dynamic shared memory above 48 KiB needs an explicit opt-in per kernel
 * (up to the device's limit: 163 KiB on an A100, 227 KiB on an H100). */
template <typename Kernel>
static inline int kn_cuda_allow_shared(kn_cuda_ctx *ctx, Kernel kernel, size_t bytes, const char *what) {
  if (bytes <= 48 * 1024) return 1;
  return kn_cuda_ok(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), what);
}

/* Workspace of at least `bytes` (grown and counted if it is not). */
void *kn_cuda_workspace(kn_cuda_ctx *ctx, size_t bytes);

/* Blocks of `threads` covering n items, capped (grid-stride loops do the rest). */
static inline unsigned kn_blocks(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return b > 65535u * 16u ? 65535u * 16u : (unsigned)b;
}

/* ------------------------------------------- float / bf16 storage */

/* Kernels templated on the storage type T (float or __nv_bfloat16) read
 * and write through these; arithmetic is always float32. */
__device__ __forceinline__ float kn_load(const float *p) { return *p; }
__device__ __forceinline__ float kn_load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void kn_store(float *p, float v) { *p = v; }
__device__ __forceinline__ void kn_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* ---------------------------------------------------- device math */

__device__ __forceinline__ float kn_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float kn_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float kn_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ double kn_warp_sum_double(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, at most 1024),
 * in a fixed order; every thread gets the result. `shared` holds 32 floats. */
__device__ __forceinline__ float kn_block_sum(float v, float *shared) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = kn_warp_sum(v);
  __syncthreads(); /* shared may still be read by a previous call */
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < n_warps ? shared[lane] : 0.0f;
  return kn_warp_sum(v);
}

__device__ __forceinline__ double kn_block_sum_double(double v, double *shared) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = kn_warp_sum_double(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < n_warps ? shared[lane] : 0.0;
  return kn_warp_sum_double(v);
}

/* ------------------------------------------ attention on tensor cores */

/* bf16 flash attention through wmma for head sizes D <= this
 * (attention_tc.cu); attention.cu's bf16 entry points call it after their
 * checks (1 <= D, B H Nq > 0), its scalar kernels serve larger heads and
 * float32. Backward takes delta[B, H, Nq] = rowsum(dout * out), computed by
 * attention.cu, and accumulates into the non-NULL gradients. */
#define KN_CUDA_ATTENTION_TC_MAX_D 160
void kn_cuda_attention_tc_forward(kn_cuda_ctx *ctx, __nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q,
                                  const __nv_bfloat16 *k, const __nv_bfloat16 *v, int B, int H, int Nq, int Nk, int D,
                                  float scale, int causal);
void kn_cuda_attention_tc_backward(kn_cuda_ctx *ctx, __nv_bfloat16 *dq, __nv_bfloat16 *dk, __nv_bfloat16 *dv,
                                   const __nv_bfloat16 *dout, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                   const __nv_bfloat16 *v, const float *lse, const float *delta, int B, int H, int Nq,
                                   int Nk, int D, float scale, int causal);

/* dst[c] += sum over rows of src[rows, cols] (column sums), deterministic:
 * partial sums over fixed chunks of rows in the workspace, then the chunks in
 * order. Used by bias gradients and norm parameter gradients. */
void kn_cuda_column_sums_accumulate(kn_cuda_ctx *ctx, float *dst, const float *src, int rows,
                                    int cols);

#endif
