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

#include "demo/demo.h"
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

/* Diffusion-DPO from the base on OUT/pairs/pairs.jsonl into OUT/tuned. The
 * training loop (`dpo train`) is built on another branch; until it is merged
 * this stage reports that it is missing. */
static int stage_train(const demo_options *opt, dpo_error *err) {
  if (stage_done(opt->out, "train")) return DPO_OK;
  return dpo_fail(err, DPO_ERR_DATA,
                  "demo: stage 3/6 train is missing from this build: Diffusion-DPO training (`dpo train`) is not "
                  "built in yet. Done so far: base, pairs (%s/pairs/pairs.jsonl). Still to run: train, generate, "
                  "study, report",
                  opt->out);
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
  kn_ctx_free(&ctx);
  dpo_pipeline_free(&base);
  return rc;
}
