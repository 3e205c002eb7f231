/* eval: scoring generated images.
 *
 * A scorer turns a batch of (image, prompt) pairs into one or more named
 * scores per pair. Scores are "higher is better" on each score's own scale.
 * By convention a scorer that judges images the way the paper's questions do
 * names its scores:
 *   "alignment"  how well the image fits its prompt (PAPER.md q3)
 *   "appeal"     how good the image looks, prompt ignored (q2)
 *   "overall"    general preference given the prompt (q1)
 * so that simulated raters (dpo study simulate) can answer each question
 * from the score that matches it. Scorers are found by name in a registry;
 * the built-in ones below are plain pixel statistics, meant for tests where
 * the truth must be known exactly. Model-based scorers (the shapes-world
 * judge, an HTTP scorer) register themselves with eval_register_scorer. */
#ifndef DPO_EVAL_H
#define DPO_EVAL_H

#include "core/core.h"
#include "trainer/trainer.h"

#define EVAL_MAX_SCORES 4
#define EVAL_MAX_SCORERS 32

typedef struct {
  const dpo_image *image;   /* 8-bit, 1, 3 or 4 channels */
  const char *prompt;       /* UTF-8; scorers that ignore prompts accept NULL */
} eval_pair;

typedef struct eval_scorer eval_scorer;

/* Fills scores[i * n_scores + k] with score k of pair i, for i < n. Returns
 * DPO_OK or fails with err naming the pair. */
typedef int (*eval_score_fn)(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores,
                             dpo_error *err);

struct eval_scorer {
  const char *name;          /* registry key, e.g. "brightness" */
  const char *description;   /* one line for `--help` and logs: what it really measures */
  int n_scores;
  const char *score_names[EVAL_MAX_SCORES];
  eval_score_fn score;
  void *state;               /* the scorer's own data (a model, a URL), or NULL */
};

/* Adds a scorer to the registry (the pointer is kept, not copied). A second
 * scorer with a name already registered, or a malformed one, is refused. */
int eval_register_scorer(const eval_scorer *scorer, dpo_error *err);
/* The scorer of that name (built-in or registered), or NULL. */
const eval_scorer *eval_find_scorer(const char *name);
/* Every scorer, built-ins first: for listing them. */
int eval_scorer_count(void);
const eval_scorer *eval_scorer_at(int index);
/* Index of a named score of a scorer, or -1. */
int eval_score_index(const eval_scorer *scorer, const char *score_name);
/* Scores a batch: checks the arguments, then calls scorer->score. */
int eval_score(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores, dpo_error *err);

/* Built-in test scorers (pixel statistics over RGB; gray counts as R=G=B;
 * alpha is ignored):
 *   brightness  "brightness" = mean Rec. 601 luma / 255, in [0, 1]
 *   redness     "redness"    = mean of (R - (G + B) / 2) / 255, in [-1, 1]
 *   pixel-pair  "appeal" = brightness, "alignment" = redness: a test double
 *               for a two-score judge, so that questions using different
 *               scores can be told apart. It knows nothing of prompts or
 *               of what makes an image appealing. */
/* And one model-based built-in:
 *   shapes-judge  the shapes world's pixel judge (world/world.h):
 *               "alignment" in [0, 1], "appeal" in [0, 1], "overall" =
 *               0.7 alignment + 0.3 appeal; prompts outside the shapes
 *               grammar are refused with DPO_ERR_DATA. */
double eval_mean_luma(const dpo_image *image);
double eval_mean_redness(const dpo_image *image);

/* ============================================================== sampling
 *
 * The Stable Diffusion pipelines as diffusers runs them, on a loaded
 * dpo_pipeline (trainer/trainer.h):
 *
 * txt2img. The prompt and the negative prompt (or "") are encoded by the
 * text encoder; with guidance > 1 each step runs the UNet on the batch
 * [uncond..., cond...] and takes uncond + guidance * (cond - uncond), as
 * StableDiffusionPipeline. The starting latent is the caller's standard
 * normals times the sampler's init_noise_sigma. The final latent is decoded
 * by the VAE (divided by scaling_factor first) or, in a pixel-space
 * pipeline (no VAE), is the image itself; images in [-1, 1] become 8-bit
 * RGB by round(255 * clamp(x / 2 + 0.5, 0, 1)), as diffusers' numpy_to_pil.
 *
 * img2img (SDEdit). As StableDiffusionImg2ImgPipeline: of the `steps`
 * timesteps the last floor(steps * strength) are run; the source image is
 * encoded (the posterior's mean times scaling_factor, as diffusers'
 * retrieve_latents with sample_mode="argmax"; the image itself in pixel
 * space), noised to the first of them with the sampler's add_noise, and the
 * sampler starts there (set_begin_index).
 *
 * Noise. The starting noise of an image is a pure function of (seed, prompt
 * id, image index): eval_initial_noise, so base and tuned models start every
 * image from the same numbers, whatever the batching. */

typedef struct {
  int sampler;                  /* dpo_scheduler_kind, or -1 for the pipeline's own scheduler */
  int steps;                    /* inference steps */
  float guidance;               /* classifier-free guidance scale; <= 1 turns it off */
  const char *negative_prompt;  /* NULL: "" */
  int resolution;               /* image side in pixels; 0: the UNet's sample_size x the VAE's factor */
  float strength;               /* img2img only, in (0, 1] */
  kn_backend backend;           /* where the text encoder, UNet and VAE decoder run
                                   (default the CPU); SDEdit's encoding always runs
                                   on the CPU in float32 (a host copy of the VAE
                                   when the pipeline's decodes on a device or in bf16) */
  kn_dtype precision;           /* KN_BF16: the UNet and the VAE frozen in bf16 mixed
                                   precision (dpo_unet_set_precision,
                                   dpo_vae_set_precision; before their first plans);
                                   KN_F32 (default): the models as they are */
} eval_sample_options;

/* diffusers' defaults: the pipeline's sampler, 50 steps, guidance 7.5. */
void eval_sample_options_default(eval_sample_options *opt);

typedef struct eval_sampler eval_sampler;

/* Plans the networks of pipe (which must outlive the sampler) for batches of
 * up to `batch` images. */
int eval_sampler_open(eval_sampler **out, dpo_pipeline *pipe, const eval_sample_options *opt, int batch,
                      int n_threads, dpo_error *err);
void eval_sampler_close(eval_sampler *s);
/* The image side in pixels and the shape of one starting latent. */
int eval_sampler_resolution(const eval_sampler *s);
void eval_sampler_latent_shape(const eval_sampler *s, int *channels, int *height, int *width);
size_t eval_sampler_latent_numel(const eval_sampler *s);

/* Standard normals of image `image_index` of prompt `prompt_id` under seed:
 * Philox stream dpo_rng_stream_id(prompt_id, image_index, 0), elements 0..n. */
void eval_initial_noise(uint64_t seed, const char *prompt_id, int64_t image_index, float *out, size_t n);

/* n <= batch images from prompts[i] and noise (n x latent_numel standard
 * normals). images[i] is allocated (RGB); final_latents (may be NULL)
 * receives the last latents, n x latent_numel. */
int eval_txt2img(eval_sampler *s, const char *const *prompts, int n, const float *noise, float *final_latents,
                 dpo_image *images, dpo_error *err);
/* SDEdit of sources[i] (RGB, any size; resized and centre-cropped to the
 * resolution) with prompts[i]; noise as for txt2img. */
int eval_img2img(eval_sampler *s, const char *const *prompts, int n, const dpo_image *sources, const float *noise,
                 float *final_latents, dpo_image *images, dpo_error *err);

/* Resizes (area-weighted) so that the shorter side is `side`, then crops the
 * centre square: an RGB image side x side. */
int eval_resize_center_crop(const dpo_image *src, int side, dpo_image *out, dpo_error *err);

/* ============================================================ prompt lists
 *
 * What `--prompts` names:
 *   SET or FILE          a built-in set or prompt file (prompts/prompts.h)
 *   SET:FILTER           only the prompts whose category (case-insensitive)
 *                        or id without "SET:" is FILTER (the text after the
 *                        last colon), e.g. parti:Animals, hpsv2:anime,
 *                        parti:17, my.txt:3
 *   world:SPLIT:N[:SEED] the first N prompts of a shapes-world split (train
 *                        or heldout) in world_prompts_generate's order for
 *                        SEED (default 0): ids world-SPLIT:K, set
 *                        "world-SPLIT", category "K-object"
 * The built-in tedbench is an edit set: each item carries the absolute path
 * of its source image. */
typedef struct {
  char *id;
  char *text;
  char *category;
  char *source_image;   /* edits only, else NULL */
} eval_prompt_item;

typedef struct {
  char set_name[256];
  int is_edit;
  eval_prompt_item *items;
  int n, cap;
} eval_prompt_list;

int eval_prompt_list_load(const char *spec, eval_prompt_list *list, dpo_error *err);
void eval_prompt_list_free(eval_prompt_list *list);

/* ============================================================= generation
 *
 * A run folder (DESIGN.md): RUN/images/PPPPPP-I.png (P the prompt's position
 * in the list, I the image index) with the settings in PNG text chunks
 * (prompt, prompt_id, seed, image_index, model, settings), RUN/sources/
 * PPPPPP.png for edits (the source, resized and centre-cropped), and
 * RUN/manifest.jsonl with one line per image and exactly the keys
 * prompt_set, prompt_id, prompt, category, seed, image_index, file, sha256,
 * model, settings (settings: mode "txt2img" or "sdedit", sampler, steps,
 * guidance, negative_prompt, resolution, and for edits strength and
 * source_image, a path relative to RUN).
 *
 * Resume. Lines are appended (under an flock of RUN/.lock, so shards may
 * share a folder) after their image is written atomically. A rerun first
 * rewrites the manifest without a torn last line, without lines whose image
 * is missing or has another hash, and without duplicates, then makes only
 * the images it lacks. A run with other settings or another model in the
 * same folder is refused. */
typedef struct {
  const char *model;          /* pipeline folder */
  const char *prompts;        /* eval_prompt_list spec */
  const char *out;            /* run folder */
  eval_sample_options sample;
  int images_per_prompt;      /* >= 1 */
  int batch_size;             /* >= 1 */
  uint64_t seed;
  int limit;                  /* first N prompts; 0: all */
  int shard_index, shard_count;   /* prompt k is this shard's when k % count == index */
  int threads;                /* 0: OpenMP's default */
  int quiet;                  /* no progress bar */
  /* > 1: that many worker processes (fork), worker i making shard i of
   * jobs, each with `threads` threads; the progress bar is worker 0's. On
   * small models separate processes use cores far better than OpenMP
   * threads inside one sampler (per-layer work is too small to share).
   * Needs shard_count 1. */
  int jobs;
} eval_generate_config;

#define EVAL_MAX_JOBS 256

typedef struct {
  int planned;                /* images of this shard */
  int skipped;                /* already done */
  int generated;
  int dropped_lines;          /* torn, invalid or duplicate manifest lines removed */
} eval_generate_stats;

void eval_generate_config_default(eval_generate_config *cfg);
int eval_generate(const eval_generate_config *cfg, eval_generate_stats *stats, dpo_error *err);

/* ============================================================ HTTP scorer
 *
 * Scores images with a model behind a URL (PickScore, HPSv2, an aesthetic
 * predictor...). Request: POST URL, Content-Type application/json, body
 *   {"items": [{"prompt": "<text>", "image_png_base64": "<base64 of a PNG>"},
 *              ...]}
 * with at most `batch` items. Response: status 200 and
 *   {"scores": [<number>, ...]}
 * with one finite number per item, in order, higher is better (other keys are
 * ignored). The scorer's one score is named "score". A connection failure, a
 * timeout, a status other than 200 or a response that is not that JSON is
 * retried up to `retries` times, waiting backoff_s, 2 backoff_s, ... between
 * tries (client errors 4xx other than 408 and 429 are not retried); then the
 * call fails with the last error. It never returns a made-up score. */
#define EVAL_HTTP_MAX_URL 2048

typedef struct {
  char url[EVAL_HTTP_MAX_URL];
  double timeout_s;     /* per request (default 60) */
  int retries;          /* default 3 */
  double backoff_s;     /* default 1 */
  int batch;            /* items per request (default 16) */
} eval_http_options;

void eval_http_options_default(eval_http_options *opt, const char *url);
/* A scorer named "http:URL" (not registered); free with eval_http_scorer_free. */
int eval_http_scorer_create(const eval_http_options *opt, eval_scorer **out, dpo_error *err);
void eval_http_scorer_free(eval_scorer *scorer);
/* The registered scorer "http:URL", created and registered on first use
 * (it lives until the process ends). NULL on error. */
const eval_scorer *eval_http_scorer_register(const eval_http_options *opt, dpo_error *err);

/* ============================================================ run scores
 *
 * A run folder's images read back from its manifest, scored, and
 * summarised. RUN/scores-<scorer>.jsonl (the scorer's name with characters
 * other than letters, digits, '.', '_' and '-' replaced by '_') holds one
 * line per image: prompt_set, prompt_id, image_index, seed, file, and one key
 * per score name; it is written atomically. */
typedef struct {
  char *prompt_set, *prompt_id, *prompt, *file;
  int64_t seed, image_index;
  double scores[EVAL_MAX_SCORES];
} eval_run_item;

typedef struct {
  char dir[4096];
  eval_run_item *items;
  int n;
} eval_run;

/* Reads RUN/manifest.jsonl (errors name the line and key; a run without
 * images is an error). */
int eval_run_load(const char *run_dir, eval_run *run, dpo_error *err);
void eval_run_free(eval_run *run);
/* Scores every image in batches; quiet = no progress bar. */
int eval_run_score(eval_run *run, const eval_scorer *scorer, int batch, int quiet, dpo_error *err);
/* Writes RUN/scores-<name>.jsonl; path (may be NULL) receives its path. */
int eval_run_write_scores(const eval_run *run, const eval_scorer *scorer, char *path, size_t path_size,
                          dpo_error *err);

/* Mean and median of x with percentile-bootstrap 95% intervals from
 * n_resamples resamples of the values (Philox stream
 * dpo_rng_stream_id("eval.bootstrap", 0, 0) under seed). */
typedef struct {
  int n;
  double mean, mean_lo, mean_hi;
  double median, median_lo, median_hi;
} eval_summary;

int eval_summarize(const double *x, int n, int n_resamples, uint64_t seed, eval_summary *out, dpo_error *err);

/* ===================================================== AI-feedback pairs
 *
 * OUT/run/ is a run folder (eval_generate, so it resumes) with
 * images_per_prompt images of every prompt, each from its own noise (image
 * index); the images are scored (OUT/run/scores-<scorer>.jsonl) and every
 * two images i < j of a prompt become one line of OUT/pairs.jsonl in the
 * format trainer/trainer.h reads: caption, image_0 and image_1 (paths
 * relative to OUT), label_0 = 1 when score_i > score_j + tie_margin, 0 when
 * score_j > score_i + tie_margin, else 0.5; source "ai-feedback:<scorer>:
 * <score>"; model_0 and model_1 the model. Written atomically.
 * With best_worst, each prompt gives one line only: its highest-scoring image
 * (image_0) against its lowest (none when they tie within the margin). */
typedef struct {
  eval_generate_config gen;   /* gen.out is OUT; images go to OUT/run */
  const eval_scorer *scorer;
  const char *score_name;     /* NULL: the scorer's first score */
  double tie_margin;          /* >= 0 */
  int score_batch;
  int best_worst;             /* 1: best against worst of each prompt only */
} eval_pairs_config;

typedef struct {
  int n_pairs, n_ties, n_prompts;
  int n_tied_prompts;         /* best_worst: prompts whose images all tie */
} eval_pairs_stats;

int eval_make_pairs(const eval_pairs_config *cfg, eval_pairs_stats *stats, dpo_error *err);
/* Re-scores an existing pairs.jsonl (the paper's PickScore relabelling):
 * every line is kept with its other keys, and label_0, score_0, score_1 and
 * source are replaced as above. out_path must be in the same folder as
 * in_path (image paths are relative to it); written atomically (it may be
 * in_path itself). */
int eval_relabel_pairs(const char *in_path, const char *out_path, const eval_scorer *scorer, const char *score_name,
                       double tie_margin, eval_pairs_stats *stats, dpo_error *err);

/* ================================================= implicit-reward accuracy
 *
 * Diffusion-DPO's implicit reward (Eq. 14's inner term, as the loss in
 * trainer.h): for a pair (w, l) with caption c, a timestep t and noise e
 * shared by both images and both models, each model's denoising error
 * mse(x) = mean((net(x_t, t, c) - target)^2) (target e, or v for
 * v-prediction; x_t = DDPM add_noise of the clean latent), and
 *   model_diff = mse_model(w) - mse_model(l), ref_diff likewise,
 *   inside = -0.5 * beta * (model_diff - ref_diff).
 * Averaged over the timesteps, inside > 0 classifies w as preferred (the sign
 * does not depend on beta). Clean latents are the VAE posterior's mean times
 * scaling_factor (the image itself in pixel space) of the image resized and
 * centre-cropped to the resolution; each model encodes the caption with its
 * own text encoder (and VAE). */
typedef struct eval_reward eval_reward;

/* Both pipelines must outlive r and share the latent shape. */
int eval_reward_open(eval_reward **out, dpo_pipeline *model, dpo_pipeline *ref, int resolution, int n_threads,
                     dpo_error *err);
/* The same with text encoders and UNets on `backend` (the VAEs stay on the
 * CPU); eval_reward_open is KN_BACKEND_CPU. */
int eval_reward_open_on(eval_reward **out, dpo_pipeline *model, dpo_pipeline *ref, int resolution, int n_threads,
                        kn_backend backend, dpo_error *err);
void eval_reward_close(eval_reward *r);
size_t eval_reward_latent_numel(const eval_reward *r);
/* For each k < n_t: timesteps[k] in [0, num_train_timesteps) and noise
 * k x latent_numel; fills model_diff[k] and ref_diff[k]. */
int eval_reward_pair(eval_reward *r, const dpo_image *w, const dpo_image *l, const char *caption, int n_t,
                     const int *timesteps, const float *noise, double *model_diff, double *ref_diff, dpo_error *err);
/* The timesteps and noise reward-acc draws for a pair (by its line in the
 * pairs file): Philox streams dpo_rng_stream_id("reward-acc", line, k) under
 * seed; t uniform in [0, num_train_timesteps). */
void eval_reward_draw(const eval_reward *r, uint64_t seed, int line, int n_t, int *timesteps, float *noise);

/* Wilson score interval of k successes in n at z (1.96 for 95%). */
void eval_wilson(int k, int n, double z, double *lo, double *hi);

typedef struct {
  const char *model, *ref, *pairs;   /* pipeline folders and pairs.jsonl */
  int timesteps;                      /* per pair (default 10) */
  uint64_t seed;
  double beta;                        /* reported rewards only (default 5000) */
  int resolution;                     /* 0: the model's */
  int threads;
  kn_backend backend;                 /* text encoders and UNets (default the CPU) */
  kn_dtype precision;                 /* KN_BF16: both UNets frozen in bf16 mixed precision */
  int limit;                          /* first N strict pairs; 0: all */
  const char *out_jsonl;              /* per-pair lines, or NULL */
  int quiet;
} eval_reward_config;

typedef struct {
  int n_pairs, n_correct, n_ties_skipped;
  double accuracy, lo, hi;            /* 95% Wilson */
  double mean_inside;
} eval_reward_result;

void eval_reward_config_default(eval_reward_config *cfg);
int eval_reward_accuracy(const eval_reward_config *cfg, eval_reward_result *res, dpo_error *err);
/* The same accuracy for a scorer (Table 2's other columns): a strict pair is
 * right when the winner's score is higher; mean_inside is the mean score
 * margin. */
int eval_scorer_accuracy(const char *pairs_path, const eval_scorer *scorer, int score_index, int limit,
                         eval_reward_result *res, dpo_error *err);

/* ========================================================= contact sheets
 *
 * One PNG (written atomically) with a row per image of the first run that
 * every run has (same prompt set, prompt id, seed and image index), up to
 * `limit` rows (0: all): the prompt id, image index and prompt text, then
 * each run's image scaled to cell x cell, a column per run under its folder
 * name. *n_rows receives the rows drawn. */
int eval_grid(const char *const *run_dirs, int n_runs, const char *out_path, int cell, int limit, int *n_rows,
              dpo_error *err);

/* ============================================== validation during training
 *
 * For `dpo train --validate-prompts SET --validate-every N --scorer NAME`:
 * samples one image of each of the first `limit` prompts of SET (0: all)
 * from a pipeline held in memory (the weights being trained), with noise
 * eval_initial_noise(seed, prompt id, 0) so every validation starts from the
 * same noise, scores them in memory and returns the median and mean of score
 * `score_index` (the paper's validation metric is the median). Nothing is
 * written. The pipeline's networks are re-planned, so the caller re-plans
 * its training batch afterwards. */
typedef struct {
  int n;
  double median, mean;
} eval_validation;

int eval_validate(dpo_pipeline *pipe, const char *prompts, int limit, const eval_sample_options *opt, uint64_t seed,
                  const eval_scorer *scorer, int score_index, int batch, int n_threads, eval_validation *out,
                  dpo_error *err);

#endif
