/* The warmup schedule against diffusers' constant_with_warmup values, the
 * fraction rule, --scale-lr and its sentence, and refused settings. */
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static void test_warmup_steps(void) {
  dpo_lr_schedule s;
  dpo_error err;
  CHECK_INT(dpo_lr_schedule_init(&s, 1e-3, 4, -1, 10, &err), DPO_OK);
  /* diffusers: lambda(step) = step / max(1, warmup) while step < warmup, then 1. */
  CHECK_NEAR(dpo_lr_at(&s, 0), 0, 0);
  CHECK_NEAR(dpo_lr_at(&s, 1), 2.5e-4, 1e-18);
  CHECK_NEAR(dpo_lr_at(&s, 3), 7.5e-4, 1e-18);
  CHECK_NEAR(dpo_lr_at(&s, 4), 1e-3, 0);
  CHECK_NEAR(dpo_lr_at(&s, 1000000), 1e-3, 0);
  CHECK_NEAR(dpo_lr_at(&s, -1), 0, 0);
  /* No warmup: constant from the first update. */
  CHECK_INT(dpo_lr_schedule_init(&s, 2e-5, 0, -1, 10, &err), DPO_OK);
  CHECK_NEAR(dpo_lr_at(&s, 0), 2e-5, 0);
}

static void test_warmup_fraction(void) {
  dpo_lr_schedule s;
  dpo_error err;
  /* The paper: 25% linear warmup of 2000 steps is 500 steps. */
  CHECK_INT(dpo_lr_schedule_init(&s, 1e-8, 123, 0.25, 2000, &err), DPO_OK);
  CHECK_INT(s.warmup_steps, 500);
  CHECK_NEAR(dpo_lr_at(&s, 250), 0.5e-8, 1e-22);
  CHECK_INT(dpo_lr_schedule_init(&s, 1e-8, 0, 0.25, 10, &err), DPO_OK);
  CHECK_INT(s.warmup_steps, 3);   /* 2.5 rounds to the nearest, away from zero */
  CHECK_INT(dpo_lr_schedule_init(&s, 1e-8, 0, 1.0, 7, &err), DPO_OK);
  CHECK_INT(s.warmup_steps, 7);
}

static void test_refused(void) {
  dpo_lr_schedule s;
  dpo_error err;
  CHECK_INT(dpo_lr_schedule_init(&s, -1, 0, -1, 10, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "learning rate");
  CHECK_INT(dpo_lr_schedule_init(&s, 1e-3, -5, -1, 10, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "warmup steps");
  CHECK_INT(dpo_lr_schedule_init(&s, 1e-3, 0, 1.5, 10, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "fraction");
  CHECK_INT(dpo_lr_schedule_init(&s, 1e-3, 0, 0.25, 0, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "number of steps");
}

static void test_scale_lr(void) {
  char sentence[256];
  /* The official SD1.5 launch: 1e-8 x 1 x 128 x 16 = 2.048e-5. */
  double lr = dpo_effective_lr(1e-8, 1, 128, 16, 1, sentence, sizeof sentence);
  CHECK_NEAR(lr, 2.048e-5, 1e-18);
  CHECK_CONTAINS(sentence, "2.048e-05 = 1e-08 x batch 1 x grad-accum 128 x workers 16 (--scale-lr)");
  lr = dpo_effective_lr(1e-8, 2, 4, 1, 0, sentence, sizeof sentence);
  CHECK_NEAR(lr, 1e-8, 0);
  CHECK_CONTAINS(sentence, "effective learning rate 1e-08 (as given");
  CHECK_CONTAINS(sentence, "8e-08");
}

int main(void) {
  test_warmup_steps();
  test_warmup_fraction();
  test_refused();
  test_scale_lr();
  return test_finish();
}
