/* The pairs dataset: pairs.jsonl parsing and validation, winner-first
 * ordering, tie and generator filters, missing-image checks, and the
 * deterministic per-epoch order that a data cursor can resume.
 *
 * The file is read line by line with a hard cap on the line length, so a
 * dataset of a million pairs is never held as one buffer and a broken file
 * without newlines cannot exhaust memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trainer/trainer.h"

/* ------------------------------------------------------------ one record */

void dpo_pair_record_free(dpo_pair_record *rec) {
  free(rec->caption);
  free(rec->image_0);
  free(rec->image_1);
  free(rec->source);
  free(rec->model_0);
  free(rec->model_1);
  memset(rec, 0, sizeof *rec);
}

/* A string member: the right type, no NUL inside (jansson allows \u0000),
 * at most max_bytes. Absent optional members leave *out NULL. */
static int get_text(const json_t *obj, const char *key, int required, size_t max_bytes, int allow_empty,
                    const char *where, char **out, dpo_error *err) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) {
    if (required) return dpo_fail(err, DPO_ERR_DATA, "%s: missing field \"%s\"", where, key);
    return DPO_OK;
  }
  if (!json_is_string(v)) return dpo_fail(err, DPO_ERR_DATA, "%s: field \"%s\": expected a string", where, key);
  size_t len = json_string_length(v);
  const char *s = json_string_value(v);
  if (strlen(s) != len) return dpo_fail(err, DPO_ERR_DATA, "%s: field \"%s\": contains a NUL character", where, key);
  if (len > max_bytes)
    return dpo_fail(err, DPO_ERR_DATA, "%s: field \"%s\": %zu bytes, longer than the limit of %zu", where, key, len,
                    max_bytes);
  if (len == 0 && !allow_empty) return dpo_fail(err, DPO_ERR_DATA, "%s: field \"%s\": is empty", where, key);
  *out = strdup(s);
  if (!*out) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  return DPO_OK;
}

/* Image paths stay inside the dataset's folder: relative, no ".." part. */
static int check_relative_path(const char *path, const char *key, const char *where, dpo_error *err) {
  if (path[0] == '/')
    return dpo_fail(err, DPO_ERR_DATA, "%s: field \"%s\": \"%s\" is absolute, expected a path relative to the "
                    "folder of pairs.jsonl", where, key, path);
  const char *part = path;
  while (*part) {
    size_t n = strcspn(part, "/");
    if (n == 2 && part[0] == '.' && part[1] == '.')
      return dpo_fail(err, DPO_ERR_DATA, "%s: field \"%s\": \"%s\" leaves the folder of pairs.jsonl (\"..\")", where,
                      key, path);
    part += n;
    if (*part == '/') part++;
  }
  return DPO_OK;
}

static int get_label(const json_t *obj, const char *where, double *out, dpo_error *err) {
  const json_t *v = json_object_get(obj, "label_0");
  if (!v) return dpo_fail(err, DPO_ERR_DATA, "%s: missing field \"label_0\"", where);
  if (!json_is_number(v)) return dpo_fail(err, DPO_ERR_DATA, "%s: field \"label_0\": expected 0, 0.5 or 1", where);
  double x = json_number_value(v);
  if (x != 0.0 && x != 0.5 && x != 1.0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: field \"label_0\": %g, expected 0, 0.5 or 1", where, x);
  *out = x;
  return DPO_OK;
}

int dpo_pair_record_parse(const char *line, size_t len, const char *where, dpo_pair_record *rec, dpo_error *err) {
  memset(rec, 0, sizeof *rec);
  if (len > DPO_PAIRS_MAX_LINE_BYTES)
    return dpo_fail(err, DPO_ERR_DATA, "%s: line of %zu bytes, longer than the limit of %u", where, len,
                    DPO_PAIRS_MAX_LINE_BYTES);
  json_t *obj = dpo_json_parse(line, len, where, err);
  if (!obj) return DPO_ERR_DATA;
  int rc = DPO_OK;
  if (!json_is_object(obj)) rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object", where);
  /* Captions may be empty (training drops captions on purpose anyway). */
  if (rc == DPO_OK) rc = get_text(obj, "caption", 1, DPO_PAIRS_MAX_CAPTION_BYTES, 1, where, &rec->caption, err);
  if (rc == DPO_OK) rc = get_text(obj, "image_0", 1, DPO_PAIRS_MAX_PATH_BYTES, 0, where, &rec->image_0, err);
  if (rc == DPO_OK) rc = check_relative_path(rec->image_0, "image_0", where, err);
  if (rc == DPO_OK) rc = get_text(obj, "image_1", 1, DPO_PAIRS_MAX_PATH_BYTES, 0, where, &rec->image_1, err);
  if (rc == DPO_OK) rc = check_relative_path(rec->image_1, "image_1", where, err);
  if (rc == DPO_OK) rc = get_label(obj, where, &rec->label_0, err);
  if (rc == DPO_OK) rc = get_text(obj, "source", 1, 256, 0, where, &rec->source, err);
  if (rc == DPO_OK) rc = get_text(obj, "model_0", 0, 256, 1, where, &rec->model_0, err);
  if (rc == DPO_OK) rc = get_text(obj, "model_1", 0, 256, 1, where, &rec->model_1, err);
  if (rc == DPO_OK && strcmp(rec->image_0, rec->image_1) == 0)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: fields \"image_0\" and \"image_1\" are the same file \"%s\"", where,
                  rec->image_0);
  json_decref(obj);
  if (rc != DPO_OK) dpo_pair_record_free(rec);
  return rc;
}

int dpo_ties_mode_parse(const char *name, dpo_ties_mode *out, dpo_error *err) {
  if (strcmp(name, "skip") == 0) *out = DPO_TIES_SKIP;
  else if (strcmp(name, "half") == 0) *out = DPO_TIES_HALF;
  else return dpo_fail(err, DPO_ERR_USAGE, "unknown --ties value '%s' (expected skip or half)", name);
  return DPO_OK;
}

/* ----------------------------------------------------------- the dataset */

void dpo_pairs_free(dpo_pairs *set) {
  for (int i = 0; i < set->n; i++) {
    dpo_pair *p = &set->pairs[i];
    free(p->caption);
    free(p->image_w);
    free(p->image_l);
    free(p->source);
    free(p->model_w);
    free(p->model_l);
  }
  free(set->pairs);
  memset(set, 0, sizeof *set);
}

/* Reads one line (without its newline) into buf of capacity cap. Returns 1
 * for a line, 0 at end of file, -1 for a line longer than cap - 1 (the rest
 * of it is skipped so that the caller can report it). */
static int read_line(FILE *f, char *buf, size_t cap, size_t *len) {
  size_t n = 0;
  int c, too_long = 0;
  while ((c = getc(f)) != EOF && c != '\n') {
    if (n + 1 < cap) buf[n++] = (char)c;
    else too_long = 1;
  }
  if (c == EOF && n == 0 && !too_long) return 0;
  buf[n] = '\0';
  *len = n;
  return too_long ? -1 : 1;
}

static int is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
  return 1;
}

static char *join_path(const char *dir, const char *rel) {
  size_t n = strlen(dir) + strlen(rel) + 2;
  char *out = malloc(n);
  if (out) snprintf(out, n, "%s/%s", dir, rel);
  return out;
}

static int generator_matches(const dpo_pair_record *r, const char *filter) {
  if (!filter) return 1;
  return r->model_0 && r->model_1 && strstr(r->model_0, filter) && strstr(r->model_1, filter);
}

static int is_regular_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Moves a record into a winner-first pair; the record's strings change hands. */
static int add_pair(dpo_pairs *set, int *cap, dpo_pair_record *r, int line) {
  if (set->n == *cap) {
    int grown = *cap ? *cap * 2 : 256;
    dpo_pair *p = realloc(set->pairs, sizeof(dpo_pair) * (size_t)grown);
    if (!p) return 0;
    set->pairs = p;
    *cap = grown;
  }
  int swapped = r->label_0 == 0.0;
  dpo_pair *p = &set->pairs[set->n];
  memset(p, 0, sizeof *p);
  p->image_w = join_path(set->dir, swapped ? r->image_1 : r->image_0);
  p->image_l = join_path(set->dir, swapped ? r->image_0 : r->image_1);
  if (!p->image_w || !p->image_l) {
    free(p->image_w);
    free(p->image_l);
    return 0;
  }
  p->caption = r->caption;
  p->source = r->source;
  p->model_w = swapped ? r->model_1 : r->model_0;
  p->model_l = swapped ? r->model_0 : r->model_1;
  p->label = r->label_0 == 0.5 ? 0.5f : 1.0f;
  p->line = line;
  p->swapped = swapped;
  free(r->image_0);
  free(r->image_1);
  memset(r, 0, sizeof *r);
  set->n++;
  return 1;
}

static void set_dir(dpo_pairs *set, const char *path) {
  snprintf(set->path, sizeof set->path, "%s", path);
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(set->dir, sizeof set->dir, ".");
  else if (slash == path) snprintf(set->dir, sizeof set->dir, "/");
  else snprintf(set->dir, sizeof set->dir, "%.*s", (int)(slash - path), path);
}

/* Every image of every kept pair must be a file; the first missing one is
 * the error, with the count of all missing ones. */
static int check_images(const dpo_pairs *set, dpo_error *err) {
  int missing = 0;
  char first[2048] = "";
  for (int i = 0; i < set->n; i++) {
    const dpo_pair *p = &set->pairs[i];
    const char *paths[2] = {p->image_w, p->image_l};
    for (int k = 0; k < 2; k++) {
      if (is_regular_file(paths[k])) continue;
      if (missing++ == 0) {
        /* Name the field as the file does: winner-first may have swapped them. */
        int field = (k == 0) == !p->swapped ? 0 : 1;
        snprintf(first, sizeof first, "%s:%d: image_%d \"%s\" not found", set->path, p->line, field,
                 paths[k] + strlen(set->dir) + 1);
      }
    }
  }
  if (missing == 0) return DPO_OK;
  if (missing == 1) return dpo_fail(err, DPO_ERR_DATA, "%s", first);
  return dpo_fail(err, DPO_ERR_DATA, "%s (and %d more missing images)", first, missing - 1);
}

int dpo_pairs_load(const char *path, const dpo_pairs_options *opt, dpo_pairs *out, dpo_error *err) {
  memset(out, 0, sizeof *out);
  if (strlen(path) >= sizeof out->path) return dpo_fail(err, DPO_ERR_USAGE, "pairs path too long");
  FILE *f = fopen(path, "rb");
  if (!f) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open: %s", path, strerror(errno));
  set_dir(out, path);
  char *buf = malloc(DPO_PAIRS_MAX_LINE_BYTES + 2);
  if (!buf) {
    fclose(f);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  }
  int rc = DPO_OK, cap = 0, line = 0, got;
  size_t len;
  while (rc == DPO_OK && (got = read_line(f, buf, DPO_PAIRS_MAX_LINE_BYTES + 2, &len)) != 0) {
    char where[4200];
    snprintf(where, sizeof where, "%s:%d", path, ++line);
    if (line >= 100000000) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: more than 100 million lines", path);
      break;
    }
    if (got < 0) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: line longer than the limit of %u bytes", where, DPO_PAIRS_MAX_LINE_BYTES);
      break;
    }
    if (is_blank(buf, len)) continue;
    out->n_lines++;
    dpo_pair_record r;
    rc = dpo_pair_record_parse(buf, len, where, &r, err);
    if (rc != DPO_OK) break;
    if (r.label_0 == 0.5 && opt->ties == DPO_TIES_SKIP) {
      out->n_ties_skipped++;
    } else if (!generator_matches(&r, opt->model_filter)) {
      out->n_filtered++;
    } else if (!add_pair(out, &cap, &r, line)) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
    }
    dpo_pair_record_free(&r);
  }
  if (rc == DPO_OK && ferror(f)) rc = dpo_fail(err, DPO_ERR_DATA, "%s: read error", path);
  free(buf);
  fclose(f);
  if (rc == DPO_OK && out->n_lines == 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: no pairs in the file", path);
  if (rc == DPO_OK && out->n == 0)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: no pairs left of %d (%d ties skipped, %d not matching the generator filter)",
                  path, out->n_lines, out->n_ties_skipped, out->n_filtered);
  if (rc == DPO_OK && opt->check_images) rc = check_images(out, err);
  if (rc != DPO_OK) dpo_pairs_free(out);
  return rc;
}

/* ------------------------------------------------------------ epoch order */

static void shuffle_epoch(dpo_pair_sampler *s) {
  for (int i = 0; i < s->n; i++) s->order[i] = (uint32_t)i;
  dpo_rng rng;
  dpo_rng_init(&rng, s->seed, dpo_rng_stream_id("pairs-epoch", s->epoch, 0));
  for (int i = s->n - 1; i > 0; i--) {
    uint32_t j = dpo_rng_next_below(&rng, (uint32_t)i + 1);
    uint32_t t = s->order[i];
    s->order[i] = s->order[j];
    s->order[j] = t;
  }
}

int dpo_pair_sampler_init(dpo_pair_sampler *s, int n, uint64_t seed, uint64_t epoch, uint64_t position,
                          dpo_error *err) {
  memset(s, 0, sizeof *s);
  if (n < 1) return dpo_fail(err, DPO_ERR_USAGE, "sampler: no pairs");
  if (position > (uint64_t)n)
    return dpo_fail(err, DPO_ERR_DATA, "data cursor position %llu is past the %d pairs of the dataset "
                    "(was the dataset changed since the checkpoint?)", (unsigned long long)position, n);
  s->order = malloc(sizeof(uint32_t) * (size_t)n);
  if (!s->order) return dpo_fail(err, DPO_ERR_DATA, "sampler: out of memory");
  s->n = n;
  s->seed = seed;
  s->epoch = epoch;
  s->position = position;
  shuffle_epoch(s);
  return DPO_OK;
}

int dpo_pair_sampler_next(dpo_pair_sampler *s) {
  if (s->position >= (uint64_t)s->n) {
    s->epoch++;
    s->position = 0;
    shuffle_epoch(s);
  }
  return (int)s->order[s->position++];
}

void dpo_pair_sampler_free(dpo_pair_sampler *s) {
  free(s->order);
  memset(s, 0, sizeof *s);
}
