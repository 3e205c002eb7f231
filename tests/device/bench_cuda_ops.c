/* Times the CUDA ops at SD1.5 shapes (64x64 latents, batch 2 by default):
 * the median of `repeat` runs after a warm-up, each run synchronised, on
 * random inputs. Prints one line per op (and --json lines). Not a test:
 * built with the CUDA backend, run by tests/device/run.sh. Exit 77 without
 * a GPU (nothing measured). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/kernels_cuda.h"

static kn_cuda_ctx gpu;
static int repeat = 10, json;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *device_random(size_t n, uint64_t stream) {
  float *p = kn_cuda_malloc(&gpu, n * sizeof(float));
  if (p) kn_cuda_rng_normal_fill(&gpu, p, 42, stream, 0, n);
  return p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef void (*op_fn)(void *args);

/* Median seconds of one call (each call followed by a full synchronisation). */
static double time_op(op_fn fn, void *args) {
  double times[100];
  dpo_error err;
  fn(args); /* warm-up: cuDNN heuristics, workspace growth, module load */
  if (kn_cuda_ctx_check(&gpu, &err) != DPO_OK) return -1.0;
  for (int r = 0; r < repeat; r++) {
    double t0 = now();
    fn(args);
    if (kn_cuda_ctx_check(&gpu, &err) != DPO_OK) return -1.0;
    times[r] = now() - t0;
  }
  qsort(times, (size_t)repeat, sizeof(double), cmp_double);
  return times[repeat / 2];
}

static void report(const char *name, const char *shape, double flops, double seconds) {
  if (seconds < 0) {
    printf("%-24s %-36s FAILED: %s\n", name, shape, gpu.message);
    return;
  }
  double tflops = flops > 0 ? flops / seconds / 1e12 : 0.0;
  if (json)
    printf("{\"op\": \"%s\", \"shape\": \"%s\", \"seconds\": %.6g, \"flops\": %.6g, \"tflops\": %.4g}\n", name, shape,
           seconds, flops, tflops);
  else
    printf("%-24s %-36s %9.3f ms %9.2f TFLOP/s\n", name, shape, seconds * 1e3, tflops);
}

/* ----------------------------------------------------------------- ops */

typedef struct {
  float *out, *inp, *w, *bias, *dout, *dinp, *dw, *db;
  kn_bf16 *out16, *inp16, *w16, *dout16, *dinp16;
  int N, IC, OC;
} linear_args;

static void linear_fwd(void *p) {
  linear_args *a = p;
  kn_cuda_linear_forward(&gpu, a->out, a->inp, a->w, a->bias, a->N, a->IC, a->OC);
}
static void linear_bwd(void *p) {
  linear_args *a = p;
  kn_cuda_linear_backward(&gpu, a->dinp, a->dw, a->db, a->dout, a->inp, a->w, a->N, a->IC, a->OC);
}
static void linear_fwd_bf16(void *p) {
  linear_args *a = p;
  kn_cuda_linear_forward_bf16(&gpu, a->out16, a->inp16, a->w16, a->bias, a->N, a->IC, a->OC);
}
static void linear_bwd_bf16(void *p) {
  linear_args *a = p;
  kn_cuda_linear_backward_bf16(&gpu, a->dinp16, a->dw, a->db, a->dout16, a->inp16, a->w16, a->N, a->IC, a->OC);
}

typedef struct {
  float *out, *inp, *w, *bias, *dout, *dinp, *dw, *db;
  kn_bf16 *out16, *inp16, *w16, *dout16, *dinp16;
  int B, C, H, W, OC, K, stride, pad;
} conv_args;

static void conv_fwd(void *p) {
  conv_args *a = p;
  kn_cuda_conv2d_forward(&gpu, a->out, a->inp, a->w, a->bias, a->B, a->C, a->H, a->W, a->OC, a->K, a->stride, a->pad);
}
static void conv_bwd(void *p) {
  conv_args *a = p;
  kn_cuda_conv2d_backward(&gpu, a->dinp, a->dw, a->db, a->dout, a->inp, a->w, a->B, a->C, a->H, a->W, a->OC, a->K,
                          a->stride, a->pad);
}
static void conv_fwd_bf16(void *p) {
  conv_args *a = p;
  kn_cuda_conv2d_forward_bf16(&gpu, a->out16, a->inp16, a->w16, a->bias, a->B, a->C, a->H, a->W, a->OC, a->K,
                              a->stride, a->pad);
}
/* dweight and dbias float32 (the master gradients), as a bf16 step has them. */
static void conv_bwd_bf16(void *p) {
  conv_args *a = p;
  kn_cuda_conv2d_backward_bf16(&gpu, a->dinp16, a->dw, a->db, a->dout16, a->inp16, a->w16, a->B, a->C, a->H, a->W,
                               a->OC, a->K, a->stride, a->pad);
}

typedef struct {
  float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
  kn_bf16 *q16, *k16, *v16, *out16, *dout16, *dq16, *dk16, *dv16;
  int B, H, Nq, Nk, D;
} attn_args;

static void attn_fwd(void *p) {
  attn_args *a = p;
  kn_cuda_attention_forward(&gpu, a->out, a->lse, a->q, a->k, a->v, a->B, a->H, a->Nq, a->Nk, a->D, 0.125f, 0);
}
static void attn_bwd(void *p) {
  attn_args *a = p;
  kn_cuda_attention_backward(&gpu, a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->out, a->lse, a->B, a->H, a->Nq,
                             a->Nk, a->D, 0.125f, 0);
}

static void attn_fwd_bf16(void *p) {
  attn_args *a = p;
  kn_cuda_attention_forward_bf16(&gpu, a->out16, a->lse, a->q16, a->k16, a->v16, a->B, a->H, a->Nq, a->Nk, a->D,
                                 0.125f, 0);
}
static void attn_bwd_bf16(void *p) {
  attn_args *a = p;
  kn_cuda_attention_backward_bf16(&gpu, a->dq16, a->dk16, a->dv16, a->dout16, a->q16, a->k16, a->v16, a->out16,
                                  a->lse, a->B, a->H, a->Nq, a->Nk, a->D, 0.125f, 0);
}

typedef struct {
  float *out, *inp, *gamma, *beta, *mean, *rstd, *dout, *dinp, *dg, *db;
  int B, C, HW, G;
} gn_args;

static void gn_fwd(void *p) {
  gn_args *a = p;
  kn_cuda_group_norm_silu_forward(&gpu, a->out, a->mean, a->rstd, a->inp, a->gamma, a->beta, a->B, a->C, a->HW, a->G,
                                  1e-5f);
}
static void gn_bwd(void *p) {
  gn_args *a = p;
  kn_cuda_group_norm_silu_backward(&gpu, a->dinp, a->dg, a->db, a->dout, a->inp, a->mean, a->rstd, a->gamma, a->beta,
                                   a->B, a->C, a->HW, a->G);
}

static void bench_linear(int N, int IC, int OC) {
  linear_args a = {0};
  a.N = N, a.IC = IC, a.OC = OC;
  size_t ni = (size_t)N * IC, nw = (size_t)OC * IC, no = (size_t)N * OC;
  a.inp = device_random(ni, 1), a.w = device_random(nw, 2), a.bias = device_random(OC, 3);
  a.out = device_random(no, 4), a.dout = device_random(no, 5), a.dinp = device_random(ni, 6);
  a.dw = device_random(nw, 7), a.db = device_random(OC, 8);
  a.inp16 = kn_cuda_malloc(&gpu, ni * 2), a.w16 = kn_cuda_malloc(&gpu, nw * 2), a.out16 = kn_cuda_malloc(&gpu, no * 2);
  a.dout16 = kn_cuda_malloc(&gpu, no * 2), a.dinp16 = kn_cuda_malloc(&gpu, ni * 2);
  kn_cuda_to_bf16(&gpu, a.inp16, a.inp, ni);
  kn_cuda_to_bf16(&gpu, a.w16, a.w, nw);
  kn_cuda_to_bf16(&gpu, a.dout16, a.dout, no);
  char shape[64];
  snprintf(shape, sizeof shape, "N=%d IC=%d OC=%d", N, IC, OC);
  double f = 2.0 * N * IC * OC;
  report("linear_fwd_fp32", shape, f, time_op(linear_fwd, &a));
  report("linear_bwd_fp32", shape, 2 * f, time_op(linear_bwd, &a));
  report("linear_fwd_bf16", shape, f, time_op(linear_fwd_bf16, &a));
  report("linear_bwd_bf16", shape, 2 * f, time_op(linear_bwd_bf16, &a));
  float *fp[] = {a.out, a.inp, a.w, a.bias, a.dout, a.dinp, a.dw, a.db};
  for (size_t i = 0; i < sizeof fp / sizeof *fp; i++) kn_cuda_free(fp[i]);
  kn_bf16 *hp[] = {a.out16, a.inp16, a.w16, a.dout16, a.dinp16};
  for (size_t i = 0; i < sizeof hp / sizeof *hp; i++) kn_cuda_free(hp[i]);
}

static void bench_conv(int B, int C, int H, int W, int OC, int K, int stride, int pad) {
  conv_args a = {0};
  a.B = B, a.C = C, a.H = H, a.W = W, a.OC = OC, a.K = K, a.stride = stride, a.pad = pad;
  int Ho = kn_conv2d_out_size(H, K, stride, pad), Wo = kn_conv2d_out_size(W, K, stride, pad);
  size_t ni = (size_t)B * C * H * W, nw = (size_t)OC * C * K * K, no = (size_t)B * OC * Ho * Wo;
  a.inp = device_random(ni, 11), a.w = device_random(nw, 12), a.bias = device_random(OC, 13), a.out = device_random(no, 14);
  a.dout = device_random(no, 15), a.dinp = device_random(ni, 16), a.dw = device_random(nw, 17), a.db = device_random(OC, 18);
  char shape[64];
  snprintf(shape, sizeof shape, "B=%d %dx%dx%d->%d K=%d s=%d", B, C, H, W, OC, K, stride);
  double f = 2.0 * B * OC * Ho * Wo * C * K * K;
  report("conv2d_fwd_fp32", shape, f, time_op(conv_fwd, &a));
  report("conv2d_bwd_fp32", shape, 2 * f, time_op(conv_bwd, &a));
  a.inp16 = kn_cuda_malloc(&gpu, ni * 2), a.w16 = kn_cuda_malloc(&gpu, nw * 2), a.out16 = kn_cuda_malloc(&gpu, no * 2);
  a.dout16 = kn_cuda_malloc(&gpu, no * 2), a.dinp16 = kn_cuda_malloc(&gpu, ni * 2);
  kn_cuda_to_bf16(&gpu, a.inp16, a.inp, ni);
  kn_cuda_to_bf16(&gpu, a.w16, a.w, nw);
  kn_cuda_to_bf16(&gpu, a.dout16, a.dout, no);
  kn_cuda_to_bf16(&gpu, a.dinp16, a.dinp, ni);
  report("conv2d_fwd_bf16", shape, f, time_op(conv_fwd_bf16, &a));
  report("conv2d_bwd_bf16", shape, 2 * f, time_op(conv_bwd_bf16, &a));
  float *fp[] = {a.out, a.inp, a.w, a.bias, a.dout, a.dinp, a.dw, a.db};
  for (size_t i = 0; i < sizeof fp / sizeof *fp; i++) kn_cuda_free(fp[i]);
  kn_bf16 *hp[] = {a.out16, a.inp16, a.w16, a.dout16, a.dinp16};
  for (size_t i = 0; i < sizeof hp / sizeof *hp; i++) kn_cuda_free(hp[i]);
}

static void bench_attention(int B, int H, int Nq, int Nk, int D) {
  attn_args a = {0};
  a.B = B, a.H = H, a.Nq = Nq, a.Nk = Nk, a.D = D;
  size_t nq = (size_t)B * Nq * H * D, nk = (size_t)B * Nk * H * D;
  a.q = device_random(nq, 21), a.k = device_random(nk, 22), a.v = device_random(nk, 23), a.out = device_random(nq, 24);
  a.lse = device_random((size_t)B * H * Nq, 25), a.dout = device_random(nq, 26), a.dq = device_random(nq, 27);
  a.dk = device_random(nk, 28), a.dv = device_random(nk, 29);
  char shape[64];
  snprintf(shape, sizeof shape, "B=%d H=%d Nq=%d Nk=%d D=%d", B, H, Nq, Nk, D);
  double f = 4.0 * B * H * (double)Nq * Nk * D;
  report("attention_fwd_fp32", shape, f, time_op(attn_fwd, &a));
  report("attention_bwd_fp32", shape, 2.5 * f, time_op(attn_bwd, &a));
  kn_bf16 **halves[] = {&a.q16, &a.k16, &a.v16, &a.out16, &a.dout16, &a.dq16, &a.dk16, &a.dv16};
  float *sources[] = {a.q, a.k, a.v, a.out, a.dout, a.dq, a.dk, a.dv};
  size_t counts[] = {nq, nk, nk, nq, nq, nq, nk, nk};
  for (int i = 0; i < 8; i++) {
    *halves[i] = kn_cuda_malloc(&gpu, counts[i] * sizeof(kn_bf16));
    if (*halves[i]) kn_cuda_to_bf16(&gpu, *halves[i], sources[i], counts[i]);
  }
  report("attention_fwd_bf16", shape, f, time_op(attn_fwd_bf16, &a));
  report("attention_bwd_bf16", shape, 2.5 * f, time_op(attn_bwd_bf16, &a));
  for (int i = 0; i < 8; i++) kn_cuda_free(*halves[i]);
  float *fp[] = {a.q, a.k, a.v, a.out, a.lse, a.dout, a.dq, a.dk, a.dv};
  for (size_t i = 0; i < sizeof fp / sizeof *fp; i++) kn_cuda_free(fp[i]);
}

static void bench_group_norm(int B, int C, int HW, int G) {
  gn_args a = {0};
  a.B = B, a.C = C, a.HW = HW, a.G = G;
  size_t n = (size_t)B * C * HW;
  a.inp = device_random(n, 31), a.out = device_random(n, 32), a.dout = device_random(n, 33), a.dinp = device_random(n, 34);
  a.gamma = device_random(C, 35), a.beta = device_random(C, 36), a.dg = device_random(C, 37), a.db = device_random(C, 38);
  a.mean = device_random((size_t)B * G, 39), a.rstd = device_random((size_t)B * G, 40);
  char shape[64];
  snprintf(shape, sizeof shape, "B=%d C=%d HW=%d G=%d", B, C, HW, G);
  report("groupnorm_silu_fwd", shape, 0, time_op(gn_fwd, &a));
  report("groupnorm_silu_bwd", shape, 0, time_op(gn_bwd, &a));
  float *fp[] = {a.out, a.inp, a.gamma, a.beta, a.mean, a.rstd, a.dout, a.dinp, a.dg, a.db};
  for (size_t i = 0; i < sizeof fp / sizeof *fp; i++) kn_cuda_free(fp[i]);
}

int main(int argc, char **argv) {
  int batch = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = 1;
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_cuda_ops [--json] [--batch N] [--repeat N]\n");
      return 2;
    }
  }
  if (batch < 1 || batch > 64 || repeat < 1 || repeat > 100) {
    fprintf(stderr, "bench_cuda_ops: --batch must be 1..64 and --repeat 1..100\n");
    return 2;
  }
  if (kn_cuda_device_count() < 1) {
    printf("bench_cuda_ops: no CUDA device visible; nothing measured\n");
    return 77;
  }
  char name[256];
  kn_cuda_device_name(0, name, sizeof name);
  dpo_error err;
  if (kn_cuda_ctx_init(&gpu, 0, &err) != DPO_OK) {
    fprintf(stderr, "bench_cuda_ops: %s\n", err.msg);
    return 1;
  }
  if (!json) printf("device: %s; batch %d; median of %d\n", name, batch, repeat);
  /* SD1.5 at 64x64 latents: the first block's shapes (320 channels, 4096
   * tokens of 8 heads x 40), its cross-attention over 77 tokens, the widest
   * feed-forward projection and the 1280-channel 8x8 convolutions. */
  bench_linear(batch * 4096, 320, 2560);
  bench_linear(batch * 4096, 1280, 320);
  bench_conv(batch, 320, 64, 64, 320, 3, 1, 1);
  bench_conv(batch, 1280, 8, 8, 1280, 3, 1, 1);
  bench_conv(batch, 320, 64, 64, 320, 3, 2, 1); /* the first downsampler */
  bench_conv(batch, 640, 64, 64, 320, 1, 1, 0); /* the up path's 1x1 shortcut at 64x64 */
  /* Attention: 4 B H Nq Nk D flops forward (two products), 2.5 times that
   * backward (five products). bf16 runs on the tensor cores (D <= 160: all
   * of SD1.5's heads), float32 on the scalar kernels. */
  bench_attention(batch, 8, 4096, 4096, 40); /* self-attention at 64x64, 320 channels */
  bench_attention(batch, 8, 4096, 77, 40);   /* cross-attention over the prompt */
  bench_attention(batch, 8, 1024, 1024, 80); /* self-attention at 32x32, 640 channels */
  bench_attention(batch, 8, 1024, 77, 80);
  bench_attention(batch, 8, 256, 256, 160); /* self-attention at 16x16, 1280 channels */
  bench_attention(batch, 8, 256, 77, 160);
  bench_group_norm(batch, 320, 4096, 32);
  int rc = kn_cuda_ctx_check(&gpu, &err);
  if (rc != DPO_OK) fprintf(stderr, "bench_cuda_ops: %s\n", err.msg);
  if (!json) printf("peak allocated by kn_cuda_malloc: %.1f MiB\n", kn_cuda_peak_allocated() / 1048576.0);
  kn_cuda_ctx_free(&gpu);
  return rc == DPO_OK ? 0 : 1;
}
