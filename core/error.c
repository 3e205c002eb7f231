#include "core/core.h"

#include <stdio.h>
#include <string.h>

int dpo_fail(dpo_error *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

int dpo_error_prefix(dpo_error *err, const char *fmt, ...) {
  if (!err) return DPO_ERR_DATA;
  char prefix[512];
  char old[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
  return err->code;
}

void dpo_error_clear(dpo_error *err) {
  if (!err) return;
  err->code = DPO_OK;
  err->msg[0] = '\0';
}
