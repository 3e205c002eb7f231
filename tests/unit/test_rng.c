/* Philox4x32-10 against Random123's known-answer vectors, and the properties
 * the project relies on: values depend only on (seed, stream, index), fills
 * agree with single draws, normals have the right moments. */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "tests/test.h"

static void test_known_answers(void) {
  /* Random123 tests/kat_vectors, the three "philox4x32 10" lines. */
  static const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                     {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                                     {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
  static const uint32_t key[3][2] = {{0, 0}, {0xffffffff, 0xffffffff}, {0xa4093822, 0x299f31d0}};
  static const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                      {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                      {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
  for (int v = 0; v < 3; v++) {
    uint32_t out[4];
    dpo_philox4x32(ctr[v], key[v], out);
    for (int i = 0; i < 4; i++) CHECK_INT(out[i], want[v][i]);
  }
}

static void test_counter_layout(void) {
  /* Element i of stream s is word i%4 of block i/4 with counter (b, 0, s, 0). */
  uint32_t c[4] = {5, 0, 7, 0}, k[2] = {42, 0}, out[4];
  dpo_philox4x32(c, k, out);
  for (int w = 0; w < 4; w++) CHECK_INT(dpo_rng_u32(42, 7, 5 * 4 + w), out[w]);
}

static void test_fills_match_single_draws(void) {
  float fill[37];
  dpo_rng_normal_fill(123, 9, 3, fill, 37);
  for (int i = 0; i < 37; i++) CHECK(fill[i] == dpo_rng_normal(123, 9, 3 + (uint64_t)i));
  dpo_rng_uniform_fill(123, 9, 5, fill, 37);
  for (int i = 0; i < 37; i++) {
    CHECK(fill[i] == dpo_rng_uniform(123, 9, 5 + (uint64_t)i));
    CHECK(fill[i] > 0.0f && fill[i] <= 1.0f);
  }
  /* Different seeds and streams give different values. */
  CHECK(dpo_rng_normal(1, 0, 0) != dpo_rng_normal(2, 0, 0));
  CHECK(dpo_rng_normal(1, 0, 0) != dpo_rng_normal(1, 1, 0));
}

static void test_normal_moments(void) {
  enum { N = 200000 };
  static float x[N];
  dpo_rng_normal_fill(7, 1, 0, x, N);
  double mean = 0, var = 0, skew = 0, kurt = 0;
  for (int i = 0; i < N; i++) mean += x[i];
  mean /= N;
  for (int i = 0; i < N; i++) {
    double d = x[i] - mean;
    var += d * d;
    skew += d * d * d;
    kurt += d * d * d * d;
  }
  var /= N;
  skew /= N * pow(var, 1.5);
  kurt /= N * var * var;
  /* Standard errors at N=2e5: mean 0.0022, var 0.0032, skew 0.0055, kurtosis 0.011. */
  CHECK_NEAR(mean, 0.0, 0.012);
  CHECK_NEAR(var, 1.0, 0.016);
  CHECK_NEAR(skew, 0.0, 0.03);
  CHECK_NEAR(kurt, 3.0, 0.06);
}

static void test_sequential(void) {
  dpo_rng a, b;
  dpo_rng_init(&a, 99, 3);
  dpo_rng_init(&b, 99, 3);
  for (int i = 0; i < 10; i++) CHECK_INT(dpo_rng_next_u32(&a), dpo_rng_u32(99, 3, (uint64_t)i));
  int counts[7] = {0};
  for (int i = 0; i < 70000; i++) {
    uint32_t r = dpo_rng_next_below(&b, 7);
    CHECK(r < 7);
    if (r < 7) counts[r]++;
  }
  for (int i = 0; i < 7; i++) CHECK_NEAR(counts[i], 10000, 500);
  /* Stream ids differ for different names and indices, and are stable. */
  CHECK(dpo_rng_stream_id("parti:1", 0, 0) != dpo_rng_stream_id("parti:1", 1, 0));
  CHECK(dpo_rng_stream_id("parti:1", 0, 0) != dpo_rng_stream_id("parti:2", 0, 0));
  CHECK(dpo_rng_stream_id("parti:1", 0, 0) == dpo_rng_stream_id("parti:1", 0, 0));
}

int main(void) {
  test_known_answers();
  test_counter_layout();
  test_fills_match_single_draws();
  test_normal_moments();
  test_sequential();
  return test_finish();
}
