/* Run-folder manifests (DESIGN.md, "Formats"): RUN/manifest.jsonl, one JSON
 * object per generated image. A study pairs images of two runs by what they
 * were generated from, so every line is checked strictly here. */
#include <stdlib.h>
#include <string.h>

#include "studies/studies.h"

static const char *const manifest_keys[] = {"prompt_set", "prompt_id", "prompt", "category", "seed",
                                            "image_index", "file", "sha256", "model", "settings"};
enum { N_MANIFEST_KEYS = (int)(sizeof manifest_keys / sizeof manifest_keys[0]) };

static char *dup_string(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n + 1);
  if (out) memcpy(out, s, n + 1);
  return out;
}

static int is_sha256_hex(const char *s) {
  if (strlen(s) != 64) return 0;
  for (int i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

/* A path inside the run folder: relative, no "..", no empty name. */
static int is_safe_relative_path(const char *p) {
  if (!*p || p[0] == '/') return 0;
  const char *s = p;
  while (*s) {
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
    if (!slash) break;
    s = slash + 1;
  }
  return p[strlen(p) - 1] != '/';
}

static int get_text(const json_t *obj, const char *key, char **out, const char *where, dpo_error *err) {
  const char *s;
  int rc = dpo_json_get_string(obj, key, &s, where, err);
  if (rc != DPO_OK) return rc;
  *out = dup_string(s);
  if (!*out) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  return DPO_OK;
}

static int parse_entry(const json_t *obj, studies_manifest_entry *e, const char *where, dpo_error *err) {
  if (!json_is_object(obj)) return dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object", where);
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)obj, key, value) {
    int known = 0;
    for (int i = 0; i < N_MANIFEST_KEYS; i++) known |= strcmp(key, manifest_keys[i]) == 0;
    if (!known) return dpo_fail(err, DPO_ERR_DATA, "%s: unknown key \"%s\"", where, key);
  }
  int rc = DPO_OK;
  if (rc == DPO_OK) rc = get_text(obj, "prompt_set", &e->prompt_set, where, err);
  if (rc == DPO_OK) rc = get_text(obj, "prompt_id", &e->prompt_id, where, err);
  if (rc == DPO_OK) rc = get_text(obj, "prompt", &e->prompt, where, err);
  if (rc == DPO_OK) rc = get_text(obj, "category", &e->category, where, err);
  if (rc == DPO_OK) rc = dpo_json_get_int(obj, "seed", &e->seed, where, err);
  if (rc == DPO_OK) rc = dpo_json_get_int(obj, "image_index", &e->image_index, where, err);
  if (rc == DPO_OK) rc = get_text(obj, "file", &e->file, where, err);
  if (rc == DPO_OK) rc = get_text(obj, "sha256", &e->sha256, where, err);
  if (rc == DPO_OK) rc = get_text(obj, "model", &e->model, where, err);
  if (rc != DPO_OK) return rc;
  json_t *settings = json_object_get(obj, "settings");
  if (!settings) return dpo_fail(err, DPO_ERR_DATA, "%s: missing key \"settings\"", where);
  if (!json_is_object(settings))
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"settings\": expected an object", where);
  if (e->seed < 0) return dpo_fail(err, DPO_ERR_DATA, "%s: key \"seed\": expected a non-negative integer", where);
  if (e->image_index < 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"image_index\": expected a non-negative integer", where);
  if (!*e->prompt_set || !*e->prompt_id)
    return dpo_fail(err, DPO_ERR_DATA, "%s: keys \"prompt_set\" and \"prompt_id\" must not be empty", where);
  if (!is_sha256_hex(e->sha256))
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"sha256\": expected 64 lower-case hex digits", where);
  if (!is_safe_relative_path(e->file))
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"file\": expected a path inside the run folder, got \"%s\"", where,
                    e->file);
  e->settings_json = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
  if (!e->settings_json) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  const char *source = NULL;
  rc = dpo_json_get_string_opt(settings, "source_image", &source, where, err);
  if (rc != DPO_OK) return rc;
  if (source) {
    if (!is_safe_relative_path(source))
      return dpo_fail(err, DPO_ERR_DATA, "%s: key \"settings.source_image\": expected a path inside the run folder",
                      where);
    e->source_image = dup_string(source);
    if (!e->source_image) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  }
  return DPO_OK;
}

static int same_key(const studies_manifest_entry *x, const studies_manifest_entry *y) {
  return x->seed == y->seed && x->image_index == y->image_index && strcmp(x->prompt_id, y->prompt_id) == 0 &&
         strcmp(x->prompt_set, y->prompt_set) == 0;
}

static int compare_entries(const void *pa, const void *pb) {
  const studies_manifest_entry *a = pa, *b = pb;
  int c = strcmp(a->prompt_set, b->prompt_set);
  if (c) return c;
  c = strcmp(a->prompt_id, b->prompt_id);
  if (c) return c;
  if (a->seed != b->seed) return a->seed < b->seed ? -1 : 1;
  if (a->image_index != b->image_index) return a->image_index < b->image_index ? -1 : 1;
  return a->line - b->line;
}

int studies_manifest_load(const char *run_dir, studies_manifest *m, dpo_error *err) {
  memset(m, 0, sizeof *m);
  snprintf(m->run_dir, sizeof m->run_dir, "%s", run_dir);
  char path[2200];
  snprintf(path, sizeof path, "%s/manifest.jsonl", run_dir);
  char *data;
  size_t len;
  int rc = dpo_read_file(path, STUDIES_MANIFEST_MAX_BYTES, &data, &len, err);
  if (rc != DPO_OK) return rc;
  dpo_sha256_hex(data, len, m->manifest_sha256);
  int cap = 0;
  int line = 0;
  char *p = data;
  char *end = data + len;
  while (rc == DPO_OK && p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *line_end = nl ? nl : end;
    line++;
    size_t n = (size_t)(line_end - p);
    if (n > 0 && p[n - 1] == '\r') n--;
    char where[2300];
    snprintf(where, sizeof where, "%s:%d", path, line);
    int blank = 1;
    for (size_t i = 0; i < n; i++) blank &= p[i] == ' ' || p[i] == '\t';
    if (!blank) {
      if (m->n_entries == cap) {
        cap = cap ? cap * 2 : 64;
        studies_manifest_entry *grown = realloc(m->entries, sizeof *grown * (size_t)cap);
        if (!grown) {
          rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
          break;
        }
        m->entries = grown;
      }
      studies_manifest_entry *e = &m->entries[m->n_entries++];
      memset(e, 0, sizeof *e);
      e->line = line;
      json_t *obj = dpo_json_parse(p, n, where, err);
      if (!obj) {
        rc = DPO_ERR_DATA;
        break;
      }
      rc = parse_entry(obj, e, where, err);
      json_decref(obj);
    }
    p = nl ? nl + 1 : end;
  }
  free(data);
  if (rc == DPO_OK && m->n_entries == 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: no images listed", path);
  if (rc == DPO_OK) {
    qsort(m->entries, (size_t)m->n_entries, sizeof *m->entries, compare_entries);
    for (int i = 1; i < m->n_entries && rc == DPO_OK; i++)
      if (same_key(&m->entries[i - 1], &m->entries[i]))
        rc = dpo_fail(err, DPO_ERR_DATA, "%s:%d: duplicate of line %d (prompt set %s, prompt id %s, seed %lld, image %lld)",
                      path, m->entries[i].line, m->entries[i - 1].line, m->entries[i].prompt_set,
                      m->entries[i].prompt_id, (long long)m->entries[i].seed, (long long)m->entries[i].image_index);
  }
  if (rc != DPO_OK) studies_manifest_free(m);
  return rc;
}

void studies_manifest_free(studies_manifest *m) {
  for (int i = 0; i < m->n_entries; i++) {
    studies_manifest_entry *e = &m->entries[i];
    free(e->prompt_set);
    free(e->prompt_id);
    free(e->prompt);
    free(e->category);
    free(e->file);
    free(e->sha256);
    free(e->model);
    free(e->settings_json);
    free(e->source_image);
  }
  free(m->entries);
  m->entries = NULL;
  m->n_entries = 0;
}
