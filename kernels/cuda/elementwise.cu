/* Elementwise and data-movement ops: activations, GEGLU, softmax, 2x
 * upsample, add, concat/split, timestep and token embeddings. Each output
 * element is written by exactly one thread (grid-stride loops), so results
 * never depend on the launch shape. Activations, GEGLU, upsample, add and
 * concat also come in bf16 storage (float32 arithmetic, each output rounded
 * once), through the same templated kernels. */
#include "kernels/cuda/cuda_internal.cuh"

#define THREADS 256
#define GRID_STRIDE(i, n) \
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

#define KN_SQRT1_2 0.70710678118654752f
#define KN_INV_SQRT_2PI 0.39894228040143268f
#define KN_SQRT_2_OVER_PI 0.79788456080286536f
#define KN_GELU_TANH_C 0.044715f
#define KN_QUICK_GELU_C 1.702f

/* ---------------------------------------------------------- activations */

__device__ __forceinline__ float gelu_value(float x) { return 0.5f * x * (1.0f + erff(x * KN_SQRT1_2)); }

__device__ __forceinline__ float gelu_grad(float x) {
  return 0.5f * (1.0f + erff(x * KN_SQRT1_2)) + x * KN_INV_SQRT_2PI * expf(-0.5f * x * x);
}

__device__ __forceinline__ float activation_value(kn_activation act, float x) {
  switch (act) {
  case KN_ACT_SILU: return x * kn_sigmoid(x);
  case KN_ACT_GELU: return gelu_value(x);
  case KN_ACT_GELU_TANH: {
    float u = KN_SQRT_2_OVER_PI * (x + KN_GELU_TANH_C * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
  }
  case KN_ACT_QUICK_GELU: return x * kn_sigmoid(KN_QUICK_GELU_C * x);
  }
  return 0.0f;
}

__device__ __forceinline__ float activation_grad(kn_activation act, float x) {
  switch (act) {
  case KN_ACT_SILU: {
    float s = kn_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
  case KN_ACT_GELU: return gelu_grad(x);
  case KN_ACT_GELU_TANH: {
    float u = KN_SQRT_2_OVER_PI * (x + KN_GELU_TANH_C * x * x * x);
    float t = tanhf(u);
    float du = KN_SQRT_2_OVER_PI * (1.0f + 3.0f * KN_GELU_TANH_C * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
  }
  case KN_ACT_QUICK_GELU: {
    float s = kn_sigmoid(KN_QUICK_GELU_C * x);
    return s + KN_QUICK_GELU_C * x * s * (1.0f - s);
  }
  }
  return 0.0f;
}

template <typename T>
__global__ void activation_forward_kernel(kn_activation act, T *out, const T *inp, size_t n) {
  GRID_STRIDE(i, n) kn_store(out + i, activation_value(act, kn_load(inp + i)));
}

template <typename T>
__global__ void activation_backward_kernel(kn_activation act, T *dinp, const T *dout, const T *inp, size_t n) {
  GRID_STRIDE(i, n) kn_store(dinp + i, kn_load(dinp + i) + kn_load(dout + i) * activation_grad(act, kn_load(inp + i)));
}

void kn_cuda_activation_forward(kn_cuda_ctx *ctx, kn_activation act, float *out, const float *inp, size_t n) {
  if (n == 0) return;
  activation_forward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(act, out, inp, n);
  kn_cuda_launched(ctx, "activation forward");
}

void kn_cuda_activation_backward(kn_cuda_ctx *ctx, kn_activation act, float *dinp, const float *dout,
                                 const float *inp, size_t n) {
  if (n == 0 || !dinp) return;
  activation_backward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(act, dinp, dout, inp, n);
  kn_cuda_launched(ctx, "activation backward");
}

template <typename T>
__global__ void geglu_forward_kernel(T *out, const T *inp, int D, size_t n) {
  GRID_STRIDE(i, n) {
    size_t row = i / D, d = i % D;
    const T *hidden = inp + row * 2 * D;
    kn_store(out + i, kn_load(hidden + d) * gelu_value(kn_load(hidden + D + d)));
  }
}

template <typename T>
__global__ void geglu_backward_kernel(T *dinp, const T *dout, const T *inp, int D, size_t n) {
  GRID_STRIDE(i, n) {
    size_t row = i / D, d = i % D;
    const T *hidden = inp + row * 2 * D;
    T *dhidden = dinp + row * 2 * D;
    float gate = kn_load(hidden + D + d), dy = kn_load(dout + i);
    kn_store(dhidden + d, kn_load(dhidden + d) + dy * gelu_value(gate));
    kn_store(dhidden + D + d, kn_load(dhidden + D + d) + dy * kn_load(hidden + d) * gelu_grad(gate));
  }
}

void kn_cuda_geglu_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int N, int D) {
  size_t n = (size_t)N * D;
  if (n == 0) return;
  geglu_forward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(out, inp, D, n);
  kn_cuda_launched(ctx, "geglu forward");
}

void kn_cuda_geglu_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, const float *inp, int N, int D) {
  size_t n = (size_t)N * D;
  if (n == 0 || !dinp) return;
  geglu_backward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(dinp, dout, inp, D, n);
  kn_cuda_launched(ctx, "geglu backward");
}

/* ------------------------------------------------------------- softmax */

/* One warp per row: max, sum of exponentials, then the normalised values. */
__global__ void softmax_forward_kernel(float *out, const float *inp, int N, int C) {
  int lane = threadIdx.x % 32, row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= N) return;
  const float *x = inp + (size_t)row * C;
  float *y = out + (size_t)row * C;
  float m = -INFINITY;
  for (int c = lane; c < C; c += 32) m = fmaxf(m, x[c]);
  m = kn_warp_max(m);
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += expf(x[c] - m);
  float inv = 1.0f / kn_warp_sum(s);
  for (int c = lane; c < C; c += 32) y[c] = expf(x[c] - m) * inv;
}

__global__ void softmax_backward_kernel(float *dinp, const float *dout, const float *out, int N, int C) {
  int lane = threadIdx.x % 32, row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= N) return;
  const float *y = out + (size_t)row * C, *dy = dout + (size_t)row * C;
  float *dx = dinp + (size_t)row * C;
  float dot = 0.0f;
  for (int c = lane; c < C; c += 32) dot += dy[c] * y[c];
  dot = kn_warp_sum(dot);
  for (int c = lane; c < C; c += 32) dx[c] += y[c] * (dy[c] - dot);
}

void kn_cuda_softmax_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int N, int C) {
  if (N <= 0) return;
  softmax_forward_kernel<<<(N + 7) / 8, 256, 0, kn_stream(ctx)>>>(out, inp, N, C);
  kn_cuda_launched(ctx, "softmax forward");
}

void kn_cuda_softmax_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, const float *out, int N, int C) {
  if (N <= 0 || !dinp) return;
  softmax_backward_kernel<<<(N + 7) / 8, 256, 0, kn_stream(ctx)>>>(dinp, dout, out, N, C);
  kn_cuda_launched(ctx, "softmax backward");
}

/* ------------------------------------------------------------ upsample */

template <typename T>
__global__ void upsample2x_forward_kernel(T *out, const T *inp, int H, int W, size_t n) {
  /* One thread per output value: out[bc, y, x] = inp[bc, y/2, x/2]. */
  GRID_STRIDE(i, n) {
    int W2 = 2 * W;
    size_t bc = i / ((size_t)4 * H * W);
    int rem = (int)(i % ((size_t)4 * H * W)), y = rem / W2, x = rem % W2;
    out[i] = inp[bc * H * W + (size_t)(y / 2) * W + x / 2]; /* a copy: no rounding */
  }
}

template <typename T>
__global__ void upsample2x_backward_kernel(T *dinp, const T *dout, int H, int W, size_t n) {
  /* One thread per input value: the sum of its 2x2 block, in the CPU's order. */
  GRID_STRIDE(i, n) {
    int W2 = 2 * W;
    size_t bc = i / ((size_t)H * W);
    int rem = (int)(i % ((size_t)H * W)), y = rem / W, x = rem % W;
    const T *r0 = dout + bc * 4 * H * W + (size_t)(2 * y) * W2, *r1 = r0 + W2;
    float block = (kn_load(r0 + 2 * x) + kn_load(r0 + 2 * x + 1)) + (kn_load(r1 + 2 * x) + kn_load(r1 + 2 * x + 1));
    kn_store(dinp + i, kn_load(dinp + i) + block);
  }
}

void kn_cuda_upsample2x_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int B, int C, int H, int W) {
  size_t n = (size_t)B * C * 4 * H * W;
  if (n == 0) return;
  upsample2x_forward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(out, inp, H, W, n);
  kn_cuda_launched(ctx, "upsample forward");
}

void kn_cuda_upsample2x_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, int B, int C, int H, int W) {
  size_t n = (size_t)B * C * H * W;
  if (n == 0 || !dinp) return;
  upsample2x_backward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(dinp, dout, H, W, n);
  kn_cuda_launched(ctx, "upsample backward");
}

/* ------------------------------------------------------------------ add */

template <typename T>
__global__ void add_forward_kernel(T *out, const T *a, const T *b, size_t n) {
  GRID_STRIDE(i, n) kn_store(out + i, kn_load(a + i) + kn_load(b + i));
}

template <typename T>
__global__ void accumulate_kernel(T *dst, const T *src, size_t n) {
  GRID_STRIDE(i, n) kn_store(dst + i, kn_load(dst + i) + kn_load(src + i));
}

void kn_cuda_add_forward(kn_cuda_ctx *ctx, float *out, const float *a, const float *b, size_t n) {
  if (n == 0) return;
  add_forward_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(out, a, b, n);
  kn_cuda_launched(ctx, "add forward");
}

void kn_cuda_add_backward(kn_cuda_ctx *ctx, float *da, float *db, const float *dout, size_t n) {
  if (n == 0) return;
  if (da) accumulate_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(da, dout, n);
  if (db) accumulate_kernel<float><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(db, dout, n);
  kn_cuda_launched(ctx, "add backward");
}

/* ------------------------------------------------------- concat, split */

/* Moves between the joint tensor j[outer, Ca + Cb, inner] and its parts
 * a[outer, Ca, inner], b[outer, Cb, inner]: to_joint copies or adds the
 * parts into j, otherwise j's halves are copied or added into the parts. One
 * thread per joint element. */
template <typename T>
__global__ void concat_kernel(T *joint, T *a, T *b, size_t na, size_t nb, size_t n, int to_joint, int accumulate) {
  GRID_STRIDE(i, n) {
    size_t o = i / (na + nb), r = i % (na + nb);
    T *part = r < na ? (a ? a + o * na + r : NULL) : (b ? b + o * nb + (r - na) : NULL);
    if (!part) continue;
    if (to_joint)
      kn_store(joint + i, accumulate ? kn_load(joint + i) + kn_load(part) : kn_load(part));
    else
      kn_store(part, accumulate ? kn_load(part) + kn_load(joint + i) : kn_load(joint + i));
  }
}

template <typename T>
static void concat_move(kn_cuda_ctx *ctx, T *joint, const T *a, const T *b, int outer, int Ca, int Cb, int inner,
                        int to_joint, int accumulate, const char *what) {
  size_t na = (size_t)Ca * inner, nb = (size_t)Cb * inner, n = (na + nb) * outer;
  if (n == 0) return;
  /* The parts are read-only when to_joint; the kernel's pointers are shared
   * between directions, hence the casts. */
  concat_kernel<T><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(joint, (T *)a, (T *)b, na, nb, n, to_joint,
                                                                          accumulate);
  kn_cuda_launched(ctx, what);
}

void kn_cuda_concat_forward(kn_cuda_ctx *ctx, float *out, const float *a, const float *b, int outer, int Ca, int Cb,
                            int inner) {
  concat_move(ctx, out, a, b, outer, Ca, Cb, inner, 1, 0, "concat forward");
}

void kn_cuda_concat_backward(kn_cuda_ctx *ctx, float *da, float *db, const float *dout, int outer, int Ca, int Cb,
                             int inner) {
  concat_move<float>(ctx, (float *)dout, da, db, outer, Ca, Cb, inner, 0, 1, "concat backward");
}

void kn_cuda_split_forward(kn_cuda_ctx *ctx, float *a, float *b, const float *inp, int outer, int Ca, int Cb,
                           int inner) {
  concat_move<float>(ctx, (float *)inp, a, b, outer, Ca, Cb, inner, 0, 0, "split forward");
}

void kn_cuda_split_backward(kn_cuda_ctx *ctx, float *dinp, const float *da, const float *db, int outer, int Ca,
                            int Cb, int inner) {
  /* A missing part's gradient is zero: it adds nothing. */
  concat_move(ctx, dinp, da, db, outer, Ca, Cb, inner, 1, 1, "split backward");
}

/* --------------------------------------------------- timestep embedding */

__device__ __forceinline__ float timestep_freq(int i, int half, float shift, float max_period) {
  float exponent = -logf(max_period) * (float)i;
  exponent = exponent / ((float)half - shift);
  return expf(exponent);
}

__global__ void timestep_embedding_forward_kernel(float *out, const float *timesteps, int B, int dim, int flip,
                                                  float shift, float scale, float max_period) {
  int half = dim / 2;
  size_t n = (size_t)B * dim;
  GRID_STRIDE(idx, n) {
    int b = (int)(idx / dim), col = (int)(idx % dim);
    float value = 0.0f; /* the odd dimension's padding column */
    if (col < 2 * half) {
      int second = col >= half, i = second ? col - half : col;
      float arg = scale * (timesteps[b] * timestep_freq(i, half, shift, max_period));
      int is_sin = flip ? second : !second;
      value = is_sin ? sinf(arg) : cosf(arg);
    }
    out[idx] = value;
  }
}

/* One warp per timestep, columns summed in double (as the CPU). */
__global__ void timestep_embedding_backward_kernel(float *dtimesteps, const float *dout, const float *timesteps,
                                                   int B, int dim, int flip, float shift, float scale,
                                                   float max_period) {
  int lane = threadIdx.x % 32, b = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (b >= B) return;
  int half = dim / 2, sin_at = flip ? half : 0, cos_at = flip ? 0 : half;
  const float *dy = dout + (size_t)b * dim;
  double acc = 0.0;
  for (int i = lane; i < half; i += 32) {
    float f = scale * timestep_freq(i, half, shift, max_period);
    float arg = f * timesteps[b];
    acc += (double)dy[sin_at + i] * f * cosf(arg) - (double)dy[cos_at + i] * f * sinf(arg);
  }
  acc = kn_warp_sum_double(acc);
  if (lane == 0) dtimesteps[b] += (float)acc;
}

void kn_cuda_timestep_embedding_forward(kn_cuda_ctx *ctx, float *out, const float *timesteps, int B, int dim,
                                        int flip_sin_to_cos, float downscale_freq_shift, float scale,
                                        float max_period) {
  size_t n = (size_t)B * dim;
  if (n == 0) return;
  timestep_embedding_forward_kernel<<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(
      out, timesteps, B, dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period);
  kn_cuda_launched(ctx, "timestep embedding forward");
}

void kn_cuda_timestep_embedding_backward(kn_cuda_ctx *ctx, float *dtimesteps, const float *dout,
                                         const float *timesteps, int B, int dim, int flip_sin_to_cos,
                                         float downscale_freq_shift, float scale, float max_period) {
  if (B <= 0 || !dtimesteps) return;
  timestep_embedding_backward_kernel<<<(B + 7) / 8, 256, 0, kn_stream(ctx)>>>(
      dtimesteps, dout, timesteps, B, dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period);
  kn_cuda_launched(ctx, "timestep embedding backward");
}

/* ------------------------------------------------------ token embedding */

__global__ void embedding_forward_kernel(float *out, const int32_t *ids, const float *wte, const float *wpe, int T,
                                         int C, size_t n) {
  GRID_STRIDE(i, n) {
    size_t bt = i / C;
    int c = (int)(i % C);
    float v = wte[(size_t)ids[bt] * C + c];
    if (wpe) v += wpe[(bt % T) * C + c];
    out[i] = v;
  }
}

/* One thread per channel walks every token in order: repeated ids add up in
 * a fixed order without atomics (B*T is a few hundred tokens). */
__global__ void embedding_backward_kernel(float *dwte, float *dwpe, const float *dout, const int32_t *ids, int BT,
                                          int T, int C) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int bt = 0; bt < BT; bt++) {
    float g = dout[(size_t)bt * C + c];
    if (dwte) dwte[(size_t)ids[bt] * C + c] += g;
    if (dwpe) dwpe[(size_t)(bt % T) * C + c] += g;
  }
}

void kn_cuda_embedding_forward(kn_cuda_ctx *ctx, float *out, const int32_t *ids, const float *wte, const float *wpe,
                               int B, int T, int C) {
  size_t n = (size_t)B * T * C;
  if (n == 0) return;
  embedding_forward_kernel<<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(out, ids, wte, wpe, T, C, n);
  kn_cuda_launched(ctx, "embedding forward");
}

void kn_cuda_embedding_backward(kn_cuda_ctx *ctx, float *dwte, float *dwpe, const float *dout, const int32_t *ids,
                                int B, int T, int C) {
  if ((!dwte && !dwpe) || C <= 0) return;
  embedding_backward_kernel<<<(C + 127) / 128, 128, 0, kn_stream(ctx)>>>(dwte, dwpe, dout, ids, B * T, T, C);
  kn_cuda_launched(ctx, "embedding backward");
}

/* ---------------------------------------------------------------- bf16 */

typedef __nv_bfloat16 bf;

void kn_cuda_activation_forward_bf16(kn_cuda_ctx *ctx, kn_activation act, kn_bf16 *out, const kn_bf16 *inp,
                                     size_t n) {
  if (n == 0) return;
  activation_forward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(act, (bf *)out,
                                                                                        (const bf *)inp, n);
  kn_cuda_launched(ctx, "activation forward bf16");
}

void kn_cuda_activation_backward_bf16(kn_cuda_ctx *ctx, kn_activation act, kn_bf16 *dinp, const kn_bf16 *dout,
                                      const kn_bf16 *inp, size_t n) {
  if (n == 0 || !dinp) return;
  activation_backward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>(
      act, (bf *)dinp, (const bf *)dout, (const bf *)inp, n);
  kn_cuda_launched(ctx, "activation backward bf16");
}

void kn_cuda_geglu_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int N, int D) {
  size_t n = (size_t)N * D;
  if (n == 0) return;
  geglu_forward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)out, (const bf *)inp, D, n);
  kn_cuda_launched(ctx, "geglu forward bf16");
}

void kn_cuda_geglu_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, const kn_bf16 *inp, int N,
                                 int D) {
  size_t n = (size_t)N * D;
  if (n == 0 || !dinp) return;
  geglu_backward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)dinp, (const bf *)dout,
                                                                                    (const bf *)inp, D, n);
  kn_cuda_launched(ctx, "geglu backward bf16");
}

void kn_cuda_add_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b, size_t n) {
  if (n == 0) return;
  add_forward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)out, (const bf *)a,
                                                                                 (const bf *)b, n);
  kn_cuda_launched(ctx, "add forward bf16");
}

void kn_cuda_add_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, size_t n) {
  if (n == 0) return;
  if (da) accumulate_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)da, (const bf *)dout, n);
  if (db) accumulate_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)db, (const bf *)dout, n);
  kn_cuda_launched(ctx, "add backward bf16");
}

void kn_cuda_upsample2x_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int H, int W) {
  size_t n = (size_t)B * C * 4 * H * W;
  if (n == 0) return;
  upsample2x_forward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)out, (const bf *)inp, H,
                                                                                        W, n);
  kn_cuda_launched(ctx, "upsample forward bf16");
}

void kn_cuda_upsample2x_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C, int H,
                                      int W) {
  size_t n = (size_t)B * C * H * W;
  if (n == 0 || !dinp) return;
  upsample2x_backward_kernel<bf><<<kn_blocks(n, THREADS), THREADS, 0, kn_stream(ctx)>>>((bf *)dinp, (const bf *)dout,
                                                                                         H, W, n);
  kn_cuda_launched(ctx, "upsample backward bf16");
}

void kn_cuda_concat_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b, int outer,
                                 int Ca, int Cb, int inner) {
  concat_move<bf>(ctx, (bf *)out, (const bf *)a, (const bf *)b, outer, Ca, Cb, inner, 1, 0, "concat forward bf16");
}

void kn_cuda_concat_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, int outer, int Ca,
                                  int Cb, int inner) {
  concat_move<bf>(ctx, (bf *)dout, (const bf *)da, (const bf *)db, outer, Ca, Cb, inner, 0, 1,
                  "concat backward bf16");
}
