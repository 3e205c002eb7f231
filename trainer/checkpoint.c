/* Checkpoint folders that are complete or absent, never half-written.
 *
 * A checkpoint is built under OUT/.tmp-checkpoint-<step>/, every file and
 * folder in it is fsynced, and only then is it renamed to
 * OUT/checkpoint-<step>/ and OUT fsynced. rename(2) of a directory is atomic,
 * so after a crash at any moment a folder with the final name is complete
 * (its contents were durable before the rename), and a temporary folder is
 * only a leftover that resume ignores and the next run removes. Deleting
 * renames to OUT/.deleting-checkpoint-<step>/ first for the same reason: a
 * crash halfway through rm -rf must not leave a gutted folder that still
 * carries a checkpoint's name.
 *
 * train_state/ (state.json + optimizer.safetensors) sits inside the
 * checkpoint and is the marker that the folder is a resumable checkpoint. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/trainer.h"

#define CHECKPOINT_PREFIX "checkpoint-"
#define TMP_PREFIX ".tmp-checkpoint-"
#define DELETING_PREFIX ".deleting-checkpoint-"
#define MAX_TREE_DEPTH 64

/* ---------------------------------------------------------- tree helpers */

static int remove_tree_at(const char *path, int depth, dpo_error *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return DPO_OK;
    return dpo_fail(err, DPO_ERR_DATA, "%s: cannot stat: %s", path, strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path) != 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot remove: %s", path, strerror(errno));
    return DPO_OK;
  }
  if (depth > MAX_TREE_DEPTH) return dpo_fail(err, DPO_ERR_DATA, "%s: folders nested too deeply to remove", path);
  DIR *d = opendir(path);
  if (!d) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open folder: %s", path, strerror(errno));
  int rc = DPO_OK;
  struct dirent *e;
  while (rc == DPO_OK && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char child[4096];
    if ((size_t)snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= sizeof child) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s/%s: path too long", path, e->d_name);
      break;
    }
    rc = remove_tree_at(child, depth + 1, err);
  }
  closedir(d);
  if (rc == DPO_OK && rmdir(path) != 0)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot remove folder: %s", path, strerror(errno));
  return rc;
}

int dpo_remove_tree(const char *path, dpo_error *err) { return remove_tree_at(path, 0, err); }

static int fsync_file(const char *path, dpo_error *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open to sync: %s", path, strerror(errno));
  int ok = fsync(fd) == 0;
  int saved = errno;
  close(fd);
  if (!ok) return dpo_fail(err, DPO_ERR_DATA, "%s: fsync failed: %s", path, strerror(saved));
  return DPO_OK;
}

/* Files first, then each folder after its contents. */
static int fsync_tree(const char *path, int depth, dpo_error *err) {
  if (depth > MAX_TREE_DEPTH) return dpo_fail(err, DPO_ERR_DATA, "%s: folders nested too deeply", path);
  DIR *d = opendir(path);
  if (!d) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open folder: %s", path, strerror(errno));
  int rc = DPO_OK;
  struct dirent *e;
  while (rc == DPO_OK && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char child[4096];
    if ((size_t)snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= sizeof child) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s/%s: path too long", path, e->d_name);
      break;
    }
    struct stat st;
    if (lstat(child, &st) != 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot stat: %s", child, strerror(errno));
    else if (S_ISDIR(st.st_mode)) rc = fsync_tree(child, depth + 1, err);
    else if (S_ISREG(st.st_mode)) rc = fsync_file(child, err);
  }
  closedir(d);
  if (rc == DPO_OK) rc = dpo_fsync_dir(path, err);
  return rc;
}

static int path_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* ------------------------------------------------------ write and commit */

int dpo_checkpoint_begin(dpo_checkpoint *ck, const char *out_dir, int64_t step, dpo_error *err) {
  memset(ck, 0, sizeof *ck);
  if (step < 0) return dpo_fail(err, DPO_ERR_USAGE, "checkpoint step must be >= 0, got %" PRId64, step);
  if (strlen(out_dir) >= sizeof ck->out_dir) return dpo_fail(err, DPO_ERR_USAGE, "output folder path too long");
  snprintf(ck->out_dir, sizeof ck->out_dir, "%s", out_dir);
  snprintf(ck->tmp_dir, sizeof ck->tmp_dir, "%s/" TMP_PREFIX "%" PRId64, out_dir, step);
  snprintf(ck->final_dir, sizeof ck->final_dir, "%s/" CHECKPOINT_PREFIX "%" PRId64, out_dir, step);
  ck->step = step;
  int rc = dpo_mkdir_p(out_dir, err);
  if (rc == DPO_OK) rc = dpo_remove_tree(ck->tmp_dir, err);   /* a leftover of a crash at this step */
  if (rc == DPO_OK && mkdir(ck->tmp_dir, 0755) != 0)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot create: %s", ck->tmp_dir, strerror(errno));
  if (rc == DPO_OK) ck->open = 1;
  return rc;
}

int dpo_checkpoint_commit(dpo_checkpoint *ck, dpo_error *err) {
  if (!ck->open) return dpo_fail(err, DPO_ERR_USAGE, "checkpoint %" PRId64 " is not open", ck->step);
  int rc = fsync_tree(ck->tmp_dir, 0, err);
  if (rc != DPO_OK) return rc;
  /* Rewriting a step (a resumed run that saves the same step again): move
   * the old folder aside, put the new one in place, then delete the old. */
  char old[4200] = "";
  if (path_exists(ck->final_dir)) {
    snprintf(old, sizeof old, "%s/" DELETING_PREFIX "%" PRId64, ck->out_dir, ck->step);
    rc = dpo_remove_tree(old, err);
    if (rc == DPO_OK && rename(ck->final_dir, old) != 0)
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot move aside: %s", ck->final_dir, strerror(errno));
    if (rc != DPO_OK) return rc;
  }
  if (rename(ck->tmp_dir, ck->final_dir) != 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: cannot rename into %s: %s", ck->tmp_dir, ck->final_dir, strerror(errno));
  ck->open = 0;
  rc = dpo_fsync_dir(ck->out_dir, err);
  if (rc == DPO_OK && old[0]) rc = dpo_remove_tree(old, err);
  return rc;
}

void dpo_checkpoint_abort(dpo_checkpoint *ck) {
  if (!ck->open) return;
  dpo_error ignored;
  dpo_remove_tree(ck->tmp_dir, &ignored);
  ck->open = 0;
}

/* --------------------------------------------------- listing and rotation */

/* "checkpoint-<digits>" exactly, with a step that fits int64. */
static int parse_checkpoint_name(const char *name, int64_t *step) {
  size_t plen = strlen(CHECKPOINT_PREFIX);
  if (strncmp(name, CHECKPOINT_PREFIX, plen) != 0) return 0;
  const char *digits = name + plen;
  size_t n = strlen(digits);
  if (n == 0 || n > 18) return 0;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (digits[i] < '0' || digits[i] > '9') return 0;
    v = v * 10 + (digits[i] - '0');
  }
  *step = v;
  return 1;
}

static int is_complete(const char *out_dir, const char *name) {
  char dir[4200], marker[4300];
  struct stat st;
  snprintf(dir, sizeof dir, "%s/%s", out_dir, name);
  if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
  snprintf(marker, sizeof marker, "%s/train_state/state.json", dir);
  return stat(marker, &st) == 0 && S_ISREG(st.st_mode);
}

static int compare_steps(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int dpo_checkpoint_list(const char *out_dir, int64_t **steps, int *n, dpo_error *err) {
  *steps = NULL;
  *n = 0;
  DIR *d = opendir(out_dir);
  if (!d) {
    if (errno == ENOENT) return DPO_OK;   /* no output yet: no checkpoints */
    return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open folder: %s", out_dir, strerror(errno));
  }
  int cap = 0, rc = DPO_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int64_t step;
    if (!parse_checkpoint_name(e->d_name, &step) || !is_complete(out_dir, e->d_name)) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      int64_t *grown = realloc(*steps, sizeof(int64_t) * (size_t)cap);
      if (!grown) {
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory listing checkpoints", out_dir);
        break;
      }
      *steps = grown;
    }
    (*steps)[(*n)++] = step;
  }
  closedir(d);
  if (rc != DPO_OK) {
    free(*steps);
    *steps = NULL;
    *n = 0;
    return rc;
  }
  if (*n > 1) qsort(*steps, (size_t)*n, sizeof(int64_t), compare_steps);
  return DPO_OK;
}

int dpo_checkpoint_latest(const char *out_dir, char *path, size_t n, int64_t *step, int *found, dpo_error *err) {
  int64_t *steps;
  int count;
  *found = 0;
  int rc = dpo_checkpoint_list(out_dir, &steps, &count, err);
  if (rc != DPO_OK) return rc;
  if (count > 0) {
    *step = steps[count - 1];
    snprintf(path, n, "%s/" CHECKPOINT_PREFIX "%" PRId64, out_dir, *step);
    *found = 1;
  }
  free(steps);
  return DPO_OK;
}

static int delete_checkpoint(const char *out_dir, int64_t step, dpo_error *err) {
  char dir[4200], doomed[4200];
  snprintf(dir, sizeof dir, "%s/" CHECKPOINT_PREFIX "%" PRId64, out_dir, step);
  snprintf(doomed, sizeof doomed, "%s/" DELETING_PREFIX "%" PRId64, out_dir, step);
  int rc = dpo_remove_tree(doomed, err);
  if (rc == DPO_OK && rename(dir, doomed) != 0)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot move aside for deletion: %s", dir, strerror(errno));
  if (rc == DPO_OK) rc = dpo_fsync_dir(out_dir, err);
  if (rc == DPO_OK) rc = dpo_remove_tree(doomed, err);
  return rc;
}

int dpo_checkpoint_rotate(const char *out_dir, int keep, int *n_deleted, dpo_error *err) {
  if (n_deleted) *n_deleted = 0;
  if (keep < 1) return DPO_OK;
  int64_t *steps;
  int count;
  int rc = dpo_checkpoint_list(out_dir, &steps, &count, err);
  for (int i = 0; rc == DPO_OK && i < count - keep; i++) {
    rc = delete_checkpoint(out_dir, steps[i], err);
    if (rc == DPO_OK && n_deleted) (*n_deleted)++;
  }
  free(steps);
  return rc;
}

int dpo_checkpoint_clean_temps(const char *out_dir, int *n_removed, dpo_error *err) {
  if (n_removed) *n_removed = 0;
  DIR *d = opendir(out_dir);
  if (!d) {
    if (errno == ENOENT) return DPO_OK;
    return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open folder: %s", out_dir, strerror(errno));
  }
  int rc = DPO_OK;
  struct dirent *e;
  while (rc == DPO_OK && (e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0 &&
        strncmp(e->d_name, DELETING_PREFIX, strlen(DELETING_PREFIX)) != 0)
      continue;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", out_dir, e->d_name);
    rc = dpo_remove_tree(path, err);
    if (rc == DPO_OK && n_removed) (*n_removed)++;
  }
  closedir(d);
  return rc;
}

/* ------------------------------------------------------------ train state */

static json_t *u64_string(uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRIu64, v);
  return json_string(buf);
}

int dpo_train_state_write(const char *checkpoint_dir, const dpo_train_state *state, const dpo_optimizer *opt,
                          dpo_error *err) {
  if (state->n_rng < 0 || state->n_rng > DPO_TRAIN_STATE_MAX_RNG)
    return dpo_fail(err, DPO_ERR_USAGE, "train state: %d RNG streams, at most %d", state->n_rng,
                    DPO_TRAIN_STATE_MAX_RNG);
  char dir[4200], path[4300];
  snprintf(dir, sizeof dir, "%s/train_state", checkpoint_dir);
  int rc = dpo_mkdir_p(dir, err);
  if (rc != DPO_OK) return rc;
  /* The optimizer first: state.json is the marker of a complete train_state. */
  if (opt) {
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    rc = dpo_optim_save(opt, path, err);
    if (rc != DPO_OK) return rc;
  }
  json_t *root = json_object();
  json_object_set_new(root, "format", json_string("dpo-train-state"));
  json_object_set_new(root, "version", json_integer(1));
  json_object_set_new(root, "step", json_integer(state->step));
  json_t *cursor = json_object();
  json_object_set_new(cursor, "epoch", u64_string(state->epoch));
  json_object_set_new(cursor, "position", u64_string(state->position));
  json_object_set_new(cursor, "seed", u64_string(state->data_seed));
  json_object_set_new(root, "data_cursor", cursor);
  json_t *rngs = json_array();
  for (int i = 0; i < state->n_rng; i++) {
    const dpo_named_rng *r = &state->rngs[i];
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(r->name));
    json_object_set_new(o, "seed", u64_string(r->rng.seed));
    json_object_set_new(o, "stream", u64_string(r->rng.stream));
    json_object_set_new(o, "index", u64_string(r->rng.index));
    json_array_append_new(rngs, o);
  }
  json_object_set_new(root, "rng", rngs);
  json_object_set_new(root, "optimizer", opt ? json_string(dpo_optim_kind_name(opt->cfg.kind)) : json_null());
  snprintf(path, sizeof path, "%s/state.json", dir);
  rc = dpo_json_write_file(path, root, err);
  json_decref(root);
  return rc;
}

/* A uint64 written as a decimal string: digits only, no overflow. */
static int get_u64(const json_t *obj, const char *key, uint64_t *out, const char *where, dpo_error *err) {
  const char *s;
  int rc = dpo_json_get_string(obj, key, &s, where, err);
  if (rc != DPO_OK) return rc;
  size_t n = strlen(s);
  if (n == 0 || n > 20) return dpo_fail(err, DPO_ERR_DATA, "%s: key \"%s\": \"%s\" is not a 64-bit count", where, key, s);
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
      return dpo_fail(err, DPO_ERR_DATA, "%s: key \"%s\": \"%s\" is not a 64-bit count", where, key, s);
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return DPO_OK;
}

static int read_rngs(const json_t *root, const char *where, dpo_train_state *state, dpo_error *err) {
  const json_t *arr = json_object_get(root, "rng");
  if (!json_is_array(arr)) return dpo_fail(err, DPO_ERR_DATA, "%s: key \"rng\": expected an array", where);
  if (json_array_size(arr) > DPO_TRAIN_STATE_MAX_RNG)
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"rng\": %zu streams, at most %d", where, json_array_size(arr),
                    DPO_TRAIN_STATE_MAX_RNG);
  int rc = DPO_OK;
  for (size_t i = 0; rc == DPO_OK && i < json_array_size(arr); i++) {
    const json_t *o = json_array_get(arr, i);
    dpo_named_rng *r = &state->rngs[i];
    char item[4400];
    snprintf(item, sizeof item, "%s: rng[%zu]", where, i);
    const char *name;
    rc = dpo_json_get_string(o, "name", &name, item, err);
    if (rc == DPO_OK && strlen(name) >= sizeof r->name)
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: name longer than %zu bytes", item, sizeof r->name - 1);
    if (rc == DPO_OK) snprintf(r->name, sizeof r->name, "%s", name);
    if (rc == DPO_OK) rc = get_u64(o, "seed", &r->rng.seed, item, err);
    if (rc == DPO_OK) rc = get_u64(o, "stream", &r->rng.stream, item, err);
    if (rc == DPO_OK) rc = get_u64(o, "index", &r->rng.index, item, err);
    if (rc == DPO_OK) state->n_rng = (int)i + 1;
  }
  return rc;
}

int dpo_train_state_read(const char *checkpoint_dir, dpo_train_state *state, dpo_optimizer *opt, dpo_error *err) {
  memset(state, 0, sizeof *state);
  char path[4300];
  snprintf(path, sizeof path, "%s/train_state/state.json", checkpoint_dir);
  json_t *root = dpo_json_load_file(path, 1u << 20, err);
  if (!root) return DPO_ERR_DATA;
  int rc = DPO_OK;
  const char *format = NULL;
  int64_t version = 0;
  if (!json_is_object(root)) rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object", path);
  if (rc == DPO_OK) rc = dpo_json_get_string(root, "format", &format, path, err);
  if (rc == DPO_OK && strcmp(format, "dpo-train-state") != 0)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: key \"format\": \"%s\", expected \"dpo-train-state\"", path, format);
  if (rc == DPO_OK) rc = dpo_json_get_int(root, "version", &version, path, err);
  if (rc == DPO_OK && version != 1)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: key \"version\": %" PRId64 ", this dpo reads version 1", path, version);
  if (rc == DPO_OK) rc = dpo_json_get_int(root, "step", &state->step, path, err);
  if (rc == DPO_OK && state->step < 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: key \"step\": negative", path);
  const json_t *cursor = json_object_get(root, "data_cursor");
  char where[4400];
  snprintf(where, sizeof where, "%s: data_cursor", path);
  if (rc == DPO_OK && !json_is_object(cursor))
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: key \"data_cursor\": expected an object", path);
  if (rc == DPO_OK) rc = get_u64(cursor, "epoch", &state->epoch, where, err);
  if (rc == DPO_OK) rc = get_u64(cursor, "position", &state->position, where, err);
  if (rc == DPO_OK) rc = get_u64(cursor, "seed", &state->data_seed, where, err);
  if (rc == DPO_OK) rc = read_rngs(root, path, state, err);
  json_decref(root);
  if (rc == DPO_OK && opt) {
    snprintf(path, sizeof path, "%s/train_state/optimizer.safetensors", checkpoint_dir);
    rc = dpo_optim_load(opt, path, err);
    if (rc == DPO_OK && opt->step != state->step)
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: optimizer step %" PRId64 " differs from the state's step %" PRId64, path,
                    opt->step, state->step);
  }
  return rc;
}
