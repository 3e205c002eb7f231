/* Fuzzes scheduler_config.json: the file goes through the real loader
 * (including the -Infinity rewrite), then the scheduler is built and, when it
 * samples, run for 1..50 steps over a small sample. A refusal must say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trainer/trainer.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/dpo-fuzz-scheduler-%ld.json", (long)getpid());
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fwrite(data + 1, 1, size - 1, f);
  fclose(f);
  dpo_scheduler_config cfg;
  dpo_error err;
  err.msg[0] = '\0';
  int rc = dpo_scheduler_config_load(path, &cfg, &err);
  unlink(path);
  if (rc != DPO_OK) {
    if (err.msg[0] == '\0') abort();
    return 0;
  }
  dpo_scheduler s;
  if (dpo_scheduler_init(&s, &cfg, &err)) {
    if (err.msg[0] == '\0') abort();
    return 0;
  }
  float x[4] = {0.5f, -1.0f, 2.0f, 0.25f}, mo[4], prev[4], in[4];
  int steps = 1 + data[0] % 50;
  if (s.kind != DPO_SCHED_DDPM && dpo_scheduler_set_timesteps(&s, steps, &err) == DPO_OK) {
    if (s.n_timesteps < 1) abort();
    for (int i = 0; i < s.n_timesteps; i++) {
      float t = s.timesteps[i];
      if (dpo_scheduler_scale_model_input(&s, t, x, in, 4, &err)) break;
      for (int k = 0; k < 4; k++) mo[k] = 0.1f * in[k];
      if (dpo_scheduler_step(&s, mo, t, x, NULL, prev, 4, &err)) break;
      memcpy(x, prev, sizeof x);
    }
  }
  dpo_scheduler_free(&s);
  return 0;
}
