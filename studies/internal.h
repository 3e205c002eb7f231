/* Shared by the files of the studies library only (not a public header). */
#ifndef DPO_STUDIES_INTERNAL_H
#define DPO_STUDIES_INTERNAL_H

#include <sqlite3.h>

#include "studies/studies.h"

struct studies_db {
  sqlite3 *db;
  char path[2048];
};

/* Fails with the database's message: "DB: what: sqlite message". */
int db_fail(studies_db *db, dpo_error *err, const char *what);
int db_exec(studies_db *db, const char *sql, dpo_error *err);
int db_prepare(studies_db *db, const char *sql, sqlite3_stmt **stmt, dpo_error *err);
/* Steps a statement that must finish (SQLITE_DONE). */
int db_step_done(studies_db *db, sqlite3_stmt *stmt, const char *what, dpo_error *err);
void db_bind_text(sqlite3_stmt *stmt, int index, const char *text);
/* Copies column text (NULL becomes ""). */
void db_column_copy(sqlite3_stmt *stmt, int col, char *out, size_t n);

#define STUDIES_MAX_QUESTIONS 4

typedef struct {
  int64_t id;
  char key[16];
  int gold_checked;
} study_question;

typedef struct {
  int64_t id;
  char name[256];
  int votes_per_item;
  int allow_tie;
  uint64_t seed;
  study_question questions[STUDIES_MAX_QUESTIONS];
  int n_questions;
} study_info;

int db_find_study(studies_db *db, const char *name, study_info *info, dpo_error *err);

/* The side arm A is shown on, from a seed: the one rule both MTurk items and
 * local (rater, item) pairs use, so a recorded seed can always be re-checked. */
const char *studies_side_from_seed(uint64_t side_seed);
/* A non-negative 63-bit seed (SQLite integers are signed) from a stream. */
uint64_t studies_seed63(uint64_t seed, uint64_t stream);
/* Maps a shown answer (left/right/tie) to a choice (a/b/tie). */
const char *studies_unswap(const char *shown, const char *a_side);
/* Flags counted assignments beyond votes_per_item (in arrival order). */
int db_flag_extra_votes(studies_db *db, const study_info *study, dpo_error *err);

#endif
