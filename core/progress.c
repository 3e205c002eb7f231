#include "core/core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A TTY bar is redrawn at most this often; plain lines at most every 10% of
 * the work or every PLAIN_LINE_SECONDS, whichever comes first. */
#define TTY_REDRAW_SECONDS 0.1
#define PLAIN_LINE_SECONDS 10.0

double dpo_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void dpo_format_duration(double seconds, char *buf, size_t n) {
  if (!(seconds >= 0) || seconds > 1e8) {
    snprintf(buf, n, "?");
    return;
  }
  long s = (long)(seconds + 0.5);
  long h = s / 3600, m = (s / 60) % 60, sec = s % 60;
  if (h > 0) snprintf(buf, n, "%ld:%02ld:%02ld", h, m, sec);
  else snprintf(buf, n, "%ld:%02ld", m, sec);
}

void dpo_progress_begin(dpo_progress *p, const char *label, uint64_t total, const char *unit) {
  memset(p, 0, sizeof *p);
  snprintf(p->label, sizeof p->label, "%s", label);
  snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
  p->total = total;
  p->stream = stderr;
  p->start_time = dpo_now_seconds();
  p->last_draw_time = 0;
  p->is_tty = isatty(fileno(stderr));
  p->enabled = dpo_log_get_level() >= DPO_LOG_NORMAL;
}

void dpo_progress_format(const dpo_progress *p, double now, int bar_width, char *buf, size_t n) {
  double elapsed = now - p->start_time;
  double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
  char eta[32], took[32];
  dpo_format_duration(elapsed, took, sizeof took);
  if (p->total > 0 && rate > 0) dpo_format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
  else snprintf(eta, sizeof eta, "?");
  size_t used = 0;
  used += (size_t)snprintf(buf + used, n - used, "%s ", p->label);
  if (bar_width > 0 && p->total > 0 && used < n) {
    int filled = (int)((double)bar_width * (double)p->done / (double)p->total);
    if (filled > bar_width) filled = bar_width;
    if (used + (size_t)bar_width + 3 < n) {
      buf[used++] = '[';
      for (int i = 0; i < bar_width; i++) buf[used++] = i < filled ? '#' : '.';
      buf[used++] = ']';
      buf[used++] = ' ';
      buf[used] = '\0';
    }
  }
  if (used >= n) return;
  if (p->total > 0)
    snprintf(buf + used, n - used, "%llu/%llu %s, %.3g %s/s, elapsed %s, ETA %s",
             (unsigned long long)p->done, (unsigned long long)p->total, p->unit, rate, p->unit,
             took, eta);
  else
    snprintf(buf + used, n - used, "%llu %s, %.3g %s/s, elapsed %s", (unsigned long long)p->done,
             p->unit, rate, p->unit, took);
}

static void progress_draw(dpo_progress *p, double now, int final) {
  char line[512];
  if (p->is_tty) {
    dpo_progress_format(p, now, 30, line, sizeof line);
    fprintf(p->stream, "\r%s\033[K%s", line, final ? "\n" : "");
  } else {
    dpo_progress_format(p, now, 0, line, sizeof line);
    fprintf(p->stream, "%s\n", line);
    p->last_line_done = p->done;
  }
  fflush(p->stream);
  p->last_draw_time = now;
}

void dpo_progress_advance(dpo_progress *p, uint64_t n) {
  p->done += n;
  if (!p->enabled) return;
  double now = dpo_now_seconds();
  if (p->is_tty) {
    if (now - p->last_draw_time >= TTY_REDRAW_SECONDS) progress_draw(p, now, 0);
    return;
  }
  uint64_t step = p->total >= 10 ? p->total / 10 : 1;
  int crossed_tenth = p->total > 0 && p->done / step != p->last_line_done / step;
  double since = now - (p->last_draw_time > 0 ? p->last_draw_time : p->start_time);
  if ((crossed_tenth || since >= PLAIN_LINE_SECONDS) && p->done != p->total) progress_draw(p, now, 0);
}

void dpo_progress_end(dpo_progress *p) {
  if (!p->enabled) return;
  progress_draw(p, dpo_now_seconds(), 1);
}
