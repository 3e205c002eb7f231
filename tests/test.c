#include "tests/test.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static char tmpdir[512];
static char path_buf[8][1024];
static int path_next;

void test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: FAIL: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  failures++;
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char child[1024];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(child, sizeof child, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(child);
    else unlink(child);
  }
  closedir(d);
  rmdir(dir);
}

const char *test_tmpdir(void) {
  if (!tmpdir[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/dpo-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(2); }
  }
  return tmpdir;
}

const char *test_path(const char *name) {
  char *out = path_buf[path_next++ % 8];
  snprintf(out, sizeof path_buf[0], "%s/%s", test_tmpdir(), name);
  return out;
}

const char *test_source_path(const char *relative) {
  /* $DPO_SOURCE_DIR, when set, wins over the build's path: a test binary
   * carried to another machine (tests/device/run.sh) finds the tree there. */
  const char *root = getenv("DPO_SOURCE_DIR");
  char *out = path_buf[path_next++ % 8];
  snprintf(out, sizeof path_buf[0], "%s/%s", root && *root ? root : DPO_SOURCE_DIR, relative);
  return out;
}

int test_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, n, f);
  return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int test_finish(void) {
  if (tmpdir[0] && !getenv("DPO_KEEP_TEST_TMP")) remove_tree(tmpdir);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else fprintf(stderr, "all checks passed\n");
  return failures ? 1 : 0;
}

double test_scaled_error(const float *got, const float *want, size_t n) {
  double worst = 0.0, scale = 1e-3;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (d != d) return INFINITY;
    if (d > worst) worst = d;
    if (fabs(want[i]) > scale) scale = fabs(want[i]);
  }
  return worst / scale;
}

double test_cosine(const float *a, const float *b, size_t n) {
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (size_t i = 0; i < n; i++) {
    ab += (double)a[i] * b[i];
    aa += (double)a[i] * a[i];
    bb += (double)b[i] * b[i];
  }
  if (aa == 0.0 && bb == 0.0) return 1.0;
  double c = ab / sqrt(aa * bb + 1e-300);
  return isnan(c) ? -1.0 : c;
}
