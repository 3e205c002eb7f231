/* Shared between eval's own files only. */
#ifndef DPO_EVAL_INTERNAL_H
#define DPO_EVAL_INTERNAL_H

#include "eval/eval.h"

int eval_score_shapes_judge(const eval_scorer *scorer, const eval_pair *pairs, int n, double *scores,
                            dpo_error *err);

#endif
