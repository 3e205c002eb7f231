/* demo: the shapes-world base model and the pieces of `dpo demo`.
 *
 * - A CLIP-format tokenizer folder for the shapes grammar (every grammar word
 *   is one "word</w>" token, built by merges from CLIP's byte alphabet, so
 *   trainer/'s CLIP BPE encodes any prompt without unknown tokens).
 * - `dpo pretrain`: a small pixel-space pipeline (UNet2DConditionModel +
 *   CLIPTextModel, diffusers layout, no VAE) trained from scratch on freshly
 *   rendered train-split scenes with the plain epsilon-prediction diffusion
 *   loss, caption dropout for classifier-free guidance, AdamW.
 * - A minimal DDIM sampler with classifier-free guidance, deterministic from
 *   (seed, prompt, index). It is deliberately small: the general generation
 *   pipeline (`dpo generate`) lives elsewhere; this one exists so the base
 *   model can be measured and tested on its own.
 *
 * Errors follow core.h; nothing here prints except progress and log lines. */
#ifndef DPO_DEMO_H
#define DPO_DEMO_H

#include <stdint.h>

#include "core/core.h"
#include "kernels/kernels.h"
#include "trainer/trainer.h"

/* Token length of the shapes pipelines (the longest grammar prompt is 25
 * words plus BOS and EOS). */
#define DEMO_MAX_TOKENS 32

/* Writes vocab.json, merges.txt, tokenizer_config.json and
 * special_tokens_map.json into dir (created), each atomically. */
int demo_tokenizer_write(const char *dir, int max_length, dpo_error *err);
/* The words of the shapes grammar (NULL-terminated list), for tests. */
const char *const *demo_grammar_words(void);

typedef struct {
  const char *out;          /* pipeline folder to write (replaced atomically) */
  int64_t steps;
  uint64_t seed;
  int size;                 /* image side; a multiple of 4 */
  int batch_size;
  double lr;
  int warmup_steps;
  int threads;              /* <= 0: OpenMP default */
  double caption_dropout;   /* share of captions replaced by "" */
  const char *init;         /* pipeline folder whose networks to continue from; NULL: random */
  int linear_decay;         /* 1: lr falls linearly to 0 over the steps after warmup */
  const char *command;      /* recorded in pretrain.json; may be NULL */
} demo_pretrain_options;

void demo_pretrain_defaults(demo_pretrain_options *opt);

typedef struct {
  double final_loss;        /* mean loss of the last 10% of steps */
  double wall_seconds;
  size_t n_params;
} demo_pretrain_result;

/* Builds, trains and saves the base pipeline. Writes OUT/pretrain.json with
 * the options, the loss curve summary and the wall time. */
int demo_pretrain(const demo_pretrain_options *opt, demo_pretrain_result *res, dpo_error *err);

/* --------------------------------------------------------------- sampler */

typedef struct {
  int steps;                /* DDIM steps */
  double guidance;          /* CFG scale; 1 = no guidance */
  int batch;                /* images per UNet call (x2 with guidance) */
} demo_sample_options;

void demo_sample_defaults(demo_sample_options *opt);

/* images[i] (allocated here, RGB, free with dpo_image_free) for prompts[i],
 * its initial noise drawn from Philox under `seed` in a stream named by the
 * prompt text and indices[i]: the same (seed, prompt, index) gives the same
 * noise for any model, which is what base-vs-tuned comparisons need. */
int demo_sample(dpo_pipeline *pipe, kn_ctx *ctx, const demo_sample_options *opt, const char *const *prompts,
                const uint64_t *indices, int n, uint64_t seed, dpo_image *images, dpo_error *err);

typedef struct {
  int n_prompts;
  double model_alignment;   /* mean judge alignment of the model's samples */
  double truth_alignment;   /* mean judge alignment of ground-truth renders */
  double model_appeal;
  double seconds;
} demo_alignment_result;

/* Samples n held-out prompts (world_prompts_generate(heldout, prompt_seed))
 * once each with `seed` and scores them with the judge, next to ground-truth
 * renders of the same prompts. */
int demo_measure_alignment(dpo_pipeline *pipe, kn_ctx *ctx, const demo_sample_options *opt, int n,
                           uint64_t prompt_seed, uint64_t seed, demo_alignment_result *res, dpo_error *err);

/* ------------------------------------------------------------ dpo demo */

/* The shipped base (world/base/ of the source tree); the build defines it. */
#ifndef DEMO_DEFAULT_BASE
#define DEMO_DEFAULT_BASE "world/base"
#endif
/* The settings of the full run and of --quick (demo_options_resolve). */
/* Train prompts that get a pair each: K base samples a prompt, the judge's
 * best-aligned against its worst (prompts whose K samples tie give none).
 * The quick run keeps ~250 pairs: with ~125 the tuned model did not win
 * (bench/RESULTS.md). */
#define DEMO_PAIR_PROMPTS 300
#define DEMO_QUICK_PAIR_PROMPTS 256
#define DEMO_IMAGES_PER_PROMPT 4
/* DDIM steps and guidance of every demo sample. */
#define DEMO_SAMPLE_STEPS 20
#define DEMO_GUIDANCE 3.0
/* Diffusion-DPO settings (official loss convention, see trainer.h). lr
 * 1e-4 made the result depend on the training seed (37% to 66% q3 wins by
 * the judge); 3e-5 for 400 steps won with both seeds tried (61.5%, 66.8%)
 * (bench/RESULTS.md, "dpo demo, second round"). */
#define DEMO_DPO_BETA 500.0
#define DEMO_DPO_LR 3e-5
#define DEMO_DPO_BATCH 8
#define DEMO_DPO_STEPS 400
#define DEMO_QUICK_DPO_STEPS 400
/* Held-out prompts generated by both models and put to the raters. */
#define DEMO_HELDOUT 200
#define DEMO_QUICK_HELDOUT 200
/* Held-out prompts whose two base samples, labelled by the judge, measure
 * the tuned model's implicit-reward accuracy; timesteps drawn a pair. */
#define DEMO_REWARD_PROMPTS 100
#define DEMO_QUICK_REWARD_PROMPTS 32
#define DEMO_REWARD_TIMESTEPS 10
/* Simulated raters: Bradley-Terry temperature (judge-score units) and the
 * share of random clickers. */
#define DEMO_RATER_NOISE 0.05
#define DEMO_RANDOM_SHARE 0.1

typedef struct {
  const char *out;          /* every artifact goes here; a finished stage is reused */
  const char *base;         /* base pipeline folder */
  int quick;
  uint64_t seed;
  int threads;
  int jobs;                 /* sampling worker processes (eval_generate_config.jobs); <= 0: one a core, at most 8 */
  /* 0 (or 0.0): the DEMO_* default of the mode (full or quick). */
  int pair_prompts, images_per_prompt, dpo_steps, heldout, reward_prompts, sample_steps;
  double beta, lr;
} demo_options;

void demo_options_defaults(demo_options *opt);
/* Replaces every zero setting by its default for opt->quick. */
void demo_options_resolve(demo_options *opt);
/* Runs the stages not yet done in opt->out (see demo/run.c). */
int demo_run(const demo_options *opt, dpo_error *err);

#endif
