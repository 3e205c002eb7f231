/* studies: A/B human preference studies.
 *
 * One SQLite database holds everything about a study: the two arms (run
 * folders, known by the content hash of their manifests), the items (one pair
 * of images per prompt id, seed and image index, with the side each arm is
 * shown on and the seed that decided it), the questions, raters, assignments,
 * votes, gold items and the files imported. MTurk is reached through files: a
 * batch CSV plus a Crowd HTML layout go out, the requester site's results CSV
 * comes back. A local rating server does the same job without MTurk.
 *
 * Votes are stored un-swapped: `choice` is 'a', 'b' or 'tie' whatever side
 * the rater saw, and `shown` keeps what they actually clicked. Reports read
 * the view `study_votes` (see store.c), which lists every vote with its flags
 * (gold, excluded, extra) so that nothing is dropped silently. */
#ifndef DPO_STUDIES_H
#define DPO_STUDIES_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"

/* ------------------------------------------------------------- run folders */

/* RUN/manifest.jsonl: one JSON object per line with exactly the keys
 * prompt_set, prompt_id, prompt, category, seed, image_index, file (relative
 * to RUN), sha256 (of the file), model, settings (an object). For edit
 * studies, settings.source_image names the original image (relative to RUN). */
#define STUDIES_MANIFEST_MAX_BYTES (256u * 1024u * 1024u)

typedef struct {
  char *prompt_set;
  char *prompt_id;
  char *prompt;
  char *category;
  int64_t seed;
  int64_t image_index;
  char *file;          /* as written: relative to the run folder */
  char *sha256;
  char *model;
  char *settings_json; /* compact JSON of the settings object */
  char *source_image;  /* settings.source_image or NULL */
  int line;            /* 1-based line in manifest.jsonl */
} studies_manifest_entry;

typedef struct {
  char run_dir[2048];
  char manifest_sha256[65];
  studies_manifest_entry *entries;
  int n_entries;
} studies_manifest;

/* Reads and validates RUN/manifest.jsonl; errors name file:line and key.
 * Image files are not opened here (see studies_create, which hashes them). */
int studies_manifest_load(const char *run_dir, studies_manifest *m, dpo_error *err);
void studies_manifest_free(studies_manifest *m);

/* --------------------------------------------------------------------- CSV */

/* RFC 4180 with what spreadsheets and the requester site add: an optional
 * UTF-8 byte-order mark, CRLF or LF line ends, quoted fields with embedded
 * commas, quotes ("") and newlines. Every record must have as many fields as
 * the header. Fully empty lines are skipped. NUL bytes are refused. */
#define STUDIES_CSV_MAX_BYTES (64u * 1024u * 1024u)
#define STUDIES_CSV_MAX_FIELDS 4096
#define STUDIES_CSV_MAX_FIELD_BYTES (1024u * 1024u)
#define STUDIES_CSV_MAX_ROWS 1000000

typedef struct {
  char *arena;        /* every field, unescaped and NUL-terminated */
  char ***rows;       /* rows[r][f]; rows[0] is the header. Messages call
                         rows[r] "row r+1", as a spreadsheet numbers it */
  int *row_lines;     /* line of the file where each record starts */
  int n_rows;         /* header included */
  int n_fields;
} studies_csv;

/* `where` names the origin in errors ("results.csv"). */
int studies_csv_parse(const char *data, size_t len, const char *where, studies_csv *csv, dpo_error *err);
int studies_csv_load(const char *path, studies_csv *csv, dpo_error *err);
void studies_csv_free(studies_csv *csv);
/* Column index of a header name, or -1. */
int studies_csv_column(const studies_csv *csv, const char *name);
/* Writes one field, quoted when it holds a comma, quote, CR, LF or edge space. */
void studies_csv_write_field(FILE *f, const char *text);
/* Writes a record of n fields ended by CRLF. */
void studies_csv_write_row(FILE *f, const char *const *fields, int n);

/* ----------------------------------------------------------------- store */

typedef struct studies_db studies_db;

/* Opens (creating when asked) a study database: WAL, foreign keys, schema
 * migrated to the current PRAGMA user_version. A database from a newer dpo
 * is refused. */
#define STUDIES_SCHEMA_VERSION 2
int studies_open(const char *path, int create, studies_db **db, dpo_error *err);
void studies_close(studies_db *db);
/* The underlying sqlite3 handle, for readers such as reports and tests. */
struct sqlite3 *studies_sqlite(studies_db *db);

/* ---------------------------------------------------------------- studies */

/* The paper's wording (PAPER.md); `edit` is TEd-Bench's. */
const char *studies_question_text(const char *key);

typedef struct {
  const char *name;
  const char *run_a;
  const char *run_b;
  const char *questions;   /* comma list of q1, q2, q3, edit */
  int votes;               /* votes asked per item (the paper: 5) */
  int allow_tie;
  int gold;                /* gold items to mix in */
  uint64_t seed;           /* decides sides, gold items and order */
} studies_create_options;

typedef struct {
  int n_items;   /* real items */
  int n_gold;
  int n_a_left;  /* items with arm A on the left */
} studies_create_result;

int studies_create(studies_db *db, const studies_create_options *opt, studies_create_result *res,
                   dpo_error *err);

/* DIR/batch.csv, DIR/layout.html, DIR/images/<sha256>.<ext>. */
typedef struct {
  int n_rows;
  int n_images;
} studies_export_result;

int studies_export_mturk(studies_db *db, const char *study, const char *image_base_url,
                         const char *out_dir, studies_export_result *res, dpo_error *err);

/* Results CSV ingest. The whole file is checked before anything is written,
 * and everything is written in one transaction: a refused file leaves the
 * database as it was. */
typedef struct {
  int already_imported;    /* the same file (by content hash) was ingested before */
  int rows;
  int assignments_new;
  int assignments_known;   /* already in the database with the same answers */
  int status_changes;      /* known assignments whose AssignmentStatus changed */
  int votes_new;
  int rejected;            /* AssignmentStatus Rejected: kept, not counted */
  int too_fast;            /* under --min-work-seconds: kept, not counted */
  int extra;               /* counted assignments beyond the votes asked for */
} studies_ingest_result;

int studies_ingest_mturk(studies_db *db, const char *study, const char *csv_path,
                         double min_work_seconds, studies_ingest_result *res, dpo_error *err);

/* Writes the results file back with Approve ("x") or Reject (a reason)
 * filled for Submitted assignments: gold failures and too-fast work are
 * rejected, the rest approved. */
typedef struct {
  int approved;
  int rejected_gold;
  int rejected_fast;
  int untouched;   /* already approved or rejected on the site */
} studies_review_result;

int studies_review_mturk(studies_db *db, const char *study, const char *csv_path,
                         double min_work_seconds, const char *out_path, studies_review_result *res,
                         dpo_error *err);

/* Status of a study, for `dpo study status`. */
typedef struct {
  char key[16];
  int votes;   /* counted (not gold, not excluded, not extra) */
  int a, b, tie;
} studies_question_status;

typedef struct {
  char source[16];
  char external_id[128];
  int assignments;
  int gold_checks;
  int gold_passed;
} studies_rater_status;

typedef struct {
  char name[256];
  char questions[128];
  int votes_per_item;
  int allow_tie;
  int n_items;
  int n_gold;
  int n_complete;          /* real items with votes_per_item counted assignments */
  int n_assignments;
  int n_excluded;
  int n_extra;
  int n_imports;
  studies_question_status questions_status[8];
  int n_questions;
  studies_rater_status *raters;
  int n_raters;
} studies_status;

int studies_get_status(studies_db *db, const char *study, studies_status *st, dpo_error *err);
void studies_status_free(studies_status *st);

/* ------------------------------------------------------- simulated raters */

/* Simulated raters for testing reports and quality checks against a known
 * truth (studies/simulate.c has the model). Each question reads one score of
 * the scorer (eval/eval.h): q2 "appeal", q3 and edit "alignment", q1
 * "overall", or when the scorer has none the mean of whichever of
 * "alignment" and "appeal" it has; a question whose score is missing uses the
 * scorer's first score. Each item gets votes_per_item different raters,
 * chosen at random; simulated raters never answer tie. On gold items an
 * attentive (Bradley–Terry) rater picks the expected side on gold-checked
 * questions. Raters are named sim-<n>-bt or sim-<n>-random (the truth). */
typedef struct {
  const char *study;
  int raters;
  const char *scorer;      /* a name in the eval registry */
  uint64_t seed;
  double noise;            /* Bradley–Terry temperature in score units, per rater x exp(0.5 z) */
  double random_share;     /* exact share of random clickers, 0 to 1 */
  double left_bias;        /* probability that a vote is a reflex click on the left */
} studies_simulate_options;

typedef struct {
  int n_raters;
  int n_random;
  int n_items;             /* gold included */
  int n_assignments;
  int n_votes;
  int n_left;              /* votes for the left image, as shown */
} studies_simulate_result;

int studies_simulate(studies_db *db, const studies_simulate_options *opt, studies_simulate_result *res,
                     dpo_error *err);

/* ---------------------------------------------------------- local rating */

/* Registers N local raters and writes their secret tokens (hex, 32 bytes of
 * /dev/urandom) to tokens[i] (65 bytes each). Only a hash of each token is
 * stored. */
int studies_invite(studies_db *db, const char *study, int n_raters, char (*tokens)[65],
                   dpo_error *err);

typedef struct {
  const char *db_path;
  const char *bind_address;   /* "127.0.0.1" unless asked otherwise */
  int port;                   /* 0 picks a free port */
  const char *port_file;      /* when set, the bound port is written there */
  volatile sig_atomic_t *stop;   /* the server returns when *stop becomes non-zero */
} studies_serve_options;

int studies_serve(const studies_serve_options *opt, dpo_error *err);

/* HTML-escapes text into a malloc'd string (& < > " '). */
char *studies_html_escape(const char *text);

#endif
