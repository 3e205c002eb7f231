#include "core/core.h"

#include <math.h>

/* Philox4x32-10 constants from Random123 (philox.h). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_round(uint32_t ctr[4], const uint32_t key[2]) {
  uint64_t p0 = (uint64_t)PHILOX_M0 * ctr[0];
  uint64_t p1 = (uint64_t)PHILOX_M1 * ctr[2];
  uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  uint32_t c1 = ctr[1], c3 = ctr[3];
  ctr[0] = hi1 ^ c1 ^ key[0];
  ctr[1] = lo1;
  ctr[2] = hi0 ^ c3 ^ key[1];
  ctr[3] = lo0;
}

void dpo_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t ctr[4] = {counter[0], counter[1], counter[2], counter[3]};
  uint32_t k[2] = {key[0], key[1]};
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k[0] += PHILOX_W0;
      k[1] += PHILOX_W1;
    }
    philox_round(ctr, k);
  }
  for (int i = 0; i < 4; i++) out[i] = ctr[i];
}

static void rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
  uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  dpo_philox4x32(ctr, key, out);
}

uint32_t dpo_rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t out[4];
  rng_block(seed, stream, index / 4, out);
  return out[index % 4];
}

/* 24 random bits map to (0, 1] exactly in float. */
static float u32_to_uniform(uint32_t x) { return (float)((x >> 8) + 1u) * (1.0f / 16777216.0f); }

float dpo_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return u32_to_uniform(dpo_rng_u32(seed, stream, index));
}

void dpo_rng_uniform_fill(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n) {
  uint32_t block[4];
  uint64_t cached = UINT64_MAX;
  for (size_t i = 0; i < n; i++) {
    uint64_t index = offset + i;
    if (index / 4 != cached) {
      cached = index / 4;
      rng_block(seed, stream, cached, block);
    }
    out[i] = u32_to_uniform(block[index % 4]);
  }
}

/* Box-Muller in double, rounded once to float. Uniforms use 32 bits here (not
 * 24) so that the tails reach about 6.7 sigma. */
static float box_muller(uint32_t a, uint32_t b) {
  double u1 = ((double)a + 1.0) * (1.0 / 4294967296.0);
  double u2 = ((double)b + 0.5) * (1.0 / 4294967296.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

float dpo_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t block[4];
  rng_block(seed, stream, index / 2, block);
  int odd = (int)(index % 2);
  return box_muller(block[2 * odd], block[2 * odd + 1]);
}

void dpo_rng_normal_fill(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n) {
  uint32_t block[4];
  uint64_t cached = UINT64_MAX;
  for (size_t i = 0; i < n; i++) {
    uint64_t index = offset + i;
    if (index / 2 != cached) {
      cached = index / 2;
      rng_block(seed, stream, cached, block);
    }
    int odd = (int)(index % 2);
    out[i] = box_muller(block[2 * odd], block[2 * odd + 1]);
  }
}

uint64_t dpo_rng_stream_id(const char *name, uint64_t a, uint64_t b) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a 64-bit offset basis */
  const uint64_t prime = 1099511628211ull;
  for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++) {
    h ^= *p;
    h *= prime;
  }
  /* A separator so that ("ab", 1) and ("a", ...) cannot collide by concatenation. */
  h ^= 0xff;
  h *= prime;
  for (int i = 0; i < 8; i++) { h ^= (a >> (8 * i)) & 0xff; h *= prime; }
  for (int i = 0; i < 8; i++) { h ^= (b >> (8 * i)) & 0xff; h *= prime; }
  return h;
}

void dpo_rng_init(dpo_rng *rng, uint64_t seed, uint64_t stream) {
  rng->seed = seed;
  rng->stream = stream;
  rng->index = 0;
}

uint32_t dpo_rng_next_u32(dpo_rng *rng) { return dpo_rng_u32(rng->seed, rng->stream, rng->index++); }

float dpo_rng_next_uniform(dpo_rng *rng) { return u32_to_uniform(dpo_rng_next_u32(rng)); }

uint32_t dpo_rng_next_below(dpo_rng *rng, uint32_t n) {
  /* Rejection sampling: drop the top partial range so every residue is equally likely. */
  uint32_t threshold = (uint32_t)(-n) % n; /* 2^32 mod n: values below it are the biased tail */
  for (;;) {
    uint32_t x = dpo_rng_next_u32(rng);
    if (x >= threshold) return x % n;
  }
}

float dpo_rng_next_normal(dpo_rng *rng) {
  /* Sequential draws use their own counter space: normals from index 2k, 2k+1. */
  uint32_t a = dpo_rng_next_u32(rng);
  uint32_t b = dpo_rng_next_u32(rng);
  return box_muller(a, b);
}
