/* The scorer registry and the built-in pixel-statistics scorers. */
#include <string.h>

#include "eval/eval_internal.h"

/* ------------------------------------------------------ pixel statistics */

/* Reads pixel (r, g, b) whatever the channel count (gray repeats). */
static void pixel_rgb(const dpo_image *image, size_t p, double *r, double *g, double *b) {
  const uint8_t *px = image->pixels + p * (size_t)image->channels;
  if (image->channels < 3) {
    *r = *g = *b = px[0];
  } else {
    *r = px[0];
    *g = px[1];
    *b = px[2];
  }
}

double eval_mean_luma(const dpo_image *image) {
  size_t n = (size_t)image->width * (size_t)image->height;
  if (n == 0) return 0.0;
  double sum = 0.0;
  for (size_t p = 0; p < n; p++) {
    double r, g, b;
    pixel_rgb(image, p, &r, &g, &b);
    sum += 0.299 * r + 0.587 * g + 0.114 * b;
  }
  return sum / (double)n / 255.0;
}

double eval_mean_redness(const dpo_image *image) {
  size_t n = (size_t)image->width * (size_t)image->height;
  if (n == 0) return 0.0;
  double sum = 0.0;
  for (size_t p = 0; p < n; p++) {
    double r, g, b;
    pixel_rgb(image, p, &r, &g, &b);
    sum += r - 0.5 * (g + b);
  }
  return sum / (double)n / 255.0;
}

static int score_brightness(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores, dpo_error *err) {
  (void)scorer;
  (void)err;
  for (int i = 0; i < n; i++) scores[i] = eval_mean_luma(pairs[i].image);
  return DPO_OK;
}

static int score_redness(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores, dpo_error *err) {
  (void)scorer;
  (void)err;
  for (int i = 0; i < n; i++) scores[i] = eval_mean_redness(pairs[i].image);
  return DPO_OK;
}

/* Score order follows score_names below: appeal, then alignment. */
static int score_pixel_pair(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores, dpo_error *err) {
  (void)scorer;
  (void)err;
  for (int i = 0; i < n; i++) {
    scores[2 * i] = eval_mean_luma(pairs[i].image);
    scores[2 * i + 1] = eval_mean_redness(pairs[i].image);
  }
  return DPO_OK;
}

static const eval_scorer builtin_scorers[] = {
    {"brightness", "test scorer: mean luma of the image (ignores the prompt)", 1, {"brightness"}, score_brightness, NULL},
    {"redness", "test scorer: mean of R - (G+B)/2 (ignores the prompt)", 1, {"redness"}, score_redness, NULL},
    {"pixel-pair", "test scorer: appeal = mean luma, alignment = redness (ignores the prompt)", 2,
     {"appeal", "alignment"}, score_pixel_pair, NULL},
    {"shapes-judge",
     "shapes-world judge from pixels: alignment = share of the prompt's constraints met, appeal = clean "
     "flat colours, overall = 0.7 alignment + 0.3 appeal",
     3, {"alignment", "appeal", "overall"}, eval_score_shapes_judge, NULL},
};
enum { N_BUILTIN = (int)(sizeof builtin_scorers / sizeof builtin_scorers[0]) };

/* -------------------------------------------------------------- registry */

static const eval_scorer *registered[EVAL_MAX_SCORERS];
static int n_registered;

int eval_scorer_count(void) { return N_BUILTIN + n_registered; }

const eval_scorer *eval_scorer_at(int index) {
  if (index < 0 || index >= eval_scorer_count()) return NULL;
  return index < N_BUILTIN ? &builtin_scorers[index] : registered[index - N_BUILTIN];
}

const eval_scorer *eval_find_scorer(const char *name) {
  for (int i = 0; i < eval_scorer_count(); i++)
    if (strcmp(eval_scorer_at(i)->name, name) == 0) return eval_scorer_at(i);
  return NULL;
}

int eval_register_scorer(const eval_scorer *scorer, dpo_error *err) {
  if (!scorer || !scorer->name || !scorer->name[0] || !scorer->score)
    return dpo_fail(err, DPO_ERR_USAGE, "scorer registry: a scorer needs a name and a score function");
  if (scorer->n_scores < 1 || scorer->n_scores > EVAL_MAX_SCORES)
    return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\": expected 1 to %d scores, got %d", scorer->name,
                    EVAL_MAX_SCORES, scorer->n_scores);
  for (int k = 0; k < scorer->n_scores; k++)
    if (!scorer->score_names[k] || !scorer->score_names[k][0])
      return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\": score %d has no name", scorer->name, k);
  if (eval_find_scorer(scorer->name))
    return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\" is already registered", scorer->name);
  if (n_registered >= EVAL_MAX_SCORERS)
    return dpo_fail(err, DPO_ERR_USAGE, "scorer registry is full (%d scorers)", EVAL_MAX_SCORERS);
  registered[n_registered++] = scorer;
  return DPO_OK;
}

int eval_score_index(const eval_scorer *scorer, const char *score_name) {
  for (int k = 0; k < scorer->n_scores; k++)
    if (strcmp(scorer->score_names[k], score_name) == 0) return k;
  return -1;
}

int eval_score(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores, dpo_error *err) {
  if (n < 0) return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\": negative batch size", scorer->name);
  for (int i = 0; i < n; i++) {
    const dpo_image *im = pairs[i].image;
    if (!im || !im->pixels || im->width < 1 || im->height < 1 ||
        (im->channels != 1 && im->channels != 3 && im->channels != 4))
      return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\": pair %d: expected an 8-bit image with 1, 3 or 4 channels",
                      scorer->name, i);
  }
  return scorer->score(scorer, pairs, n, scores, err);
}
