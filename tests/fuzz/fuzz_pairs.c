/* Fuzzes the pairs.jsonl line parser. A parsed record must satisfy every
 * promise of trainer.h (fields present, label in {0, 0.5, 1}, relative image
 * paths inside the folder, limits); a refused one must be zeroed and carry a
 * message that starts with the position. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"

static int has_dotdot(const char *path) {
  for (const char *p = path; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.') return 1;
    p += n;
    if (*p == '/') p++;
  }
  return 0;
}

static void check_path(const char *path) {
  if (!path || !path[0] || path[0] == '/' || has_dotdot(path)) abort();
  if (strlen(path) > DPO_PAIRS_MAX_PATH_BYTES) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy, so that a read past the end is caught by ASan. */
  char *line = malloc(size ? size : 1);
  if (!line) return 0;
  memcpy(line, data, size);
  dpo_pair_record rec;
  dpo_error err = {0};
  int rc = dpo_pair_record_parse(line, size, "fuzz.jsonl:1", &rec, &err);
  if (rc == DPO_OK) {
    if (!rec.caption || !rec.source || !rec.source[0]) abort();
    if (strlen(rec.caption) > DPO_PAIRS_MAX_CAPTION_BYTES) abort();
    check_path(rec.image_0);
    check_path(rec.image_1);
    if (strcmp(rec.image_0, rec.image_1) == 0) abort();
    if (rec.label_0 != 0.0 && rec.label_0 != 0.5 && rec.label_0 != 1.0) abort();
    dpo_pair_record_free(&rec);
  } else {
    if (rc != DPO_ERR_DATA || rec.caption || rec.image_0 || rec.image_1 || rec.source || rec.model_0 || rec.model_1)
      abort();
    if (strncmp(err.msg, "fuzz.jsonl:1", 12) != 0) abort();
  }
  free(line);
  return 0;
}
