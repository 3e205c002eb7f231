/* Items needed for a study: the normal approximation and an exact search
 * over the sign test's power curve. */
#include <math.h>

#include <gsl/gsl_cdf.h>

#include "reports/reports.h"

static int rejected(int k, int n, double alpha) {
  stats_value p = stats_binom_test(k, n, 0.5);
  return p.defined && p.value <= alpha;
}

/* Moves a critical value found for a nearby n to the one for n: the
 * p-value rises with k below n/2, so step up while k+1 is still rejected
 * and down while k is not. */
static int adjust_critical(int c, int n, double alpha) {
  if (c > (n - 1) / 2) c = (n - 1) / 2;
  while (c >= 0 && !rejected(c, n, alpha)) c--;
  while (2 * (c + 1) < n && rejected(c + 1, n, alpha)) c++;
  return c;
}

int stats_sign_test_critical(int n, double alpha) {
  if (n <= 0) return -1;
  return adjust_critical(0, n, alpha);
}

static double power_at(int n, int c, double p) {
  if (c < 0) return 0.0;
  double low = gsl_cdf_binomial_P((unsigned)c, p, (unsigned)n);                 /* K <= c */
  double high = gsl_cdf_binomial_Q((unsigned)(n - c - 1), p, (unsigned)n);      /* K >= n - c */
  return low + high;
}

double stats_sign_test_power(int n, double p, double alpha) {
  if (n <= 0 || !(p >= 0 && p <= 1)) return 0.0;
  return power_at(n, stats_sign_test_critical(n, alpha), p);
}

static double normal_approximation_n(double p, double alpha, double power) {
  double z_alpha = gsl_cdf_ugaussian_Pinv(1.0 - alpha / 2.0);
  double z_power = gsl_cdf_ugaussian_Pinv(power);
  double root = z_alpha * 0.5 + z_power * sqrt(p * (1.0 - p));
  double effect = p - 0.5;
  return root * root / (effect * effect);
}

int stats_power(double p, double alpha, double power, stats_power_result *out, dpo_error *err) {
  if (!(p > 0 && p < 1) || p == 0.5)
    return dpo_fail(err, DPO_ERR_USAGE, "power: the win rate to detect must be in (0, 1) and not 0.5, got %g", p);
  if (!(alpha > 0 && alpha < 1)) return dpo_fail(err, DPO_ERR_USAGE, "power: alpha must be in (0, 1), got %g", alpha);
  if (!(power > 0 && power < 1)) return dpo_fail(err, DPO_ERR_USAGE, "power: power must be in (0, 1), got %g", power);
  *out = (stats_power_result){0};
  out->p = p;
  out->alpha = alpha;
  out->power = power;
  out->exact_reason = "";
  out->normal_n_real = normal_approximation_n(p, alpha, power);
  out->normal_n = (int)fmin(ceil(out->normal_n_real), 1e9);

  double limit = 2.0 * out->normal_n + 100.0;
  if (limit > STATS_POWER_MAX_N) {
    out->exact_reason = "the exact search would pass 200000 items (the effect is too small)";
    return DPO_OK;
  }
  out->search_limit = (int)limit;
  int first = 0, last_failing = 0, c = -1;
  double first_power = 0, power_after_last_failing = 0, previous_failed = 1;
  for (int n = 1; n <= out->search_limit; n++) {
    c = adjust_critical(c, n, alpha);
    double pw = power_at(n, c, p);
    if (pw >= power) {
      if (!first) {
        first = n;
        first_power = pw;
      }
      if (previous_failed) power_after_last_failing = pw;
      previous_failed = 0;
    } else {
      last_failing = n;
      previous_failed = 1;
    }
  }
  if (!first || last_failing == out->search_limit) {
    out->exact_reason = "no n up to the search limit reaches the power";
    return DPO_OK;
  }
  out->exact_found = 1;
  out->exact_first_n = first;
  out->exact_first_power = first_power;
  out->exact_stable_n = last_failing + 1;
  out->exact_stable_power = power_after_last_failing;
  return DPO_OK;
}
