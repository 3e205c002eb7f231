/* Fuzzes the three user prompt file parsers. The first byte picks the format
 * (0: .txt, 1: .tsv, 2: .jsonl, modulo 3); the rest is the file. Every id of
 * a parsed set must be found again, and a failure must leave an empty set. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prompts/prompts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  prompt_format format = (prompt_format)(data[0] % 3);
  /* An exact-size copy, so that a read past the end is caught by ASan. */
  size_t len = size - 1;
  char *text = malloc(len ? len : 1);
  if (!text) return 0;
  memcpy(text, data + 1, len);
  prompt_set set;
  dpo_error err;
  int rc = prompt_set_parse(text, len, format, "fuzz.in", "fuzz", &set, &err);
  if (rc == DPO_OK) {
    if (set.n <= 0) abort();
    for (int i = 0; i < set.n; i++) {
      const prompt *p = &set.items[i];
      if (prompt_set_find(&set, p->id) == NULL) abort();
      if (p->text[0] == '\0' || strlen(p->text) > PROMPT_MAX_TEXT_BYTES) abort();
    }
  } else {
    if (set.n != 0 || set.items != NULL || err.msg[0] == '\0') abort();
  }
  prompt_set_free(&set);
  free(text);
  return 0;
}
