/* RFC 4180 CSV: the reader for MTurk results files and the writer for batch
 * files. The reader makes one pass over the bytes; unescaped fields never
 * grow, so they all fit in one arena as large as the input. */
#include <stdlib.h>
#include <string.h>

#include "studies/studies.h"

typedef struct {
  const char *data;
  size_t len;
  size_t pos;
  int line;           /* current line, 1-based */
  const char *where;
  char *arena;
  size_t arena_used;
  char **fields;      /* fields of the record being read */
  int n_fields;
  dpo_error *err;
} csv_reader;

/* Reads one field starting at r->pos into the arena. Sets *end_of_record when
 * the field ended a record (newline or end of input). */
static int read_field(csv_reader *r, int *end_of_record) {
  char *out = r->arena + r->arena_used;
  size_t n = 0;
  int field_line = r->line;
  if (r->pos < r->len && r->data[r->pos] == '"') {
    r->pos++;
    for (;;) {
      if (r->pos >= r->len)
        return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: quoted field never closed (expected '\"')",
                        r->where, field_line);
      char c = r->data[r->pos++];
      if (c == '"') {
        if (r->pos < r->len && r->data[r->pos] == '"') {
          r->pos++;
        } else {
          break;
        }
      }
      if (c == '\n') r->line++;
      if (c == '\0') return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: NUL byte in a field", r->where, r->line);
      if (n >= STUDIES_CSV_MAX_FIELD_BYTES)
        return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: field longer than %u bytes", r->where,
                        field_line, STUDIES_CSV_MAX_FIELD_BYTES);
      out[n++] = c;
    }
    /* After a closing quote only a separator or a line end may follow. */
    if (r->pos < r->len) {
      char c = r->data[r->pos];
      int ok = c == ',' || c == '\n' || (c == '\r' && r->pos + 1 < r->len && r->data[r->pos + 1] == '\n') ||
               (c == '\r' && r->pos + 1 == r->len);
      if (!ok)
        return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: unexpected character after a closing quote (expected ',' or a line end)",
                        r->where, r->line);
    }
  } else {
    while (r->pos < r->len) {
      char c = r->data[r->pos];
      if (c == ',' || c == '\n') break;
      if (c == '\r' && (r->pos + 1 == r->len || r->data[r->pos + 1] == '\n')) break;
      if (c == '"')
        return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: quote inside an unquoted field (quote the whole field)",
                        r->where, r->line);
      if (c == '\0') return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: NUL byte in a field", r->where, r->line);
      if (n >= STUDIES_CSV_MAX_FIELD_BYTES)
        return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: field longer than %u bytes", r->where, r->line,
                        STUDIES_CSV_MAX_FIELD_BYTES);
      out[n++] = c;
      r->pos++;
    }
  }
  out[n] = '\0';
  r->arena_used += n + 1;
  if (r->n_fields >= STUDIES_CSV_MAX_FIELDS)
    return dpo_fail(r->err, DPO_ERR_DATA, "%s: line %d: more than %d fields in a record", r->where, r->line,
                    STUDIES_CSV_MAX_FIELDS);
  r->fields[r->n_fields++] = out;
  *end_of_record = 1;
  if (r->pos >= r->len) return DPO_OK;
  char c = r->data[r->pos];
  if (c == ',') {
    r->pos++;
    *end_of_record = 0;
    return DPO_OK;
  }
  if (c == '\r') r->pos++;
  if (r->pos < r->len && r->data[r->pos] == '\n') r->pos++;
  r->line++;
  return DPO_OK;
}

static int append_row(studies_csv *csv, int *cap, char **fields, int n, int line, dpo_error *err) {
  if (csv->n_rows >= *cap) {
    int new_cap = *cap ? *cap * 2 : 64;
    char ***rows = realloc(csv->rows, sizeof *rows * (size_t)new_cap);
    if (!rows) return dpo_fail(err, DPO_ERR_DATA, "out of memory reading CSV");
    csv->rows = rows;
    int *lines = realloc(csv->row_lines, sizeof *lines * (size_t)new_cap);
    if (!lines) return dpo_fail(err, DPO_ERR_DATA, "out of memory reading CSV");
    csv->row_lines = lines;
    *cap = new_cap;
  }
  char **copy = malloc(sizeof *copy * (size_t)n);
  if (!copy) return dpo_fail(err, DPO_ERR_DATA, "out of memory reading CSV");
  memcpy(copy, fields, sizeof *copy * (size_t)n);
  csv->rows[csv->n_rows] = copy;
  csv->row_lines[csv->n_rows] = line;
  csv->n_rows++;
  return DPO_OK;
}

int studies_csv_parse(const char *data, size_t len, const char *where, studies_csv *csv, dpo_error *err) {
  memset(csv, 0, sizeof *csv);
  if (len > STUDIES_CSV_MAX_BYTES)
    return dpo_fail(err, DPO_ERR_DATA, "%s: %zu bytes, larger than the limit of %u bytes", where, len,
                    STUDIES_CSV_MAX_BYTES);
  csv_reader r = {.data = data, .len = len, .line = 1, .where = where, .err = err};
  if (len >= 3 && (unsigned char)data[0] == 0xEF && (unsigned char)data[1] == 0xBB && (unsigned char)data[2] == 0xBF)
    r.pos = 3;
  /* Each field costs at most its bytes plus a NUL, and a field needs at
   * least one byte of input (a separator or line end) except the last. */
  r.arena = malloc(len + len + 2);
  r.fields = malloc(sizeof *r.fields * STUDIES_CSV_MAX_FIELDS);
  if (!r.arena || !r.fields) {
    free(r.arena);
    free(r.fields);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  }
  csv->arena = r.arena;
  int cap = 0;
  int rc = DPO_OK;
  while (rc == DPO_OK && r.pos < r.len) {
    int record_line = r.line;
    r.n_fields = 0;
    int end = 0;
    while (rc == DPO_OK && !end) rc = read_field(&r, &end);
    if (rc != DPO_OK) break;
    if (r.n_fields == 1 && r.fields[0][0] == '\0') continue;   /* an empty line */
    if (csv->n_rows == 0) {
      csv->n_fields = r.n_fields;
    } else if (r.n_fields != csv->n_fields) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): %d fields, the header has %d", where, csv->n_rows + 1,
                    record_line, r.n_fields, csv->n_fields);
      break;
    }
    if (csv->n_rows > STUDIES_CSV_MAX_ROWS) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: more than %d rows", where, STUDIES_CSV_MAX_ROWS);
      break;
    }
    rc = append_row(csv, &cap, r.fields, r.n_fields, record_line, err);
  }
  free(r.fields);
  if (rc == DPO_OK && csv->n_rows == 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: empty file (expected a header row)", where);
  if (rc != DPO_OK) studies_csv_free(csv);
  return rc;
}

int studies_csv_load(const char *path, studies_csv *csv, dpo_error *err) {
  char *data;
  size_t len;
  memset(csv, 0, sizeof *csv);
  int rc = dpo_read_file(path, STUDIES_CSV_MAX_BYTES, &data, &len, err);
  if (rc != DPO_OK) return rc;
  rc = studies_csv_parse(data, len, path, csv, err);
  free(data);
  return rc;
}

void studies_csv_free(studies_csv *csv) {
  for (int i = 0; i < csv->n_rows; i++) free(csv->rows[i]);
  free(csv->rows);
  free(csv->row_lines);
  free(csv->arena);
  memset(csv, 0, sizeof *csv);
}

int studies_csv_column(const studies_csv *csv, const char *name) {
  if (csv->n_rows == 0) return -1;
  for (int i = 0; i < csv->n_fields; i++)
    if (strcmp(csv->rows[0][i], name) == 0) return i;
  return -1;
}

void studies_csv_write_field(FILE *f, const char *text) {
  size_t n = strlen(text);
  /* A leading byte-order mark is quoted so that a reader does not drop it. */
  int quote = n > 0 && (text[0] == ' ' || text[n - 1] == ' ' || (unsigned char)text[0] == 0xEF);
  for (size_t i = 0; i < n && !quote; i++)
    if (text[i] == ',' || text[i] == '"' || text[i] == '\r' || text[i] == '\n') quote = 1;
  if (!quote) {
    fputs(text, f);
    return;
  }
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    if (text[i] == '"') fputc('"', f);
    fputc(text[i], f);
  }
  fputc('"', f);
}

void studies_csv_write_row(FILE *f, const char *const *fields, int n) {
  for (int i = 0; i < n; i++) {
    if (i) fputc(',', f);
    studies_csv_write_field(f, fields[i] ? fields[i] : "");
  }
  fputs("\r\n", f);
}
