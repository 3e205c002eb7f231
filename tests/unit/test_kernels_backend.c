/* The backend side of the kernels on a machine without a GPU: --backend
 * names resolve (auto is the CPU here, cuda fails with the build's or the
 * machine's reason), a CUDA context cannot be made and leaves nothing behind,
 * and the CPU's backend memory calls and layout ops do what their loops did.
 * (With a visible device the CUDA expectations below do not hold; the device
 * tests cover that machine: this test then checks only the CPU parts.) */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/test.h"

static void test_resolve(void) {
  dpo_error err = {0};
  kn_backend b = KN_BACKEND_CUDA;
  CHECK_INT(kn_backend_resolve("cpu", &b, &err), DPO_OK);
  CHECK_INT(b, KN_BACKEND_CPU);
  CHECK_INT(kn_backend_resolve("tpu", &b, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "unknown backend 'tpu' (expected cpu, cuda or auto)");
  CHECK_INT(kn_backend_resolve("", &b, &err), DPO_ERR_USAGE);
  CHECK_STR(kn_backend_name(KN_BACKEND_CPU), "cpu");
  CHECK_STR(kn_backend_name(KN_BACKEND_CUDA), "cuda");
  if (kn_cuda_visible_devices() > 0) return; /* a GPU machine: the device tests cover it */
  CHECK_INT(kn_backend_resolve(NULL, &b, &err), DPO_OK);
  CHECK_INT(b, KN_BACKEND_CPU);
  CHECK_INT(kn_backend_resolve("auto", &b, &err), DPO_OK);
  CHECK_INT(b, KN_BACKEND_CPU);
  int rc = kn_backend_resolve("cuda", &b, &err);
  if (kn_have_cuda()) {
    CHECK_INT(rc, DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "no CUDA device is visible");
  } else {
    CHECK_INT(rc, DPO_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "this build has no CUDA backend");
  }
  kn_ctx ctx;
  rc = kn_ctx_init_backend(&ctx, KN_BACKEND_CUDA, 1, &err);
  CHECK_INT(rc, kn_have_cuda() ? DPO_ERR_DATA : DPO_ERR_USAGE);
  CHECK(ctx.device == NULL && ctx.scratch == NULL);
}

static void test_cpu_memory(void) {
  dpo_error err = {0};
  kn_ctx ctx;
  CHECK_INT(kn_ctx_init_backend(&ctx, KN_BACKEND_CPU, 1, &err), DPO_OK);
  CHECK_INT(ctx.backend, KN_BACKEND_CPU);
  CHECK(ctx.device == NULL);
  char name[128];
  kn_ctx_describe(&ctx, name, sizeof name);
  CHECK_STR(name, "cpu (1 threads)");
  CHECK(kn_ctx_device_memory(&ctx) == 0);
  float *a = kn_malloc(&ctx, 100 * sizeof(float)), *b = kn_malloc(&ctx, 100 * sizeof(float));
  CHECK(a && b && ((uintptr_t)a % KN_ALIGN) == 0);
  int zero = 1;
  for (int i = 0; i < 100; i++) zero &= a[i] == 0.0f;
  CHECK(zero);
  float host[100], back[100];
  for (int i = 0; i < 100; i++) host[i] = (float)i - 50.0f;
  kn_upload(&ctx, a, host, sizeof host);
  kn_copy(&ctx, b, a, sizeof host);
  kn_download(&ctx, back, b, sizeof back);
  CHECK(memcmp(host, back, sizeof host) == 0);
  kn_zero(&ctx, b + 10, 20 * sizeof(float));
  CHECK(b[9] == -41.0f && b[10] == 0.0f && b[29] == 0.0f && b[30] == -20.0f);
  CHECK_INT(kn_ctx_check(&ctx, &err), DPO_OK);
  kn_free(KN_BACKEND_CPU, a);
  kn_free(KN_BACKEND_CPU, b);
  kn_free(KN_BACKEND_CPU, NULL);

  kn_arena arena;
  CHECK_INT(kn_arena_init_on(&arena, &ctx, 1000, &err), DPO_OK);
  CHECK_INT(arena.backend, KN_BACKEND_CPU);
  float *x = kn_arena_floats(&arena, 100);
  CHECK(x && x[0] == 0.0f && x[99] == 0.0f);
  CHECK(kn_arena_floats(&arena, 1000) == NULL); /* beyond the plan */
  kn_arena_free(&arena);
  kn_ctx_free(&ctx);
}

/* The layout ops against the loops they replaced in models/layers.c. */
static void test_layout_ops(void) {
  dpo_error err = {0};
  kn_ctx ctx;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  enum { B = 2, C = 3, A = 5, N = B * C * A };
  float in[N], out[N], din[N];
  for (int i = 0; i < N; i++) in[i] = (float)(i * 7 % 11) - 5.0f;
  kn_transpose_forward(&ctx, out, in, B, C, A);
  int ok = 1;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int a = 0; a < A; a++) ok &= out[b * A * C + a * C + c] == in[b * C * A + c * A + a];
  CHECK(ok);
  for (int i = 0; i < N; i++) din[i] = 1.0f;
  kn_transpose_backward(&ctx, din, out, B, C, A); /* din += transpose back = 1 + in */
  ok = 1;
  for (int i = 0; i < N; i++) ok &= din[i] == 1.0f + in[i];
  CHECK(ok);

  float v[B * C] = {1, 2, 3, 4, 5, 6}, x[N], dv[B * C] = {0};
  memcpy(x, in, sizeof x);
  kn_add_channel_forward(&ctx, x, v, B, C, A);
  ok = 1;
  for (int i = 0; i < N; i++) ok &= x[i] == in[i] + v[i / A];
  CHECK(ok);
  kn_add_channel_backward(&ctx, dv, in, B, C, A);
  for (int bc = 0; bc < B * C; bc++) {
    double sum = 0;
    for (int i = 0; i < A; i++) sum += in[bc * A + i];
    CHECK(dv[bc] == (float)sum);
  }
  kn_axpy(&ctx, x, 2.0f, in, N);
  kn_affine_forward(&ctx, out, in, 2.0f, -1.0f, N);
  ok = 1;
  for (int i = 0; i < N; i++) ok &= x[i] == in[i] + v[i / A] + 2.0f * in[i] && out[i] == 2.0f * in[i] - 1.0f;
  CHECK(ok);
  kn_ctx_free(&ctx);
}

int main(void) {
  test_resolve();
  test_cpu_memory();
  test_layout_ops();
  return test_finish();
}
