/* The training step's ops that keep the loss, clipping and optimizer in the
 * backend's memory (kernels.h, "training step"). AdamW and Adafactor here
 * are the trainer's optimizer itself (trainer/optim.c calls them, on a CPU
 * context of its own when the state is in host memory); the DPO loss repeats
 * trainer/loss.c's arithmetic in its order, so that the device-resident
 * step run on a CPU context (the CPU-as-device harness) gives the host
 * step's numbers. The CUDA kernels (kernels/cuda/optim.cu, loss.cu) match
 * these. */
#include <math.h>

#include "kernels/cpu/cpu.h"

/* --------------------------------------------------------------- loss */

static double logsigmoid(double x) { return fmin(x, 0.0) - log1p(exp(-fabs(x))); }

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

void kn_cpu_dpo_loss(kn_ctx *ctx, float *loss, float *grad_model_w, float *grad_model_l, float *stats,
                     const float *model_w, const float *model_l, const float *ref_w, const float *ref_l,
                     const float *label, int n, double beta) {
  (void)ctx;
  if (n <= 0) return;
  double total = 0.0, reward_w = 0.0, reward_l = 0.0, margin = 0.0;
  int n_strict = 0, n_correct = 0;
  for (int i = 0; i < n; i++) {
    double p = label ? label[i] : 1.0;
    double model_diff = (double)model_w[i] - (double)model_l[i];
    double ref_diff = (double)ref_w[i] - (double)ref_l[i];
    double inside = -0.5 * beta * (model_diff - ref_diff);
    double loss_i = -p * logsigmoid(inside);
    if (p < 1.0) loss_i -= (1.0 - p) * logsigmoid(-inside);
    total += loss_i;
    double dinside = (sigmoid(inside) - p) / n;
    if (grad_model_w) grad_model_w[i] = (float)(dinside * -0.5 * beta);
    if (grad_model_l) grad_model_l[i] = (float)(dinside * 0.5 * beta);
    int tie = label && label[i] > 0.0f && label[i] < 1.0f;
    if (!tie) {
      n_strict++;
      if (inside > 0) n_correct++;
    }
    reward_w += -0.5 * beta * ((double)model_w[i] - (double)ref_w[i]);
    reward_l += -0.5 * beta * ((double)model_l[i] - (double)ref_l[i]);
    margin += inside;
  }
  loss[0] = (float)(total / n);
  if (stats) {
    stats[0] = n_strict > 0 ? (float)((double)n_correct / n_strict) : 0.0f;
    stats[1] = (float)(reward_w / n);
    stats[2] = (float)(reward_l / n);
    stats[3] = (float)(margin / n);
  }
}

/* ----------------------------------------------------------- clipping */

void kn_cpu_sum_squares(kn_ctx *ctx, float *out, const float *inp, size_t n) {
  out[0] = (float)kn_cpu_chunked_sum(ctx, inp, NULL, n, 1);
}

void kn_cpu_clip_coefficient(kn_ctx *ctx, float *out, const float *sum_squares, int n, double max_norm) {
  (void)ctx;
  double total = 0.0;
  for (int i = 0; i < n; i++) total += sum_squares[i];
  double norm = sqrt(total);
  out[0] = (float)norm;
  out[1] = 1.0f;
  if (max_norm > 0) {
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) out[1] = (float)coef;
  }
}

void kn_cpu_scale_by(kn_ctx *ctx, float *x, const float *factor, size_t n) {
  float c = factor[0];
  if (c == 1.0f) return;
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) x[i] *= c;
}

/* -------------------------------------------------------------- AdamW */

void kn_cpu_adamw_update(kn_ctx *ctx, float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                         size_t n, int64_t step, double lr, double beta1, double beta2, double eps,
                         double weight_decay) {
  float decay = (float)(1.0 - lr * weight_decay);
  float w = (float)(1.0 - beta1);   /* torch's lerp weight */
  float b2 = (float)beta2, one_minus_b2 = (float)(1.0 - beta2);
  double bias_correction1 = 1.0 - pow(beta1, (double)step);
  double bias_correction2 = 1.0 - pow(beta2, (double)step);
  float step_size = (float)(lr / bias_correction1);
  float bc2_sqrt = (float)sqrt(bias_correction2);
  float eps_f = (float)eps;
  int decay_on = weight_decay != 0;
  long long count = (long long)n;
#pragma omp parallel for num_threads(kn_team(ctx, n)) schedule(static)
  for (long long i = 0; i < count; i++) {
    float g = grad[i];
    if (decay_on) param[i] *= decay;
    /* torch.lerp: start + w (end - start) for w < 0.5, else end - (end - start)(1 - w). */
    float m = exp_avg[i];
    m = w < 0.5f ? m + w * (g - m) : g - (g - m) * (1.0f - w);
    exp_avg[i] = m;
    float v = exp_avg_sq[i] * b2 + one_minus_b2 * (g * g);
    exp_avg_sq[i] = v;
    float denom = sqrtf(v) / bc2_sqrt + eps_f;
    param[i] += -step_size * (m / denom);
  }
}

/* ------------------------------------------------------- multi-tensor */

/* The per-tensor ops in a loop, with what kernels/dispatch.c adds to them
 * (AdamW's bf16 copy), so that the bits are theirs. */

void kn_cpu_multi_sum_squares(kn_ctx *ctx, float *sum_squares, int count, const size_t *numel, float *const *grad) {
  for (int i = 0; i < count; i++) kn_cpu_sum_squares(ctx, sum_squares + i, grad[i], numel[i]);
}

void kn_cpu_multi_scale_by(kn_ctx *ctx, int count, const size_t *numel, float *const *grad, const float *factor) {
  for (int i = 0; i < count; i++) kn_cpu_scale_by(ctx, grad[i], factor, numel[i]);
}

void kn_cpu_multi_adamw_update(kn_ctx *ctx, int count, const size_t *numel, float *const *param,
                               kn_bf16 *const *param_bf16, float *const *grad, float *const *exp_avg,
                               float *const *exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
                               double eps, double weight_decay) {
  for (int i = 0; i < count; i++) {
    kn_cpu_adamw_update(ctx, param[i], grad[i], exp_avg[i], exp_avg_sq[i], numel[i], step, lr, beta1, beta2, eps,
                        weight_decay);
    if (param_bf16 && param_bf16[i]) kn_cpu_to_bf16(ctx, param_bf16[i], param[i], numel[i]);
  }
}

/* ---------------------------------------------------------- Adafactor */

/* u = grad / sqrt(second-moment estimate), updating the moments. The loops
 * and their double sums are sequential, in the order of the torch
 * reference the golden tests compare with. */
static void adafactor_direction(float *u, const float *grad, float *exp_avg_sq, float *row_avg, float *col_avg,
                                int64_t outer, int64_t rows, int64_t cols, float eps1, float keep, float add) {
  if (!row_avg) {
    int64_t n = outer * rows * cols;
    for (int64_t i = 0; i < n; i++) {
      float g = grad[i];
      float v = exp_avg_sq[i] * keep + (g * g + eps1) * add;
      exp_avg_sq[i] = v;
      u[i] = g / sqrtf(v);
    }
    return;
  }
  for (int64_t o = 0; o < outer; o++) {
    const float *g = grad + o * rows * cols;
    float *row = row_avg + o * rows;
    float *col = col_avg + o * cols;
    float *uo = u + o * rows * cols;
    for (int64_t r = 0; r < rows; r++) {
      double sum = 0;
      for (int64_t k = 0; k < cols; k++) sum += g[r * cols + k] * g[r * cols + k] + eps1;
      row[r] = row[r] * keep + (float)(sum / cols) * add;
    }
    for (int64_t k = 0; k < cols; k++) {
      double sum = 0;
      for (int64_t r = 0; r < rows; r++) sum += g[r * cols + k] * g[r * cols + k] + eps1;
      col[k] = col[k] * keep + (float)(sum / rows) * add;
    }
    double row_sum = 0;
    for (int64_t r = 0; r < rows; r++) row_sum += row[r];
    float row_mean = (float)(row_sum / rows);
    for (int64_t r = 0; r < rows; r++) {
      float r_factor = 1.0f / sqrtf(row[r] / row_mean);
      for (int64_t k = 0; k < cols; k++) {
        float c_factor = 1.0f / sqrtf(col[k]);
        uo[r * cols + k] = (r_factor * c_factor) * g[r * cols + k];
      }
    }
  }
}

void kn_cpu_adafactor_update(kn_ctx *ctx, float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                             float *exp_avg_sq_row, float *exp_avg_sq_col, int64_t outer, int64_t rows,
                             int64_t cols, int64_t step, double lr, double eps1, double clip_threshold,
                             double decay_rate, double beta1, double weight_decay) {
  int64_t n = outer * rows * cols;
  if (n <= 0) return;
  float *u = kn_ctx_scratch(ctx, (size_t)n * sizeof(float));
  if (!u) return;
  float beta2t = (float)(1.0 - pow((double)step, decay_rate));
  adafactor_direction(u, grad, exp_avg_sq, exp_avg_sq_row, exp_avg_sq_col, outer, rows, cols, (float)eps1, beta2t,
                      1.0f - beta2t);
  /* Update clipping: divide by max(1, RMS(u) / threshold), then scale by lr. */
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += (double)u[i] * u[i];
  double clip = sqrt(sum) / sqrt((double)n) / clip_threshold;
  float divisor = (float)(clip > 1.0 ? clip : 1.0);
  float lr_f = (float)lr;
  for (int64_t i = 0; i < n; i++) u[i] = (u[i] / divisor) * lr_f;
  if (beta1 > 0) {
    float b1 = (float)beta1, one_minus_b1 = (float)(1.0 - beta1);
    for (int64_t i = 0; i < n; i++) {
      exp_avg[i] = exp_avg[i] * b1 + u[i] * one_minus_b1;
      u[i] = exp_avg[i];
    }
  }
  if (weight_decay != 0) {
    float alpha = (float)(-weight_decay * lr);
    for (int64_t i = 0; i < n; i++) param[i] += param[i] * alpha;
  }
  for (int64_t i = 0; i < n; i++) param[i] += -u[i];
}
