/* The CUDA context: device, stream, cuBLAS and cuDNN handles, the shared
 * workspace and the sticky error; device memory helpers; bf16 conversions;
 * the deterministic column sums that bias and norm gradients share. */
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.cuh"

void kn_cuda_fail(kn_cuda_ctx *ctx, const char *what, const char *detail) {
  if (ctx->status != 0) return;
  ctx->status = 1;
  snprintf(ctx->message, sizeof ctx->message, "cuda: %s failed: %s", what, detail ? detail : "?");
}

int kn_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); /* clear "no device" so later calls start clean */
    return 0;
  }
  return n;
}

void kn_cuda_device_name(int device, char *buf, size_t n) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    snprintf(buf, n, "no CUDA device %d", device);
    return;
  }
  snprintf(buf, n, "%s, sm_%d%d, %.0f GiB", prop.name, prop.major, prop.minor,
           (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
}

int kn_cuda_ctx_init(kn_cuda_ctx *ctx, int device, dpo_error *err) {
  memset(ctx, 0, sizeof *ctx);
  ctx->device = device;
  cudaError_t rc = cudaSetDevice(device);
  if (rc != cudaSuccess)
    return dpo_fail(err, DPO_ERR_DATA, "cuda: cannot use device %d: %s", device, cudaGetErrorString(rc));
  cudaStream_t stream;
  rc = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (rc != cudaSuccess) return dpo_fail(err, DPO_ERR_DATA, "cuda: cannot create a stream: %s", cudaGetErrorString(rc));
  ctx->stream = stream;
  cublasHandle_t blas;
  cublasStatus_t brc = cublasCreate(&blas);
  if (brc != CUBLAS_STATUS_SUCCESS) {
    kn_cuda_ctx_free(ctx);
    return dpo_fail(err, DPO_ERR_DATA, "cuda: cublasCreate failed: %s", cublasGetStatusString(brc));
  }
  ctx->cublas = blas;
  cublasSetStream(blas, stream);
  /* Exact float32 unless the caller opts into TF32 per call (allow_tf32). */
  cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH);
  cudnnHandle_t dnn;
  cudnnStatus_t drc = cudnnCreate(&dnn);
  if (drc != CUDNN_STATUS_SUCCESS) {
    kn_cuda_ctx_free(ctx);
    return dpo_fail(err, DPO_ERR_DATA, "cuda: cudnnCreate failed: %s", cudnnGetErrorString(drc));
  }
  ctx->cudnn = dnn;
  cudnnSetStream(dnn, stream);
  return DPO_OK;
}

int kn_cuda_ctx_reserve(kn_cuda_ctx *ctx, size_t bytes, dpo_error *err) {
  if (bytes <= ctx->workspace_bytes) return DPO_OK;
  size_t rounded = (bytes + 255) / 256 * 256;
  /* The stream may still use the old block: wait before freeing it. */
  cudaStreamSynchronize(kn_stream(ctx));
  void *p = NULL;
  cudaError_t rc = cudaMalloc(&p, rounded);
  if (rc != cudaSuccess)
    return dpo_fail(err, DPO_ERR_DATA, "cuda: cannot allocate %zu bytes of workspace: %s", rounded,
                    cudaGetErrorString(rc));
  cudaFree(ctx->workspace);
  ctx->workspace = p;
  ctx->workspace_bytes = rounded;
  return DPO_OK;
}

void *kn_cuda_workspace(kn_cuda_ctx *ctx, size_t bytes) {
  if (bytes > ctx->workspace_bytes) {
    dpo_error err;
    if (kn_cuda_ctx_reserve(ctx, bytes, &err) != DPO_OK) {
      kn_cuda_fail(ctx, "workspace", err.msg);
      return NULL;
    }
    ctx->workspace_grows++;
  }
  return ctx->workspace;
}

int kn_cuda_ctx_check(kn_cuda_ctx *ctx, dpo_error *err) {
  cudaError_t rc = cudaStreamSynchronize(kn_stream(ctx));
  if (rc != cudaSuccess) kn_cuda_fail(ctx, "stream", cudaGetErrorString(rc));
  if (ctx->status != 0) return dpo_fail(err, DPO_ERR_DATA, "%s", ctx->message);
  return DPO_OK;
}

void kn_cuda_ctx_free(kn_cuda_ctx *ctx) {
  if (ctx->stream) cudaStreamSynchronize(kn_stream(ctx));
  if (ctx->cudnn) cudnnDestroy(kn_cudnn(ctx));
  if (ctx->cublas) cublasDestroy(kn_cublas(ctx));
  if (ctx->workspace) cudaFree(ctx->workspace);
  if (ctx->stream) cudaStreamDestroy(kn_stream(ctx));
  memset(ctx, 0, sizeof *ctx);
}

/* ------------------------------------------------------------- memory */

static size_t allocated_now, allocated_peak;

void *kn_cuda_malloc(kn_cuda_ctx *ctx, size_t bytes) {
  void *p = NULL;
  size_t rounded = bytes > 0 ? bytes : 1;
  if (!kn_cuda_ok(ctx, cudaMalloc(&p, rounded), "cudaMalloc")) return NULL;
  /* On the context's stream: it does not synchronise with the legacy default
   * stream, so a plain cudaMemset could land after the caller's upload. */
  if (!kn_cuda_ok(ctx, cudaMemsetAsync(p, 0, rounded, kn_stream(ctx)), "cudaMemset")) {
    cudaFree(p);
    return NULL;
  }
  /* A high-water mark, not a ledger: frees are not tracked per pointer. */
  allocated_now += rounded;
  if (allocated_now > allocated_peak) allocated_peak = allocated_now;
  return p;
}

void kn_cuda_free(void *p) { cudaFree(p); }

void kn_cuda_upload(kn_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
  kn_cuda_ok(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, kn_stream(ctx)), "upload");
  kn_cuda_ok(ctx, cudaStreamSynchronize(kn_stream(ctx)), "upload");
}

void kn_cuda_download(kn_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
  kn_cuda_ok(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, kn_stream(ctx)), "download");
  kn_cuda_ok(ctx, cudaStreamSynchronize(kn_stream(ctx)), "download");
}

void kn_cuda_zero(kn_cuda_ctx *ctx, void *p, size_t bytes) {
  kn_cuda_ok(ctx, cudaMemsetAsync(p, 0, bytes, kn_stream(ctx)), "zero");
}

void kn_cuda_copy(kn_cuda_ctx *ctx, void *dst, const void *src, size_t bytes) {
  kn_cuda_ok(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, kn_stream(ctx)), "copy");
}

size_t kn_cuda_memory_used(void) {
  size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) return 0;
  return total - free_bytes;
}

size_t kn_cuda_peak_allocated(void) { return allocated_peak; }

/* ---------------------------------------------------------------- bf16 */

/* The host conversions kn_bf16_from_float / kn_bf16_to_float are in
 * kernels/cpu/bf16.c (kernels.h). */

__global__ void to_bf16_kernel(__nv_bfloat16 *out, const float *inp, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16_rn(inp[i]);
}

__global__ void from_bf16_kernel(float *out, const __nv_bfloat16 *inp, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __bfloat162float(inp[i]);
}

void kn_cuda_to_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const float *inp, size_t n) {
  if (n == 0) return;
  to_bf16_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>((__nv_bfloat16 *)out, inp, n);
  kn_cuda_launched(ctx, "to_bf16");
}

void kn_cuda_from_bf16(kn_cuda_ctx *ctx, float *out, const kn_bf16 *inp, size_t n) {
  if (n == 0) return;
  from_bf16_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(out, (const __nv_bfloat16 *)inp, n);
  kn_cuda_launched(ctx, "from_bf16");
}

/* -------------------------------------------------------- column sums */

#define COLSUM_ROWS 256 /* rows per partial sum */

/* partial[chunk, c] = sum of src[r, c] over the chunk's rows, in row order. */
__global__ void column_partials_kernel(float *partial, const float *src, int rows, int cols) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  int chunk = blockIdx.y;
  if (c >= cols) return;
  int r0 = chunk * COLSUM_ROWS, r1 = min(rows, r0 + COLSUM_ROWS);
  float s = 0.0f;
  for (int r = r0; r < r1; r++) s += src[(size_t)r * cols + c];
  partial[(size_t)chunk * cols + c] = s;
}

__global__ void column_finish_kernel(float *dst, const float *partial, int n_chunks, int cols) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (int k = 0; k < n_chunks; k++) s += partial[(size_t)k * cols + c];
  dst[c] += s;
}

void kn_cuda_column_sums_accumulate(kn_cuda_ctx *ctx, float *dst, const float *src, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return;
  int n_chunks = (rows + COLSUM_ROWS - 1) / COLSUM_ROWS;
  float *partial = (float *)kn_cuda_workspace(ctx, (size_t)n_chunks * cols * sizeof(float));
  if (!partial) return;
  dim3 grid((cols + 127) / 128, n_chunks);
  column_partials_kernel<<<grid, 128, 0, kn_stream(ctx)>>>(partial, src, rows, cols);
  column_finish_kernel<<<(cols + 127) / 128, 128, 0, kn_stream(ctx)>>>(dst, partial, n_chunks, cols);
  kn_cuda_launched(ctx, "column sums");
}
