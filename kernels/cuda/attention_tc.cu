/* Flash attention on tensor cores: bf16 q, k, v with head size D <= 160.
 *
 * attention.cu's bf16 entry points call these when D <= KN_CUDA_ATTENTION_TC_MAX_D
 * (its scalar kernels serve larger heads and float32). The contract is the
 * same: q, k, v, out [B, N, H*D] with the heads interleaved, lse [B, H, Nq]
 * float32, causal masks key j > query i (top-left), backward ACCUMULATES into
 * dq, dk, dv and skips NULL ones, no atomics, nothing of size Nq x Nk.
 *
 * The products run on tensor cores through nvcuda::wmma: 16x16x16 bf16
 * fragments with float32 accumulators. A block of 4 warps serves 64 rows
 * (queries in the forward and the dq kernel, keys in the dk/dv kernel); warp
 * w owns rows 16w..16w+15 and walks the other side in tiles of 64 staged in
 * shared memory. The head is padded to DP (D rounded up to 16: DP = 16, 32,
 * ..., 160 are instantiated) with zeros: zero columns add nothing to a dot
 * product, and padded outputs are never written. Rows past N are zeros too,
 * and the masks drop their scores. SD1.5's heads are 40 (DP 48), 80 and
 * 160, SDXL's 64.
 *
 * Between two products the scores go through shared memory: the layout of an
 * accumulator fragment's elements is unspecified, so the per-element work
 * (scale, mask, exp, the online softmax's rescale) reads and writes plain
 * [16][64] float arrays. Two lanes serve one row (32 columns each). Simple
 * and checkable rather than maximal (FlashAttention-2 keeps the scores in
 * registers with mma.sync PTX and double-buffers the tiles).
 *
 * Precision: as in FlashAttention, the probabilities P (forward, dk/dv) and
 * dS (backward) are rounded to bf16 for the product that follows; the softmax
 * statistics m, l, lse, delta and every accumulator are float32, and each
 * output is rounded to bf16 once.
 *
 * Backward is FlashAttention-2 without atomics: dk and dv need sums over
 * queries and dq a sum over keys, so one kernel owns key rows (dk, dv) and
 * one owns query rows (dq); each recomputes P = exp(scale s - lse). */
#include <mma.h>
#include <stdint.h>

#include "kernels/cuda/cuda_internal.cuh"

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

#define TC_WARPS 4
#define TC_THREADS (32 * TC_WARPS)
#define TC_ROWS 64 /* rows per block, 16 per warp */
#define TC_TILE 64 /* keys (forward, dq) or queries (dk/dv) per tile */
#define FULL_MASK 0xffffffffu

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_bt;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;

/* ------------------------------------------------ shared-memory layouts */

/* Every region starts at a multiple of 128 bytes (wmma needs 32). The
 * layouts are used by the kernels (offsets) and the launches (sizes). */
static constexpr size_t align128(size_t bytes) { return (bytes + 127) / 128 * 128; }
static constexpr size_t tile_bytes(int dp) { return align128((size_t)TC_TILE * dp * sizeof(bf16)); }
static constexpr size_t SCORES = align128(16 * TC_TILE * sizeof(float)); /* a warp's [16][64] floats */
static constexpr size_t PROBS = align128(16 * TC_TILE * sizeof(bf16));   /* a warp's [16][64] bf16 */
/* Columns of a [16][DP] float accumulator that one pass through a warp's
 * [16][64] scores array carries to global memory (the dk/dv and dq kernels'
 * ends): all of them while DP <= 64, else 64 at a time. */
__host__ __device__ constexpr int out_cols(int dp) { return dp < TC_TILE ? dp : TC_TILE; }

/* Forward: Q, K, V tiles; per warp scores S, probabilities P, output O
 * [16][DP] float and 16 row factors. */
template <int DP>
struct forward_layout {
  static constexpr size_t q = 0, k = q + tile_bytes(DP), v = k + tile_bytes(DP), warps = v + tile_bytes(DP);
  static constexpr size_t s = 0, p = s + SCORES, o = p + PROBS, row = o + align128(16 * DP * sizeof(float));
  static constexpr size_t per_warp = row + align128(16 * sizeof(float));
  static constexpr size_t bytes = warps + TC_WARPS * per_warp;
};

/* dk/dv: the block's K and V rows; per query tile Q, dO, lse and delta; per
 * warp S^T, dP^T (float), P^T and dS^T (bf16). */
template <int DP>
struct dkv_layout {
  static constexpr size_t k = 0, v = k + tile_bytes(DP), q = v + tile_bytes(DP), dout = q + tile_bytes(DP);
  static constexpr size_t lse = dout + tile_bytes(DP), delta = lse + align128(TC_TILE * sizeof(float));
  static constexpr size_t warps = delta + align128(TC_TILE * sizeof(float));
  static constexpr size_t s = 0, dp = s + SCORES, p = dp + SCORES, ds = p + PROBS, per_warp = ds + PROBS;
  static constexpr size_t bytes = warps + TC_WARPS * per_warp;
};

/* dq: the block's Q and dO rows; per key tile K and V; per warp S, dP
 * (float) and dS (bf16). lse and delta of a row live in its lanes. */
template <int DP>
struct dq_layout {
  static constexpr size_t q = 0, dout = q + tile_bytes(DP), k = dout + tile_bytes(DP), v = k + tile_bytes(DP);
  static constexpr size_t warps = v + tile_bytes(DP);
  static constexpr size_t s = 0, dp = s + SCORES, ds = dp + SCORES, per_warp = ds + PROBS;
  static constexpr size_t bytes = warps + TC_WARPS * per_warp;
};

/* Per block (each grows by 10 KiB, 8 KiB and 8 KiB per 16 of DP):
 *   DP    forward     dk/dv       dq
 *   48    54.5 KiB    72.5 KiB    64 KiB   (SD1.5's D = 40)
 *   64    64.5        80.5        72       (SDXL)
 *   80    74.5        88.5        80       (SD1.5's D = 80)
 *   160  124.5       128.5       120       (SD1.5's D = 160: the largest)
 * Above 48 KiB, so the launches opt in. All under the A100's 163 KiB per
 * block and the H100's 227. An A100 SM holds two dk/dv blocks up to DP = 64
 * and one from DP = 80; at DP = 160 every kernel runs one block (4 warps)
 * per SM on either card: correct, not fast.
 * The [16][DP] float results of the dk/dv and dq kernels leave through the
 * [16][64] score arrays in passes of 64 columns (out_cols), not a region of
 * their own: one would add 40 KiB (dk/dv) at DP = 160, past an A100's limit. */
static_assert(forward_layout<48>::bytes == 55808 && dkv_layout<48>::bytes == 74240 && dq_layout<48>::bytes == 65536,
              "shared-memory sizes as documented");
static_assert(forward_layout<64>::bytes == 66048 && dkv_layout<64>::bytes == 82432 && dq_layout<64>::bytes == 73728,
              "shared-memory sizes as documented");
static_assert(forward_layout<80>::bytes == 76288 && dkv_layout<80>::bytes == 90624 && dq_layout<80>::bytes == 81920,
              "shared-memory sizes as documented");
static_assert(forward_layout<160>::bytes == 127488 && dkv_layout<160>::bytes == 131584 &&
                  dq_layout<160>::bytes == 122880,
              "shared-memory sizes as documented");
static_assert(KN_CUDA_ATTENTION_TC_MAX_D == 160, "the launches instantiate DP = 16, 32, ..., 160");
static_assert(forward_layout<160>::bytes <= 163 * 1024 && dkv_layout<160>::bytes <= 163 * 1024 &&
                  dq_layout<160>::bytes <= 163 * 1024,
              "the largest head fits an A100 block");

/* ------------------------------------------------------- device helpers */

/* Rows [r0, r0 + 64) of one head of x[B, N, H*D] into tile[64][DP], zeros
 * past N and past D. 16-byte loads when every row's slice is 16-byte aligned
 * (D a multiple of 8, as SD's 40, 80 and 160, and x aligned); else one
 * element at a time. */
template <int DP>
__device__ void load_tile(bf16 *tile, const bf16 *x, size_t head_off, int r0, int N, int D, int HD) {
  if (D % 8 == 0 && ((uintptr_t)x & 15) == 0) {
    const int chunks = DP / 8;
    for (int e = threadIdx.x; e < TC_TILE * chunks; e += blockDim.x) {
      int r = e / chunks, d = (e % chunks) * 8, n = r0 + r;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (n < N && d < D) val = *(const uint4 *)(x + head_off + (size_t)n * HD + d);
      *(uint4 *)(tile + r * DP + d) = val;
    }
  } else {
    for (int e = threadIdx.x; e < TC_TILE * DP; e += blockDim.x) {
      int r = e / DP, d = e % DP, n = r0 + r;
      tile[e] = n < N && d < D ? x[head_off + (size_t)n * HD + d] : __float2bfloat16_rn(0.0f);
    }
  }
}

/* c[16][16 NB] (float, row major, ldc) = a[16][16 KB] b^T, where b is a
 * row-major [16 NB][16 KB] array: read as a col_major fragment it is b^T.
 * The score products Q K^T, K Q^T, dO V^T, V dO^T. Up to KB = 4 (DP <= 64)
 * the KB a-fragments are loaded once for all NB columns; wider heads load
 * each where it is used (NB times as many shared-memory reads): 4 KB
 * registers of preloaded a-fragments next to DP/2 of accumulators made
 * ptxas spill in some wide instantiations (sm_80: forward DP = 144, dk/dv
 * 112 and 144), and loading them in place spills in none. */
#define PRELOAD_KB 4
template <int KB, int NB>
__device__ __forceinline__ void mma_abt(float *c, int ldc, const bf16 *a, int lda, const bf16 *b, int ldb) {
  if constexpr (KB <= PRELOAD_KB) {
    frag_a fa[KB];
#pragma unroll
    for (int kk = 0; kk < KB; kk++) wmma::load_matrix_sync(fa[kk], a + 16 * kk, lda);
#pragma unroll
    for (int n = 0; n < NB; n++) {
      frag_acc acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < KB; kk++) {
        frag_bt fb;
        wmma::load_matrix_sync(fb, b + (size_t)16 * n * ldb + 16 * kk, ldb);
        wmma::mma_sync(acc, fa[kk], fb, acc);
      }
      wmma::store_matrix_sync(c + 16 * n, acc, ldc, wmma::mem_row_major);
    }
  } else {
#pragma unroll
    for (int n = 0; n < NB; n++) {
      frag_acc acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < KB; kk++) {
        frag_a fa;
        frag_bt fb;
        wmma::load_matrix_sync(fa, a + 16 * kk, lda);
        wmma::load_matrix_sync(fb, b + (size_t)16 * n * ldb + 16 * kk, ldb);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(c + 16 * n, acc, ldc, wmma::mem_row_major);
    }
  }
}

/* acc[NB] += a[16][16 KB] b, b a row-major [16 KB][16 NB] array. The value
 * products P V, P^T dO, dS^T Q, dS K. */
template <int KB, int NB>
__device__ __forceinline__ void mma_ab(frag_acc *acc, const bf16 *a, int lda, const bf16 *b, int ldb) {
#pragma unroll
  for (int kk = 0; kk < KB; kk++) {
    frag_a fa;
    wmma::load_matrix_sync(fa, a + 16 * kk, lda);
#pragma unroll
    for (int n = 0; n < NB; n++) {
      frag_b fb;
      wmma::load_matrix_sync(fb, b + (size_t)16 * kk * ldb + 16 * n, ldb);
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

/* The column a lane visits at step c (0..31) of its half row: lane 2r does
 * columns 0..31 of row r, lane 2r+1 columns 32..63, each starting at its own
 * offset so that at every step the 32 lanes touch 32 different banks of a
 * [16][64] float array (unstaggered, all would hit the same bank). */
__device__ __forceinline__ int lane_column(int c, int lane) { return (lane % 2) * 32 + ((c + lane) & 31); }

/* One key tile of the online softmax for row r (lanes 2r and 2r+1, each
 * holding the row's m and l): reads the raw scores s[r][*], masks keys past
 * Nk and (causal) past query i, writes p = exp(scale s - m_new) as bf16 to
 * p_out[r][*], updates m and l, and returns alpha = exp(m_old - m_new), by
 * which the row's output must be rescaled. A row with no visible key so far
 * (m_new = -inf) gets p = 0 and alpha = 1: no exp(-inf - -inf) = NaN. */
__device__ float online_softmax_tile(const float *s, bf16 *p_out, int lane, int i, int k0, int Nk, float scale,
                                     int causal, float *m, float *l) {
  int r = lane / 2;
  const float *srow = s + r * TC_TILE;
  bf16 *prow = p_out + r * TC_TILE;
  float mx = -INFINITY;
  for (int c = 0; c < 32; c++) {
    int col = lane_column(c, lane), j = k0 + col;
    if (j < Nk && (!causal || j <= i)) mx = fmaxf(mx, scale * srow[col]);
  }
  mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, 1));
  float m_new = fmaxf(*m, mx);
  float m_use = m_new == -INFINITY ? 0.0f : m_new; /* all p are 0 then anyway */
  float sum = 0.0f;
  for (int c = 0; c < 32; c++) {
    int col = lane_column(c, lane), j = k0 + col;
    float p = j < Nk && (!causal || j <= i) ? expf(scale * srow[col] - m_use) : 0.0f;
    prow[col] = __float2bfloat16_rn(p);
    sum += p;
  }
  sum += __shfl_xor_sync(FULL_MASK, sum, 1);
  float alpha = m_new == -INFINITY ? 1.0f : expf(*m - m_new); /* 0 on the first visible tile */
  *l = *l * alpha + sum;
  *m = m_new;
  return alpha;
}

/* ---------------------------------------------------------------- forward */

template <int DP>
__global__ void __launch_bounds__(TC_THREADS)
    attention_tc_forward_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int H, int Nq,
                                int Nk, int D, float scale, int causal) {
  typedef forward_layout<DP> L;
  extern __shared__ __align__(128) unsigned char smem[];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int b = blockIdx.y / H, h = blockIdx.y % H, HD = H * D, q0 = blockIdx.x * TC_ROWS;
  size_t q_head = (size_t)b * Nq * HD + (size_t)h * D, kv_head = (size_t)b * Nk * HD + (size_t)h * D;
  bf16 *Qs = (bf16 *)(smem + L::q), *Ks = (bf16 *)(smem + L::k), *Vs = (bf16 *)(smem + L::v);
  unsigned char *mine = smem + L::warps + warp * L::per_warp;
  float *S = (float *)(mine + L::s), *O = (float *)(mine + L::o), *row_factor = (float *)(mine + L::row);
  bf16 *P = (bf16 *)(mine + L::p);
  const bf16 *Qw = Qs + 16 * warp * DP;

  load_tile<DP>(Qs, q, q_head, q0, Nq, D, HD);
  for (int e = lane; e < 16 * DP; e += 32) O[e] = 0.0f;
  int r = lane / 2, i = q0 + 16 * warp + r; /* this lane's row */
  float m = -INFINITY, l = 0.0f;

  /* Keys that any row of the block may see (causal: up to its last row). */
  int last_row = min(Nq - 1, q0 + TC_ROWS - 1);
  int kv_end = causal ? min(Nk, last_row + 1) : Nk;
  for (int k0 = 0; k0 < kv_end; k0 += TC_TILE) {
    __syncthreads(); /* every warp is done with the previous K, V tiles */
    load_tile<DP>(Ks, k, kv_head, k0, Nk, D, HD);
    load_tile<DP>(Vs, v, kv_head, k0, Nk, D, HD);
    __syncthreads();
    mma_abt<DP / 16, TC_TILE / 16>(S, TC_TILE, Qw, DP, Ks, DP);
    __syncwarp();
    float alpha = online_softmax_tile(S, P, lane, i, k0, Nk, scale, causal, &m, &l);
    if (lane % 2 == 0) row_factor[r] = alpha;
    __syncwarp();
    for (int e = lane; e < 16 * DP; e += 32) O[e] *= row_factor[e / DP];
    __syncwarp();
    frag_acc acc[DP / 16];
#pragma unroll
    for (int n = 0; n < DP / 16; n++) wmma::load_matrix_sync(acc[n], O + 16 * n, DP, wmma::mem_row_major);
    mma_ab<TC_TILE / 16, DP / 16>(acc, P, TC_TILE, Vs, DP);
#pragma unroll
    for (int n = 0; n < DP / 16; n++) wmma::store_matrix_sync(O + 16 * n, acc[n], DP, wmma::mem_row_major);
    __syncwarp();
  }

  /* out = O / l, lse = m + log l. l = 0 only when a row sees no key at all
   * (Nk = 0): out 0 and lse -inf rather than NaN. */
  if (lane % 2 == 0) row_factor[r] = l > 0.0f ? 1.0f / l : 0.0f;
  __syncwarp();
  for (int e = lane; e < 16 * D; e += 32) {
    int rr = e / D, d = e % D, ii = q0 + 16 * warp + rr;
    if (ii < Nq) out[q_head + (size_t)ii * HD + d] = __float2bfloat16_rn(O[rr * DP + d] * row_factor[rr]);
  }
  if (lane % 2 == 0 && i < Nq) lse[((size_t)b * H + h) * Nq + i] = l > 0.0f ? m + logf(l) : -INFINITY;
}

/* ---------------------------------------------------------------- backward */

/* dk, dv by key rows: per query tile, S^T = K Q^T, P^T = exp(scale S^T -
 * lse), dP^T = V dO^T, dS^T = P^T (dP^T - delta); dV += P^T dO, dK += dS^T Q;
 * at the end dv += dV, dk += scale dK.
 *
 * PARTS says which: DKV_V (dv), DKV_K (dk) or both. Both at once while
 * DP <= DKV_FUSED_MAX_DP; wider heads run the kernel twice, once per part,
 * each keeping DP/2 accumulator registers per thread instead of DP (dK and
 * dV together need 160 at DP = 160, and ptxas spills past DP = 96): the dv
 * pass skips dP^T and dS^T, the dk pass the P^T dO product, so the two cost
 * 5 products where the fused kernel costs 4. */
#define DKV_V 1
#define DKV_K 2
#define DKV_FUSED_MAX_DP 96
template <int DP, int PARTS>
__global__ void __launch_bounds__(TC_THREADS)
    attention_tc_dkv_kernel(bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                            const float *lse, const float *delta, int H, int Nq, int Nk, int D, float scale,
                            int causal) {
  constexpr bool WANT_V = (PARTS & DKV_V) != 0, WANT_K = (PARTS & DKV_K) != 0;
  typedef dkv_layout<DP> L;
  extern __shared__ __align__(128) unsigned char smem[];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int b = blockIdx.y / H, h = blockIdx.y % H, HD = H * D, k0 = blockIdx.x * TC_ROWS;
  size_t q_head = (size_t)b * Nq * HD + (size_t)h * D, kv_head = (size_t)b * Nk * HD + (size_t)h * D;
  const float *head_lse = lse + ((size_t)b * H + h) * Nq, *head_delta = delta + ((size_t)b * H + h) * Nq;
  bf16 *Kb = (bf16 *)(smem + L::k), *Vb = (bf16 *)(smem + L::v);
  bf16 *Qt = (bf16 *)(smem + L::q), *DOt = (bf16 *)(smem + L::dout);
  float *lse_t = (float *)(smem + L::lse), *delta_t = (float *)(smem + L::delta);
  unsigned char *mine = smem + L::warps + warp * L::per_warp;
  float *St = (float *)(mine + L::s), *dPt = (float *)(mine + L::dp);
  bf16 *Pt = (bf16 *)(mine + L::p), *dSt = (bf16 *)(mine + L::ds);

  load_tile<DP>(Kb, k, kv_head, k0, Nk, D, HD);
  if (WANT_K) load_tile<DP>(Vb, v, kv_head, k0, Nk, D, HD);
  const bf16 *Kw = Kb + 16 * warp * DP, *Vw = Vb + 16 * warp * DP;
  frag_acc dK[WANT_K ? DP / 16 : 1], dV[WANT_V ? DP / 16 : 1];
#pragma unroll
  for (int n = 0; n < DP / 16; n++) {
    if (WANT_K) wmma::fill_fragment(dK[WANT_K ? n : 0], 0.0f);
    if (WANT_V) wmma::fill_fragment(dV[WANT_V ? n : 0], 0.0f);
  }
  int r = lane / 2, j = k0 + 16 * warp + r; /* this lane's key */

  /* Causal: query i sees key j only when i >= j, so queries before the
   * block's first key contribute nothing (k0 is a multiple of the tile). */
  for (int t0 = causal ? k0 : 0; t0 < Nq; t0 += TC_TILE) {
    __syncthreads(); /* every warp is done with the previous tiles */
    load_tile<DP>(Qt, q, q_head, t0, Nq, D, HD);
    load_tile<DP>(DOt, dout, q_head, t0, Nq, D, HD);
    for (int c = threadIdx.x; c < TC_TILE; c += blockDim.x) {
      int i = t0 + c;
      lse_t[c] = i < Nq ? head_lse[i] : 0.0f;
      delta_t[c] = i < Nq ? head_delta[i] : 0.0f;
    }
    __syncthreads();
    mma_abt<DP / 16, TC_TILE / 16>(St, TC_TILE, Kw, DP, Qt, DP);
    if constexpr (WANT_K) mma_abt<DP / 16, TC_TILE / 16>(dPt, TC_TILE, Vw, DP, DOt, DP);
    __syncwarp();
    for (int c = 0; c < 32; c++) {
      int col = lane_column(c, lane), i = t0 + col, at = r * TC_TILE + col;
      float p = 0.0f, ds = 0.0f;
      if (j < Nk && i < Nq && (!causal || j <= i)) {
        p = expf(scale * St[at] - lse_t[col]);
        if (WANT_K) ds = p * (dPt[at] - delta_t[col]);
      }
      if (WANT_V) Pt[at] = __float2bfloat16_rn(p);
      if (WANT_K) dSt[at] = __float2bfloat16_rn(ds);
    }
    __syncwarp();
    if constexpr (WANT_V) mma_ab<TC_TILE / 16, DP / 16>(dV, Pt, TC_TILE, DOt, DP);
    if constexpr (WANT_K) mma_ab<TC_TILE / 16, DP / 16>(dK, dSt, TC_TILE, Qt, DP);
    __syncwarp(); /* the fragments are read before the next tile rewrites P^T, dS^T */
  }

  /* Through the warp's score arrays (free now) to the accumulation, each
   * element read, added in float32 and rounded once by one lane. A [16][64]
   * array holds at most 64 columns: wider heads go in passes of OC = 64
   * columns (DP <= 64: one pass of all DP columns, with ldm DP). */
  constexpr int OC = out_cols(DP);
#pragma unroll
  for (int c0 = 0; c0 < DP; c0 += OC) {
#pragma unroll
    for (int n = 0; n < OC / 16 && c0 / 16 + n < DP / 16; n++) {
      if (WANT_K) wmma::store_matrix_sync(St + 16 * n, dK[WANT_K ? c0 / 16 + n : 0], OC, wmma::mem_row_major);
      if (WANT_V) wmma::store_matrix_sync(dPt + 16 * n, dV[WANT_V ? c0 / 16 + n : 0], OC, wmma::mem_row_major);
    }
    __syncwarp();
    int w = min(OC, D - c0); /* >= 1: DP - 16 < D */
    for (int e = lane; e < 16 * w; e += 32) {
      int rr = e / w, d = e % w, jj = k0 + 16 * warp + rr;
      if (jj >= Nk) continue;
      size_t at = kv_head + (size_t)jj * HD + c0 + d;
      if (WANT_V && dv) dv[at] = __float2bfloat16_rn(__bfloat162float(dv[at]) + dPt[rr * OC + d]);
      if (WANT_K && dk) dk[at] = __float2bfloat16_rn(__bfloat162float(dk[at]) + scale * St[rr * OC + d]);
    }
    __syncwarp(); /* read before the next pass overwrites */
  }
}

/* dq by query rows: per key tile, S = Q K^T, dP = dO V^T, dS = exp(scale S -
 * lse) (dP - delta); dQ += dS K; at the end dq += scale dQ. */
template <int DP>
__global__ void __launch_bounds__(TC_THREADS)
    attention_tc_dq_kernel(bf16 *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                           const float *lse, const float *delta, int H, int Nq, int Nk, int D, float scale,
                           int causal) {
  typedef dq_layout<DP> L;
  extern __shared__ __align__(128) unsigned char smem[];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int b = blockIdx.y / H, h = blockIdx.y % H, HD = H * D, q0 = blockIdx.x * TC_ROWS;
  size_t q_head = (size_t)b * Nq * HD + (size_t)h * D, kv_head = (size_t)b * Nk * HD + (size_t)h * D;
  bf16 *Qb = (bf16 *)(smem + L::q), *DOb = (bf16 *)(smem + L::dout);
  bf16 *Kt = (bf16 *)(smem + L::k), *Vt = (bf16 *)(smem + L::v);
  unsigned char *mine = smem + L::warps + warp * L::per_warp;
  float *S = (float *)(mine + L::s), *dP = (float *)(mine + L::dp);
  bf16 *dS = (bf16 *)(mine + L::ds);

  load_tile<DP>(Qb, q, q_head, q0, Nq, D, HD);
  load_tile<DP>(DOb, dout, q_head, q0, Nq, D, HD);
  const bf16 *Qw = Qb + 16 * warp * DP, *DOw = DOb + 16 * warp * DP;
  int r = lane / 2, i = q0 + 16 * warp + r; /* this lane's query */
  float row_lse = 0.0f, row_delta = 0.0f;
  if (i < Nq) {
    row_lse = lse[((size_t)b * H + h) * Nq + i];
    row_delta = delta[((size_t)b * H + h) * Nq + i];
  }
  frag_acc dQ[DP / 16];
#pragma unroll
  for (int n = 0; n < DP / 16; n++) wmma::fill_fragment(dQ[n], 0.0f);

  int last_row = min(Nq - 1, q0 + TC_ROWS - 1);
  int kv_end = causal ? min(Nk, last_row + 1) : Nk;
  for (int k0 = 0; k0 < kv_end; k0 += TC_TILE) {
    __syncthreads();
    load_tile<DP>(Kt, k, kv_head, k0, Nk, D, HD);
    load_tile<DP>(Vt, v, kv_head, k0, Nk, D, HD);
    __syncthreads();
    mma_abt<DP / 16, TC_TILE / 16>(S, TC_TILE, Qw, DP, Kt, DP);
    mma_abt<DP / 16, TC_TILE / 16>(dP, TC_TILE, DOw, DP, Vt, DP);
    __syncwarp();
    for (int c = 0; c < 32; c++) {
      int col = lane_column(c, lane), j = k0 + col, at = r * TC_TILE + col;
      float ds = 0.0f;
      if (i < Nq && j < Nk && (!causal || j <= i)) ds = expf(scale * S[at] - row_lse) * (dP[at] - row_delta);
      dS[at] = __float2bfloat16_rn(ds);
    }
    __syncwarp();
    mma_ab<TC_TILE / 16, DP / 16>(dQ, dS, TC_TILE, Kt, DP);
    __syncwarp();
  }

  /* Through S in passes of OC columns, as in the dk/dv kernel. */
  constexpr int OC = out_cols(DP);
#pragma unroll
  for (int c0 = 0; c0 < DP; c0 += OC) {
#pragma unroll
    for (int n = 0; n < OC / 16 && c0 / 16 + n < DP / 16; n++)
      wmma::store_matrix_sync(S + 16 * n, dQ[c0 / 16 + n], OC, wmma::mem_row_major);
    __syncwarp();
    int w = min(OC, D - c0);
    for (int e = lane; e < 16 * w; e += 32) {
      int rr = e / w, d = e % w, ii = q0 + 16 * warp + rr;
      if (ii >= Nq) continue;
      size_t at = q_head + (size_t)ii * HD + c0 + d;
      dq[at] = __float2bfloat16_rn(__bfloat162float(dq[at]) + scale * S[rr * OC + d]);
    }
    __syncwarp();
  }
}

/* ------------------------------------------------------------- launches */

template <int DP>
static void forward_dp(kn_cuda_ctx *ctx, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B,
                       int H, int Nq, int Nk, int D, float scale, int causal) {
  size_t shared = forward_layout<DP>::bytes;
  if (!kn_cuda_allow_shared(ctx, attention_tc_forward_kernel<DP>, shared, "attention (tensor cores) shared memory"))
    return;
  dim3 grid((Nq + TC_ROWS - 1) / TC_ROWS, B * H);
  attention_tc_forward_kernel<DP>
      <<<grid, TC_THREADS, shared, kn_stream(ctx)>>>(out, lse, q, k, v, H, Nq, Nk, D, scale, causal);
  kn_cuda_launched(ctx, "attention forward (tensor cores)");
}

template <int DP, int PARTS>
static void dkv_dp(kn_cuda_ctx *ctx, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q, const bf16 *k,
                   const bf16 *v, const float *lse, const float *delta, int B, int H, int Nq, int Nk, int D,
                   float scale, int causal) {
  size_t shared = dkv_layout<DP>::bytes;
  if (!kn_cuda_allow_shared(ctx, attention_tc_dkv_kernel<DP, PARTS>, shared, "attention (tensor cores) shared memory"))
    return;
  dim3 grid((Nk + TC_ROWS - 1) / TC_ROWS, B * H);
  attention_tc_dkv_kernel<DP, PARTS><<<grid, TC_THREADS, shared, kn_stream(ctx)>>>(dk, dv, dout, q, k, v, lse, delta,
                                                                                  H, Nq, Nk, D, scale, causal);
  kn_cuda_launched(ctx, "attention dk/dv (tensor cores)");
}

template <int DP>
static void backward_dp(kn_cuda_ctx *ctx, bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q,
                        const bf16 *k, const bf16 *v, const float *lse, const float *delta, int B, int H, int Nq,
                        int Nk, int D, float scale, int causal) {
  if (dq) {
    size_t shared = dq_layout<DP>::bytes;
    if (!kn_cuda_allow_shared(ctx, attention_tc_dq_kernel<DP>, shared, "attention (tensor cores) shared memory"))
      return;
    dim3 grid((Nq + TC_ROWS - 1) / TC_ROWS, B * H);
    attention_tc_dq_kernel<DP>
        <<<grid, TC_THREADS, shared, kn_stream(ctx)>>>(dq, dout, q, k, v, lse, delta, H, Nq, Nk, D, scale, causal);
    kn_cuda_launched(ctx, "attention dq (tensor cores)");
  }
  if ((dk || dv) && Nk > 0) {
    if constexpr (DP <= DKV_FUSED_MAX_DP) {
      dkv_dp<DP, DKV_V | DKV_K>(ctx, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal);
    } else {
      if (dv) dkv_dp<DP, DKV_V>(ctx, NULL, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal);
      if (dk) dkv_dp<DP, DKV_K>(ctx, dk, NULL, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal);
    }
  }
}

void kn_cuda_attention_tc_forward(kn_cuda_ctx *ctx, bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                  const bf16 *v, int B, int H, int Nq, int Nk, int D, float scale, int causal) {
  switch ((D + 15) / 16) { /* DP = D rounded up to 16 */
  case 1: forward_dp<16>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 2: forward_dp<32>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 3: forward_dp<48>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 4: forward_dp<64>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 5: forward_dp<80>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 6: forward_dp<96>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 7: forward_dp<112>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 8: forward_dp<128>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 9: forward_dp<144>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  case 10: forward_dp<160>(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal); break;
  default: kn_cuda_fail(ctx, "attention (tensor cores)", "head size outside 1..KN_CUDA_ATTENTION_TC_MAX_D");
  }
}

void kn_cuda_attention_tc_backward(kn_cuda_ctx *ctx, bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q,
                                   const bf16 *k, const bf16 *v, const float *lse, const float *delta, int B, int H,
                                   int Nq, int Nk, int D, float scale, int causal) {
  switch ((D + 15) / 16) {
  case 1: backward_dp<16>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 2: backward_dp<32>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 3: backward_dp<48>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 4: backward_dp<64>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 5: backward_dp<80>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 6: backward_dp<96>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 7: backward_dp<112>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 8: backward_dp<128>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 9: backward_dp<144>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  case 10: backward_dp<160>(ctx, dq, dk, dv, dout, q, k, v, lse, delta, B, H, Nq, Nk, D, scale, causal); break;
  default: kn_cuda_fail(ctx, "attention (tensor cores)", "head size outside 1..KN_CUDA_ATTENTION_TC_MAX_D");
  }
}
