/* Validation during training: sample a fixed prompt list from the weights in
 * memory and score it (see eval.h). */
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int eval_validate(dpo_pipeline *pipe, const char *prompts, int limit, const eval_sample_options *opt, uint64_t seed,
                  const eval_scorer *scorer, int score_index, int batch, int n_threads, eval_validation *out,
                  dpo_error *err) {
  memset(out, 0, sizeof *out);
  if (score_index < 0 || score_index >= scorer->n_scores)
    return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\": no score %d", scorer->name, score_index);
  eval_prompt_list list;
  int rc = eval_prompt_list_load(prompts, &list, err);
  if (rc) return rc;
  if (list.is_edit) {
    eval_prompt_list_free(&list);
    return dpo_fail(err, DPO_ERR_USAGE, "validation prompts \"%s\" are edits; use a text-to-image set", prompts);
  }
  int n = limit > 0 && limit < list.n ? limit : list.n;
  if (batch < 1) batch = 1;
  if (batch > n) batch = n;
  eval_sampler *s;
  rc = eval_sampler_open(&s, pipe, opt, batch, n_threads, err);
  if (rc) {
    eval_prompt_list_free(&list);
    return rc;
  }
  size_t lat = eval_sampler_latent_numel(s);
  float *noise = malloc((size_t)batch * lat * sizeof *noise);
  const char **texts = malloc((size_t)batch * sizeof *texts);
  dpo_image *images = calloc((size_t)batch, sizeof *images);
  eval_pair *pairs = calloc((size_t)batch, sizeof *pairs);
  double *scores = malloc((size_t)batch * (size_t)scorer->n_scores * sizeof *scores);
  double *values = malloc((size_t)n * sizeof *values);
  if (!noise || !texts || !images || !pairs || !scores || !values) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int start = 0; start < n && !rc; start += batch) {
    int m = n - start < batch ? n - start : batch;
    for (int i = 0; i < m; i++) {
      texts[i] = list.items[start + i].text;
      eval_initial_noise(seed, list.items[start + i].id, 0, noise + (size_t)i * lat, lat);
    }
    rc = eval_txt2img(s, texts, m, noise, NULL, images, err);
    if (rc) break;
    for (int i = 0; i < m; i++) {
      pairs[i].image = &images[i];
      pairs[i].prompt = texts[i];
    }
    rc = eval_score(scorer, pairs, m, scores, err);
    for (int i = 0; i < m; i++) {
      if (!rc) values[start + i] = scores[i * scorer->n_scores + score_index];
      dpo_image_free(&images[i]);
    }
  }
  if (!rc) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += values[i];
    qsort(values, (size_t)n, sizeof *values, compare_double);
    out->n = n;
    out->mean = sum / n;
    out->median = n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
  }
  free(noise);
  free(texts);
  free(images);
  free(pairs);
  free(scores);
  free(values);
  eval_sampler_close(s);
  eval_prompt_list_free(&list);
  return rc;
}
