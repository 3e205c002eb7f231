#include "core/core.h"

#include <stdio.h>

/* The one piece of process-wide state in core: how chatty to be. main sets it
 * once from the command line before any work starts. */
static dpo_log_level log_level = DPO_LOG_NORMAL;

void dpo_log_set_level(dpo_log_level level) { log_level = level; }
dpo_log_level dpo_log_get_level(void) { return log_level; }

static void log_line(const char *tag, const char *fmt, va_list ap) {
  fputs(tag, stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

void dpo_log_info(const char *fmt, ...) {
  if (log_level < DPO_LOG_NORMAL) return;
  va_list ap;
  va_start(ap, fmt);
  log_line("", fmt, ap);
  va_end(ap);
}

void dpo_log_verbose(const char *fmt, ...) {
  if (log_level < DPO_LOG_VERBOSE) return;
  va_list ap;
  va_start(ap, fmt);
  log_line("", fmt, ap);
  va_end(ap);
}

void dpo_log_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_line("warning: ", fmt, ap);
  va_end(ap);
}
