/* The backend side of kn_ctx: making a context on the CPU or a CUDA device,
 * its memory (kn_malloc, copies to and from the host), the error check, and
 * what a build and a machine offer. The CUDA branches are compiled only with
 * DPO_HAVE_CUDA; without it asking for CUDA is a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#ifdef DPO_HAVE_CUDA
#include "kernels/cuda/kernels_cuda.h"
#endif

int kn_have_cuda(void) {
#ifdef DPO_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}

int kn_cuda_visible_devices(void) {
#ifdef DPO_HAVE_CUDA
  return kn_cuda_device_count();
#else
  return 0;
#endif
}

const char *kn_backend_name(kn_backend backend) {
  return backend == KN_BACKEND_CUDA ? "cuda" : "cpu";
}

int kn_backend_resolve(const char *name, kn_backend *out, dpo_error *err) {
  *out = KN_BACKEND_CPU;
  if (!name || strcmp(name, "auto") == 0) {
    if (kn_have_cuda() && kn_cuda_visible_devices() > 0) *out = KN_BACKEND_CUDA;
    return DPO_OK;
  }
  if (strcmp(name, "cpu") == 0) return DPO_OK;
  if (strcmp(name, "cuda") != 0)
    return dpo_fail(err, DPO_ERR_USAGE, "--backend: unknown backend '%s' (expected cpu, cuda or auto)", name);
  if (!kn_have_cuda())
    return dpo_fail(err, DPO_ERR_USAGE,
                    "--backend cuda: this build has no CUDA backend (rebuild with -DDPO_CUDA=ON where "
                    "nvcc and cuDNN are installed), use --backend cpu");
  if (kn_cuda_visible_devices() < 1)
    return dpo_fail(err, DPO_ERR_DATA, "--backend cuda: no CUDA device is visible on this machine");
  *out = KN_BACKEND_CUDA;
  return DPO_OK;
}

int kn_ctx_init_backend(kn_ctx *ctx, kn_backend backend, int n_threads, dpo_error *err) {
  int rc = kn_ctx_init(ctx, n_threads, err);
  if (rc != DPO_OK || backend == KN_BACKEND_CPU) return rc;
#ifdef DPO_HAVE_CUDA
  if (kn_cuda_device_count() < 1) {
    kn_ctx_free(ctx);
    return dpo_fail(err, DPO_ERR_DATA, "backend cuda: no CUDA device is visible on this machine");
  }
  kn_cuda_ctx *device = calloc(1, sizeof *device);
  if (!device) {
    kn_ctx_free(ctx);
    return dpo_fail(err, DPO_ERR_DATA, "backend cuda: out of memory");
  }
  rc = kn_cuda_ctx_init(device, 0, err);
  if (rc != DPO_OK) {
    free(device);
    kn_ctx_free(ctx);
    return rc;
  }
  ctx->backend = KN_BACKEND_CUDA;
  ctx->device = device;
  return DPO_OK;
#else
  kn_ctx_free(ctx);
  return dpo_fail(err, DPO_ERR_USAGE,
                  "backend cuda: this build has no CUDA backend (configure with -DDPO_CUDA=ON "
                  "where nvcc and cuDNN are installed)");
#endif
}

void kn_ctx_free(kn_ctx *ctx) {
#ifdef DPO_HAVE_CUDA
  if (ctx->device) {
    kn_cuda_ctx_free(ctx->device);
    free(ctx->device);
  }
#endif
  free(ctx->scratch);
  memset(ctx, 0, sizeof *ctx);
}

int kn_ctx_check(kn_ctx *ctx, dpo_error *err) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) return kn_cuda_ctx_check(ctx->device, err);
#else
  (void)ctx;
  (void)err;
#endif
  return DPO_OK;
}

void kn_ctx_describe(const kn_ctx *ctx, char *buf, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    char name[160];
    kn_cuda_device_name(((const kn_cuda_ctx *)ctx->device)->device, name, sizeof name);
    snprintf(buf, n, "cuda (%s)", name);
    return;
  }
#endif
  snprintf(buf, n, "cpu (%d threads)", ctx->n_threads);
}

void kn_ctx_set_tf32(kn_ctx *ctx, int on) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) ((kn_cuda_ctx *)ctx->device)->allow_tf32 = on != 0;
#else
  (void)ctx;
  (void)on;
#endif
}

size_t kn_ctx_device_memory(const kn_ctx *ctx) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) return kn_cuda_memory_used();
#else
  (void)ctx;
#endif
  return 0;
}

/* -------------------------------------------------------------- memory */

void *kn_malloc(kn_ctx *ctx, size_t bytes) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) return kn_cuda_malloc(ctx->device, bytes);
#else
  (void)ctx;
#endif
  size_t rounded = (bytes + KN_ALIGN - 1) / KN_ALIGN * KN_ALIGN;
  void *p = aligned_alloc(KN_ALIGN, rounded ? rounded : KN_ALIGN);
  if (p) memset(p, 0, rounded);
  return p;
}

void kn_free(kn_backend backend, void *p) {
  if (!p) return;
#ifdef DPO_HAVE_CUDA
  if (backend == KN_BACKEND_CUDA) {
    kn_cuda_free(p);
    return;
  }
#else
  (void)backend;
#endif
  free(p);
}

void kn_zero(kn_ctx *ctx, void *p, size_t bytes) {
  if (!p || bytes == 0) return;
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_zero(ctx->device, p, bytes);
    return;
  }
#else
  (void)ctx;
#endif
  memset(p, 0, bytes);
}

void kn_copy(kn_ctx *ctx, void *dst, const void *src, size_t bytes) {
  if (bytes == 0) return;
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_copy(ctx->device, dst, src, bytes);
    return;
  }
#else
  (void)ctx;
#endif
  memcpy(dst, src, bytes);
}

void kn_upload(kn_ctx *ctx, void *dst, const void *host_src, size_t bytes) {
  if (bytes == 0) return;
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_upload(ctx->device, dst, host_src, bytes);
    return;
  }
#else
  (void)ctx;
#endif
  memcpy(dst, host_src, bytes);
}

void kn_download(kn_ctx *ctx, void *host_dst, const void *src, size_t bytes) {
  if (bytes == 0) return;
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_download(ctx->device, host_dst, src, bytes);
    return;
  }
#else
  (void)ctx;
#endif
  memcpy(host_dst, src, bytes);
}
