/* dpo demo: the whole loop on the shapes world, stage by stage.
 *
 *   1 base      load the shipped base pipeline (world/base/)
 *   2 pairs     AI-feedback pairs on train-split prompts: K base samples a
 *               prompt (eval_make_pairs), the judge's best-aligned against
 *               its worst
 *   3 train     Diffusion-DPO from the base on those pairs
 *   4 generate  held-out prompts with base and tuned, same seeds
 *   5 reward    implicit-reward accuracy of the tuned model (reference: the
 *               base) on judge-labelled pairs of two base samples of other
 *               held-out prompts
 *   6 study     q1, q2, q3, 5 simulated votes a comparison
 *   7 report    report.html/md/json, contact sheet, OUT/summary.json
 *
 * Each finished stage leaves OUT/stages/<name>.json (written atomically,
 * last), so a rerun with the same OUT skips it. A stage whose implementation
 * is not in this build fails with a message that names it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

void demo_options_resolve(demo_options *opt) {
  int q = opt->quick;
  if (opt->pair_prompts <= 0) opt->pair_prompts = q ? DEMO_QUICK_PAIR_PROMPTS : DEMO_PAIR_PROMPTS;
  if (opt->images_per_prompt <= 0) opt->images_per_prompt = DEMO_IMAGES_PER_PROMPT;
  if (opt->dpo_steps <= 0) opt->dpo_steps = q ? DEMO_QUICK_DPO_STEPS : DEMO_DPO_STEPS;
  if (opt->heldout <= 0) opt->heldout = q ? DEMO_QUICK_HELDOUT : DEMO_HELDOUT;
  if (opt->reward_prompts <= 0) opt->reward_prompts = q ? DEMO_QUICK_REWARD_PROMPTS : DEMO_REWARD_PROMPTS;
  if (opt->sample_steps <= 0) opt->sample_steps = DEMO_SAMPLE_STEPS;
  if (!(opt->beta > 0)) opt->beta = DEMO_DPO_BETA;
  if (!(opt->lr > 0)) opt->lr = DEMO_DPO_LR;
  if (opt->jobs <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    opt->jobs = cores < 1 ? 1 : cores > 8 ? 8 : (int)cores;
  }
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

/* The sampling settings every demo image shares (the general pipeline,
 * eval_generate: an image's noise depends on seed, prompt and index only). */
static void demo_generate_config(const demo_options *opt, const char *model, const char *prompts, const char *out,
                                 eval_generate_config *g) {
  eval_generate_config_default(g);
  g->model = model;
  g->prompts = prompts;
  g->out = out;
  g->sample.steps = opt->sample_steps;
  g->sample.guidance = (float)DEMO_GUIDANCE;
  g->images_per_prompt = 1;
  g->batch_size = 16;
  g->seed = opt->seed;
  g->threads = opt->threads;
  g->jobs = opt->jobs;
}

/* The eval_make_pairs settings of K samples of each of n prompts of `split`
 * into DIR/run, judged on alignment; DIR/pairs.jsonl gets best against worst
 * (best_worst) or every two images. prompts is the spec's buffer. */
static int judge_pairs_config(const demo_options *opt, const char *dir, const char *split, int n, uint64_t prompt_seed,
                              int images_per_prompt, int best_worst, char prompts[128], eval_pairs_config *c,
                              dpo_error *err) {
  snprintf(prompts, 128, "world:%s:%d:%llu", split, n, (unsigned long long)prompt_seed);
  memset(c, 0, sizeof *c);
  demo_generate_config(opt, opt->base, prompts, dir, &c->gen);
  c->gen.images_per_prompt = images_per_prompt;
  c->scorer = eval_find_scorer("shapes-judge");
  if (!c->scorer) return dpo_fail(err, DPO_ERR_DATA, "demo: the shapes-judge scorer is missing from this build");
  c->score_name = "alignment";
  c->tie_margin = 1e-6;
  c->score_batch = 64;
  c->best_worst = best_worst;
  return DPO_OK;
}

static int judge_pairs(const demo_options *opt, const char *dir, const char *split, int n, uint64_t prompt_seed,
                       int images_per_prompt, int best_worst, eval_pairs_stats *stats, dpo_error *err) {
  char prompts[128];
  eval_pairs_config c;
  int rc = judge_pairs_config(opt, dir, split, n, prompt_seed, images_per_prompt, best_worst, prompts, &c, err);
  return rc ? rc : eval_make_pairs(&c, stats, err);
}

/* The reward stage's pairs: two base samples of held-out prompts drawn with
 * another seed than the study's, every two images (both stages use it). */
static int reward_pairs_config(const demo_options *opt, char dir[4096], char prompts[128], eval_pairs_config *c,
                               dpo_error *err) {
  snprintf(dir, 4096, "%s/reward", opt->out);
  return judge_pairs_config(opt, dir, "heldout", opt->reward_prompts, opt->seed + 1, 2, 0, prompts, c, err);
}

static int stage_pairs(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "pairs")) {
    dpo_log_info("demo: stage 2/7 pairs: done already (%s/pairs/pairs.jsonl)", opt->out);
    return DPO_OK;
  }
  dpo_log_info("demo: stage 2/7 pairs: %d base samples for each of %d train prompts, the judge's best-aligned "
               "against its worst",
               opt->images_per_prompt, opt->pair_prompts);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/pairs", opt->out);
  eval_pairs_stats s;
  int rc = judge_pairs(opt, dir, "train", opt->pair_prompts, opt->seed, opt->images_per_prompt, 1, &s, err);
  if (rc) return rc;
  if (s.n_pairs == 0) return dpo_fail(err, DPO_ERR_DATA, "demo: every prompt's samples tied: no preference pairs");
  dpo_log_info("demo: %d pairs (%d prompts whose samples all tie left out)", s.n_pairs, s.n_tied_prompts);
  return stage_finish(opt->out, "pairs",
                      json_pack("{s:i, s:i, s:i, s:i}", "prompts", s.n_prompts, "images_per_prompt",
                                opt->images_per_prompt, "pairs", s.n_pairs, "tied_prompts", s.n_tied_prompts),
                      err);
}

/* ---------------------------------------------------------------- train */

static void heldout_run_config(const demo_options *opt, const char *model, const char *name, char prompts[128],
                               char run[4096], eval_generate_config *g);
static int reward_pairs_config(const demo_options *opt, char dir[4096], char prompts[128], eval_pairs_config *c,
                               dpo_error *err);

/* The base's samples of stages 4 and 5 (held-out prompts, reward pairs) do
 * not depend on the tuned model, and training keeps one core busy: with two
 * or more jobs, a child process makes them meanwhile, one thread, quietly.
 * It only fills run folders that those stages resume, so its failure costs
 * time, not correctness: the stages make whatever it left undone. */
static pid_t start_base_prefetch(const demo_options *opt) {
  if (opt->jobs < 2 || stage_done(opt->out, "generate")) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid != 0) {
    if (pid > 0) dpo_log_info("demo: sampling the base's held-out and reward images in the background meanwhile");
    return pid;
  }
  demo_options one = *opt;
  one.jobs = 1;
  char prompts[128], run[4096], dir[4096];
  dpo_error err = {0};
  eval_generate_config g;
  eval_generate_stats gs;
  heldout_run_config(&one, one.base, "base", prompts, run, &g);
  g.quiet = 1;
  int rc = eval_generate(&g, &gs, &err);
  /* The reward pairs whole (sampled, judged, written): stage 5 redoes only
   * the judging and the writing, which take a moment. */
  eval_pairs_config pc;
  eval_pairs_stats ps;
  if (!rc && !stage_done(one.out, "reward")) {
    rc = reward_pairs_config(&one, dir, prompts, &pc, &err);
    pc.gen.quiet = 1;
    if (!rc) rc = eval_make_pairs(&pc, &ps, &err);
  }
  if (rc) fprintf(stderr, "demo: background sampling stopped (%s); the later stages will redo it\n", err.msg);
  fflush(NULL);
  _exit(rc ? 1 : 0);
}

/* Waits for the child; stop: end it first (training failed: no waiting). */
static void finish_base_prefetch(pid_t pid, int stop) {
  if (pid <= 0) return;
  if (stop) kill(pid, SIGTERM);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

/* Diffusion-DPO from the base on OUT/pairs/pairs.jsonl into OUT/tuned
 * (trainer's dpo_train). No horizontal flips: they would swap "left of" and
 * "right of" and make the pairs lie. */
static int stage_train(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "train")) {
    dpo_log_info("demo: stage 3/7 train: done already (%s/tuned)", opt->out);
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
  o.beta = opt->beta;
  o.lr = opt->lr;
  o.batch_size = DEMO_DPO_BATCH;
  o.max_steps = opt->dpo_steps;
  o.warmup_steps = 0;
  o.warmup_frac = -1;
  o.checkpoint_every = 0;
  o.proportion_empty_prompts = 0.1;
  o.seed = opt->seed;
  o.threads = opt->threads;
  o.progress = dpo_log_get_level() >= DPO_LOG_NORMAL ? stderr : NULL;
  dpo_log_info("demo: stage 3/7 train: Diffusion-DPO, %lld steps of %d pairs, beta %g, lr %g", (long long)o.max_steps,
               o.batch_size, o.beta, o.lr);
  pid_t prefetch = start_base_prefetch(opt);
  dpo_train_result r;
  int rc = dpo_train(&o, &r, err);
  finish_base_prefetch(prefetch, rc != DPO_OK);
  if (rc) return rc;
  return stage_finish(opt->out, "train",
                      json_pack("{s:I, s:i, s:f, s:f, s:f}", "steps", (json_int_t)r.steps_done, "pairs", r.n_pairs,
                                "last_loss", r.last.loss, "last_implicit_acc", r.last.implicit_acc, "beta", o.beta),
                      err);
}

/* ------------------------------------------------------------- generate */

/* The run of `model` on the held-out prompts: OUT/runs/NAME (stage 4 makes
 * "base" and "tuned"; the background sampling of stage 3 "base"). */
static void heldout_run_config(const demo_options *opt, const char *model, const char *name, char prompts[128],
                               char run[4096], eval_generate_config *g) {
  snprintf(prompts, 128, "world:heldout:%d:%llu", opt->heldout, (unsigned long long)opt->seed);
  snprintf(run, 4096, "%s/runs/%s", opt->out, name);
  demo_generate_config(opt, model, prompts, run, g);
}

/* Held-out prompts with base and tuned, the same seeds (eval_generate: the
 * noise of an image depends on seed, prompt and index only). */
static int stage_generate(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "generate")) {
    dpo_log_info("demo: stage 4/7 generate: done already (%s/runs)", opt->out);
    return DPO_OK;
  }
  char prompts[128], run[4096], tuned[4096];
  snprintf(tuned, sizeof tuned, "%s/tuned", opt->out);
  const char *models[2] = {opt->base, tuned}, *names[2] = {"base", "tuned"};
  for (int m = 0; m < 2; m++) {
    dpo_log_info("demo: stage 4/7 generate: %d held-out prompts with the %s model", opt->heldout, names[m]);
    eval_generate_config g;
    heldout_run_config(opt, models[m], names[m], prompts, run, &g);
    eval_generate_stats gs;
    int rc = eval_generate(&g, &gs, err);
    if (rc) return rc;
  }
  return stage_finish(opt->out, "generate",
                      json_pack("{s:i, s:s}", "heldout_prompts", opt->heldout, "prompts", prompts), err);
}

/* --------------------------------------------------------------- reward */

/* Held-out pairs (two base samples of prompts drawn with another seed than
 * the study's, labelled by the judge) and the tuned model's implicit-reward
 * accuracy on them against the base as reference (eval_reward_accuracy). */
static int stage_reward(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "reward")) {
    dpo_log_info("demo: stage 5/7 reward: done already (%s/reward)", opt->out);
    return DPO_OK;
  }
  dpo_log_info("demo: stage 5/7 reward: implicit-reward accuracy on judge-labelled pairs of %d held-out prompts",
               opt->reward_prompts);
  char dir[4096], pairs[4096], tuned[4096], per_pair[4096], prompts[128];
  eval_pairs_config pc;
  eval_pairs_stats ps;
  int rc = reward_pairs_config(opt, dir, prompts, &pc, err);
  if (!rc) rc = eval_make_pairs(&pc, &ps, err);
  if (rc) return rc;
  snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", dir);
  snprintf(per_pair, sizeof per_pair, "%s/reward_acc.jsonl", dir);
  snprintf(tuned, sizeof tuned, "%s/tuned", opt->out);
  eval_reward_config c;
  eval_reward_config_default(&c);
  c.model = tuned;
  c.ref = opt->base;
  c.pairs = pairs;
  c.timesteps = DEMO_REWARD_TIMESTEPS;
  c.seed = opt->seed;
  c.beta = opt->beta;
  c.threads = opt->threads;
  c.out_jsonl = per_pair;
  c.quiet = dpo_log_get_level() < DPO_LOG_NORMAL;
  eval_reward_result r;
  if ((rc = eval_reward_accuracy(&c, &r, err))) return rc;
  dpo_log_info("demo: implicit-reward accuracy %.1f%% of %d strict pairs (Wilson 95%% [%.1f%%, %.1f%%])",
               100 * r.accuracy, r.n_pairs, 100 * r.lo, 100 * r.hi);
  return stage_finish(opt->out, "reward",
                      json_pack("{s:i, s:i, s:f, s:f, s:f, s:i}", "pairs", r.n_pairs, "correct", r.n_correct,
                                "accuracy", r.accuracy, "lo", r.lo, "hi", r.hi, "ties_skipped", r.n_ties_skipped),
                      err);
}

/* ------------------------------------------------------ study and report */

static int stage_study(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "study")) {
    dpo_log_info("demo: stage 6/7 study: done already (%s/study.db)", opt->out);
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
    dpo_log_info("demo: stage 6/7 study: %d items, q1 q2 q3, 5 votes each from %d simulated raters (%.0f%% random)",
                 cr.n_items, s.raters, 100 * s.random_share);
    rc = studies_simulate(db, &s, &sr, err);
  }
  studies_close(db);
  if (rc) return rc;
  return stage_finish(opt->out, "study", json_pack("{s:i, s:i}", "items", cr.n_items, "votes", sr.n_votes), err);
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Mean judge alignment of a run's images (also written as the run's
 * scores-shapes-judge.jsonl, for `dpo score`-style inspection). */
static int run_mean_alignment(const char *run_dir, double *mean, dpo_error *err) {
  const eval_scorer *judge = eval_find_scorer("shapes-judge");
  if (!judge) return dpo_fail(err, DPO_ERR_DATA, "demo: the shapes-judge scorer is missing from this build");
  int k = eval_score_index(judge, "alignment");
  eval_run run;
  int rc = eval_run_load(run_dir, &run, err);
  if (rc) return rc;
  rc = eval_run_score(&run, judge, 64, 1, err);
  if (!rc) rc = eval_run_write_scores(&run, judge, NULL, 0, err);
  /* Summed in ascending order: the manifest's order depends on how many
   * processes drew the images, the mean must not. */
  double *scores = malloc((size_t)(run.n > 0 ? run.n : 1) * sizeof *scores);
  if (!rc && !scores) rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", run_dir);
  double sum = 0;
  if (!rc) {
    for (int i = 0; i < run.n; i++) scores[i] = run.items[i].scores[k];
    qsort(scores, (size_t)run.n, sizeof *scores, compare_doubles);
    for (int i = 0; i < run.n; i++) sum += scores[i];
  }
  *mean = run.n ? sum / run.n : 0;
  free(scores);
  eval_run_free(&run);
  return rc;
}

/* A question's entry of report.json, or NULL. */
static const json_t *find_question(const json_t *report, const char *key) {
  const json_t *qs = json_object_get(json_array_get(json_object_get(report, "studies"), 0), "questions");
  for (size_t i = 0; i < json_array_size(qs); i++) {
    const char *k = json_string_value(json_object_get(json_array_get(qs, i), "key"));
    if (k && !strcmp(k, key)) return json_array_get(qs, i);
  }
  return NULL;
}

/* OUT/summary.json: the numbers the demo prints, gathered from the stages. */
static json_t *build_summary(const demo_options *opt, const json_t *report, const json_t *reward, double align_base,
                             double align_tuned) {
  json_t *qs = json_object();
  const char *keys[3] = {"q1", "q2", "q3"};
  for (int i = 0; i < 3; i++) {
    const json_t *q = find_question(report, keys[i]);
    if (!q) continue;
    json_object_set_new(qs, keys[i],
                        json_pack("{s:O, s:O, s:O, s:O}", "items", json_object_get(q, "items"), "win_rate_tuned",
                                  json_object_get(q, "win_rate_b"), "ci95_wilson", json_object_get(q, "ci95_wilson"),
                                  "p_value", json_object_get(q, "p_value")));
  }
  return json_pack("{s:b, s:I, s:i, s:o, s:O, s:{s:f, s:f}, s:s, s:s}", "quick", opt->quick, "seed",
                   (json_int_t)opt->seed, "heldout_prompts", opt->heldout, "questions", qs, "implicit_reward",
                   reward, "judge_alignment", "base", align_base, "tuned", align_tuned, "report", "report/report.html",
                   "training_log", "tuned/train_log.jsonl");
}

/* q: a question of summary.json. */
static void print_question(const char *label, const json_t *q) {
  if (!q) return;
  const json_t *ci = json_object_get(q, "ci95_wilson");
  printf("  %s: tuned wins %.1f%% of %lld prompts (Wilson 95%% [%.1f%%, %.1f%%])\n", label,
         100 * json_number_value(json_object_get(q, "win_rate_tuned")),
         (long long)json_integer_value(json_object_get(q, "items")), 100 * json_number_value(json_array_get(ci, 0)),
         100 * json_number_value(json_array_get(ci, 1)));
}

/* The report, the contact sheet and OUT/summary.json (the report's
 * questions with the reward stage's accuracy and the runs' judge alignment). */
static int write_report(const demo_options *opt, const char *dir, dpo_error *err) {
  char db_path[4096], path[4096], run_a[4096], run_b[4096];
  snprintf(db_path, sizeof db_path, "%s/study.db", opt->out);
  snprintf(run_a, sizeof run_a, "%s/runs/base", opt->out);
  snprintf(run_b, sizeof run_b, "%s/runs/tuned", opt->out);
  dpo_log_info("demo: stage 7/7 report: %s", dir);
  const char *studies[1] = {"demo"};
  report_options r = {.db_path = db_path, .studies = studies, .n_studies = 1, .out_dir = dir, .seed = opt->seed,
                      .n_resamples = STATS_BOOTSTRAP_RESAMPLES};
  report_summary rs;
  int rc = report_write(&r, &rs, err);
  const char *runs[2] = {run_a, run_b};
  int rows = 0;
  snprintf(path, sizeof path, "%s/contact_sheet.png", dir);
  if (!rc) rc = eval_grid(runs, 2, path, 96, 48, &rows, err);
  if (!rc) dpo_log_info("demo: contact sheet of %d held-out prompts: %s", rows, path);
  double align_base = 0, align_tuned = 0;
  if (!rc) rc = run_mean_alignment(run_a, &align_base, err);
  if (!rc) rc = run_mean_alignment(run_b, &align_tuned, err);
  json_t *report = NULL, *reward = NULL;
  snprintf(path, sizeof path, "%s/report.json", dir);
  if (!rc && !(report = dpo_json_load_file(path, 64u << 20, err))) rc = DPO_ERR_DATA;
  snprintf(path, sizeof path, "%s/stages/reward.json", opt->out);
  if (!rc && !(reward = dpo_json_load_file(path, 1u << 20, err))) rc = DPO_ERR_DATA;
  if (!rc) {
    json_t *summary = build_summary(opt, report, reward, align_base, align_tuned);
    snprintf(path, sizeof path, "%s/summary.json", opt->out);
    rc = summary ? dpo_json_write_file(path, summary, err) : dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
    json_decref(summary);
  }
  json_decref(report);
  json_decref(reward);
  if (!rc) rc = stage_finish(opt->out, "report", json_pack("{s:I}", "votes", (json_int_t)rs.n_votes), err);
  return rc;
}

/* Writes the report unless done, then prints the result from summary.json. */
static int stage_report(const demo_options *opt, dpo_error *err) {
  char dir[4096], path[4096];
  snprintf(dir, sizeof dir, "%s/report", opt->out);
  int rc = stage_done(opt->out, "report") ? DPO_OK : write_report(opt, dir, err);
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/summary.json", opt->out);
  json_t *summary = dpo_json_load_file(path, 1u << 20, err);
  if (!summary) return DPO_ERR_DATA;
  const json_t *qs = json_object_get(summary, "questions");
  const json_t *reward = json_object_get(summary, "implicit_reward");
  const json_t *align = json_object_get(summary, "judge_alignment");
  printf("held-out result, tuned vs base (%ssimulated raters, 5 votes a comparison):\n",
         opt->quick ? "quick run, " : "");
  print_question("q3 (prompt alignment)", json_object_get(qs, "q3"));
  print_question("q1 (overall preference)", json_object_get(qs, "q1"));
  printf("  judge alignment: base %.3f, tuned %.3f\n", json_number_value(json_object_get(align, "base")),
         json_number_value(json_object_get(align, "tuned")));
  printf("  implicit-reward accuracy: %.1f%% of %lld held-out judge-labelled pairs (Wilson 95%% [%.1f%%, %.1f%%])\n",
         100 * json_number_value(json_object_get(reward, "accuracy")),
         (long long)json_integer_value(json_object_get(reward, "pairs")),
         100 * json_number_value(json_object_get(reward, "lo")), 100 * json_number_value(json_object_get(reward, "hi")));
  printf("training log: %s/tuned/train_log.jsonl\n", opt->out);
  printf("contact sheet: %s/contact_sheet.png\n", dir);
  printf("report: %s/report.html\n", dir);
  json_decref(summary);
  return DPO_OK;
}

/* OUT/settings.json records the settings a demo folder was made with; a
 * rerun with other settings would mix stages of two runs, so it is refused. */
static json_t *settings_json(const demo_options *opt) {
  return json_pack("{s:s, s:b, s:I, s:i, s:i, s:i, s:f, s:f, s:i, s:i, s:i, s:i, s:f}", "base", opt->base, "quick",
                   opt->quick, "seed", (json_int_t)opt->seed, "pair_prompts", opt->pair_prompts, "images_per_prompt",
                   opt->images_per_prompt, "dpo_steps", opt->dpo_steps, "beta", opt->beta, "lr", opt->lr, "heldout",
                   opt->heldout, "reward_prompts", opt->reward_prompts, "sample_steps", opt->sample_steps,
                   "dpo_batch", DEMO_DPO_BATCH, "guidance", DEMO_GUIDANCE);
}

static int check_settings(const demo_options *opt, dpo_error *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/settings.json", opt->out);
  json_t *want = settings_json(opt);
  if (!want) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  struct stat st;
  int rc = DPO_OK;
  if (stat(path, &st) == 0) {
    json_t *have = dpo_json_load_file(path, 1u << 20, err);
    if (!have) rc = DPO_ERR_DATA;
    else if (!json_equal(have, want))
      rc = dpo_fail(err, DPO_ERR_USAGE,
                    "%s was made with other settings (%s); rerun with those or use another --out", opt->out, path);
    json_decref(have);
  } else {
    rc = dpo_json_write_file(path, want, err);
  }
  json_decref(want);
  return rc;
}

int demo_run(const demo_options *options, dpo_error *err) {
  demo_options resolved = *options;
  demo_options *opt = &resolved;
  demo_options_resolve(opt);
  if (!opt->out || !*opt->out) return dpo_fail(err, DPO_ERR_USAGE, "demo: an output folder is required");
  /* Loaded once up front so that a bad --base fails before anything is made. */
  dpo_log_info("demo: stage 1/7 base: loading %s", opt->base);
  dpo_pipeline base;
  int rc = dpo_pipeline_load(opt->base, &base, err);
  if (rc) return rc;
  dpo_pipeline_free(&base);
  if ((rc = dpo_mkdir_p(opt->out, err))) return rc;
  if ((rc = check_settings(opt, err))) return rc;
  rc = stage_pairs(opt, err);
  if (!rc) rc = stage_train(opt, err);
  if (!rc) rc = stage_generate(opt, err);
  if (!rc) rc = stage_reward(opt, err);
  if (!rc) rc = stage_study(opt, err);
  if (!rc) rc = stage_report(opt, err);
  return rc;
}
