/* The CLIP tokenizer folders the tests use, built in the test's temp dir from
 * the committed fixtures (tests/fixtures/tokenizer, made by
 * make_tokenizer_fixtures.py): vocab.json and merges.txt are stored gzipped,
 * the small config files as they are. */
#ifndef DPO_TESTS_TOKENIZER_FIXTURE_H
#define DPO_TESTS_TOKENIZER_FIXTURE_H

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/core.h"
#include "tests/test.h"

/* Reads a whole gzip file into a malloc'd, NUL-terminated buffer. */
static inline char *fixture_gunzip(const char *path, size_t *len) {
  gzFile gz = gzopen(path, "rb");
  if (!gz) return NULL;
  size_t cap = 1u << 20, n = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
    int got = gzread(gz, buf + n, (unsigned)(cap - n));
    if (got <= 0) break;
    n += (size_t)got;
  }
  gzclose(gz);
  buf[n] = '\0';
  *len = n;
  return buf;
}

static inline int fixture_copy_gunzipped(const char *src_rel, const char *dst) {
  size_t n;
  char *data = fixture_gunzip(test_source_path(src_rel), &n);
  if (!data) return -1;
  int rc = test_write_file(dst, data, n);
  free(data);
  return rc;
}

static inline int fixture_copy(const char *src_rel, const char *dst) {
  char *data;
  size_t n;
  dpo_error err = {0};
  if (dpo_read_file(test_source_path(src_rel), 1u << 20, &data, &n, &err)) return -1;
  int rc = test_write_file(dst, data, n);
  free(data);
  return rc;
}

/* Makes <tmp>/<variant>/ with vocab.json, merges.txt and, for "sd1" or
 * "sd2", their config files ("bare" gets none). Returns the folder or NULL. */
static inline const char *fixture_tokenizer_dir(const char *variant) {
  static char dirs[4][4096];
  static int used = 0;
  char *dir = dirs[used++ % 4];
  snprintf(dir, sizeof dirs[0], "%s", test_path(variant));
  dpo_error err = {0};
  if (dpo_mkdir_p(dir, &err)) return NULL;
  char dst[4300], src[256];
  snprintf(dst, sizeof dst, "%s/vocab.json", dir);
  if (fixture_copy_gunzipped("tests/fixtures/tokenizer/clip/vocab.json.gz", dst)) return NULL;
  snprintf(dst, sizeof dst, "%s/merges.txt", dir);
  if (fixture_copy_gunzipped("tests/fixtures/tokenizer/clip/merges.txt.gz", dst)) return NULL;
  if (strcmp(variant, "bare") != 0) {
    const char *files[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    for (int i = 0; i < 2; i++) {
      snprintf(src, sizeof src, "tests/fixtures/tokenizer/%s/%s", variant, files[i]);
      snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
      if (fixture_copy(src, dst)) return NULL;
    }
  }
  return dir;
}

#endif
