/* dpo train: the Diffusion-DPO training loop (official train.py semantics).
 *
 * Per optimizer step, for each of grad_accum micro-batches of batch_size
 * pairs: draw the pairs (epoch order, data cursor), caption dropout, the
 * crop and flip shared by winner and loser, ONE timestep and ONE noise draw
 * per pair; x0 from the cache (or encoded); the text states from the cache
 * (or the text encoder when it trains); then dpo_train_step_run accumulates
 * the gradient of loss / grad_accum (accelerate's backward divides so).
 * Then clip the gradient norm, step the optimizer at the scheduled lr, log,
 * and checkpoint every checkpoint_every steps.
 *
 * On a device (and on the CPU with resident_step) the step is resident
 * (trainer.h, dpo_train_step): the loss gradient, clipping and optimizer
 * run in the backend's memory, and the host reads one block of scalars per
 * step (the norm and the micro-batches' MSEs) to compute what it logs. The
 * CPU's default is the host step, the reference numerics.
 *
 * Every random draw is Philox at (seed, a stream named by what it is for and
 * the step, micro-batch and slot), so a step's inputs are a pure function of
 * (seed, step, data cursor): resume needs only the step and the cursor, and
 * the weights after a resumed run are bitwise those of an uninterrupted one
 * on the CPU backend with the same thread count. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trainer/train_internal.h"

void dpo_train_options_default(dpo_train_options *o) {
  memset(o, 0, sizeof *o);
  o->beta = 5000;
  o->lr = 1e-8;
  o->warmup_steps = 500;
  o->warmup_frac = -1;
  o->max_steps = 2000;
  o->batch_size = 1;
  o->grad_accum = 1;
  o->optimizer = DPO_OPTIM_ADAMW;
  o->weight_decay = -1;
  o->max_grad_norm = 1.0;
  o->resolution = 512;
  o->random_crop = 0;
  o->hflip = 1;
  o->proportion_empty_prompts = 0.2;
  o->ties = DPO_TIES_SKIP;
  o->seed = 0;
  o->checkpoint_every = 500;
  o->keep_checkpoints = 0;
  o->threads = 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int path_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static int validate(const dpo_train_options *o, dpo_error *err) {
  if (!o->base_dir || !o->pairs_path || !o->out_dir) return dpo_fail(err, DPO_ERR_USAGE, "--base, --pairs and --out are required");
  if (!o->sft && !(o->beta > 0 && isfinite(o->beta))) return dpo_fail(err, DPO_ERR_USAGE, "--beta must be > 0");
  if (!(o->lr >= 0 && isfinite(o->lr))) return dpo_fail(err, DPO_ERR_USAGE, "--lr must be >= 0");
  if (o->max_steps < 1) return dpo_fail(err, DPO_ERR_USAGE, "--max-steps must be >= 1");
  if (o->batch_size < 1 || o->batch_size > 4096) return dpo_fail(err, DPO_ERR_USAGE, "--batch-size must be in 1..4096");
  if (o->grad_accum < 1 || o->grad_accum > 1000000) return dpo_fail(err, DPO_ERR_USAGE, "--grad-accum must be >= 1");
  if (o->resolution < 8 || o->resolution > 4096) return dpo_fail(err, DPO_ERR_USAGE, "--resolution must be in 8..4096");
  if (!(o->proportion_empty_prompts >= 0 && o->proportion_empty_prompts <= 1))
    return dpo_fail(err, DPO_ERR_USAGE, "--proportion-empty-prompts must be in [0, 1]");
  if (!(o->sft_weight >= 0 && isfinite(o->sft_weight))) return dpo_fail(err, DPO_ERR_USAGE, "--sft-weight must be >= 0");
  if (o->timestep_min < 0 || o->timestep_max < 0 || (o->timestep_max > 0 && o->timestep_max <= o->timestep_min))
    return dpo_fail(err, DPO_ERR_USAGE, "--timesteps LO:HI needs 0 <= LO < HI");
  if (o->weight_decay >= 0 && !isfinite(o->weight_decay)) return dpo_fail(err, DPO_ERR_USAGE, "--weight-decay must be finite");
  if (o->backend != KN_BACKEND_CPU && o->train_text_encoder)
    return dpo_fail(err, DPO_ERR_USAGE, "--train-text-encoder does not run on %s yet; use --backend cpu",
                    kn_backend_name(o->backend));
  if (o->backend != KN_BACKEND_CPU && o->validate && o->validate_every > 0)
    return dpo_fail(err, DPO_ERR_USAGE, "validation during training does not run on %s yet; use --backend cpu",
                    kn_backend_name(o->backend));
  return DPO_OK;
}

/* What a run holds; freed by run_free in any state. */
typedef struct {
  const dpo_train_options *o;
  dpo_pairs pairs;
  dpo_pipeline pipe;
  dpo_unet *reference;
  kn_ctx ctx;             /* the UNets' (o->backend) */
  int ctx_ok;
  kn_ctx host_ctx;        /* the cache's (VAE, text encoder) when ctx is a device's */
  int host_ctx_ok;
  /* The resident step (a device, or resident_step on the CPU): the
   * optimizer works on the UNet's own tensors in ctx's memory, and each
   * step's logged scalars gather in dev_log: [0] the clipping norm, [1] its
   * factor, then per micro-batch the MSEs of the policy [2B] and of the
   * reference [2B]; host_log is its one download per step, log_label the
   * micro-batches' labels. (Whether the step is resident: step.resident.) */
  float *dev_log, *dev_sum_squares, *host_log, *log_label;
  train_data data;
  dpo_train_step step;
  dpo_optimizer opt;
  dpo_optim_param *params;
  char **param_names;
  int n_params;
  dpo_lr_schedule lr;
  dpo_pair_sampler sampler;
  dpo_train_log log;
  int log_open;
  /* batch buffers */
  float *x0_w, *x0_l, *noise, *text, *dtext;
  int *t;
  float *label;
  int32_t *ids;
  int64_t step_done;
  int checkpoints_committed;
} run;

static void run_free(run *r) {
  if (r->log_open) dpo_train_log_close(&r->log);
  dpo_pair_sampler_free(&r->sampler);
  dpo_optim_free(&r->opt);
  for (int i = 0; i < r->n_params; i++) free(r->param_names[i]);
  free(r->param_names);
  free(r->params);
  dpo_train_step_free(&r->step);
  train_data_free(&r->data);
  if (r->ctx_ok) {
    kn_free(r->ctx.backend, r->dev_log);
    kn_free(r->ctx.backend, r->dev_sum_squares);
  }
  free(r->host_log);
  free(r->log_label);
  if (r->host_ctx_ok) kn_ctx_free(&r->host_ctx);
  if (r->ctx_ok) kn_ctx_free(&r->ctx);
  dpo_unet_free(r->reference);
  dpo_pipeline_free(&r->pipe);
  dpo_pairs_free(&r->pairs);
  free(r->x0_w);
  free(r->x0_l);
  free(r->noise);
  free(r->text);
  free(r->dtext);
  free(r->t);
  free(r->label);
  free(r->ids);
}

static int add_params(run *r, const char *prefix, int n, void (*get)(const void *, int, dpo_param *), const void *m,
                      dpo_error *err) {
  dpo_optim_param *np = realloc(r->params, sizeof *np * (size_t)(r->n_params + n));
  char **nn = realloc(r->param_names, sizeof *nn * (size_t)(r->n_params + n));
  if (np) r->params = np;
  if (nn) r->param_names = nn;
  if (!np || !nn) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int i = 0; i < n; i++) {
    dpo_param p;
    get(m, i, &p);
    size_t len = strlen(prefix) + strlen(p.name) + 2;
    char *name = malloc(len);
    if (!name) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
    snprintf(name, len, "%s.%s", prefix, p.name);
    r->params[r->n_params] = dpo_optim_param_of(&p, name);
    r->param_names[r->n_params++] = name;
  }
  return DPO_OK;
}

static void unet_param_get(const void *m, int i, dpo_param *p) { dpo_unet_param((const dpo_unet *)m, i, p); }

static void stats_add(dpo_loss_stats *sum, const dpo_loss_stats *s, int *n_strict_total) {
  double w = s->n_pairs;
  int strict = s->n_pairs - s->n_ties;
  sum->n_pairs += s->n_pairs;
  sum->n_ties += s->n_ties;
  sum->loss += w * s->loss;
  sum->model_mse_w += w * s->model_mse_w;
  sum->model_mse_l += w * s->model_mse_l;
  sum->ref_mse_w += w * s->ref_mse_w;
  sum->ref_mse_l += w * s->ref_mse_l;
  sum->reward_w += w * s->reward_w;
  sum->reward_l += w * s->reward_l;
  sum->reward_margin += w * s->reward_margin;
  sum->implicit_acc += strict * s->implicit_acc;
  *n_strict_total += strict;
}

static void stats_finish(dpo_loss_stats *s, int n_strict) {
  double n = s->n_pairs > 0 ? s->n_pairs : 1;
  s->loss /= n;
  s->model_mse_w /= n;
  s->model_mse_l /= n;
  s->ref_mse_w /= n;
  s->ref_mse_l /= n;
  s->reward_w /= n;
  s->reward_l /= n;
  s->reward_margin /= n;
  s->implicit_acc = n_strict > 0 ? s->implicit_acc / n_strict : 0;
}

/* The buffers of the resident step's log (see run). */
static int alloc_step_log(run *r, dpo_error *err) {
  const dpo_train_options *o = r->o;
  size_t per_micro = (size_t)4 * o->batch_size, n = 2 + (size_t)o->grad_accum * per_micro;
  r->dev_log = kn_malloc(&r->ctx, n * sizeof(float));
  r->dev_sum_squares = kn_malloc(&r->ctx, (size_t)(r->n_params > 0 ? r->n_params : 1) * sizeof(float));
  r->host_log = malloc(n * sizeof(float));
  r->log_label = malloc((size_t)o->grad_accum * o->batch_size * sizeof(float));
  if (!r->dev_log || !r->dev_sum_squares || !r->host_log || !r->log_label)
    return dpo_fail(err, DPO_ERR_DATA, "out of memory for the step log (%zu floats)", n);
  return kn_ctx_check(&r->ctx, err);
}

/* Resident step, after micro-batch m: its MSEs and labels aside for the log
 * (a copy within the backend's memory: nothing waits). */
static void keep_micro_batch(run *r, int m) {
  int B = r->o->batch_size;
  float *at = r->dev_log + 2 + (size_t)m * 4 * B;
  kn_copy(&r->ctx, at, r->step.dev_mse_model, (size_t)2 * B * sizeof(float));
  kn_copy(&r->ctx, at + 2 * B, r->step.dev_mse_ref, (size_t)2 * B * sizeof(float));
  memcpy(r->log_label + (size_t)m * B, r->label, (size_t)B * sizeof(float));
}

/* Resident step, after the last micro-batch: clips on the backend, then the
 * step's one download (norm and MSEs) and the loss statistics from it,
 * computed by the host's loss code as the host step computes them. */
static int clip_and_gather(run *r, dpo_loss_stats *sum, int *n_strict, double *norm, dpo_error *err) {
  const dpo_train_options *o = r->o;
  int B = o->batch_size;
  size_t n = 2 + (size_t)o->grad_accum * 4 * B;
  /* The optimizer's parameters are r->params: its table clips them in a
   * few launches. */
  dpo_optim_clip_grad_norm(&r->opt, o->max_grad_norm, r->dev_sum_squares, r->dev_log);
  kn_download(&r->ctx, r->host_log, r->dev_log, n * sizeof(float));
  if (kn_ctx_check(&r->ctx, err) != DPO_OK) return DPO_ERR_DATA;
  *norm = r->host_log[0];
  for (int m = 0; m < o->grad_accum; m++) {
    const float *mse = r->host_log + 2 + (size_t)m * 4 * B;
    dpo_loss_stats st;
    int rc = dpo_train_step_stats(mse, mse + 2 * B, r->log_label + (size_t)m * B, B, o->sft, o->beta,
                                  r->step.sft_weight, &st, err);
    if (rc != DPO_OK) return rc;
    stats_add(sum, &st, n_strict);
  }
  return DPO_OK;
}

static void clip_param_get(const void *m, int i, dpo_param *p) { dpo_clip_param((const dpo_clip *)m, i, p); }

/* The inputs of micro-batch m of step s into the batch buffers. */
static int assemble_batch(run *r, int64_t s, int m, int train_te, dpo_error *err) {
  const dpo_train_options *o = r->o;
  int B = o->batch_size;
  size_t per = (size_t)r->data.C * r->data.x0_hw * r->data.x0_hw, per_text = (size_t)r->data.T * r->data.D;
  const char *captions[4096];
  int rc = DPO_OK;
  for (int b = 0; b < B && rc == DPO_OK; b++) {
    uint64_t slot = (uint64_t)m * (uint64_t)B + (uint64_t)b;
    int pair = dpo_pair_sampler_next(&r->sampler);
    const dpo_pair *p = &r->pairs.pairs[pair];
    dpo_rng rng;
    dpo_rng_init(&rng, o->seed, dpo_rng_stream_id("train-slot", (uint64_t)s, slot));
    int empty = dpo_rng_next_uniform(&rng) <= o->proportion_empty_prompts && o->proportion_empty_prompts > 0;
    int flip = o->hflip && dpo_rng_next_uniform(&rng) <= 0.5f;
    double cu = -1, cv = -1;
    if (o->random_crop) {
      cu = 1.0 - dpo_rng_next_uniform(&rng);   /* uniform is (0, 1]: make it [0, 1) */
      cv = 1.0 - dpo_rng_next_uniform(&rng);
    }
    int t_lo = o->timestep_min, t_hi = o->timestep_max > 0 ? o->timestep_max : r->step.sched.num_train_timesteps;
    r->t[b] = t_lo + (int)dpo_rng_next_below(&rng, (uint32_t)(t_hi - t_lo));
    r->label[b] = p->label;
    dpo_rng_normal_fill(o->seed, dpo_rng_stream_id("train-noise", (uint64_t)s, slot), 0, r->noise + (size_t)b * per, per);
    for (int side = 0; side < 2 && rc == DPO_OK; side++) {
      uint64_t vae_stream = o->random_crop ? dpo_rng_stream_id("train-vae", (uint64_t)s, slot * 2 + (uint64_t)side)
                                           : train_data_cache_stream(pair, side, flip);
      rc = train_data_x0(&r->data, pair, side, flip, cu, cv, vae_stream, (side ? r->x0_l : r->x0_w) + (size_t)b * per,
                         err);
    }
    if (rc != DPO_OK) break;
    if (train_te)
      captions[b] = empty ? "" : p->caption;
    else
      rc = train_data_text_cached(&r->data, pair, empty, r->text + (size_t)b * per_text, err);
  }
  if (rc == DPO_OK && train_te) {
    const float *hidden;
    rc = train_data_encode_text(&r->data, captions, B, 1, &hidden, r->ids, err);
    if (rc == DPO_OK) memcpy(r->text, hidden, (size_t)B * per_text * sizeof(float));
  }
  return rc;
}

static int save_checkpoint(run *r, int64_t step, dpo_error *err) {
  dpo_checkpoint ck;
  int rc = dpo_checkpoint_begin(&ck, r->o->out_dir, step, err);
  if (rc != DPO_OK) return rc;
  rc = dpo_pipeline_save(&r->pipe, ck.tmp_dir, err);
  dpo_train_state st;
  memset(&st, 0, sizeof st);
  st.step = step;
  st.epoch = r->sampler.epoch;
  st.position = r->sampler.position;
  st.data_seed = r->o->seed;
  st.n_rng = 1;
  snprintf(st.rngs[0].name, sizeof st.rngs[0].name, "train");
  /* Every draw is counter-based at (seed, stream of the step): the step is the state. */
  dpo_rng_init(&st.rngs[0].rng, r->o->seed, 0);
  st.rngs[0].rng.index = (uint64_t)step;
  if (rc == DPO_OK) rc = dpo_train_state_write(ck.tmp_dir, &st, &r->opt, err);
  if (rc == DPO_OK) rc = dpo_checkpoint_commit(&ck, err);
  if (rc != DPO_OK) {
    dpo_checkpoint_abort(&ck);
    return rc;
  }
  r->checkpoints_committed++;
  int deleted;
  return dpo_checkpoint_rotate(r->o->out_dir, r->o->keep_checkpoints, &deleted, err);
}

/* The final pipeline into OUT: written whole in OUT/.tmp-final, then each
 * component renamed into place, model_index.json last (removed first), so
 * OUT loads as a pipeline only when every component is the new one. */
static int save_final(run *r, dpo_error *err) {
  const char *out = r->o->out_dir;
  char tmp[4200], from[4400], to[4400], old[4400];
  snprintf(tmp, sizeof tmp, "%s/.tmp-final", out);
  if (path_exists(tmp)) {
    int rc = dpo_remove_tree(tmp, err);
    if (rc != DPO_OK) return rc;
  }
  int rc = dpo_pipeline_save(&r->pipe, tmp, err);
  if (rc != DPO_OK) return rc;
  snprintf(to, sizeof to, "%s/model_index.json", out);
  if (path_exists(to) && unlink(to) != 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot remove: %s", to, strerror(errno));
  static const char *const parts[] = {"unet", "text_encoder", "tokenizer", "scheduler", "vae"};
  for (int i = 0; i < 5; i++) {
    snprintf(from, sizeof from, "%s/%s", tmp, parts[i]);
    snprintf(to, sizeof to, "%s/%s", out, parts[i]);
    snprintf(old, sizeof old, "%s/.old-%s", out, parts[i]);
    if (path_exists(to)) {
      if (path_exists(old) && (rc = dpo_remove_tree(old, err)) != DPO_OK) return rc;
      if (rename(to, old) != 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot rename: %s", to, strerror(errno));
      if ((rc = dpo_remove_tree(old, err)) != DPO_OK) return rc;
    }
    if (path_exists(from) && rename(from, to) != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: cannot rename into %s: %s", from, to, strerror(errno));
  }
  snprintf(from, sizeof from, "%s/model_index.json", tmp);
  snprintf(to, sizeof to, "%s/model_index.json", out);
  if (rename(from, to) != 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot rename: %s", from, strerror(errno));
  return dpo_remove_tree(tmp, err);
}

/* Finds the checkpoint to resume from; *dir "" when starting fresh. */
static int resolve_resume(const dpo_train_options *o, char *dir, size_t n, dpo_error *err) {
  dir[0] = '\0';
  if (!o->resume) return DPO_OK;
  if (strcmp(o->resume, "latest") == 0) {
    int64_t step;
    int found = 0;
    if (!path_exists(o->out_dir)) return DPO_OK;
    int rc = dpo_checkpoint_latest(o->out_dir, dir, n, &step, &found, err);
    if (rc != DPO_OK) return rc;
    if (!found) dir[0] = '\0';
    return DPO_OK;
  }
  char marker[4400];
  snprintf(marker, sizeof marker, "%s/train_state/state.json", o->resume);
  if (!path_exists(marker))
    return dpo_fail(err, DPO_ERR_DATA, "--resume %s: not a complete checkpoint (no train_state/state.json)", o->resume);
  snprintf(dir, n, "%s", o->resume);
  return DPO_OK;
}

static int out_holds_run(const char *out) {
  char p[4400];
  snprintf(p, sizeof p, "%s/model_index.json", out);
  if (path_exists(p)) return 1;
  snprintf(p, sizeof p, "%s/train_log.jsonl", out);
  if (path_exists(p)) return 1;
  int64_t *steps = NULL;
  int n = 0;
  dpo_error e;
  if (dpo_checkpoint_list(out, &steps, &n, &e) == DPO_OK && n > 0) {
    free(steps);
    return 1;
  }
  free(steps);
  return 0;
}

/* Runs the caller's validation on the policy in memory, then restores the
 * training plans it may have replaced (parameter gradients are kept by the
 * models across re-plans; activations are planned again). */
static int validate_and_replan(run *r, dpo_error *err) {
  const dpo_train_options *o = r->o;
  int rc = o->validate(o->validate_user, &r->pipe, r->step_done, err);
  if (rc != DPO_OK) return rc;
  const dpo_train_step *st = &r->step;
  rc = dpo_unet_plan(r->pipe.unet, &r->ctx, 2 * st->B, st->H, st->W, st->T, 1, err);
  if (rc == DPO_OK && r->reference) rc = dpo_unet_plan(r->reference, &r->ctx, 2 * st->B, st->H, st->W, st->T, 0, err);
  r->data.clip_planned_B = 0; /* the text encoder is planned again on first use */
  if (rc == DPO_OK && o->train_text_encoder) {
    rc = dpo_clip_plan(r->pipe.text_encoder, &r->ctx, st->B, r->data.T, 0, 1, err);
    r->data.clip_planned_B = -st->B;
  }
  return rc;
}


/* One step's progress: rewritten in place on a terminal; elsewhere (a log
 * file, a pipe) a plain line every 5% of the steps and at the last, so that
 * a log holds readable lines instead of one line of carriage returns. */
static void write_progress(const dpo_train_options *o, const dpo_step_info *info, const dpo_loss_stats *sum) {
  char line[512];
  dpo_step_format(info, o->max_steps, sum, line, sizeof line);
  if (isatty(fileno(o->progress))) {
    fprintf(o->progress, "\r%s", line);
  } else {
    int64_t every = o->max_steps >= 20 ? o->max_steps / 20 : 1;
    if (info->step % every != 0 && info->step != o->max_steps) return;
    fprintf(o->progress, "%s\n", line);
  }
  fflush(o->progress);
}

static int train_steps(run *r, dpo_train_result *res, int *stopped, dpo_error *err) {
  const dpo_train_options *o = r->o;
  int B = o->batch_size;
  size_t per_text = (size_t)r->data.T * r->data.D;
  double t_start = now_s();
  int64_t first = r->step_done, steps_this_run = 0;
  for (int64_t s = r->step_done; s < o->max_steps; s++) {
    double t0 = now_s();
    dpo_unet_zero_grads(r->pipe.unet);
    if (o->train_text_encoder) dpo_clip_zero_grads(r->pipe.text_encoder);
    dpo_loss_stats sum;
    memset(&sum, 0, sizeof sum);
    int n_strict = 0;
    for (int m = 0; m < o->grad_accum; m++) {
      int rc = assemble_batch(r, s, m, o->train_text_encoder, err);
      if (rc != DPO_OK) return rc;
      if (o->train_text_encoder) memset(r->dtext, 0, (size_t)B * per_text * sizeof(float));
      dpo_loss_stats st;
      /* Resident: no stats now (they would wait for the device); the MSEs
       * are kept and the statistics made once, after the last micro-batch. */
      rc = dpo_train_step_run(&r->step, r->x0_w, r->x0_l, r->text, r->noise, r->t, r->label, o->sft, o->beta,
                              1.0 / o->grad_accum, o->train_text_encoder ? r->dtext : NULL,
                              r->step.resident ? NULL : &st, err);
      if (rc != DPO_OK) return rc;
      if (o->train_text_encoder) dpo_clip_backward(r->pipe.text_encoder, &r->ctx, r->dtext);
      if (r->step.resident) keep_micro_batch(r, m);
      else stats_add(&sum, &st, &n_strict);
    }
    double norm;
    if (r->step.resident) {
      int rc = clip_and_gather(r, &sum, &n_strict, &norm, err);
      if (rc != DPO_OK) return rc;
    } else {
      norm = dpo_clip_grad_norm(r->params, r->n_params, o->max_grad_norm);
    }
    stats_finish(&sum, n_strict);
    double lr = dpo_lr_at(&r->lr, s);
    /* Resident: queued on the backend; the next step's first upload waits for it. */
    dpo_optim_step(&r->opt, lr);
    r->step_done = s + 1;
    steps_this_run++;
    double t1 = now_s();
    dpo_step_info info;
    info.step = s + 1;
    info.lr = lr;
    info.grad_norm = norm;
    info.pairs_per_s = (double)B * o->grad_accum / (t1 - t0 > 1e-9 ? t1 - t0 : 1e-9);
    info.elapsed_s = t1 - t_start;
    info.eta_s = (t1 - t_start) / (double)(s + 1 - first) * (double)(o->max_steps - s - 1);
    int rc = dpo_train_log_write(&r->log, &info, &sum, err);
    if (rc != DPO_OK) return rc;
    if (o->progress) write_progress(o, &info, &sum);
    res->last = sum;
    res->steps_done = r->step_done;
    if (o->validate && o->validate_every > 0 && r->step_done % o->validate_every == 0) {
      rc = validate_and_replan(r, err);
      if (rc != DPO_OK) return rc;
    }
    if (o->checkpoint_every > 0 && r->step_done % o->checkpoint_every == 0) {
      rc = save_checkpoint(r, r->step_done, err);
      if (rc != DPO_OK) return rc;
    }
    if (o->stop_after > 0 && steps_this_run >= o->stop_after && r->step_done < o->max_steps) {
      *stopped = 1;
      break;
    }
  }
  if (o->progress && isatty(fileno(o->progress))) fputc('\n', o->progress);
  return DPO_OK;
}

static int setup(run *r, const char *resume_dir, int *created_out, dpo_train_result *res, dpo_error *err) {
  const dpo_train_options *o = r->o;
  dpo_pairs_options po = {o->ties, o->model_filter, 1};
  int rc = dpo_pairs_load(o->pairs_path, &po, &r->pairs, err);
  if (rc != DPO_OK) return rc;
  if (r->pairs.n < 1)
    return dpo_fail(err, DPO_ERR_DATA, "%s: no training pairs (%d lines, %d ties skipped, %d filtered out)",
                    o->pairs_path, r->pairs.n_lines, r->pairs.n_ties_skipped, r->pairs.n_filtered);
  res->n_pairs = r->pairs.n;
  rc = dpo_pipeline_load(resume_dir[0] ? resume_dir : o->base_dir, &r->pipe, err);
  if (rc != DPO_OK) return rc;
  if (!o->sft) {
    char path[4200];
    snprintf(path, sizeof path, "%s/unet", o->base_dir);
    rc = dpo_unet_load(path, &r->reference, err);
    if (rc != DPO_OK) return rc;
  }
  if ((rc = kn_ctx_init_backend(&r->ctx, o->backend, o->threads, err)) != DPO_OK) return rc;
  r->ctx_ok = 1;
  kn_ctx *data_ctx = &r->ctx;
  if (o->backend != KN_BACKEND_CPU) {
    if ((rc = kn_ctx_init(&r->host_ctx, o->threads, err)) != DPO_OK) return rc;
    r->host_ctx_ok = 1;
    data_ctx = &r->host_ctx;
  }
  rc = train_data_init(&r->data, &r->pairs, &r->pipe, data_ctx, o->resolution, o->hflip, o->random_crop,
                       o->train_text_encoder, o->seed, err);
  if (rc != DPO_OK) return rc;
  r->data.key_dir = o->base_dir;   /* a resumed run reuses the base run's cache */

  if (!path_exists(o->out_dir)) {
    if ((rc = dpo_mkdir_p(o->out_dir, err)) != DPO_OK) return rc;
    *created_out = 1;
  }
  char cache_root[4200];
  snprintf(cache_root, sizeof cache_root, "%s", o->cache_dir ? o->cache_dir : "");
  if (!o->cache_dir) snprintf(cache_root, sizeof cache_root, "%s/cache", o->out_dir);
  if (!o->no_cache) {
    rc = train_data_open_cache(&r->data, cache_root, &res->cache_hit, err);
    if (rc != DPO_OK) return rc;
  } else {
    r->data.cache_images = 0;
    if (!o->train_text_encoder)
      return dpo_fail(err, DPO_ERR_USAGE, "--no-cache needs --train-text-encoder (frozen text states come from the cache)");
  }

  int B = o->batch_size, hw = r->data.x0_hw;
  dpo_unet_set_checkpointing(r->pipe.unet, o->gradient_checkpointing);
  if (o->precision == KN_BF16) {
    rc = dpo_unet_set_precision(r->pipe.unet, KN_BF16, 0, err);
    if (rc == DPO_OK && r->reference) rc = dpo_unet_set_precision(r->reference, KN_BF16, 1, err);
    if (rc != DPO_OK) return rc;
  }
  rc = dpo_train_step_init(&r->step, r->pipe.unet, r->reference, &r->pipe.scheduler, &r->ctx, B, hw, hw, r->data.T,
                           err);
  if (rc != DPO_OK) return rc;
  r->step.sft_weight = o->sft ? 0.0 : o->sft_weight;
  if (o->timestep_max > r->step.sched.num_train_timesteps)
    return dpo_fail(err, DPO_ERR_USAGE, "--timesteps: HI %d is above the scheduler's %d training timesteps",
                    o->timestep_max, r->step.sched.num_train_timesteps);
  /* A device's step is resident from init; the CPU's on request. */
  if (o->resident_step && (rc = dpo_train_step_make_resident(&r->step, err)) != DPO_OK) return rc;
  size_t per = (size_t)r->data.C * hw * hw, per_text = (size_t)r->data.T * r->data.D;
  r->x0_w = malloc(sizeof(float) * B * per);
  r->x0_l = malloc(sizeof(float) * B * per);
  r->noise = malloc(sizeof(float) * B * per);
  r->text = malloc(sizeof(float) * B * per_text);
  r->dtext = malloc(sizeof(float) * B * per_text);
  r->t = malloc(sizeof(int) * B);
  r->label = malloc(sizeof(float) * B);
  r->ids = malloc(sizeof(int32_t) * B * r->data.T);
  if (!r->x0_w || !r->x0_l || !r->noise || !r->text || !r->dtext || !r->t || !r->label || !r->ids)
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (o->train_text_encoder) {
    /* Plan the text encoder for training now (also gives it gradients). */
    rc = dpo_clip_plan(r->pipe.text_encoder, &r->ctx, B, r->data.T, 0, 1, err);
    if (rc != DPO_OK) return rc;
    r->data.clip_planned_B = -B;
  }

  rc = add_params(r, "unet", dpo_unet_n_params(r->pipe.unet), unet_param_get, r->pipe.unet, err);
  if (rc == DPO_OK && o->train_text_encoder)
    rc = add_params(r, "text_encoder", dpo_clip_n_params(r->pipe.text_encoder), clip_param_get, r->pipe.text_encoder, err);
  if (rc == DPO_OK && r->step.resident) rc = alloc_step_log(r, err);
  if (rc != DPO_OK) return rc;
  dpo_optim_config oc;
  dpo_optim_config_default(&oc, o->optimizer);
  if (o->weight_decay >= 0) oc.weight_decay = o->weight_decay;
  rc = r->step.resident ? dpo_optim_init_on(&r->opt, &oc, r->params, r->n_params, &r->ctx, err)
                   : dpo_optim_init(&r->opt, &oc, r->params, r->n_params, err);
  if (rc != DPO_OK) return rc;

  char sentence[512];
  res->effective_lr = dpo_effective_lr(o->lr, B, o->grad_accum, 1, o->scale_lr, sentence, sizeof sentence);
  rc = dpo_lr_schedule_init(&r->lr, res->effective_lr, o->warmup_steps, o->warmup_frac, o->max_steps, err);
  if (rc != DPO_OK) return rc;
  if (o->info) {
    fprintf(o->info, "%s\n", sentence);
    if (!o->sft) fprintf(o->info, "beta %g: %s\n", o->beta, DPO_BETA_CONVENTION);
  }

  uint64_t epoch = 0, position = 0;
  res->resumed_from = -1;
  if (resume_dir[0]) {
    dpo_train_state st;
    rc = dpo_train_state_read(resume_dir, &st, &r->opt, err);
    if (rc != DPO_OK) return rc;
    if (st.data_seed != o->seed)
      return dpo_fail(err, DPO_ERR_USAGE, "%s: the run used --seed %llu, not %llu", resume_dir,
                      (unsigned long long)st.data_seed, (unsigned long long)o->seed);
    r->step_done = st.step;
    epoch = st.epoch;
    position = st.position;
    res->resumed_from = st.step;
    if (o->info) fprintf(o->info, "resuming from %s (step %lld)\n", resume_dir, (long long)st.step);
  }
  if ((rc = dpo_pair_sampler_init(&r->sampler, r->pairs.n, o->seed, epoch, position, err)) != DPO_OK) return rc;
  int removed;
  if ((rc = dpo_checkpoint_clean_temps(o->out_dir, &removed, err)) != DPO_OK) return rc;
  char log_path[4400];
  snprintf(log_path, sizeof log_path, "%s/train_log.jsonl", o->out_dir);
  rc = dpo_train_log_open(&r->log, log_path, resume_dir[0] ? r->step_done : -1, err);
  if (rc == DPO_OK) r->log_open = 1;
  return rc;
}

int dpo_train(const dpo_train_options *o, dpo_train_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  int rc = validate(o, err);
  if (rc != DPO_OK) return rc;
  char resume_dir[4200];
  if ((rc = resolve_resume(o, resume_dir, sizeof resume_dir, err)) != DPO_OK) return rc;
  if (!resume_dir[0] && path_exists(o->out_dir) && out_holds_run(o->out_dir)) {
    if (o->resume)
      return dpo_fail(err, DPO_ERR_USAGE, "%s holds a training run but no checkpoint to resume from; choose another --out",
                      o->out_dir);
    return dpo_fail(err, DPO_ERR_USAGE, "%s already holds a training run: pass --resume latest, or choose another --out",
                    o->out_dir);
  }
  run r;
  memset(&r, 0, sizeof r);
  r.o = o;
  int created_out = 0, stopped = 0;
  rc = setup(&r, resume_dir, &created_out, res, err);
  if (rc == DPO_OK) rc = train_steps(&r, res, &stopped, err);
  if (rc == DPO_OK && !stopped) rc = save_final(&r, err);
  res->steps_done = r.step_done;
  run_free(&r);
  if (rc != DPO_OK && r.checkpoints_committed == 0 && !resume_dir[0]) {
    /* Nothing of this run is worth keeping: leave OUT as it was. */
    dpo_error ignored;
    char p[4400];
    if (created_out) {
      dpo_remove_tree(o->out_dir, &ignored);
    } else {
      snprintf(p, sizeof p, "%s/train_log.jsonl", o->out_dir);
      unlink(p);
      snprintf(p, sizeof p, "%s/.tmp-final", o->out_dir);
      if (path_exists(p)) dpo_remove_tree(p, &ignored);
    }
  }
  return rc;
}
