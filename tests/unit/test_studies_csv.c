/* The RFC 4180 reader and writer of the studies library. */
#include <stdlib.h>
#include <string.h>

#include "studies/studies.h"
#include "tests/test.h"

static int parse(const char *text, studies_csv *csv, dpo_error *err) {
  return studies_csv_parse(text, strlen(text), "t.csv", csv, err);
}

static void test_plain_and_crlf(void) {
  studies_csv csv;
  dpo_error err;
  CHECK_INT(parse("a,b,c\r\n1,,3\r\n", &csv, &err), DPO_OK);
  CHECK_INT(csv.n_rows, 2);
  CHECK_INT(csv.n_fields, 3);
  CHECK_STR(csv.rows[1][0], "1");
  CHECK_STR(csv.rows[1][1], "");
  CHECK_STR(csv.rows[1][2], "3");
  CHECK_INT(studies_csv_column(&csv, "c"), 2);
  CHECK_INT(studies_csv_column(&csv, "d"), -1);
  studies_csv_free(&csv);
  /* No final newline, LF only. */
  CHECK_INT(parse("a,b\n1,2", &csv, &err), DPO_OK);
  CHECK_INT(csv.n_rows, 2);
  CHECK_STR(csv.rows[1][1], "2");
  studies_csv_free(&csv);
}

static void test_bom_quotes_newlines(void) {
  studies_csv csv;
  dpo_error err;
  const char *text = "\xEF\xBB\xBFHITId,Input.prompt\r\nH1,\"a cat, \"\"quoted\"\"\r\non two lines\"\r\nH2,x\r\n";
  CHECK_INT(parse(text, &csv, &err), DPO_OK);
  CHECK_STR(csv.rows[0][0], "HITId");   /* the BOM is not part of the first name */
  CHECK_STR(csv.rows[1][1], "a cat, \"quoted\"\r\non two lines");
  CHECK_INT(csv.row_lines[1], 2);
  CHECK_INT(csv.row_lines[2], 4);       /* the quoted newline moved it down a line */
  studies_csv_free(&csv);
  /* Empty lines are skipped, including a last one. */
  CHECK_INT(parse("x\n\n1\n\n", &csv, &err), DPO_OK);
  CHECK_INT(csv.n_rows, 2);
  CHECK_INT(csv.row_lines[1], 3);
  studies_csv_free(&csv);
}

static void test_refusals(void) {
  studies_csv csv;
  dpo_error err;
  CHECK_INT(parse("a,b\n\"open,1\n", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "t.csv: line 2: quoted field never closed");
  CHECK_INT(parse("a,b\n1,2,3\n", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "t.csv: row 2 (line 2): 3 fields, the header has 2");
  CHECK_INT(parse("a,b\n1\n", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "row 2 (line 2): 1 fields");
  CHECK_INT(parse("a,b\nx\"y,2\n", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "line 2: quote inside an unquoted field");
  CHECK_INT(parse("a,b\n\"x\"y,2\n", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "line 2: unexpected character after a closing quote");
  CHECK_INT(parse("", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "empty file");
  CHECK_INT(studies_csv_parse("a,\0b\n", 5, "t.csv", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "NUL byte");
  /* A field over the size limit. */
  size_t big = STUDIES_CSV_MAX_FIELD_BYTES + 10;
  char *text = malloc(big + 8);
  memcpy(text, "a\n", 2);
  memset(text + 2, 'x', big);
  text[big + 2] = '\0';
  CHECK_INT(studies_csv_parse(text, big + 2, "t.csv", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "field longer than");
  free(text);
  /* Too many fields in a record. */
  size_t n = 2 * (STUDIES_CSV_MAX_FIELDS + 5);
  text = malloc(n + 1);
  for (size_t i = 0; i < n; i += 2) {
    text[i] = 'x';
    text[i + 1] = ',';
  }
  text[n - 1] = '\n';
  CHECK_INT(studies_csv_parse(text, n, "t.csv", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "more than");
  free(text);
  /* The file size limit, checked by the loader before reading. */
  CHECK_INT(studies_csv_parse("a", (size_t)STUDIES_CSV_MAX_BYTES + 1, "t.csv", &csv, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "larger than the limit");
}

static void test_writer_round_trip(void) {
  const char *fields[] = {"plain", "with,comma", "with \"quote\"", "two\r\nlines", " edge ", "", "\xEF\xBB\xBF\x62om"};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  studies_csv_write_row(f, fields, 7);
  studies_csv_write_row(f, fields, 7);
  fclose(f);
  CHECK(strstr(buf, "plain,\"with,comma\",\"with \"\"quote\"\"\",\"two\r\nlines\",\" edge \",,") == buf);
  studies_csv csv;
  dpo_error err;
  CHECK_INT(studies_csv_parse(buf, len, "mem", &csv, &err), DPO_OK);
  CHECK_INT(csv.n_rows, 2);
  for (int r = 0; r < csv.n_rows; r++)
    for (int k = 0; k < 7; k++) CHECK_STR(csv.rows[r][k], fields[k]);
  studies_csv_free(&csv);
  free(buf);
}

int main(void) {
  test_plain_and_crlf();
  test_bom_quotes_newlines();
  test_refusals();
  test_writer_round_trip();
  return test_finish();
}
