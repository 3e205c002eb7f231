#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dpo_read_file(const char *path, size_t max_bytes, char **data, size_t *len, dpo_error *err) {
  *data = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return dpo_fail(err, DPO_ERR_DATA, "%s: not a regular file", path);
  }
  if ((uint64_t)st.st_size > max_bytes) {
    fclose(f);
    return dpo_fail(err, DPO_ERR_DATA, "%s: file is %lld bytes, larger than the limit of %zu bytes",
                    path, (long long)st.st_size, max_bytes);
  }
  size_t size = (size_t)st.st_size;
  char *buf = malloc(size + 1);
  if (!buf) {
    fclose(f);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading %zu bytes", path, size);
  }
  size_t got = fread(buf, 1, size, f);
  int read_error = ferror(f);
  fclose(f);
  if (read_error || got != size) {
    free(buf);
    return dpo_fail(err, DPO_ERR_DATA, "%s: read %zu of %zu bytes", path, got, size);
  }
  buf[size] = '\0';
  *data = buf;
  *len = size;
  return DPO_OK;
}

int dpo_fsync_dir(const char *dir, dpo_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open directory: %s", dir, strerror(errno));
  int rc = fsync(fd);
  int saved = errno;
  close(fd);
  /* Some file systems refuse fsync on directories; that is not data loss. */
  if (rc != 0 && saved != EINVAL && saved != EROFS)
    return dpo_fail(err, DPO_ERR_DATA, "%s: fsync of directory failed: %s", dir, strerror(saved));
  return DPO_OK;
}

static void parent_dir(const char *path, char *out, size_t n) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  snprintf(out, n, "%s", dirname(tmp));
}

int dpo_atomic_open(dpo_atomic_file *af, const char *path, dpo_error *err) {
  static unsigned counter; /* distinct temp names within one process */
  memset(af, 0, sizeof *af);
  if (strlen(path) + 32 >= sizeof af->path)
    return dpo_fail(err, DPO_ERR_USAGE, "%s: path too long", path);
  snprintf(af->path, sizeof af->path, "%s", path);
  snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
  af->fp = fopen(af->tmp_path, "wb");
  if (!af->fp)
    return dpo_fail(err, DPO_ERR_DATA, "%s: cannot create: %s", af->tmp_path, strerror(errno));
  return DPO_OK;
}

int dpo_atomic_commit(dpo_atomic_file *af, dpo_error *err) {
  if (!af->fp) return dpo_fail(err, DPO_ERR_USAGE, "%s: atomic file is not open", af->path);
  int failed = fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0;
  int saved = errno;
  if (fclose(af->fp) != 0 && !failed) {
    failed = 1;
    saved = errno;
  }
  af->fp = NULL;
  if (failed) {
    unlink(af->tmp_path);
    return dpo_fail(err, DPO_ERR_DATA, "%s: write failed: %s", af->path, strerror(saved));
  }
  if (rename(af->tmp_path, af->path) != 0) {
    saved = errno;
    unlink(af->tmp_path);
    return dpo_fail(err, DPO_ERR_DATA, "%s: cannot rename into place: %s", af->path, strerror(saved));
  }
  char dir[4096];
  parent_dir(af->path, dir, sizeof dir);
  return dpo_fsync_dir(dir, err);
}

void dpo_atomic_abort(dpo_atomic_file *af) {
  if (af->fp) {
    fclose(af->fp);
    af->fp = NULL;
    unlink(af->tmp_path);
  }
}

int dpo_atomic_write(const char *path, const void *data, size_t n, dpo_error *err) {
  dpo_atomic_file af;
  int rc = dpo_atomic_open(&af, path, err);
  if (rc) return rc;
  if (n > 0 && fwrite(data, 1, n, af.fp) != n) {
    int saved = errno;
    dpo_atomic_abort(&af);
    return dpo_fail(err, DPO_ERR_DATA, "%s: write failed: %s", path, strerror(saved));
  }
  return dpo_atomic_commit(&af, err);
}

int dpo_mkdir_p(const char *path, dpo_error *err) {
  char buf[4096];
  if (strlen(path) >= sizeof buf) return dpo_fail(err, DPO_ERR_USAGE, "%s: path too long", path);
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char saved = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return dpo_fail(err, DPO_ERR_DATA, "%s: cannot create directory: %s", buf, strerror(errno));
      struct stat st;
      if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return dpo_fail(err, DPO_ERR_DATA, "%s: exists and is not a directory", buf);
      *p = saved;
      if (saved == '\0') break;
    }
  }
  return DPO_OK;
}
