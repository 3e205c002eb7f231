/* The cluster bootstrap behind every report's ci95_bootstrap, checked
 * against a plain re-implementation written here:
 *  - with diverse prompts (one prompt per vote vector) the bootstrap draws
 *    prompts one by one, exactly as reports.h documents, so the interval must
 *    equal this file's resampling with the same Philox stream and numpy's
 *    linear quantile over a sorted array, to the last bits;
 *  - with few distinct vote vectors it draws multinomial counts instead,
 *    the same distribution, so its interval must agree with the plain
 *    resampling up to Monte Carlo error;
 *  - all three ties modes from one call equal one call per mode;
 *  - the binomial sampler behind the multinomial draws (inversion and BTRS)
 *    matches the exact binomial distribution (chi-square against GSL's pdf)
 *    and the multinomial one adds up and has the right means. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>

#include "reports/reports.h"
#include "tests/test.h"

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double linear_quantile(const double *sorted, int n, double q) {
  double h = (n - 1) * q;
  int lo = (int)floor(h);
  if (lo >= n - 1) return sorted[n - 1];
  return sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo]);
}

/* Plain percentile bootstrap of B's vote share (ties count against B),
 * drawing prompts one at a time from the given stream. */
static void plain_bootstrap(const stats_table *t, uint64_t seed, uint64_t stream, int resamples, double *lower,
                            double *upper) {
  double (*per)[3] = calloc((size_t)t->n_prompts, sizeof *per);
  double *rates = malloc(sizeof(double) * (size_t)resamples);
  for (int v = 0; v < t->n_votes; v++) per[t->item_prompt[t->votes[v].item]][t->votes[v].choice] += 1;
  dpo_rng rng;
  dpo_rng_init(&rng, seed, stream);
  for (int r = 0; r < resamples; r++) {
    double a = 0, b = 0, tie = 0;
    for (int i = 0; i < t->n_prompts; i++) {
      uint32_t p = dpo_rng_next_below(&rng, (uint32_t)t->n_prompts);
      a += per[p][0];
      b += per[p][1];
      tie += per[p][2];
    }
    rates[r] = b / (a + b + tie);
  }
  qsort(rates, (size_t)resamples, sizeof(double), compare_double);
  *lower = linear_quantile(rates, resamples, 0.025);
  *upper = linear_quantile(rates, resamples, 0.975);
  free(per);
  free(rates);
}

/* n_prompts prompts, one item each; prompt i gets votes from pattern(i). */
typedef struct {
  int *item_prompt;
  stats_vote *votes;
  stats_table table;
} built_table;

static void build(built_table *bt, int n_prompts, int diverse) {
  bt->item_prompt = malloc(sizeof(int) * (size_t)n_prompts);
  bt->votes = malloc(sizeof(stats_vote) * (size_t)n_prompts * 64);
  int n = 0;
  for (int i = 0; i < n_prompts; i++) {
    bt->item_prompt[i] = i;
    /* diverse: prompt i has i % 7 + 1 B votes, i / 7 % 5 A votes, i % 2 ties
     * (all distinct for i < 70). Otherwise one of three 5-vote patterns. */
    int nb = diverse ? i % 7 + 1 : (i % 3 == 0 ? 4 : i % 3 == 1 ? 2 : 3);
    int na = diverse ? i / 7 % 5 : 5 - nb - (i % 3 == 2);
    int nt = diverse ? i / 35 % 2 : (i % 3 == 2);
    for (int k = 0; k < nb + na + nt; k++) {
      stats_choice c = k < nb ? STATS_CHOICE_B : k < nb + na ? STATS_CHOICE_A : STATS_CHOICE_TIE;
      bt->votes[n++] = (stats_vote){i, k, c, k % 2};
    }
  }
  bt->table = (stats_table){n_prompts, 16, n_prompts, 5, bt->item_prompt, bt->votes, n};
}

static void free_built(built_table *bt) {
  free(bt->item_prompt);
  free(bt->votes);
}

static void test_per_prompt_path_is_exact(void) {
  built_table bt;
  build(&bt, 70, 1);
  stats_bootstrap_options opt = {4242, 2000, 0.95};
  stats_interval ci;
  int dropped;
  dpo_error err = {0};
  CHECK_INT(stats_vote_rate_bootstrap(&bt.table, STATS_TIES_AS_NOT_B, &opt, &ci, &dropped, &err), DPO_OK);
  double lo, hi;
  plain_bootstrap(&bt.table, 4242, dpo_rng_stream_id("stats.bootstrap", 0, 0), 2000, &lo, &hi);
  CHECK(ci.defined);
  CHECK_NEAR(ci.lower, lo, 1e-15);
  CHECK_NEAR(ci.upper, hi, 1e-15);
  CHECK(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
  free_built(&bt);
}

static void test_grouped_path_matches_distribution(void) {
  built_table bt;
  build(&bt, 3000, 0);
  stats_bootstrap_options opt = {7, STATS_BOOTSTRAP_RESAMPLES, 0.95};
  stats_interval ci;
  int dropped;
  dpo_error err = {0};
  CHECK_INT(stats_vote_rate_bootstrap(&bt.table, STATS_TIES_AS_NOT_B, &opt, &ci, &dropped, &err), DPO_OK);
  double lo, hi;
  plain_bootstrap(&bt.table, 99, 12345, STATS_BOOTSTRAP_RESAMPLES, &lo, &hi);
  /* Rate 0.6, 15,000 votes in 3,000 clusters: the interval is about +-0.01
   * wide; Monte Carlo error of its ends at 10,000 resamples is ~0.0003. */
  CHECK(ci.defined);
  CHECK_NEAR(ci.estimate, 0.6, 1e-12);
  CHECK_NEAR(ci.lower, lo, 0.0015);
  CHECK_NEAR(ci.upper, hi, 0.0015);
  CHECK(hi - lo > 0.01);
  /* Different seeds give different draws, the same interval. */
  stats_interval other;
  opt.seed = 8;
  CHECK_INT(stats_vote_rate_bootstrap(&bt.table, STATS_TIES_AS_NOT_B, &opt, &other, &dropped, &err), DPO_OK);
  CHECK(other.lower != ci.lower || other.upper != ci.upper);
  CHECK_NEAR(other.lower, ci.lower, 0.0015);
  free_built(&bt);
}

static void test_modes_at_once(void) {
  for (int diverse = 0; diverse <= 1; diverse++) {
    built_table bt;
    build(&bt, diverse ? 70 : 600, diverse);
    stats_bootstrap_options opt = {3, 500, 0.9};
    stats_interval all[STATS_N_TIES_MODES], one;
    int dropped_all[STATS_N_TIES_MODES], dropped;
    dpo_error err = {0};
    CHECK_INT(stats_vote_rate_bootstrap_modes(&bt.table, &opt, all, dropped_all, &err), DPO_OK);
    for (int m = 0; m < STATS_N_TIES_MODES; m++) {
      CHECK_INT(stats_vote_rate_bootstrap(&bt.table, (stats_ties)m, &opt, &one, &dropped, &err), DPO_OK);
      CHECK(memcmp(&one.lower, &all[m].lower, sizeof(double)) == 0);
      CHECK(memcmp(&one.upper, &all[m].upper, sizeof(double)) == 0);
      CHECK_INT(dropped, dropped_all[m]);
      CHECK(all[m].lower <= all[m].estimate && all[m].estimate <= all[m].upper);
    }
    /* ties split sits between ties against B and ties excluded */
    CHECK(all[STATS_TIES_AS_NOT_B].estimate <= all[STATS_TIES_SPLIT].estimate);
    free_built(&bt);
  }
  /* an unknown mode is a usage error */
  built_table bt;
  build(&bt, 10, 1);
  stats_bootstrap_options opt = {3, 10, 0.9};
  stats_interval ci;
  int dropped;
  dpo_error err = {0};
  CHECK_INT(stats_vote_rate_bootstrap(&bt.table, (stats_ties)7, &opt, &ci, &dropped, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "ties mode");
  free_built(&bt);
}

/* Chi-square goodness of fit of `draws` samples of Binomial(n, p) against
 * the exact pmf, pooling the tails so that every cell expects 5 or more. */
static double binomial_fit_p_value(unsigned int n, double p, int draws, uint64_t seed, double *mean) {
  unsigned int *counts = calloc(n + 1, sizeof(unsigned int));
  stats_sampler s;
  stats_sampler_init(&s, seed, 77);
  double sum = 0;
  for (int i = 0; i < draws; i++) {
    unsigned int k = stats_sample_binomial(&s, n, p);
    CHECK(k <= n);
    if (k > n) k = n;
    counts[k]++;
    sum += k;
  }
  *mean = sum / draws;
  /* expected counts, and what the cells from k on still expect */
  double *expect = malloc(sizeof(double) * (n + 2)), *tail = malloc(sizeof(double) * (n + 2));
  for (unsigned int k = 0; k <= n; k++) expect[k] = draws * gsl_ran_binomial_pdf(k, p, n);
  tail[n + 1] = 0;
  for (unsigned int k = n + 1; k-- > 0;) tail[k] = tail[k + 1] + expect[k];
  double chi2 = 0, observed = 0, expected = 0;
  int cells = 0;
  for (unsigned int k = 0; k <= n; k++) {
    observed += counts[k];
    expected += expect[k];
    /* close the cell when it expects 5 and what is left does too */
    if ((expected >= 5 && tail[k + 1] >= 5) || k == n) {
      chi2 += (observed - expected) * (observed - expected) / expected;
      cells++;
      observed = expected = 0;
    }
  }
  free(expect);
  free(tail);
  free(counts);
  return gsl_cdf_chisq_Q(chi2, cells > 1 ? cells - 1 : 1);
}

static void test_binomial_sampler(void) {
  /* inversion (n p' < 10), BTRS (n p' >= 10), p above 1/2 (drawn as failures) */
  struct { unsigned int n; double p; } cases[] = {{20, 0.3}, {30, 0.2}, {100, 0.1}, {1000, 0.37},
                                                  {5000, 0.9}, {66667, 0.048}, {7, 0.5}, {2, 0.99}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    double mean;
    double pv = binomial_fit_p_value(cases[c].n, cases[c].p, 200000, 1000 + c, &mean);
    double sd = sqrt(cases[c].n * cases[c].p * (1 - cases[c].p) / 200000);
    CHECK_NEAR(mean, cases[c].n * cases[c].p, 5 * sd + 1e-12);
    if (!(pv > 1e-5)) test_fail(__FILE__, __LINE__, "Binomial(%u, %g): chi-square p = %g", cases[c].n, cases[c].p, pv);
  }
  /* a bad BTRS constant or acceptance step shows up as a misfit here too */
  stats_sampler s;
  stats_sampler_init(&s, 1, 2);
  CHECK_INT((int)stats_sample_binomial(&s, 0, 0.5), 0);
  CHECK_INT((int)stats_sample_binomial(&s, 10, 0), 0);
  CHECK_INT((int)stats_sample_binomial(&s, 10, 1), 10);

  /* multinomial: sums to n, means n w_i / sum w, zero weights get nothing */
  double w[5] = {3, 0, 1, 6, 10};
  unsigned int counts[5];
  double totals[5] = {0, 0, 0, 0, 0};
  for (int r = 0; r < 20000; r++) {
    stats_sample_multinomial(&s, 5556, w, 5, counts);
    unsigned int sum = 0;
    for (int i = 0; i < 5; i++) {
      sum += counts[i];
      totals[i] += counts[i];
    }
    CHECK_INT((int)sum, 5556);
    CHECK_INT((int)counts[1], 0);
  }
  for (int i = 0; i < 5; i++) CHECK_NEAR(totals[i] / 20000, 5556 * w[i] / 20, 1.0);
  /* the same seed and stream, the same draws */
  stats_sampler a, b;
  stats_sampler_init(&a, 9, 9);
  stats_sampler_init(&b, 9, 9);
  for (int i = 0; i < 1000; i++) CHECK_INT((int)stats_sample_binomial(&a, 500, 0.3), (int)stats_sample_binomial(&b, 500, 0.3));
}

int main(void) {
  test_binomial_sampler();
  test_per_prompt_path_is_exact();
  test_grouped_path_matches_distribution();
  test_modes_at_once();
  return test_finish();
}
