/* The CPU context: the thread count (OpenMP's; OpenBLAS runs on one thread
 * per call) and the scratch that ops with workspace borrow. */
#include <omp.h>
#include <stdlib.h>

#include "kernels/cpu/cpu.h"

int kn_ctx_init(kn_ctx *ctx, int n_threads, dpo_error *err) {
  memset(ctx, 0, sizeof *ctx);
  ctx->backend = KN_BACKEND_CPU;
  if (n_threads <= 0) n_threads = omp_get_max_threads();
  if (n_threads > 1024) return dpo_fail(err, DPO_ERR_USAGE, "kernels: %d threads is too many", n_threads);
  ctx->n_threads = n_threads;
  openblas_set_num_threads(1); /* see kn_sgemm */
  return DPO_OK;
}

void kn_gemm(kn_ctx *ctx, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
             int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  int T = kn_threads(ctx);
  int split_rows = M >= N;
  int dim = split_rows ? M : N;
  /* Slabs of a multiple of 16 (whole vector registers); small products on
   * one thread. */
  int slab = ((dim + T - 1) / T + 15) / 16 * 16;
  if (T == 1 || 2.0 * M * N * K < 4e6 || slab >= dim) {
    kn_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  int n_slabs = (dim + slab - 1) / slab;
#pragma omp parallel for num_threads(T) schedule(static)
  for (int t = 0; t < n_slabs; t++) {
    int lo = t * slab, len = dim - lo < slab ? dim - lo : slab;
    if (split_rows) {
      /* Rows lo.. of op(A): row m of A, or column m when A is transposed. */
      const float *a = trans_a ? A + lo : A + (size_t)lo * lda;
      kn_sgemm(trans_a, trans_b, len, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
    } else {
      const float *b = trans_b ? B + (size_t)lo * ldb : B + lo;
      kn_sgemm(trans_a, trans_b, M, len, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
    }
  }
}

int kn_ctx_reserve(kn_ctx *ctx, size_t bytes, dpo_error *err) {
  /* CUDA ops take their workspace from the device context, which sizes
   * itself on the first step; a host scratch planned for the CPU kernels
   * would only waste memory. */
  if (ctx->backend == KN_BACKEND_CUDA) return DPO_OK;
  if (bytes <= ctx->scratch_bytes) return DPO_OK;
  size_t rounded = (bytes + KN_ALIGN - 1) / KN_ALIGN * KN_ALIGN;
  float *p = aligned_alloc(KN_ALIGN, rounded);
  if (!p) return dpo_fail(err, DPO_ERR_DATA, "kernels: cannot allocate %zu bytes of scratch", rounded);
  free(ctx->scratch);
  ctx->scratch = p;
  ctx->scratch_bytes = rounded;
  return DPO_OK;
}

float *kn_ctx_scratch(kn_ctx *ctx, size_t bytes) {
  if (bytes > ctx->scratch_bytes) {
    if (kn_ctx_reserve(ctx, bytes, NULL) != DPO_OK) return NULL;
    ctx->scratch_grows++;
  }
  return ctx->scratch;
}

/* kn_ctx_free is in kernels/backend.c (it also closes a CUDA device). */
