/* The CPU context: thread count (shared by OpenMP and OpenBLAS) and the
 * scratch that ops with workspace borrow. */
#include <omp.h>
#include <stdlib.h>

#include "kernels/cpu/cpu.h"

int kn_ctx_init(kn_ctx *ctx, int n_threads, dpo_error *err) {
  memset(ctx, 0, sizeof *ctx);
  ctx->backend = KN_BACKEND_CPU;
  if (n_threads <= 0) n_threads = omp_get_max_threads();
  if (n_threads > 1024) return dpo_fail(err, DPO_ERR_USAGE, "kernels: %d threads is too many", n_threads);
  ctx->n_threads = n_threads;
  openblas_set_num_threads(n_threads);
  return DPO_OK;
}

int kn_ctx_reserve(kn_ctx *ctx, size_t bytes, dpo_error *err) {
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

void kn_ctx_free(kn_ctx *ctx) {
  free(ctx->scratch);
  memset(ctx, 0, sizeof *ctx);
}
