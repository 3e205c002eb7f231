/* The kernel benchmark behind `dpo bench kernels`: each op at SD1.5 shapes,
 * timed as the median of `repeat` calls after one warm-up, beside OpenBLAS's
 * own multi-threaded sgemm measured in the same run, so that the ratio to
 * this machine's sgemm speed is honest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu.h"

typedef enum {
  OP_SGEMM,
  OP_CONV_FWD,
  OP_CONV_BWD,
  OP_ATTN_FWD,
  OP_ATTN_BWD,
  OP_GN_FWD,
  OP_GN_BWD,
  OP_LN_FWD,
  OP_LN_BWD,
  OP_GEGLU_FWD,
  OP_GEGLU_BWD,
  OP_SILU_FWD,
  OP_SILU_BWD,
  OP_UPSAMPLE_FWD,
  OP_UPSAMPLE_BWD,
  OP_LINEAR_FWD,
  OP_LINEAR_BWD,
} bench_op;

/* Dimensions are reused per op: sgemm M N K; conv C H W OC K; attention
 * H Nq Nk D; group norm C HW G; layer norm / GEGLU N C. */
typedef struct {
  const char *name;
  bench_op op;
  int d[5];
} bench_case;

static const bench_case full_cases[] = {
    {"sgemm_2048", OP_SGEMM, {2048, 2048, 2048}},
    {"sgemm_conv3x3_shape", OP_SGEMM, {320, 4096, 2880}},
    {"conv3x3_fwd", OP_CONV_FWD, {320, 64, 64, 320, 3}},
    {"conv3x3_bwd", OP_CONV_BWD, {320, 64, 64, 320, 3}},
    {"conv1x1_fwd", OP_CONV_FWD, {320, 64, 64, 320, 1}},
    {"conv1x1_bwd", OP_CONV_BWD, {320, 64, 64, 320, 1}},
    {"self_attn_fwd", OP_ATTN_FWD, {8, 4096, 4096, 40}},
    {"self_attn_bwd", OP_ATTN_BWD, {8, 4096, 4096, 40}},
    {"cross_attn_fwd", OP_ATTN_FWD, {8, 4096, 77, 40}},
    {"cross_attn_bwd", OP_ATTN_BWD, {8, 4096, 77, 40}},
    {"group_norm_fwd", OP_GN_FWD, {320, 4096, 32}},
    {"group_norm_bwd", OP_GN_BWD, {320, 4096, 32}},
    {"layer_norm_fwd", OP_LN_FWD, {4096, 320}},
    {"layer_norm_bwd", OP_LN_BWD, {4096, 320}},
    {"linear_fwd", OP_LINEAR_FWD, {4096, 320, 320}},
    {"linear_bwd", OP_LINEAR_BWD, {4096, 320, 320}},
    {"geglu_fwd", OP_GEGLU_FWD, {4096, 1280}},
    {"geglu_bwd", OP_GEGLU_BWD, {4096, 1280}},
    {"silu_fwd", OP_SILU_FWD, {320 * 4096}},
    {"silu_bwd", OP_SILU_BWD, {320 * 4096}},
    {"upsample2x_fwd", OP_UPSAMPLE_FWD, {320, 32, 32}},
    {"upsample2x_bwd", OP_UPSAMPLE_BWD, {320, 32, 32}},
};

static const bench_case quick_cases[] = {
    {"sgemm_128", OP_SGEMM, {128, 128, 128}},
    {"conv3x3_fwd", OP_CONV_FWD, {8, 16, 16, 8, 3}},
    {"conv3x3_bwd", OP_CONV_BWD, {8, 16, 16, 8, 3}},
    {"self_attn_fwd", OP_ATTN_FWD, {2, 100, 100, 8}},
    {"self_attn_bwd", OP_ATTN_BWD, {2, 100, 100, 8}},
    {"group_norm_fwd", OP_GN_FWD, {16, 64, 4}},
    {"group_norm_bwd", OP_GN_BWD, {16, 64, 4}},
    {"layer_norm_fwd", OP_LN_FWD, {64, 32}},
    {"layer_norm_bwd", OP_LN_BWD, {64, 32}},
    {"linear_fwd", OP_LINEAR_FWD, {64, 32, 16}},
    {"linear_bwd", OP_LINEAR_BWD, {64, 32, 16}},
    {"geglu_fwd", OP_GEGLU_FWD, {64, 32}},
    {"geglu_bwd", OP_GEGLU_BWD, {64, 32}},
    {"silu_fwd", OP_SILU_FWD, {4096}},
    {"silu_bwd", OP_SILU_BWD, {4096}},
    {"upsample2x_fwd", OP_UPSAMPLE_FWD, {8, 8, 8}},
    {"upsample2x_bwd", OP_UPSAMPLE_BWD, {8, 8, 8}},
};

/* Up to six buffers per case, filled with standard normals. */
typedef struct {
  float *buf[6];
  size_t n[6];
} bench_buffers;

static int buffers_alloc(bench_buffers *bb, const size_t *sizes, int count, dpo_error *err) {
  memset(bb, 0, sizeof *bb);
  for (int i = 0; i < count; i++) {
    bb->n[i] = sizes[i] ? sizes[i] : 1;
    bb->buf[i] = malloc(bb->n[i] * sizeof(float));
    if (!bb->buf[i]) return dpo_fail(err, DPO_ERR_DATA, "kernel benchmark: cannot allocate %zu floats", bb->n[i]);
    dpo_rng_normal_fill(1234, (uint64_t)i, 0, bb->buf[i], bb->n[i]);
  }
  return DPO_OK;
}

static void buffers_free(bench_buffers *bb) {
  for (int i = 0; i < 6; i++) free(bb->buf[i]);
}

/* Sizes of the buffers a case needs, and its nominal FLOPs per call. GEMM
 * based ops count 2 per multiply-add; the memory-bound ones count the
 * arithmetic of their formula per element (stated beside each). */
static int case_sizes(const bench_case *c, size_t *sizes, double *flops, char *shape, size_t shape_n) {
  const int *d = c->d;
  switch (c->op) {
  case OP_SGEMM:
    sizes[0] = (size_t)d[0] * d[2], sizes[1] = (size_t)d[1] * d[2], sizes[2] = (size_t)d[0] * d[1];
    *flops = 2.0 * d[0] * d[1] * d[2];
    snprintf(shape, shape_n, "M=%d N=%d K=%d", d[0], d[1], d[2]);
    return 3;
  case OP_CONV_FWD:
  case OP_CONV_BWD: {
    int pad = d[4] / 2;
    size_t in = (size_t)d[0] * d[1] * d[2], out = (size_t)d[3] * d[1] * d[2];
    size_t w = (size_t)d[3] * d[0] * d[4] * d[4];
    sizes[0] = in, sizes[1] = w, sizes[2] = (size_t)d[3], sizes[3] = out, sizes[4] = in, sizes[5] = w;
    *flops = 2.0 * (double)out * d[0] * d[4] * d[4] * (c->op == OP_CONV_BWD ? 2.0 : 1.0);
    snprintf(shape, shape_n, "B=1 %d->%d %dx%d k%d p%d", d[0], d[3], d[1], d[2], d[4], pad);
    return 6;
  }
  case OP_ATTN_FWD:
  case OP_ATTN_BWD: {
    size_t q = (size_t)d[1] * d[0] * d[3], kv = (size_t)d[2] * d[0] * d[3];
    sizes[0] = q, sizes[1] = kv, sizes[2] = kv, sizes[3] = q, sizes[4] = (size_t)d[0] * d[1];
    sizes[5] = q + 2 * kv; /* dq, dk, dv */
    /* forward: q k^T and p v; backward: scores again, dv, dp, dq, dk */
    *flops = (c->op == OP_ATTN_FWD ? 4.0 : 10.0) * d[0] * (double)d[1] * d[2] * d[3];
    snprintf(shape, shape_n, "B=1 heads=%d Nq=%d Nk=%d D=%d", d[0], d[1], d[2], d[3]);
    return 6;
  }
  case OP_GN_FWD:
  case OP_GN_BWD: {
    size_t n = (size_t)d[0] * d[1];
    sizes[0] = n, sizes[1] = n, sizes[2] = (size_t)d[0], sizes[3] = (size_t)d[0], sizes[4] = n,
    sizes[5] = 2 * (size_t)d[2] + 2 * (size_t)d[0];
    *flops = (c->op == OP_GN_FWD ? 6.0 : 11.0) * (double)n; /* fwd: 3 stats + 2 affine + 1; bwd */
    snprintf(shape, shape_n, "B=1 C=%d HW=%d groups=%d", d[0], d[1], d[2]);
    return 6;
  }
  case OP_LN_FWD:
  case OP_LN_BWD: {
    size_t n = (size_t)d[0] * d[1];
    sizes[0] = n, sizes[1] = n, sizes[2] = (size_t)d[1], sizes[3] = (size_t)d[1], sizes[4] = 2 * (size_t)d[0];
    sizes[5] = n + 2 * (size_t)d[1];
    *flops = (c->op == OP_LN_FWD ? 6.0 : 11.0) * (double)n;
    snprintf(shape, shape_n, "N=%d C=%d", d[0], d[1]);
    return 6;
  }
  case OP_LINEAR_FWD:
  case OP_LINEAR_BWD:
    sizes[0] = (size_t)d[0] * d[1], sizes[1] = (size_t)d[2] * d[1], sizes[2] = (size_t)d[2];
    sizes[3] = (size_t)d[0] * d[2], sizes[4] = (size_t)d[0] * d[1], sizes[5] = (size_t)d[2] * d[1] + d[2];
    *flops = (c->op == OP_LINEAR_FWD ? 2.0 : 4.0) * d[0] * (double)d[1] * d[2];
    snprintf(shape, shape_n, "N=%d %d->%d", d[0], d[1], d[2]);
    return 6;
  case OP_GEGLU_FWD:
  case OP_GEGLU_BWD:
    sizes[0] = (size_t)d[0] * 2 * d[1], sizes[1] = (size_t)d[0] * d[1], sizes[2] = (size_t)d[0] * 2 * d[1];
    /* erf-GELU ~ 7 plus one product; backward about twice that */
    *flops = (c->op == OP_GEGLU_FWD ? 8.0 : 16.0) * d[0] * (double)d[1];
    snprintf(shape, shape_n, "N=%d D=%d", d[0], d[1]);
    return 3;
  case OP_SILU_FWD:
  case OP_SILU_BWD:
    sizes[0] = (size_t)d[0], sizes[1] = (size_t)d[0], sizes[2] = (size_t)d[0];
    *flops = (c->op == OP_SILU_FWD ? 4.0 : 8.0) * d[0];
    snprintf(shape, shape_n, "n=%d", d[0]);
    return 3;
  case OP_UPSAMPLE_FWD:
  case OP_UPSAMPLE_BWD:
    sizes[0] = (size_t)d[0] * d[1] * d[2], sizes[1] = (size_t)d[0] * d[1] * d[2] * 4;
    *flops = (double)sizes[1]; /* one value moved (or added) per output */
    snprintf(shape, shape_n, "B=1 C=%d %dx%d -> %dx%d", d[0], d[1], d[2], 2 * d[1], 2 * d[2]);
    return 2;
  }
  return 0;
}

static void run_case(kn_ctx *ctx, const bench_case *c, bench_buffers *bb) {
  const int *d = c->d;
  float **b = bb->buf;
  switch (c->op) {
  case OP_SGEMM:
    /* The reference: OpenBLAS with its own threads, as any user of it gets. */
    openblas_set_num_threads(ctx->n_threads);
    kn_sgemm(0, 1, d[0], d[1], d[2], 1.0f, b[0], d[2], b[1], d[2], 0.0f, b[2], d[1]);
    openblas_set_num_threads(1);
    break;
  case OP_CONV_FWD:
    kn_conv2d_forward(ctx, b[3], b[0], b[1], b[2], 1, d[0], d[1], d[2], d[3], d[4], 1, d[4] / 2);
    break;
  case OP_CONV_BWD:
    kn_conv2d_backward(ctx, b[4], b[5], NULL, b[3], b[0], b[1], 1, d[0], d[1], d[2], d[3], d[4], 1,
                       d[4] / 2);
    break;
  case OP_ATTN_FWD:
  case OP_ATTN_BWD: {
    float scale = 1.0f / sqrtf((float)d[3]);
    size_t q = (size_t)d[1] * d[0] * d[3], kv = (size_t)d[2] * d[0] * d[3];
    if (c->op == OP_ATTN_FWD)
      kn_attention_forward(ctx, b[3], b[4], b[0], b[1], b[2], 1, d[0], d[1], d[2], d[3], scale, 0);
    else
      kn_attention_backward(ctx, b[5], b[5] + q, b[5] + q + kv, b[3], b[0], b[1], b[2], b[3], b[4],
                            1, d[0], d[1], d[2], d[3], scale, 0);
    break;
  }
  case OP_GN_FWD:
    kn_group_norm_forward(ctx, b[1], b[5], b[5] + d[2], b[0], b[2], b[3], 1, d[0], d[1], d[2], 1e-5f);
    break;
  case OP_GN_BWD:
    kn_group_norm_backward(ctx, b[4], b[5] + 2 * d[2], b[5] + 2 * d[2] + d[0], b[1], b[0], b[5],
                           b[5] + d[2], b[2], 1, d[0], d[1], d[2]);
    break;
  case OP_LN_FWD:
    kn_layer_norm_forward(ctx, b[1], b[4], b[4] + d[0], b[0], b[2], b[3], d[0], d[1], 1e-5f);
    break;
  case OP_LN_BWD:
    kn_layer_norm_backward(ctx, b[5], b[5] + (size_t)d[0] * d[1], b[5] + (size_t)d[0] * d[1] + d[1], b[1],
                           b[0], b[4], b[4] + d[0], b[2], d[0], d[1]);
    break;
  case OP_LINEAR_FWD:
    kn_linear_forward(ctx, b[3], b[0], b[1], b[2], d[0], d[1], d[2]);
    break;
  case OP_LINEAR_BWD:
    kn_linear_backward(ctx, b[4], b[5], b[5] + (size_t)d[2] * d[1], b[3], b[0], b[1], d[0], d[1], d[2]);
    break;
  case OP_GEGLU_FWD:
    kn_geglu_forward(ctx, b[1], b[0], d[0], d[1]);
    break;
  case OP_GEGLU_BWD:
    kn_geglu_backward(ctx, b[2], b[1], b[0], d[0], d[1]);
    break;
  case OP_SILU_FWD:
    kn_activation_forward(ctx, KN_ACT_SILU, b[1], b[0], (size_t)d[0]);
    break;
  case OP_SILU_BWD:
    kn_activation_backward(ctx, KN_ACT_SILU, b[2], b[1], b[0], (size_t)d[0]);
    break;
  case OP_UPSAMPLE_FWD:
    kn_upsample2x_forward(ctx, b[1], b[0], 1, d[0], d[1], d[2]);
    break;
  case OP_UPSAMPLE_BWD:
    kn_upsample2x_backward(ctx, b[0], b[1], 1, d[0], d[1], d[2]);
    break;
  }
}

/* Group-norm backward needs a forward's statistics, attention backward its
 * lse: one forward first gives them realistic values. */
static void prepare_case(kn_ctx *ctx, const bench_case *c, bench_buffers *bb) {
  if (c->op == OP_GN_BWD) {
    bench_case fwd = *c;
    fwd.op = OP_GN_FWD;
    run_case(ctx, &fwd, bb);
  } else if (c->op == OP_ATTN_BWD) {
    bench_case fwd = *c;
    fwd.op = OP_ATTN_FWD;
    run_case(ctx, &fwd, bb);
  } else if (c->op == OP_LN_BWD) {
    bench_case fwd = *c;
    fwd.op = OP_LN_FWD;
    run_case(ctx, &fwd, bb);
  }
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static const bench_case *bench_cases(int quick, int *count) {
  *count = quick ? (int)(sizeof quick_cases / sizeof quick_cases[0])
                 : (int)(sizeof full_cases / sizeof full_cases[0]);
  return quick ? quick_cases : full_cases;
}

int kn_bench_case_names(int quick, const char **names, int max_names) {
  int n_cases;
  const bench_case *cases = bench_cases(quick, &n_cases);
  int n = 0;
  for (; n < n_cases && n < max_names; n++) names[n] = cases[n].name;
  return n;
}

static double clock_seconds(int cpu_time) {
  if (!cpu_time) return dpo_now_seconds();
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int kn_bench_run(const kn_bench_options *options, kn_bench_result *results, int max_results,
                 dpo_error *err) {
  int n_threads = options->n_threads, repeat = options->repeat, quick = options->quick;
  int cpu_time = options->cpu_time;
  const char *only = options->only;
  int n_cases;
  const bench_case *cases = bench_cases(quick, &n_cases);
  if (repeat < 1 || repeat > 1000) {
    dpo_fail(err, DPO_ERR_USAGE, "kernel benchmark: repeat must be in 1..1000, got %d", repeat);
    return -1;
  }
  if (only) {
    int found = 0;
    for (int i = 0; i < n_cases; i++) found |= !strcmp(cases[i].name, only);
    if (!found) {
      dpo_fail(err, DPO_ERR_USAGE, "kernel benchmark: no case named \"%s\" (see --list)", only);
      return -1;
    }
  }
  kn_ctx ctx;
  if (kn_ctx_init(&ctx, n_threads, err) != DPO_OK) return -1;
  ctx.winograd_forward = options->winograd;
  double *times = malloc(sizeof(double) * (size_t)repeat);
  if (!times) {
    kn_ctx_free(&ctx);
    dpo_fail(err, DPO_ERR_DATA, "kernel benchmark: out of memory");
    return -1;
  }
  int count = 0;
  for (int i = 0; i < n_cases && count < max_results; i++) {
    const bench_case *c = &cases[i];
    if (only && strcmp(c->name, only) != 0) continue;
    size_t sizes[6] = {0};
    kn_bench_result *r = &results[count];
    memset(r, 0, sizeof *r);
    int n_buf = case_sizes(c, sizes, &r->flops, r->shape, sizeof r->shape);
    bench_buffers bb;
    if (buffers_alloc(&bb, sizes, n_buf, err) != DPO_OK) {
      buffers_free(&bb);
      free(times);
      kn_ctx_free(&ctx);
      return -1;
    }
    prepare_case(&ctx, c, &bb);
    /* Warm-up: page faults, scratch growth, caches; at least two calls and
     * a fifth of a second (full shapes), so that small ops are timed in a steady state. */
    double warm_start = dpo_now_seconds();
    for (int w = 0; w < 2 || (!quick && dpo_now_seconds() - warm_start < 0.2); w++) run_case(&ctx, c, &bb);
    for (int k = 0; k < repeat; k++) {
      double t0 = clock_seconds(cpu_time);
      run_case(&ctx, c, &bb);
      times[k] = clock_seconds(cpu_time) - t0;
    }
    buffers_free(&bb);
    qsort(times, (size_t)repeat, sizeof(double), compare_doubles);
    snprintf(r->name, sizeof r->name, "%s", c->name);
    r->seconds = times[repeat / 2];
    r->min_seconds = times[0];
    r->gflops = r->seconds > 0 ? r->flops / r->seconds * 1e-9 : 0.0;
    r->threads = ctx.n_threads;
    count++;
  }
  free(times);
  kn_ctx_free(&ctx);
  return count;
}
