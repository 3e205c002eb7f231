/* MTurk results: `dpo study ingest` and `dpo study review`.
 *
 * The whole file is read and checked before the database is touched, and
 * then written in one transaction, so a file is either taken whole or not at
 * all. Rows are numbered as a spreadsheet shows them (the header is row 1);
 * the line is given too, since quoted fields may span lines. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "studies/internal.h"

static const char *const required_columns[] = {"HITId", "AssignmentId", "WorkerId", "AssignmentStatus",
                                                "WorkTimeInSeconds", "Input.item_id"};
enum { N_REQUIRED = (int)(sizeof required_columns / sizeof required_columns[0]) };
static const char *const sides[3] = {"left", "right", "tie"};

/* Where each question's answer is: a plain column (Answer.q1 = left), or one
 * checkbox column per side (crowd-radio-button: Answer.q1_left.on = true;
 * HELM's form Answer.q1.left.on is read too). -1 when absent. */
typedef struct {
  int plain;
  int on[3];
} answer_columns;

typedef struct {
  int col[N_REQUIRED];
  answer_columns answers[STUDIES_MAX_QUESTIONS];
} results_layout;

/* One checked row of the file. */
typedef struct {
  int row;                 /* spreadsheet row (header = 1) */
  int line;
  const char *hit_id;
  const char *assignment_id;
  const char *worker_id;
  const char *status;
  double work_seconds;
  int64_t item_id;         /* items.id */
  char a_side[8];
  int64_t side_seed;
  int is_gold;
  const char *shown[STUDIES_MAX_QUESTIONS];   /* left, right or tie */
  int duplicate_of;        /* index of an identical earlier row, or -1 */
} results_row;

static const char *c_status[] = {"Submitted", "Approved", "Rejected"};

static int find_answer_columns(const studies_csv *csv, const char *key, answer_columns *ac) {
  char name[64];
  snprintf(name, sizeof name, "Answer.%s", key);
  ac->plain = studies_csv_column(csv, name);
  int any = ac->plain >= 0;
  for (int s = 0; s < 3; s++) {
    snprintf(name, sizeof name, "Answer.%s_%s.on", key, sides[s]);
    ac->on[s] = studies_csv_column(csv, name);
    if (ac->on[s] < 0) {
      snprintf(name, sizeof name, "Answer.%s.%s.on", key, sides[s]);
      ac->on[s] = studies_csv_column(csv, name);
    }
    any |= ac->on[s] >= 0;
  }
  return any;
}

static int check_header(const studies_csv *csv, const char *where, const study_info *study, results_layout *layout,
                        dpo_error *err) {
  for (int i = 0; i < csv->n_fields; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(csv->rows[0][i], csv->rows[0][j]) == 0)
        return dpo_fail(err, DPO_ERR_DATA, "%s: row 1: wrong header: column \"%s\" appears twice", where,
                        csv->rows[0][i]);
  for (int k = 0; k < N_REQUIRED; k++) {
    layout->col[k] = studies_csv_column(csv, required_columns[k]);
    if (layout->col[k] < 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: row 1: wrong header: no column \"%s\" (expected an MTurk results file)",
                      where, required_columns[k]);
  }
  for (int q = 0; q < study->n_questions; q++) {
    const char *key = study->questions[q].key;
    if (!find_answer_columns(csv, key, &layout->answers[q]))
      return dpo_fail(err, DPO_ERR_DATA, "%s: row 1: wrong header: no answer column for question %s (expected Answer.%s or Answer.%s_left.on)",
                      where, key, key, key);
  }
  return DPO_OK;
}

/* The shown answer of one question in a row, or a refusal. */
static int read_answer(char **fields, const answer_columns *ac, const char *key, int allow_tie, const char *where,
                       const results_row *r, const char **shown, dpo_error *err) {
  *shown = NULL;
  const char *plain = ac->plain >= 0 ? fields[ac->plain] : "";
  if (*plain) {
    for (int s = 0; s < 3; s++)
      if (strcmp(plain, sides[s]) == 0) *shown = sides[s];
    if (!*shown)
      return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): Answer.%s is \"%s\", expected left or right%s", where,
                      r->row, r->line, key, plain, allow_tie ? " or tie" : "");
  } else {
    for (int s = 0; s < 3; s++) {
      if (ac->on[s] < 0) continue;
      const char *v = fields[ac->on[s]];
      if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0 && *v)
        return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): Answer.%s_%s.on is \"%s\", expected true or false",
                        where, r->row, r->line, key, sides[s], v);
      if (strcmp(v, "true") != 0) continue;
      if (*shown)
        return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): question %s has both %s and %s checked", where,
                        r->row, r->line, key, *shown, sides[s]);
      *shown = sides[s];
    }
    if (!*shown)
      return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): missing answer to question %s", where, r->row, r->line,
                      key);
  }
  if (strcmp(*shown, "tie") == 0 && !allow_tie)
    return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): Answer.%s is \"tie\", but the study does not allow ties",
                    where, r->row, r->line, key);
  return DPO_OK;
}

/* 1 when found, 0 when not, -1 on a database error. */
static int lookup_item(sqlite3_stmt *stmt, int64_t study_id, const char *public_id, results_row *r) {
  sqlite3_reset(stmt);
  sqlite3_bind_int64(stmt, 1, study_id);
  db_bind_text(stmt, 2, public_id);
  int step = sqlite3_step(stmt);
  if (step == SQLITE_DONE) return 0;
  if (step != SQLITE_ROW) return -1;
  r->item_id = sqlite3_column_int64(stmt, 0);
  db_column_copy(stmt, 1, r->a_side, sizeof r->a_side);
  r->side_seed = sqlite3_column_int64(stmt, 2);
  r->is_gold = sqlite3_column_int(stmt, 3);
  return 1;
}

static int parse_work_seconds(const char *text, double *out) {
  char *end = NULL;
  if (!*text) return 0;
  double v = strtod(text, &end);
  if (*end || !isfinite(v) || v < 0) return 0;
  *out = v;
  return 1;
}

static int check_row(studies_db *db, sqlite3_stmt *item_stmt, const studies_csv *csv, int index, const char *where,
                     const study_info *study, const results_layout *layout, results_row *r, dpo_error *err) {
  char **f = csv->rows[index];
  memset(r, 0, sizeof *r);
  r->row = index + 1;
  r->line = csv->row_lines[index];
  r->duplicate_of = -1;
  r->hit_id = f[layout->col[0]];
  r->assignment_id = f[layout->col[1]];
  r->worker_id = f[layout->col[2]];
  r->status = f[layout->col[3]];
  const char *item = f[layout->col[5]];
  for (int k = 1; k <= 2; k++)
    if (!*f[layout->col[k]] || strlen(f[layout->col[k]]) > 120)
      return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): %s is empty or longer than 120 characters", where,
                      r->row, r->line, required_columns[k]);
  int status_ok = 0;
  for (int s = 0; s < 3; s++) status_ok |= strcmp(r->status, c_status[s]) == 0;
  if (!status_ok)
    return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): AssignmentStatus is \"%s\", expected Submitted, Approved or Rejected",
                    where, r->row, r->line, r->status);
  if (!parse_work_seconds(f[layout->col[4]], &r->work_seconds))
    return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): WorkTimeInSeconds is \"%s\", expected a number of seconds",
                    where, r->row, r->line, f[layout->col[4]]);
  int found = lookup_item(item_stmt, study->id, item, r);
  if (found < 0) return db_fail(db, err, "looking up an item");
  if (!found) {
    return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): unknown item id \"%s\" (Input.item_id) in study %s", where,
                    r->row, r->line, item, study->name);
  }
  for (int q = 0; q < study->n_questions; q++)
    if (read_answer(f, &layout->answers[q], study->questions[q].key, study->allow_tie, where, r, &r->shown[q], err))
      return DPO_ERR_DATA;
  return DPO_OK;
}

static int same_answers(const results_row *x, const results_row *y, int n_questions) {
  if (x->item_id != y->item_id) return 0;
  for (int q = 0; q < n_questions; q++)
    if (strcmp(x->shown[q], y->shown[q]) != 0) return 0;
  return 1;
}

static int compare_by_assignment(const void *pa, const void *pb) {
  const results_row *a = *(const results_row *const *)pa, *b = *(const results_row *const *)pb;
  int c = strcmp(a->assignment_id, b->assignment_id);
  return c ? c : a->row - b->row;
}

/* One AssignmentId twice in a file: identical rows are kept once, different
 * answers refuse the file. */
static int check_duplicates(results_row *rows, int n, int n_questions, const char *where, dpo_error *err) {
  results_row **order = malloc(sizeof *order * (size_t)(n + 1));
  if (!order) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int i = 0; i < n; i++) order[i] = &rows[i];
  qsort(order, (size_t)n, sizeof *order, compare_by_assignment);
  int rc = DPO_OK;
  for (int k = 1; k < n && rc == DPO_OK; k++) {
    results_row *first = order[k - 1], *r = order[k];
    if (strcmp(first->assignment_id, r->assignment_id) != 0) continue;
    if (first->duplicate_of >= 0) first = &rows[first->duplicate_of];
    if (!same_answers(first, r, n_questions) || strcmp(first->worker_id, r->worker_id) != 0)
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): AssignmentId %s has different answers in row %d", where,
                    r->row, r->line, r->assignment_id, first->row);
    r->duplicate_of = (int)(first - rows);
  }
  free(order);
  return rc;
}

/* Reads and checks a results file against a study; rows[i] point into csv. */
static int read_results(studies_db *db, const study_info *study, const char *path, studies_csv *csv,
                        results_row **rows_out, int *n_rows, char sha[65], dpo_error *err) {
  char *data;
  size_t len;
  *rows_out = NULL;
  *n_rows = 0;
  if (dpo_read_file(path, STUDIES_CSV_MAX_BYTES, &data, &len, err)) return DPO_ERR_DATA;
  dpo_sha256_hex(data, len, sha);
  int rc = studies_csv_parse(data, len, path, csv, err);
  free(data);
  if (rc) return rc;
  results_layout layout;
  int n = csv->n_rows - 1;
  results_row *rows = calloc((size_t)n + 1, sizeof *rows);
  sqlite3_stmt *item_stmt = NULL;
  if (!rows) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (rc == DPO_OK) rc = check_header(csv, path, study, &layout, err);
  if (rc == DPO_OK)
    rc = db_prepare(db, "SELECT id, a_side, side_seed, is_gold FROM items WHERE study_id = ?1 AND public_id = ?2",
                    &item_stmt, err);
  for (int i = 0; i < n && rc == DPO_OK; i++) rc = check_row(db, item_stmt, csv, i + 1, path, study, &layout, &rows[i], err);
  sqlite3_finalize(item_stmt);
  if (rc == DPO_OK) rc = check_duplicates(rows, n, study->n_questions, path, err);
  if (rc != DPO_OK) {
    free(rows);
    studies_csv_free(csv);
    return rc;
  }
  *rows_out = rows;
  *n_rows = n;
  return DPO_OK;
}

/* ------------------------------------------------------------------ ingest */

typedef struct {
  studies_db *db;
  const study_info *study;
  const char *path;
  double min_work_seconds;
  int64_t import_id;
  sqlite3_stmt *find_assignment, *find_votes, *upsert_rater, *insert_assignment, *insert_vote, *update_status;
} ingest_ctx;

static const char *exclusion(const results_row *r, double min_work_seconds) {
  if (strcmp(r->status, "Rejected") == 0) return "rejected";
  if (r->work_seconds < min_work_seconds) return "too_fast";
  return NULL;
}

/* An assignment already in the database: same answers (a no-op, perhaps a
 * new status) or different ones (refused). *known is set when found. */
static int check_known(ingest_ctx *c, const results_row *r, int *known, int *status_changed, dpo_error *err) {
  *known = *status_changed = 0;
  sqlite3_reset(c->find_assignment);
  sqlite3_bind_int64(c->find_assignment, 1, c->study->id);
  db_bind_text(c->find_assignment, 2, r->assignment_id);
  if (sqlite3_step(c->find_assignment) != SQLITE_ROW) return DPO_OK;
  *known = 1;
  int64_t assignment = sqlite3_column_int64(c->find_assignment, 0);
  int64_t item = sqlite3_column_int64(c->find_assignment, 1);
  const char *status = (const char *)sqlite3_column_text(c->find_assignment, 2);
  *status_changed = strcmp(status, r->status) != 0;
  int same = item == r->item_id;
  sqlite3_reset(c->find_votes);
  sqlite3_bind_int64(c->find_votes, 1, assignment);
  int n_votes = 0;
  while (same && sqlite3_step(c->find_votes) == SQLITE_ROW) {
    int64_t question = sqlite3_column_int64(c->find_votes, 0);
    const char *shown = (const char *)sqlite3_column_text(c->find_votes, 1);
    for (int q = 0; q < c->study->n_questions; q++)
      if (c->study->questions[q].id == question) same &= strcmp(shown, r->shown[q]) == 0;
    n_votes++;
  }
  if (!same || n_votes != c->study->n_questions)
    return dpo_fail(err, DPO_ERR_DATA, "%s: row %d (line %d): AssignmentId %s was ingested before with different answers",
                    c->path, r->row, r->line, r->assignment_id);
  return DPO_OK;
}

static int insert_row(ingest_ctx *c, const results_row *r, dpo_error *err) {
  sqlite3_reset(c->upsert_rater);
  sqlite3_bind_int64(c->upsert_rater, 1, c->study->id);
  db_bind_text(c->upsert_rater, 2, r->worker_id);
  if (sqlite3_step(c->upsert_rater) != SQLITE_ROW) return db_fail(c->db, err, "recording a rater");
  int64_t rater = sqlite3_column_int64(c->upsert_rater, 0);
  sqlite3_stmt *s = c->insert_assignment;
  sqlite3_reset(s);
  sqlite3_bind_int64(s, 1, c->study->id);
  sqlite3_bind_int64(s, 2, r->item_id);
  sqlite3_bind_int64(s, 3, rater);
  db_bind_text(s, 4, r->assignment_id);
  db_bind_text(s, 5, r->hit_id);
  db_bind_text(s, 6, r->status);
  sqlite3_bind_double(s, 7, r->work_seconds);
  db_bind_text(s, 8, r->a_side);
  sqlite3_bind_int64(s, 9, r->side_seed);
  db_bind_text(s, 10, exclusion(r, c->min_work_seconds));
  sqlite3_bind_int64(s, 11, c->import_id);
  if (db_step_done(c->db, s, "recording an assignment", err)) return DPO_ERR_DATA;
  int64_t assignment = sqlite3_last_insert_rowid(c->db->db);
  for (int q = 0; q < c->study->n_questions; q++) {
    sqlite3_reset(c->insert_vote);
    sqlite3_bind_int64(c->insert_vote, 1, assignment);
    sqlite3_bind_int64(c->insert_vote, 2, c->study->questions[q].id);
    db_bind_text(c->insert_vote, 3, r->shown[q]);
    db_bind_text(c->insert_vote, 4, studies_unswap(r->shown[q], r->a_side));
    if (db_step_done(c->db, c->insert_vote, "recording a vote", err)) return DPO_ERR_DATA;
  }
  return DPO_OK;
}

/* A known assignment whose status moved on (Submitted -> Approved or
 * Rejected): the status and whether it counts follow the site. */
static int update_status(ingest_ctx *c, const results_row *r, dpo_error *err) {
  sqlite3_reset(c->update_status);
  sqlite3_bind_int64(c->update_status, 1, c->study->id);
  db_bind_text(c->update_status, 2, r->assignment_id);
  db_bind_text(c->update_status, 3, r->status);
  return db_step_done(c->db, c->update_status, "updating an assignment's status", err);
}

static int prepare_ingest(ingest_ctx *c, dpo_error *err) {
  studies_db *db = c->db;
  if (db_prepare(db, "SELECT id, item_id, status FROM assignments WHERE study_id = ?1 AND external_id = ?2",
                 &c->find_assignment, err) ||
      db_prepare(db, "SELECT question_id, shown FROM votes WHERE assignment_id = ?1", &c->find_votes, err) ||
      db_prepare(db, "INSERT INTO raters(study_id, source, external_id, created_at) VALUES(?1, 'mturk', ?2, "
                     "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')) ON CONFLICT(study_id, source, external_id) "
                     "DO UPDATE SET source = source RETURNING id",
                 &c->upsert_rater, err) ||
      db_prepare(db, "INSERT INTO assignments(study_id, item_id, rater_id, external_id, hit_id, status, work_seconds, "
                     "a_side, side_seed, excluded, import_id, created_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,"
                     "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                 &c->insert_assignment, err) ||
      db_prepare(db, "INSERT INTO votes(assignment_id, question_id, shown, choice) VALUES(?1, ?2, ?3, ?4)",
                 &c->insert_vote, err) ||
      db_prepare(db, "UPDATE assignments SET status = ?3, excluded = CASE WHEN ?3 = 'Rejected' THEN 'rejected' "
                     "WHEN excluded = 'rejected' THEN NULL ELSE excluded END WHERE study_id = ?1 AND external_id = ?2",
                 &c->update_status, err))
    return DPO_ERR_DATA;
  return DPO_OK;
}

static void finalize_ingest(ingest_ctx *c) {
  sqlite3_finalize(c->find_assignment);
  sqlite3_finalize(c->find_votes);
  sqlite3_finalize(c->upsert_rater);
  sqlite3_finalize(c->insert_assignment);
  sqlite3_finalize(c->insert_vote);
  sqlite3_finalize(c->update_status);
}

static int record_import(ingest_ctx *c, const char *sha, const studies_ingest_result *res, int insert,
                         dpo_error *err) {
  sqlite3_stmt *s;
  const char *sql = insert ? "INSERT INTO imports(study_id, file_name, file_sha256, imported_at, min_work_seconds, n_rows, "
                             "n_assignments_new, n_assignments_known, n_status_changes, n_votes, n_rejected, n_too_fast, "
                             "n_extra) VALUES(?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), ?4, 0,0,0,0,0,0,0,0)"
                           : "UPDATE imports SET n_rows = ?5, n_assignments_new = ?6, n_assignments_known = ?7, "
                             "n_status_changes = ?8, n_votes = ?9, n_rejected = ?10, n_too_fast = ?11, n_extra = ?12 "
                             "WHERE id = ?13";
  if (db_prepare(c->db, sql, &s, err)) return DPO_ERR_DATA;
  if (insert) {
    sqlite3_bind_int64(s, 1, c->study->id);
    db_bind_text(s, 2, c->path);
    db_bind_text(s, 3, sha);
    sqlite3_bind_double(s, 4, c->min_work_seconds);
  } else {
    int counts[] = {res->rows,     res->assignments_new, res->assignments_known, res->status_changes,
                    res->votes_new, res->rejected,       res->too_fast,          res->extra};
    for (int k = 0; k < 8; k++) sqlite3_bind_int(s, 5 + k, counts[k]);
    sqlite3_bind_int64(s, 13, c->import_id);
  }
  int rc = db_step_done(c->db, s, "recording the import", err);
  sqlite3_finalize(s);
  if (rc == DPO_OK && insert) c->import_id = sqlite3_last_insert_rowid(c->db->db);
  return rc;
}

static int count_extra_of_import(ingest_ctx *c, int *extra, dpo_error *err) {
  sqlite3_stmt *s;
  if (db_prepare(c->db, "SELECT count(*) FROM assignments WHERE import_id = ?1 AND extra = 1", &s, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(s, 1, c->import_id);
  *extra = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
  sqlite3_finalize(s);
  return DPO_OK;
}

static int ingest_rows(ingest_ctx *c, results_row *rows, int n, const char *sha, studies_ingest_result *res,
                       dpo_error *err) {
  if (record_import(c, sha, res, 1, err)) return DPO_ERR_DATA;
  for (int i = 0; i < n; i++) {
    const results_row *r = &rows[i];
    if (r->duplicate_of >= 0) continue;
    int known, status_changed;
    if (check_known(c, r, &known, &status_changed, err)) return DPO_ERR_DATA;
    if (known) {
      res->assignments_known++;
      if (status_changed) {
        if (update_status(c, r, err)) return DPO_ERR_DATA;
        res->status_changes++;
      }
      continue;
    }
    if (insert_row(c, r, err)) return DPO_ERR_DATA;
    res->assignments_new++;
    res->votes_new += c->study->n_questions;
    const char *why = exclusion(r, c->min_work_seconds);
    if (why && strcmp(why, "rejected") == 0) res->rejected++;
    if (why && strcmp(why, "too_fast") == 0) res->too_fast++;
  }
  if (db_flag_extra_votes(c->db, c->study, err)) return DPO_ERR_DATA;
  if (count_extra_of_import(c, &res->extra, err)) return DPO_ERR_DATA;
  return record_import(c, sha, res, 0, err);
}

static int already_imported(studies_db *db, int64_t study_id, const char *sha, int *found, dpo_error *err) {
  sqlite3_stmt *s;
  if (db_prepare(db, "SELECT 1 FROM imports WHERE study_id = ?1 AND file_sha256 = ?2", &s, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(s, 1, study_id);
  db_bind_text(s, 2, sha);
  *found = sqlite3_step(s) == SQLITE_ROW;
  sqlite3_finalize(s);
  return DPO_OK;
}

int studies_ingest_mturk(studies_db *db, const char *study_name, const char *csv_path, double min_work_seconds,
                         studies_ingest_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  if (!(min_work_seconds >= 0)) return dpo_fail(err, DPO_ERR_USAGE, "--min-work-seconds: expected a non-negative number");
  study_info study;
  if (db_find_study(db, study_name, &study, err)) return DPO_ERR_DATA;
  studies_csv csv;
  results_row *rows;
  int n;
  char sha[65];
  if (read_results(db, &study, csv_path, &csv, &rows, &n, sha, err)) return DPO_ERR_DATA;
  res->rows = n;
  int found = 0;
  int rc = db_exec(db, "BEGIN IMMEDIATE", err);
  if (rc == DPO_OK) rc = already_imported(db, study.id, sha, &found, err);
  if (rc == DPO_OK && found) {
    res->already_imported = 1;
    rc = db_exec(db, "COMMIT", err);
  } else if (rc == DPO_OK) {
    ingest_ctx c = {.db = db, .study = &study, .path = csv_path, .min_work_seconds = min_work_seconds};
    rc = prepare_ingest(&c, err);
    if (rc == DPO_OK) rc = ingest_rows(&c, rows, n, sha, res, err);
    finalize_ingest(&c);
    if (rc == DPO_OK) rc = db_exec(db, "COMMIT", err);
    if (rc != DPO_OK) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  }
  free(rows);
  studies_csv_free(&csv);
  return rc;
}

/* ------------------------------------------------------------------ review */

/* Why a submitted assignment fails review, or NULL to approve it. */
static const char *review_reason(const results_row *r, const study_info *study, double min_work_seconds,
                                 char *buf, size_t n, int *gold_failed) {
  *gold_failed = 0;
  if (r->is_gold) {
    for (int q = 0; q < study->n_questions; q++) {
      if (!study->questions[q].gold_checked) continue;
      /* Gold items put the matching image as arm A. */
      if (strcmp(studies_unswap(r->shown[q], r->a_side), "a") != 0) {
        *gold_failed = 1;
        snprintf(buf, n, "Failed an attention check: for \"%s\" the chosen image does not show the prompt.",
                 studies_question_text(study->questions[q].key));
        return buf;
      }
    }
  }
  if (r->work_seconds < min_work_seconds) {
    snprintf(buf, n, "Submitted in %g seconds; at least %g seconds are needed to look at both images.", r->work_seconds,
             min_work_seconds);
    return buf;
  }
  return NULL;
}

int studies_review_mturk(studies_db *db, const char *study_name, const char *csv_path, double min_work_seconds,
                         const char *out_path, studies_review_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  if (!(min_work_seconds >= 0)) return dpo_fail(err, DPO_ERR_USAGE, "--min-work-seconds: expected a non-negative number");
  study_info study;
  if (db_find_study(db, study_name, &study, err)) return DPO_ERR_DATA;
  studies_csv csv;
  results_row *rows;
  int n;
  char sha[65];
  if (read_results(db, &study, csv_path, &csv, &rows, &n, sha, err)) return DPO_ERR_DATA;
  int approve_col = studies_csv_column(&csv, "Approve"), reject_col = studies_csv_column(&csv, "Reject");
  int n_out = csv.n_fields + (approve_col < 0) + (reject_col < 0);
  if (approve_col < 0) approve_col = csv.n_fields;
  if (reject_col < 0) reject_col = approve_col == csv.n_fields ? csv.n_fields + 1 : csv.n_fields;
  const char **out_row = calloc((size_t)n_out, sizeof *out_row);
  dpo_atomic_file af;
  int rc = out_row ? dpo_atomic_open(&af, out_path, err) : dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (rc == DPO_OK) {
    for (int i = 0; i < n_out; i++) out_row[i] = i < csv.n_fields ? csv.rows[0][i] : i == approve_col ? "Approve" : "Reject";
    studies_csv_write_row(af.fp, out_row, n_out);
    for (int i = 0; i < n; i++) {
      const results_row *r = &rows[i];
      for (int k = 0; k < csv.n_fields; k++) out_row[k] = csv.rows[i + 1][k];
      char reason[512];
      out_row[approve_col] = "";
      out_row[reject_col] = "";
      if (strcmp(r->status, "Submitted") != 0) {
        res->untouched++;
      } else {
        int gold_failed;
        const char *why = review_reason(r, &study, min_work_seconds, reason, sizeof reason, &gold_failed);
        if (why) {
          out_row[reject_col] = why;
          if (gold_failed) res->rejected_gold++;
          else res->rejected_fast++;
        } else {
          out_row[approve_col] = "x";
          res->approved++;
        }
      }
      studies_csv_write_row(af.fp, out_row, n_out);
    }
    rc = dpo_atomic_commit(&af, err);
  }
  free(out_row);
  free(rows);
  studies_csv_free(&csv);
  return rc;
}
