/* bf16 storage on the CPU: the host conversions (what the device's
 * __float2bfloat16_rn does) and the conversion ops of kernels.h. */
#include <string.h>

#include "kernels/cpu/cpu.h"

size_t kn_dtype_size(kn_dtype dtype) { return dtype == KN_BF16 ? sizeof(kn_bf16) : sizeof(float); }

const char *kn_dtype_name(kn_dtype dtype) { return dtype == KN_BF16 ? "bf16" : "float32"; }

kn_bf16 kn_bf16_from_float(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (kn_bf16)((bits >> 16) | 0x40u); /* quiet NaN */
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);                            /* to nearest even */
  return (kn_bf16)((bits + rounding) >> 16);
}

float kn_bf16_to_float(kn_bf16 x) {
  uint32_t bits = (uint32_t)x << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

void kn_cpu_to_bf16(kn_ctx *ctx, kn_bf16 *out, const float *inp, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) out[i] = kn_bf16_from_float(inp[i]);
}

void kn_cpu_from_bf16(kn_ctx *ctx, float *out, const kn_bf16 *inp, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) out[i] = kn_bf16_to_float(inp[i]);
}
