/* dpo train on tiny pipelines: resume after a stop gives bitwise the weights
 * of an uninterrupted run (CPU, one thread); checkpoints are complete
 * pipeline folders, rotated with --keep-checkpoints; the latent cache is
 * reused by a second run and gives the same weights; text-encoder training,
 * random crops, Adafactor and SFT run; and the errors of a bad run leave no
 * output folder behind. */
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static const char *join(const char *a, const char *b) {
  static char buf[8][4096];
  static int k;
  char *out = buf[k++ % 8];
  snprintf(out, 4096, "%s/%s", a, b);
  return out;
}

static void base_options(dpo_train_options *o, const char *base, const char *pairs, const char *out) {
  dpo_train_options_default(o);
  o->base_dir = base;
  o->pairs_path = pairs;
  o->out_dir = out;
  o->resolution = 16;
  o->lr = 1e-3;
  o->warmup_steps = 2;
  o->max_steps = 6;
  o->batch_size = 2;
  o->grad_accum = 2;
  o->proportion_empty_prompts = 0.5;
  o->checkpoint_every = 2;
  o->threads = 1;
  o->seed = 5;
}

static int run(const dpo_train_options *o, dpo_train_result *res) {
  dpo_error err;
  int rc = dpo_train(o, res, &err);
  if (rc) fprintf(stderr, "dpo_train: %s\n", err.msg);
  return rc;
}

static const char *UNET = "unet/diffusion_pytorch_model.safetensors";

/* Starts `dpo train` (the built binary) on the tiny run of base_options,
 * 12 steps, into out; returns the child's pid. A forked copy of this process
 * could not train: it could not use the OpenMP pool the earlier runs started. */
static pid_t start_cli_run(const char *base, const char *pairs, const char *out, const char *resume) {
  char dpo[4200];
  snprintf(dpo, sizeof dpo, "%s/dpo", DPO_BUILD_DIR);
  fflush(NULL);
  pid_t child = fork();
  if (child == 0) {
    if (!freopen("/dev/null", "w", stderr)) _exit(126);
    execl(dpo, "dpo", "train", "--base", base, "--pairs", pairs, "--out", out, "--resolution", "16", "--lr", "1e-3",
          "--warmup-steps", "2", "--max-steps", "12", "--batch-size", "2", "--grad-accum", "2",
          "--proportion-empty-prompts", "0.5", "--checkpoint-every", "2", "--threads", "1", "--seed", "5",
          resume ? "--resume" : (char *)NULL, resume, (char *)NULL);
    _exit(127);
  }
  return child;
}

/* A real kill: `dpo train` runs in a child process while this one waits for
 * its first checkpoint and sends SIGKILL at once, mid-run (possibly
 * mid-checkpoint); `--resume latest` must then give the bytes of an
 * uninterrupted run of the same command. Every run goes through the binary. */
static void check_sigkill_resume(const char *base, const char *pairs) {
  const char *full = test_path("full12"), *killed = test_path("killed12");
  int status = 0;
  pid_t child = start_cli_run(base, pairs, full, NULL);
  CHECK(child > 0);
  if (child <= 0) return;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  child = start_cli_run(base, pairs, killed, NULL);
  CHECK(child > 0);
  if (child <= 0) return;
  const char *first = join(killed, "checkpoint-2");
  struct timespec pause = {0, 200000}; /* 0.2 ms between looks, at most about 100 s */
  for (int i = 0; i < 500000 && !exists(first); i++) nanosleep(&pause, NULL);
  kill(child, SIGKILL);
  waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  CHECK(!exists(join(killed, "model_index.json")));   /* it died before the end */
  /* The resumed run goes through the binary too, so that both runs of the
   * comparison come from the same executable (test_train_fresh_process
   * checks that this process and the binary train to the same bytes). */
  child = start_cli_run(base, pairs, killed, "latest");
  CHECK(child > 0);
  if (child <= 0) return;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(exists(join(killed, "model_index.json")));
  CHECK(same_file(join(full, UNET), join(killed, UNET)));
}

int main(void) {
  char base[1024], latent[1024], data[1024], pairs[1100];
  snprintf(base, sizeof base, "%s", test_path("base"));
  snprintf(latent, sizeof latent, "%s", test_path("latent"));
  snprintf(data, sizeof data, "%s", test_path("data"));
  snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", data);
  CHECK_INT(tf_make_pipeline(base, 0, 1), 0);
  CHECK_INT(tf_make_pipeline(latent, 1, 2), 0);
  CHECK_INT(tf_make_pairs(data, 6, 3, 60, 16), 0);
  dpo_train_options o;
  dpo_train_result res;
  dpo_error err;

  /* Uninterrupted. */
  const char *full = test_path("full");
  base_options(&o, base, pairs, full);
  CHECK_INT(run(&o, &res), DPO_OK);
  CHECK_INT(res.steps_done, 6);
  CHECK(exists(join(full, "model_index.json")));
  CHECK(exists(join(full, "checkpoint-2/train_state/state.json")));
  CHECK(exists(join(full, "checkpoint-6/unet/config.json")));
  CHECK(!same_file(join(full, UNET), join(base, UNET)));   /* it trained */
  dpo_pipeline p;
  CHECK_INT(dpo_pipeline_load(join(full, "checkpoint-4"), &p, &err), DPO_OK);
  dpo_pipeline_free(&p);
  CHECK_INT(dpo_pipeline_load(full, &p, &err), DPO_OK);
  dpo_pipeline_free(&p);

  /* Stopped after step 3 (its checkpoint is step 2; step 3 is lost as in a
   * kill), resumed from the latest: identical bytes. */
  const char *stopped = test_path("stopped");
  base_options(&o, base, pairs, stopped);
  o.stop_after = 3;
  o.keep_checkpoints = 1;
  CHECK_INT(run(&o, &res), DPO_OK);
  CHECK_INT(res.steps_done, 3);
  CHECK(!exists(join(stopped, "model_index.json")));
  CHECK(exists(join(stopped, "checkpoint-2")));
  /* Without --resume an existing run is refused. */
  o.stop_after = 0;
  CHECK_INT(dpo_train(&o, &res, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "--resume");
  o.resume = "latest";
  CHECK_INT(run(&o, &res), DPO_OK);
  CHECK_INT(res.resumed_from, 2);
  CHECK_INT(res.steps_done, 6);
  CHECK(same_file(join(full, UNET), join(stopped, UNET)));
  CHECK(same_file(join(full, "checkpoint-6/train_state/optimizer.safetensors"),
                  join(stopped, "checkpoint-6/train_state/optimizer.safetensors")));
  /* --keep-checkpoints 1: only the newest remains. */
  CHECK(!exists(join(stopped, "checkpoint-2")) && !exists(join(stopped, "checkpoint-4")));
  CHECK(exists(join(stopped, "checkpoint-6")));
  /* The log holds steps 1..6 once each. */
  char *log;
  size_t n;
  CHECK_INT(dpo_read_file(join(stopped, "train_log.jsonl"), 1 << 20, &log, &n, &err), DPO_OK);
  int lines = 0;
  for (size_t i = 0; i < n; i++) lines += log[i] == '\n';
  CHECK_INT(lines, 6);
  CHECK_CONTAINS(log, "\"implicit_acc\"");
  free(log);

  check_sigkill_resume(base, pairs);

  /* Latent pipeline with the VAE: the second run (another OUT, same cache
   * dir) hits the cache and gives the same weights. */
  const char *cache = test_path("cache");
  const char *l1 = test_path("latent1"), *l2 = test_path("latent2");
  base_options(&o, latent, pairs, l1);
  o.resolution = 32;   /* VAE factor 2 -> 16x16 latents */
  o.cache_dir = cache;
  o.max_steps = 2;
  CHECK_INT(run(&o, &res), DPO_OK);
  CHECK_INT(res.cache_hit, 0);
  o.out_dir = l2;
  CHECK_INT(run(&o, &res), DPO_OK);
  CHECK_INT(res.cache_hit, 1);
  CHECK(same_file(join(l1, UNET), join(l2, UNET)));
  CHECK(exists(join(l2, "vae/config.json")));

  /* Random crops + text encoder training + Adafactor; SFT. */
  base_options(&o, base, pairs, test_path("te"));
  o.random_crop = 1;
  o.train_text_encoder = 1;
  o.optimizer = DPO_OPTIM_ADAFACTOR;
  o.max_steps = 2;
  o.checkpoint_every = 0;
  CHECK_INT(run(&o, &res), DPO_OK);
  CHECK(!same_file(join(test_path("te"), "text_encoder/model.safetensors"), join(base, "text_encoder/model.safetensors")));
  base_options(&o, base, pairs, test_path("sft"));
  o.sft = 1;
  o.max_steps = 2;
  CHECK_INT(run(&o, &res), DPO_OK);
  CHECK(res.last.model_mse_w > 0);

  /* Errors: a missing image, a malformed line, a missing component; no OUT left. */
  char bad[1100];
  snprintf(bad, sizeof bad, "%s/bad.jsonl", data);
  tf_write_text(bad, "{\"caption\": \"a\", \"image_0\": \"0_0.png\", \"image_1\": \"0_1.png\", \"label_0\": 1, \"source\": \"s\"}\n"
                     "{\"caption\": \"a\", \"image_0\": \"nope.png\", \"image_1\": \"0_1.png\", \"label_0\": 1, \"source\": \"s\"}\n");
  base_options(&o, base, bad, test_path("err1"));
  CHECK_INT(dpo_train(&o, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "nope.png");
  CHECK(!exists(test_path("err1")));
  tf_write_text(bad, "{\"caption\": \"a\", \"image_0\": \"0_0.png\", \"image_1\": \"0_1.png\", \"label_0\": 1, \"source\": \"s\"}\n"
                     "{\"caption\": 3}\n");
  CHECK_INT(dpo_train(&o, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "bad.jsonl:2");
  CHECK(!exists(test_path("err1")));
  /* An image that is not an image: found while building the cache, after OUT was made. */
  tf_write_text(join(data, "junk.png"), "not a png");
  tf_write_text(bad, "{\"caption\": \"a\", \"image_0\": \"0_0.png\", \"image_1\": \"junk.png\", \"label_0\": 1, \"source\": \"s\"}\n");
  CHECK_INT(dpo_train(&o, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "junk.png");
  CHECK(!exists(test_path("err1")));
  remove(join(base, "text_encoder/model.safetensors"));
  base_options(&o, base, pairs, test_path("err2"));
  CHECK_INT(dpo_train(&o, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "text_encoder");
  CHECK(!exists(test_path("err2")));
  return test_finish();
}
