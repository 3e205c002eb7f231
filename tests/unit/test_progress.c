/* Progress lines: counts, rate, ETA, and the duration format. */
#include <string.h>

#include "core/core.h"
#include "tests/test.h"

int main(void) {
  char buf[256];
  dpo_format_duration(0, buf, sizeof buf);
  CHECK_STR(buf, "0:00");
  dpo_format_duration(65, buf, sizeof buf);
  CHECK_STR(buf, "1:05");
  dpo_format_duration(3723, buf, sizeof buf);
  CHECK_STR(buf, "1:02:03");
  dpo_format_duration(-1, buf, sizeof buf);
  CHECK_STR(buf, "?");

  dpo_progress p;
  dpo_progress_begin(&p, "generate", 100, "img");
  p.enabled = 0; /* keep the test's stderr clean */
  p.start_time = 1000.0;
  p.done = 25;
  dpo_progress_format(&p, 1010.0, 0, buf, sizeof buf);
  /* 25 in 10 s: 2.5/s, 75 left: 30 s. */
  CHECK_STR(buf, "generate 25/100 img, 2.5 img/s, elapsed 0:10, ETA 0:30");
  dpo_progress_format(&p, 1010.0, 8, buf, sizeof buf);
  CHECK_STR(buf, "generate [##......] 25/100 img, 2.5 img/s, elapsed 0:10, ETA 0:30");
  p.done = 0;
  dpo_progress_format(&p, 1000.0, 0, buf, sizeof buf);
  CHECK_CONTAINS(buf, "ETA ?");
  p.total = 0;
  p.done = 7;
  dpo_progress_format(&p, 1007.0, 4, buf, sizeof buf);
  CHECK_STR(buf, "generate 7 img, 1 img/s, elapsed 0:07");
  /* A tiny buffer is truncated, never overrun. */
  char tiny[8];
  dpo_progress_format(&p, 1007.0, 30, tiny, sizeof tiny);
  CHECK(strlen(tiny) < sizeof tiny);
  return test_finish();
}
