/* The shapes-world judge as a scorer, so that AI-feedback pairs, metrics and
 * simulated raters can all use it by name ("shapes-judge"). */
#include "eval/eval_internal.h"

#include "world/world.h"

/* q1 (general preference given the prompt) leans on alignment, as people
 * asked "which do you prefer given the prompt" mostly do, but a clean image
 * still counts; the weights are a stated choice, not a measurement. */
#define SHAPES_OVERALL_ALIGNMENT_WEIGHT 0.7

int eval_score_shapes_judge(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores,
                            dpo_error *err) {
  (void)scorer;
  for (int i = 0; i < n; i++) {
    world_scores s;
    int rc = world_judge_score(pairs[i].image, pairs[i].prompt ? pairs[i].prompt : "", &s, err);
    if (rc) return dpo_error_prefix(err, "shapes-judge: pair %d", i);
    scores[3 * i] = s.alignment;
    scores[3 * i + 1] = s.appeal;
    scores[3 * i + 2] = SHAPES_OVERALL_ALIGNMENT_WEIGHT * s.alignment +
                        (1.0 - SHAPES_OVERALL_ALIGNMENT_WEIGHT) * s.appeal;
  }
  return DPO_OK;
}
