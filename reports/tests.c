/* Hypothesis tests: the exact binomial test as scipy computes it, the sign
 * test built on it, and Holm's correction across questions. */
#include <math.h>
#include <stdlib.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>

#include "reports/reports.h"

/* scipy's relative tolerance for "no more likely than the observed outcome":
 * without it, outcomes whose probability equals the observed one up to
 * rounding would fall on either side at random. */
#define BINOM_RELATIVE_TOLERANCE (1.0 + 1e-7)

static double binom_pmf(int k, int n, double p) { return gsl_ran_binomial_pdf((unsigned)k, p, (unsigned)n); }

/* P(K <= k); 0 for k < 0. */
static double binom_cdf(int k, int n, double p) {
  if (k < 0) return 0.0;
  if (k >= n) return 1.0;
  return gsl_cdf_binomial_P((unsigned)k, p, (unsigned)n);
}

/* P(K > k); 1 for k < 0. */
static double binom_sf(int k, int n, double p) {
  if (k < 0) return 1.0;
  if (k >= n) return 0.0;
  return gsl_cdf_binomial_Q((unsigned)k, p, (unsigned)n);
}

/* scipy's _binary_search_for_binom_tst: over lo..hi where f ascends, the i
 * with f(i) <= d < f(i+1) (lo - 1 when f(lo) > d). `sign` is +1 to search
 * the pmf, -1 to search its negation (the descending side of the mode). */
static int binom_search(int sign, double d, int lo, int hi, int n, double p) {
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    double value = sign * binom_pmf(mid, n, p);
    if (value < d) lo = mid + 1;
    else if (value > d) hi = mid - 1;
    else return mid;
  }
  return sign * binom_pmf(lo, n, p) <= d ? lo : lo - 1;
}

stats_value stats_binom_test(int k, int n, double p0) {
  if (n <= 0) return stats_undefined("no trials");
  if (k < 0 || k > n) return stats_undefined("successes outside 0..n");
  if (!(p0 >= 0 && p0 <= 1)) return stats_undefined("null proportion outside [0, 1]");
  double d = binom_pmf(k, n, p0);
  double mean = p0 * n;
  double p_value;
  if (k == mean) {
    p_value = 1.0;
  } else if (k < mean) {
    /* Outcomes above the mode as unlikely as k: from ix up to n. */
    int ix = binom_search(-1, -d * BINOM_RELATIVE_TOLERANCE, (int)ceil(mean), n, n, p0);
    int y = n - ix + (d * BINOM_RELATIVE_TOLERANCE == binom_pmf(ix, n, p0));
    p_value = binom_cdf(k, n, p0) + binom_sf(n - y, n, p0);
  } else {
    /* Outcomes below the mode as unlikely as k: from 0 up to ix. */
    int ix = binom_search(+1, d * BINOM_RELATIVE_TOLERANCE, 0, (int)floor(mean), n, p0);
    int y = ix + 1;
    p_value = binom_cdf(y - 1, n, p0) + binom_sf(k - 1, n, p0);
  }
  return stats_defined(p_value < 1.0 ? p_value : 1.0);
}

stats_value stats_sign_test(const stats_counts *counts) {
  int decisive = counts->a_wins + counts->b_wins;
  if (decisive == 0) return stats_undefined(counts->n_items == 0 ? "no items" : "no decisive items (all ties)");
  return stats_binom_test(counts->b_wins, decisive, 0.5);
}

/* ----------------------------------------------------------------- Holm */

typedef struct {
  double p;
  int index;
} indexed_p;

/* Ascending p, then original order: a stable sort, so results do not depend
 * on qsort's whims (tied p-values get the same adjusted value either way). */
static int compare_indexed_p(const void *a, const void *b) {
  const indexed_p *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

int stats_holm(const stats_value *p_values, int n, double alpha, stats_value *adjusted, int *reject,
               dpo_error *err) {
  if (n < 0) return dpo_fail(err, DPO_ERR_USAGE, "holm: negative number of p-values (%d)", n);
  indexed_p *sorted = malloc(sizeof(indexed_p) * (size_t)(n > 0 ? n : 1));
  if (!sorted) return dpo_fail(err, DPO_ERR_DATA, "holm: out of memory for %d p-values", n);
  int m = 0;
  for (int i = 0; i < n; i++) {
    reject[i] = 0;
    if (!p_values[i].defined) {
      adjusted[i] = stats_undefined(p_values[i].reason);
      continue;
    }
    if (!(p_values[i].value >= 0 && p_values[i].value <= 1)) {
      free(sorted);
      return dpo_fail(err, DPO_ERR_USAGE, "holm: p-value %d is %g, outside [0, 1]", i, p_values[i].value);
    }
    sorted[m].p = p_values[i].value;
    sorted[m].index = i;
    m++;
  }
  qsort(sorted, (size_t)m, sizeof(indexed_p), compare_indexed_p);
  double running_max = 0.0;
  int still_rejecting = 1;
  for (int j = 0; j < m; j++) {
    double factor = (double)(m - j);
    if (sorted[j].p > alpha / factor) still_rejecting = 0;
    double raw = sorted[j].p * factor;
    if (raw > running_max) running_max = raw;
    adjusted[sorted[j].index] = stats_defined(running_max < 1.0 ? running_max : 1.0);
    reject[sorted[j].index] = still_rejecting;
  }
  free(sorted);
  return DPO_OK;
}
