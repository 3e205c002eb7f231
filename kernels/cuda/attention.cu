/* Flash-attention style scaled dot-product attention, float32.
 *
 * Forward: a block of ROWS warps serves ROWS query rows of one (batch,
 * head); it walks the keys in tiles of 32 staged in shared memory. Lane j of
 * a warp scores key j of the tile against its row's query; the warp keeps
 * the running max m, the running sum l and the output accumulator (each lane
 * owns the dimensions d = lane + 32 x), rescaled by exp(m_old - m_new) when
 * the max grows (the online softmax). Nothing of size Nq x Nk exists; lse =
 * m + log l is saved per row.
 *
 * Backward recomputes p = exp(s - lse) tile by tile. dq needs a sum over
 * keys and dk, dv a sum over queries, so it runs as two kernels: one by
 * query rows (dq) and one by key rows (dk, dv), each row owned by one warp.
 * No atomics: the result does not depend on scheduling. delta_i = dout_i .
 * out_i (the row term of the softmax gradient) is computed first into the
 * workspace.
 *
 * The kernels are templated on the storage type: float32, or bf16 tensors
 * (q, k, v, out, dout, dq, dk, dv) with every product, the softmax and the
 * accumulators in float32 (tiles are converted as they are staged); lse
 * stays float32.
 *
 * bf16 with head size D <= KN_CUDA_ATTENTION_TC_MAX_D (160: SD1.5's heads
 * of 40, 80 and 160, SDXL's 64) goes to the tensor-core kernels of
 * attention_tc.cu instead; the kernels here serve float32 at every head size
 * and bf16 above 160 (the VAE's 512). The delta kernel below serves both.
 *
 * Head sizes. Each lane keeps DPL = ceil(D / 32) accumulators in registers
 * (a template parameter: 8 for D <= 256, the UNets' heads, whose code is
 * unchanged; 16 for D <= 512, the VAE's one 512-channel mid-block head), and
 * the tiles take shared memory that grows with D. At D = 512 (floats):
 *   forward  2 x TILE x (D+1) + ROWS x D              = 36928 x 4 = 147712 B (144.3 KiB)
 *   dq       2 x TILE x (D+1) + 2 x ROWS x D          = 41024 x 4 = 164096 B (160.3 KiB)
 *   dk, dv   2 x TILE x (D+1) + 2 x ROWS x D + 2 TILE = 41088 x 4 = 164352 B (160.5 KiB)
 * all under the per-block opt-in limit (kn_cuda_allow_shared) of an A100
 * (163 KiB = 166912 B) and an H100 (227 KiB = 232448 B), so forward and
 * backward both take D <= 512. (At D = 256 the largest is 82 KiB.) One block
 * per SM fits at D = 512: slow next to the UNet's heads, but the VAE runs
 * it once per image. */
#include <type_traits>

#include "kernels/cuda/cuda_internal.cuh"

#define ROWS 8          /* warps (rows) per block */
#define TILE 32         /* keys (forward, dq) or queries (dk, dv) per tile */
#define SMALL_DPL 8     /* dimensions per lane for D <= 256 */
#define LARGE_DPL (KN_CUDA_ATTENTION_MAX_D / 32) /* for D <= KN_CUDA_ATTENTION_MAX_D */
#define FULL_MASK 0xffffffffu

/* Loads rows [t0, t0 + TILE) of one head of x[B, N, H*D] into tile[TILE][D+1]
 * (zeros past N). The +1 keeps lanes reading different rows in different
 * shared-memory banks. */
template <typename T>
__device__ void load_tile(float *tile, const T *x, size_t head_off, int t0, int N, int D, int HD) {
  for (int e = threadIdx.x; e < TILE * D; e += blockDim.x) {
    int r = e / D, d = e % D, j = t0 + r;
    tile[r * (D + 1) + d] = j < N ? kn_load(x + head_off + (size_t)j * HD + d) : 0.0f;
  }
}

__device__ __forceinline__ float row_dot(const float *a, const float *b, int D) {
  float s = 0.0f;
  for (int d = 0; d < D; d++) s += a[d] * b[d];
  return s;
}

template <typename T, int MAX_DPL>
__global__ void attention_forward_kernel(T *out, float *lse, const T *q, const T *k, const T *v,
                                         int H, int Nq, int Nk, int D, float scale, int causal) {
  extern __shared__ float smem[];
  float *Ks = smem, *Vs = Ks + TILE * (D + 1), *Qs = Vs + TILE * (D + 1);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int b = blockIdx.y / H, h = blockIdx.y % H, HD = H * D;
  int i = blockIdx.x * ROWS + warp;
  int row_ok = i < Nq;
  size_t q_head = (size_t)b * Nq * HD + (size_t)h * D, kv_head = (size_t)b * Nk * HD + (size_t)h * D;
  float *qs = Qs + warp * D;
  if (row_ok)
    for (int d = lane; d < D; d += 32) qs[d] = kn_load(q + q_head + (size_t)i * HD + d);

  /* Keys that any row of this block may see (causal: up to its last row). */
  int last_row = min(Nq - 1, (int)blockIdx.x * ROWS + ROWS - 1);
  int kv_end = causal ? min(Nk, last_row + 1) : Nk;
  float m = -INFINITY, l = 0.0f, acc[MAX_DPL];
  for (int x = 0; x < MAX_DPL; x++) acc[x] = 0.0f;

  for (int t0 = 0; t0 < kv_end; t0 += TILE) {
    __syncthreads(); /* the previous tile is no longer read */
    load_tile(Ks, k, kv_head, t0, Nk, D, HD);
    load_tile(Vs, v, kv_head, t0, Nk, D, HD);
    __syncthreads();
    if (!row_ok) continue;
    int j = t0 + lane;
    int valid = j < Nk && (!causal || j <= i);
    float s = valid ? scale * row_dot(qs, Ks + lane * (D + 1), D) : -INFINITY;
    float m_new = fmaxf(m, kn_warp_max(s));
    if (m_new == -INFINITY) continue; /* nothing visible yet (warp-uniform) */
    float p = valid ? expf(s - m_new) : 0.0f;
    float alpha = expf(m - m_new); /* 0 on the first visible tile */
    l = l * alpha + kn_warp_sum(p);
    for (int x = 0; x < MAX_DPL; x++) acc[x] *= alpha;
    for (int jj = 0; jj < TILE; jj++) {
      float pj = __shfl_sync(FULL_MASK, p, jj);
      const float *vrow = Vs + jj * (D + 1);
      for (int x = 0; x < MAX_DPL; x++) {
        int d = lane + 32 * x;
        if (d < D) acc[x] += pj * vrow[d];
      }
    }
    m = m_new;
  }
  if (!row_ok) return;
  float inv = 1.0f / l;
  for (int x = 0; x < MAX_DPL; x++) {
    int d = lane + 32 * x;
    if (d < D) kn_store(out + q_head + (size_t)i * HD + d, acc[x] * inv);
  }
  if (lane == 0) lse[((size_t)b * H + h) * Nq + i] = m + logf(l);
}

/* delta[b, h, i] = dout_i . out_i, one warp per row. */
template <typename T>
__global__ void attention_delta_kernel(float *delta, const T *dout, const T *out, int B, int H, int Nq,
                                       int D) {
  int lane = threadIdx.x % 32;
  size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; /* over (b, h, i) */
  if (row >= (size_t)B * H * Nq) return;
  int i = (int)(row % Nq), h = (int)((row / Nq) % H), b = (int)(row / ((size_t)Nq * H));
  size_t off = ((size_t)b * Nq + i) * H * D + (size_t)h * D;
  float s = 0.0f;
  for (int d = lane; d < D; d += 32) s += kn_load(dout + off + d) * kn_load(out + off + d);
  s = kn_warp_sum(s);
  if (lane == 0) delta[row] = s;
}

/* dq by query rows: dq_i += scale sum_j p_ij (dout_i . v_j - delta_i) k_j. */
template <typename T, int MAX_DPL>
__global__ void attention_dq_kernel(T *dq, const T *dout, const T *q, const T *k, const T *v,
                                    const float *lse, const float *delta, int H, int Nq, int Nk, int D, float scale,
                                    int causal) {
  extern __shared__ float smem[];
  float *Ks = smem, *Vs = Ks + TILE * (D + 1), *Qs = Vs + TILE * (D + 1), *DOs = Qs + ROWS * D;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int b = blockIdx.y / H, h = blockIdx.y % H, HD = H * D;
  int i = blockIdx.x * ROWS + warp;
  int row_ok = i < Nq;
  size_t q_head = (size_t)b * Nq * HD + (size_t)h * D, kv_head = (size_t)b * Nk * HD + (size_t)h * D;
  float *qs = Qs + warp * D, *dos = DOs + warp * D;
  float row_lse = 0.0f, row_delta = 0.0f;
  if (row_ok) {
    for (int d = lane; d < D; d += 32) {
      qs[d] = kn_load(q + q_head + (size_t)i * HD + d);
      dos[d] = kn_load(dout + q_head + (size_t)i * HD + d);
    }
    row_lse = lse[((size_t)b * H + h) * Nq + i];
    row_delta = delta[((size_t)b * H + h) * Nq + i];
  }
  int last_row = min(Nq - 1, (int)blockIdx.x * ROWS + ROWS - 1);
  int kv_end = causal ? min(Nk, last_row + 1) : Nk;
  float acc[MAX_DPL];
  for (int x = 0; x < MAX_DPL; x++) acc[x] = 0.0f;
  for (int t0 = 0; t0 < kv_end; t0 += TILE) {
    __syncthreads();
    load_tile(Ks, k, kv_head, t0, Nk, D, HD);
    load_tile(Vs, v, kv_head, t0, Nk, D, HD);
    __syncthreads();
    if (!row_ok) continue;
    int j = t0 + lane;
    int valid = j < Nk && (!causal || j <= i);
    float ds = 0.0f;
    if (valid) {
      float p = expf(scale * row_dot(qs, Ks + lane * (D + 1), D) - row_lse);
      ds = p * (row_dot(dos, Vs + lane * (D + 1), D) - row_delta);
    }
    for (int jj = 0; jj < TILE; jj++) {
      float dsj = __shfl_sync(FULL_MASK, ds, jj);
      const float *krow = Ks + jj * (D + 1);
      for (int x = 0; x < MAX_DPL; x++) {
        int d = lane + 32 * x;
        if (d < D) acc[x] += dsj * krow[d];
      }
    }
  }
  if (!row_ok) return;
  for (int x = 0; x < MAX_DPL; x++) {
    int d = lane + 32 * x;
    if (d < D) {
      T *dst = dq + q_head + (size_t)i * HD + d;
      kn_store(dst, kn_load(dst) + scale * acc[x]);
    }
  }
}

/* dk, dv by key rows: dv_j += sum_i p_ij dout_i; dk_j += scale sum_i ds_ij q_i. */
template <typename T, int MAX_DPL>
__global__ void attention_dkv_kernel(T *dk, T *dv, const T *dout, const T *q, const T *k,
                                     const T *v, const float *lse, const float *delta, int H, int Nq, int Nk,
                                     int D, float scale, int causal) {
  extern __shared__ float smem[];
  float *Qt = smem, *DOt = Qt + TILE * (D + 1), *Kr = DOt + TILE * (D + 1), *Vr = Kr + ROWS * D;
  float *lse_t = Vr + ROWS * D, *delta_t = lse_t + TILE;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int b = blockIdx.y / H, h = blockIdx.y % H, HD = H * D;
  int j = blockIdx.x * ROWS + warp;
  int key_ok = j < Nk;
  size_t q_head = (size_t)b * Nq * HD + (size_t)h * D, kv_head = (size_t)b * Nk * HD + (size_t)h * D;
  const float *row_stats = lse + ((size_t)b * H + h) * Nq, *row_delta = delta + ((size_t)b * H + h) * Nq;
  float *kr = Kr + warp * D, *vr = Vr + warp * D;
  if (key_ok)
    for (int d = lane; d < D; d += 32) {
      kr[d] = kn_load(k + kv_head + (size_t)j * HD + d);
      vr[d] = kn_load(v + kv_head + (size_t)j * HD + d);
    }
  /* Causal: query i sees key j only when i >= j, so tiles before the
   * block's first key contribute nothing. */
  int q_start = causal ? ((int)blockIdx.x * ROWS) / TILE * TILE : 0;
  float acc_k[MAX_DPL], acc_v[MAX_DPL];
  for (int x = 0; x < MAX_DPL; x++) acc_k[x] = acc_v[x] = 0.0f;
  for (int t0 = q_start; t0 < Nq; t0 += TILE) {
    __syncthreads();
    load_tile(Qt, q, q_head, t0, Nq, D, HD);
    load_tile(DOt, dout, q_head, t0, Nq, D, HD);
    for (int r = threadIdx.x; r < TILE; r += blockDim.x) {
      int i = t0 + r;
      lse_t[r] = i < Nq ? row_stats[i] : 0.0f;
      delta_t[r] = i < Nq ? row_delta[i] : 0.0f;
    }
    __syncthreads();
    if (!key_ok) continue;
    int i = t0 + lane;
    int valid = i < Nq && (!causal || j <= i);
    float p = 0.0f, ds = 0.0f;
    if (valid) {
      p = expf(scale * row_dot(Qt + lane * (D + 1), kr, D) - lse_t[lane]);
      ds = p * (row_dot(DOt + lane * (D + 1), vr, D) - delta_t[lane]);
    }
    for (int ii = 0; ii < TILE; ii++) {
      float pi = __shfl_sync(FULL_MASK, p, ii), dsi = __shfl_sync(FULL_MASK, ds, ii);
      const float *qrow = Qt + ii * (D + 1), *dorow = DOt + ii * (D + 1);
      for (int x = 0; x < MAX_DPL; x++) {
        int d = lane + 32 * x;
        if (d < D) {
          acc_v[x] += pi * dorow[d];
          acc_k[x] += dsi * qrow[d];
        }
      }
    }
  }
  if (!key_ok) return;
  for (int x = 0; x < MAX_DPL; x++) {
    int d = lane + 32 * x;
    if (d >= D) continue;
    size_t at = kv_head + (size_t)j * HD + d;
    if (dv) kn_store(dv + at, kn_load(dv + at) + acc_v[x]);
    if (dk) kn_store(dk + at, kn_load(dk + at) + scale * acc_k[x]);
  }
}

static int check_head_size(kn_cuda_ctx *ctx, int D) {
  if (D >= 1 && D <= KN_CUDA_ATTENTION_MAX_D) return 1;
  kn_cuda_fail(ctx, "attention", "head size outside 1..KN_CUDA_ATTENTION_MAX_D (512)");
  return 0;
}

template <typename T, int DPL>
static void launch_forward(kn_cuda_ctx *ctx, T *out, float *lse, const T *q, const T *k, const T *v, int B, int H,
                           int Nq, int Nk, int D, float scale, int causal) {
  size_t shared = (2 * (size_t)TILE * (D + 1) + (size_t)ROWS * D) * sizeof(float);
  if (!kn_cuda_allow_shared(ctx, attention_forward_kernel<T, DPL>, shared, "attention shared memory")) return;
  dim3 grid((Nq + ROWS - 1) / ROWS, B * H);
  attention_forward_kernel<T, DPL><<<grid, 32 * ROWS, shared, kn_stream(ctx)>>>(out, lse, q, k, v, H, Nq, Nk, D,
                                                                                 scale, causal);
  kn_cuda_launched(ctx, "attention forward");
}

template <typename T>
static void attention_forward(kn_cuda_ctx *ctx, T *out, float *lse, const T *q, const T *k, const T *v, int B, int H,
                              int Nq, int Nk, int D, float scale, int causal) {
  if (B * H * Nq == 0 || !check_head_size(ctx, D)) return;
  if constexpr (std::is_same<T, __nv_bfloat16>::value)
    if (D <= KN_CUDA_ATTENTION_TC_MAX_D) {
      kn_cuda_attention_tc_forward(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
      return;
    }
  if (D <= 32 * SMALL_DPL) launch_forward<T, SMALL_DPL>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
  else launch_forward<T, LARGE_DPL>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
}

template <typename T, int DPL>
static void launch_backward(kn_cuda_ctx *ctx, T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k,
                            const T *v, const float *lse, const float *delta, int B, int H, int Nq, int Nk, int D,
                            float scale, int causal) {
  if (dq) {
    size_t shared = (2 * (size_t)TILE * (D + 1) + 2 * (size_t)ROWS * D) * sizeof(float);
    if (!kn_cuda_allow_shared(ctx, attention_dq_kernel<T, DPL>, shared, "attention shared memory")) return;
    dim3 grid((Nq + ROWS - 1) / ROWS, B * H);
    attention_dq_kernel<T, DPL><<<grid, 32 * ROWS, shared, kn_stream(ctx)>>>(dq, dout, q, k, v, lse, delta, H, Nq,
                                                                              Nk, D, scale, causal);
    kn_cuda_launched(ctx, "attention dq");
  }
  if (dk || dv) {
    size_t shared = (2 * (size_t)TILE * (D + 1) + 2 * (size_t)ROWS * D + 2 * TILE) * sizeof(float);
    if (!kn_cuda_allow_shared(ctx, attention_dkv_kernel<T, DPL>, shared, "attention shared memory")) return;
    dim3 grid((Nk + ROWS - 1) / ROWS, B * H);
    attention_dkv_kernel<T, DPL><<<grid, 32 * ROWS, shared, kn_stream(ctx)>>>(dk, dv, dout, q, k, v, lse, delta, H,
                                                                               Nq, Nk, D, scale, causal);
    kn_cuda_launched(ctx, "attention dk/dv");
  }
}

template <typename T>
static void attention_backward(kn_cuda_ctx *ctx, T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k,
                               const T *v, const T *out, const float *lse, int B, int H, int Nq, int Nk, int D,
                               float scale, int causal) {
  if (B * H * Nq == 0 || (!dq && !dk && !dv) || !check_head_size(ctx, D)) return;
  size_t rows = (size_t)B * H * Nq;
  float *delta = (float *)kn_cuda_workspace(ctx, rows * sizeof(float));
  if (!delta) return;
  attention_delta_kernel<T><<<(unsigned)((rows + 7) / 8), 256, 0, kn_stream(ctx)>>>(delta, dout, out, B, H, Nq, D);
  kn_cuda_launched(ctx, "attention delta");
  if constexpr (std::is_same<T, __nv_bfloat16>::value)
    if (D <= KN_CUDA_ATTENTION_TC_MAX_D) {
      kn_cuda_attention_tc_backward(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal);
      return;
    }
  if (D <= 32 * SMALL_DPL)
    launch_backward<T, SMALL_DPL>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal);
  else
    launch_backward<T, LARGE_DPL>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal);
}

void kn_cuda_attention_forward(kn_cuda_ctx *ctx, float *out, float *lse, const float *q, const float *k,
                               const float *v, int B, int H, int Nq, int Nk, int D, float scale, int causal) {
  attention_forward(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
}

void kn_cuda_attention_backward(kn_cuda_ctx *ctx, float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *k, const float *v, const float *out,
                                const float *lse, int B, int H, int Nq, int Nk, int D, float scale, int causal) {
  attention_backward(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, causal);
}

void kn_cuda_attention_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, float *lse, const kn_bf16 *q, const kn_bf16 *k,
                                    const kn_bf16 *v, int B, int H, int Nq, int Nk, int D, float scale, int causal) {
  attention_forward(ctx, (__nv_bfloat16 *)out, lse, (const __nv_bfloat16 *)q, (const __nv_bfloat16 *)k,
                    (const __nv_bfloat16 *)v, B, H, Nq, Nk, D, scale, causal);
}

void kn_cuda_attention_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dq, kn_bf16 *dk, kn_bf16 *dv, const kn_bf16 *dout,
                                     const kn_bf16 *q, const kn_bf16 *k, const kn_bf16 *v, const kn_bf16 *out,
                                     const float *lse, int B, int H, int Nq, int Nk, int D, float scale, int causal) {
  typedef __nv_bfloat16 bf;
  attention_backward(ctx, (bf *)dq, (bf *)dk, (bf *)dv, (const bf *)dout, (const bf *)q, (const bf *)k,
                     (const bf *)v, (const bf *)out, lse, B, H, Nq, Nk, D, scale, causal);
}
