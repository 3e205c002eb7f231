/* Noise schedules and samplers, step for step as diffusers 0.31 computes them.
 *
 * diffusers does this arithmetic on float32 tensors (0-dim tensors for the
 * per-step coefficients), with the timestep grids made by numpy in float64.
 * The code below keeps those precisions and the order of operations, so the
 * trajectories agree to float32 rounding (the golden test states the
 * tolerances); timesteps agree exactly. Two details worth knowing:
 *   - torch.cumprod on float32 accumulates in double: so do we;
 *   - np.arange with a float step fills start + i * ((start + step) - start),
 *     which is not always start + i * step: trailing spacing copies that. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"
#include "trainer/trainer_internal.h"

/* ------------------------------------------------------- numpy / torch */

/* torch.linspace(start, end, n, dtype=float32), element i (CPU, scalar path). */
static float torch_linspace_f32(float start, float end, int n, int i) {
  if (n == 1) return start;
  float step = (end - start) / (float)(n - 1);
  return i < n / 2 ? start + step * (float)i : end - step * (float)(n - 1 - i);
}

/* np.linspace(start, stop, num) element i, in float64. */
static double np_linspace(double start, double stop, int num, int i) {
  if (num > 1 && i == num - 1) return stop;
  if (num <= 1) return start;
  double step = (stop - start) / (double)(num - 1);
  return (double)i * step + start;
}

/* np.arange(start, stop, step) for a float step: its length and element i. */
static int np_arange_len(double start, double stop, double step) {
  double len = ceil((stop - start) / step);
  return len > 0 ? (int)len : 0;
}

static double np_arange_at(double start, double step, int i) {
  if (i == 0) return start;
  double second = start + step;
  if (i == 1) return second;
  return start + (double)i * (second - start);
}

/* np.interp(x, arange(n), fp) with fp in float32, computed in float64. */
static double np_interp_index(double x, const float *fp, int n) {
  if (x <= 0) return fp[0];
  if (x >= n - 1) return fp[n - 1];
  int j = (int)floor(x);
  double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
  return slope * (x - (double)j) + (double)fp[j];
}

/* ------------------------------------------------------------ training */

static int make_betas(dpo_scheduler *s, dpo_error *err) {
  const dpo_scheduler_config *c = &s->cfg;
  int n = c->num_train_timesteps;
  s->betas = malloc((size_t)n * sizeof *s->betas);
  s->alphas_cumprod = malloc((size_t)n * sizeof *s->alphas_cumprod);
  if (!s->betas || !s->alphas_cumprod) return dpo_fail(err, DPO_ERR_DATA, "out of memory for the noise schedule");
  for (int i = 0; i < n; i++) {
    if (!strcmp(c->beta_schedule, "linear")) {
      s->betas[i] = torch_linspace_f32((float)c->beta_start, (float)c->beta_end, n, i);
    } else if (!strcmp(c->beta_schedule, "scaled_linear")) {
      float b = torch_linspace_f32((float)pow(c->beta_start, 0.5), (float)pow(c->beta_end, 0.5), n, i);
      s->betas[i] = b * b;
    } else {   /* squaredcos_cap_v2: betas_for_alpha_bar, cosine, max_beta 0.999 */
      double t1 = (double)i / n, t2 = (double)(i + 1) / n;
      double a1 = pow(cos((t1 + 0.008) / 1.008 * M_PI / 2), 2), a2 = pow(cos((t2 + 0.008) / 1.008 * M_PI / 2), 2);
      s->betas[i] = (float)fmin(1 - a2 / a1, 0.999);
    }
  }
  double prod = 1.0;
  for (int i = 0; i < n; i++) {
    prod *= (double)(1.0f - s->betas[i]);
    s->alphas_cumprod[i] = (float)prod;
  }
  s->final_alpha_cumprod = c->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
  return DPO_OK;
}

int dpo_scheduler_init(dpo_scheduler *s, const dpo_scheduler_config *cfg, dpo_error *err) {
  memset(s, 0, sizeof *s);
  if (scheduler_config_check(cfg, err)) return DPO_ERR_DATA;
  s->cfg = *cfg;
  s->kind = s->cfg.kind;
  s->prediction = strcmp(s->cfg.prediction_type, "v_prediction") == 0 ? DPO_PRED_V : DPO_PRED_EPSILON;
  s->num_train_timesteps = s->cfg.num_train_timesteps;
  s->step_index = -1;
  s->begin_index = -1;
  s->init_noise_sigma = 1.0f;
  int rc = make_betas(s, err);
  if (rc) dpo_scheduler_free(s);
  return rc;
}

static void free_state(dpo_scheduler *s) {
  for (int i = 0; i < 4; i++) {
    free(s->ets[i]);
    s->ets[i] = NULL;
  }
  for (int i = 0; i < 2; i++) {
    free(s->model_outputs[i]);
    s->model_outputs[i] = NULL;
  }
  free(s->cur_sample);
  s->cur_sample = NULL;
  s->numel = 0;
  s->n_ets = 0;
  s->lower_order_nums = 0;
}

void dpo_scheduler_free(dpo_scheduler *s) {
  free(s->betas);
  free(s->alphas_cumprod);
  free(s->timesteps);
  free(s->sigmas);
  free_state(s);
  s->betas = s->alphas_cumprod = s->timesteps = s->sigmas = NULL;
}

static int check_train_t(const dpo_scheduler *s, int t, dpo_error *err) {
  if (t < 0 || t >= s->num_train_timesteps)
    return dpo_fail(err, DPO_ERR_USAGE, "timestep %d is outside [0, %d)", t, s->num_train_timesteps);
  return DPO_OK;
}

/* t as a training timestep index, or -1 when it is not an integer in range
 * (checked before any conversion: casting an out-of-range float is UB). */
static int train_timestep(const dpo_scheduler *s, float t) {
  if (!(t >= 0.0f && t < (float)s->num_train_timesteps) || floorf(t) != t) return -1;
  return (int)t;
}

int dpo_scheduler_get_velocity(const dpo_scheduler *s, const float *x0, const float *noise, int t, float *out,
                               size_t n, dpo_error *err) {
  if (check_train_t(s, t, err)) return DPO_ERR_USAGE;
  float a = s->alphas_cumprod[t];
  float sqrt_a = sqrtf(a), sqrt_1m = sqrtf(1.0f - a);
  for (size_t i = 0; i < n; i++) out[i] = sqrt_a * noise[i] - sqrt_1m * x0[i];
  return DPO_OK;
}

/* ----------------------------------------------------------- timesteps */

/* The N-step grid as diffusers' set_timesteps computes it, in order of use. */
static int ddim_like_timesteps(const dpo_scheduler *s, int steps, double *out) {
  const dpo_scheduler_config *c = &s->cfg;
  int N = c->num_train_timesteps;
  if (!strcmp(c->timestep_spacing, "linspace")) {
    for (int i = 0; i < steps; i++) out[steps - 1 - i] = rint(np_linspace(0, N - 1, steps, i));
  } else if (!strcmp(c->timestep_spacing, "leading")) {
    int ratio = N / steps;
    for (int i = 0; i < steps; i++) out[steps - 1 - i] = (double)i * ratio + c->steps_offset;
  } else {
    double ratio = (double)N / steps;
    int len = np_arange_len(N, 0, -ratio);
    if (len != steps) return -1;
    for (int i = 0; i < steps; i++) out[i] = rint(np_arange_at(N, -ratio, i)) - 1;
  }
  return 0;
}

static int pndm_timesteps(const dpo_scheduler *s, int steps, double *out) {
  /* _timesteps ascending, then PLMS order: t[:-1], t[-2], t[-1], reversed */
  double *asc = malloc((size_t)steps * sizeof *asc);
  if (!asc) return -1;
  const dpo_scheduler_config *c = &s->cfg;
  int N = c->num_train_timesteps;
  if (!strcmp(c->timestep_spacing, "linspace")) {
    for (int i = 0; i < steps; i++) asc[i] = rint(np_linspace(0, N - 1, steps, i));
  } else if (!strcmp(c->timestep_spacing, "leading")) {
    int ratio = N / steps;
    for (int i = 0; i < steps; i++) asc[i] = (double)i * ratio + c->steps_offset;
  } else {
    double ratio = (double)N / steps;
    if (np_arange_len(N, 0, -ratio) != steps) {
      free(asc);
      return -1;
    }
    for (int i = 0; i < steps; i++) asc[steps - 1 - i] = rint(np_arange_at(N, -ratio, i)) - 1;
  }
  int k = 0;
  double *plms = malloc((size_t)(steps + 1) * sizeof *plms);
  if (!plms) {
    free(asc);
    return -1;
  }
  for (int i = 0; i < steps - 1; i++) plms[k++] = asc[i];
  if (steps >= 2) plms[k++] = asc[steps - 2];
  plms[k++] = asc[steps - 1];
  for (int i = 0; i < k; i++) out[i] = plms[k - 1 - i];
  free(asc);
  free(plms);
  return k;
}

static int euler_timesteps(const dpo_scheduler *s, int steps, double *out) {
  const dpo_scheduler_config *c = &s->cfg;
  int N = c->num_train_timesteps;
  if (!strcmp(c->timestep_spacing, "linspace")) {
    for (int i = 0; i < steps; i++) out[steps - 1 - i] = (float)np_linspace(0, N - 1, steps, i);
  } else if (!strcmp(c->timestep_spacing, "leading")) {
    int ratio = N / steps;
    for (int i = 0; i < steps; i++) out[steps - 1 - i] = (float)((double)i * ratio) + (float)c->steps_offset;
  } else {
    double ratio = (double)N / steps;
    if (np_arange_len(N, 0, -ratio) != steps) return -1;
    for (int i = 0; i < steps; i++) out[i] = (float)rint(np_arange_at(N, -ratio, i)) - 1.0f;
  }
  return 0;
}

/* DPM-Solver: steps + 1 points, the last dropped; lambda_min_clipped can cut
 * the top of the schedule. */
static int dpm_timesteps(const dpo_scheduler *s, int steps, double *out) {
  const dpo_scheduler_config *c = &s->cfg;
  int N = c->num_train_timesteps;
  /* searchsorted(flip(lambda_t), lambda_min_clipped): lambdas below the clip */
  int clipped = 0;
  for (int i = N - 1; i >= 0; i--) {
    float a = s->alphas_cumprod[i];
    float lambda = logf(sqrtf(a)) - logf(sqrtf(1.0f - a));
    if ((double)lambda < c->lambda_min_clipped) clipped++;
    else break;
  }
  int last = N - clipped;
  if (!strcmp(c->timestep_spacing, "linspace")) {
    for (int i = 0; i < steps; i++) out[i] = rint(np_linspace(0, last - 1, steps + 1, steps - i));
  } else if (!strcmp(c->timestep_spacing, "leading")) {
    int ratio = last / (steps + 1);
    for (int i = 0; i < steps; i++) out[i] = (double)(steps - i) * ratio + c->steps_offset;
  } else {
    double ratio = (double)N / steps;
    int len = np_arange_len(last, 0, -ratio);
    if (len != steps) return -1;
    for (int i = 0; i < steps; i++) out[i] = rint(np_arange_at(last, -ratio, i)) - 1;
  }
  return 0;
}

/* sigma_t = sqrt((1 - abar_t) / abar_t), float32 as diffusers. */
static float train_sigma(const dpo_scheduler *s, int t) {
  float a = s->alphas_cumprod[t];
  return sqrtf((1.0f - a) / a);
}

static int make_sigmas(dpo_scheduler *s) {
  int N = s->num_train_timesteps;
  float *train = malloc((size_t)N * sizeof *train);
  s->sigmas = malloc((size_t)(s->n_timesteps + 1) * sizeof *s->sigmas);
  if (!train || !s->sigmas) {
    free(train);
    return -1;
  }
  for (int t = 0; t < N; t++) train[t] = train_sigma(s, t);
  for (int i = 0; i < s->n_timesteps; i++) s->sigmas[i] = (float)np_interp_index(s->timesteps[i], train, N);
  s->sigmas[s->n_timesteps] = strcmp(s->cfg.final_sigmas_type, "sigma_min") == 0 ? train[0] : 0.0f;
  free(train);
  return 0;
}

int dpo_scheduler_set_timesteps(dpo_scheduler *s, int steps, dpo_error *err) {
  const char *cls = dpo_scheduler_kind_name(s->kind);
  if (s->kind == DPO_SCHED_DDPM)
    return dpo_fail(err, DPO_ERR_USAGE, "DDPMScheduler is the training schedule; sample with DDIM, PNDM, Euler or "
                    "DPM-Solver++");
  if (steps < 1 || steps > s->num_train_timesteps)
    return dpo_fail(err, DPO_ERR_USAGE, "%s: %d inference steps: expected 1..%d", cls, steps,
                    s->num_train_timesteps);
  free(s->timesteps);
  free(s->sigmas);
  s->timesteps = NULL;
  s->sigmas = NULL;
  free_state(s);
  double *grid = malloc((size_t)(steps + 1) * sizeof *grid);
  if (!grid) return dpo_fail(err, DPO_ERR_DATA, "out of memory for timesteps");
  int n = steps, bad = 0;
  switch (s->kind) {
    case DPO_SCHED_DDIM: bad = ddim_like_timesteps(s, steps, grid); break;
    case DPO_SCHED_PNDM: n = pndm_timesteps(s, steps, grid); bad = n < 0; break;
    case DPO_SCHED_EULER: bad = euler_timesteps(s, steps, grid); break;
    default: bad = dpm_timesteps(s, steps, grid); break;
  }
  if (bad) {
    free(grid);
    return dpo_fail(err, DPO_ERR_USAGE, "%s: trailing spacing with %d steps is refused: numpy's float arange "
                    "makes %d timesteps, the last -1, in diffusers; choose another step count", cls, steps, steps + 1);
  }
  s->timesteps = malloc((size_t)n * sizeof *s->timesteps);
  if (!s->timesteps) {
    free(grid);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory for timesteps");
  }
  for (int i = 0; i < n; i++) s->timesteps[i] = (float)grid[i];
  free(grid);
  s->n_timesteps = n;
  s->num_inference_steps = steps;
  s->step_index = -1;
  s->begin_index = -1;
  s->steps_done = 0;
  if (s->kind == DPO_SCHED_EULER || s->kind == DPO_SCHED_DPMPP_2M) {
    if (make_sigmas(s)) return dpo_fail(err, DPO_ERR_DATA, "out of memory for sigmas");
  }
  s->init_noise_sigma = 1.0f;
  if (s->kind == DPO_SCHED_EULER) {
    float max_sigma = 0;
    for (int i = 0; i <= n; i++) max_sigma = fmaxf(max_sigma, s->sigmas[i]);
    int plain = !strcmp(s->cfg.timestep_spacing, "linspace") || !strcmp(s->cfg.timestep_spacing, "trailing");
    s->init_noise_sigma = plain ? max_sigma : sqrtf(max_sigma * max_sigma + 1.0f);
  }
  return DPO_OK;
}

int dpo_scheduler_set_begin_index(dpo_scheduler *s, int index, dpo_error *err) {
  if (!s->timesteps) return dpo_fail(err, DPO_ERR_USAGE, "set_begin_index before set_timesteps");
  if (index < 0 || index >= s->n_timesteps)
    return dpo_fail(err, DPO_ERR_USAGE, "begin index %d is outside [0, %d)", index, s->n_timesteps);
  s->begin_index = index;
  return DPO_OK;
}

/* index_for_timestep: the first match, or the second when t appears twice;
 * DPM-Solver falls back to the last index when t is not in the grid. */
static int index_for_timestep(const dpo_scheduler *s, float t) {
  int first = -1;
  for (int i = 0; i < s->n_timesteps; i++) {
    if (s->timesteps[i] != t) continue;
    if (first >= 0) return i;
    first = i;
  }
  if (first < 0 && s->kind == DPO_SCHED_DPMPP_2M) return s->n_timesteps - 1;
  return first;
}

static int init_step_index(dpo_scheduler *s, float t, dpo_error *err) {
  if (s->step_index >= 0) return DPO_OK;
  s->step_index = s->begin_index >= 0 ? s->begin_index : index_for_timestep(s, t);
  if (s->step_index < 0)
    return dpo_fail(err, DPO_ERR_USAGE, "%s: timestep %g is not in the schedule", dpo_scheduler_kind_name(s->kind),
                    (double)t);
  return DPO_OK;
}

int dpo_scheduler_scale_model_input(dpo_scheduler *s, float t, const float *sample, float *out, size_t n,
                                    dpo_error *err) {
  if (!s->timesteps) return dpo_fail(err, DPO_ERR_USAGE, "scale_model_input before set_timesteps");
  if (s->kind != DPO_SCHED_EULER) {
    if (out != sample) memmove(out, sample, n * sizeof *out);
    return DPO_OK;
  }
  if (init_step_index(s, t, err)) return DPO_ERR_USAGE;
  float sigma = s->sigmas[s->step_index];
  float scale = sqrtf(sigma * sigma + 1.0f);
  for (size_t i = 0; i < n; i++) out[i] = sample[i] / scale;
  return DPO_OK;
}

/* --------------------------------------------------------------- DDIM */

static int ddim_step(dpo_scheduler *s, const float *mo, int t, const float *x, const float *noise, float *prev,
                     size_t n, dpo_error *err) {
  int prev_t = t - s->num_train_timesteps / s->num_inference_steps;
  float a_t = s->alphas_cumprod[t];
  float a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
  float b_t = 1.0f - a_t;
  float sqrt_a = sqrtf(a_t), sqrt_b = sqrtf(b_t);
  float variance = (1.0f - a_prev) / b_t * (1.0f - a_t / a_prev);
  float std_dev = (float)s->eta * sqrtf(variance);
  float dir_coeff = sqrtf(1.0f - a_prev - std_dev * std_dev);
  float sqrt_a_prev = sqrtf(a_prev);
  float clip = (float)s->cfg.clip_sample_range;
  float *drawn = NULL;
  if (s->eta > 0 && !noise) {
    drawn = malloc(n * sizeof *drawn);
    if (!drawn) return dpo_fail(err, DPO_ERR_DATA, "out of memory for DDIM noise");
    dpo_rng_normal_fill(s->noise_seed, s->noise_stream, (uint64_t)s->steps_done * n, drawn, n);
    noise = drawn;
  }
  for (size_t i = 0; i < n; i++) {
    float x0, eps;
    if (s->prediction == DPO_PRED_EPSILON) {
      x0 = (x[i] - sqrt_b * mo[i]) / sqrt_a;
      eps = mo[i];
    } else {
      x0 = sqrt_a * x[i] - sqrt_b * mo[i];
      eps = sqrt_a * mo[i] + sqrt_b * x[i];
    }
    if (s->cfg.clip_sample) x0 = fminf(fmaxf(x0, -clip), clip);
    float out = sqrt_a_prev * x0 + dir_coeff * eps;
    if (s->eta > 0) out = out + std_dev * noise[i];
    prev[i] = out;
  }
  free(drawn);
  return DPO_OK;
}

/* ------------------------------------------------------------- PNDM */

static void pndm_prev_sample(const dpo_scheduler *s, const float *x, int t, int prev_t, const float *m, float *prev,
                             size_t n) {
  float a_t = s->alphas_cumprod[t];
  float a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : s->final_alpha_cumprod;
  float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
  float sqrt_a = sqrtf(a_t), sqrt_b = sqrtf(b_t);
  float sample_coeff = sqrtf(a_prev / a_t);
  float denom = a_t * sqrtf(b_prev) + sqrtf(a_t * b_t * a_prev);
  float diff = a_prev - a_t;
  for (size_t i = 0; i < n; i++) {
    float e = s->prediction == DPO_PRED_V ? sqrt_a * m[i] + sqrt_b * x[i] : m[i];
    prev[i] = sample_coeff * x[i] - diff * e / denom;
  }
}

static int pndm_step(dpo_scheduler *s, const float *mo, int t, const float *x, float *prev, size_t n,
                     dpo_error *err) {
  int ratio = s->num_train_timesteps / s->num_inference_steps;
  int prev_t = t - ratio;
  int counter = s->steps_done;
  if (counter != 1) {
    if (s->n_ets == 4) {   /* keep the last three, then append */
      float *oldest = s->ets[0];
      memmove(s->ets, s->ets + 1, 3 * sizeof *s->ets);
      s->ets[3] = oldest;
      s->n_ets = 3;
    }
    if (!s->ets[s->n_ets] && !(s->ets[s->n_ets] = malloc(n * sizeof(float))))
      return dpo_fail(err, DPO_ERR_DATA, "out of memory for PNDM state");
    memcpy(s->ets[s->n_ets], mo, n * sizeof(float));
    s->n_ets++;
  } else {
    prev_t = t;
    t = t + ratio;
  }
  if (t >= s->num_train_timesteps)
    return dpo_fail(err, DPO_ERR_USAGE, "PNDMScheduler: timestep %d is outside the schedule", t);
  float *m = malloc(n * sizeof *m);
  if (!m) return dpo_fail(err, DPO_ERR_DATA, "out of memory for PNDM state");
  const float *base = x;
  float *const *e = s->ets;
  int k = s->n_ets;
  if (k == 1 && counter == 0) {
    memcpy(m, mo, n * sizeof *m);
    if (!s->cur_sample && !(s->cur_sample = malloc(n * sizeof(float)))) {
      free(m);
      return dpo_fail(err, DPO_ERR_DATA, "out of memory for PNDM state");
    }
    memcpy(s->cur_sample, x, n * sizeof(float));
  } else if (k == 1 && counter == 1) {
    for (size_t i = 0; i < n; i++) m[i] = (mo[i] + e[0][i]) / 2.0f;
    base = s->cur_sample;
  } else if (k == 2) {
    for (size_t i = 0; i < n; i++) m[i] = (3.0f * e[1][i] - e[0][i]) / 2.0f;
  } else if (k == 3) {
    for (size_t i = 0; i < n; i++) m[i] = (23.0f * e[2][i] - 16.0f * e[1][i] + 5.0f * e[0][i]) / 12.0f;
  } else {
    const float inv24 = (float)(1.0 / 24.0);
    for (size_t i = 0; i < n; i++)
      m[i] = inv24 * (55.0f * e[3][i] - 59.0f * e[2][i] + 37.0f * e[1][i] - 9.0f * e[0][i]);
  }
  pndm_prev_sample(s, base, t, prev_t, m, prev, n);
  free(m);
  return DPO_OK;
}

/* ------------------------------------------------------------ Euler */

static void euler_step(dpo_scheduler *s, const float *mo, const float *x, float *prev, size_t n) {
  int i = s->step_index;
  float sigma = s->sigmas[i];
  float sigma_hat = sigma * (0.0f + 1.0f);   /* s_churn = 0: no noise added */
  float dt = s->sigmas[i + 1] - sigma_hat;
  float v_coeff = -sigma / sqrtf(sigma * sigma + 1.0f);
  float v_div = sigma * sigma + 1.0f;
  for (size_t k = 0; k < n; k++) {
    float x0 = s->prediction == DPO_PRED_EPSILON ? x[k] - sigma_hat * mo[k] : mo[k] * v_coeff + x[k] / v_div;
    float derivative = (x[k] - x0) / sigma_hat;
    prev[k] = x[k] + derivative * dt;
  }
}

/* ---------------------------------------------------- DPM-Solver++ 2M */

static void alpha_sigma_of(float sigma, float *alpha_t, float *sigma_t) {
  *alpha_t = 1.0f / sqrtf(sigma * sigma + 1.0f);
  *sigma_t = sigma * *alpha_t;
}

static int dpm_step(dpo_scheduler *s, const float *mo, const float *x, float *prev, size_t n, dpo_error *err) {
  int i = s->step_index, len = s->n_timesteps;
  const dpo_scheduler_config *c = &s->cfg;
  int lower_final = i == len - 1 && (c->euler_at_final || (c->lower_order_final && len < 15) ||
                                     !strcmp(c->final_sigmas_type, "zero"));
  int lower_second = i == len - 2 && c->lower_order_final && len < 15;
  /* convert_model_output: the x0 prediction, into the newest slot */
  float alpha_s0, sigma_s0;
  alpha_sigma_of(s->sigmas[i], &alpha_s0, &sigma_s0);
  float *oldest = s->model_outputs[0];
  s->model_outputs[0] = s->model_outputs[1];
  s->model_outputs[1] = oldest;
  if (!s->model_outputs[1] && !(s->model_outputs[1] = malloc(n * sizeof(float))))
    return dpo_fail(err, DPO_ERR_DATA, "out of memory for DPM-Solver state");
  float *m0 = s->model_outputs[1];
  for (size_t k = 0; k < n; k++)
    m0[k] = s->prediction == DPO_PRED_EPSILON ? (x[k] - sigma_s0 * mo[k]) / alpha_s0
                                              : alpha_s0 * x[k] - sigma_s0 * mo[k];
  float alpha_t, sigma_t;
  alpha_sigma_of(s->sigmas[i + 1], &alpha_t, &sigma_t);
  float lambda_t = logf(alpha_t) - logf(sigma_t);
  float lambda_s0 = logf(alpha_s0) - logf(sigma_s0);
  float h = lambda_t - lambda_s0;
  float ratio = sigma_t / sigma_s0;
  float coeff = alpha_t * (expf(-h) - 1.0f);
  if (c->solver_order == 1 || s->lower_order_nums < 1 || lower_final) {
    for (size_t k = 0; k < n; k++) prev[k] = ratio * x[k] - coeff * m0[k];
  } else {
    (void)lower_second;   /* order 2 is the highest here, so it changes nothing */
    float alpha_s1, sigma_s1;
    alpha_sigma_of(s->sigmas[i - 1], &alpha_s1, &sigma_s1);
    float lambda_s1 = logf(alpha_s1) - logf(sigma_s1);
    float h0 = lambda_s0 - lambda_s1;
    float r0 = h0 / h;
    float inv_r0 = 1.0f / r0;
    const float *m1 = s->model_outputs[0];
    int heun = !strcmp(c->solver_type, "heun");
    float d1_coeff = heun ? alpha_t * ((expf(-h) - 1.0f) / h + 1.0f) : 0.5f * coeff;
    for (size_t k = 0; k < n; k++) {
      float d1 = inv_r0 * (m0[k] - m1[k]);
      prev[k] = heun ? ratio * x[k] - coeff * m0[k] + d1_coeff * d1 : ratio * x[k] - coeff * m0[k] - d1_coeff * d1;
    }
  }
  if (s->lower_order_nums < c->solver_order) s->lower_order_nums++;
  return DPO_OK;
}

/* -------------------------------------------------------------- step */

int dpo_scheduler_step(dpo_scheduler *s, const float *model_output, float t, const float *sample,
                       const float *noise, float *prev, size_t n, dpo_error *err) {
  const char *cls = dpo_scheduler_kind_name(s->kind);
  if (!s->timesteps) return dpo_fail(err, DPO_ERR_USAGE, "%s: step before set_timesteps", cls);
  if (s->numel && s->numel != n)
    return dpo_fail(err, DPO_ERR_USAGE, "%s: sample of %zu values after %zu", cls, n, s->numel);
  s->numel = n;
  int rc = DPO_OK;
  if (s->kind == DPO_SCHED_DDIM || s->kind == DPO_SCHED_PNDM) {
    int ti = train_timestep(s, t);
    if (ti < 0)
      return dpo_fail(err, DPO_ERR_USAGE, "%s: timestep %g is not an integer in [0, %d)", cls, (double)t,
                      s->num_train_timesteps);
    rc = s->kind == DPO_SCHED_DDIM ? ddim_step(s, model_output, ti, sample, noise, prev, n, err)
                                   : pndm_step(s, model_output, ti, sample, prev, n, err);
  } else {
    if (init_step_index(s, t, err)) return DPO_ERR_USAGE;
    if (s->step_index >= s->n_timesteps)
      return dpo_fail(err, DPO_ERR_USAGE, "%s: more steps than the %d timesteps", cls, s->n_timesteps);
    if (s->kind == DPO_SCHED_EULER) euler_step(s, model_output, sample, prev, n);
    else rc = dpm_step(s, model_output, sample, prev, n, err);
    if (!rc) s->step_index++;
  }
  if (!rc) s->steps_done++;
  return rc;
}

int dpo_scheduler_add_noise(dpo_scheduler *s, const float *x0, const float *noise, float t, float *out, size_t n,
                            dpo_error *err) {
  if (s->kind == DPO_SCHED_EULER || s->kind == DPO_SCHED_DPMPP_2M) {
    if (!s->timesteps) return dpo_fail(err, DPO_ERR_USAGE, "add_noise before set_timesteps");
    int index = s->begin_index < 0 ? index_for_timestep(s, t) : s->step_index >= 0 ? s->step_index : s->begin_index;
    if (index < 0)
      return dpo_fail(err, DPO_ERR_USAGE, "%s: timestep %g is not in the schedule", dpo_scheduler_kind_name(s->kind),
                      (double)t);
    float sigma = s->sigmas[index];
    if (s->kind == DPO_SCHED_EULER) {
      for (size_t i = 0; i < n; i++) out[i] = x0[i] + noise[i] * sigma;
    } else {
      float alpha_t, sigma_t;
      alpha_sigma_of(sigma, &alpha_t, &sigma_t);
      for (size_t i = 0; i < n; i++) out[i] = alpha_t * x0[i] + sigma_t * noise[i];
    }
    return DPO_OK;
  }
  int ti = train_timestep(s, t);
  if (ti < 0)
    return dpo_fail(err, DPO_ERR_USAGE, "timestep %g is not an integer in [0, %d)", (double)t, s->num_train_timesteps);
  float a = s->alphas_cumprod[ti];
  float sqrt_a = sqrtf(a), sqrt_1m = sqrtf(1.0f - a);
  for (size_t i = 0; i < n; i++) out[i] = sqrt_a * x0[i] + sqrt_1m * noise[i];
  return DPO_OK;
}
