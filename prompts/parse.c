/* User prompt files (.txt, .tsv, .jsonl) parsed from memory. The bytes are
 * untrusted: every read is bounded by the length given, nothing relies on a
 * terminating NUL, and each failure names the line and what was expected. */
#include <stdlib.h>
#include <string.h>

#include "prompts/prompts_internal.h"

/* ------------------------------------------------------------- lines */

typedef struct {
  const char *data;
  size_t len;
  size_t pos;
  int number;   /* of the line last returned, 1-based */
} line_reader;

typedef struct {
  const char *p;
  size_t len;
  int number;
} text_line;

static void line_reader_init(line_reader *r, const char *data, size_t len) {
  r->data = data;
  r->len = len;
  r->pos = 0;
  r->number = 0;
  /* A UTF-8 byte order mark is an encoding signature, not text. */
  if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) r->pos = 3;
}

/* The next line without its LF (and without a CR before it); 0 at the end. */
static int next_line(line_reader *r, text_line *out) {
  if (r->pos >= r->len) return 0;
  const char *start = r->data + r->pos;
  size_t rest = r->len - r->pos;
  const char *nl = memchr(start, '\n', rest);
  size_t n = nl ? (size_t)(nl - start) : rest;
  r->pos += nl ? n + 1 : n;
  if (n > 0 && start[n - 1] == '\r') n--;
  out->p = start;
  out->len = n;
  out->number = ++r->number;
  return 1;
}

static int is_blank(const text_line *l) {
  for (size_t i = 0; i < l->len; i++)
    if (l->p[i] != ' ' && l->p[i] != '\t') return 0;
  return 1;
}

/* --------------------------------------------------------- encoding */

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 if it is not a
 * valid, shortest-form encoding of a scalar value. */
static size_t utf8_sequence_length(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;   /* bounds of the second byte */
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) { len = 3; lo = 0xA0; }          /* no overlong forms */
  else if (c >= 0xE1 && c <= 0xEC) len = 3;
  else if (c == 0xED) { len = 3; hi = 0x9F; }          /* no surrogates */
  else if (c >= 0xEE && c <= 0xEF) len = 3;
  else if (c == 0xF0) { len = 4; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else if (c == 0xF4) { len = 4; hi = 0x8F; }          /* nothing past U+10FFFF */
  else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

static int line_of_offset(const char *data, size_t offset) {
  int line = 1;
  for (size_t i = 0; i < offset; i++)
    if (data[i] == '\n') line++;
  return line;
}

/* The whole file must be UTF-8 text without NUL bytes. */
static int check_encoding(const char *data, size_t len, const char *where, dpo_error *err) {
  const unsigned char *s = (const unsigned char *)data;
  size_t i = 0;
  while (i < len) {
    if (s[i] == 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s:%d: NUL byte at byte offset %zu, expected UTF-8 text", where,
                      line_of_offset(data, i), i);
    size_t n = utf8_sequence_length(s + i, len - i);
    if (n == 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s:%d: invalid UTF-8 at byte offset %zu (byte 0x%02x), expected UTF-8 text",
                      where, line_of_offset(data, i), i, s[i]);
    i += n;
  }
  return DPO_OK;
}

static char *line_id(const char *name, int line) {
  char buf[400];
  snprintf(buf, sizeof buf, "%s:%d", name, line);
  return prompts_strndup(buf, strlen(buf));
}

/* ------------------------------------------------------------- .txt */

static int parse_txt(const char *data, size_t len, const char *where, const char *name, prompt_set *set,
                     dpo_error *err) {
  line_reader r;
  text_line l;
  line_reader_init(&r, data, len);
  while (next_line(&r, &l)) {
    if (is_blank(&l)) continue;
    if (prompts_check_text(l.p, l.len, where, l.number, "prompt", err)) return DPO_ERR_DATA;
    prompt p = {.id = line_id(name, l.number), .text = prompts_strndup(l.p, l.len),
                .category = prompts_strndup("", 0), .line = l.number};
    if (prompts_set_push(set, &p, err)) return DPO_ERR_DATA;
  }
  return DPO_OK;
}

/* ------------------------------------------------------------- .tsv */

#define TSV_MAX_COLUMNS 256

typedef struct {
  const char *p;
  size_t len;
} field;

/* Splits a line on tabs into at most max fields; returns the number of
 * fields the line has (which may be more than max). */
static int split_tabs(const text_line *l, field *fields, int max) {
  int n = 0;
  size_t start = 0;
  for (size_t i = 0; i <= l->len; i++) {
    if (i < l->len && l->p[i] != '\t') continue;
    if (n < max) fields[n] = (field){l->p + start, i - start};
    n++;
    start = i + 1;
  }
  return n;
}

static int field_is(const field *f, const char *name) {
  size_t n = strlen(name);
  return f->len == n && memcmp(f->p, name, n) == 0;
}

typedef struct {
  field names[TSV_MAX_COLUMNS];
  int n;
  int prompt, category, id;   /* column indices, -1 when absent */
  int line;
} tsv_header;

/* Finds the column called `a` or `b`; -1 if none, -2 if both. */
static int find_column(const tsv_header *h, const char *a, const char *b) {
  int found = -1;
  for (int i = 0; i < h->n; i++) {
    if (field_is(&h->names[i], a) || (b && field_is(&h->names[i], b))) {
      if (found >= 0) return -2;
      found = i;
    }
  }
  return found;
}

static int read_tsv_header(const text_line *l, const char *where, tsv_header *h, dpo_error *err) {
  h->line = l->number;
  h->n = split_tabs(l, h->names, TSV_MAX_COLUMNS);
  if (h->n > TSV_MAX_COLUMNS)
    return dpo_fail(err, DPO_ERR_DATA, "%s:%d: header has %d columns, more than the limit of %d", where, l->number,
                    h->n, TSV_MAX_COLUMNS);
  for (int i = 0; i < h->n; i++) {
    if (h->names[i].len == 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s:%d: header column %d has an empty name, expected a column name", where,
                      l->number, i + 1);
    for (int j = 0; j < i; j++)
      if (h->names[j].len == h->names[i].len && memcmp(h->names[j].p, h->names[i].p, h->names[i].len) == 0)
        return dpo_fail(err, DPO_ERR_DATA, "%s:%d: header names column \"%.*s\" twice (columns %d and %d)", where,
                        l->number, (int)h->names[i].len, h->names[i].p, j + 1, i + 1);
  }
  h->prompt = find_column(h, "prompt", "Prompt");
  h->category = find_column(h, "category", "Category");
  h->id = find_column(h, "id", NULL);
  if (h->prompt == -1)
    return dpo_fail(err, DPO_ERR_DATA, "%s:%d: header has no \"prompt\" or \"Prompt\" column, expected one", where,
                    l->number);
  if (h->prompt == -2 || h->category == -2)
    return dpo_fail(err, DPO_ERR_DATA, "%s:%d: header has both \"%s\" and \"%s\" columns, expected one", where,
                    l->number, h->prompt == -2 ? "prompt" : "category", h->prompt == -2 ? "Prompt" : "Category");
  return DPO_OK;
}

static int tsv_row_to_prompt(const tsv_header *h, const field *f, const char *where, const char *name,
                             int ids_by_index, int row, int line, prompt *p, dpo_error *err) {
  const field *text = &f[h->prompt];
  if (prompts_check_text(text->p, text->len, where, line, "prompt", err)) return DPO_ERR_DATA;
  p->line = line;
  p->text = prompts_strndup(text->p, text->len);
  p->category = h->category >= 0 ? prompts_strndup(f[h->category].p, f[h->category].len) : prompts_strndup("", 0);
  if (h->id >= 0) {
    if (prompts_check_id(f[h->id].p, f[h->id].len, where, line, err)) return DPO_ERR_DATA;
    p->id = prompts_strndup(f[h->id].p, f[h->id].len);
  } else {
    p->id = line_id(name, ids_by_index ? row : line);
  }
  for (int c = 0; c < h->n; c++) {
    if (c == h->prompt || c == h->category || c == h->id) continue;
    if (prompts_add_extra(p, h->names[c].p, h->names[c].len, f[c].p, f[c].len, err)) return DPO_ERR_DATA;
  }
  return DPO_OK;
}

int prompts_parse_tsv(const char *data, size_t len, const char *where, const char *name, int ids_by_index,
                      prompt_set *set, dpo_error *err) {
  if (check_encoding(data, len, where, err)) return DPO_ERR_DATA;
  line_reader r;
  text_line l;
  line_reader_init(&r, data, len);
  tsv_header *h = calloc(1, sizeof *h);
  field *fields = malloc(sizeof(field) * TSV_MAX_COLUMNS);
  int rc = DPO_OK, have_header = 0, row = 0;
  if (!h || !fields) rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  while (rc == DPO_OK && next_line(&r, &l)) {
    if (l.len == 0) continue;
    if (!have_header) {
      rc = read_tsv_header(&l, where, h, err);
      have_header = 1;
      continue;
    }
    int n = split_tabs(&l, fields, TSV_MAX_COLUMNS);
    if (n != h->n) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s:%d: found %d tab-separated columns, expected %d as in the header (line %d)",
                    where, l.number, n, h->n, h->line);
      break;
    }
    prompt p = {0};
    rc = tsv_row_to_prompt(h, fields, where, name, ids_by_index, row, l.number, &p, err);
    if (rc == DPO_OK) rc = prompts_set_push(set, &p, err);
    else prompts_free_prompt(&p);
    row++;
  }
  if (rc == DPO_OK && !have_header)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: empty file, expected a header line with a \"prompt\" column", where);
  free(h);
  free(fields);
  return rc;
}

/* ----------------------------------------------------------- .jsonl */

static int json_string_member(json_t *obj, const char *key, const char **out, size_t *out_len, int optional,
                              const char *at, dpo_error *err) {
  int rc = optional ? dpo_json_get_string_opt(obj, key, out, at, err) : dpo_json_get_string(obj, key, out, at, err);
  if (rc == DPO_OK && *out) *out_len = json_string_length(json_object_get(obj, key));
  return rc;
}

static int jsonl_object_to_prompt(json_t *obj, const char *where, const char *name, int line, prompt *p,
                                  dpo_error *err) {
  char at[1200];
  snprintf(at, sizeof at, "%s:%d", where, line);
  const char *text = NULL, *id = NULL, *category = NULL;
  size_t text_len = 0, id_len = 0, category_len = 0;
  if (json_string_member(obj, "prompt", &text, &text_len, 0, at, err)) return DPO_ERR_DATA;
  if (json_string_member(obj, "id", &id, &id_len, 1, at, err)) return DPO_ERR_DATA;
  if (json_string_member(obj, "category", &category, &category_len, 1, at, err)) return DPO_ERR_DATA;
  if (prompts_check_text(text, text_len, where, line, "key \"prompt\"", err)) return DPO_ERR_DATA;
  if (category && memchr(category, '\0', category_len))
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"category\" contains a NUL character", at);
  if (id && prompts_check_id(id, id_len, where, line, err)) return DPO_ERR_DATA;
  p->line = line;
  p->text = prompts_strndup(text, text_len);
  p->category = prompts_strndup(category ? category : "", category ? category_len : 0);
  p->id = id ? prompts_strndup(id, id_len) : line_id(name, line);
  const char *key;
  json_t *value;
  json_object_foreach(obj, key, value) {
    if (!json_is_string(value) || !strcmp(key, "prompt") || !strcmp(key, "id") || !strcmp(key, "category"))
      continue;
    /* A NUL inside would silently cut the value short: keep what C sees. */
    const char *s = json_string_value(value);
    if (prompts_add_extra(p, key, strlen(key), s, strlen(s), err)) return DPO_ERR_DATA;
  }
  return DPO_OK;
}

static int parse_jsonl(const char *data, size_t len, const char *where, const char *name, prompt_set *set,
                       dpo_error *err) {
  line_reader r;
  text_line l;
  line_reader_init(&r, data, len);
  while (next_line(&r, &l)) {
    if (is_blank(&l)) continue;
    json_error_t jerr;
    json_t *obj = json_loadb(l.p, l.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!obj)
      return dpo_fail(err, DPO_ERR_DATA, "%s:%d:%d: invalid JSON: %s; expected one JSON object per line", where,
                      l.number, jerr.column, jerr.text);
    int rc = DPO_OK;
    prompt p = {0};
    if (!json_is_object(obj))
      rc = dpo_fail(err, DPO_ERR_DATA, "%s:%d: expected a JSON object with a \"prompt\" string", where, l.number);
    else
      rc = jsonl_object_to_prompt(obj, where, name, l.number, &p, err);
    json_decref(obj);
    if (rc == DPO_OK) rc = prompts_set_push(set, &p, err);
    else prompts_free_prompt(&p);
    if (rc) return rc;
  }
  return DPO_OK;
}

/* ------------------------------------------------------------ entry */

int prompt_set_parse(const char *data, size_t len, prompt_format format, const char *where, const char *name,
                     prompt_set *set, dpo_error *err) {
  memset(set, 0, sizeof *set);
  snprintf(set->name, sizeof set->name, "%s", name);
  snprintf(set->path, sizeof set->path, "%s", where);
  int rc;
  if (len > PROMPT_MAX_FILE_BYTES)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: %zu bytes, larger than the limit of %u bytes", where, len,
                  PROMPT_MAX_FILE_BYTES);
  else if (format == PROMPT_FORMAT_TSV)
    rc = prompts_parse_tsv(data, len, where, name, 0, set, err);
  else if ((rc = check_encoding(data, len, where, err)) != DPO_OK)
    ;
  else if (format == PROMPT_FORMAT_TXT)
    rc = parse_txt(data, len, where, name, set, err);
  else if (format == PROMPT_FORMAT_JSONL)
    rc = parse_jsonl(data, len, where, name, set, err);
  else
    rc = dpo_fail(err, DPO_ERR_USAGE, "%s: unknown prompt file format %d", where, (int)format);
  if (rc == DPO_OK) rc = prompts_set_finish(set, where, err);
  if (rc != DPO_OK) prompt_set_free(set);
  return rc;
}
