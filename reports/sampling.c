/* Binomial and multinomial draws from a Philox stream, for the grouped
 * cluster bootstrap (see stats_vote_rate_bootstrap). A million-vote report
 * draws about eight million binomials; GSL's BTPE spent 40% of the report's
 * time there, Hormann's BTRS does the same job in a fraction of it. */
#include <math.h>

#include "reports/reports.h"

void stats_sampler_init(stats_sampler *s, uint64_t seed, uint64_t stream) {
  s->seed = seed;
  s->stream = stream;
  s->index = 0;
  s->cached_block = UINT64_MAX;
}

/* Element i of the stream: word i % 4 of block i / 4 (dpo_rng_u32's layout),
 * each block computed once for its four words. */
static uint32_t next_word(stats_sampler *s) {
  uint64_t index = s->index++, block = index / 4;
  if (block != s->cached_block) {
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)s->stream, (uint32_t)(s->stream >> 32)};
    uint32_t key[2] = {(uint32_t)s->seed, (uint32_t)(s->seed >> 32)};
    dpo_philox4x32(ctr, key, s->block);
    s->cached_block = block;
  }
  return s->block[index % 4];
}

/* Uniform in (0, 1), never 0 or 1, so its logarithm is finite. */
static double next_uniform(stats_sampler *s) { return ((double)next_word(s) + 0.5) * (1.0 / 4294967296.0); }

/* BINV (Kachitvichyanukul & Schmeiser 1988): inversion by sequential search
 * from 0, for n p < 10 (p <= 1/2), where it takes a few steps. */
static unsigned int binomial_inversion(stats_sampler *s, unsigned int n, double p) {
  double q = 1.0 - p, ratio = p / q, a = (n + 1.0) * ratio, q_n = pow(q, n);
  for (;;) {
    double u = next_uniform(s), r = q_n;
    unsigned int k = 0;
    while (u > r) {
      u -= r;
      k++;
      if (k > n) break;   /* rounding left u above the total: draw again */
      r *= a / k - ratio;
    }
    if (k <= n) return k;
  }
}

/* log k! by lgamma_r (the reentrant lgamma: reports draw from several
 * threads). */
static double log_factorial(double k) {
  int sign;
  return lgamma_r(k + 1.0, &sign);
}

/* BTRS (Hormann 1993, "The generation of binomial random variates",
 * J. Statist. Comput. Simul. 46): transformed rejection with a squeeze, for
 * n p >= 10 (p <= 1/2). Most draws end in the squeeze; only the others need
 * the exact log probability ratio to the mode m, so its constant h is
 * computed on first use. */
static unsigned int binomial_btrs(stats_sampler *s, unsigned int n, double p) {
  double q = 1.0 - p, spq = sqrt(n * p * q);
  double b = 1.15 + 2.53 * spq, a = -0.0873 + 0.0248 * b + 0.01 * p, c = n * p + 0.5;
  double v_r = 0.92 - 4.2 / b;
  double alpha = 0, lpq = 0, m = 0, h = 0;
  int have_h = 0;
  for (;;) {
    double u = next_uniform(s) - 0.5, v = next_uniform(s);
    double us = 0.5 - fabs(u);
    double k = floor((2.0 * a / us + b) * u + c);
    if (k < 0 || k > n) continue;
    if (us >= 0.07 && v <= v_r) return (unsigned int)k;
    if (!have_h) {
      alpha = (2.83 + 5.1 / b) * spq;
      lpq = log(p / q);
      m = floor((n + 1.0) * p);
      h = log_factorial(m) + log_factorial(n - m);
      have_h = 1;
    }
    v = log(v * alpha / (a / (us * us) + b));
    if (v <= h - log_factorial(k) - log_factorial(n - k) + (k - m) * lpq) return (unsigned int)k;
  }
}

unsigned int stats_sample_binomial(stats_sampler *s, unsigned int n, double p) {
  if (n == 0 || !(p > 0)) return 0;
  if (p >= 1) return n;
  /* Both methods want p <= 1/2: draw failures instead of successes. */
  int flip = p > 0.5;
  double small_p = flip ? 1.0 - p : p;
  unsigned int k = n * small_p < 10 ? binomial_inversion(s, n, small_p) : binomial_btrs(s, n, small_p);
  return flip ? n - k : k;
}

void stats_sample_multinomial(stats_sampler *s, unsigned int n, const double *weights, int k, unsigned int *counts) {
  double rest = 0;
  for (int i = 0; i < k; i++) rest += weights[i] > 0 ? weights[i] : 0;
  unsigned int left = n;
  /* Conditional binomials: category i given what categories < i took. */
  for (int i = 0; i < k; i++) {
    double w = weights[i] > 0 ? weights[i] : 0;
    if (left == 0 || w == 0) {
      counts[i] = 0;
    } else if (i == k - 1 || w >= rest) {
      counts[i] = left;
    } else {
      counts[i] = stats_sample_binomial(s, left, w / rest);
    }
    left -= counts[i];
    rest -= w;
  }
}
