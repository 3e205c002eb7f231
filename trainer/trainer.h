/* trainer: Stable Diffusion's pieces that the trainer and the samplers share.
 *
 * So far: the CLIP BPE tokenizer (diffusers' `tokenizer/` folder), and the
 * DDPM noise schedule with the samplers DDIM, PNDM, Euler discrete and
 * DPM-Solver++ 2M (`scheduler/scheduler_config.json`), each matching
 * transformers / diffusers step by step. */
#ifndef DPO_TRAINER_H
#define DPO_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* -------------------------------------------------------------- tokenizer */

/* CLIP's context length: Stable Diffusion pads and truncates to it. */
#define DPO_CLIP_CONTEXT 77
/* Longest prompt accepted, in bytes of UTF-8 (the prompt files' limit too).
 * It bounds the BPE of one word, which, as in CLIPTokenizer, is quadratic in
 * the word's length. */
#define DPO_TOKENIZER_MAX_TEXT (64u << 10)

/* CLIPTokenizer as transformers runs it without ftfy: BasicTokenizer cleanup
 * (drop control characters, whitespace to spaces, spaces around CJK, NFC,
 * lower-case), CLIP's split pattern, byte-level BPE with "</w>" ending each
 * word, and the special tokens split out before all that. Not thread-safe:
 * encoding fills a cache of BPE results for repeated words. */
typedef struct dpo_tokenizer dpo_tokenizer;

/* Loads dir/vocab.json and dir/merges.txt, and the special tokens (bos, eos,
 * unk, pad, added tokens) from dir/tokenizer_config.json and
 * dir/special_tokens_map.json when present (the latter wins, as in
 * transformers). Without them pad is "<|endoftext|>" (SD 1.x); SD 2.x folders
 * say "!". */
int dpo_tokenizer_load(const char *dir, dpo_tokenizer **out, dpo_error *err);
void dpo_tokenizer_free(dpo_tokenizer *tok);

/* Encodes text as the pipelines do (padding="max_length", truncation=True):
 * BOS, at most length-2 tokens, EOS, then pad ids up to length. *n_used (may
 * be NULL) receives the count before padding. length is at least 2. */
int dpo_tokenizer_encode(dpo_tokenizer *tok, const char *text, int32_t *ids, int length, int *n_used,
                         dpo_error *err);
/* The BPE token ids of text, without BOS/EOS, truncation or padding; *ids is
 * malloc'd. */
int dpo_tokenizer_tokens(dpo_tokenizer *tok, const char *text, int32_t **ids, int *n, dpo_error *err);

int dpo_tokenizer_bos_id(const dpo_tokenizer *tok);
int dpo_tokenizer_eos_id(const dpo_tokenizer *tok);
int dpo_tokenizer_pad_id(const dpo_tokenizer *tok);
int dpo_tokenizer_vocab_size(const dpo_tokenizer *tok);
/* model_max_length from tokenizer_config.json when it is a sane value
 * (2..4096), else DPO_CLIP_CONTEXT. */
int dpo_tokenizer_max_length(const dpo_tokenizer *tok);

/* ------------------------------------------------------------- schedulers */

/* diffusers' scheduler classes this project runs. DDPM is the training
 * schedule only (add_noise, get_velocity); the others also sample. */
typedef enum {
  DPO_SCHED_DDPM = 0,     /* DDPMScheduler */
  DPO_SCHED_DDIM,         /* DDIMScheduler */
  DPO_SCHED_PNDM,         /* PNDMScheduler (PLMS; skip_prk_steps) */
  DPO_SCHED_EULER,        /* EulerDiscreteScheduler */
  DPO_SCHED_DPMPP_2M,     /* DPMSolverMultistepScheduler, dpmsolver++ */
  DPO_SCHED_COUNT
} dpo_scheduler_kind;

/* The diffusers class name of a kind, and back (unknown names fail). */
const char *dpo_scheduler_kind_name(dpo_scheduler_kind kind);
int dpo_scheduler_kind_from_name(const char *name, dpo_scheduler_kind *kind);

/* The keys of scheduler_config.json. A key not given keeps the default of
 * the class that reads it, as diffusers' from_config does; `given` records
 * which keys the file set (bit i for key i of the table in
 * scheduler_config.c). Switching cfg->kind after loading (an SD 1.5 PNDM
 * config run with DPM-Solver++) then behaves like diffusers'
 * `OtherScheduler.from_config(pipe.scheduler.config)`: keys the file set are
 * kept, the others take the new class's defaults (diffusers tracks those in
 * `_use_default_values`), e.g. timestep_spacing becomes linspace. */
#define DPO_SCHED_NAME 32
typedef struct {
  dpo_scheduler_kind kind;
  int num_train_timesteps;
  double beta_start, beta_end;
  char beta_schedule[DPO_SCHED_NAME];       /* linear, scaled_linear, squaredcos_cap_v2 */
  char prediction_type[DPO_SCHED_NAME];     /* epsilon, v_prediction */
  char timestep_spacing[DPO_SCHED_NAME];    /* leading, trailing, linspace */
  int steps_offset;
  int set_alpha_to_one;
  int clip_sample;
  double clip_sample_range;
  int skip_prk_steps;
  int solver_order;                         /* 1 or 2 */
  char algorithm_type[DPO_SCHED_NAME];      /* dpmsolver++ */
  char solver_type[DPO_SCHED_NAME];         /* midpoint, heun */
  int lower_order_final;
  int euler_at_final;
  char final_sigmas_type[DPO_SCHED_NAME];   /* zero, sigma_min */
  double lambda_min_clipped;
  char interpolation_type[DPO_SCHED_NAME];  /* linear */
  char timestep_type[DPO_SCHED_NAME];       /* discrete */
  char variance_type[DPO_SCHED_NAME];       /* "" for null */
  /* Accepted only at their defaults (false / null); kept to refuse by name. */
  int thresholding, rescale_betas_zero_snr, use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas,
      use_lu_lambdas, trained_betas;
  uint64_t given;
} dpo_scheduler_config;

/* A config of a class with nothing given (all of that class's defaults). */
void dpo_scheduler_config_default(dpo_scheduler_config *cfg, dpo_scheduler_kind kind);
/* Reads scheduler_config.json: `_class_name` must be a supported class, every
 * key must be a known diffusers scheduler key with the right type; errors
 * name the file and the key. Values a class cannot run (e.g. thresholding,
 * Karras sigmas) are refused, naming the key, when the scheduler is made. */
int dpo_scheduler_config_load(const char *path, dpo_scheduler_config *cfg, dpo_error *err);
int dpo_scheduler_config_parse(const json_t *root, const char *where, dpo_scheduler_config *cfg, dpo_error *err);

typedef enum { DPO_PRED_EPSILON = 0, DPO_PRED_V } dpo_prediction_type;

typedef struct {
  dpo_scheduler_config cfg;   /* resolved: every key has its value */
  dpo_scheduler_kind kind;
  dpo_prediction_type prediction;
  int num_train_timesteps;
  float *betas;               /* [num_train_timesteps], float32 as diffusers */
  float *alphas_cumprod;
  float final_alpha_cumprod;
  /* after dpo_scheduler_set_timesteps */
  int num_inference_steps;
  int n_timesteps;            /* PNDM has num_inference_steps + 1 */
  float *timesteps;           /* in order of use; integers except Euler linspace */
  float *sigmas;              /* Euler, DPM-Solver++: [n_timesteps + 1] */
  float init_noise_sigma;
  double eta;                 /* DDIM only; 0 by default */
  uint64_t noise_seed, noise_stream;   /* DDIM eta > 0 without given noise */
  int step_index;             /* -1 until the first step */
  int begin_index;            /* -1 unless set (img2img) */
  int steps_done;
  /* multistep state over samples of `numel` floats */
  size_t numel;
  float *ets[4];              /* PNDM: last model outputs, oldest first */
  int n_ets;
  float *cur_sample;
  float *model_outputs[2];    /* DPM-Solver++: previous, current x0 predictions */
  int lower_order_nums;
} dpo_scheduler;

/* Builds the training schedule (betas, alphas_cumprod) of cfg->kind. */
int dpo_scheduler_init(dpo_scheduler *s, const dpo_scheduler_config *cfg, dpo_error *err);
void dpo_scheduler_free(dpo_scheduler *s);
/* Chooses the sampling timesteps and resets the multistep state. */
int dpo_scheduler_set_timesteps(dpo_scheduler *s, int num_inference_steps, dpo_error *err);
/* Starts sampling at timesteps[index] (img2img), as set_begin_index. */
int dpo_scheduler_set_begin_index(dpo_scheduler *s, int index, dpo_error *err);
/* The model's input at timestep t (Euler divides by sqrt(sigma^2 + 1);
 * the others copy). out may be sample. */
int dpo_scheduler_scale_model_input(dpo_scheduler *s, float t, const float *sample, float *out, size_t n,
                                    dpo_error *err);
/* One sampling step from timestep t: prev = step(model_output, t, sample).
 * Steps must follow timesteps[] in order. noise is DDIM's variance noise for
 * eta > 0 (NULL: drawn from the Philox stream noise_seed/noise_stream). */
int dpo_scheduler_step(dpo_scheduler *s, const float *model_output, float t, const float *sample,
                       const float *noise, float *prev, size_t n, dpo_error *err);
/* Forward diffusion of x0 to timestep t: sqrt(abar_t) x0 + sqrt(1 - abar_t) noise
 * (Euler: x0 + sigma noise; DPM-Solver++: its sigma's alpha/sigma), as each
 * class's add_noise. out may alias x0. */
int dpo_scheduler_add_noise(dpo_scheduler *s, const float *x0, const float *noise, float t, float *out, size_t n,
                            dpo_error *err);
/* The v-prediction target sqrt(abar_t) noise - sqrt(1 - abar_t) x0. */
int dpo_scheduler_get_velocity(const dpo_scheduler *s, const float *x0, const float *noise, int t, float *out,
                               size_t n, dpo_error *err);

#endif
