/* dpo demo: the whole loop on the shapes world, stage by stage.
 *
 *   1 base      load the shipped base pipeline (world/base/)
 *   2 pairs     AI-feedback pairs on train-split prompts: two base samples a
 *               prompt, the one the judge finds better aligned wins
 *   3 train     Diffusion-DPO from the base on those pairs
 *   4 generate  held-out prompts with base and tuned, same seeds
 *   5 study     q1, q2, q3, 5 simulated votes a comparison
 *   6 report    report.html/md/json, implicit-reward accuracy, contact sheet
 *
 * Each finished stage leaves OUT/stages/<name>.json (written atomically,
 * last), so a rerun with the same OUT skips it. A stage whose implementation
 * is not in this build fails with a message that names it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "demo/demo.h"
#include "eval/eval.h"
#include "reports/reports.h"
#include "studies/studies.h"
#include "world/world.h"

void demo_options_defaults(demo_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->out = "dpo-demo";
  opt->base = DEMO_DEFAULT_BASE;
  opt->seed = 0;
  opt->threads = 1;
}

static int stage_done(const char *out, const char *name) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/stages/%s.json", out, name);
  return stat(path, &st) == 0;
}

static int stage_finish(const char *out, const char *name, json_t *summary, dpo_error *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/stages", out);
  int rc = dpo_mkdir_p(path, err);
  snprintf(path, sizeof path, "%s/stages/%s.json", out, name);
  if (!rc) rc = summary ? dpo_json_write_file(path, summary, err) : dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  json_decref(summary);
  return rc;
}

/* ---------------------------------------------------------------- pairs */

typedef struct {
  int n_prompts, n_pairs, n_ties;
  double mean_alignment;   /* of all base samples */
} pairs_summary;

static int write_pair_line(FILE *fp, const char *caption, int i, double a0, double a1) {
  json_t *j = json_pack("{s:s, s:s, s:s, s:f, s:s, s:s, s:s, s:f, s:f}", "caption", caption, "image_0", "", "image_1",
                        "", "label_0", a0 > a1 ? 1.0 : 0.0, "source", "shapes-judge alignment", "model_0", "base",
                        "model_1", "base", "alignment_0", a0, "alignment_1", a1);
  if (!j) return -1;
  char name[64];
  snprintf(name, sizeof name, "images/%05d_0.png", i);
  json_object_set_new(j, "image_0", json_string(name));
  snprintf(name, sizeof name, "images/%05d_1.png", i);
  json_object_set_new(j, "image_1", json_string(name));
  char *line = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
  json_decref(j);
  if (!line) return -1;
  fprintf(fp, "%s\n", line);
  free(line);
  return 0;
}

/* Two base samples (indices 0 and 1) for each of n train prompts, judged;
 * pairs with equal alignment are left out (no preference). */
static int make_pairs(dpo_pipeline *base, kn_ctx *ctx, const demo_options *opt, int n, pairs_summary *sum,
                      dpo_error *err) {
  memset(sum, 0, sizeof *sum);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/pairs/images", opt->out);
  int rc = dpo_mkdir_p(dir, err);
  if (rc) return rc;
  world_prompt *wp = calloc((size_t)n, sizeof *wp);
  char(*texts)[WORLD_PROMPT_MAX] = calloc((size_t)n, sizeof *texts);
  const char **ptrs = calloc((size_t)n * 2, sizeof *ptrs);
  uint64_t *idx = calloc((size_t)n * 2, sizeof *idx);
  dpo_image *imgs = calloc((size_t)n * 2, sizeof *imgs);
  dpo_atomic_file af;
  memset(&af, 0, sizeof af);
  if (!wp || !texts || !ptrs || !idx || !imgs) {
    rc = dpo_fail(err, DPO_ERR_DATA, "pairs: out of memory");
    goto done;
  }
  if ((rc = world_prompts_generate(WORLD_SPLIT_TRAIN, opt->seed, n, wp, err))) goto done;
  for (int i = 0; i < n; i++) {
    if ((rc = world_prompt_format(&wp[i], texts[i], sizeof texts[i], err))) goto done;
    ptrs[2 * i] = ptrs[2 * i + 1] = texts[i];
    idx[2 * i] = 0;
    idx[2 * i + 1] = 1;
  }
  demo_sample_options so;
  demo_sample_defaults(&so);
  so.steps = DEMO_SAMPLE_STEPS;
  dpo_progress prog;
  dpo_progress_begin(&prog, "pairs: sampling", (uint64_t)n * 2, "images");
  for (int start = 0; start < 2 * n && !rc; start += so.batch) {
    int m = 2 * n - start < so.batch ? 2 * n - start : so.batch;
    rc = demo_sample(base, ctx, &so, ptrs + start, idx + start, m, opt->seed, imgs + start, err);
    dpo_progress_advance(&prog, (uint64_t)m);
  }
  dpo_progress_end(&prog);
  if (rc) goto done;
  char path[4096];
  snprintf(path, sizeof path, "%s/pairs/pairs.jsonl", opt->out);
  if ((rc = dpo_atomic_open(&af, path, err))) goto done;
  for (int i = 0; i < n && !rc; i++) {
    double a[2];
    for (int k = 0; k < 2 && !rc; k++) {
      world_scores sc;
      if ((rc = world_judge_score(&imgs[2 * i + k], texts[i], &sc, err))) break;
      a[k] = sc.alignment;
      sum->mean_alignment += sc.alignment / (2.0 * n);
      snprintf(path, sizeof path, "%s/pairs/images/%05d_%d.png", opt->out, i, k);
      dpo_image_text meta[2] = {{"prompt", texts[i]}, {"generator", "dpo demo (base)"}};
      rc = dpo_png_write(path, &imgs[2 * i + k], meta, 2, err);
    }
    if (rc) break;
    if (fabs(a[0] - a[1]) < 1e-9) {
      sum->n_ties++;
      continue;
    }
    if (write_pair_line(af.fp, texts[i], i, a[0], a[1])) rc = dpo_fail(err, DPO_ERR_DATA, "pairs: out of memory");
    else sum->n_pairs++;
  }
  sum->n_prompts = n;
  if (!rc) rc = dpo_atomic_commit(&af, err);
done:
  dpo_atomic_abort(&af);
  if (imgs)
    for (int i = 0; i < 2 * n; i++) dpo_image_free(&imgs[i]);
  free(imgs);
  free(idx);
  free(ptrs);
  free(texts);
  free(wp);
  return rc;
}

static int stage_pairs(dpo_pipeline *base, kn_ctx *ctx, const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "pairs")) {
    dpo_log_info("demo: stage 2/6 pairs: done already (%s/pairs/pairs.jsonl)", opt->out);
    return DPO_OK;
  }
  int n = opt->quick ? DEMO_QUICK_PAIR_PROMPTS : DEMO_PAIR_PROMPTS;
  dpo_log_info("demo: stage 2/6 pairs: two base samples for each of %d train prompts, judged on alignment", n);
  pairs_summary s;
  int rc = make_pairs(base, ctx, opt, n, &s, err);
  if (rc) return rc;
  dpo_log_info("demo: %d pairs (%d ties left out), mean base alignment %.3f", s.n_pairs, s.n_ties, s.mean_alignment);
  return stage_finish(opt->out, "pairs",
                      json_pack("{s:i, s:i, s:i, s:f}", "prompts", s.n_prompts, "pairs", s.n_pairs, "ties", s.n_ties,
                                "mean_base_alignment", s.mean_alignment),
                      err);
}

/* ---------------------------------------------------------------- train */

/* Diffusion-DPO from the base on OUT/pairs/pairs.jsonl into OUT/tuned
 * (trainer's dpo_train). No horizontal flips: they would swap "left of" and
 * "right of" and make the pairs lie. */
static int stage_train(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "train")) {
    dpo_log_info("demo: stage 3/6 train: done already (%s/tuned)", opt->out);
    return DPO_OK;
  }
  char pairs[4096], tuned[4096];
  snprintf(pairs, sizeof pairs, "%s/pairs/pairs.jsonl", opt->out);
  snprintf(tuned, sizeof tuned, "%s/tuned", opt->out);
  struct stat st;
  if (stat(tuned, &st) == 0 && dpo_remove_tree(tuned, err)) return DPO_ERR_DATA;   /* an interrupted run */
  dpo_train_options o;
  dpo_train_options_default(&o);
  o.base_dir = opt->base;
  o.pairs_path = pairs;
  o.out_dir = tuned;
  o.resolution = WORLD_DEFAULT_SIZE;
  o.hflip = 0;
  o.beta = DEMO_DPO_BETA;
  o.lr = DEMO_DPO_LR;
  o.batch_size = DEMO_DPO_BATCH;
  o.max_steps = opt->quick ? DEMO_QUICK_DPO_STEPS : DEMO_DPO_STEPS;
  o.warmup_steps = 0;
  o.warmup_frac = -1;
  o.checkpoint_every = 0;
  o.proportion_empty_prompts = 0.1;
  o.seed = opt->seed;
  o.threads = opt->threads;
  o.progress = dpo_log_get_level() >= DPO_LOG_NORMAL ? stderr : NULL;
  dpo_log_info("demo: stage 3/6 train: Diffusion-DPO, %lld steps of %d pairs, beta %g, lr %g", (long long)o.max_steps,
               o.batch_size, o.beta, o.lr);
  dpo_train_result r;
  int rc = dpo_train(&o, &r, err);
  if (rc) return rc;
  return stage_finish(opt->out, "train",
                      json_pack("{s:I, s:i, s:f, s:f, s:f}", "steps", (json_int_t)r.steps_done, "pairs", r.n_pairs,
                                "last_loss", r.last.loss, "last_implicit_acc", r.last.implicit_acc, "beta", o.beta),
                      err);
}

/* ------------------------------------------------------------- generate */

/* Held-out prompts with base and tuned, the same seeds (eval_generate: the
 * noise of an image depends on seed, prompt and index only). */
static int stage_generate(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "generate")) {
    dpo_log_info("demo: stage 4/6 generate: done already (%s/runs)", opt->out);
    return DPO_OK;
  }
  int n = opt->quick ? DEMO_QUICK_HELDOUT : DEMO_HELDOUT;
  char prompts[128], run[4096], tuned[4096];
  snprintf(prompts, sizeof prompts, "world:heldout:%d:%llu", n, (unsigned long long)opt->seed);
  snprintf(tuned, sizeof tuned, "%s/tuned", opt->out);
  const char *models[2] = {opt->base, tuned}, *names[2] = {"base", "tuned"};
  for (int m = 0; m < 2; m++) {
    dpo_log_info("demo: stage 4/6 generate: %d held-out prompts with the %s model", n, names[m]);
    snprintf(run, sizeof run, "%s/runs/%s", opt->out, names[m]);
    eval_generate_config g;
    eval_generate_config_default(&g);
    g.model = models[m];
    g.prompts = prompts;
    g.out = run;
    g.sample.steps = DEMO_SAMPLE_STEPS;
    g.sample.guidance = (float)DEMO_GUIDANCE;
    g.images_per_prompt = 1;
    g.batch_size = 16;
    g.seed = opt->seed;
    g.threads = opt->threads;
    eval_generate_stats gs;
    int rc = eval_generate(&g, &gs, err);
    if (rc) return rc;
  }
  return stage_finish(opt->out, "generate", json_pack("{s:i, s:s}", "heldout_prompts", n, "prompts", prompts), err);
}

/* ------------------------------------------------------ study and report */

static int stage_study(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "study")) {
    dpo_log_info("demo: stage 5/6 study: done already (%s/study.db)", opt->out);
    return DPO_OK;
  }
  char db_path[4096], run_a[4096], run_b[4096];
  snprintf(db_path, sizeof db_path, "%s/study.db", opt->out);
  snprintf(run_a, sizeof run_a, "%s/runs/base", opt->out);
  snprintf(run_b, sizeof run_b, "%s/runs/tuned", opt->out);
  unlink(db_path);   /* an interrupted study is redone whole */
  studies_db *db = NULL;
  int rc = studies_open(db_path, 1, &db, err);
  if (rc) return rc;
  studies_create_options c = {.name = "demo", .run_a = run_a, .run_b = run_b, .questions = "q1,q2,q3",
                              .votes = 5, .allow_tie = 0, .gold = 0, .seed = opt->seed};
  studies_create_result cr;
  rc = studies_create(db, &c, &cr, err);
  studies_simulate_options s = {.study = "demo", .raters = 25, .scorer = "shapes-judge", .seed = opt->seed,
                                .noise = DEMO_RATER_NOISE, .random_share = DEMO_RANDOM_SHARE, .left_bias = 0.02};
  studies_simulate_result sr;
  if (!rc) {
    dpo_log_info("demo: stage 5/6 study: %d items, q1 q2 q3, 5 votes each from %d simulated raters (%.0f%% random)",
                 cr.n_items, s.raters, 100 * s.random_share);
    rc = studies_simulate(db, &s, &sr, err);
  }
  studies_close(db);
  if (rc) return rc;
  return stage_finish(opt->out, "study", json_pack("{s:i, s:i}", "items", cr.n_items, "votes", sr.n_votes), err);
}

static void print_question(const json_t *q) {
  const json_t *ci = json_object_get(q, "ci95_wilson");
  printf("  %s: tuned wins %.1f%% of %lld prompts (Wilson 95%% [%.1f%%, %.1f%%])\n",
         json_string_value(json_object_get(q, "key")), 100 * json_number_value(json_object_get(q, "win_rate_b")),
         (long long)json_integer_value(json_object_get(q, "items")), 100 * json_number_value(json_array_get(ci, 0)),
         100 * json_number_value(json_array_get(ci, 1)));
}

static int stage_report(const demo_options *opt, dpo_error *err) {
  char db_path[4096], dir[4096], path[4096];
  snprintf(db_path, sizeof db_path, "%s/study.db", opt->out);
  snprintf(dir, sizeof dir, "%s/report", opt->out);
  if (!stage_done(opt->out, "report")) {
    dpo_log_info("demo: stage 6/6 report: %s", dir);
    const char *studies[1] = {"demo"};
    report_options r = {.db_path = db_path, .studies = studies, .n_studies = 1, .out_dir = dir, .seed = opt->seed,
                        .n_resamples = STATS_BOOTSTRAP_RESAMPLES};
    report_summary rs;
    int rc = report_write(&r, &rs, err);
    if (!rc) rc = stage_finish(opt->out, "report", json_pack("{s:I}", "votes", (json_int_t)rs.n_votes), err);
    if (rc) return rc;
  }
  snprintf(path, sizeof path, "%s/report.json", dir);
  json_t *rep = dpo_json_load_file(path, 64u << 20, err);
  if (!rep) return DPO_ERR_DATA;
  const json_t *qs = json_object_get(json_array_get(json_object_get(rep, "studies"), 0), "questions");
  printf("held-out result (tuned vs base, simulated raters):\n");
  for (size_t i = 0; i < json_array_size(qs); i++) {
    const char *key = json_string_value(json_object_get(json_array_get(qs, i), "key"));
    if (key && (!strcmp(key, "q1") || !strcmp(key, "q3"))) print_question(json_array_get(qs, i));
  }
  printf("report: %s/report.html\n", dir);
  json_decref(rep);
  return DPO_OK;
}

int demo_run(const demo_options *opt, dpo_error *err) {
  if (!opt->out || !*opt->out) return dpo_fail(err, DPO_ERR_USAGE, "demo: an output folder is required");
  int rc = dpo_mkdir_p(opt->out, err);
  if (rc) return rc;
  dpo_log_info("demo: stage 1/6 base: loading %s", opt->base);
  dpo_pipeline base;
  if ((rc = dpo_pipeline_load(opt->base, &base, err))) return rc;
  kn_ctx ctx;
  if ((rc = kn_ctx_init(&ctx, opt->threads, err))) {
    dpo_pipeline_free(&base);
    return rc;
  }
  rc = stage_pairs(&base, &ctx, opt, err);
  if (!rc) rc = stage_train(opt, err);
  if (!rc) rc = stage_generate(opt, err);
  if (!rc) rc = stage_study(opt, err);
  if (!rc) rc = stage_report(opt, err);
  kn_ctx_free(&ctx);
  dpo_pipeline_free(&base);
  return rc;
}
