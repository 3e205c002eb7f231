/* Schedules and samplers against diffusers 0.31 (fixtures from
 * tests/fixtures/make_scheduler_fixtures.py): each case's config goes
 * through the real scheduler_config.json loader.
 *
 * Exact: every timestep of every grid (4 samplers x 3 spacings x 24 step
 * counts). Tolerances, float32 rounding: betas, alphas_cumprod, sigmas and
 * init_noise_sigma within 2e-6 relative (torch's vectorised linspace and
 * log/exp differ from the C library's in the last bit); add_noise and
 * get_velocity within 1e-6 of the values' scale; sampler trajectories run
 * free (each step starts from the C result, not from diffusers') and every
 * step's sample is within 5e-6 of that step's scale (max(1, max |x|)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "tests/tokenizer_fixture.h"
#include "trainer/trainer.h"

#define SCHEDULE_REL_TOL 2e-6
#define NOISE_TOL 1e-6
#define TRAJECTORY_TOL 5e-6

static double worst_trajectory = 0, worst_schedule = 0;

static int load_floats(const json_t *arr, float *out, size_t n) {
  if (!json_is_array(arr) || json_array_size(arr) != n) return -1;
  for (size_t i = 0; i < n; i++) out[i] = (float)json_number_value(json_array_get(arr, i));
  return 0;
}

static int make_scheduler(const json_t *rec, dpo_scheduler *s, const char *what) {
  const char *text = json_string_value(json_object_get(rec, "config"));
  if (!text) {
    test_fail(__FILE__, __LINE__, "%s: no config", what);
    return -1;
  }
  const char *path = test_path("scheduler_config.json");
  test_write_file(path, text, strlen(text));
  dpo_scheduler_config cfg;
  dpo_error err = {0};
  if (dpo_scheduler_config_load(path, &cfg, &err) || dpo_scheduler_init(s, &cfg, &err)) {
    test_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
    return -1;
  }
  return 0;
}

static void check_rel(const float *got, const json_t *want, size_t n, double tol, const char *what) {
  for (size_t i = 0; i < n; i++) {
    double w = json_number_value(json_array_get(want, i));
    double diff = fabs((double)got[i] - w), scale = fmax(fabs(w), 1e-30);
    if (diff / scale > worst_schedule) worst_schedule = diff / scale;
    if (diff > tol * scale) {
      test_fail(__FILE__, __LINE__, "%s[%zu] = %.9g, expected %.9g", what, i, (double)got[i], w);
      return;
    }
  }
}

static void check_scaled(const float *got, const json_t *want, size_t n, double tol, const char *what, double *worst) {
  double scale = 1.0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(json_number_value(json_array_get(want, i))));
  for (size_t i = 0; i < n; i++) {
    double w = json_number_value(json_array_get(want, i));
    double e = fabs((double)got[i] - w) / scale;
    if (worst && e > *worst) *worst = e;
    if (e > tol) {
      test_fail(__FILE__, __LINE__, "%s[%zu] = %.9g, expected %.9g (scale %g)", what, i, (double)got[i], w, scale);
      return;
    }
  }
}

static void test_schedules(const json_t *root) {
  const json_t *list = json_object_get(root, "schedules");
  CHECK_INT(json_array_size(list), 3);
  for (size_t k = 0; k < json_array_size(list); k++) {
    const json_t *rec = json_array_get(list, k);
    dpo_scheduler s;
    if (make_scheduler(rec, &s, "schedule")) continue;
    CHECK_INT(s.num_train_timesteps, 1000);
    check_rel(s.betas, json_object_get(rec, "betas"), 1000, SCHEDULE_REL_TOL, s.cfg.beta_schedule);
    check_rel(s.alphas_cumprod, json_object_get(rec, "alphas_cumprod"), 1000, SCHEDULE_REL_TOL, s.cfg.beta_schedule);
    dpo_scheduler_free(&s);
  }
}

static void test_noising(const json_t *root) {
  const json_t *rec = json_object_get(root, "noising");
  dpo_scheduler s;
  if (make_scheduler(rec, &s, "noising")) return;
  float x0[32], noise[32], out[32];
  CHECK(load_floats(json_object_get(rec, "x0"), x0, 32) == 0);
  CHECK(load_floats(json_object_get(rec, "noise"), noise, 32) == 0);
  const json_t *cases = json_object_get(rec, "cases");
  CHECK(json_array_size(cases) >= 5);
  for (size_t k = 0; k < json_array_size(cases); k++) {
    const json_t *c = json_array_get(cases, k);
    int t = (int)json_integer_value(json_object_get(c, "t"));
    dpo_error err = {0};
    CHECK(dpo_scheduler_add_noise(&s, x0, noise, (float)t, out, 32, &err) == DPO_OK);
    check_scaled(out, json_object_get(c, "noisy"), 32, NOISE_TOL, "add_noise", NULL);
    CHECK(dpo_scheduler_get_velocity(&s, x0, noise, t, out, 32, &err) == DPO_OK);
    check_scaled(out, json_object_get(c, "velocity"), 32, NOISE_TOL, "get_velocity", NULL);
  }
  dpo_scheduler_free(&s);
}

static void test_grids(const json_t *root) {
  const json_t *list = json_object_get(root, "grids");
  CHECK(json_array_size(list) >= 200);
  for (size_t k = 0; k < json_array_size(list); k++) {
    const json_t *rec = json_array_get(list, k);
    dpo_scheduler s;
    if (make_scheduler(rec, &s, "grid")) continue;
    int steps = (int)json_integer_value(json_object_get(rec, "steps"));
    char what[160];
    snprintf(what, sizeof what, "%s %s %d steps", dpo_scheduler_kind_name(s.kind), s.cfg.timestep_spacing, steps);
    dpo_error err = {0};
    if (json_object_get(rec, "error")) {
      CHECK(dpo_scheduler_set_timesteps(&s, steps, &err) != DPO_OK);
      dpo_scheduler_free(&s);
      continue;
    }
    if (dpo_scheduler_set_timesteps(&s, steps, &err)) {
      test_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
      dpo_scheduler_free(&s);
      continue;
    }
    const json_t *ts = json_object_get(rec, "timesteps");
    if ((size_t)s.n_timesteps != json_array_size(ts)) {
      test_fail(__FILE__, __LINE__, "%s: %d timesteps, expected %zu", what, s.n_timesteps, json_array_size(ts));
    } else {
      for (int i = 0; i < s.n_timesteps; i++) {
        double want = json_number_value(json_array_get(ts, (size_t)i));
        if ((double)s.timesteps[i] != want) {
          test_fail(__FILE__, __LINE__, "%s: timestep %d = %.9g, expected %.9g", what, i, (double)s.timesteps[i], want);
          break;
        }
      }
    }
    const json_t *sigmas = json_object_get(rec, "sigmas");
    if (sigmas) {
      CHECK_INT(json_array_size(sigmas), s.n_timesteps + 1);
      if (json_array_size(sigmas) == (size_t)s.n_timesteps + 1)
        check_rel(s.sigmas, sigmas, (size_t)s.n_timesteps + 1, SCHEDULE_REL_TOL, what);
    }
    float want_sigma = (float)json_number_value(json_object_get(rec, "init_noise_sigma"));
    CHECK(fabs(s.init_noise_sigma - want_sigma) <= SCHEDULE_REL_TOL * fabs(want_sigma));
    dpo_scheduler_free(&s);
  }
}

static void test_trajectories(const json_t *root) {
  const json_t *list = json_object_get(root, "trajectories");
  float latents[32];
  CHECK(load_floats(json_object_get(root, "latents"), latents, 32) == 0);
  CHECK(json_array_size(list) >= 24);
  int covered[DPO_SCHED_COUNT] = {0};
  for (size_t k = 0; k < json_array_size(list); k++) {
    const json_t *rec = json_array_get(list, k);
    dpo_scheduler s;
    if (make_scheduler(rec, &s, "trajectory")) continue;
    int steps = (int)json_integer_value(json_object_get(rec, "num_inference_steps"));
    char what[200];
    snprintf(what, sizeof what, "%s %s %s %d steps (case %zu)", dpo_scheduler_kind_name(s.kind),
             s.cfg.timestep_spacing, s.cfg.prediction_type, steps, k);
    dpo_error err = {0};
    if (dpo_scheduler_set_timesteps(&s, steps, &err)) {
      test_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
      dpo_scheduler_free(&s);
      continue;
    }
    const json_t *eta = json_object_get(rec, "eta");
    if (eta) s.eta = json_number_value(eta);
    float x[32], input[32], mo[32], prev[32], noise[32];
    for (int i = 0; i < 32; i++) x[i] = latents[i] * s.init_noise_sigma;
    check_scaled(x, json_object_get(rec, "start"), 32, TRAJECTORY_TOL, what, &worst_trajectory);
    const json_t *rec_steps = json_object_get(rec, "steps");
    CHECK_INT(json_array_size(rec_steps), s.n_timesteps);
    for (size_t j = 0; j < json_array_size(rec_steps) && (int)j < s.n_timesteps; j++) {
      const json_t *st = json_array_get(rec_steps, j);
      float t = s.timesteps[j];
      CHECK(t == (float)json_number_value(json_object_get(st, "t")));
      if (dpo_scheduler_scale_model_input(&s, t, x, input, 32, &err)) {
        test_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
        break;
      }
      check_scaled(input, json_object_get(st, "model_input"), 32, TRAJECTORY_TOL, what, &worst_trajectory);
      float offset = (float)(0.01 * (double)t / 1000.0);
      for (int i = 0; i < 32; i++) mo[i] = 0.1f * input[i] + offset;
      const float *step_noise = NULL;
      if (eta) {
        load_floats(json_array_get(json_object_get(rec, "noises"), j), noise, 32);
        step_noise = noise;
      }
      if (dpo_scheduler_step(&s, mo, t, x, step_noise, prev, 32, &err)) {
        test_fail(__FILE__, __LINE__, "%s step %zu: %s", what, j, err.msg);
        break;
      }
      char at[240];
      snprintf(at, sizeof at, "%s step %zu", what, j);
      check_scaled(prev, json_object_get(st, "prev"), 32, TRAJECTORY_TOL, at, &worst_trajectory);
      memcpy(x, prev, sizeof x);
    }
    covered[s.kind]++;
    dpo_scheduler_free(&s);
  }
  for (int k = DPO_SCHED_DDIM; k < DPO_SCHED_COUNT; k++) CHECK(covered[k] >= 6);
}

int main(void) {
  size_t len;
  char *text = fixture_gunzip(test_source_path("tests/fixtures/schedulers/schedulers.json.gz"), &len);
  CHECK(text != NULL);
  if (!text) return test_finish();
  dpo_error err = {0};
  json_t *root = dpo_json_parse(text, len, "schedulers.json", &err);
  free(text);
  if (!root) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return test_finish();
  }
  test_schedules(root);
  test_noising(root);
  test_grids(root);
  test_trajectories(root);
  fprintf(stderr, "worst relative error: schedules %.3g, trajectories %.3g\n", worst_schedule, worst_trajectory);
  json_decref(root);
  return test_finish();
}
