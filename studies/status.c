/* `dpo study status`: what a study holds and how far it has come. */
#include <stdlib.h>
#include <string.h>

#include "studies/internal.h"

static int query_int(studies_db *db, const char *sql, int64_t study_id, int extra, int *out, dpo_error *err) {
  sqlite3_stmt *s;
  if (db_prepare(db, sql, &s, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(s, 1, study_id);
  sqlite3_bind_int(s, 2, extra);
  int step = sqlite3_step(s);
  *out = step == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
  sqlite3_finalize(s);
  return step == SQLITE_ROW ? DPO_OK : db_fail(db, err, "reading the study's status");
}

static int question_counts(studies_db *db, const study_info *study, studies_status *st, dpo_error *err) {
  sqlite3_stmt *s;
  const char *sql =
      "SELECT v.choice, count(*) FROM votes v JOIN assignments a ON a.id = v.assignment_id\n"
      "JOIN items i ON i.id = a.item_id WHERE v.question_id = ?1 AND i.is_gold = 0\n"
      "AND a.excluded IS NULL AND a.extra = 0 GROUP BY v.choice";
  if (db_prepare(db, sql, &s, err)) return DPO_ERR_DATA;
  for (int q = 0; q < study->n_questions; q++) {
    studies_question_status *qs = &st->questions_status[st->n_questions++];
    snprintf(qs->key, sizeof qs->key, "%s", study->questions[q].key);
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, study->questions[q].id);
    while (sqlite3_step(s) == SQLITE_ROW) {
      const char *choice = (const char *)sqlite3_column_text(s, 0);
      int n = sqlite3_column_int(s, 1);
      if (strcmp(choice, "a") == 0) qs->a = n;
      else if (strcmp(choice, "b") == 0) qs->b = n;
      else qs->tie = n;
      qs->votes += n;
    }
  }
  sqlite3_finalize(s);
  return DPO_OK;
}

/* A rater passes a gold check when every question that depends on the
 * prompt picked the matching image (arm A of a gold item). */
static int rater_rows(studies_db *db, const study_info *study, studies_status *st, dpo_error *err) {
  sqlite3_stmt *s;
  const char *sql =
      "SELECT r.source, r.external_id, count(a.id), total(i.is_gold),\n"
      "  total(CASE WHEN i.is_gold = 1 AND NOT EXISTS (SELECT 1 FROM votes v JOIN questions q ON q.id = v.question_id\n"
      "        WHERE v.assignment_id = a.id AND q.gold_checked = 1 AND v.choice != 'a') THEN 1 ELSE 0 END)\n"
      "FROM raters r LEFT JOIN assignments a ON a.rater_id = r.id LEFT JOIN items i ON i.id = a.item_id\n"
      "WHERE r.study_id = ?1 GROUP BY r.id ORDER BY r.id";
  if (db_prepare(db, sql, &s, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(s, 1, study->id);
  int cap = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (st->n_raters == cap) {
      cap = cap ? cap * 2 : 16;
      studies_rater_status *grown = realloc(st->raters, sizeof *grown * (size_t)cap);
      if (!grown) {
        sqlite3_finalize(s);
        return dpo_fail(err, DPO_ERR_DATA, "out of memory");
      }
      st->raters = grown;
    }
    studies_rater_status *r = &st->raters[st->n_raters++];
    db_column_copy(s, 0, r->source, sizeof r->source);
    db_column_copy(s, 1, r->external_id, sizeof r->external_id);
    r->assignments = sqlite3_column_int(s, 2);
    r->gold_checks = (int)sqlite3_column_double(s, 3);
    r->gold_passed = (int)sqlite3_column_double(s, 4);
  }
  sqlite3_finalize(s);
  return DPO_OK;
}

int studies_get_status(studies_db *db, const char *study_name, studies_status *st, dpo_error *err) {
  memset(st, 0, sizeof *st);
  study_info study;
  if (db_find_study(db, study_name, &study, err)) return DPO_ERR_DATA;
  snprintf(st->name, sizeof st->name, "%s", study.name);
  st->votes_per_item = study.votes_per_item;
  st->allow_tie = study.allow_tie;
  for (int q = 0; q < study.n_questions; q++) {
    size_t used = strlen(st->questions);
    snprintf(st->questions + used, sizeof st->questions - used, "%s%s", q ? "," : "", study.questions[q].key);
  }
  int rc = DPO_OK;
  if (!rc) rc = query_int(db, "SELECT count(*) FROM items WHERE study_id = ?1 AND is_gold = ?2", study.id, 0, &st->n_items, err);
  if (!rc) rc = query_int(db, "SELECT count(*) FROM items WHERE study_id = ?1 AND is_gold = ?2", study.id, 1, &st->n_gold, err);
  if (!rc)
    rc = query_int(db,
                   "SELECT count(*) FROM (SELECT i.id FROM items i JOIN assignments a ON a.item_id = i.id\n"
                   "WHERE i.study_id = ?1 AND i.is_gold = 0 AND a.excluded IS NULL AND a.extra = 0\n"
                   "GROUP BY i.id HAVING count(*) >= ?2)",
                   study.id, study.votes_per_item, &st->n_complete, err);
  if (!rc) rc = query_int(db, "SELECT count(*) FROM assignments WHERE study_id = ?1 AND ?2 = ?2", study.id, 0, &st->n_assignments, err);
  if (!rc)
    rc = query_int(db, "SELECT count(*) FROM assignments WHERE study_id = ?1 AND excluded IS NOT NULL AND ?2 = ?2",
                   study.id, 0, &st->n_excluded, err);
  if (!rc) rc = query_int(db, "SELECT count(*) FROM assignments WHERE study_id = ?1 AND extra = ?2", study.id, 1, &st->n_extra, err);
  if (!rc) rc = query_int(db, "SELECT count(*) FROM imports WHERE study_id = ?1 AND ?2 = ?2", study.id, 0, &st->n_imports, err);
  if (!rc) rc = question_counts(db, &study, st, err);
  if (!rc) rc = rater_rows(db, &study, st, err);
  if (rc) studies_status_free(st);
  return rc;
}

void studies_status_free(studies_status *st) {
  free(st->raters);
  st->raters = NULL;
  st->n_raters = 0;
}
