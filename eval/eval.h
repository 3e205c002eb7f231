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

#endif
