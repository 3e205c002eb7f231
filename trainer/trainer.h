/* trainer: the parts of Diffusion-DPO training that do not touch a network.
 *
 * The loss and its gradient with respect to the per-sample MSEs that the
 * networks produce, the optimizers (AdamW, Adafactor) over flat float
 * parameters, gradient-norm clipping, the learning-rate schedule, the pairs
 * dataset with its deterministic epoch order, the per-step log, and atomic
 * checkpoint folders with the training state needed for a bitwise resume.
 * The training loop that ties these to the UNet (it needs the models) will
 * live beside them and only call what is here.
 *
 * Errors follow core.h: DPO_OK / DPO_ERR_DATA / DPO_ERR_USAGE and a dpo_error
 * naming the file, line and field. Nothing here prints. */
#ifndef DPO_TRAINER_H
#define DPO_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ===================================================================== loss
 *
 * Convention (the official Diffusion-DPO code, SalesforceAIResearch
 * DiffusionDPO train.py): for pair i with per-sample MSEs (mean over latent
 * elements) of the policy (model) and the frozen reference (ref) on the
 * winner w and the loser l,
 *
 *   model_diff = model_w - model_l,  ref_diff = ref_w - ref_l
 *   inside     = -0.5 * beta * (model_diff - ref_diff)
 *   loss_i     = -logsigmoid(inside),  loss = mean_i loss_i
 *
 * so beta 5000 here is beta 2500 in diffusers' SD1.5 DPO script (which drops
 * the 0.5). Implicit rewards: r_w = -0.5 beta (model_w - ref_w), r_l likewise,
 * and inside = r_w - r_l (the reward margin). The implicit accuracy counts
 * inside > 0; a tie (inside == 0) counts as wrong, as in the official code.
 *
 * Ties (--ties half). A tie pair carries the soft label p = 0.5 (p = 1 for a
 * strict pair, winner first). Its loss is the Bradley-Terry cross-entropy
 * with a soft target, -[p logsigmoid(inside) + (1-p) logsigmoid(-inside)],
 * which for p = 1 is exactly the official loss and for p = 0.5 is the mean of
 * the loss over both orderings of the pair. It is minimised at inside = 0:
 * a tie teaches the policy to change both images' denoising error by the same
 * amount relative to the reference, not to prefer either. d loss_i / d inside
 * = sigmoid(inside) - p. Tie pairs are left out of the implicit accuracy
 * (which has no right answer for them) but counted in the loss and the MSEs.
 *
 * SFT. loss_i = p model_w + (1-p) model_l: for strict pairs the mean MSE of
 * the winners (the official --sft); a tie trains on both images equally.
 * The reference is not used. */

#define DPO_BETA_CONVENTION \
  "inside = -0.5 * beta * (model_diff - ref_diff), loss = -logsigmoid(inside) " \
  "(official Diffusion-DPO convention; beta B here equals beta B/2 in diffusers' SD1.5 script)"

typedef struct {
  int n_pairs;
  int n_ties;            /* pairs with label 0.5 */
  double loss;
  double model_mse_w;    /* batch means */
  double model_mse_l;
  double ref_mse_w;      /* 0 for SFT */
  double ref_mse_l;
  double implicit_acc;   /* over strict pairs; 0 when n_pairs == n_ties */
  double reward_w;       /* means of r_w, r_l and of the margin inside (DPO only) */
  double reward_l;
  double reward_margin;
} dpo_loss_stats;

/* Numerically stable log(sigmoid(x)) and sigmoid(x) for any finite x. */
double dpo_logsigmoid(double x);
double dpo_sigmoid(double x);

/* The DPO loss over n pairs. label is the preference for the first (winner)
 * image, 1 or 0.5 (any value in [0, 1] is accepted); NULL means all 1.
 * grad_model_w / grad_model_l (may be NULL) receive d loss / d model_w[i] and
 * d loss / d model_l[i]: the seeds that back-propagate through the policy.
 * Returns DPO_ERR_USAGE for n < 1, beta <= 0, a label outside [0, 1] or a
 * non-finite MSE. */
int dpo_loss_dpo(const float *model_w, const float *model_l, const float *ref_w, const float *ref_l,
                 const float *label, int n, double beta, float *grad_model_w, float *grad_model_l,
                 dpo_loss_stats *stats, dpo_error *err);

/* The SFT loss (see above); grad_model_l receives (1-p)/n (0 for strict pairs). */
int dpo_loss_sft(const float *model_w, const float *model_l, const float *label, int n,
                 float *grad_model_w, float *grad_model_l, dpo_loss_stats *stats, dpo_error *err);

/* The stats as one JSON object (keys as the per-step log writes them). */
json_t *dpo_loss_stats_json(const dpo_loss_stats *stats);

/* ============================================================ step log
 *
 * OUT/train_log.jsonl: one JSON object per optimizer step (sorted keys):
 * step, lr, grad_norm, pairs_per_s, elapsed_s, eta_s and the loss stats
 * above. Non-finite numbers (an exploding gradient norm) and unknown ones are
 * null. On resume from step k the log keeps its lines of steps <= k (the
 * lines a crashed run wrote past its last checkpoint, and a torn last line,
 * are dropped, rewritten atomically), so the log always describes the run
 * that produced the weights. */

typedef struct {
  FILE *fp;
  char path[4096];
  int64_t kept;          /* lines kept from an earlier run on resume */
} dpo_train_log;

typedef struct {
  int64_t step;
  double lr;
  double grad_norm;
  double pairs_per_s;
  double elapsed_s;
  double eta_s;          /* < 0: unknown */
} dpo_step_info;

/* resume_step < 0 starts a new log (an existing one is replaced). */
int dpo_train_log_open(dpo_train_log *log, const char *path, int64_t resume_step, dpo_error *err);
int dpo_train_log_write(dpo_train_log *log, const dpo_step_info *info, const dpo_loss_stats *stats, dpo_error *err);
void dpo_train_log_close(dpo_train_log *log);
/* The TTY progress line: "step 120/2000 loss 0.6931 acc 0.500 lr 1.2e-08
 * |g| 0.53 3.20 pairs/s ETA 1:02:03" (acc "-" when there are only ties). */
void dpo_step_format(const dpo_step_info *info, int64_t max_steps, const dpo_loss_stats *stats, char *buf, size_t n);

/* =============================================================== optimizers
 *
 * Parameters are flat float32 arrays with a shape; the optimizer borrows the
 * data and gradient pointers and owns its moments. */

typedef struct {
  const char *name;      /* borrowed; unique, used as the key of saved state */
  int ndim;
  int64_t shape[DPO_ST_MAX_DIMS];
  float *data;
  float *grad;
} dpo_param;

int64_t dpo_param_numel(const dpo_param *p);

typedef enum { DPO_OPTIM_ADAMW = 0, DPO_OPTIM_ADAFACTOR = 1 } dpo_optim_kind;

/* AdamW as torch.optim.AdamW (amsgrad off): p *= 1 - lr wd; m = lerp(m, g,
 * 1-b1); v = b2 v + (1-b2) g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
 *
 * Adafactor as transformers.Adafactor(scale_parameter=False, relative_step=
 * False, warmup_init=False, lr=external): parameters of 2 or more dimensions
 * keep factored second moments over their last two dimensions (rows: mean
 * over the last, columns: mean over the second last; leading dimensions are
 * independent), others a full one; beta2_t = 1 - t^decay_rate; the update is
 * divided by max(1, RMS(update) / clip_threshold); weight decay p -= wd lr p;
 * a first moment only when beta1 > 0 (transformers' beta1=None is 0 here). */
typedef struct {
  dpo_optim_kind kind;
  double weight_decay;
  /* AdamW */
  double beta1, beta2, eps;
  /* Adafactor */
  double eps1, eps2, clip_threshold, decay_rate, adafactor_beta1;
} dpo_optim_config;

/* torch's AdamW defaults (0.9, 0.999, 1e-8, wd 1e-2) or transformers'
 * Adafactor defaults (eps (1e-30, 1e-3), clip 1, decay -0.8, no beta1, wd 0). */
void dpo_optim_config_default(dpo_optim_config *cfg, dpo_optim_kind kind);
const char *dpo_optim_kind_name(dpo_optim_kind kind);   /* "adamw", "adafactor" */
int dpo_optim_kind_parse(const char *name, dpo_optim_kind *out, dpo_error *err);

typedef struct {
  float *exp_avg;        /* AdamW m; Adafactor first moment (beta1 > 0) or NULL */
  float *exp_avg_sq;     /* AdamW v; Adafactor unfactored v or NULL */
  float *exp_avg_sq_row; /* Adafactor factored: shape[:-1] */
  float *exp_avg_sq_col; /* Adafactor factored: shape[:-2] + shape[-1:] */
} dpo_optim_slot;

typedef struct {
  dpo_optim_config cfg;
  dpo_param *params;     /* a copy of the caller's array (pointers borrowed) */
  dpo_optim_slot *slots;
  int n_params;
  int64_t step;          /* updates done */
} dpo_optimizer;

int dpo_optim_init(dpo_optimizer *opt, const dpo_optim_config *cfg, const dpo_param *params, int n,
                   dpo_error *err);
/* One update of every parameter from its gradient with learning rate lr. */
void dpo_optim_step(dpo_optimizer *opt, double lr);
void dpo_optim_free(dpo_optimizer *opt);

/* The moments as safetensors ("<param>.exp_avg", ".exp_avg_sq",
 * ".exp_avg_sq_row", ".exp_avg_sq_col") with metadata optimizer, step and the
 * configuration. Load requires the same optimizer, the same parameters with
 * the same shapes and every moment present, and restores step. */
int dpo_optim_save(const dpo_optimizer *opt, const char *path, dpo_error *err);
int dpo_optim_load(dpo_optimizer *opt, const char *path, dpo_error *err);

/* As torch.nn.utils.clip_grad_norm_: the total L2 norm over all gradients;
 * when max_norm > 0 every gradient is scaled by min(1, max_norm / (norm +
 * 1e-6)). Returns the norm before clipping (may be inf or nan). */
double dpo_clip_grad_norm(dpo_param *params, int n, double max_norm);

/* ============================================================ lr schedule
 *
 * Constant with linear warmup, as diffusers' get_constant_schedule_with_
 * warmup: update s (0-based) uses lr * s / warmup while s < warmup, then lr.
 * (So the first update of a warmed-up run has lr 0, as in the official code.) */

typedef struct {
  double lr;             /* the effective (possibly scaled) learning rate */
  int64_t warmup_steps;
} dpo_lr_schedule;

/* Exactly one of warmup_steps (>= 0) and warmup_frac (in [0, 1], of
 * max_steps, rounded to the nearest step) is used: pass warmup_frac < 0 to
 * use the steps. */
int dpo_lr_schedule_init(dpo_lr_schedule *s, double lr, int64_t warmup_steps, double warmup_frac,
                         int64_t max_steps, dpo_error *err);
double dpo_lr_at(const dpo_lr_schedule *s, int64_t step);

/* --scale-lr: lr x batch x grad_accum x workers when scale is set, else lr.
 * Writes a sentence that states the effective lr and how it was reached
 * (for printing at the start of training). */
double dpo_effective_lr(double lr, int batch_size, int grad_accum, int workers, int scale,
                        char *sentence, size_t n);

/* ================================================================== pairs
 *
 * pairs.jsonl: one JSON object per line with caption (string), image_0 and
 * image_1 (paths relative to the file's folder, inside it: no absolute paths
 * and no ".." parts), label_0 (0, 0.5 or 1: the preference for image_0),
 * source (string), and optional model_0 / model_1 (strings, the generators).
 * Other keys are ignored. Blank lines are allowed. */

#define DPO_PAIRS_MAX_LINE_BYTES (1u << 20)
#define DPO_PAIRS_MAX_PATH_BYTES 1024
#define DPO_PAIRS_MAX_CAPTION_BYTES (64u * 1024u)

/* One parsed line, in file order (strings owned). */
typedef struct {
  char *caption;
  char *image_0;
  char *image_1;
  double label_0;
  char *source;
  char *model_0;         /* NULL when absent */
  char *model_1;
} dpo_pair_record;

/* Parses and validates one line (not NUL-terminated); `where` ("pairs.jsonl:12")
 * starts every message, which names the field. On failure rec is zeroed. */
int dpo_pair_record_parse(const char *line, size_t len, const char *where, dpo_pair_record *rec,
                          dpo_error *err);
void dpo_pair_record_free(dpo_pair_record *rec);

typedef enum { DPO_TIES_SKIP = 0, DPO_TIES_HALF = 1 } dpo_ties_mode;
int dpo_ties_mode_parse(const char *name, dpo_ties_mode *out, dpo_error *err);

/* A training pair, winner first. */
typedef struct {
  char *caption;
  char *image_w;         /* full paths (the file's folder joined) */
  char *image_l;
  float label;           /* 1 for a strict pair, 0.5 for a tie (order as in the file) */
  char *source;
  char *model_w;         /* NULL when absent */
  char *model_l;
  int line;              /* 1-based line in pairs.jsonl */
  int swapped;           /* 1 when image_1 was the winner */
} dpo_pair;

typedef struct {
  dpo_ties_mode ties;
  /* Keep only pairs whose two generators both contain this substring (the
   * official --dreamlike_pairs_only is "dream"); NULL keeps all. Pairs
   * without model names do not match. */
  const char *model_filter;
  int check_images;      /* stat every image; a missing one is an error */
} dpo_pairs_options;

typedef struct {
  char path[4096];
  char dir[4096];
  dpo_pair *pairs;
  int n;
  int n_lines;           /* non-blank lines read */
  int n_ties_skipped;
  int n_filtered;        /* dropped by model_filter */
} dpo_pairs;

int dpo_pairs_load(const char *path, const dpo_pairs_options *opt, dpo_pairs *out, dpo_error *err);
void dpo_pairs_free(dpo_pairs *set);

/* Epoch order: a Fisher-Yates shuffle of 0..n-1 drawn from the Philox stream
 * ("pairs-epoch", epoch) under seed, so the order of any epoch is a pure
 * function of (seed, epoch, n), and the data cursor (epoch, position) is all
 * that resume needs. */
typedef struct {
  uint64_t seed;
  uint64_t epoch;
  uint64_t position;     /* index into order of the next pair */
  int n;
  uint32_t *order;
} dpo_pair_sampler;

int dpo_pair_sampler_init(dpo_pair_sampler *s, int n, uint64_t seed, uint64_t epoch, uint64_t position,
                          dpo_error *err);
/* The index of the next pair; moves to the next epoch (a new order) at the end. */
int dpo_pair_sampler_next(dpo_pair_sampler *s);
void dpo_pair_sampler_free(dpo_pair_sampler *s);

/* ============================================================ checkpoints
 *
 * OUT/checkpoint-<step>/ is built as OUT/.tmp-checkpoint-<step>/, every file
 * and folder in it fsynced, then renamed into place and OUT fsynced: a folder
 * with the final name is always complete. Deletion renames to
 * OUT/.deleting-checkpoint-<step>/ first. */

typedef struct {
  char out_dir[2048];
  char tmp_dir[4096];    /* write the checkpoint's files here */
  char final_dir[4096];
  int64_t step;
  int open;
} dpo_checkpoint;

/* Creates the temporary folder (removing a stale one of the same step). */
int dpo_checkpoint_begin(dpo_checkpoint *ck, const char *out_dir, int64_t step, dpo_error *err);
/* fsyncs everything, renames into place (replacing an older folder of the same step). */
int dpo_checkpoint_commit(dpo_checkpoint *ck, dpo_error *err);
/* Removes the temporary folder. Safe to call twice or after commit. */
void dpo_checkpoint_abort(dpo_checkpoint *ck);

/* Complete checkpoints of out_dir: folders named checkpoint-<digits> holding
 * train_state/state.json, ascending by step (*steps freed by the caller). */
int dpo_checkpoint_list(const char *out_dir, int64_t **steps, int *n, dpo_error *err);
/* --resume latest: the complete checkpoint with the highest step; *found 0
 * when there is none (not an error). */
int dpo_checkpoint_latest(const char *out_dir, char *path, size_t n, int64_t *step, int *found,
                          dpo_error *err);
/* --keep-checkpoints K: deletes the oldest complete ones beyond K (K < 1 keeps all). */
int dpo_checkpoint_rotate(const char *out_dir, int keep, int *n_deleted, dpo_error *err);
/* Removes leftovers of interrupted writes and deletions (.tmp-checkpoint-*,
 * .deleting-checkpoint-*). */
int dpo_checkpoint_clean_temps(const char *out_dir, int *n_removed, dpo_error *err);
/* rm -rf for a folder the trainer made (does not follow symlinks). */
int dpo_remove_tree(const char *path, dpo_error *err);

/* train_state/: state.json (step, data cursor, RNG streams, free-form
 * settings) and optimizer.safetensors. Counters are written as decimal
 * strings so that 64-bit values survive JSON. */
#define DPO_TRAIN_STATE_MAX_RNG 8

typedef struct {
  char name[32];
  dpo_rng rng;
} dpo_named_rng;

typedef struct {
  int64_t step;
  uint64_t epoch;        /* data cursor */
  uint64_t position;
  uint64_t data_seed;
  int n_rng;
  dpo_named_rng rngs[DPO_TRAIN_STATE_MAX_RNG];
} dpo_train_state;

/* Writes dir/train_state/ (created) inside a checkpoint folder. */
int dpo_train_state_write(const char *checkpoint_dir, const dpo_train_state *state,
                          const dpo_optimizer *opt, dpo_error *err);
/* Reads it back; opt (already initialised over the same parameters) gets its moments. */
int dpo_train_state_read(const char *checkpoint_dir, dpo_train_state *state, dpo_optimizer *opt,
                         dpo_error *err);

#endif
