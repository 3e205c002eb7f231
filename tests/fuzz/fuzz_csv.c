/* Fuzz target: the RFC 4180 reader of MTurk results files. Whatever it
 * accepts must be a rectangle of NUL-terminated fields; writing the fields
 * back and reading them again must give the same fields. */
#include <stdlib.h>
#include <string.h>

#include "studies/studies.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const studies_csv *csv) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return;
  for (int r = 0; r < csv->n_rows; r++) studies_csv_write_row(f, (const char *const *)csv->rows[r], csv->n_fields);
  fclose(f);
  studies_csv again;
  dpo_error err;
  if (studies_csv_parse(buf, len, "round-trip", &again, &err) != DPO_OK) abort();
  int rows_seen = 0;
  for (int r = 0; r < csv->n_rows; r++) {
    int empty_line = csv->n_fields == 1 && csv->rows[r][0][0] == '\0';
    if (empty_line) continue;   /* a lone empty field is written as an empty line, which readers skip */
    if (rows_seen >= again.n_rows || again.n_fields != csv->n_fields) abort();
    for (int k = 0; k < csv->n_fields; k++)
      if (strcmp(csv->rows[r][k], again.rows[rows_seen][k]) != 0) abort();
    rows_seen++;
  }
  if (rows_seen != again.n_rows) abort();
  studies_csv_free(&again);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  studies_csv csv;
  dpo_error err;
  if (studies_csv_parse((const char *)data, size, "fuzz.csv", &csv, &err) != DPO_OK) return 0;
  for (int r = 0; r < csv.n_rows; r++)
    for (int k = 0; k < csv.n_fields; k++)
      if (strlen(csv.rows[r][k]) > size) abort();
  check_round_trip(&csv);
  studies_csv_free(&csv);
  return 0;
}
