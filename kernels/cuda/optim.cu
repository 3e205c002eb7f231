/* Fused AdamW on float32 master weights, writing the bf16 copy the next
 * forward reads, in one pass over memory. The float operations are those of
 * trainer/optim.c (torch.optim.AdamW) in the same order; the scalars are
 * computed on the host in double, as there. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_internal.cuh"

/* One element of the update: shared by the per-tensor and the multi-tensor
 * kernels, so that both compile the same float operations (the same
 * contractions into fused multiply-adds) and give the same bits. */
__device__ __forceinline__ void adamw_element(float *param, __nv_bfloat16 *param_bf16, const float *grad,
                                              float *exp_avg, float *exp_avg_sq, size_t i, int decay_on, float decay,
                                              float w, float b2, float one_minus_b2, float step_size, float bc2_sqrt,
                                              float eps) {
  float g = grad[i];
  float p = param[i];
  if (decay_on) p *= decay;
  /* torch.lerp: start + w (end - start) for w < 0.5, else end - (end - start)(1 - w). */
  float m = exp_avg[i];
  m = w < 0.5f ? m + w * (g - m) : g - (g - m) * (1.0f - w);
  exp_avg[i] = m;
  float v = exp_avg_sq[i] * b2 + one_minus_b2 * (g * g);
  exp_avg_sq[i] = v;
  float denom = sqrtf(v) / bc2_sqrt + eps;
  p += -step_size * (m / denom);
  param[i] = p;
  if (param_bf16) param_bf16[i] = __float2bfloat16_rn(p);
}

/* The float scalars of one update, computed on the host in double as
 * trainer/optim.c does (one function: the per-tensor and multi-tensor
 * launches get the same values). */
typedef struct {
  int decay_on;
  float decay, w, b2, one_minus_b2, step_size, bc2_sqrt, eps;
} adamw_scalars;

static adamw_scalars adamw_scalars_for(int64_t step, double lr, double beta1, double beta2, double eps,
                                       double weight_decay) {
  adamw_scalars a;
  a.decay_on = weight_decay != 0;
  a.decay = (float)(1.0 - lr * weight_decay);
  a.w = (float)(1.0 - beta1);
  a.b2 = (float)beta2;
  a.one_minus_b2 = (float)(1.0 - beta2);
  double bias_correction1 = 1.0 - pow(beta1, (double)step);
  double bias_correction2 = 1.0 - pow(beta2, (double)step);
  a.step_size = (float)(lr / bias_correction1);
  a.bc2_sqrt = (float)sqrt(bias_correction2);
  a.eps = (float)eps;
  return a;
}

__global__ void adamw_kernel(float *param, __nv_bfloat16 *param_bf16, const float *grad, float *exp_avg,
                             float *exp_avg_sq, size_t n, adamw_scalars a) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    adamw_element(param, param_bf16, grad, exp_avg, exp_avg_sq, i, a.decay_on, a.decay, a.w, a.b2, a.one_minus_b2,
                  a.step_size, a.bc2_sqrt, a.eps);
}

void kn_cuda_adamw_update(kn_cuda_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad, float *exp_avg,
                          float *exp_avg_sq, size_t n, int64_t step, double lr, double beta1, double beta2,
                          double eps, double weight_decay) {
  if (n == 0) return;
  adamw_scalars a = adamw_scalars_for(step, lr, beta1, beta2, eps, weight_decay);
  adamw_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(param, (__nv_bfloat16 *)param_bf16, grad, exp_avg,
                                                              exp_avg_sq, n, a);
  kn_cuda_launched(ctx, "adamw");
}

/* ------------------------------------------------------------ Adafactor */

/* As trainer/optim.c's Adafactor (transformers.Adafactor with an external
 * lr): the unscaled update u = g / sqrt(v) (v factored into row and column
 * means of g^2 + eps1 for matrices), divided by max(1, RMS(u) / clip), times
 * lr, through the optional first moment, then weight decay and the step.
 * Sums are double over fixed partitions, as the CPU sums in double. */

#define ADAFACTOR_PARTIALS 256 /* fixed grid of the RMS reduction */

/* row[o, r] = row * keep + mean over cols of (g^2 + eps1) * add; one block per (o, r). */
__global__ void adafactor_rows_kernel(float *row, const float *grad, int64_t cols, float eps1, float keep, float add) {
  __shared__ double shared[32];
  size_t orow = blockIdx.x;
  const float *g = grad + orow * cols;
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < cols; k += blockDim.x) s += (double)(g[k] * g[k] + eps1);
  s = kn_block_sum_double(s, shared);
  if (threadIdx.x == 0) row[orow] = row[orow] * keep + (float)(s / cols) * add;
}

/* col[o, k] likewise over rows; one thread per (o, k), rows in order. */
__global__ void adafactor_cols_kernel(float *col, const float *grad, int64_t outer, int64_t rows, int64_t cols,
                                      float eps1, float keep, float add) {
  int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= outer * cols) return;
  int64_t o = idx / cols, k = idx % cols;
  const float *g = grad + o * rows * cols + k;
  double s = 0.0;
  for (int64_t r = 0; r < rows; r++) s += (double)(g[r * cols] * g[r * cols] + eps1);
  col[idx] = col[idx] * keep + (float)(s / rows) * add;
}

/* row_mean[o] = mean of row[o, :]; one block per o. */
__global__ void adafactor_row_mean_kernel(float *row_mean, const float *row, int64_t rows) {
  __shared__ double shared[32];
  const float *x = row + blockIdx.x * rows;
  double s = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += x[r];
  s = kn_block_sum_double(s, shared);
  if (threadIdx.x == 0) row_mean[blockIdx.x] = (float)(s / rows);
}

__global__ void adafactor_factored_direction_kernel(float *u, const float *grad, const float *row, const float *col,
                                                    const float *row_mean, int64_t rows, int64_t cols, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    int64_t o = i / (rows * cols), r = (i / cols) % rows, k = i % cols;
    float r_factor = 1.0f / sqrtf(row[o * rows + r] / row_mean[o]);
    float c_factor = 1.0f / sqrtf(col[o * cols + k]);
    u[i] = (r_factor * c_factor) * grad[i];
  }
}

__global__ void adafactor_full_direction_kernel(float *u, float *exp_avg_sq, const float *grad, size_t n, float eps1,
                                                float keep, float add) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float g = grad[i];
    float v = exp_avg_sq[i] * keep + (g * g + eps1) * add;
    exp_avg_sq[i] = v;
    u[i] = g / sqrtf(v);
  }
}

/* Block blockIdx.x's share of the sum of u^2 over n values: its grid-stride
 * elements (a grid of gridDim.x blocks in x) summed per thread in double,
 * then over the block in a fixed order. Shared by the per-tensor sums and
 * the multi-tensor one (which runs the same x-grid per tensor), so that they
 * give the same bits. */
__device__ __forceinline__ double square_partial(const float *u, size_t n, double *shared) {
  double s = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    s += (double)u[i] * u[i];
  return kn_block_sum_double(s, shared);
}

/* partial[b] = sum of u^2 over block b's fixed share (grid of ADAFACTOR_PARTIALS). */
__global__ void adafactor_square_partials_kernel(double *partial, const float *u, size_t n) {
  __shared__ double shared[32];
  double s = square_partial(u, n, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* divisor = max(1, RMS(u) / clip), from the partials in order. */
__global__ void adafactor_divisor_kernel(float *divisor, const double *partial, size_t n, double clip_threshold) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0.0;
  for (int b = 0; b < ADAFACTOR_PARTIALS; b++) s += partial[b];
  double clip = sqrt(s) / sqrt((double)n) / clip_threshold;
  divisor[0] = (float)(clip > 1.0 ? clip : 1.0);
}

__global__ void adafactor_apply_kernel(float *param, __nv_bfloat16 *param_bf16, float *exp_avg, const float *u,
                                       const float *divisor, size_t n, float lr, float b1, float one_minus_b1,
                                       int decay_on, float alpha) {
  float d = divisor[0];
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float step = (u[i] / d) * lr;
    if (exp_avg) {
      exp_avg[i] = exp_avg[i] * b1 + step * one_minus_b1;
      step = exp_avg[i];
    }
    float p = param[i];
    if (decay_on) p += p * alpha;
    p += -step;
    param[i] = p;
    if (param_bf16) param_bf16[i] = __float2bfloat16_rn(p);
  }
}

void kn_cuda_adafactor_update(kn_cuda_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                              float *exp_avg, float *exp_avg_sq, float *exp_avg_sq_row, float *exp_avg_sq_col,
                              int64_t outer, int64_t rows, int64_t cols, int64_t step, double lr, double eps1,
                              double clip_threshold, double decay_rate, double beta1, double weight_decay) {
  size_t n = (size_t)(outer * rows * cols);
  if (n == 0) return;
  int factored = exp_avg_sq_row != NULL;
  /* Workspace: u[n] floats, then row means [outer], the divisor, the partials (doubles, 8-aligned). */
  size_t floats = n + (size_t)outer + 1, floats_aligned = (floats + 1) / 2 * 2;
  uint8_t *ws = (uint8_t *)kn_cuda_workspace(ctx, floats_aligned * sizeof(float) + ADAFACTOR_PARTIALS * sizeof(double));
  if (!ws) return;
  float *u = (float *)ws, *row_mean = u + n, *divisor = row_mean + outer;
  double *partial = (double *)(ws + floats_aligned * sizeof(float));
  cudaStream_t s = kn_stream(ctx);
  float beta2t = (float)(1.0 - pow((double)step, decay_rate));
  float keep = beta2t, add = 1.0f - beta2t, eps1_f = (float)eps1;
  if (factored) {
    adafactor_rows_kernel<<<(unsigned)(outer * rows), 256, 0, s>>>(exp_avg_sq_row, grad, cols, eps1_f, keep, add);
    adafactor_cols_kernel<<<(unsigned)((outer * cols + 127) / 128), 128, 0, s>>>(exp_avg_sq_col, grad, outer, rows,
                                                                                 cols, eps1_f, keep, add);
    adafactor_row_mean_kernel<<<(unsigned)outer, 256, 0, s>>>(row_mean, exp_avg_sq_row, rows);
    adafactor_factored_direction_kernel<<<kn_blocks(n, 256), 256, 0, s>>>(u, grad, exp_avg_sq_row, exp_avg_sq_col,
                                                                          row_mean, rows, cols, n);
  } else {
    adafactor_full_direction_kernel<<<kn_blocks(n, 256), 256, 0, s>>>(u, exp_avg_sq, grad, n, eps1_f, keep, add);
  }
  adafactor_square_partials_kernel<<<ADAFACTOR_PARTIALS, 256, 0, s>>>(partial, u, n);
  adafactor_divisor_kernel<<<1, 32, 0, s>>>(divisor, partial, n, clip_threshold);
  adafactor_apply_kernel<<<kn_blocks(n, 256), 256, 0, s>>>(
      param, (__nv_bfloat16 *)param_bf16, beta1 > 0 ? exp_avg : NULL, u, divisor, n, (float)lr, (float)beta1,
      (float)(1.0 - beta1), weight_decay != 0, (float)(-weight_decay * lr));
  kn_cuda_launched(ctx, "adafactor");
}

/* ------------------------------------------------- gradient-norm clipping */

/* Sums of squares for the clipping norm over the same fixed grid as
 * Adafactor's RMS: partial[b] over block b's grid-stride share, then one
 * thread adds the partials in order. No atomics: the result does not depend
 * on scheduling. */
#define SUM_SQUARES_PARTIALS 256
#define SUM_SQUARES_THREADS 256

/* The partials in order, rounded once (per-tensor and multi-tensor alike). */
__device__ __forceinline__ float sum_partials(const double *partial) {
  double s = 0.0;
  for (int b = 0; b < SUM_SQUARES_PARTIALS; b++) s += partial[b];
  return (float)s;
}

__global__ void sum_squares_finish_kernel(float *out, const double *partial) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  out[0] = sum_partials(partial);
}

void kn_cuda_sum_squares(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n) {
  double *partial = (double *)kn_cuda_workspace(ctx, SUM_SQUARES_PARTIALS * sizeof(double));
  if (!partial) return;
  cudaStream_t s = kn_stream(ctx);
  /* The Adafactor partials kernel is the same reduction (a grid of
   * ADAFACTOR_PARTIALS blocks, which this grid equals). */
  adafactor_square_partials_kernel<<<SUM_SQUARES_PARTIALS, SUM_SQUARES_THREADS, 0, s>>>(partial, inp, n);
  sum_squares_finish_kernel<<<1, 32, 0, s>>>(out, partial);
  kn_cuda_launched(ctx, "sum of squares");
}

/* out[0] = the norm from the per-tensor sums (in order, double), out[1] the
 * clip factor, as trainer/optim.c's dpo_clip_grad_norm. */
__global__ void clip_coefficient_kernel(float *out, const float *sum_squares, int n, double max_norm) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0.0;
  for (int i = 0; i < n; i++) total += sum_squares[i];
  double norm = sqrt(total);
  out[0] = (float)norm;
  out[1] = 1.0f;
  if (max_norm > 0) {
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) out[1] = (float)coef;
  }
}

void kn_cuda_clip_coefficient(kn_cuda_ctx *ctx, float *out, const float *sum_squares, int n, double max_norm) {
  clip_coefficient_kernel<<<1, 32, 0, kn_stream(ctx)>>>(out, sum_squares, n, max_norm);
  kn_cuda_launched(ctx, "clip coefficient");
}

/* x *= factor[0]; every thread reads the factor and leaves when it is 1 (the
 * common case of an unclipped step costs a launch, not a pass over memory). */
__global__ void scale_by_kernel(float *x, const float *factor, size_t n) {
  float c = factor[0];
  if (c == 1.0f) return;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    x[i] *= c;
}

void kn_cuda_scale_by(kn_cuda_ctx *ctx, float *x, const float *factor, size_t n) {
  if (n == 0) return;
  scale_by_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(x, factor, n);
  kn_cuda_launched(ctx, "scale by");
}

/* ------------------------------------------------------- multi-tensor ops */

/* Clipping and AdamW over every tensor of a parameter table in a constant
 * number of launches (kernels.h: kn_param_table). Bitwise the per-tensor
 * ops: the sums of squares run, per tensor, the per-tensor op's x-grid of
 * SUM_SQUARES_PARTIALS blocks of SUM_SQUARES_THREADS threads (blockIdx.y
 * picks the tensor) through the same device function, so each partial is
 * the same double; one thread per tensor then adds its partials in the
 * same order and rounds once. scale_by and AdamW are elementwise: any
 * partition of the elements gives the same bits as long as each element
 * runs the same operations (the same device function, the same host-made
 * scalars), so they walk a flat list of (tensor, chunk) work items. */

#define MULTI_THREADS 256
#define MULTI_PER_THREAD 8
#define MULTI_CHUNK ((int64_t)MULTI_THREADS * MULTI_PER_THREAD) /* elements per work item */
#define MULTI_MAX_Y 65535                                      /* gridDim.y's limit: tensors per sums launch */

typedef struct {
  float *param;
  __nv_bfloat16 *param_bf16; /* NULL: none */
  float *grad;
  float *exp_avg, *exp_avg_sq;
  size_t n;
  int64_t first_chunk; /* its first work item: the chunks of the tensors before it */
} multi_entry;

struct kn_cuda_param_table {
  int count;
  int has_moments;
  int64_t n_chunks;      /* work items of all tensors */
  multi_entry *entries;  /* device: count */
  double *partials;      /* device: count * SUM_SQUARES_PARTIALS */
};

kn_cuda_param_table *kn_cuda_param_table_create(kn_cuda_ctx *ctx, int count, const size_t *numel, float *const *param,
                                                kn_bf16 *const *param_bf16, float *const *grad,
                                                float *const *exp_avg, float *const *exp_avg_sq, dpo_error *err) {
  kn_cuda_param_table *t = (kn_cuda_param_table *)calloc(1, sizeof *t);
  multi_entry *host = (multi_entry *)calloc((size_t)count, sizeof *host);
  if (!t || !host) {
    free(t);
    free(host);
    dpo_fail(err, DPO_ERR_DATA, "cuda: out of host memory for a table of %d tensors", count);
    return NULL;
  }
  t->count = count;
  t->has_moments = exp_avg != NULL;
  int64_t chunks = 0;
  for (int i = 0; i < count; i++) {
    host[i].param = param[i];
    host[i].param_bf16 = param_bf16 ? (__nv_bfloat16 *)param_bf16[i] : NULL;
    host[i].grad = grad[i];
    host[i].exp_avg = exp_avg ? exp_avg[i] : NULL;
    host[i].exp_avg_sq = exp_avg_sq ? exp_avg_sq[i] : NULL;
    host[i].n = numel[i];
    host[i].first_chunk = chunks;
    chunks += ((int64_t)numel[i] + MULTI_CHUNK - 1) / MULTI_CHUNK;
  }
  t->n_chunks = chunks;
  size_t entry_bytes = (size_t)count * sizeof(multi_entry);
  size_t partial_bytes = (size_t)count * SUM_SQUARES_PARTIALS * sizeof(double);
  cudaError_t rc = cudaMalloc((void **)&t->entries, entry_bytes);
  if (rc == cudaSuccess) rc = cudaMalloc((void **)&t->partials, partial_bytes);
  /* On the context's stream (non-blocking: a plain cudaMemcpy on the legacy
   * stream would not order before its kernels) and waited for, as
   * kn_cuda_upload: the host array is freed below. */
  if (rc == cudaSuccess)
    rc = cudaMemcpyAsync(t->entries, host, entry_bytes, cudaMemcpyHostToDevice, kn_stream(ctx));
  if (rc == cudaSuccess) rc = cudaStreamSynchronize(kn_stream(ctx));
  free(host);
  if (rc != cudaSuccess) {
    dpo_fail(err, DPO_ERR_DATA, "cuda: cannot make a table of %d tensors (%zu bytes): %s", count,
             entry_bytes + partial_bytes, cudaGetErrorString(rc));
    kn_cuda_param_table_free(t);
    return NULL;
  }
  return t;
}

void kn_cuda_param_table_free(kn_cuda_param_table *t) {
  if (!t) return;
  cudaFree(t->entries);
  cudaFree(t->partials);
  free(t);
}

/* The entry whose chunks hold work item c: the last with first_chunk <= c
 * (tensors of no elements have no chunks and are never found). */
__device__ __forceinline__ int multi_find(const multi_entry *e, int count, int64_t c) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (e[mid].first_chunk <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/* partials[tensor, b] as adafactor_square_partials_kernel's partial[b] for
 * that tensor: grid (SUM_SQUARES_PARTIALS, tensors), tensor first + y. */
__global__ void multi_square_partials_kernel(double *partials, const multi_entry *e, int first) {
  __shared__ double shared[32];
  int k = first + (int)blockIdx.y;
  double s = square_partial(e[k].grad, e[k].n, shared);
  if (threadIdx.x == 0) partials[(size_t)k * SUM_SQUARES_PARTIALS + blockIdx.x] = s;
}

__global__ void multi_sum_partials_kernel(float *out, const double *partials, int count) {
  int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < count) out[k] = sum_partials(partials + (size_t)k * SUM_SQUARES_PARTIALS);
}

void kn_cuda_multi_sum_squares(kn_cuda_ctx *ctx, float *sum_squares, const kn_cuda_param_table *t) {
  cudaStream_t s = kn_stream(ctx);
  for (int first = 0; first < t->count; first += MULTI_MAX_Y) {
    int n = t->count - first < MULTI_MAX_Y ? t->count - first : MULTI_MAX_Y;
    multi_square_partials_kernel<<<dim3(SUM_SQUARES_PARTIALS, (unsigned)n), SUM_SQUARES_THREADS, 0, s>>>(
        t->partials, t->entries, first);
  }
  multi_sum_partials_kernel<<<(unsigned)((t->count + 127) / 128), 128, 0, s>>>(sum_squares, t->partials, t->count);
  kn_cuda_launched(ctx, "multi-tensor sum of squares");
}

/* f(k, i) for every element i of every tensor k: work item c covers
 * elements [chunk * MULTI_CHUNK, + MULTI_CHUNK) of its tensor, and thread x
 * takes every MULTI_THREADS-th of them (coalesced); blocks stride over the
 * work items. */
template <typename F>
__device__ __forceinline__ void multi_for_each(const multi_entry *e, int count, int64_t n_chunks, F f) {
  for (int64_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
    int k = multi_find(e, count, c);
    size_t base = (size_t)(c - e[k].first_chunk) * MULTI_CHUNK, n = e[k].n;
    for (int j = 0; j < MULTI_PER_THREAD; j++) {
      size_t i = base + (size_t)j * MULTI_THREADS + threadIdx.x;
      if (i < n) f(k, i);
    }
  }
}

/* As scale_by_kernel: every thread reads the factor and leaves when it is 1. */
__global__ void multi_scale_by_kernel(const multi_entry *e, int count, int64_t n_chunks, const float *factor) {
  float c = factor[0];
  if (c == 1.0f) return;
  multi_for_each(e, count, n_chunks, [&](int k, size_t i) { e[k].grad[i] *= c; });
}

__global__ void multi_adamw_kernel(const multi_entry *e, int count, int64_t n_chunks, adamw_scalars a) {
  multi_for_each(e, count, n_chunks, [&](int k, size_t i) {
    adamw_element(e[k].param, e[k].param_bf16, e[k].grad, e[k].exp_avg, e[k].exp_avg_sq, i, a.decay_on, a.decay, a.w,
                  a.b2, a.one_minus_b2, a.step_size, a.bc2_sqrt, a.eps);
  });
}

void kn_cuda_multi_scale_by(kn_cuda_ctx *ctx, const kn_cuda_param_table *t, const float *factor) {
  if (t->n_chunks == 0) return;
  multi_scale_by_kernel<<<kn_blocks((size_t)t->n_chunks, 1), MULTI_THREADS, 0, kn_stream(ctx)>>>(
      t->entries, t->count, t->n_chunks, factor);
  kn_cuda_launched(ctx, "multi-tensor scale by");
}

void kn_cuda_multi_adamw_update(kn_cuda_ctx *ctx, const kn_cuda_param_table *t, int64_t step, double lr,
                                double beta1, double beta2, double eps, double weight_decay) {
  if (t->n_chunks == 0 || !t->has_moments) return;
  adamw_scalars a = adamw_scalars_for(step, lr, beta1, beta2, eps, weight_decay);
  multi_adamw_kernel<<<kn_blocks((size_t)t->n_chunks, 1), MULTI_THREADS, 0, kn_stream(ctx)>>>(
      t->entries, t->count, t->n_chunks, a);
  kn_cuda_launched(ctx, "multi-tensor adamw");
}
