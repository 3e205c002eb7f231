/* The per-step log: line contents, null for non-finite values, trimming on
 * resume (lines past the checkpoint and a torn last line dropped), refused
 * broken logs, and the progress line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static dpo_loss_stats stats_for(double loss) {
  dpo_loss_stats s = {.n_pairs = 4, .n_ties = 0, .loss = loss, .implicit_acc = 0.75, .model_mse_w = 0.1};
  return s;
}

static char *read_all(const char *path) {
  char *data;
  size_t len;
  dpo_error err;
  if (dpo_read_file(path, 1 << 20, &data, &len, &err) != DPO_OK) return NULL;
  return data;
}

static int count_lines(const char *text) {
  int n = 0;
  for (const char *p = text; p && *p; p++) n += *p == '\n';
  return n;
}

static void write_steps(dpo_train_log *log, int from, int to) {
  dpo_error err;
  for (int s = from; s <= to; s++) {
    dpo_step_info info = {.step = s, .lr = 1e-8 * s, .grad_norm = 0.5, .pairs_per_s = 3.0, .elapsed_s = s,
                          .eta_s = 100 - s};
    dpo_loss_stats st = stats_for(0.69 - 0.01 * s);
    CHECK_INT(dpo_train_log_write(log, &info, &st, &err), DPO_OK);
  }
}

static void test_write_and_resume(void) {
  const char *path = test_path("train_log.jsonl");
  dpo_train_log log;
  dpo_error err;
  CHECK_INT(dpo_train_log_open(&log, path, -1, &err), DPO_OK);
  write_steps(&log, 1, 6);
  /* A non-finite norm and an unknown ETA are null, not invalid JSON. */
  dpo_step_info info = {.step = 7, .lr = 1e-8, .grad_norm = INFINITY, .pairs_per_s = 3.0, .eta_s = -1};
  dpo_loss_stats st = stats_for(0.5);
  CHECK_INT(dpo_train_log_write(&log, &info, &st, &err), DPO_OK);
  dpo_train_log_close(&log);
  char *text = read_all(path);
  CHECK_INT(count_lines(text), 7);
  CHECK(text && strstr(text, "\"grad_norm\":null") != NULL);
  CHECK(text && strstr(text, "\"eta_s\":null") != NULL);
  CHECK(text && strstr(text, "\"implicit_acc\":0.75") != NULL);
  CHECK(text && strstr(text, "\"step\":3") != NULL);
  free(text);

  /* A crash mid-line after step 7, then resume from the checkpoint of step 4. */
  FILE *f = fopen(path, "ab");
  fputs("{\"step\": 8, \"loss\": 0.4", f);
  fclose(f);
  CHECK_INT(dpo_train_log_open(&log, path, 4, &err), DPO_OK);
  CHECK_INT(log.kept, 4);
  write_steps(&log, 5, 5);
  dpo_train_log_close(&log);
  text = read_all(path);
  CHECK_INT(count_lines(text), 5);
  CHECK(text && strstr(text, "\"step\":6") == NULL);
  CHECK(text && strstr(text, "\"step\":8") == NULL);
  CHECK(text && text[strlen(text) - 1] == '\n');
  free(text);

  /* A fresh start replaces the old log. */
  CHECK_INT(dpo_train_log_open(&log, path, -1, &err), DPO_OK);
  dpo_train_log_close(&log);
  text = read_all(path);
  CHECK(text && text[0] == '\0');
  free(text);
  /* Resume with no log yet starts one. */
  const char *fresh = test_path("fresh.jsonl");
  CHECK_INT(dpo_train_log_open(&log, fresh, 10, &err), DPO_OK);
  CHECK_INT(log.kept, 0);
  dpo_train_log_close(&log);
}

static void test_broken_log(void) {
  const char *path = test_path("broken.jsonl");
  const char *text = "{\"step\": 1}\nnot json\n{\"step\": 3}\n";
  CHECK_INT(test_write_file(path, text, strlen(text)), 0);
  dpo_train_log log;
  dpo_error err;
  CHECK_INT(dpo_train_log_open(&log, path, 5, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "broken.jsonl:2");
  text = "{\"step\": 1}\n{\"loss\": 3}\n";
  CHECK_INT(test_write_file(path, text, strlen(text)), 0);
  CHECK_INT(dpo_train_log_open(&log, path, 5, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "broken.jsonl:2: missing key \"step\"");
  CHECK_INT(dpo_train_log_open(&log, test_path("no/such/dir/log.jsonl"), -1, &err), DPO_ERR_DATA);
}

static void test_progress_line(void) {
  char buf[256];
  dpo_step_info info = {.step = 120, .lr = 1.2e-8, .grad_norm = 0.53, .pairs_per_s = 3.2, .eta_s = 3723};
  dpo_loss_stats s = stats_for(0.693147);
  dpo_step_format(&info, 2000, &s, buf, sizeof buf);
  CHECK_STR(buf, "step 120/2000 loss 0.6931 acc 0.750 lr 1.2e-08 |g| 0.53 3.20 pairs/s ETA 1:02:03");
  s.n_ties = s.n_pairs;
  info.eta_s = -1;
  dpo_step_format(&info, 2000, &s, buf, sizeof buf);
  CHECK_CONTAINS(buf, "acc - lr");
  CHECK_CONTAINS(buf, "ETA ?");
}

int main(void) {
  test_write_and_resume();
  test_broken_log();
  test_progress_line();
  return test_finish();
}
