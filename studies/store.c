/* The study database: opening, the schema and its migrations, and the small
 * SQLite helpers the other files share. */
#include <stdlib.h>
#include <string.h>

#include "studies/internal.h"

/* Schema version 1. Later versions append a migration to `migrations` and
 * never edit an earlier one, so any older database can be brought forward. */
static const char *const schema_v1 =
    "CREATE TABLE arms(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  manifest_sha256 TEXT NOT NULL UNIQUE,  -- a run folder is known by its manifest's content\n"
    "  run_dir TEXT NOT NULL,\n"
    "  model TEXT NOT NULL,\n"
    "  n_images INTEGER NOT NULL);\n"
    "CREATE TABLE images(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  sha256 TEXT NOT NULL UNIQUE,\n"
    "  path TEXT NOT NULL,                    -- where the file was when registered\n"
    "  format TEXT NOT NULL CHECK(format IN ('png','jpeg')));\n"
    "CREATE TABLE studies(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  name TEXT NOT NULL UNIQUE,\n"
    "  arm_a INTEGER NOT NULL REFERENCES arms(id),\n"
    "  arm_b INTEGER NOT NULL REFERENCES arms(id),\n"
    "  votes_per_item INTEGER NOT NULL CHECK(votes_per_item > 0),\n"
    "  allow_tie INTEGER NOT NULL CHECK(allow_tie IN (0,1)),\n"
    "  seed INTEGER NOT NULL,\n"
    "  created_at TEXT NOT NULL);\n"
    "CREATE TABLE questions(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  study_id INTEGER NOT NULL REFERENCES studies(id),\n"
    "  key TEXT NOT NULL CHECK(key IN ('q1','q2','q3','edit')),\n"
    "  text TEXT NOT NULL,\n"
    "  position INTEGER NOT NULL,\n"
    "  gold_checked INTEGER NOT NULL,         -- 0 for q2: appeal ignores the prompt\n"
    "  UNIQUE(study_id, key));\n"
    "CREATE TABLE items(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  study_id INTEGER NOT NULL REFERENCES studies(id),\n"
    "  public_id TEXT NOT NULL,               -- the item_id raters' tools see\n"
    "  position INTEGER NOT NULL,             -- shuffled order (gold mixed in)\n"
    "  prompt_set TEXT NOT NULL,\n"
    "  prompt_id TEXT NOT NULL,\n"
    "  prompt TEXT NOT NULL,\n"
    "  category TEXT NOT NULL,\n"
    "  seed INTEGER NOT NULL,\n"
    "  image_index INTEGER NOT NULL,\n"
    "  image_a INTEGER NOT NULL REFERENCES images(id),\n"
    "  image_b INTEGER NOT NULL REFERENCES images(id),\n"
    "  image_source INTEGER REFERENCES images(id),  -- the original, for edits\n"
    "  a_side TEXT NOT NULL CHECK(a_side IN ('left','right')),\n"
    "  side_seed INTEGER NOT NULL,            -- decided a_side (studies_side_from_seed)\n"
    "  is_gold INTEGER NOT NULL CHECK(is_gold IN (0,1)),\n"
    "  UNIQUE(study_id, public_id),\n"
    "  UNIQUE(study_id, position));\n"
    "CREATE TABLE gold_items(\n"
    "  item_id INTEGER PRIMARY KEY REFERENCES items(id),\n"
    "  expected TEXT NOT NULL CHECK(expected IN ('a','b')),\n"
    "  kind TEXT NOT NULL,                    -- 'other_prompt': the worse side shows another prompt's image\n"
    "  decoy_prompt_id TEXT);\n"
    "CREATE TABLE imports(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  study_id INTEGER NOT NULL REFERENCES studies(id),\n"
    "  file_name TEXT NOT NULL,\n"
    "  file_sha256 TEXT NOT NULL,\n"
    "  imported_at TEXT NOT NULL,\n"
    "  min_work_seconds REAL NOT NULL,\n"
    "  n_rows INTEGER NOT NULL,\n"
    "  n_assignments_new INTEGER NOT NULL,\n"
    "  n_assignments_known INTEGER NOT NULL,\n"
    "  n_status_changes INTEGER NOT NULL,\n"
    "  n_votes INTEGER NOT NULL,\n"
    "  n_rejected INTEGER NOT NULL,\n"
    "  n_too_fast INTEGER NOT NULL,\n"
    "  n_extra INTEGER NOT NULL,\n"
    "  UNIQUE(study_id, file_sha256));\n"
    "CREATE TABLE raters(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  study_id INTEGER NOT NULL REFERENCES studies(id),\n"
    "  source TEXT NOT NULL CHECK(source IN ('mturk','local','simulated')),\n"
    "  external_id TEXT NOT NULL,             -- WorkerId, or the local rater's number\n"
    "  token_sha256 TEXT UNIQUE,              -- local raters: only a hash of the secret\n"
    "  created_at TEXT NOT NULL,\n"
    "  UNIQUE(study_id, source, external_id));\n"
    "CREATE TABLE assignments(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  study_id INTEGER NOT NULL REFERENCES studies(id),\n"
    "  item_id INTEGER NOT NULL REFERENCES items(id),\n"
    "  rater_id INTEGER NOT NULL REFERENCES raters(id),\n"
    "  external_id TEXT NOT NULL,             -- MTurk AssignmentId, or local-<rater>-<item>\n"
    "  hit_id TEXT,\n"
    "  status TEXT NOT NULL,                  -- Submitted, Approved, Rejected\n"
    "  work_seconds REAL,\n"
    "  a_side TEXT NOT NULL CHECK(a_side IN ('left','right')),  -- as this rater saw it\n"
    "  side_seed INTEGER NOT NULL,\n"
    "  excluded TEXT CHECK(excluded IN ('rejected','too_fast')),  -- NULL: counted\n"
    "  extra INTEGER NOT NULL DEFAULT 0,      -- counted but beyond votes_per_item\n"
    "  import_id INTEGER REFERENCES imports(id),\n"
    "  created_at TEXT NOT NULL,\n"
    "  UNIQUE(study_id, external_id));\n"
    "CREATE INDEX assignments_by_item ON assignments(item_id);\n"
    "CREATE INDEX assignments_by_rater ON assignments(rater_id);\n"
    "CREATE TABLE votes(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  assignment_id INTEGER NOT NULL REFERENCES assignments(id),\n"
    "  question_id INTEGER NOT NULL REFERENCES questions(id),\n"
    "  shown TEXT NOT NULL CHECK(shown IN ('left','right','tie')),  -- what was clicked\n"
    "  choice TEXT NOT NULL CHECK(choice IN ('a','b','tie')),       -- un-swapped\n"
    "  UNIQUE(assignment_id, question_id));\n"
    "CREATE VIEW study_votes AS\n"
    "  SELECT s.name AS study, i.public_id AS item, i.prompt_set, i.prompt_id, i.prompt, i.category,\n"
    "         i.seed, i.image_index, i.is_gold, g.expected AS gold_expected, q.key AS question,\n"
    "         r.source AS rater_source, r.external_id AS rater, a.external_id AS assignment,\n"
    "         a.status, a.work_seconds, a.excluded, a.extra, v.shown, v.choice\n"
    "  FROM votes v JOIN assignments a ON a.id = v.assignment_id\n"
    "  JOIN items i ON i.id = a.item_id JOIN studies s ON s.id = a.study_id\n"
    "  JOIN questions q ON q.id = v.question_id JOIN raters r ON r.id = a.rater_id\n"
    "  LEFT JOIN gold_items g ON g.item_id = i.id;\n";

/* Version 2: the rating server asks "has this rater rated this item?" for
 * every item on every page; without this index that costs a scan of all the
 * item's assignments. */
static const char *const schema_v2 = "CREATE INDEX assignments_by_rater_item ON assignments(rater_id, item_id);\n";

static const char *const migrations[] = {schema_v1, schema_v2};
enum { N_MIGRATIONS = (int)(sizeof migrations / sizeof migrations[0]) };

int db_fail(studies_db *db, dpo_error *err, const char *what) {
  return dpo_fail(err, DPO_ERR_DATA, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

int db_exec(studies_db *db, const char *sql, dpo_error *err) {
  char *msg = NULL;
  if (sqlite3_exec(db->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    int rc = dpo_fail(err, DPO_ERR_DATA, "%s: %s", db->path, msg ? msg : "SQL error");
    sqlite3_free(msg);
    return rc;
  }
  return DPO_OK;
}

int db_prepare(studies_db *db, const char *sql, sqlite3_stmt **stmt, dpo_error *err) {
  if (sqlite3_prepare_v2(db->db, sql, -1, stmt, NULL) != SQLITE_OK) return db_fail(db, err, "preparing a query");
  return DPO_OK;
}

int db_step_done(studies_db *db, sqlite3_stmt *stmt, const char *what, dpo_error *err) {
  int rc = sqlite3_step(stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return db_fail(db, err, what);
  return DPO_OK;
}

void db_bind_text(sqlite3_stmt *stmt, int index, const char *text) {
  if (text) sqlite3_bind_text(stmt, index, text, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(stmt, index);
}

void db_column_copy(sqlite3_stmt *stmt, int col, char *out, size_t n) {
  const unsigned char *t = sqlite3_column_text(stmt, col);
  snprintf(out, n, "%s", t ? (const char *)t : "");
}

static int migrate(studies_db *db, dpo_error *err) {
  sqlite3_stmt *stmt;
  if (db_prepare(db, "PRAGMA user_version", &stmt, err)) return DPO_ERR_DATA;
  int version = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
  sqlite3_finalize(stmt);
  if (version > N_MIGRATIONS)
    return dpo_fail(err, DPO_ERR_DATA, "%s: schema version %d is newer than this dpo knows (%d); use a newer dpo",
                    db->path, version, N_MIGRATIONS);
  for (int v = version; v < N_MIGRATIONS; v++) {
    /* Each step and its version bump commit together, so a crash leaves the
     * database at one version or the next, never in between. */
    char bump[64];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d;", v + 1);
    if (db_exec(db, "BEGIN IMMEDIATE", err)) return DPO_ERR_DATA;
    if (db_exec(db, migrations[v], err) || db_exec(db, bump, err)) {
      sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
      dpo_error_prefix(err, "migrating to schema version %d", v + 1);
      return DPO_ERR_DATA;
    }
    if (db_exec(db, "COMMIT", err)) return DPO_ERR_DATA;
  }
  return DPO_OK;
}

int studies_open(const char *path, int create, studies_db **out, dpo_error *err) {
  *out = NULL;
  studies_db *db = calloc(1, sizeof *db);
  if (!db) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  snprintf(db->path, sizeof db->path, "%s", path);
  int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path, &db->db, flags, NULL) != SQLITE_OK) {
    int rc = dpo_fail(err, DPO_ERR_DATA, "%s: cannot open study database: %s", path,
                      db->db ? sqlite3_errmsg(db->db) : "out of memory");
    studies_close(db);
    return rc;
  }
  sqlite3_busy_timeout(db->db, 10000);
  /* WAL lets the rating server answer reads while a vote commits; FULL
   * synchronous makes every acknowledged vote survive a crash. */
  int rc = db_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", err);
  if (rc == DPO_OK) rc = migrate(db, err);
  if (rc != DPO_OK) {
    studies_close(db);
    return rc;
  }
  *out = db;
  return DPO_OK;
}

void studies_close(studies_db *db) {
  if (!db) return;
  if (db->db) sqlite3_close_v2(db->db);
  free(db);
}

struct sqlite3 *studies_sqlite(studies_db *db) { return db->db; }

int db_find_study(studies_db *db, const char *name, study_info *info, dpo_error *err) {
  memset(info, 0, sizeof *info);
  sqlite3_stmt *stmt;
  if (db_prepare(db, "SELECT id, votes_per_item, allow_tie, seed FROM studies WHERE name = ?1", &stmt, err))
    return DPO_ERR_DATA;
  db_bind_text(stmt, 1, name);
  int step = sqlite3_step(stmt);
  if (step != SQLITE_ROW) {
    sqlite3_finalize(stmt);
    if (step != SQLITE_DONE) return db_fail(db, err, "reading studies");
    return dpo_fail(err, DPO_ERR_DATA, "%s: no study named \"%s\"", db->path, name);
  }
  info->id = sqlite3_column_int64(stmt, 0);
  info->votes_per_item = sqlite3_column_int(stmt, 1);
  info->allow_tie = sqlite3_column_int(stmt, 2);
  info->seed = (uint64_t)sqlite3_column_int64(stmt, 3);
  snprintf(info->name, sizeof info->name, "%s", name);
  sqlite3_finalize(stmt);
  if (db_prepare(db, "SELECT id, key, gold_checked FROM questions WHERE study_id = ?1 ORDER BY position", &stmt, err))
    return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, info->id);
  while (sqlite3_step(stmt) == SQLITE_ROW && info->n_questions < STUDIES_MAX_QUESTIONS) {
    study_question *q = &info->questions[info->n_questions++];
    q->id = sqlite3_column_int64(stmt, 0);
    db_column_copy(stmt, 1, q->key, sizeof q->key);
    q->gold_checked = sqlite3_column_int(stmt, 2);
  }
  sqlite3_finalize(stmt);
  return DPO_OK;
}

uint64_t studies_seed63(uint64_t seed, uint64_t stream) {
  uint64_t hi = dpo_rng_u32(seed, stream, 0), lo = dpo_rng_u32(seed, stream, 1);
  return ((hi << 32) | lo) & (uint64_t)INT64_MAX;
}

const char *studies_side_from_seed(uint64_t side_seed) {
  return (dpo_rng_u32(side_seed, 0, 0) & 1u) ? "right" : "left";
}

const char *studies_unswap(const char *shown, const char *a_side) {
  if (strcmp(shown, "tie") == 0) return "tie";
  return strcmp(shown, a_side) == 0 ? "a" : "b";
}

int db_flag_extra_votes(studies_db *db, const study_info *study, dpo_error *err) {
  sqlite3_stmt *stmt;
  const char *sql =
      "WITH ranked AS (SELECT id, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY id) AS rn\n"
      "                FROM assignments WHERE study_id = ?1 AND excluded IS NULL)\n"
      "UPDATE assignments SET extra = (id IN (SELECT id FROM ranked WHERE rn > ?2)) WHERE study_id = ?1";
  if (db_prepare(db, sql, &stmt, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, study->id);
  sqlite3_bind_int(stmt, 2, study->votes_per_item);
  int rc = db_step_done(db, stmt, "flagging extra votes", err);
  sqlite3_finalize(stmt);
  return rc;
}

const char *studies_question_text(const char *key) {
  if (strcmp(key, "q1") == 0) return "Which image do you prefer given the prompt?";
  if (strcmp(key, "q2") == 0) return "Which image is more visually appealing?";
  if (strcmp(key, "q3") == 0) return "Which image better fits the text description?";
  if (strcmp(key, "edit") == 0) return "Which edit do you prefer given the text?";
  return NULL;
}

char *studies_html_escape(const char *text) {
  size_t n = 0;
  for (const char *p = text; *p; p++) {
    switch (*p) {
      case '&': n += 5; break;
      case '<': case '>': n += 4; break;
      case '"': case '\'': n += 6; break;
      default: n += 1;
    }
  }
  char *out = malloc(n + 1);
  if (!out) return NULL;
  char *o = out;
  for (const char *p = text; *p; p++) {
    const char *rep = NULL;
    switch (*p) {
      case '&': rep = "&amp;"; break;
      case '<': rep = "&lt;"; break;
      case '>': rep = "&gt;"; break;
      case '"': rep = "&quot;"; break;
      case '\'': rep = "&#x27;"; break;
      default: break;
    }
    if (rep) {
      size_t k = strlen(rep);
      memcpy(o, rep, k);
      o += k;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
  return out;
}
