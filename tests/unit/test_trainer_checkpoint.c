/* Checkpoint folders: atomic commit, a writer killed halfway (a real
 * SIGKILL in a child process) leaves nothing that resume takes for a
 * checkpoint, rotation, latest resolution among decoys, and the train state
 * round trip with every refused state file. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static void write_text(const char *path, const char *text) { CHECK_INT(test_write_file(path, text, strlen(text)), 0); }

/* A small optimizer over one parameter, stepped `steps` times. */
typedef struct {
  float data[6], grad[6];
  dpo_optim_param p;
  dpo_optimizer opt;
} tiny_model;

static void tiny_init(tiny_model *m, int steps) {
  memset(m, 0, sizeof *m);
  m->p = (dpo_optim_param){.name = "w", .ndim = 2, .shape = {2, 3}, .data = m->data, .grad = m->grad};
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAMW);
  dpo_error err;
  CHECK_INT(dpo_optim_init(&m->opt, &cfg, &m->p, 1, &err), DPO_OK);
  for (int s = 0; s < steps; s++) {
    for (int i = 0; i < 6; i++) m->grad[i] = (float)(i - s) * 0.25f;
    dpo_optim_step(&m->opt, 1e-2);
  }
}

static dpo_train_state sample_state(int64_t step) {
  dpo_train_state st;
  memset(&st, 0, sizeof st);
  st.step = step;
  st.epoch = 3;
  st.position = 17;
  st.data_seed = UINT64_MAX;   /* must survive JSON exactly */
  st.n_rng = 2;
  snprintf(st.rngs[0].name, sizeof st.rngs[0].name, "noise");
  st.rngs[0].rng = (dpo_rng){.seed = 1234567890123456789ull, .stream = 5, .index = 1ull << 40};
  snprintf(st.rngs[1].name, sizeof st.rngs[1].name, "timesteps");
  st.rngs[1].rng = (dpo_rng){.seed = 7, .stream = UINT64_MAX - 1, .index = 0};
  return st;
}

/* A full checkpoint: a pipeline-like subfolder and train_state/. */
static void save_checkpoint(const char *out, int64_t step) {
  tiny_model m;
  tiny_init(&m, (int)step);
  dpo_checkpoint ck;
  dpo_error err;
  char path[4300];
  snprintf(path, sizeof path, "%s/checkpoint-%d", out, (int)step);
  int rewrite = exists(path);
  CHECK_INT(dpo_checkpoint_begin(&ck, out, step, &err), DPO_OK);
  snprintf(path, sizeof path, "%s/unet", ck.tmp_dir);
  CHECK_INT(dpo_mkdir_p(path, &err), DPO_OK);
  snprintf(path, sizeof path, "%s/unet/config.json", ck.tmp_dir);
  write_text(path, "{}\n");
  dpo_train_state st = sample_state(step);
  CHECK_INT(dpo_train_state_write(ck.tmp_dir, &st, &m.opt, &err), DPO_OK);
  if (!rewrite) CHECK(!exists(ck.final_dir));   /* nothing visible under the final name yet */
  CHECK_INT(dpo_checkpoint_commit(&ck, &err), DPO_OK);
  CHECK(exists(ck.final_dir));
  CHECK(!exists(ck.tmp_dir));
  dpo_checkpoint_abort(&ck);   /* after commit: does nothing */
  CHECK(exists(ck.final_dir));
  dpo_optim_free(&m.opt);
}

static void test_commit_and_latest(void) {
  const char *out = test_path("run1");
  dpo_error err;
  char latest[4096];
  int64_t step = -1;
  int found = 1;
  /* No output folder yet: nothing to resume, not an error. */
  CHECK_INT(dpo_checkpoint_latest(out, latest, sizeof latest, &step, &found, &err), DPO_OK);
  CHECK_INT(found, 0);
  save_checkpoint(out, 5);
  save_checkpoint(out, 20);
  save_checkpoint(out, 100);
  CHECK_INT(dpo_checkpoint_latest(out, latest, sizeof latest, &step, &found, &err), DPO_OK);
  CHECK_INT(found, 1);
  CHECK_INT(step, 100);   /* numeric, not lexical (100 < 20 < 5 as strings) */
  CHECK(strstr(latest, "/checkpoint-100") != NULL);

  /* Decoys that must never be taken for a checkpoint. */
  char p[4300];
  snprintf(p, sizeof p, "%s/checkpoint-900", out);   /* no train_state */
  CHECK_INT(dpo_mkdir_p(p, &err), DPO_OK);
  snprintf(p, sizeof p, "%s/checkpoint-950", out);   /* a file */
  write_text(p, "x");
  snprintf(p, sizeof p, "%s/checkpoint-12x/train_state", out);
  CHECK_INT(dpo_mkdir_p(p, &err), DPO_OK);
  snprintf(p, sizeof p, "%s/checkpoint-12x/train_state/state.json", out);
  write_text(p, "{}");
  snprintf(p, sizeof p, "%s/checkpoint-/train_state", out);
  CHECK_INT(dpo_mkdir_p(p, &err), DPO_OK);
  CHECK_INT(dpo_checkpoint_latest(out, latest, sizeof latest, &step, &found, &err), DPO_OK);
  CHECK_INT(step, 100);
  int64_t *steps;
  int n;
  CHECK_INT(dpo_checkpoint_list(out, &steps, &n, &err), DPO_OK);
  CHECK_INT(n, 3);
  if (n == 3) CHECK(steps[0] == 5 && steps[1] == 20 && steps[2] == 100);
  free(steps);

  /* Rewriting a step replaces it. */
  save_checkpoint(out, 20);
  CHECK_INT(dpo_checkpoint_list(out, &steps, &n, &err), DPO_OK);
  CHECK_INT(n, 3);
  free(steps);
  snprintf(p, sizeof p, "%s/.deleting-checkpoint-20", out);
  CHECK(!exists(p));   /* the replaced folder is gone */

  /* Rotation keeps the newest K complete ones and leaves decoys alone. */
  int deleted = -1;
  CHECK_INT(dpo_checkpoint_rotate(out, 2, &deleted, &err), DPO_OK);
  CHECK_INT(deleted, 1);
  snprintf(p, sizeof p, "%s/checkpoint-5", out);
  CHECK(!exists(p));
  snprintf(p, sizeof p, "%s/checkpoint-900", out);
  CHECK(exists(p));
  CHECK_INT(dpo_checkpoint_rotate(out, 0, &deleted, &err), DPO_OK);   /* 0 keeps all */
  CHECK_INT(deleted, 0);
  CHECK_INT(dpo_checkpoint_rotate(out, 1, &deleted, &err), DPO_OK);
  CHECK_INT(deleted, 1);
  CHECK_INT(dpo_checkpoint_list(out, &steps, &n, &err), DPO_OK);
  CHECK_INT(n, 1);
  if (n == 1) CHECK_INT(steps[0], 100);
  free(steps);
}

/* The writer is killed (SIGKILL, no cleanup) after writing train_state but
 * before the commit: the temporary folder holds everything a checkpoint
 * holds, yet resume must not take it, and the next run removes it. */
static void test_killed_writer(void) {
  const char *out = test_path("run2");
  save_checkpoint(out, 10);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    tiny_model m;
    tiny_init(&m, 3);
    dpo_checkpoint ck;
    dpo_error err;
    if (dpo_checkpoint_begin(&ck, out, 20, &err) != DPO_OK) _exit(3);
    dpo_train_state st = sample_state(20);
    if (dpo_train_state_write(ck.tmp_dir, &st, &m.opt, &err) != DPO_OK) _exit(4);
    raise(SIGKILL);
    _exit(5);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s/.tmp-checkpoint-20/train_state/state.json", out);
  CHECK(exists(tmp));   /* the crash left its work behind ... */
  dpo_error err;
  char latest[4096];
  int64_t step;
  int found;
  CHECK_INT(dpo_checkpoint_latest(out, latest, sizeof latest, &step, &found, &err), DPO_OK);
  CHECK_INT(found, 1);
  CHECK_INT(step, 10);   /* ... and resume ignores it */
  /* A crash during deletion leaves a .deleting- folder: ignored as well. */
  char doomed[4300];
  snprintf(doomed, sizeof doomed, "%s/.deleting-checkpoint-7/train_state", out);
  CHECK_INT(dpo_mkdir_p(doomed, &err), DPO_OK);
  CHECK_INT(dpo_checkpoint_latest(out, latest, sizeof latest, &step, &found, &err), DPO_OK);
  CHECK_INT(step, 10);
  int removed = 0;
  CHECK_INT(dpo_checkpoint_clean_temps(out, &removed, &err), DPO_OK);
  CHECK_INT(removed, 2);
  snprintf(tmp, sizeof tmp, "%s/.tmp-checkpoint-20", out);
  CHECK(!exists(tmp));
  /* The step is written again cleanly after the crash. */
  save_checkpoint(out, 20);
  CHECK_INT(dpo_checkpoint_latest(out, latest, sizeof latest, &step, &found, &err), DPO_OK);
  CHECK_INT(step, 20);
}

static void test_abort(void) {
  const char *out = test_path("run3");
  dpo_checkpoint ck;
  dpo_error err;
  CHECK_INT(dpo_checkpoint_begin(&ck, out, 1, &err), DPO_OK);
  char p[4300];
  snprintf(p, sizeof p, "%s/a/b/c", ck.tmp_dir);
  CHECK_INT(dpo_mkdir_p(p, &err), DPO_OK);
  snprintf(p, sizeof p, "%s/a/b/c/f.bin", ck.tmp_dir);
  write_text(p, "data");
  dpo_checkpoint_abort(&ck);
  CHECK(!exists(ck.tmp_dir));
  dpo_checkpoint_abort(&ck);
  CHECK_INT(dpo_checkpoint_commit(&ck, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_checkpoint_begin(&ck, out, -1, &err), DPO_ERR_USAGE);
  /* A leftover temporary folder of the same step is replaced by begin. */
  CHECK_INT(dpo_checkpoint_begin(&ck, out, 2, &err), DPO_OK);
  snprintf(p, sizeof p, "%s/stale.txt", ck.tmp_dir);
  write_text(p, "stale");
  CHECK_INT(dpo_checkpoint_begin(&ck, out, 2, &err), DPO_OK);
  CHECK(!exists(p));
  dpo_checkpoint_abort(&ck);
  /* remove_tree does not follow symlinks out of the tree. */
  const char *keep = test_path("keep_me.txt");
  write_text(keep, "precious");
  snprintf(p, sizeof p, "%s/linkdir", out);
  CHECK_INT(dpo_mkdir_p(p, &err), DPO_OK);
  snprintf(p, sizeof p, "%s/linkdir/link", out);
  CHECK_INT(symlink(keep, p), 0);
  snprintf(p, sizeof p, "%s/linkdir", out);
  CHECK_INT(dpo_remove_tree(p, &err), DPO_OK);
  CHECK(!exists(p));
  CHECK(exists(keep));
}

static void test_train_state_round_trip(void) {
  const char *out = test_path("run4");
  save_checkpoint(out, 6);
  char dir[4300];
  snprintf(dir, sizeof dir, "%s/checkpoint-6", out);
  tiny_model fresh;
  tiny_init(&fresh, 0);
  dpo_train_state st;
  dpo_error err;
  int rc = dpo_train_state_read(dir, &st, &fresh.opt, &err);
  CHECK_INT(rc, DPO_OK);
  if (rc != DPO_OK) fprintf(stderr, "%s\n", err.msg);
  dpo_train_state want = sample_state(6);
  CHECK_INT(st.step, 6);
  CHECK(st.epoch == want.epoch && st.position == want.position && st.data_seed == UINT64_MAX);
  CHECK_INT(st.n_rng, 2);
  CHECK_STR(st.rngs[1].name, "timesteps");
  CHECK(st.rngs[0].rng.seed == want.rngs[0].rng.seed && st.rngs[0].rng.index == want.rngs[0].rng.index);
  CHECK(st.rngs[1].rng.stream == UINT64_MAX - 1);
  CHECK_INT(fresh.opt.step, 6);
  tiny_model same;
  tiny_init(&same, 6);
  CHECK(memcmp(fresh.opt.slots[0].exp_avg, same.opt.slots[0].exp_avg, sizeof(float) * 6) == 0);
  CHECK(memcmp(fresh.opt.slots[0].exp_avg_sq, same.opt.slots[0].exp_avg_sq, sizeof(float) * 6) == 0);
  dpo_optim_free(&same.opt);
  /* Without an optimizer only the JSON is read. */
  CHECK_INT(dpo_train_state_read(dir, &st, NULL, &err), DPO_OK);
  dpo_optim_free(&fresh.opt);
}

static void expect_bad_state(const char *json, const char *fragment) {
  char dir[4300], p[4400];
  snprintf(dir, sizeof dir, "%s/bad/train_state", test_tmpdir());
  dpo_error err;
  CHECK_INT(dpo_mkdir_p(dir, &err), DPO_OK);
  snprintf(p, sizeof p, "%s/state.json", dir);
  write_text(p, json);
  snprintf(dir, sizeof dir, "%s/bad", test_tmpdir());
  dpo_train_state st;
  CHECK_INT(dpo_train_state_read(dir, &st, NULL, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "state.json");
  CHECK_CONTAINS(err.msg, fragment);
}

#define CURSOR "\"data_cursor\": {\"epoch\": \"1\", \"position\": \"2\", \"seed\": \"3\"}"
#define HEAD "\"format\": \"dpo-train-state\", \"version\": 1"

static void test_refused_states(void) {
  expect_bad_state("[]", "expected a JSON object");
  expect_bad_state("{\"format\": \"other\", \"version\": 1}", "\"format\"");
  expect_bad_state("{\"format\": \"dpo-train-state\", \"version\": 2}", "version 1");
  expect_bad_state("{" HEAD ", \"step\": -4, " CURSOR ", \"rng\": []}", "negative");
  expect_bad_state("{" HEAD ", \"step\": 4, \"rng\": []}", "data_cursor");
  expect_bad_state("{" HEAD ", \"step\": 4, \"data_cursor\": {\"epoch\": \"-1\", \"position\": \"2\", \"seed\": \"3\"}, "
                   "\"rng\": []}", "\"epoch\": \"-1\" is not a 64-bit count");
  expect_bad_state("{" HEAD ", \"step\": 4, \"data_cursor\": {\"epoch\": \"1\", \"position\": \"18446744073709551616\", "
                   "\"seed\": \"3\"}, \"rng\": []}", "\"position\"");
  expect_bad_state("{" HEAD ", \"step\": 4, \"data_cursor\": {\"epoch\": \"1\", \"position\": 2, \"seed\": \"3\"}, "
                   "\"rng\": []}", "\"position\"");
  expect_bad_state("{" HEAD ", \"step\": 4, " CURSOR "}", "\"rng\": expected an array");
  expect_bad_state("{" HEAD ", \"step\": 4, " CURSOR ", \"rng\": [{\"name\": \"n\", \"seed\": \"1\", \"stream\": \"2\"}]}",
                   "rng[0]");
  expect_bad_state("{" HEAD ", \"step\": 4, " CURSOR ", \"rng\": [{\"name\": \"a-name-longer-than-thirty-one-bytes\", "
                   "\"seed\": \"1\", \"stream\": \"2\", \"index\": \"3\"}]}", "name longer");
  expect_bad_state("{" HEAD ", \"step\": 4, " CURSOR ", \"rng\": [0,0,0,0,0,0,0,0,0]}", "at most 8");
  expect_bad_state("{" HEAD, "invalid JSON");
  /* Optimizer moments of another step than the state's. */
  const char *out = test_path("run5");
  save_checkpoint(out, 3);
  char dir[4300], p[4400];
  snprintf(dir, sizeof dir, "%s/checkpoint-3", out);
  snprintf(p, sizeof p, "%s/train_state/state.json", dir);
  write_text(p, "{" HEAD ", \"step\": 4, " CURSOR ", \"rng\": []}");
  tiny_model m;
  tiny_init(&m, 0);
  dpo_train_state st;
  dpo_error err;
  CHECK_INT(dpo_train_state_read(dir, &st, &m.opt, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "optimizer step 3 differs from the state's step 4");
  /* A missing optimizer file. */
  snprintf(p, sizeof p, "%s/train_state/optimizer.safetensors", dir);
  CHECK_INT(unlink(p), 0);
  CHECK_INT(dpo_train_state_read(dir, &st, &m.opt, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "optimizer.safetensors");
  dpo_optim_free(&m.opt);
  /* Too many RNG streams to write. */
  dpo_train_state big = sample_state(1);
  big.n_rng = DPO_TRAIN_STATE_MAX_RNG + 1;
  CHECK_INT(dpo_train_state_write(dir, &big, NULL, &err), DPO_ERR_USAGE);
}

int main(void) {
  test_commit_and_latest();
  test_killed_writer();
  test_abort();
  test_train_state_round_trip();
  test_refused_states();
  return test_finish();
}
