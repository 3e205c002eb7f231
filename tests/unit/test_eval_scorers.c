/* The scorer registry and the built-in pixel-statistics scorers: values
 * computed by hand, batch layout, registration rules. */
#include <string.h>

#include "eval/eval.h"
#include "tests/test.h"

static void fill(dpo_image *im, int channels, const uint8_t *px) {
  dpo_error err;
  CHECK_INT(dpo_image_alloc(im, 2, 1, channels, &err), DPO_OK);
  memcpy(im->pixels, px, (size_t)(2 * channels));
}

static void test_builtins(void) {
  dpo_image white, red, gray;
  fill(&white, 3, (const uint8_t[]){255, 255, 255, 255, 255, 255});
  fill(&red, 3, (const uint8_t[]){255, 0, 0, 0, 0, 0});   /* one red pixel, one black */
  fill(&gray, 1, (const uint8_t[]){51, 51});
  CHECK_NEAR(eval_mean_luma(&white), 1.0, 1e-12);
  CHECK_NEAR(eval_mean_luma(&red), 0.299 / 2, 1e-12);
  CHECK_NEAR(eval_mean_luma(&gray), 0.2, 1e-12);
  CHECK_NEAR(eval_mean_redness(&white), 0.0, 1e-12);
  CHECK_NEAR(eval_mean_redness(&red), 0.5, 1e-12);
  CHECK_NEAR(eval_mean_redness(&gray), 0.0, 1e-12);

  const eval_scorer *pair = eval_find_scorer("pixel-pair");
  CHECK(pair != NULL);
  CHECK(eval_find_scorer("no-such-scorer") == NULL);
  if (!pair) return;
  CHECK_INT(pair->n_scores, 2);
  CHECK_INT(eval_score_index(pair, "appeal"), 0);
  CHECK_INT(eval_score_index(pair, "alignment"), 1);
  CHECK_INT(eval_score_index(pair, "overall"), -1);
  eval_pair batch[3] = {{&white, "a white square"}, {&red, NULL}, {&gray, "gray"}};
  double scores[6];
  dpo_error err;
  CHECK_INT(eval_score(pair, batch, 3, scores, &err), DPO_OK);
  CHECK_NEAR(scores[0], 1.0, 1e-12);        /* white appeal */
  CHECK_NEAR(scores[1], 0.0, 1e-12);        /* white alignment */
  CHECK_NEAR(scores[2], 0.299 / 2, 1e-12);  /* red appeal */
  CHECK_NEAR(scores[3], 0.5, 1e-12);        /* red alignment */
  double one[3];
  CHECK_INT(eval_score(eval_find_scorer("redness"), batch, 3, one, &err), DPO_OK);
  CHECK_NEAR(one[1], 0.5, 1e-12);
  /* A malformed image is refused with its position in the batch. */
  dpo_image broken = {0};
  eval_pair bad[2] = {{&white, NULL}, {&broken, NULL}};
  CHECK_INT(eval_score(pair, bad, 2, scores, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "pair 1");
  dpo_image_free(&white);
  dpo_image_free(&red);
  dpo_image_free(&gray);
}

static int score_constant(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores, dpo_error *err) {
  (void)pairs;
  (void)err;
  for (int i = 0; i < n; i++) scores[i] = *(const double *)scorer->state;
  return DPO_OK;
}

static void test_registry(void) {
  dpo_error err;
  int before = eval_scorer_count();
  static double value = 0.25;
  static const eval_scorer constant = {"constant", "test: the same score for every image", 1, {"overall"},
                                       score_constant, &value};
  CHECK_INT(eval_register_scorer(&constant, &err), DPO_OK);
  CHECK_INT(eval_scorer_count(), before + 1);
  CHECK(eval_find_scorer("constant") == &constant);
  CHECK(eval_scorer_at(before) == &constant);
  CHECK(eval_scorer_at(before + 1) == NULL);
  CHECK_INT(eval_register_scorer(&constant, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "already registered");
  static const eval_scorer builtin_name = {"brightness", "dup", 1, {"x"}, score_constant, &value};
  CHECK_INT(eval_register_scorer(&builtin_name, &err), DPO_ERR_USAGE);
  static const eval_scorer no_scores = {"empty", "no scores", 0, {NULL}, score_constant, &value};
  CHECK_INT(eval_register_scorer(&no_scores, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "expected 1 to 4 scores");
  static const eval_scorer unnamed_score = {"unnamed", "x", 2, {"a", NULL}, score_constant, &value};
  CHECK_INT(eval_register_scorer(&unnamed_score, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "score 1 has no name");
  static const eval_scorer no_fn = {"nofn", "x", 1, {"a"}, NULL, NULL};
  CHECK_INT(eval_register_scorer(&no_fn, &err), DPO_ERR_USAGE);
  CHECK_INT(eval_scorer_count(), before + 1);
}

int main(void) {
  test_builtins();
  test_registry();
  return test_finish();
}
