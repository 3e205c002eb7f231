/* Finite-difference gradient checks for the kernels, shared by the
 * test_kernels_* files (header-only: each test file is its own program).
 *
 * An op under test fills a gc_op: forward() writes `out` from the tensors,
 * backward() accumulates into each tensor's `grad` from `dout`. The scalar
 * checked is L = sum_i out_i * dout_i (accumulated in double), whose exact
 * gradient is what backward returns for that dout. Each tensor is perturbed
 * by +-h in float and (L+ - L-) / 2h, computed in double, is compared with
 * the analytic gradient: |num - ana| <= atol + rtol * max(|num|, |ana|),
 * with atol = atol_frac * max |ana| over the tensor. Backward is also run a
 * second time to check that it accumulates (the result must double). */
#ifndef DPO_TESTS_GRADCHECK_H
#define DPO_TESTS_GRADCHECK_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "kernels/kernels.h"
#include "tests/test.h"

#define GC_MAX_TENSORS 8

typedef struct {
  const char *name;
  float *x;      /* the value perturbed */
  float *grad;   /* where backward accumulates d L / d x */
  size_t n;
} gc_tensor;

typedef struct gc_op {
  void (*forward)(struct gc_op *op);
  void (*backward)(struct gc_op *op);
  kn_ctx *ctx;
  float *out;
  float *dout;
  size_t n_out;
  gc_tensor t[GC_MAX_TENSORS];
  int n_t;
} gc_op;

typedef struct {
  double h;          /* perturbation */
  double rtol;
  double atol_frac;  /* absolute tolerance as a fraction of max |grad| */
  size_t max_probe;  /* elements probed per tensor (evenly spaced), 0 = all */
} gc_tol;

static uint64_t gc_stream_counter = 1;

/* n floats of N(0, 1) * scale + shift from a fresh stream. */
static inline float *gc_randn(size_t n, float scale, float shift) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (!p) abort();
  dpo_rng_normal_fill(20240601, gc_stream_counter++, 0, p, n);
  for (size_t i = 0; i < n; i++) p[i] = p[i] * scale + shift;
  return p;
}

static inline float *gc_zeros(size_t n) {
  float *p = calloc(n ? n : 1, sizeof(float));
  if (!p) abort();
  return p;
}

static inline void gc_add_tensor(gc_op *op, const char *name, float *x, float *grad, size_t n) {
  if (op->n_t >= GC_MAX_TENSORS) abort();
  op->t[op->n_t++] = (gc_tensor){name, x, grad, n};
}

static inline double gc_loss(gc_op *op) {
  op->forward(op);
  double L = 0.0;
  for (size_t i = 0; i < op->n_out; i++) L += (double)op->out[i] * (double)op->dout[i];
  return L;
}

/* Runs the check; `label` names the op and shape in failure messages.
 * Returns the number of failing elements. */
static inline int gc_check(gc_op *op, const char *label, gc_tol tol) {
  int failures = 0;
  for (int t = 0; t < op->n_t; t++) memset(op->t[t].grad, 0, op->t[t].n * sizeof(float));
  op->forward(op);
  op->backward(op);
  float *first[GC_MAX_TENSORS];
  for (int t = 0; t < op->n_t; t++) {
    first[t] = malloc((op->t[t].n ? op->t[t].n : 1) * sizeof(float));
    if (!first[t]) abort();
    memcpy(first[t], op->t[t].grad, op->t[t].n * sizeof(float));
  }
  op->backward(op);
  for (int t = 0; t < op->n_t; t++) {
    gc_tensor *g = &op->t[t];
    double max_abs = 0.0;
    for (size_t i = 0; i < g->n; i++) max_abs = fmax(max_abs, fabs(first[t][i]));
    for (size_t i = 0; i < g->n; i++) {
      double want = 2.0 * first[t][i];
      if (fabs(g->grad[i] - want) > 1e-5 * (fabs(want) + max_abs)) {
        test_fail(__FILE__, __LINE__, "%s: d%s[%zu] does not accumulate: %.9g after two backwards, %.9g after one",
                  label, g->name, i, g->grad[i], first[t][i]);
        failures++;
        break;
      }
    }
    double atol = tol.atol_frac * max_abs + 1e-6;
    size_t probes = tol.max_probe && tol.max_probe < g->n ? tol.max_probe : g->n;
    int reported = 0;
    for (size_t p = 0; p < probes; p++) {
      size_t i = probes == g->n ? p : p * g->n / probes;
      float saved = g->x[i];
      g->x[i] = saved + (float)tol.h;
      double lp = gc_loss(op);
      g->x[i] = saved - (float)tol.h;
      double lm = gc_loss(op);
      g->x[i] = saved;
      /* The step actually taken in float, not the nominal h. */
      double step = ((double)(saved + (float)tol.h) - (double)(saved - (float)tol.h));
      double num = (lp - lm) / step;
      double ana = first[t][i];
      if (fabs(num - ana) > atol + tol.rtol * fmax(fabs(num), fabs(ana))) {
        if (reported++ < 5)
          test_fail(__FILE__, __LINE__, "%s: d%s[%zu] analytic %.7g vs numeric %.7g", label, g->name, i,
                    ana, num);
        failures++;
      }
    }
    free(first[t]);
  }
  op->forward(op); /* leave the outputs at the unperturbed point */
  return failures;
}

/* Largest |a - b| relative to max |b| (a scale-free error for comparisons). */
static inline double gc_max_rel_err(const float *a, const float *b, size_t n) {
  double max_b = 0.0, max_d = 0.0;
  for (size_t i = 0; i < n; i++) {
    max_b = fmax(max_b, fabs(b[i]));
    max_d = fmax(max_d, fabs((double)a[i] - (double)b[i]));
  }
  return max_d / (max_b > 0 ? max_b : 1.0);
}

#endif
