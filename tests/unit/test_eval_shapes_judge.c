/* The shapes-world judge through the scorer registry: a rendered scene scores
 * its own prompt above a perturbed one, overall follows its stated formula,
 * and prompts outside the grammar are refused with the pair named. */
#include <string.h>

#include "eval/eval.h"
#include "tests/test.h"
#include "world/world.h"

int main(void) {
  const eval_scorer *judge = eval_find_scorer("shapes-judge");
  CHECK(judge != NULL);
  if (!judge) return test_finish();
  CHECK_INT(judge->n_scores, 3);
  int ia = eval_score_index(judge, "alignment"), ip = eval_score_index(judge, "appeal"),
      io = eval_score_index(judge, "overall");
  CHECK(ia >= 0 && ip >= 0 && io >= 0);

  const char *truth = "a red circle to the left of a blue square";
  const char *wrong = "a red circle to the right of a blue square";
  dpo_error err;
  dpo_image img;
  CHECK_INT(world_render_prompt(truth, 7, 32, &img, &err), DPO_OK);
  eval_pair pairs[2] = {{&img, truth}, {&img, wrong}};
  double scores[6];
  CHECK_INT(eval_score(judge, pairs, 2, scores, &err), DPO_OK);
  CHECK(scores[ia] > scores[3 + ia]);
  CHECK_NEAR(scores[ia], 1.0, 1e-9);
  CHECK_NEAR(scores[ip], scores[3 + ip], 1e-12); /* appeal ignores the prompt */
  for (int i = 0; i < 2; i++)
    CHECK_NEAR(scores[3 * i + io], 0.7 * scores[3 * i + ia] + 0.3 * scores[3 * i + ip], 1e-12);

  eval_pair bad = {&img, "a purple elephant"};
  CHECK_INT(eval_score(judge, &bad, 1, scores, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "shapes-judge: pair 0");
  dpo_image_free(&img);
  return test_finish();
}
