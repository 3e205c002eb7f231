/* Undefined-aware values, and the two intervals for a proportion. */
#include <math.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>

#include "reports/reports.h"

stats_value stats_defined(double value) {
  stats_value v = {1, value, ""};
  return v;
}

stats_value stats_undefined(const char *reason) {
  stats_value v = {0, 0.0, reason};
  return v;
}

stats_interval stats_interval_undefined(const char *reason) {
  stats_interval v = {0, 0.0, 0.0, 0.0, reason};
  return v;
}

static stats_interval interval_of(double estimate, double lower, double upper) {
  stats_interval v = {1, estimate, lower, upper, ""};
  return v;
}

/* Shared argument checks; NULL when the proportion is usable. GSL aborts on
 * out-of-domain arguments, so nothing outside these ranges may reach it. */
static const char *proportion_problem(double x, double n, double confidence) {
  if (!(n > 0)) return "no observations";
  if (!(x >= 0 && x <= n)) return "successes outside 0..n";
  if (!(confidence > 0 && confidence < 1)) return "confidence level outside (0, 1)";
  return NULL;
}

stats_interval stats_wilson(double x, double n, double confidence) {
  const char *problem = proportion_problem(x, n, confidence);
  if (problem) return stats_interval_undefined(problem);
  double alpha = 1.0 - confidence;
  double z = gsl_cdf_ugaussian_Qinv(alpha / 2.0);
  double z2 = z * z;
  double q = x / n;
  double denom = 1.0 + z2 / n;
  double centre = (q + z2 / (2.0 * n)) / denom;
  double half = z * sqrt(q * (1.0 - q) / n + z2 / (4.0 * n * n)) / denom;
  return interval_of(q, centre - half, centre + half);
}

/* The p-quantile of Beta(a, b) by bisection on its CDF (upper: on 1 - CDF,
 * i.e. the point with p above it). Always converges; ~60-1100 halvings. */
static double beta_quantile_bisect(double p, double a, double b, int upper) {
  double lo = 0.0, hi = 1.0;
  for (int i = 0; i < 1100; i++) {
    double mid = 0.5 * (lo + hi);
    if (mid == lo || mid == hi) break;
    int below = upper ? gsl_cdf_beta_Q(mid, a, b) > p : gsl_cdf_beta_P(mid, a, b) < p;
    if (below) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/* GSL's beta inverse calls the error handler, which by default aborts the
 * process, when its iteration does not converge (it happens for some shape
 * parameters); the handler is off around the call and a failed answer is
 * replaced by bisection. */
static double beta_quantile(double p, double a, double b, int upper) {
  gsl_error_handler_t *saved = gsl_set_error_handler_off();
  double x = upper ? gsl_cdf_beta_Qinv(p, a, b) : gsl_cdf_beta_Pinv(p, a, b);
  if (!(x >= 0 && x <= 1)) x = beta_quantile_bisect(p, a, b, upper);
  gsl_set_error_handler(saved);
  return x;
}

stats_interval stats_clopper_pearson(double x, double n, double confidence) {
  const char *problem = proportion_problem(x, n, confidence);
  if (problem) return stats_interval_undefined(problem);
  double alpha_2 = (1.0 - confidence) / 2.0;
  double lower = x == 0 ? 0.0 : beta_quantile(alpha_2, x, n - x + 1.0, 0);
  double upper = x == n ? 1.0 : beta_quantile(alpha_2, x + 1.0, n - x, 1);
  return interval_of(x / n, lower, upper);
}
