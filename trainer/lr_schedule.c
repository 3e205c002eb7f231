/* The learning-rate schedule (constant after a linear warmup, as diffusers'
 * constant_with_warmup that the official code uses) and --scale-lr, whose
 * effective value is always stated in words: users of the official code were
 * unsure what learning rate they had actually trained with. */
#include <inttypes.h>
#include <math.h>

#include "trainer/trainer.h"

int dpo_lr_schedule_init(dpo_lr_schedule *s, double lr, int64_t warmup_steps, double warmup_frac,
                         int64_t max_steps, dpo_error *err) {
  if (!(lr >= 0) || !isfinite(lr)) return dpo_fail(err, DPO_ERR_USAGE, "learning rate must be >= 0, got %g", lr);
  if (warmup_frac >= 0) {
    if (warmup_frac > 1) return dpo_fail(err, DPO_ERR_USAGE, "warmup fraction must be in [0, 1], got %g", warmup_frac);
    if (max_steps < 1)
      return dpo_fail(err, DPO_ERR_USAGE, "a warmup fraction needs the number of steps (got %" PRId64 ")", max_steps);
    warmup_steps = (int64_t)llround(warmup_frac * (double)max_steps);
  } else if (warmup_steps < 0) {
    return dpo_fail(err, DPO_ERR_USAGE, "warmup steps must be >= 0, got %" PRId64, warmup_steps);
  }
  s->lr = lr;
  s->warmup_steps = warmup_steps;
  return DPO_OK;
}

double dpo_lr_at(const dpo_lr_schedule *s, int64_t step) {
  if (step < 0) return 0;
  if (step < s->warmup_steps) return s->lr * ((double)step / (double)s->warmup_steps);
  return s->lr;
}

double dpo_effective_lr(double lr, int batch_size, int grad_accum, int workers, int scale, char *sentence, size_t n) {
  if (!scale) {
    snprintf(sentence, n, "effective learning rate %.6g (as given; --scale-lr would make it %.6g = %.6g x batch %d x "
             "grad-accum %d x workers %d)", lr, lr * batch_size * grad_accum * workers, lr, batch_size, grad_accum,
             workers);
    return lr;
  }
  double effective = lr * batch_size * grad_accum * workers;
  snprintf(sentence, n, "effective learning rate %.6g = %.6g x batch %d x grad-accum %d x workers %d (--scale-lr)",
           effective, lr, batch_size, grad_accum, workers);
  return effective;
}
