/* dpo study simulate: simulated raters against a known truth. The runs are
 * flat-colour images, so the built-in pixel scorers know exactly which arm
 * is better on which score. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "studies/studies.h"
#include "tests/test.h"

#define N_PROMPTS 30   /* x 2 seeds = 60 items */

/* A run whose images are one colour each, varied slightly per image so
 * that every file has its own hash. */
static void make_run(const char *name, const char *model, int r, int g, int b) {
  char dir[1024], path[1200];
  snprintf(dir, sizeof dir, "%s", test_path(name));
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/images", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
  FILE *m = fopen(path, "w");
  dpo_error err;
  for (int p = 0; p < N_PROMPTS; p++) {
    for (int s = 0; s < 2; s++) {
      dpo_image im;
      CHECK_INT(dpo_image_alloc(&im, 4, 4, 3, &err), DPO_OK);
      for (int i = 0; i < 16; i++) {
        im.pixels[3 * i] = (uint8_t)(r + p);
        im.pixels[3 * i + 1] = (uint8_t)(g + s);
        im.pixels[3 * i + 2] = (uint8_t)b;
      }
      char file[64], hex[65];
      snprintf(file, sizeof file, "images/p%d-s%d.png", p, s);
      snprintf(path, sizeof path, "%s/%s", dir, file);
      CHECK_INT(dpo_png_write(path, &im, NULL, 0, &err), DPO_OK);
      dpo_image_free(&im);
      char *data;
      size_t len;
      CHECK_INT(dpo_read_file(path, 1u << 20, &data, &len, &err), DPO_OK);
      dpo_sha256_hex(data, len, hex);
      free(data);
      fprintf(m,
              "{\"prompt_set\": \"tiny\", \"prompt_id\": \"p%d\", \"prompt\": \"prompt %d\", \"category\": \"c\", "
              "\"seed\": %d, \"image_index\": 0, \"file\": \"%s\", \"sha256\": \"%s\", \"model\": \"%s\", "
              "\"settings\": {}}\n",
              p, p, s, file, hex, model);
    }
  }
  fclose(m);
}

static double query_double(studies_db *db, const char *sql) {
  sqlite3_stmt *s;
  double v = -1;
  if (sqlite3_prepare_v2(studies_sqlite(db), sql, -1, &s, NULL) != SQLITE_OK) return -2;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_double(s, 0);
  sqlite3_finalize(s);
  return v;
}

/* A fresh database with study "s" (A = bright gray, B = dark red). */
static studies_db *new_study(const char *db_name, int gold) {
  studies_db *db;
  dpo_error err;
  CHECK_INT(studies_open(test_path(db_name), 1, &db, &err), DPO_OK);
  studies_create_options opt = {.name = "s", .run_a = test_path("bright"), .run_b = test_path("red"),
                                .questions = "q1,q2,q3", .votes = 5, .gold = gold, .seed = 3};
  studies_create_result res;
  CHECK_INT(studies_create(db, &opt, &res, &err), DPO_OK);
  return db;
}

static studies_simulate_options sim_options(const char *scorer) {
  studies_simulate_options o = {.study = "s", .raters = 12, .scorer = scorer, .seed = 7, .noise = 0.1};
  return o;
}

/* Share of counted, non-gold votes for arm A on one question. */
static double a_rate(studies_db *db, const char *question) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT avg(choice = 'a') FROM study_votes WHERE question = '%s' AND is_gold = 0 AND excluded IS NULL",
           question);
  return query_double(db, sql);
}

/* Share of items whose majority (of 5) picks A on one question. */
static double majority_a(studies_db *db, const char *question) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT avg(a > b) FROM (SELECT item, sum(choice = 'a') AS a, sum(choice = 'b') AS b FROM study_votes "
           "WHERE question = '%s' AND is_gold = 0 GROUP BY item)",
           question);
  return query_double(db, sql);
}

static void test_strong_difference(void) {
  studies_db *db = new_study("strong.db", 0);
  studies_simulate_options o = sim_options("brightness");
  studies_simulate_result res;
  dpo_error err;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  CHECK_INT(res.n_raters, 12);
  CHECK_INT(res.n_random, 0);
  CHECK_INT(res.n_items, 2 * N_PROMPTS);
  CHECK_INT(res.n_assignments, 5 * 2 * N_PROMPTS);
  CHECK_INT(res.n_votes, 3 * 5 * 2 * N_PROMPTS);
  /* Brightness 0.78 against 0.24 with noise 0.1: the majority picks the brighter arm. */
  CHECK(majority_a(db, "q1") >= 0.95);
  CHECK(a_rate(db, "q1") >= 0.9);
  /* Every item got 5 different raters; every vote is un-swapped by the side that rater saw. */
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM (SELECT item_id FROM assignments GROUP BY item_id "
                              "HAVING count(DISTINCT rater_id) = 5)"),
             2 * N_PROMPTS, 0);
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM votes v JOIN assignments a ON a.id = v.assignment_id WHERE "
                              "v.choice <> CASE WHEN v.shown = a.a_side THEN 'a' ELSE 'b' END"),
             0, 0);
  /* Sides really vary: both sides carry A for some assignments. */
  double a_left = query_double(db, "SELECT avg(a_side = 'left') FROM assignments");
  CHECK(a_left > 0.35 && a_left < 0.65);
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM raters WHERE source = 'simulated' AND external_id LIKE 'sim-%-bt'"),
             12, 0);
  /* The study's status counts them like any other votes. */
  studies_status st;
  CHECK_INT(studies_get_status(db, "s", &st, &err), DPO_OK);
  CHECK_INT(st.n_complete, 2 * N_PROMPTS);
  studies_status_free(&st);
  studies_close(db);
}

static void test_two_scores(void) {
  /* pixel-pair: q2 reads appeal (brightness: A wins), q3 alignment (redness: B wins). */
  studies_db *db = new_study("split.db", 0);
  studies_simulate_options o = sim_options("pixel-pair");
  studies_simulate_result res;
  dpo_error err;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  CHECK(a_rate(db, "q2") >= 0.9);
  CHECK(a_rate(db, "q3") <= 0.1);
  /* q1 is the mean of both: A 0.39 against B 0.37, nearly even (P(A) about 0.55). */
  double q1 = a_rate(db, "q1");
  CHECK(q1 > 0.4 && q1 < 0.7);
  studies_close(db);
}

static void test_random_and_left_bias(void) {
  dpo_error err;
  studies_simulate_result res;
  studies_db *db = new_study("random.db", 0);
  studies_simulate_options o = sim_options("brightness");
  o.random_share = 1.0;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  CHECK_INT(res.n_random, 12);
  double q1 = a_rate(db, "q1");   /* 300 votes: sd 0.03 */
  CHECK(q1 > 0.4 && q1 < 0.6);
  double left = (double)res.n_left / res.n_votes;
  CHECK(left > 0.43 && left < 0.57);
  studies_close(db);

  db = new_study("share.db", 0);
  o.random_share = 0.25;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  CHECK_INT(res.n_random, 3);   /* exact share */
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM raters WHERE external_id LIKE 'sim-%-random'"), 3, 0);
  studies_close(db);

  /* Left bias 0.4 over balanced sides: the left image wins 0.4 + 0.6 / 2 = 0.7
   * of votes, for random clickers and for attentive raters alike. */
  db = new_study("left.db", 0);
  o.random_share = 1.0;
  o.left_bias = 0.4;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  left = query_double(db, "SELECT avg(shown = 'left') FROM votes");
  CHECK(left > 0.64 && left < 0.76);
  studies_close(db);
  db = new_study("left_bt.db", 0);
  o.random_share = 0.0;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  left = query_double(db, "SELECT avg(shown = 'left') FROM votes");
  CHECK(left > 0.64 && left < 0.76);
  CHECK_NEAR(left, (double)res.n_left / res.n_votes, 1e-9);
  /* The bias costs the better arm: it now wins about 0.6 + 0.4 / 2 of votes. */
  double a = a_rate(db, "q1");
  CHECK(a > 0.7 && a < 0.9);
  studies_close(db);
}

static void test_gold(void) {
  studies_db *db = new_study("gold.db", 10);
  studies_simulate_options o = sim_options("brightness");
  o.raters = 10;
  o.random_share = 0.5;
  studies_simulate_result res;
  dpo_error err;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  /* Attentive raters pass every gold check; random clickers about half. */
  CHECK_NEAR(query_double(db, "SELECT avg(choice = gold_expected) FROM study_votes WHERE is_gold = 1 AND "
                              "question IN ('q1', 'q3') AND rater LIKE '%-bt'"),
             1.0, 1e-12);
  double clickers = query_double(db, "SELECT avg(choice = gold_expected) FROM study_votes WHERE is_gold = 1 AND "
                                     "question IN ('q1', 'q3') AND rater LIKE '%-random'");
  CHECK(clickers > 0.25 && clickers < 0.75);
  studies_status st;
  CHECK_INT(studies_get_status(db, "s", &st, &err), DPO_OK);
  CHECK_INT(st.n_raters, 10);
  studies_status_free(&st);
  studies_close(db);
}

/* Every vote of a database as one string, in assignment order. */
static char *dump_votes(studies_db *db) {
  sqlite3_stmt *s;
  size_t cap = 1 << 20, len = 0;
  char *out = calloc(1, cap);
  sqlite3_prepare_v2(studies_sqlite(db),
                     "SELECT a.external_id, a.a_side, a.side_seed, a.work_seconds, v.shown, v.choice FROM votes v "
                     "JOIN assignments a ON a.id = v.assignment_id ORDER BY v.id",
                     -1, &s, NULL);
  while (sqlite3_step(s) == SQLITE_ROW && len + 256 < cap)
    len += (size_t)snprintf(out + len, cap - len, "%s %s %lld %.9f %s %s\n", sqlite3_column_text(s, 0),
                            sqlite3_column_text(s, 1), (long long)sqlite3_column_int64(s, 2),
                            sqlite3_column_double(s, 3), sqlite3_column_text(s, 4), sqlite3_column_text(s, 5));
  sqlite3_finalize(s);
  return out;
}

static void test_determinism(void) {
  studies_simulate_options o = sim_options("brightness");
  o.noise = 2.0;   /* noisy votes, so that a different seed shows */
  o.random_share = 0.3;
  o.left_bias = 0.1;
  studies_simulate_result res;
  dpo_error err;
  char *runs[3];
  const char *names[3] = {"det1.db", "det2.db", "det3.db"};
  for (int i = 0; i < 3; i++) {
    studies_db *db = new_study(names[i], 4);
    o.seed = i < 2 ? 99 : 100;
    CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
    runs[i] = dump_votes(db);
    studies_close(db);
  }
  CHECK(strlen(runs[0]) > 1000);
  CHECK(strcmp(runs[0], runs[1]) == 0);
  CHECK(strcmp(runs[0], runs[2]) != 0);
  for (int i = 0; i < 3; i++) free(runs[i]);
}

static void test_refusals(void) {
  studies_db *db = new_study("refuse.db", 0);
  studies_simulate_result res;
  dpo_error err;
  studies_simulate_options o = sim_options("sharpness");
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "unknown scorer \"sharpness\" (known: brightness, redness, pixel-pair");
  o = sim_options("brightness");
  o.raters = 4;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "asks 5 votes per item from different raters; got 4 raters");
  o = sim_options("brightness");
  o.random_share = 1.5;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "--random-share");
  o = sim_options("brightness");
  o.left_bias = -0.1;
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_ERR_USAGE);
  o = sim_options("brightness");
  o.study = "nope";
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no study named \"nope\"");
  /* A missing image file fails the whole run and records nothing. */
  char path[1200];
  snprintf(path, sizeof path, "%s/images/p3-s1.png", test_path("red"));
  char moved[1300];
  snprintf(moved, sizeof moved, "%s.away", path);
  CHECK_INT(rename(path, moved), 0);
  o = sim_options("brightness");
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "p3-s1.png");
  CHECK_INT(rename(moved, path), 0);
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM votes"), 0, 0);
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM raters"), 0, 0);
  /* Running twice adds raters and flags the votes beyond 5 per item as extra. */
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  CHECK_INT(studies_simulate(db, &o, &res, &err), DPO_OK);
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM raters WHERE external_id = 'sim-24-bt'"), 1, 0);
  CHECK_NEAR(query_double(db, "SELECT count(*) FROM assignments WHERE extra = 1"), 5 * 2 * N_PROMPTS, 0);
  studies_close(db);
}

int main(void) {
  make_run("bright", "base", 200, 200, 200);
  make_run("red", "tuned", 150, 20, 20);
  test_strong_difference();
  test_two_scores();
  test_random_and_left_bias();
  test_gold();
  test_determinism();
  test_refusals();
  return test_finish();
}
