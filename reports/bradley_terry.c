/* Bradley-Terry scores across more than two arms: Hunter's MM fit, centred
 * log-strengths, and Wald intervals from the Fisher information. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_linalg.h>

#include "reports/reports.h"

#define BT_TOLERANCE 1e-12
#define BT_MAX_ITERATIONS 100000

/* Arms reachable from arm 0 following "i beat j" (transposed: "j beat i"). */
static int reaches_all(int k, const double *wins, int transposed, int *seen, int *stack) {
  memset(seen, 0, sizeof(int) * (size_t)k);
  int top = 0, count = 1;
  seen[0] = 1;
  stack[top++] = 0;
  while (top > 0) {
    int i = stack[--top];
    for (int j = 0; j < k; j++) {
      double w = transposed ? wins[j * k + i] : wins[i * k + j];
      if (j == i || seen[j] || !(w > 0)) continue;
      seen[j] = 1;
      count++;
      stack[top++] = j;
    }
  }
  return count == k;
}

/* The MLE exists iff every arm can reach every other through wins (Hunter
 * 2004, assumption 1): the directed beat graph is strongly connected. */
static int beat_graph_strongly_connected(int k, const double *wins, int *ok, dpo_error *err) {
  int *seen = malloc(sizeof(int) * (size_t)k), *stack = malloc(sizeof(int) * (size_t)k);
  if (!seen || !stack) {
    free(seen);
    free(stack);
    return dpo_fail(err, DPO_ERR_DATA, "bradley-terry: out of memory for %d arms", k);
  }
  *ok = reaches_all(k, wins, 0, seen, stack) && reaches_all(k, wins, 1, seen, stack);
  free(seen);
  free(stack);
  return DPO_OK;
}

/* One MM sweep (simultaneous update), then centring of log pi; returns the
 * largest change of a centred score. */
static double bt_mm_step(int k, const double *wins, double *score, double *next) {
  for (int i = 0; i < k; i++) {
    double won = 0, denom = 0;
    for (int j = 0; j < k; j++) {
      if (j == i) continue;
      double n_ij = wins[i * k + j] + wins[j * k + i];
      won += wins[i * k + j];
      if (n_ij > 0) denom += n_ij / (exp(score[i]) + exp(score[j]));
    }
    next[i] = log(won / denom);
  }
  double mean = 0;
  for (int i = 0; i < k; i++) mean += next[i] / k;
  double change = 0;
  for (int i = 0; i < k; i++) {
    next[i] -= mean;
    double d = fabs(next[i] - score[i]);
    if (d > change) change = d;
    score[i] = next[i];
  }
  return change;
}

/* Variances of the centred scores: diag of pinv(I) = (I + J/k)^-1 - J/k,
 * valid because I's null space is the constant vector (connected graph). */
static int bt_variances(int k, const double *wins, const double *score, double *variance, dpo_error *err) {
  gsl_matrix *info = gsl_matrix_alloc((size_t)k, (size_t)k);
  gsl_matrix *inverse = gsl_matrix_alloc((size_t)k, (size_t)k);
  gsl_permutation *perm = gsl_permutation_alloc((size_t)k);
  if (!info || !inverse || !perm) {
    if (info) gsl_matrix_free(info);
    if (inverse) gsl_matrix_free(inverse);
    if (perm) gsl_permutation_free(perm);
    return dpo_fail(err, DPO_ERR_DATA, "bradley-terry: out of memory for a %dx%d information matrix", k, k);
  }
  gsl_matrix_set_all(info, 1.0 / k);
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      if (i == j) continue;
      double n_ij = wins[i * k + j] + wins[j * k + i];
      double p_ij = 1.0 / (1.0 + exp(score[j] - score[i]));
      double w = n_ij * p_ij * (1.0 - p_ij);
      *gsl_matrix_ptr(info, (size_t)i, (size_t)j) -= w;
      *gsl_matrix_ptr(info, (size_t)i, (size_t)i) += w;
    }
  int sign = 0;
  gsl_linalg_LU_decomp(info, perm, &sign);
  gsl_linalg_LU_invert(info, perm, inverse);
  for (int i = 0; i < k; i++) variance[i] = gsl_matrix_get(inverse, (size_t)i, (size_t)i) - 1.0 / k;
  gsl_matrix_free(info);
  gsl_matrix_free(inverse);
  gsl_permutation_free(perm);
  return DPO_OK;
}

static int bt_check_input(int k, const double *wins, double confidence, dpo_error *err) {
  if (k < 1) return dpo_fail(err, DPO_ERR_USAGE, "bradley-terry: need at least one arm, got %d", k);
  if (!(confidence > 0 && confidence < 1))
    return dpo_fail(err, DPO_ERR_USAGE, "bradley-terry: confidence %g outside (0, 1)", confidence);
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++)
      if (!(wins[i * k + j] >= 0) || !isfinite(wins[i * k + j]))
        return dpo_fail(err, DPO_ERR_USAGE, "bradley-terry: wins[%d][%d] is %g, expected a finite count >= 0", i, j,
                        wins[i * k + j]);
  return DPO_OK;
}

int stats_bradley_terry(int k, const double *wins, double confidence, stats_interval *scores, stats_bt_fit *fit,
                        dpo_error *err) {
  int rc = bt_check_input(k, wins, confidence, err);
  if (rc != DPO_OK) return rc;
  *fit = (stats_bt_fit){k, 0, 0};
  if (k < 2) {
    for (int i = 0; i < k; i++) scores[i] = stats_interval_undefined("fewer than two arms");
    return DPO_OK;
  }
  int connected = 0;
  rc = beat_graph_strongly_connected(k, wins, &connected, err);
  if (rc != DPO_OK) return rc;
  if (!connected) {
    for (int i = 0; i < k; i++)
      scores[i] = stats_interval_undefined("some arms never beat the others, so their scores are unbounded");
    return DPO_OK;
  }
  double *score = calloc((size_t)k * 3, sizeof(double));
  if (!score) return dpo_fail(err, DPO_ERR_DATA, "bradley-terry: out of memory for %d arms", k);
  double *next = score + k, *variance = score + 2 * k;
  while (fit->iterations < BT_MAX_ITERATIONS) {
    fit->iterations++;
    if (bt_mm_step(k, wins, score, next) < BT_TOLERANCE) {
      fit->converged = 1;
      break;
    }
  }
  rc = bt_variances(k, wins, score, variance, err);
  if (rc == DPO_OK) {
    double z = gsl_cdf_ugaussian_Qinv((1.0 - confidence) / 2.0);
    for (int i = 0; i < k; i++) {
      double half = z * sqrt(variance[i] > 0 ? variance[i] : 0.0);
      scores[i] = (stats_interval){1, score[i], score[i] - half, score[i] + half, ""};
      if (!fit->converged) scores[i] = stats_interval_undefined("the Bradley-Terry fit did not converge");
    }
  }
  free(score);
  return rc;
}
