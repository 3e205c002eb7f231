/* AI-feedback preference pairs: sample, score, label (see eval.h). */
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

/* Items of one prompt are contiguous after sorting by (prompt_id, image_index). */
static int by_prompt_then_index(const void *a, const void *b) {
  const eval_run_item *x = a, *y = b;
  int c = strcmp(x->prompt_id, y->prompt_id);
  if (c) return c;
  return (x->image_index > y->image_index) - (x->image_index < y->image_index);
}

/* One line of pairs.jsonl for items a and b (score k). */
static int write_pair(FILE *fp, const char *path, const eval_pairs_config *cfg, const char *source,
                      const eval_run_item *a, const eval_run_item *b, int k, eval_pairs_stats *stats, dpo_error *err) {
  double d = a->scores[k] - b->scores[k];
  double label = d > cfg->tie_margin ? 1.0 : -d > cfg->tie_margin ? 0.0 : 0.5;
  char f0[4200], f1[4200];
  snprintf(f0, sizeof f0, "run/%s", a->file);
  snprintf(f1, sizeof f1, "run/%s", b->file);
  json_t *o = json_object();
  json_object_set_new(o, "caption", json_string(a->prompt));
  json_object_set_new(o, "image_0", json_string(f0));
  json_object_set_new(o, "image_1", json_string(f1));
  json_object_set_new(o, "label_0", json_real(label));
  json_object_set_new(o, "source", json_string(source));
  json_object_set_new(o, "model_0", json_string(cfg->gen.model));
  json_object_set_new(o, "model_1", json_string(cfg->gen.model));
  json_object_set_new(o, "score_0", json_real(a->scores[k]));
  json_object_set_new(o, "score_1", json_real(b->scores[k]));
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  int rc = DPO_OK;
  if (!text || fprintf(fp, "%s\n", text) < 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: write failed", path);
  free(text);
  stats->n_pairs++;
  if (label == 0.5) stats->n_ties++;
  return rc;
}

/* Best-worst pairing: the first highest- and the first lowest-scoring image
 * of items[start, end); one line, the best as image_0, unless they tie. */
static int write_best_worst(FILE *fp, const char *path, const eval_pairs_config *cfg, const char *source,
                            const eval_run *run, int start, int end, int k, eval_pairs_stats *stats, dpo_error *err) {
  int best = start, worst = start;
  for (int i = start + 1; i < end; i++) {
    if (run->items[i].scores[k] > run->items[best].scores[k]) best = i;
    if (run->items[i].scores[k] < run->items[worst].scores[k]) worst = i;
  }
  if (run->items[best].scores[k] - run->items[worst].scores[k] <= cfg->tie_margin) {
    stats->n_tied_prompts++;
    return DPO_OK;
  }
  return write_pair(fp, path, cfg, source, &run->items[best], &run->items[worst], k, stats, err);
}

static int write_pairs(const eval_pairs_config *cfg, eval_run *run, int k, eval_pairs_stats *stats, dpo_error *err) {
  char path[4200], source[512];
  snprintf(path, sizeof path, "%s/pairs.jsonl", cfg->gen.out);
  snprintf(source, sizeof source, "ai-feedback:%s:%s", cfg->scorer->name, cfg->scorer->score_names[k]);
  qsort(run->items, (size_t)run->n, sizeof *run->items, by_prompt_then_index);
  dpo_atomic_file af;
  int rc = dpo_atomic_open(&af, path, err);
  if (rc) return rc;
  for (int start = 0; start < run->n && rc == DPO_OK;) {
    int end = start + 1;
    while (end < run->n && strcmp(run->items[end].prompt_id, run->items[start].prompt_id) == 0) end++;
    stats->n_prompts++;
    if (cfg->best_worst) {
      rc = write_best_worst(af.fp, path, cfg, source, run, start, end, k, stats, err);
    } else {
      for (int i = start; i < end && rc == DPO_OK; i++)
        for (int j = i + 1; j < end && rc == DPO_OK; j++)
          rc = write_pair(af.fp, path, cfg, source, &run->items[i], &run->items[j], k, stats, err);
    }
    start = end;
  }
  if (rc) {
    dpo_atomic_abort(&af);
    return rc;
  }
  return dpo_atomic_commit(&af, err);
}

int eval_make_pairs(const eval_pairs_config *cfg, eval_pairs_stats *stats, dpo_error *err) {
  memset(stats, 0, sizeof *stats);
  if (!cfg->scorer) return dpo_fail(err, DPO_ERR_USAGE, "pairs: no scorer");
  if (cfg->gen.images_per_prompt < 2)
    return dpo_fail(err, DPO_ERR_USAGE, "pairs: expected at least 2 images per prompt, got %d",
                    cfg->gen.images_per_prompt);
  if (!(cfg->tie_margin >= 0)) return dpo_fail(err, DPO_ERR_USAGE, "pairs: tie margin must be >= 0");
  int k = 0;
  if (cfg->score_name) {
    k = eval_score_index(cfg->scorer, cfg->score_name);
    if (k < 0) return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\" has no score \"%s\"", cfg->scorer->name, cfg->score_name);
  }
  char run_dir[4200];
  snprintf(run_dir, sizeof run_dir, "%s/run", cfg->gen.out);
  eval_generate_config gen = cfg->gen;
  gen.out = run_dir;
  eval_generate_stats gstats;
  int rc = eval_generate(&gen, &gstats, err);
  if (rc) return rc;
  eval_run run;
  rc = eval_run_load(run_dir, &run, err);
  if (rc) return rc;
  rc = eval_run_score(&run, cfg->scorer, cfg->score_batch, cfg->gen.quiet, err);
  if (!rc) rc = eval_run_write_scores(&run, cfg->scorer, NULL, 0, err);
  if (!rc) rc = write_pairs(cfg, &run, k, stats, err);
  eval_run_free(&run);
  return rc;
}

/* ------------------------------------------------------------ relabel */

static void folder_of(const char *path, char *dir, size_t n) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, n, ".");
  else snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

/* Scores image_0 and image_1 of one parsed line; label by score k. */
static int relabel_line(json_t *obj, const dpo_pair_record *rec, const char *dir, const eval_scorer *scorer, int k,
                        double margin, const char *source, int *tie, dpo_error *err) {
  dpo_image im[2];
  char path[4400];
  const char *files[2] = {rec->image_0, rec->image_1};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    if (dpo_image_read(path, 3, &im[i], err)) {
      if (i) dpo_image_free(&im[0]);
      return DPO_ERR_DATA;
    }
  }
  eval_pair pairs[2] = {{&im[0], rec->caption}, {&im[1], rec->caption}};
  double scores[2 * EVAL_MAX_SCORES];
  int rc = eval_score(scorer, pairs, 2, scores, err);
  dpo_image_free(&im[0]);
  dpo_image_free(&im[1]);
  if (rc) return rc;
  double s0 = scores[k], s1 = scores[scorer->n_scores + k], d = s0 - s1;
  double label = d > margin ? 1.0 : -d > margin ? 0.0 : 0.5;
  *tie = label == 0.5;
  json_object_set_new(obj, "label_0", json_real(label));
  json_object_set_new(obj, "score_0", json_real(s0));
  json_object_set_new(obj, "score_1", json_real(s1));
  json_object_set_new(obj, "source", json_string(source));
  return DPO_OK;
}

int eval_relabel_pairs(const char *in_path, const char *out_path, const eval_scorer *scorer, const char *score_name,
                       double tie_margin, eval_pairs_stats *stats, dpo_error *err) {
  memset(stats, 0, sizeof *stats);
  int k = score_name ? eval_score_index(scorer, score_name) : 0;
  if (k < 0) return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\" has no score \"%s\"", scorer->name, score_name);
  if (!(tie_margin >= 0)) return dpo_fail(err, DPO_ERR_USAGE, "tie margin must be >= 0");
  char dir[4096], out_dir[4096], source[512];
  folder_of(in_path, dir, sizeof dir);
  folder_of(out_path, out_dir, sizeof out_dir);
  if (strcmp(dir, out_dir) != 0)
    return dpo_fail(err, DPO_ERR_USAGE, "relabel: write %s beside %s (image paths are relative to the file's folder)",
                    out_path, in_path);
  snprintf(source, sizeof source, "ai-feedback:%s:%s", scorer->name, scorer->score_names[k]);
  char *data;
  size_t len;
  int rc = dpo_read_file(in_path, 1u << 30, &data, &len, err);
  if (rc) return rc;
  dpo_atomic_file af;
  rc = dpo_atomic_open(&af, out_path, err);
  int line = 0;
  for (char *p = data, *end = data + len; !rc && p < end;) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *stop = nl ? nl : end;
    line++;
    size_t n = (size_t)(stop - p);
    int blank = 1;
    for (size_t i = 0; i < n; i++) blank &= p[i] == ' ' || p[i] == '\t' || p[i] == '\r';
    if (!blank) {
      char where[4200];
      snprintf(where, sizeof where, "%s:%d", in_path, line);
      dpo_pair_record rec;
      rc = dpo_pair_record_parse(p, n, where, &rec, err);
      json_t *obj = rc ? NULL : dpo_json_parse(p, n, where, err);
      int tie = 0;
      if (!rc && !obj) rc = DPO_ERR_DATA;
      if (!rc) rc = relabel_line(obj, &rec, dir, scorer, k, tie_margin, source, &tie, err);
      if (rc) dpo_error_prefix(err, "%s", where);
      if (!rc) {
        char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text || fprintf(af.fp, "%s\n", text) < 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: write failed", out_path);
        free(text);
        stats->n_pairs++;
        stats->n_ties += tie;
      }
      if (obj) json_decref(obj);
      dpo_pair_record_free(&rec);
    }
    p = nl ? nl + 1 : end;
  }
  free(data);
  if (rc) {
    dpo_atomic_abort(&af);
    return rc;
  }
  return dpo_atomic_commit(&af, err);
}
