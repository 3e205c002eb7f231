/* f32 <-> f16 / bf16 conversions by bit manipulation, so that the result does
 * not depend on the compiler's support for _Float16 or on the FPU's rounding
 * mode. Rounding is to nearest, ties to even, like IEEE 754 and numpy; NaNs
 * stay NaNs (quietened, sign and top payload bits kept), infinities stay
 * infinities, and subnormals are produced and consumed exactly. */
#include "core/core.h"

#include <string.h>

static uint32_t float_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return x;
}

static float bits_float(uint32_t x) {
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

/* Shifts m right by `shift` bits (1..31), rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t m, int shift) {
  uint32_t kept = m >> shift;
  uint32_t rest = m & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1))) kept++;
  return kept;
}

float dpo_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_float(sign);
  /* Subnormal f16: normalise, since every f16 subnormal is a normal f32. */
  uint32_t e = 113;
  while (!(mantissa & 0x400)) {
    mantissa <<= 1;
    e--;
  }
  return bits_float(sign | (e << 23) | ((mantissa & 0x3ff) << 13));
}

uint16_t dpo_f32_to_f16(float f) {
  uint32_t x = float_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t exponent = (x >> 23) & 0xff;
  uint32_t mantissa = x & 0x7fffff;
  if (exponent == 0xff) {
    if (mantissa) return (uint16_t)(sign | 0x7e00 | (mantissa >> 13));   /* quiet NaN */
    return (uint16_t)(sign | 0x7c00);
  }
  /* 2^16 and above is beyond 65504 + half an ulp: infinity. */
  if (exponent >= 143) return (uint16_t)(sign | 0x7c00);
  if (exponent >= 113) {
    /* Normal f16. A carry out of the mantissa bumps the exponent, which is
     * the right answer, up to and including rounding 65520 to infinity. */
    uint32_t rebased = ((exponent - 112) << 23) | mantissa;
    return (uint16_t)(sign | shift_round_even(rebased, 13));
  }
  /* Below 2^-25 everything rounds to zero (2^-25 itself is a tie to even 0). */
  if (exponent < 102) return sign;
  /* Subnormal f16: units of 2^-24. value = (1.m) * 2^(e-127), so the count
   * of units is (mantissa | implicit bit) >> (126 - e), rounded. Rounding up
   * to 0x400 gives the smallest normal, which is again the right encoding. */
  return (uint16_t)(sign | shift_round_even(mantissa | 0x800000, 126 - (int)exponent));
}

float dpo_bf16_to_f32(uint16_t b) {
  return bits_float((uint32_t)b << 16);
}

uint16_t dpo_f32_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x0040);   /* quiet NaN */
  /* bf16 is the top half of f32: round the low half to nearest even. Overflow
   * carries into the exponent and lands on infinity, as it should. */
  uint32_t rounding_bias = 0x7fff + ((x >> 16) & 1);
  return (uint16_t)((x + rounding_bias) >> 16);
}
