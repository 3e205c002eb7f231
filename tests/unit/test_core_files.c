/* Errors, whole-file reads with limits, atomic writes and JSON helpers. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <stdlib.h>

#include "core/core.h"
#include "tests/test.h"

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

static void test_errors(void) {
  dpo_error err;
  CHECK_INT(dpo_fail(&err, DPO_ERR_DATA, "%s:%d: bad", "f.txt", 3), DPO_ERR_DATA);
  CHECK_STR(err.msg, "f.txt:3: bad");
  dpo_error_prefix(&err, "loading %s", "x");
  CHECK_STR(err.msg, "loading x: f.txt:3: bad");
  CHECK_INT(dpo_fail(NULL, DPO_ERR_USAGE, "ignored"), DPO_ERR_USAGE);
}

static void test_read_file(void) {
  dpo_error err;
  char *data;
  size_t len;
  const char *p = test_path("small.txt");
  CHECK_INT(test_write_file(p, "hello", 5), 0);
  CHECK_INT(dpo_read_file(p, 100, &data, &len, &err), DPO_OK);
  CHECK_INT(len, 5);
  CHECK_STR(data, "hello");
  free(data);
  CHECK_INT(dpo_read_file(p, 4, &data, &len, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "larger than the limit");
  CHECK_INT(dpo_read_file(test_path("missing"), 100, &data, &len, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "missing: cannot open");
  CHECK_INT(dpo_read_file(test_tmpdir(), 100, &data, &len, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "not a regular file");
}

static void test_atomic(void) {
  dpo_error err;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", test_path("atomic/a/b"));
  CHECK_INT(dpo_mkdir_p(dir, &err), DPO_OK);
  CHECK_INT(dpo_mkdir_p(dir, &err), DPO_OK); /* idempotent */
  char target[1100];
  snprintf(target, sizeof target, "%s/out.bin", dir);
  CHECK_INT(dpo_atomic_write(target, "first", 5, &err), DPO_OK);
  /* An aborted write leaves the old content and no temporary file behind. */
  dpo_atomic_file af;
  CHECK_INT(dpo_atomic_open(&af, target, &err), DPO_OK);
  fputs("partial", af.fp);
  dpo_atomic_abort(&af);
  dpo_atomic_abort(&af);
  char *data;
  size_t len;
  CHECK_INT(dpo_read_file(target, 100, &data, &len, &err), DPO_OK);
  CHECK_STR(data, "first");
  free(data);
  CHECK_INT(count_entries(dir), 1);
  CHECK_INT(dpo_atomic_write(target, "second", 6, &err), DPO_OK);
  CHECK_INT(dpo_read_file(target, 100, &data, &len, &err), DPO_OK);
  CHECK_STR(data, "second");
  free(data);
  CHECK_INT(count_entries(dir), 1);
  /* A file in the way of a directory is refused by name. */
  char blocked[1100];
  snprintf(blocked, sizeof blocked, "%s/sub", target);
  CHECK_INT(dpo_mkdir_p(blocked, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "out.bin");
  CHECK_INT(dpo_atomic_write(test_path("no/such/dir/x"), "x", 1, &err), DPO_ERR_DATA);
}

static void test_json(void) {
  dpo_error err;
  const char *text = "{\"s\": \"v\", \"i\": 3, \"f\": 2.5, \"b\": true, \"n\": null}";
  json_t *o = dpo_json_parse(text, strlen(text), "t.json", &err);
  CHECK(o != NULL);
  const char *s = NULL;
  int64_t i = 0;
  double f = 0;
  int b = 0;
  CHECK_INT(dpo_json_get_string(o, "s", &s, "t.json", &err), DPO_OK);
  CHECK_STR(s, "v");
  CHECK_INT(dpo_json_get_int(o, "i", &i, "t.json", &err), DPO_OK);
  CHECK_INT(i, 3);
  CHECK_INT(dpo_json_get_number(o, "i", &f, "t.json", &err), DPO_OK);
  CHECK_NEAR(f, 3.0, 0);
  CHECK_INT(dpo_json_get_number(o, "f", &f, "t.json", &err), DPO_OK);
  CHECK_NEAR(f, 2.5, 0);
  CHECK_INT(dpo_json_get_bool(o, "b", &b, "t.json", &err), DPO_OK);
  CHECK_INT(b, 1);
  CHECK_INT(dpo_json_get_int(o, "f", &i, "t.json", &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "t.json: key \"f\": expected an integer, got a number");
  CHECK_INT(dpo_json_get_string(o, "missing", &s, "t.json", &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "missing key \"missing\"");
  s = "kept";
  CHECK_INT(dpo_json_get_string_opt(o, "n", &s, "t.json", &err), DPO_OK);
  CHECK_STR(s, "kept");
  CHECK_INT(dpo_json_get_string_opt(o, "i", &s, "t.json", &err), DPO_ERR_DATA);
  json_decref(o);

  const char *bad = "{\n  \"a\": 1,\n  \"b\": }\n";
  CHECK(dpo_json_parse(bad, strlen(bad), "bad.json", &err) == NULL);
  CHECK_CONTAINS(err.msg, "bad.json:3:");
  const char *dup = "{\"a\": 1, \"a\": 2}";
  CHECK(dpo_json_parse(dup, strlen(dup), "dup.json", &err) == NULL);
  CHECK_CONTAINS(err.msg, "duplicate");

  json_t *w = json_pack("{s:i, s:s}", "z", 1, "a", "x");
  CHECK_INT(dpo_json_write_file(test_path("w.json"), w, &err), DPO_OK);
  json_decref(w);
  json_t *r = dpo_json_load_file(test_path("w.json"), 1000, &err);
  CHECK(r != NULL);
  CHECK_INT(json_integer_value(json_object_get(r, "z")), 1);
  json_decref(r);
  CHECK(dpo_json_load_file(test_path("w.json"), 3, &err) == NULL);
  CHECK_CONTAINS(err.msg, "larger than the limit");
}

int main(void) {
  test_errors();
  test_read_file();
  test_atomic();
  test_json();
  return test_finish();
}
