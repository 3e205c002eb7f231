/* Golden checks against the reference Python package (safetensors 0.4.5):
 * - py_written.safetensors, written by tests/fixtures/make_safetensors_fixtures.py,
 *   reads back with every element equal to py_written.json (exact bits, and
 *   dpo_st_to_f32 equal to numpy's conversion);
 * - the writer reproduces c_written.safetensors byte for byte (the file the
 *   script checked with the Python package; see c_written.verified.json).
 * DPO_UPDATE_FIXTURES=1 rewrites c_written.safetensors instead of comparing;
 * rerun the script afterwards. */
#include "tests/golden/safetensors_sample.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

static void test_reads_python_file(void) {
  char path[1024], json_path[1024];
  snprintf(path, sizeof path, "%s", test_source_path("tests/fixtures/safetensors/py_written.safetensors"));
  snprintf(json_path, sizeof json_path, "%s", test_source_path("tests/fixtures/safetensors/py_written.json"));
  CHECK_INT(st_sample_check_file(path, json_path), 0);
}

static int read_whole(const char *path, char **data, size_t *len) {
  dpo_error err = {0};
  int rc = dpo_read_file(path, 1u << 20, data, len, &err);
  if (rc) fprintf(stderr, "%s\n", err.msg);
  return rc;
}

static void test_writer_reproduces_committed_file(void) {
  char committed[1024];
  snprintf(committed, sizeof committed, "%s", test_source_path("tests/fixtures/safetensors/c_written.safetensors"));
  const char *update = getenv("DPO_UPDATE_FIXTURES");
  const char *fresh = (update && strcmp(update, "1") == 0) ? committed : test_path("c_written.safetensors");
  dpo_error err = {0};
  CHECK_INT(st_sample_write(fresh, &err), DPO_OK);
  char *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  CHECK_INT(read_whole(committed, &a, &na), 0);
  CHECK_INT(read_whole(fresh, &b, &nb), 0);
  CHECK_INT(na, nb);
  CHECK(a && b && na == nb && memcmp(a, b, na) == 0);
  free(a);
  free(b);
  /* The verification the Python script recorded must be a success. */
  json_t *verified = dpo_json_load_file(
      test_source_path("tests/fixtures/safetensors/c_written.verified.json"), 1u << 20, &err);
  CHECK(verified != NULL);
  CHECK(json_is_true(json_object_get(verified, "ok")));
  CHECK(json_is_true(json_object_get(verified, "byte_identical_to_python_serialize")));
  json_decref(verified);
}

int main(void) {
  test_reads_python_file();
  test_writer_reproduces_committed_file();
  return test_finish();
}
