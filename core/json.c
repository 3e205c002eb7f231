#include "core/core.h"

#include <stdlib.h>
#include <string.h>

json_t *dpo_json_parse(const char *text, size_t len, const char *where, dpo_error *err) {
  json_error_t jerr;
  json_t *value = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  if (!value)
    dpo_fail(err, DPO_ERR_DATA, "%s:%d:%d: invalid JSON (byte %d): %s", where, jerr.line, jerr.column,
             jerr.position, jerr.text);
  return value;
}

json_t *dpo_json_load_file(const char *path, size_t max_bytes, dpo_error *err) {
  char *data;
  size_t len;
  if (dpo_read_file(path, max_bytes, &data, &len, err)) return NULL;
  json_t *value = dpo_json_parse(data, len, path, err);
  free(data);
  return value;
}

static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
  }
  return "unknown";
}

/* Looks the key up; returns NULL (and DPO_OK in *rc) when absent and optional. */
static const json_t *member(const json_t *obj, const char *key, int optional, const char *where,
                            dpo_error *err, int *rc) {
  *rc = DPO_OK;
  if (!json_is_object(obj)) {
    *rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object, got %s", where,
                   obj ? json_type_name(obj) : "nothing");
    return NULL;
  }
  const json_t *v = json_object_get(obj, key);
  if (!v || (optional && json_is_null(v))) {
    if (!optional) *rc = dpo_fail(err, DPO_ERR_DATA, "%s: missing key \"%s\"", where, key);
    return NULL;
  }
  return v;
}

static int wrong_type(const json_t *v, const char *key, const char *expected, const char *where, dpo_error *err) {
  return dpo_fail(err, DPO_ERR_DATA, "%s: key \"%s\": expected %s, got %s", where, key, expected,
                  json_type_name(v));
}

static int get_string(const json_t *obj, const char *key, const char **out, int optional, const char *where, dpo_error *err) {
  int rc;
  const json_t *v = member(obj, key, optional, where, err, &rc);
  if (!v) return rc;
  if (!json_is_string(v)) return wrong_type(v, key, "a string", where, err);
  *out = json_string_value(v);
  return DPO_OK;
}

static int get_int(const json_t *obj, const char *key, int64_t *out, int optional, const char *where, dpo_error *err) {
  int rc;
  const json_t *v = member(obj, key, optional, where, err, &rc);
  if (!v) return rc;
  if (!json_is_integer(v)) return wrong_type(v, key, "an integer", where, err);
  *out = (int64_t)json_integer_value(v);
  return DPO_OK;
}

static int get_number(const json_t *obj, const char *key, double *out, int optional, const char *where, dpo_error *err) {
  int rc;
  const json_t *v = member(obj, key, optional, where, err, &rc);
  if (!v) return rc;
  if (!json_is_number(v)) return wrong_type(v, key, "a number", where, err);
  *out = json_number_value(v);
  return DPO_OK;
}

static int get_bool(const json_t *obj, const char *key, int *out, int optional, const char *where, dpo_error *err) {
  int rc;
  const json_t *v = member(obj, key, optional, where, err, &rc);
  if (!v) return rc;
  if (!json_is_boolean(v)) return wrong_type(v, key, "true or false", where, err);
  *out = json_is_true(v);
  return DPO_OK;
}

int dpo_json_get_string(const json_t *o, const char *k, const char **out, const char *w, dpo_error *e) { return get_string(o, k, out, 0, w, e); }
int dpo_json_get_int(const json_t *o, const char *k, int64_t *out, const char *w, dpo_error *e) { return get_int(o, k, out, 0, w, e); }
int dpo_json_get_number(const json_t *o, const char *k, double *out, const char *w, dpo_error *e) { return get_number(o, k, out, 0, w, e); }
int dpo_json_get_bool(const json_t *o, const char *k, int *out, const char *w, dpo_error *e) { return get_bool(o, k, out, 0, w, e); }
int dpo_json_get_string_opt(const json_t *o, const char *k, const char **out, const char *w, dpo_error *e) { return get_string(o, k, out, 1, w, e); }
int dpo_json_get_int_opt(const json_t *o, const char *k, int64_t *out, const char *w, dpo_error *e) { return get_int(o, k, out, 1, w, e); }
int dpo_json_get_number_opt(const json_t *o, const char *k, double *out, const char *w, dpo_error *e) { return get_number(o, k, out, 1, w, e); }
int dpo_json_get_bool_opt(const json_t *o, const char *k, int *out, const char *w, dpo_error *e) { return get_bool(o, k, out, 1, w, e); }

int dpo_json_write_file(const char *path, const json_t *value, dpo_error *err) {
  char *text = json_dumps(value, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
  if (!text) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot serialise JSON", path);
  size_t n = strlen(text);
  dpo_atomic_file af;
  int rc = dpo_atomic_open(&af, path, err);
  if (rc == DPO_OK) {
    if (fwrite(text, 1, n, af.fp) != n || fputc('\n', af.fp) == EOF) {
      dpo_atomic_abort(&af);
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: write failed", path);
    } else {
      rc = dpo_atomic_commit(&af, err);
    }
  }
  free(text);
  return rc;
}
