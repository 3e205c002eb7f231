/* The per-step training log (JSON lines) and the progress line. The log is
 * trimmed to the resumed step so that it never mixes two histories. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"

#define MAX_LOG_BYTES (1ull << 30)

static json_t *real_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* Keeps the complete lines of steps <= resume_step; a torn last line (no
 * newline: the crash hit mid-write) is dropped, a broken complete line is
 * an error. */
static int trim_log(const char *path, int64_t resume_step, int64_t *kept, dpo_error *err) {
  char *data;
  size_t len;
  int rc = dpo_read_file(path, MAX_LOG_BYTES, &data, &len, err);
  if (rc != DPO_OK) return rc;
  char *out = malloc(len + 1);
  if (!out) {
    free(data);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  }
  size_t used = 0, start = 0;
  int line = 0;
  while (rc == DPO_OK && start < len) {
    char *nl = memchr(data + start, '\n', len - start);
    if (!nl) break;   /* torn last line */
    size_t end = (size_t)(nl - data);
    char where[4200];
    snprintf(where, sizeof where, "%s:%d", path, ++line);
    json_t *obj = dpo_json_parse(data + start, end - start, where, err);
    int64_t step = 0;
    if (!obj) rc = DPO_ERR_DATA;
    else rc = dpo_json_get_int(obj, "step", &step, where, err);
    json_decref(obj);
    if (rc == DPO_OK && step <= resume_step) {
      memcpy(out + used, data + start, end - start + 1);
      used += end - start + 1;
      (*kept)++;
    }
    start = end + 1;
  }
  if (rc == DPO_OK) rc = dpo_atomic_write(path, out, used, err);
  free(out);
  free(data);
  return rc;
}

int dpo_train_log_open(dpo_train_log *log, const char *path, int64_t resume_step, dpo_error *err) {
  memset(log, 0, sizeof *log);
  if (strlen(path) >= sizeof log->path) return dpo_fail(err, DPO_ERR_USAGE, "log path too long");
  snprintf(log->path, sizeof log->path, "%s", path);
  FILE *probe = fopen(path, "rb");
  int exists = probe != NULL;
  if (probe) fclose(probe);
  int rc = DPO_OK;
  if (resume_step >= 0 && exists) rc = trim_log(path, resume_step, &log->kept, err);
  else rc = dpo_atomic_write(path, "", 0, err);
  if (rc != DPO_OK) return rc;
  log->fp = fopen(path, "ab");
  if (!log->fp) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open for appending", path);
  return DPO_OK;
}

int dpo_train_log_write(dpo_train_log *log, const dpo_step_info *info, const dpo_loss_stats *stats, dpo_error *err) {
  json_t *o = stats ? dpo_loss_stats_json(stats) : json_object();
  json_object_set_new(o, "step", json_integer(info->step));
  json_object_set_new(o, "lr", real_or_null(info->lr));
  json_object_set_new(o, "grad_norm", real_or_null(info->grad_norm));
  json_object_set_new(o, "pairs_per_s", real_or_null(info->pairs_per_s));
  json_object_set_new(o, "elapsed_s", real_or_null(info->elapsed_s));
  json_object_set_new(o, "eta_s", info->eta_s >= 0 ? real_or_null(info->eta_s) : json_null());
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
  json_decref(o);
  if (!text) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot serialise step %" PRId64, log->path, info->step);
  /* One line per fputs and a flush, so a crash tears at most the last line. */
  int ok = fputs(text, log->fp) >= 0 && fputc('\n', log->fp) != EOF && fflush(log->fp) == 0;
  free(text);
  if (!ok) return dpo_fail(err, DPO_ERR_DATA, "%s: write failed", log->path);
  return DPO_OK;
}

void dpo_train_log_close(dpo_train_log *log) {
  if (log->fp) fclose(log->fp);
  log->fp = NULL;
}

void dpo_step_format(const dpo_step_info *info, int64_t max_steps, const dpo_loss_stats *stats, char *buf, size_t n) {
  char eta[32], acc[16];
  if (info->eta_s >= 0) dpo_format_duration(info->eta_s, eta, sizeof eta);
  else snprintf(eta, sizeof eta, "?");
  if (stats->n_pairs > stats->n_ties) snprintf(acc, sizeof acc, "%.3f", stats->implicit_acc);
  else snprintf(acc, sizeof acc, "-");
  snprintf(buf, n, "step %" PRId64 "/%" PRId64 " loss %.4f acc %s lr %.3g |g| %.3g %.2f pairs/s ETA %s", info->step,
           max_steps, stats->loss, acc, info->lr, info->grad_norm, info->pairs_per_s, eta);
}
