/* Philox4x32-10 on the device with core/rng.c's counter layout: counter =
 * (block lo, block hi, stream lo, stream hi), key = (seed lo, seed hi);
 * uniform i uses word i % 4 of block i / 4, normal i uses words 2(i % 2) and
 * 2(i % 2) + 1 of block i / 2 through Box-Muller in double. */
#include "kernels/cuda/cuda_internal.cuh"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

__device__ void philox_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    uint32_t hi0 = __umulhi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
    uint32_t hi1 = __umulhi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

__global__ void uniform_kernel(float *out, uint64_t seed, uint64_t stream, uint64_t offset, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t index = offset + i;
    uint32_t block[4];
    philox_block(seed, stream, index / 4, block);
    out[i] = (float)((block[index % 4] >> 8) + 1u) * (1.0f / 16777216.0f);
  }
}

__global__ void normal_kernel(float *out, uint64_t seed, uint64_t stream, uint64_t offset, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t index = offset + i;
    uint32_t block[4];
    philox_block(seed, stream, index / 2, block);
    int odd = (int)(index % 2);
    double u1 = ((double)block[2 * odd] + 1.0) * (1.0 / 4294967296.0);
    double u2 = ((double)block[2 * odd + 1] + 0.5) * (1.0 / 4294967296.0);
    out[i] = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
  }
}

void kn_cuda_rng_uniform_fill(kn_cuda_ctx *ctx, float *out, uint64_t seed, uint64_t stream, uint64_t offset,
                              size_t n) {
  if (n == 0) return;
  uniform_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(out, seed, stream, offset, n);
  kn_cuda_launched(ctx, "rng uniform");
}

void kn_cuda_rng_normal_fill(kn_cuda_ctx *ctx, float *out, uint64_t seed, uint64_t stream, uint64_t offset,
                             size_t n) {
  if (n == 0) return;
  normal_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(out, seed, stream, offset, n);
  kn_cuda_launched(ctx, "rng normal");
}
