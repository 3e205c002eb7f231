/* Fuzzes the shapes world's two untrusted inputs: prompt text (first byte
 * even) and pixels for the judge (first byte odd). A prompt that parses must
 * format to canonical text that parses to the same constraints; a failure
 * must say why. Any pixels must judge without a memory error and give
 * scores in [0, 1]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "world/world.h"

static void fuzz_prompt(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return;
  memcpy(text, data, size);
  text[size] = '\0';
  world_prompt p, q;
  dpo_error err = {0};
  if (world_prompt_parse(text, &p, &err) == DPO_OK) {
    char canonical[WORLD_PROMPT_MAX];
    if (world_prompt_format(&p, canonical, sizeof canonical, &err) != DPO_OK) abort();
    if (world_prompt_parse(canonical, &q, &err) != DPO_OK || !world_prompt_equal(&p, &q)) abort();
  } else if (err.msg[0] == '\0') {
    abort();
  }
  free(text);
}

static void fuzz_pixels(const uint8_t *data, size_t size) {
  if (size < 2) return;
  int width = 1 + data[0] % 40, channels = data[1] % 2 ? 4 : 3;
  data += 2;
  size -= 2;
  int height = (int)(size / (size_t)(width * channels));
  if (height < 1) return;
  if (height > 64) height = 64;
  dpo_image img = {0};
  if (dpo_image_alloc(&img, width, height, channels, NULL) != DPO_OK) return;
  memcpy(img.pixels, data, (size_t)width * (size_t)height * (size_t)channels);
  world_scores s;
  dpo_error err = {0};
  if (world_judge_score(&img, "a red circle to the left of a blue square and above a small green cross", &s, &err) !=
      DPO_OK)
    abort();
  if (!(s.alignment >= 0 && s.alignment <= 1 && s.appeal >= 0 && s.appeal <= 1)) abort();
  dpo_image_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0) fuzz_prompt(data + 1, size - 1);
  else fuzz_pixels(data + 1, size - 1);
  return 0;
}
