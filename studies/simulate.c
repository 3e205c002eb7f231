/* `dpo study simulate`: simulated raters with a known truth.
 *
 * Each simulated rater is either a Bradley–Terry rater or a random clicker.
 * A Bradley–Terry rater prefers arm A's image over arm B's with probability
 *   P(A) = 1 / (1 + exp(-(s_A - s_B) / T_r)),
 * where s is the scorer's score that matches the question (see
 * studies_simulate_options) and T_r = noise * exp(0.5 z_r), z_r a standard
 * normal per rater: each rater has its own temperature around --noise, so
 * some raters are sharper than others. A random clicker picks left or right
 * with even odds. On top of both, each vote is with probability --left-bias
 * a reflex click on the left image. Votes are recorded exactly like real
 * ones: the side the rater saw (randomised per rater and item) and the
 * un-swapped choice. Every draw is Philox at (--seed, a named stream, an
 * index), so the same seed gives the same votes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "studies/internal.h"

#define SIM_MAX_RATERS 100000
#define SIM_SCORE_BATCH 32   /* items scored per scorer call (2 images each) */

typedef struct {
  int64_t id;
  int64_t position;
  int is_gold;
  char gold_expected;       /* 'a' or 'b' for gold items */
  double score_a[STUDIES_MAX_QUESTIONS];
  double score_b[STUDIES_MAX_QUESTIONS];
} sim_item;

typedef struct {
  int64_t db_id;
  int is_clicker;
  double temperature;
} sim_rater;

/* Weights over the scorer's scores for one question (see studies.h). */
static void question_weights(const eval_scorer *scorer, const char *key, double w[EVAL_MAX_SCORES]) {
  for (int k = 0; k < EVAL_MAX_SCORES; k++) w[k] = 0.0;
  int appeal = eval_score_index(scorer, "appeal"), alignment = eval_score_index(scorer, "alignment");
  int overall = eval_score_index(scorer, "overall");
  if (strcmp(key, "q2") == 0 && appeal >= 0) {
    w[appeal] = 1.0;
  } else if ((strcmp(key, "q3") == 0 || strcmp(key, "edit") == 0) && alignment >= 0) {
    w[alignment] = 1.0;
  } else if (strcmp(key, "q1") == 0 && overall >= 0) {
    w[overall] = 1.0;
  } else if (strcmp(key, "q1") == 0 && (appeal >= 0 || alignment >= 0)) {
    double share = (appeal >= 0 && alignment >= 0) ? 0.5 : 1.0;
    if (appeal >= 0) w[appeal] = share;
    if (alignment >= 0) w[alignment] = share;
  } else {
    w[0] = 1.0;
  }
}

static int load_items(studies_db *db, const study_info *study, sim_item **items_out, int *n_out, char ***paths_out,
                      char ***prompts_out, dpo_error *err) {
  sqlite3_stmt *s;
  if (db_prepare(db, "SELECT i.id, i.position, i.is_gold, coalesce(g.expected, ''), ia.path, ib.path, i.prompt "
                     "FROM items i JOIN images ia ON ia.id = i.image_a JOIN images ib ON ib.id = i.image_b "
                     "LEFT JOIN gold_items g ON g.item_id = i.id WHERE i.study_id = ?1 ORDER BY i.position",
                 &s, err))
    return DPO_ERR_DATA;
  sqlite3_bind_int64(s, 1, study->id);
  sim_item *items = NULL;
  char **paths = NULL, **prompts = NULL;
  int n = 0, cap = 0, rc = DPO_OK;
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      sim_item *gi = realloc(items, (size_t)cap * sizeof *gi);
      if (gi) items = gi;
      char **gp = realloc(paths, (size_t)cap * 2 * sizeof *gp);
      if (gp) paths = gp;
      char **gq = realloc(prompts, (size_t)cap * sizeof *gq);
      if (gq) prompts = gq;
      if (!gi || !gp || !gq) {
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading items", db->path);
        break;
      }
    }
    sim_item *it = &items[n];
    memset(it, 0, sizeof *it);
    it->id = sqlite3_column_int64(s, 0);
    it->position = sqlite3_column_int64(s, 1);
    it->is_gold = sqlite3_column_int(s, 2);
    const unsigned char *expected = sqlite3_column_text(s, 3);
    it->gold_expected = expected && expected[0] ? (char)expected[0] : 0;
    paths[2 * n] = strdup((const char *)sqlite3_column_text(s, 4));
    paths[2 * n + 1] = strdup((const char *)sqlite3_column_text(s, 5));
    prompts[n] = strdup((const char *)sqlite3_column_text(s, 6));
    n++;
    if (!paths[2 * n - 2] || !paths[2 * n - 1] || !prompts[n - 1]) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading items", db->path);
      break;
    }
  }
  sqlite3_finalize(s);
  *items_out = items;
  *n_out = n;
  *paths_out = paths;
  *prompts_out = prompts;
  if (rc == DPO_OK && n == 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: study \"%s\" has no items", db->path, study->name);
  return rc;
}

/* Scores both images of every item and reduces them to one score per
 * question with question_weights. */
static int score_items(const eval_scorer *scorer, const study_info *study, sim_item *items, int n, char **paths,
                       char **prompts, dpo_error *err) {
  double weights[STUDIES_MAX_QUESTIONS][EVAL_MAX_SCORES];
  for (int q = 0; q < study->n_questions; q++) question_weights(scorer, study->questions[q].key, weights[q]);
  dpo_image images[2 * SIM_SCORE_BATCH];
  eval_pair pairs[2 * SIM_SCORE_BATCH];
  double scores[2 * SIM_SCORE_BATCH * EVAL_MAX_SCORES];
  int rc = DPO_OK;
  for (int start = 0; start < n && rc == DPO_OK; start += SIM_SCORE_BATCH) {
    int count = n - start < SIM_SCORE_BATCH ? n - start : SIM_SCORE_BATCH;
    int loaded = 0;
    memset(images, 0, sizeof images);
    for (; loaded < 2 * count; loaded++) {
      rc = dpo_image_read(paths[2 * start + loaded], 3, &images[loaded], err);
      if (rc) break;
      pairs[loaded].image = &images[loaded];
      pairs[loaded].prompt = prompts[start + loaded / 2];
    }
    if (rc == DPO_OK) rc = eval_score(scorer, pairs, 2 * count, scores, err);
    for (int i = 0; i < count && rc == DPO_OK; i++) {
      for (int q = 0; q < study->n_questions; q++) {
        double sa = 0, sb = 0;
        for (int k = 0; k < scorer->n_scores; k++) {
          sa += weights[q][k] * scores[(2 * i) * scorer->n_scores + k];
          sb += weights[q][k] * scores[(2 * i + 1) * scorer->n_scores + k];
        }
        items[start + i].score_a[q] = sa;
        items[start + i].score_b[q] = sb;
      }
    }
    for (int i = 0; i < loaded; i++) dpo_image_free(&images[i]);
    if (rc) dpo_error_prefix(err, "scoring images with \"%s\"", scorer->name);
  }
  return rc;
}

/* Registers the raters: the first round(share * R) of a random permutation
 * are random clickers, so the share is exact. */
static int make_raters(studies_db *db, const study_info *study, const studies_simulate_options *opt, sim_rater *raters,
                       studies_simulate_result *res, dpo_error *err) {
  int R = opt->raters;
  int *order = malloc((size_t)R * sizeof *order);
  if (!order) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int k = 0; k < R; k++) order[k] = k;
  dpo_rng rng;
  dpo_rng_init(&rng, opt->seed, dpo_rng_stream_id("sim-raters", 0, 0));
  for (int k = R - 1; k > 0; k--) {
    int j = (int)dpo_rng_next_below(&rng, (uint32_t)k + 1);
    int t = order[k];
    order[k] = order[j];
    order[j] = t;
  }
  int n_clickers = (int)floor(opt->random_share * R + 0.5);
  for (int k = 0; k < R; k++) raters[k].is_clicker = 0;
  for (int k = 0; k < n_clickers; k++) raters[order[k]].is_clicker = 1;
  free(order);
  res->n_random = n_clickers;

  sqlite3_stmt *s;
  if (db_prepare(db, "SELECT count(*) FROM raters WHERE study_id = ?1 AND source = 'simulated'", &s, err))
    return DPO_ERR_DATA;
  sqlite3_bind_int64(s, 1, study->id);
  int64_t before = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_finalize(s);
  if (db_prepare(db, "INSERT INTO raters(study_id, source, external_id, created_at) "
                     "VALUES(?1, 'simulated', ?2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                 &s, err))
    return DPO_ERR_DATA;
  int rc = DPO_OK;
  for (int k = 0; k < R && rc == DPO_OK; k++) {
    float z = dpo_rng_normal(opt->seed, dpo_rng_stream_id("sim-rater-noise", (uint64_t)k, 0), 0);
    raters[k].temperature = opt->noise * exp(0.5 * z);
    /* The kind is in the name: the known truth that quality checks are tested against. */
    char name[64];
    snprintf(name, sizeof name, "sim-%lld-%s", (long long)(before + k + 1), raters[k].is_clicker ? "random" : "bt");
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, study->id);
    db_bind_text(s, 2, name);
    rc = db_step_done(db, s, "registering a simulated rater", err);
    raters[k].db_id = sqlite3_last_insert_rowid(db->db);
  }
  sqlite3_finalize(s);
  return rc;
}

/* The side one rater clicks for one question. Draws 3 uniforms per question
 * at indices 3q, 3q+1, 3q+2 of the (rater, item) stream. */
static const char *decide(const studies_simulate_options *opt, const study_info *study, const sim_rater *r,
                          const sim_item *it, int q, const char *a_side, uint64_t stream) {
  const char *b_side = strcmp(a_side, "left") == 0 ? "right" : "left";
  float reflex = dpo_rng_uniform(opt->seed, stream, 3u * (uint64_t)q);
  float coin = dpo_rng_uniform(opt->seed, stream, 3u * (uint64_t)q + 1);
  if (reflex <= opt->left_bias) return "left";
  if (r->is_clicker) return coin <= 0.5f ? "left" : "right";
  /* A gold item's decoy shows another prompt: an attentive rater always
   * sees it on questions that check the prompt. */
  if (it->is_gold && it->gold_expected && study->questions[q].gold_checked)
    return it->gold_expected == 'a' ? a_side : b_side;
  double d = it->score_a[q] - it->score_b[q];
  double p_a;
  if (r->temperature > 0) p_a = 1.0 / (1.0 + exp(-d / r->temperature));
  else p_a = d > 0 ? 1.0 : d < 0 ? 0.0 : 0.5;
  return coin <= p_a ? a_side : b_side;
}

static int record_votes(studies_db *db, const study_info *study, const studies_simulate_options *opt,
                        const sim_rater *raters, const sim_item *items, int n_items, studies_simulate_result *res,
                        dpo_error *err) {
  int R = opt->raters, per_item = study->votes_per_item < R ? study->votes_per_item : R;
  int *order = malloc((size_t)R * sizeof *order);
  if (!order) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  sqlite3_stmt *ins = NULL, *vote = NULL;
  int rc = db_prepare(db, "INSERT INTO assignments(study_id, item_id, rater_id, external_id, status, work_seconds, "
                          "a_side, side_seed, created_at) VALUES(?1, ?2, ?3, ?4, 'Submitted', ?5, ?6, ?7, "
                          "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                      &ins, err);
  if (rc == DPO_OK)
    rc = db_prepare(db, "INSERT INTO votes(assignment_id, question_id, shown, choice) VALUES(?1, ?2, ?3, ?4)", &vote, err);
  for (int i = 0; i < n_items && rc == DPO_OK; i++) {
    const sim_item *it = &items[i];
    /* This item's raters: the first per_item of a random permutation. */
    dpo_rng rng;
    dpo_rng_init(&rng, opt->seed, dpo_rng_stream_id("sim-item-raters", (uint64_t)it->position, 0));
    for (int k = 0; k < R; k++) order[k] = k;
    for (int k = 0; k < per_item; k++) {
      int j = k + (int)dpo_rng_next_below(&rng, (uint32_t)(R - k));
      int t = order[k];
      order[k] = order[j];
      order[j] = t;
    }
    for (int slot = 0; slot < per_item && rc == DPO_OK; slot++) {
      int k = order[slot];
      const sim_rater *r = &raters[k];
      uint64_t stream = dpo_rng_stream_id("sim-vote", (uint64_t)k, (uint64_t)it->position);
      uint64_t side_seed = studies_seed63(opt->seed, stream);
      const char *a_side = studies_side_from_seed(side_seed);
      /* Work time: lognormal around 6 s for attentive raters, 1.5 s for clickers. */
      float z = dpo_rng_normal(opt->seed, stream, 1000);
      double seconds = (r->is_clicker ? 1.5 : 6.0) * exp(0.5 * z);
      char external[64];
      snprintf(external, sizeof external, "sim-%lld-%lld", (long long)r->db_id, (long long)it->id);
      sqlite3_reset(ins);
      sqlite3_bind_int64(ins, 1, study->id);
      sqlite3_bind_int64(ins, 2, it->id);
      sqlite3_bind_int64(ins, 3, r->db_id);
      db_bind_text(ins, 4, external);
      sqlite3_bind_double(ins, 5, seconds);
      db_bind_text(ins, 6, a_side);
      sqlite3_bind_int64(ins, 7, (int64_t)side_seed);
      rc = db_step_done(db, ins, "recording a simulated assignment", err);
      int64_t assignment = sqlite3_last_insert_rowid(db->db);
      res->n_assignments++;
      for (int q = 0; q < study->n_questions && rc == DPO_OK; q++) {
        const char *shown = decide(opt, study, r, it, q, a_side, stream);
        sqlite3_reset(vote);
        sqlite3_bind_int64(vote, 1, assignment);
        sqlite3_bind_int64(vote, 2, study->questions[q].id);
        db_bind_text(vote, 3, shown);
        db_bind_text(vote, 4, studies_unswap(shown, a_side));
        rc = db_step_done(db, vote, "recording a simulated vote", err);
        res->n_votes++;
        if (strcmp(shown, "left") == 0) res->n_left++;
      }
    }
  }
  sqlite3_finalize(ins);
  sqlite3_finalize(vote);
  free(order);
  return rc;
}

static int check_options(const studies_simulate_options *opt, dpo_error *err) {
  if (opt->raters < 1 || opt->raters > SIM_MAX_RATERS)
    return dpo_fail(err, DPO_ERR_USAGE, "--raters: expected 1 to %d, got %d", SIM_MAX_RATERS, opt->raters);
  if (!(opt->noise >= 0 && opt->noise <= 1e6))
    return dpo_fail(err, DPO_ERR_USAGE, "--noise: expected a non-negative number, got %g", opt->noise);
  if (!(opt->random_share >= 0 && opt->random_share <= 1))
    return dpo_fail(err, DPO_ERR_USAGE, "--random-share: expected 0 to 1, got %g", opt->random_share);
  if (!(opt->left_bias >= 0 && opt->left_bias <= 1))
    return dpo_fail(err, DPO_ERR_USAGE, "--left-bias: expected 0 to 1, got %g", opt->left_bias);
  return DPO_OK;
}

int studies_simulate(studies_db *db, const studies_simulate_options *opt, studies_simulate_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  if (check_options(opt, err)) return DPO_ERR_USAGE;
  const eval_scorer *scorer = eval_find_scorer(opt->scorer ? opt->scorer : "");
  if (!scorer) {
    char names[512] = "";
    for (int i = 0; i < eval_scorer_count(); i++) {
      size_t used = strlen(names);
      snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", eval_scorer_at(i)->name);
    }
    return dpo_fail(err, DPO_ERR_USAGE, "--scorer: unknown scorer \"%s\" (known: %s)", opt->scorer ? opt->scorer : "",
                    names);
  }
  study_info study;
  if (db_find_study(db, opt->study, &study, err)) return DPO_ERR_DATA;
  if (opt->raters < study.votes_per_item)
    return dpo_fail(err, DPO_ERR_USAGE, "--raters: study \"%s\" asks %d votes per item from different raters; got %d raters",
                    study.name, study.votes_per_item, opt->raters);
  sim_item *items = NULL;
  char **paths = NULL, **prompts = NULL;
  int n_items = 0;
  int rc = load_items(db, &study, &items, &n_items, &paths, &prompts, err);
  if (rc == DPO_OK) rc = score_items(scorer, &study, items, n_items, paths, prompts, err);
  for (int i = 0; i < n_items; i++) {
    free(paths[2 * i]);
    free(paths[2 * i + 1]);
    free(prompts[i]);
  }
  free(paths);
  free(prompts);
  sim_rater *raters = rc == DPO_OK ? calloc((size_t)opt->raters, sizeof *raters) : NULL;
  if (rc == DPO_OK && !raters) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  /* All or nothing: one transaction for raters, assignments and votes. */
  if (rc == DPO_OK) rc = db_exec(db, "BEGIN IMMEDIATE", err);
  if (rc == DPO_OK) {
    rc = make_raters(db, &study, opt, raters, res, err);
    if (rc == DPO_OK) rc = record_votes(db, &study, opt, raters, items, n_items, res, err);
    if (rc == DPO_OK) rc = db_flag_extra_votes(db, &study, err);
    if (rc == DPO_OK) rc = db_exec(db, "COMMIT", err);
    if (rc != DPO_OK) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  }
  res->n_raters = rc == DPO_OK ? opt->raters : 0;
  res->n_items = n_items;
  free(raters);
  free(items);
  return rc;
}
