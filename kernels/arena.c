/* The bump arena: one allocation planned up front, handed out in order. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

size_t kn_arena_bytes(size_t n_floats) {
  size_t bytes = n_floats * sizeof(float);
  return (bytes + KN_ALIGN - 1) / KN_ALIGN * KN_ALIGN;
}

int kn_arena_init(kn_arena *a, size_t bytes, dpo_error *err) {
  memset(a, 0, sizeof *a);
  bytes = (bytes + KN_ALIGN - 1) / KN_ALIGN * KN_ALIGN;
  if (bytes == 0) return DPO_OK;
  a->base = aligned_alloc(KN_ALIGN, bytes);
  if (!a->base) return dpo_fail(err, DPO_ERR_DATA, "arena: cannot allocate %zu bytes", bytes);
  memset(a->base, 0, bytes);
  a->size = bytes;
  return DPO_OK;
}

int kn_arena_init_on(kn_arena *a, kn_ctx *ctx, size_t bytes, dpo_error *err) {
  if (ctx->backend == KN_BACKEND_CPU) return kn_arena_init(a, bytes, err);
  memset(a, 0, sizeof *a);
  a->backend = ctx->backend;
  bytes = (bytes + KN_ALIGN - 1) / KN_ALIGN * KN_ALIGN;
  if (bytes == 0) return DPO_OK;
  a->base = kn_malloc(ctx, bytes); /* zeroed */
  if (!a->base)
    return dpo_fail(err, DPO_ERR_DATA, "arena: cannot allocate %zu bytes on %s", bytes,
                    kn_backend_name(ctx->backend));
  a->size = bytes;
  return DPO_OK;
}

float *kn_arena_floats(kn_arena *a, size_t n_floats) {
  size_t bytes = kn_arena_bytes(n_floats);
  if (bytes > a->size - a->used) return NULL;
  float *p = (float *)(a->base + a->used);
  a->used += bytes;
  return p;
}

void kn_arena_reset(kn_arena *a) { a->used = 0; }

void kn_arena_free(kn_arena *a) {
  kn_free(a->backend, a->base);
  memset(a, 0, sizeof *a);
}
