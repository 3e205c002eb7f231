/* scheduler_config.json: the keys of diffusers' (0.31) DDPM, DDIM, PNDM,
 * EulerDiscrete and DPMSolverMultistep schedulers, their per-class defaults,
 * and the checks that refuse what this project does not run.
 *
 * Configs in the wild carry keys of other classes (SD 1.5's PNDM config has
 * clip_sample, which PNDM does not read); diffusers ignores those, and so do
 * we, but a key no supported class knows is refused by name. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"

#define MAX_CONFIG_BYTES (1u << 20)

enum { P = 1 << DPO_SCHED_DDPM, D = 1 << DPO_SCHED_DDIM, N = 1 << DPO_SCHED_PNDM, E = 1 << DPO_SCHED_EULER,
       M = 1 << DPO_SCHED_DPMPP_2M, ALL = P | D | N | E | M };

typedef enum { K_INT, K_NUM, K_BOOL, K_STR, K_STR_OR_NULL, K_NULL_ONLY, K_NUM_OR_NULL } key_type;

typedef struct {
  const char *name;
  key_type type;
  size_t offset;      /* into dpo_scheduler_config; unused for ignored keys */
  int classes;        /* which classes read it */
  double def_num;     /* default (ints and bools too) */
  const char *def_str;
} key_spec;

#define OFF(field) offsetof(dpo_scheduler_config, field)
#define IGNORED ((size_t)-1)

static const key_spec KEYS[] = {
  {"num_train_timesteps", K_INT, OFF(num_train_timesteps), ALL, 1000, NULL},
  {"beta_start", K_NUM, OFF(beta_start), ALL, 0.0001, NULL},
  {"beta_end", K_NUM, OFF(beta_end), ALL, 0.02, NULL},
  {"beta_schedule", K_STR, OFF(beta_schedule), ALL, 0, "linear"},
  {"trained_betas", K_NULL_ONLY, OFF(trained_betas), ALL, 0, NULL},
  {"prediction_type", K_STR, OFF(prediction_type), ALL, 0, "epsilon"},
  {"timestep_spacing", K_STR, OFF(timestep_spacing), ALL, 0, "leading"},   /* Euler, DPM: linspace */
  {"steps_offset", K_INT, OFF(steps_offset), ALL, 0, NULL},
  {"set_alpha_to_one", K_BOOL, OFF(set_alpha_to_one), D | N, 1, NULL},      /* PNDM: false */
  {"clip_sample", K_BOOL, OFF(clip_sample), P | D, 1, NULL},
  {"clip_sample_range", K_NUM, OFF(clip_sample_range), P | D, 1.0, NULL},
  {"thresholding", K_BOOL, OFF(thresholding), P | D | M, 0, NULL},
  {"dynamic_thresholding_ratio", K_NUM, IGNORED, P | D | M, 0, NULL},
  {"sample_max_value", K_NUM, IGNORED, P | D | M, 0, NULL},
  {"rescale_betas_zero_snr", K_BOOL, OFF(rescale_betas_zero_snr), P | D | E | M, 0, NULL},
  {"variance_type", K_STR_OR_NULL, OFF(variance_type), P | M, 0, ""},     /* DDPM: fixed_small */
  {"skip_prk_steps", K_BOOL, OFF(skip_prk_steps), N, 0, NULL},
  {"solver_order", K_INT, OFF(solver_order), M, 2, NULL},
  {"algorithm_type", K_STR, OFF(algorithm_type), M, 0, "dpmsolver++"},
  {"solver_type", K_STR, OFF(solver_type), M, 0, "midpoint"},
  {"lower_order_final", K_BOOL, OFF(lower_order_final), M, 1, NULL},
  {"euler_at_final", K_BOOL, OFF(euler_at_final), M, 0, NULL},
  {"use_karras_sigmas", K_BOOL, OFF(use_karras_sigmas), E | M, 0, NULL},
  {"use_exponential_sigmas", K_BOOL, OFF(use_exponential_sigmas), E | M, 0, NULL},
  {"use_beta_sigmas", K_BOOL, OFF(use_beta_sigmas), E | M, 0, NULL},
  {"use_lu_lambdas", K_BOOL, OFF(use_lu_lambdas), M, 0, NULL},
  {"final_sigmas_type", K_STR, OFF(final_sigmas_type), E | M, 0, "zero"},
  {"lambda_min_clipped", K_NUM_OR_NULL, OFF(lambda_min_clipped), M, -INFINITY, NULL},   /* null: -inf */
  {"interpolation_type", K_STR, OFF(interpolation_type), E, 0, "linear"},
  {"timestep_type", K_STR, OFF(timestep_type), E, 0, "discrete"},
  {"sigma_min", K_NUM_OR_NULL, IGNORED, E, 0, NULL},
  {"sigma_max", K_NUM_OR_NULL, IGNORED, E, 0, NULL},
};
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static const char *KIND_NAMES[DPO_SCHED_COUNT] = {"DDPMScheduler", "DDIMScheduler", "PNDMScheduler",
                                                  "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"};

const char *dpo_scheduler_kind_name(dpo_scheduler_kind kind) {
  return (kind >= 0 && kind < DPO_SCHED_COUNT) ? KIND_NAMES[kind] : "unknown";
}

int dpo_scheduler_kind_from_name(const char *name, dpo_scheduler_kind *kind) {
  for (int k = 0; k < DPO_SCHED_COUNT; k++) {
    if (strcmp(name, KIND_NAMES[k]) == 0) {
      *kind = (dpo_scheduler_kind)k;
      return DPO_OK;
    }
  }
  return DPO_ERR_DATA;
}

/* The default of key i for a class, where it differs from the table. */
static void set_default(dpo_scheduler_config *cfg, int i, dpo_scheduler_kind kind) {
  const key_spec *k = &KEYS[i];
  if (k->offset == IGNORED) return;
  char *field = (char *)cfg + k->offset;
  double num = k->def_num;
  const char *str = k->def_str;
  if (!strcmp(k->name, "timestep_spacing") && (kind == DPO_SCHED_EULER || kind == DPO_SCHED_DPMPP_2M)) str = "linspace";
  if (!strcmp(k->name, "set_alpha_to_one") && kind == DPO_SCHED_PNDM) num = 0;
  if (!strcmp(k->name, "variance_type") && kind == DPO_SCHED_DDPM) str = "fixed_small";
  switch (k->type) {
    case K_INT: case K_BOOL: case K_NULL_ONLY: *(int *)field = (int)num; break;
    case K_NUM: case K_NUM_OR_NULL: *(double *)field = num; break;
    case K_STR: case K_STR_OR_NULL: snprintf(field, DPO_SCHED_NAME, "%s", str ? str : ""); break;
  }
}

void dpo_scheduler_config_set_kind(dpo_scheduler_config *cfg, dpo_scheduler_kind kind) {
  cfg->kind = kind;
  for (int i = 0; i < N_KEYS; i++)
    if (!(cfg->given & (1ull << i))) set_default(cfg, i, kind);
}

void dpo_scheduler_config_default(dpo_scheduler_config *cfg, dpo_scheduler_kind kind) {
  memset(cfg, 0, sizeof *cfg);
  cfg->kind = kind;
  /* Every field gets a value, even keys this class does not read, so that a
   * later switch of kind starts from defined values. */
  for (int i = 0; i < N_KEYS; i++) set_default(cfg, i, kind);
}

static int read_key(dpo_scheduler_config *cfg, int i, const json_t *v, const char *where, dpo_error *err) {
  const key_spec *k = &KEYS[i];
  char *field = k->offset == IGNORED ? NULL : (char *)cfg + k->offset;
  switch (k->type) {
    case K_INT:
      if (!json_is_integer(v) || json_integer_value(v) < -1000000000 || json_integer_value(v) > 1000000000)
        return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\": expected an integer", where, k->name);
      *(int *)field = (int)json_integer_value(v);
      return DPO_OK;
    case K_NUM:
      if (!json_is_number(v)) return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\": expected a number", where, k->name);
      if (field) *(double *)field = json_number_value(v);
      return DPO_OK;
    case K_NUM_OR_NULL:
      if (!json_is_number(v) && !json_is_null(v))
        return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\": expected a number or null", where, k->name);
      if (field) *(double *)field = json_is_null(v) ? -INFINITY : json_number_value(v);
      return DPO_OK;
    case K_BOOL:
      if (!json_is_boolean(v)) return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\": expected true or false", where, k->name);
      *(int *)field = json_is_true(v);
      return DPO_OK;
    case K_STR:
    case K_STR_OR_NULL:
      if (k->type == K_STR_OR_NULL && json_is_null(v)) {
        field[0] = '\0';
        return DPO_OK;
      }
      if (!json_is_string(v) || json_string_length(v) >= DPO_SCHED_NAME)
        return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\": expected a short string", where, k->name);
      snprintf(field, DPO_SCHED_NAME, "%s", json_string_value(v));
      return DPO_OK;
    case K_NULL_ONLY:
      *(int *)field = !json_is_null(v);
      return DPO_OK;
  }
  return DPO_OK;
}

int dpo_scheduler_config_parse(const json_t *root, const char *where, dpo_scheduler_config *cfg, dpo_error *err) {
  if (!json_is_object(root)) return dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object", where);
  const json_t *cls = json_object_get(root, "_class_name");
  if (!cls || !json_is_string(cls))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"_class_name\": expected the scheduler's class name", where);
  dpo_scheduler_kind kind;
  if (dpo_scheduler_kind_from_name(json_string_value(cls), &kind))
    return dpo_fail(err, DPO_ERR_DATA,
                    "%s: \"_class_name\": \"%s\" is not supported (expected DDPMScheduler, DDIMScheduler, "
                    "PNDMScheduler, EulerDiscreteScheduler or DPMSolverMultistepScheduler)",
                    where, json_string_value(cls));
  dpo_scheduler_config_default(cfg, kind);
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)root, key, value) {
    if (!strcmp(key, "_class_name") || !strcmp(key, "_diffusers_version") || !strcmp(key, "_use_default_values"))
      continue;
    int found = -1;
    for (int i = 0; i < N_KEYS && found < 0; i++)
      if (!strcmp(KEYS[i].name, key)) found = i;
    if (found < 0) return dpo_fail(err, DPO_ERR_DATA, "%s: unknown key \"%s\"", where, key);
    if (read_key(cfg, found, value, where, err)) return DPO_ERR_DATA;
    cfg->given |= 1ull << found;
  }
  return DPO_OK;
}

/* diffusers writes configs with Python's json.dumps, which spells the default
 * lambda_min_clipped as -Infinity: not JSON, so jansson refuses it. Outside
 * strings, -Infinity becomes null (read as -inf), padded to the same length so
 * that error positions stay true. */
static void replace_minus_infinity(char *text, size_t len) {
  static const char word[] = "-Infinity";
  const size_t wl = sizeof word - 1;
  int in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = 0;
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '-' && len - i >= wl && memcmp(text + i, word, wl) == 0) {
      memcpy(text + i, "null     ", wl);
      i += wl - 1;
    }
  }
}

int dpo_scheduler_config_load(const char *path, dpo_scheduler_config *cfg, dpo_error *err) {
  char *text;
  size_t len;
  if (dpo_read_file(path, MAX_CONFIG_BYTES, &text, &len, err)) return DPO_ERR_DATA;
  replace_minus_infinity(text, len);
  json_t *root = dpo_json_parse(text, len, path, err);
  free(text);
  if (!root) return DPO_ERR_DATA;
  int rc = dpo_scheduler_config_parse(root, path, cfg, err);
  json_decref(root);
  return rc;
}

/* ------------------------------------------------------------ validation */

static int reads(dpo_scheduler_kind kind, const char *name) {
  for (int i = 0; i < N_KEYS; i++)
    if (!strcmp(KEYS[i].name, name)) return (KEYS[i].classes & (1 << kind)) != 0;
  return 0;
}

static int one_of(const char *value, const char *a, const char *b, const char *c) {
  return !strcmp(value, a) || (b && !strcmp(value, b)) || (c && !strcmp(value, c));
}

static int refuse_true(const dpo_scheduler_config *c, const char *name, int value, dpo_error *err) {
  if (reads(c->kind, name) && value)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\": true is not supported", dpo_scheduler_kind_name(c->kind), name);
  return DPO_OK;
}

/* Checks every value the class of cfg->kind reads. Used by dpo_scheduler_init. */
int scheduler_config_check(const dpo_scheduler_config *c, dpo_error *err) {
  if (c->kind < 0 || c->kind >= DPO_SCHED_COUNT)
    return dpo_fail(err, DPO_ERR_USAGE, "scheduler kind %d is not supported", (int)c->kind);
  const char *cls = dpo_scheduler_kind_name(c->kind);
  if (c->num_train_timesteps < 2 || c->num_train_timesteps > 100000)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"num_train_timesteps\": %d is out of range (2..100000)", cls,
                    c->num_train_timesteps);
  if (!(c->beta_start >= 0 && c->beta_start < 1) || !(c->beta_end > 0 && c->beta_end < 1))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"beta_start\"/\"beta_end\": %g, %g: expected values in [0, 1)", cls,
                    c->beta_start, c->beta_end);
  if (!one_of(c->beta_schedule, "linear", "scaled_linear", "squaredcos_cap_v2"))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"beta_schedule\": \"%s\" is not supported (linear, scaled_linear, "
                    "squaredcos_cap_v2)", cls, c->beta_schedule);
  if (c->trained_betas) return dpo_fail(err, DPO_ERR_DATA, "%s: \"trained_betas\": only null is supported", cls);
  if (!one_of(c->prediction_type, "epsilon", "v_prediction", NULL))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"prediction_type\": \"%s\" is not supported (epsilon, v_prediction)",
                    cls, c->prediction_type);
  if (!one_of(c->timestep_spacing, "leading", "trailing", "linspace"))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"timestep_spacing\": \"%s\" is not supported (leading, trailing, "
                    "linspace)", cls, c->timestep_spacing);
  if (c->steps_offset < 0 || c->steps_offset >= c->num_train_timesteps)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"steps_offset\": %d is out of range", cls, c->steps_offset);
  if (reads(c->kind, "clip_sample_range") && c->clip_sample && !(c->clip_sample_range > 0))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"clip_sample_range\": expected a positive number", cls);
  if (refuse_true(c, "thresholding", c->thresholding, err) ||
      refuse_true(c, "rescale_betas_zero_snr", c->rescale_betas_zero_snr, err) ||
      refuse_true(c, "use_karras_sigmas", c->use_karras_sigmas, err) ||
      refuse_true(c, "use_exponential_sigmas", c->use_exponential_sigmas, err) ||
      refuse_true(c, "use_beta_sigmas", c->use_beta_sigmas, err) ||
      refuse_true(c, "use_lu_lambdas", c->use_lu_lambdas, err))
    return DPO_ERR_DATA;
  if (c->kind == DPO_SCHED_PNDM && !c->skip_prk_steps)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"skip_prk_steps\": false (Runge-Kutta warm-up) is not supported; "
                    "Stable Diffusion configs set it true", cls);
  if (c->kind == DPO_SCHED_DPMPP_2M) {
    if (c->solver_order != 1 && c->solver_order != 2)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"solver_order\": %d is not supported (1 or 2)", cls, c->solver_order);
    if (!one_of(c->algorithm_type, "dpmsolver++", "deis", NULL))
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"algorithm_type\": \"%s\" is not supported (dpmsolver++)", cls,
                      c->algorithm_type);
    if (!one_of(c->solver_type, "midpoint", "heun", NULL) && !one_of(c->solver_type, "logrho", "bh1", "bh2"))
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"solver_type\": \"%s\" is not supported (midpoint, heun)", cls,
                      c->solver_type);
    if (c->variance_type[0])
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"variance_type\": \"%s\" is not supported (null)", cls,
                      c->variance_type);
    if (isnan(c->lambda_min_clipped))
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"lambda_min_clipped\": expected a number", cls);
  }
  if ((c->kind == DPO_SCHED_EULER || c->kind == DPO_SCHED_DPMPP_2M) &&
      !one_of(c->final_sigmas_type, "zero", "sigma_min", NULL))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"final_sigmas_type\": \"%s\" is not supported (zero, sigma_min)", cls,
                    c->final_sigmas_type);
  if (c->kind == DPO_SCHED_EULER) {
    if (strcmp(c->interpolation_type, "linear") != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"interpolation_type\": \"%s\" is not supported (linear)", cls,
                      c->interpolation_type);
    if (strcmp(c->timestep_type, "discrete") != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"timestep_type\": \"%s\" is not supported (discrete)", cls,
                      c->timestep_type);
  }
  return DPO_OK;
}
