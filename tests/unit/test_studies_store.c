/* The study store: run-folder manifests, schema and migrations, study
 * creation (pairing, sides, gold), and ingest through the library API. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "studies/studies.h"
#include "tests/test.h"

/* A run folder with n_prompts x 2 seeds images; `bytes_tag` makes the
 * images of two runs differ. skip_prompt/skip_seed leave one image out. */
static void make_run(const char *name, const char *model, int n_prompts, int skip_prompt, int skip_seed) {
  char dir[1024], path[1200];
  snprintf(dir, sizeof dir, "%s", test_path(name));
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/images", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
  FILE *m = fopen(path, "w");
  for (int p = 0; p < n_prompts; p++) {
    for (int s = 0; s < 2; s++) {
      if (p == skip_prompt && s == skip_seed) continue;
      unsigned char png[32] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
      snprintf((char *)png + 8, sizeof png - 8, "%s-%d-%d", model, p, s);
      char file[64], hex[65];
      snprintf(file, sizeof file, "images/p%d-s%d.png", p, s);
      snprintf(path, sizeof path, "%s/%s", dir, file);
      test_write_file(path, png, sizeof png);
      dpo_sha256_hex(png, sizeof png, hex);
      fprintf(m,
              "{\"prompt_set\": \"tiny\", \"prompt_id\": \"p%d\", \"prompt\": \"prompt %d\", \"category\": \"c\", "
              "\"seed\": %d, \"image_index\": 0, \"file\": \"%s\", \"sha256\": \"%s\", \"model\": \"%s\", "
              "\"settings\": {\"steps\": 4}}\n",
              p, p, s, file, hex, model);
    }
  }
  fclose(m);
}

static void write_manifest(const char *run, const char *text) {
  char path[1200];
  snprintf(path, sizeof path, "%s/manifest.jsonl", test_path(run));
  test_write_file(path, text, strlen(text));
}

static void test_manifest_errors(void) {
  studies_manifest m;
  dpo_error err;
  make_run("good", "base", 2, -1, -1);
  CHECK_INT(studies_manifest_load(test_path("good"), &m, &err), DPO_OK);
  CHECK_INT(m.n_entries, 4);
  CHECK_STR(m.entries[0].prompt_id, "p0");
  CHECK_STR(m.entries[0].settings_json, "{\"steps\":4}");
  studies_manifest_free(&m);

  make_run("bad", "base", 1, -1, -1);
  const char *line_ok = "{\"prompt_set\":\"t\",\"prompt_id\":\"p\",\"prompt\":\"x\",\"category\":\"c\",\"seed\":1,"
                        "\"image_index\":0,\"file\":\"images/p0-s0.png\",\"sha256\":\"%s\",\"model\":\"m\",\"settings\":{}%s}\n";
  char text[2048];
  const char *zeros = "0000000000000000000000000000000000000000000000000000000000000000";
  struct {
    const char *sha, *extra, *want;
  } cases[] = {
      {zeros, ",\"colour\":1", "manifest.jsonl:2: unknown key \"colour\""},
      {"abc", "", "manifest.jsonl:2: key \"sha256\": expected 64 lower-case hex digits"},
  };
  for (int i = 0; i < 2; i++) {
    char line[1024];
    snprintf(line, sizeof line, line_ok, cases[i].sha, cases[i].extra);
    snprintf(text, sizeof text, "\n%s", line);
    write_manifest("bad", text);
    CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, cases[i].want);
  }
  write_manifest("bad", "{\"prompt_set\":\"t\"}\n");
  CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:1: missing key \"prompt_id\"");
  snprintf(text, sizeof text,
           "{\"prompt_set\":\"t\",\"prompt_id\":\"p\",\"prompt\":\"x\",\"category\":\"c\",\"seed\":\"1\","
           "\"image_index\":0,\"file\":\"a.png\",\"sha256\":\"%s\",\"model\":\"m\",\"settings\":{}}\n", zeros);
  write_manifest("bad", text);
  CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:1: key \"seed\": expected an integer");
  snprintf(text, sizeof text,
           "{\"prompt_set\":\"t\",\"prompt_id\":\"p\",\"prompt\":\"x\",\"category\":\"c\",\"seed\":1,"
           "\"image_index\":0,\"file\":\"../a.png\",\"sha256\":\"%s\",\"model\":\"m\",\"settings\":{}}\n", zeros);
  write_manifest("bad", text);
  CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "key \"file\": expected a path inside the run folder");
  snprintf(text, sizeof text,
           "{\"prompt_set\":\"t\",\"prompt_id\":\"p\",\"prompt\":\"x\",\"category\":\"c\",\"seed\":1,"
           "\"image_index\":0,\"file\":\"a.png\",\"sha256\":\"%s\",\"model\":\"m\",\"settings\":[]}\n", zeros);
  write_manifest("bad", text);
  CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:1: key \"settings\": expected an object");
  write_manifest("bad", "{\"prompt_set\": \n");
  CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:1:");
  /* The same (prompt set, prompt id, seed, image index) twice. */
  char line[1024];
  snprintf(line, sizeof line, line_ok, zeros, "");
  snprintf(text, sizeof text, "%s%s", line, line);
  write_manifest("bad", text);
  CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:2: duplicate of line 1");
  write_manifest("bad", "");
  CHECK_INT(studies_manifest_load(test_path("bad"), &m, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no images listed");
}

static int64_t query_int(studies_db *db, const char *sql) {
  sqlite3_stmt *s;
  int64_t v = -1;
  if (sqlite3_prepare_v2(studies_sqlite(db), sql, -1, &s, NULL) != SQLITE_OK) return -2;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

static void test_schema(void) {
  studies_db *db;
  dpo_error err;
  const char *path = test_path("schema.db");
  CHECK_INT(studies_open(path, 0, &db, &err), DPO_ERR_DATA);   /* not created unless asked */
  CHECK_INT(studies_open(path, 1, &db, &err), DPO_OK);
  CHECK_INT(query_int(db, "PRAGMA user_version"), STUDIES_SCHEMA_VERSION);
  CHECK_INT(query_int(db, "PRAGMA foreign_keys"), 1);
  CHECK_INT(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('studies','arms','items','questions',"
                          "'raters','assignments','votes','gold_items','imports','images','study_votes')"),
            11);
  /* Foreign keys are enforced. */
  CHECK(sqlite3_exec(studies_sqlite(db), "INSERT INTO questions(study_id, key, text, position, gold_checked) VALUES(99, 'q1', 'x', 0, 1)",
                     NULL, NULL, NULL) != SQLITE_OK);
  /* A version 1 database is brought forward: version 2 adds an index. */
  CHECK(sqlite3_exec(studies_sqlite(db), "DROP INDEX assignments_by_rater_item; PRAGMA user_version = 1", NULL, NULL,
                     NULL) == SQLITE_OK);
  studies_close(db);
  CHECK_INT(studies_open(path, 0, &db, &err), DPO_OK);
  CHECK_INT(query_int(db, "PRAGMA user_version"), 2);
  CHECK_INT(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'assignments_by_rater_item'"), 1);
  sqlite3_exec(studies_sqlite(db), "PRAGMA user_version = 99", NULL, NULL, NULL);
  studies_close(db);
  CHECK_INT(studies_open(path, 0, &db, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "schema version 99 is newer");
  /* Reopening a current database migrates nothing and keeps the data. */
  const char *path2 = test_path("schema2.db");
  CHECK_INT(studies_open(path2, 1, &db, &err), DPO_OK);
  studies_close(db);
  CHECK_INT(studies_open(path2, 0, &db, &err), DPO_OK);
  sqlite3_stmt *s;
  sqlite3_prepare_v2(studies_sqlite(db), "PRAGMA journal_mode", -1, &s, NULL);
  CHECK_INT(sqlite3_step(s), SQLITE_ROW);
  CHECK_STR((const char *)sqlite3_column_text(s, 0), "wal");
  sqlite3_finalize(s);
  studies_close(db);
}

static void test_create(void) {
  studies_db *db;
  dpo_error err;
  make_run("ra", "base", 20, -1, -1);
  make_run("rb", "tuned", 20, -1, -1);
  make_run("rc", "tuned", 20, 3, 1);
  CHECK_INT(studies_open(test_path("create.db"), 1, &db, &err), DPO_OK);
  studies_create_options opt = {.name = "s", .run_a = test_path("ra"), .run_b = test_path("rc"), .questions = "q1,q3",
                                .votes = 5, .gold = 3, .seed = 11};
  studies_create_result res;
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "1 image(s) missing in B");
  CHECK_CONTAINS(err.msg, "tiny/p3 seed 1 image 0");
  CHECK_INT(query_int(db, "SELECT count(*) FROM studies"), 0);
  opt.run_b = test_path("rb");
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_OK);
  CHECK_INT(res.n_items, 40);
  CHECK_INT(res.n_gold, 3);
  /* Both sides occur, and every recorded side follows from its seed. */
  CHECK(res.n_a_left > 5 && res.n_a_left < 35);
  sqlite3_stmt *s;
  sqlite3_prepare_v2(studies_sqlite(db), "SELECT a_side, side_seed FROM items", -1, &s, NULL);
  int n = 0, lefts = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    const char *side = (const char *)sqlite3_column_text(s, 0);
    uint64_t seed = (uint64_t)sqlite3_column_int64(s, 1);
    CHECK_STR(side, (dpo_rng_u32(seed, 0, 0) & 1u) ? "right" : "left");
    lefts += strcmp(side, "left") == 0;
    n++;
  }
  sqlite3_finalize(s);
  CHECK_INT(n, 43);
  CHECK_INT(lefts, res.n_a_left + (int)query_int(db, "SELECT count(*) FROM items WHERE is_gold = 1 AND a_side = 'left'"));
  /* Gold: arm A of a gold item is a real image of its prompt, B another prompt's. */
  CHECK_INT(query_int(db, "SELECT count(*) FROM items i JOIN gold_items g ON g.item_id = i.id WHERE i.is_gold = 1 "
                          "AND g.decoy_prompt_id != i.prompt_id AND i.image_a != i.image_b"),
            3);
  CHECK_INT(query_int(db, "SELECT count(*) FROM questions WHERE gold_checked = 1"), 2);
  CHECK_INT(query_int(db, "SELECT count(*) FROM arms"), 2);
  CHECK_INT(query_int(db, "SELECT count(*) FROM images"), 80);
  CHECK_INT(query_int(db, "SELECT count(DISTINCT public_id) FROM items"), 43);
  /* The same seed gives the same sides in a second study over the same runs. */
  opt.name = "s-again";
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_OK);
  CHECK_INT(query_int(db, "SELECT count(*) FROM items x JOIN items y ON x.position = y.position AND x.a_side = y.a_side "
                          "AND x.image_a = y.image_a WHERE x.study_id = 1 AND y.study_id = 2"),
            43);
  CHECK_INT(query_int(db, "SELECT count(*) FROM arms"), 2);   /* arms are shared by content hash */
  /* Usage errors. */
  opt.name = "u";
  opt.questions = "q1,q1";
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_ERR_USAGE);
  opt.questions = "edit,q1";
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_ERR_USAGE);
  opt.questions = "q2";
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "q2 (visual appeal) ignores it");
  /* An image changed after generation is caught by its hash. */
  char path[1200];
  snprintf(path, sizeof path, "%s/images/p0-s0.png", test_path("rb"));
  test_write_file(path, "\x89PNG\r\n\x1a\nchanged", 15);
  opt.questions = "q1";
  opt.name = "tampered";
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:1: key \"sha256\"");
  studies_close(db);
}

/* Ingest through the library: un-swapping and a refused file leaving the
 * database as it was. */
static void test_ingest(void) {
  studies_db *db;
  dpo_error err;
  make_run("ia", "base", 2, -1, -1);
  make_run("ib", "tuned", 2, -1, -1);
  CHECK_INT(studies_open(test_path("ingest.db"), 1, &db, &err), DPO_OK);
  studies_create_options opt = {.name = "s", .run_a = test_path("ia"), .run_b = test_path("ib"), .questions = "q1",
                                .votes = 1, .allow_tie = 1, .seed = 3};
  studies_create_result res;
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_OK);
  sqlite3_stmt *s;
  sqlite3_prepare_v2(studies_sqlite(db), "SELECT public_id, a_side FROM items ORDER BY position", -1, &s, NULL);
  char csv[4096] = "HITId,AssignmentId,WorkerId,AssignmentStatus,WorkTimeInSeconds,Input.item_id,Answer.q1\n";
  int row = 0;
  int want_a = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(s, 0);
    const char *side = (const char *)sqlite3_column_text(s, 1);
    /* Always click left: un-swapped, that is A exactly where A was on the left. */
    want_a += strcmp(side, "left") == 0;
    size_t used = strlen(csv);
    snprintf(csv + used, sizeof csv - used, "H%d,A%d,W1,Submitted,30,%s,left\n", row, row, id);
    row++;
  }
  sqlite3_finalize(s);
  size_t used = strlen(csv);
  snprintf(csv + used, sizeof csv - used, "H9,A9,W2,Approved,30,%s,tie\n", "nope");
  const char *path = test_path("results.csv");
  test_write_file(path, csv, strlen(csv));
  studies_ingest_result ir;
  CHECK_INT(studies_ingest_mturk(db, "s", path, 0, &ir, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "row 6 (line 6): unknown item id \"nope\"");
  CHECK_INT(query_int(db, "SELECT count(*) FROM assignments"), 0);
  CHECK_INT(query_int(db, "SELECT count(*) FROM raters"), 0);
  CHECK_INT(query_int(db, "SELECT count(*) FROM imports"), 0);
  /* Drop the bad row and ingest. */
  *strstr(csv, "H9,") = '\0';
  test_write_file(path, csv, strlen(csv));
  CHECK_INT(studies_ingest_mturk(db, "s", path, 0, &ir, &err), DPO_OK);
  CHECK_INT(ir.assignments_new, 4);
  CHECK_INT(query_int(db, "SELECT count(*) FROM votes WHERE choice = 'a'"), want_a);
  CHECK_INT(query_int(db, "SELECT count(*) FROM votes WHERE choice = 'b'"), 4 - want_a);
  CHECK_INT(query_int(db, "SELECT count(*) FROM study_votes WHERE shown = 'left'"), 4);
  CHECK_INT(studies_ingest_mturk(db, "s", path, 0, &ir, &err), DPO_OK);
  CHECK_INT(ir.already_imported, 1);
  CHECK_INT(studies_ingest_mturk(db, "nostudy", path, 0, &ir, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no study named \"nostudy\"");
  /* The same assignments in a different file (another download): known, not
   * counted twice; a status that moved on to Rejected stops counting. */
  char *p = strstr(csv, "A0,W1,Submitted");
  memcpy(p, "A0,W1,Rejected ", 15);
  memmove(p + 14, p + 15, strlen(p + 15) + 1);
  test_write_file(path, csv, strlen(csv));
  CHECK_INT(studies_ingest_mturk(db, "s", path, 0, &ir, &err), DPO_OK);
  CHECK_INT(ir.already_imported, 0);
  CHECK_INT(ir.assignments_known, 4);
  CHECK_INT(ir.status_changes, 1);
  CHECK_INT(query_int(db, "SELECT count(*) FROM assignments"), 4);
  CHECK_INT(query_int(db, "SELECT count(*) FROM assignments WHERE excluded = 'rejected'"), 1);
  studies_status st;
  CHECK_INT(studies_get_status(db, "s", &st, &err), DPO_OK);
  CHECK_INT(st.n_items, 4);
  CHECK_INT(st.n_complete, 3);
  CHECK_INT(st.questions_status[0].votes, 3);
  CHECK_INT(st.n_raters, 1);
  studies_status_free(&st);
  studies_close(db);
}

int main(void) {
  test_manifest_errors();
  test_schema();
  test_create();
  test_ingest();
  return test_finish();
}
