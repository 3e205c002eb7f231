/* `dpo study export --format mturk`: the batch file, the Crowd HTML layout,
 * and the images to upload, named by content hash so that no URL or file
 * name tells a rater which model made an image. */
#include <stdlib.h>
#include <string.h>

#include "studies/internal.h"

/* Largest image copied (a generated image is far smaller). */
#define EXPORT_MAX_IMAGE_BYTES (64u * 1024u * 1024u)

static int check_base_url(const char *url, dpo_error *err) {
  if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
    return dpo_fail(err, DPO_ERR_USAGE, "--image-base-url: expected an http:// or https:// URL, got \"%s\"", url);
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == '"' || *p == '<' || *p == '>' || *p == '\'' || *p == '\\')
      return dpo_fail(err, DPO_ERR_USAGE, "--image-base-url: character '%c' is not allowed in the URL", *p);
  return DPO_OK;
}

static const char *image_ext(const char *format) { return strcmp(format, "png") == 0 ? "png" : "jpg"; }

/* Copies a registered image to DIR/images/<sha256>.<ext>, checking that the
 * bytes still have the hash they were registered with. */
static int copy_image(const char *out_dir, const char *sha, const char *format, const char *src, int *copied,
                      dpo_error *err) {
  char dst[4400];
  snprintf(dst, sizeof dst, "%s/images/%s.%s", out_dir, sha, image_ext(format));
  char have[65];
  dpo_error ignored;
  if (dpo_sha256_file(dst, have, &ignored) == DPO_OK && strcmp(have, sha) == 0) return DPO_OK;
  char *data;
  size_t len;
  if (dpo_read_file(src, EXPORT_MAX_IMAGE_BYTES, &data, &len, err)) return DPO_ERR_DATA;
  dpo_sha256_hex(data, len, have);
  int rc = DPO_OK;
  if (strcmp(have, sha) != 0)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: changed since the study was created (content hash %s, registered %s)", src,
                  have, sha);
  if (rc == DPO_OK) rc = dpo_atomic_write(dst, data, len, err);
  free(data);
  if (rc == DPO_OK) (*copied)++;
  return rc;
}

static void write_choice(FILE *f, const char *key, const char *value, const char *label) {
  fprintf(f, "        <label><input type=\"radio\" name=\"%s\" value=\"%s\" required> %s</label>\n", key, value, label);
}

static int write_layout(const char *path, const study_info *study, int edit, dpo_error *err) {
  dpo_atomic_file af;
  if (dpo_atomic_open(&af, path, err)) return DPO_ERR_DATA;
  FILE *f = af.fp;
  fprintf(f,
          "<!-- dpo study export: Crowd HTML layout for study items. ${...} are filled from batch.csv.\n"
          "     Answers come back as Answer.<question> = left | right%s. -->\n"
          "<script src=\"https://assets.crowd.aws/crowd-html-elements.js\"></script>\n"
          "<crowd-form answer-format=\"flatten-objects\">\n"
          "  <style>\n"
          "    .pair { display: flex; gap: 16px; }\n"
          "    .pair figure { margin: 0; flex: 1; text-align: center; }\n"
          "    .pair img, .source img { max-width: 100%%; max-height: 512px; }\n"
          "    fieldset { margin: 12px 0; }\n"
          "    .prompt { font-size: 1.2em; }\n"
          "  </style>\n"
          "  <p class=\"prompt\"><strong>%s</strong> ${prompt}</p>\n",
          study->allow_tie ? " | tie" : "", edit ? "Edit instruction:" : "Prompt:");
  if (edit)
    fprintf(f, "  <figure class=\"source\"><img src=\"${image_source_url}\" alt=\"original image\">"
               "<figcaption>Original image</figcaption></figure>\n");
  fprintf(f,
          "  <div class=\"pair\">\n"
          "    <figure><img src=\"${image_left_url}\" alt=\"left image\"><figcaption>Left</figcaption></figure>\n"
          "    <figure><img src=\"${image_right_url}\" alt=\"right image\"><figcaption>Right</figcaption></figure>\n"
          "  </div>\n");
  for (int i = 0; i < study->n_questions; i++) {
    const char *key = study->questions[i].key;
    char *text = studies_html_escape(studies_question_text(key));
    fprintf(f, "  <fieldset>\n    <legend>%s</legend>\n", text ? text : key);
    free(text);
    write_choice(f, key, "left", "Left");
    write_choice(f, key, "right", "Right");
    if (study->allow_tie) write_choice(f, key, "tie", "No preference");
    fprintf(f, "  </fieldset>\n");
  }
  fprintf(f, "</crowd-form>\n");
  return dpo_atomic_commit(&af, err);
}

int studies_export_mturk(studies_db *db, const char *study_name, const char *image_base_url, const char *out_dir,
                         studies_export_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  study_info study;
  if (check_base_url(image_base_url, err)) return DPO_ERR_USAGE;
  if (db_find_study(db, study_name, &study, err)) return DPO_ERR_DATA;
  int edit = study.n_questions == 1 && strcmp(study.questions[0].key, "edit") == 0;
  char path[4400];
  snprintf(path, sizeof path, "%s/images", out_dir);
  if (dpo_mkdir_p(path, err)) return DPO_ERR_DATA;

  size_t base_len = strlen(image_base_url);
  while (base_len > 0 && image_base_url[base_len - 1] == '/') base_len--;

  sqlite3_stmt *stmt;
  const char *sql =
      "SELECT i.public_id, i.prompt, i.a_side, ia.sha256, ia.format, ia.path, ib.sha256, ib.format, ib.path,\n"
      "       isrc.sha256, isrc.format, isrc.path\n"
      "FROM items i JOIN images ia ON ia.id = i.image_a JOIN images ib ON ib.id = i.image_b\n"
      "LEFT JOIN images isrc ON isrc.id = i.image_source WHERE i.study_id = ?1 ORDER BY i.position";
  if (db_prepare(db, sql, &stmt, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, study.id);
  snprintf(path, sizeof path, "%s/batch.csv", out_dir);
  dpo_atomic_file af;
  if (dpo_atomic_open(&af, path, err)) {
    sqlite3_finalize(stmt);
    return DPO_ERR_DATA;
  }
  const char *header[] = {"item_id", "prompt", "image_left_url", "image_right_url", "image_source_url"};
  studies_csv_write_row(af.fp, header, edit ? 5 : 4);
  int rc = DPO_OK, step = SQLITE_DONE;
  while (rc == DPO_OK && (step = sqlite3_step(stmt)) == SQLITE_ROW) {
    int a_left = strcmp((const char *)sqlite3_column_text(stmt, 2), "left") == 0;
    char urls[3][600];
    for (int k = 0; k < 3; k++) {
      int col = 3 + 3 * k;
      urls[k][0] = '\0';
      if (sqlite3_column_type(stmt, col) == SQLITE_NULL) continue;
      const char *sha = (const char *)sqlite3_column_text(stmt, col);
      const char *format = (const char *)sqlite3_column_text(stmt, col + 1);
      const char *src = (const char *)sqlite3_column_text(stmt, col + 2);
      snprintf(urls[k], sizeof urls[k], "%.*s/%s.%s", (int)base_len, image_base_url, sha, image_ext(format));
      rc = copy_image(out_dir, sha, format, src, &res->n_images, err);
      if (rc) break;
    }
    if (rc) break;
    const char *row[5] = {(const char *)sqlite3_column_text(stmt, 0), (const char *)sqlite3_column_text(stmt, 1),
                          a_left ? urls[0] : urls[1], a_left ? urls[1] : urls[0], urls[2]};
    studies_csv_write_row(af.fp, row, edit ? 5 : 4);
    res->n_rows++;
  }
  if (rc == DPO_OK && step != SQLITE_DONE) rc = db_fail(db, err, "reading items");
  sqlite3_finalize(stmt);
  if (rc == DPO_OK) rc = dpo_atomic_commit(&af, err);
  else dpo_atomic_abort(&af);
  if (rc == DPO_OK) {
    snprintf(path, sizeof path, "%s/layout.html", out_dir);
    rc = write_layout(path, &study, edit, err);
  }
  return rc;
}
