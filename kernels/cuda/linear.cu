/* Linear layers on cuBLAS. cuBLAS is column-major: a row-major [R, C] array
 * is a column-major C x R matrix. So the row-major W[OC, IC] is IC x OC,
 * inp[N, IC] is IC x N, out[N, OC] is OC x N, and
 *   out  (col-major OC x N)  = op_T(W: IC x OC) . inp (IC x N)
 *   dinp (col-major IC x N)  = W (IC x OC) . dout (OC x N)        (beta 1)
 *   dW   (col-major IC x OC) = inp (IC x N) . op_T(dout: OC x N)  (beta 1)
 * cublasGemmEx with float32 compute; bf16 operands where asked. */
#include "kernels/cuda/cuda_internal.cuh"

/* float32 operands may use TF32 when the caller allows it; bf16 operands
 * always accumulate in plain float32. */
static cublasComputeType_t compute_type(const kn_cuda_ctx *ctx, cudaDataType_t operand) {
  if (operand == CUDA_R_32F && ctx->allow_tf32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

/* C (col-major m x n, ldc) = alpha op(A) op(B) + beta C with the given types. */
static void gemm(kn_cuda_ctx *ctx, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 float alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                 cudaDataType_t bt, int ldb, float beta, void *C, cudaDataType_t ct, int ldc,
                 const char *what) {
  kn_cublas_ok(ctx,
               cublasGemmEx(kn_cublas(ctx), ta, tb, m, n, k, &alpha, A, at, lda, B, bt, ldb, &beta, C,
                            ct, ldc, compute_type(ctx, at), CUBLAS_GEMM_DEFAULT),
               what);
}

__global__ void add_bias_kernel(float *out, const float *bias, size_t rows, int cols) {
  size_t n = rows * cols;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] += bias[i % cols];
}

__global__ void add_bias_bf16_kernel(__nv_bfloat16 *out, const float *bias, size_t rows, int cols) {
  size_t n = rows * cols;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16_rn(__bfloat162float(out[i]) + bias[i % cols]);
}

void kn_cuda_linear_forward(kn_cuda_ctx *ctx, float *out, const float *inp, const float *weight,
                            const float *bias, int N, int IC, int OC) {
  gemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, 1.0f, weight, CUDA_R_32F, IC, inp, CUDA_R_32F, IC,
       0.0f, out, CUDA_R_32F, OC, "linear forward");
  if (bias) {
    size_t n = (size_t)N * OC;
    add_bias_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(out, bias, (size_t)N, OC);
    kn_cuda_launched(ctx, "linear bias");
  }
}

void kn_cuda_linear_backward(kn_cuda_ctx *ctx, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int N,
                             int IC, int OC) {
  if (dinp)
    gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, 1.0f, weight, CUDA_R_32F, IC, dout, CUDA_R_32F,
         OC, 1.0f, dinp, CUDA_R_32F, IC, "linear dinp");
  if (dweight)
    gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, 1.0f, inp, CUDA_R_32F, IC, dout, CUDA_R_32F, OC,
         1.0f, dweight, CUDA_R_32F, IC, "linear dweight");
  if (dbias) kn_cuda_column_sums_accumulate(ctx, dbias, dout, N, OC);
}

/* ---------------------------------------------------------------- bf16 */

/* dbias from a bf16 dout: one thread per column walks the rows in order,
 * summing in float32. */
__global__ void column_sums_bf16_kernel(float *dst, const __nv_bfloat16 *src, int rows, int cols) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (int r = 0; r < rows; r++) s += __bfloat162float(src[(size_t)r * cols + c]);
  dst[c] += s;
}

void kn_cuda_linear_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp,
                                 const kn_bf16 *weight, const float *bias, int N, int IC, int OC) {
  gemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, 1.0f, weight, CUDA_R_16BF, IC, inp, CUDA_R_16BF,
       IC, 0.0f, out, CUDA_R_16BF, OC, "linear forward bf16");
  if (bias) {
    size_t n = (size_t)N * OC;
    add_bias_bf16_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>((__nv_bfloat16 *)out, bias,
                                                                         (size_t)N, OC);
    kn_cuda_launched(ctx, "linear bias bf16");
  }
}

void kn_cuda_linear_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                  const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight,
                                  int N, int IC, int OC) {
  /* dinp accumulates in bf16 storage (C is read and rounded once per GEMM). */
  if (dinp)
    gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, 1.0f, weight, CUDA_R_16BF, IC, dout,
         CUDA_R_16BF, OC, 1.0f, dinp, CUDA_R_16BF, IC, "linear dinp bf16");
  /* bf16 A and B with a float32 C: the master gradient keeps its precision. */
  if (dweight)
    gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, 1.0f, inp, CUDA_R_16BF, IC, dout, CUDA_R_16BF, OC,
         1.0f, dweight, CUDA_R_32F, IC, "linear dweight bf16");
  if (dbias) {
    column_sums_bf16_kernel<<<(OC + 127) / 128, 128, 0, kn_stream(ctx)>>>(dbias, (const __nv_bfloat16 *)dout,
                                                                          N, OC);
    kn_cuda_launched(ctx, "linear dbias bf16");
  }
}
