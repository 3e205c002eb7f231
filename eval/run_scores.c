/* Scoring a run folder: read its manifest, score its images, write the
 * per-image scores, and summarise them with bootstrap intervals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define RUN_MANIFEST_MAX_BYTES (512u << 20)

static char *dup_text(const char *s) {
  size_t n = strlen(s) + 1;
  char *out = malloc(n);
  if (out) memcpy(out, s, n);
  return out;
}

void eval_run_free(eval_run *run) {
  for (int i = 0; i < run->n; i++) {
    free(run->items[i].prompt_set);
    free(run->items[i].prompt_id);
    free(run->items[i].prompt);
    free(run->items[i].file);
  }
  free(run->items);
  run->items = NULL;
  run->n = 0;
}

static int parse_item(const json_t *obj, eval_run_item *it, const char *where, dpo_error *err) {
  const char *set, *id, *prompt, *file;
  int rc = dpo_json_get_string(obj, "prompt_set", &set, where, err);
  if (!rc) rc = dpo_json_get_string(obj, "prompt_id", &id, where, err);
  if (!rc) rc = dpo_json_get_string(obj, "prompt", &prompt, where, err);
  if (!rc) rc = dpo_json_get_string(obj, "file", &file, where, err);
  if (!rc) rc = dpo_json_get_int(obj, "seed", &it->seed, where, err);
  if (!rc) rc = dpo_json_get_int(obj, "image_index", &it->image_index, where, err);
  if (rc) return rc;
  if (file[0] == '/' || strstr(file, ".."))
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"file\": expected a path inside the run folder, got \"%s\"", where,
                    file);
  it->prompt_set = dup_text(set);
  it->prompt_id = dup_text(id);
  it->prompt = dup_text(prompt);
  it->file = dup_text(file);
  if (!it->prompt_set || !it->prompt_id || !it->prompt || !it->file)
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  return DPO_OK;
}

int eval_run_load(const char *run_dir, eval_run *run, dpo_error *err) {
  memset(run, 0, sizeof *run);
  snprintf(run->dir, sizeof run->dir, "%s", run_dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/manifest.jsonl", run_dir);
  char *data;
  size_t len;
  int rc = dpo_read_file(path, RUN_MANIFEST_MAX_BYTES, &data, &len, err);
  if (rc) return rc;
  int cap = 0, line = 0;
  char *p = data, *end = data + len;
  while (rc == DPO_OK && p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *stop = nl ? nl : end;
    line++;
    char where[4300];
    snprintf(where, sizeof where, "%s:%d", path, line);
    int blank = 1;
    for (char *q = p; q < stop; q++) blank &= *q == ' ' || *q == '\t' || *q == '\r';
    if (!blank) {
      if (run->n == cap) {
        cap = cap ? 2 * cap : 64;
        eval_run_item *grown = realloc(run->items, (size_t)cap * sizeof *grown);
        if (!grown) {
          rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
          break;
        }
        run->items = grown;
      }
      eval_run_item *it = &run->items[run->n++];
      memset(it, 0, sizeof *it);
      json_t *obj = dpo_json_parse(p, (size_t)(stop - p), where, err);
      if (!obj) rc = DPO_ERR_DATA;
      else {
        rc = json_is_object(obj) ? parse_item(obj, it, where, err)
                                 : dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object", where);
        json_decref(obj);
      }
    }
    p = nl ? nl + 1 : end;
  }
  free(data);
  if (!rc && run->n == 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: no images listed", path);
  if (rc) eval_run_free(run);
  return rc;
}

int eval_run_score(eval_run *run, const eval_scorer *scorer, int batch, int quiet, dpo_error *err) {
  if (batch < 1) batch = 1;
  dpo_image *images = calloc((size_t)batch, sizeof *images);
  eval_pair *pairs = calloc((size_t)batch, sizeof *pairs);
  double *scores = malloc((size_t)batch * (size_t)scorer->n_scores * sizeof *scores);
  int rc = images && pairs && scores ? DPO_OK : dpo_fail(err, DPO_ERR_DATA, "out of memory");
  dpo_progress progress;
  if (!quiet) dpo_progress_begin(&progress, "score", (uint64_t)run->n, "img");
  for (int start = 0; rc == DPO_OK && start < run->n; start += batch) {
    int n = run->n - start < batch ? run->n - start : batch, loaded = 0;
    for (int i = 0; i < n && rc == DPO_OK; i++, loaded++) {
      char path[8300];
      snprintf(path, sizeof path, "%s/%s", run->dir, run->items[start + i].file);
      rc = dpo_image_read(path, 3, &images[i], err);
      pairs[i].image = &images[i];
      pairs[i].prompt = run->items[start + i].prompt;
    }
    if (rc == DPO_OK) rc = eval_score(scorer, pairs, n, scores, err);
    for (int i = 0; rc == DPO_OK && i < n; i++)
      for (int k = 0; k < scorer->n_scores; k++) run->items[start + i].scores[k] = scores[i * scorer->n_scores + k];
    for (int i = 0; i < loaded; i++) dpo_image_free(&images[i]);
    if (!quiet) dpo_progress_advance(&progress, (uint64_t)n);
  }
  if (!quiet) dpo_progress_end(&progress);
  free(images);
  free(pairs);
  free(scores);
  return rc;
}

int eval_run_write_scores(const eval_run *run, const eval_scorer *scorer, char *path_out, size_t path_size,
                          dpo_error *err) {
  char safe[256], path[4400];
  size_t k = 0;
  for (const char *c = scorer->name; *c && k + 1 < sizeof safe; c++) {
    int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
             *c == '_' || *c == '-';
    safe[k++] = ok ? *c : '_';
  }
  safe[k] = '\0';
  snprintf(path, sizeof path, "%s/scores-%s.jsonl", run->dir, safe);
  if (path_out) snprintf(path_out, path_size, "%s", path);
  dpo_atomic_file af;
  int rc = dpo_atomic_open(&af, path, err);
  if (rc) return rc;
  for (int i = 0; i < run->n; i++) {
    const eval_run_item *it = &run->items[i];
    json_t *o = json_object();
    json_object_set_new(o, "prompt_set", json_string(it->prompt_set));
    json_object_set_new(o, "prompt_id", json_string(it->prompt_id));
    json_object_set_new(o, "image_index", json_integer(it->image_index));
    json_object_set_new(o, "seed", json_integer(it->seed));
    json_object_set_new(o, "file", json_string(it->file));
    for (int s = 0; s < scorer->n_scores; s++) json_object_set_new(o, scorer->score_names[s], json_real(it->scores[s]));
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!text || fprintf(af.fp, "%s\n", text) < 0) {
      free(text);
      dpo_atomic_abort(&af);
      return dpo_fail(err, DPO_ERR_DATA, "%s: write failed", path);
    }
    free(text);
  }
  return dpo_atomic_commit(&af, err);
}

/* ------------------------------------------------------------ summaries */

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of a sorted array. */
static double sorted_median(const double *x, int n) {
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* The q-quantile of sorted values (linear interpolation, numpy's default). */
static double quantile(const double *sorted, int n, double q) {
  double pos = q * (n - 1);
  int lo = (int)floor(pos);
  int hi = lo + 1 < n ? lo + 1 : lo;
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

int eval_summarize(const double *x, int n, int n_resamples, uint64_t seed, eval_summary *out, dpo_error *err) {
  memset(out, 0, sizeof *out);
  if (n < 1) return dpo_fail(err, DPO_ERR_USAGE, "no scores to summarise");
  if (n_resamples < 10) return dpo_fail(err, DPO_ERR_USAGE, "bootstrap needs at least 10 resamples");
  double *sorted = malloc((size_t)n * sizeof *sorted);
  double *sample = malloc((size_t)n * sizeof *sample);
  double *means = malloc((size_t)n_resamples * sizeof *means);
  double *medians = malloc((size_t)n_resamples * sizeof *medians);
  if (!sorted || !sample || !means || !medians) {
    free(sorted);
    free(sample);
    free(means);
    free(medians);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  out->n = n;
  double sum = 0;
  for (int i = 0; i < n; i++) sum += x[i];
  out->mean = sum / n;
  memcpy(sorted, x, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, compare_double);
  out->median = sorted_median(sorted, n);
  dpo_rng rng;
  dpo_rng_init(&rng, seed, dpo_rng_stream_id("eval.bootstrap", 0, 0));
  for (int b = 0; b < n_resamples; b++) {
    double s = 0;
    for (int i = 0; i < n; i++) {
      sample[i] = x[dpo_rng_next_below(&rng, (uint32_t)n)];
      s += sample[i];
    }
    means[b] = s / n;
    qsort(sample, (size_t)n, sizeof *sample, compare_double);
    medians[b] = sorted_median(sample, n);
  }
  qsort(means, (size_t)n_resamples, sizeof *means, compare_double);
  qsort(medians, (size_t)n_resamples, sizeof *medians, compare_double);
  out->mean_lo = quantile(means, n_resamples, 0.025);
  out->mean_hi = quantile(means, n_resamples, 0.975);
  out->median_lo = quantile(medians, n_resamples, 0.025);
  out->median_hi = quantile(medians, n_resamples, 0.975);
  free(sorted);
  free(sample);
  free(means);
  free(medians);
  return DPO_OK;
}
