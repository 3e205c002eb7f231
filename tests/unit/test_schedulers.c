/* scheduler_config.json refusals (messages name the key), class switching as
 * diffusers' from_config, and the samplers' caller errors. Numbers against
 * diffusers are the golden test's job. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static const char *SD15 =
    "{\"_class_name\": \"PNDMScheduler\", \"_diffusers_version\": \"0.6.0\", \"beta_end\": 0.012, "
    "\"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"num_train_timesteps\": 1000, "
    "\"set_alpha_to_one\": false, \"skip_prk_steps\": true, \"steps_offset\": 1, \"trained_betas\": null, "
    "\"clip_sample\": false}";

static int load_text(const char *text, dpo_scheduler_config *cfg, dpo_error *err) {
  const char *path = test_path("scheduler_config.json");
  test_write_file(path, text, strlen(text));
  return dpo_scheduler_config_load(path, cfg, err);
}

/* Loading must fail, naming `fragment`. */
static void expect_load_error(const char *text, const char *fragment) {
  dpo_scheduler_config cfg;
  dpo_error err = {0};
  CHECK_INT(load_text(text, &cfg, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, fragment);
}

/* Loading works, making the scheduler fails naming `fragment`. */
static void expect_init_error(const char *text, const char *fragment) {
  dpo_scheduler_config cfg;
  dpo_error err = {0};
  CHECK_INT(load_text(text, &cfg, &err), DPO_OK);
  dpo_scheduler s;
  CHECK_INT(dpo_scheduler_init(&s, &cfg, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, fragment);
}

static void test_config_errors(void) {
  expect_load_error("{\"beta_end\": 0.012}", "_class_name");
  expect_load_error("{\"_class_name\": \"LMSDiscreteScheduler\"}", "\"LMSDiscreteScheduler\" is not supported");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\", \"beta_ends\": 0.1}", "unknown key \"beta_ends\"");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\", \"steps_offset\": \"1\"}", "\"steps_offset\": expected an integer");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\", \"steps_offset\": 1.5}", "\"steps_offset\"");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\", \"clip_sample\": 0}", "\"clip_sample\": expected true or false");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\", \"beta_start\": \"x\"}", "\"beta_start\": expected a number");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\", \"prediction_type\": 3}", "\"prediction_type\"");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\", \"sigma_min\": \"x\"}", "\"sigma_min\"");
  expect_load_error("{\"_class_name\": \"DDIMScheduler\",", "scheduler_config.json:1:");
  expect_load_error("[1]", "expected a JSON object");

  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"thresholding\": true}", "\"thresholding\"");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"rescale_betas_zero_snr\": true}", "rescale_betas_zero_snr");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"trained_betas\": [0.1, 0.2]}", "\"trained_betas\"");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"sigmoid\"}", "\"beta_schedule\": \"sigmoid\"");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"prediction_type\": \"sample\"}", "\"prediction_type\": \"sample\"");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"timestep_spacing\": \"karras\"}", "\"timestep_spacing\"");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 0}", "\"num_train_timesteps\"");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"beta_end\": 1.5}", "\"beta_end\"");
  expect_init_error("{\"_class_name\": \"DDIMScheduler\", \"steps_offset\": -1}", "\"steps_offset\"");
  expect_init_error("{\"_class_name\": \"PNDMScheduler\"}", "\"skip_prk_steps\"");
  expect_init_error("{\"_class_name\": \"EulerDiscreteScheduler\", \"use_karras_sigmas\": true}", "\"use_karras_sigmas\"");
  expect_init_error("{\"_class_name\": \"EulerDiscreteScheduler\", \"interpolation_type\": \"log_linear\"}",
                    "\"interpolation_type\"");
  expect_init_error("{\"_class_name\": \"EulerDiscreteScheduler\", \"timestep_type\": \"continuous\"}", "\"timestep_type\"");
  expect_init_error("{\"_class_name\": \"EulerDiscreteScheduler\", \"final_sigmas_type\": \"one\"}", "\"final_sigmas_type\"");
  expect_init_error("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"solver_order\": 3}", "\"solver_order\": 3");
  expect_init_error("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"algorithm_type\": \"sde-dpmsolver++\"}",
                    "\"algorithm_type\"");
  expect_init_error("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"variance_type\": \"learned\"}", "\"variance_type\"");
  expect_init_error("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"use_lu_lambdas\": true}", "\"use_lu_lambdas\"");

  /* Keys of other classes are ignored, as diffusers does: thresholding is not
   * a PNDM key, so SD 1.5's config with it set still runs. */
  dpo_scheduler_config cfg;
  dpo_error err = {0};
  CHECK_INT(load_text("{\"_class_name\": \"PNDMScheduler\", \"skip_prk_steps\": true, \"thresholding\": true}", &cfg, &err),
            DPO_OK);
  dpo_scheduler s;
  CHECK_INT(dpo_scheduler_init(&s, &cfg, &err), DPO_OK);
  dpo_scheduler_free(&s);
  /* diffusers writes the default lambda_min_clipped as -Infinity (not JSON). */
  CHECK_INT(load_text("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"_diffusers_version\": \"-Infinity\", "
                      "\"lambda_min_clipped\": -Infinity}", &cfg, &err), DPO_OK);
  CHECK(isinf(cfg.lambda_min_clipped) && cfg.lambda_min_clipped < 0);
}

static void test_switch_class(void) {
  dpo_scheduler_config cfg;
  dpo_error err = {0};
  CHECK_INT(load_text(SD15, &cfg, &err), DPO_OK);
  CHECK_INT(cfg.kind, DPO_SCHED_PNDM);
  CHECK_STR(cfg.timestep_spacing, "leading");
  /* DPMSolverMultistepScheduler.from_config(pndm.config): the file's keys
   * stay, timestep_spacing takes DPM's default (linspace). diffusers gives
   * [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]. */
  dpo_scheduler_config_set_kind(&cfg, DPO_SCHED_DPMPP_2M);
  CHECK_INT(cfg.kind, DPO_SCHED_DPMPP_2M);
  dpo_scheduler s;
  CHECK_INT(dpo_scheduler_init(&s, &cfg, &err), DPO_OK);
  CHECK_STR(s.cfg.timestep_spacing, "linspace");
  CHECK_INT(s.cfg.steps_offset, 1);
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_OK);
  const int want[] = {999, 899, 799, 699, 599, 500, 400, 300, 200, 100};
  CHECK_INT(s.n_timesteps, 10);
  for (int i = 0; i < 10 && i < s.n_timesteps; i++) CHECK_INT((int)s.timesteps[i], want[i]);
  dpo_scheduler_free(&s);

  /* SD 1.5 PNDM, 50 steps: 981, 961, 961, 941, ..., 1 (51 timesteps). */
  CHECK_INT(load_text(SD15, &cfg, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_init(&s, &cfg, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 50, &err), DPO_OK);
  CHECK_INT(s.n_timesteps, 51);
  CHECK_INT((int)s.timesteps[0], 981);
  CHECK_INT((int)s.timesteps[1], 961);
  CHECK_INT((int)s.timesteps[2], 961);
  CHECK_INT((int)s.timesteps[50], 1);
  dpo_scheduler_free(&s);
}

static void test_caller_errors(void) {
  dpo_scheduler_config cfg;
  dpo_scheduler s;
  dpo_error err = {0};
  float x[4] = {1, 2, 3, 4}, mo[4] = {0.1f, 0.2f, 0.3f, 0.4f}, out[4];

  dpo_scheduler_config_default(&cfg, DPO_SCHED_DDPM);
  CHECK_INT(dpo_scheduler_init(&s, &cfg, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "training schedule");
  CHECK_INT(dpo_scheduler_add_noise(&s, x, mo, 1000, out, 4, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_scheduler_add_noise(&s, x, mo, 0.5f, out, 4, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_scheduler_get_velocity(&s, x, mo, -1, out, 4, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_scheduler_add_noise(&s, x, mo, 0, out, 4, &err), DPO_OK);
  /* t = 0 of the linear schedule: abar = 1 - 1e-4 */
  CHECK_NEAR(out[0], sqrtf(1 - 1e-4f) * 1 + sqrtf(1e-4f) * 0.1f, 1e-6);
  dpo_scheduler_free(&s);

  dpo_scheduler_config_default(&cfg, DPO_SCHED_DDIM);
  CHECK_INT(dpo_scheduler_init(&s, &cfg, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_step(&s, mo, 999, x, NULL, out, 4, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "before set_timesteps");
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 0, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 1001, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_step(&s, mo, 1000, x, NULL, out, 4, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_scheduler_step(&s, mo, 900, x, NULL, out, 4, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_step(&s, mo, 800, x, NULL, out, 3, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "3 values after 4");
  CHECK_INT(dpo_scheduler_set_begin_index(&s, 10, &err), DPO_ERR_USAGE);
  /* diffusers' trailing grid for 61 of 1000 steps has 62 entries ending in -1 */
  dpo_scheduler t61;
  snprintf(cfg.timestep_spacing, sizeof cfg.timestep_spacing, "trailing");
  CHECK_INT(dpo_scheduler_init(&t61, &cfg, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_set_timesteps(&t61, 61, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "trailing spacing with 61 steps");
  CHECK_INT(dpo_scheduler_set_timesteps(&t61, 60, &err), DPO_OK);
  CHECK_INT((int)t61.timesteps[59], 16);   /* diffusers: ..., 49, 32, 16 */
  dpo_scheduler_free(&t61);

  /* eta > 0 without noise draws from the Philox stream; the same normals
   * passed explicitly give the same step. */
  float drawn[4], a[4], b[4];
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_OK);
  s.eta = 1.0;
  s.noise_seed = 7;
  s.noise_stream = 3;
  CHECK_INT(dpo_scheduler_step(&s, mo, 900, x, NULL, a, 4, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_OK);
  dpo_rng_normal_fill(7, 3, 0, drawn, 4);
  CHECK_INT(dpo_scheduler_step(&s, mo, 900, x, drawn, b, 4, &err), DPO_OK);
  for (int i = 0; i < 4; i++) CHECK(a[i] == b[i]);
  s.eta = 0;
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_step(&s, mo, 900, x, NULL, b, 4, &err), DPO_OK);
  CHECK(a[0] != b[0]);   /* the noise did something */
  dpo_scheduler_free(&s);

  dpo_scheduler_config_default(&cfg, DPO_SCHED_EULER);
  CHECK_INT(dpo_scheduler_init(&s, &cfg, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_OK);
  CHECK_NEAR(s.init_noise_sigma, 157.4072723388672, 1e-4);   /* diffusers, linear betas, linspace */
  CHECK_INT(dpo_scheduler_scale_model_input(&s, 123.0f, x, out, 4, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "not in the schedule");
  CHECK_INT(dpo_scheduler_step(&s, mo, s.timesteps[0], x, NULL, out, 4, &err), DPO_OK);
  for (int i = 1; i < 10; i++) CHECK_INT(dpo_scheduler_step(&s, mo, s.timesteps[i], x, NULL, out, 4, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_step(&s, mo, s.timesteps[9], x, NULL, out, 4, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "more steps");
  /* img2img: sampling from the 4th timestep on */
  CHECK_INT(dpo_scheduler_set_timesteps(&s, 10, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_set_begin_index(&s, 3, &err), DPO_OK);
  CHECK_INT(dpo_scheduler_add_noise(&s, x, mo, s.timesteps[3], out, 4, &err), DPO_OK);
  CHECK_NEAR(out[0], x[0] + mo[0] * s.sigmas[3], 1e-6);
  dpo_scheduler_free(&s);

  CHECK_STR(dpo_scheduler_kind_name(DPO_SCHED_DPMPP_2M), "DPMSolverMultistepScheduler");
  dpo_scheduler_kind kind;
  CHECK_INT(dpo_scheduler_kind_from_name("EulerDiscreteScheduler", &kind), DPO_OK);
  CHECK_INT(kind, DPO_SCHED_EULER);
  CHECK_INT(dpo_scheduler_kind_from_name("LMSDiscreteScheduler", &kind), DPO_ERR_DATA);
}

int main(void) {
  test_config_errors();
  test_switch_class();
  test_caller_errors();
  return test_finish();
}
