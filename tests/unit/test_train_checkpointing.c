/* dpo train --gradient-checkpointing (dpo_train_options.gradient_checkpointing)
 * gives bitwise the weights of the same run without it (the policy UNet
 * recomputes its activations with the same arithmetic), and both trained.
 * Also: options that the CUDA training loop does not support yet are usage
 * errors there, checked before any work (so they can be tested without a
 * device: the check comes first). */
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "tests/train_fixture.h"
#include "trainer/trainer.h"

static int same_file(const char *a, const char *b) {
  char *x, *y;
  size_t nx, ny;
  dpo_error err;
  if (dpo_read_file(a, 64u << 20, &x, &nx, &err)) return 0;
  if (dpo_read_file(b, 64u << 20, &y, &ny, &err)) {
    free(x);
    return 0;
  }
  int same = nx == ny && memcmp(x, y, nx) == 0;
  free(x);
  free(y);
  return same;
}

static const char *join(const char *a, const char *b) {
  static char buf[8][4096];
  static int k;
  char *out = buf[k++ % 8];
  snprintf(out, 4096, "%s/%s", a, b);
  return out;
}

static void options(dpo_train_options *o, const char *base, const char *pairs, const char *out) {
  dpo_train_options_default(o);
  o->base_dir = base;
  o->pairs_path = pairs;
  o->out_dir = out;
  o->resolution = 16;
  o->lr = 1e-3;
  o->warmup_steps = 1;
  o->max_steps = 3;
  o->batch_size = 2;
  o->checkpoint_every = 0;
  o->threads = 1;
  o->seed = 3;
}

static const char *UNET = "unet/diffusion_pytorch_model.safetensors";

int main(void) {
  char base[1024], data[1024], pairs[1100], plain[1100], ckpt[1100];
  snprintf(base, sizeof base, "%s", test_path("base"));
  snprintf(data, sizeof data, "%s", test_path("data"));
  snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", data);
  snprintf(plain, sizeof plain, "%s", test_path("plain"));
  snprintf(ckpt, sizeof ckpt, "%s", test_path("ckpt"));
  CHECK_INT(tf_make_pipeline(base, 0, 1), 0);
  CHECK_INT(tf_make_pairs(data, 4, 3, 60, 16), 0);
  dpo_train_options o;
  dpo_train_result res;
  dpo_error err = {0};

  options(&o, base, pairs, plain);
  CHECK_INT(dpo_train(&o, &res, &err), DPO_OK);
  options(&o, base, pairs, ckpt);
  o.gradient_checkpointing = 1;
  CHECK_INT(dpo_train(&o, &res, &err), DPO_OK);
  if (err.code) fprintf(stderr, "dpo_train: %s\n", err.msg);
  CHECK_INT(res.steps_done, 3);
  CHECK(same_file(join(plain, UNET), join(ckpt, UNET)));
  CHECK(!same_file(join(plain, UNET), join(base, UNET))); /* it trained */

  /* On CUDA, text-encoder training and validation are refused up front. */
  options(&o, base, pairs, test_path("cuda_te"));
  o.backend = KN_BACKEND_CUDA;
  o.train_text_encoder = 1;
  CHECK_INT(dpo_train(&o, &res, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "--train-text-encoder does not run on cuda yet");
  return test_finish();
}
