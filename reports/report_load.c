/* Reads what a report needs from a study database: each study's arms,
 * questions, real items (with their images), raters, counted votes and gold
 * answers.
 *
 * Which votes count is the store's rule, the one its view `study_votes`
 * exposes as flags (studies/store.c): a vote counts when its item is not gold,
 * its assignment is not excluded (rejected, too fast) and not extra (beyond
 * the votes asked for). The queries below apply that rule on the base tables
 * rather than the view because the view joins six tables and carries text
 * columns per vote; at a million votes that is most of the report's time. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "reports/report_internal.h"
#include "studies/studies.h"

static char *dup_column(sqlite3_stmt *stmt, int col) {
  const unsigned char *t = sqlite3_column_text(stmt, col);
  return strdup(t ? (const char *)t : "");
}

static int sql_fail(sqlite3 *db, const char *path, const char *what, dpo_error *err) {
  return dpo_fail(err, DPO_ERR_DATA, "%s: %s: %s", path, what, sqlite3_errmsg(db));
}

static int prepare(sqlite3 *db, const char *path, const char *sql, sqlite3_stmt **stmt, dpo_error *err) {
  if (sqlite3_prepare_v2(db, sql, -1, stmt, NULL) != SQLITE_OK) return sql_fail(db, path, "preparing a report query", err);
  return DPO_OK;
}

/* ------------------------------------------------- id -> index lookups */

typedef struct {
  int64_t id;
  int index;
} id_index;

static int compare_id_index(const void *a, const void *b) {
  int64_t x = ((const id_index *)a)->id, y = ((const id_index *)b)->id;
  return (x > y) - (x < y);
}

static int find_index(const id_index *map, int n, int64_t id) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    if (map[mid].id == id) return map[mid].index;
    if (map[mid].id < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

static int compare_string_ptr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --------------------------------------------------------------- study */

static int load_study_row(sqlite3 *db, const char *path, const char *name, report_study *s, dpo_error *err) {
  sqlite3_stmt *stmt;
  const char *sql =
      "SELECT s.id, s.votes_per_item, s.allow_tie, s.arm_a, s.arm_b, aa.model, aa.run_dir, ab.model, ab.run_dir\n"
      "FROM studies s JOIN arms aa ON aa.id = s.arm_a JOIN arms ab ON ab.id = s.arm_b WHERE s.name = ?1";
  if (prepare(db, path, sql, &stmt, err)) return DPO_ERR_DATA;
  sqlite3_bind_text(stmt, 1, name, -1, SQLITE_TRANSIENT);
  int step = sqlite3_step(stmt);
  if (step != SQLITE_ROW) {
    sqlite3_finalize(stmt);
    if (step != SQLITE_DONE) return sql_fail(db, path, "reading studies", err);
    return dpo_fail(err, DPO_ERR_DATA, "%s: no study named \"%s\"", path, name);
  }
  s->name = strdup(name);
  s->db_id = sqlite3_column_int64(stmt, 0);
  s->votes_per_item = sqlite3_column_int(stmt, 1);
  s->allow_tie = sqlite3_column_int(stmt, 2);
  s->arm_a = sqlite3_column_int64(stmt, 3);
  s->arm_b = sqlite3_column_int64(stmt, 4);
  s->model_a = dup_column(stmt, 5);
  s->run_a = dup_column(stmt, 6);
  s->model_b = dup_column(stmt, 7);
  s->run_b = dup_column(stmt, 8);
  sqlite3_finalize(stmt);
  return DPO_OK;
}

static int load_questions(sqlite3 *db, const char *path, report_study *s, dpo_error *err) {
  sqlite3_stmt *stmt;
  if (prepare(db, path, "SELECT id, key, text, gold_checked FROM questions WHERE study_id = ?1 ORDER BY position",
              &stmt, err))
    return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, s->db_id);
  int step;
  while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (s->n_questions == REPORT_MAX_QUESTIONS) {
      sqlite3_finalize(stmt);
      return dpo_fail(err, DPO_ERR_DATA, "%s: study \"%s\" has more than %d questions", path, s->name,
                      REPORT_MAX_QUESTIONS);
    }
    report_question *q = &s->questions[s->n_questions++];
    q->db_id = sqlite3_column_int64(stmt, 0);
    const unsigned char *key = sqlite3_column_text(stmt, 1);
    snprintf(q->key, sizeof q->key, "%s", key ? (const char *)key : "");
    q->text = dup_column(stmt, 2);
    q->gold_checked = sqlite3_column_int(stmt, 3);
  }
  sqlite3_finalize(stmt);
  if (step != SQLITE_DONE) return sql_fail(db, path, "reading questions", err);
  return DPO_OK;
}

static int load_items(sqlite3 *db, const char *path, report_study *s, dpo_error *err) {
  sqlite3_stmt *stmt;
  const char *sql =
      "SELECT i.id, i.public_id, i.prompt_set, i.prompt_id, i.prompt, i.category, i.seed, i.image_index, i.a_side,\n"
      "       ia.path, ib.path\n"
      "FROM items i JOIN images ia ON ia.id = i.image_a JOIN images ib ON ib.id = i.image_b\n"
      "WHERE i.study_id = ?1 AND i.is_gold = 0 ORDER BY i.position";
  if (prepare(db, path, sql, &stmt, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, s->db_id);
  int cap = 0, step;
  while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (s->n_items == cap) {
      cap = cap ? 2 * cap : 256;
      report_item *grown = realloc(s->items, sizeof(report_item) * (size_t)cap);
      if (!grown) {
        sqlite3_finalize(stmt);
        return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading items", path);
      }
      s->items = grown;
    }
    report_item *it = &s->items[s->n_items++];
    memset(it, 0, sizeof *it);
    it->db_id = sqlite3_column_int64(stmt, 0);
    it->public_id = dup_column(stmt, 1);
    it->prompt_set = dup_column(stmt, 2);
    it->prompt_id = dup_column(stmt, 3);
    it->prompt = dup_column(stmt, 4);
    it->category = dup_column(stmt, 5);
    it->seed = sqlite3_column_int64(stmt, 6);
    it->image_index = sqlite3_column_int64(stmt, 7);
    const unsigned char *side = sqlite3_column_text(stmt, 8);
    it->a_on_left = side && strcmp((const char *)side, "left") == 0;
    it->image_a = dup_column(stmt, 9);
    it->image_b = dup_column(stmt, 10);
  }
  sqlite3_finalize(stmt);
  if (step != SQLITE_DONE) return sql_fail(db, path, "reading items", err);
  return DPO_OK;
}

/* Prompts (bootstrap clusters: prompt_set + prompt_id) and categories, each
 * numbered densely. */
typedef struct {
  const char *set, *id;
  int item;
} prompt_key;

static int compare_prompt_key(const void *a, const void *b) {
  const prompt_key *x = a, *y = b;
  int c = strcmp(x->set, y->set);
  if (c == 0) c = strcmp(x->id, y->id);
  if (c == 0) c = (x->item > y->item) - (x->item < y->item);
  return c;
}

static int index_prompts_and_categories(report_study *s, dpo_error *err) {
  int n = s->n_items;
  s->item_prompt = malloc(sizeof(int) * (size_t)(n ? n : 1));
  prompt_key *keys = malloc(sizeof(prompt_key) * (size_t)(n ? n : 1));
  char **cats = malloc(sizeof(char *) * (size_t)(n ? n : 1));
  if (!s->item_prompt || !keys || !cats) {
    free(keys);
    free(cats);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory indexing %d items", n);
  }
  for (int i = 0; i < n; i++) keys[i] = (prompt_key){s->items[i].prompt_set, s->items[i].prompt_id, i};
  qsort(keys, (size_t)n, sizeof *keys, compare_prompt_key);
  s->n_prompts = 0;
  for (int k = 0; k < n; k++) {
    if (k > 0 && (strcmp(keys[k].set, keys[k - 1].set) != 0 || strcmp(keys[k].id, keys[k - 1].id) != 0))
      s->n_prompts++;
    s->item_prompt[keys[k].item] = s->n_prompts;
  }
  if (n > 0) s->n_prompts++;
  /* keys are sorted by prompt set first: list each set once */
  size_t len = 1;
  for (int k = 0; k < n; k++)
    if (k == 0 || strcmp(keys[k].set, keys[k - 1].set) != 0) len += strlen(keys[k].set) + 2;
  s->prompt_sets = malloc(len);
  if (!s->prompt_sets) {
    free(keys);
    free(cats);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory indexing prompt sets");
  }
  s->prompt_sets[0] = '\0';
  for (int k = 0; k < n; k++)
    if (k == 0 || strcmp(keys[k].set, keys[k - 1].set) != 0) {
      if (k > 0) strcat(s->prompt_sets, ", ");
      strcat(s->prompt_sets, keys[k].set);
    }
  free(keys);

  for (int i = 0; i < n; i++) cats[i] = s->items[i].category;
  qsort(cats, (size_t)n, sizeof *cats, compare_string_ptr);
  int n_cats = 0;
  for (int i = 0; i < n; i++)
    if (n_cats == 0 || strcmp(cats[i], cats[n_cats - 1]) != 0) cats[n_cats++] = cats[i];
  s->categories = malloc(sizeof(char *) * (size_t)(n_cats ? n_cats : 1));
  s->category_items = calloc((size_t)(n_cats ? n_cats : 1), sizeof(int));
  if (!s->categories || !s->category_items) {
    free(cats);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory indexing categories");
  }
  for (int c = 0; c < n_cats; c++) s->categories[c] = strdup(cats[c]);
  s->n_categories = n_cats;
  for (int i = 0; i < n; i++) {
    char *key = s->items[i].category;
    char **found = bsearch(&key, s->categories, (size_t)n_cats, sizeof(char *), compare_string_ptr);
    s->items[i].category_index = (int)(found - s->categories);
    s->category_items[s->items[i].category_index]++;
  }
  free(cats);
  return DPO_OK;
}

static int load_raters(sqlite3 *db, const char *path, report_study *s, dpo_error *err) {
  sqlite3_stmt *stmt;
  if (prepare(db, path, "SELECT id, source, external_id FROM raters WHERE study_id = ?1 ORDER BY id", &stmt, err))
    return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, s->db_id);
  int cap = 0, step;
  while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (s->n_raters == cap) {
      cap = cap ? 2 * cap : 64;
      char **names = realloc(s->raters, sizeof(char *) * (size_t)cap);
      if (names) s->raters = names;
      int64_t *ids = realloc(s->rater_db_ids, sizeof(int64_t) * (size_t)cap);
      if (ids) s->rater_db_ids = ids;
      if (!names || !ids) {
        sqlite3_finalize(stmt);
        return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading raters", path);
      }
    }
    const unsigned char *src = sqlite3_column_text(stmt, 1), *ext = sqlite3_column_text(stmt, 2);
    size_t len = strlen(src ? (const char *)src : "") + strlen(ext ? (const char *)ext : "") + 2;
    char *label = malloc(len);
    if (label) snprintf(label, len, "%s:%s", src ? (const char *)src : "", ext ? (const char *)ext : "");
    s->rater_db_ids[s->n_raters] = sqlite3_column_int64(stmt, 0);
    s->raters[s->n_raters++] = label;
  }
  sqlite3_finalize(stmt);
  if (step != SQLITE_DONE) return sql_fail(db, path, "reading raters", err);
  return DPO_OK;
}

static report_question *question_by_id(report_study *s, int64_t id) {
  for (int q = 0; q < s->n_questions; q++)
    if (s->questions[q].db_id == id) return &s->questions[q];
  return NULL;
}

static stats_choice parse_choice(const unsigned char *text) {
  if (text && text[0] == 'a') return STATS_CHOICE_A;
  if (text && text[0] == 'b') return STATS_CHOICE_B;
  return STATS_CHOICE_TIE;
}

static int push_vote(report_question *q, stats_vote v) {
  if (q->n_votes == q->cap_votes) {
    int cap = q->cap_votes ? 2 * q->cap_votes : 1024;
    stats_vote *grown = realloc(q->votes, sizeof(stats_vote) * (size_t)cap);
    if (!grown) return 0;
    q->votes = grown;
    q->cap_votes = cap;
  }
  q->votes[q->n_votes++] = v;
  return 1;
}

static int push_gold(report_question *q, stats_gold_check g) {
  if (q->n_gold == q->cap_gold) {
    int cap = q->cap_gold ? 2 * q->cap_gold : 64;
    stats_gold_check *grown = realloc(q->gold, sizeof(stats_gold_check) * (size_t)cap);
    if (!grown) return 0;
    q->gold = grown;
    q->cap_gold = cap;
  }
  q->gold[q->n_gold++] = g;
  return 1;
}

/* Whether this study holds most of the database's assignments (ids are
 * dense, so MAX(id) counts them all without a scan). */
static int study_dominates(sqlite3 *db, const char *path, const report_study *s, int *dominates, dpo_error *err) {
  sqlite3_stmt *stmt;
  if (prepare(db, path,
              "SELECT (SELECT COUNT(*) FROM assignments WHERE study_id = ?1), (SELECT MAX(id) FROM assignments)",
              &stmt, err))
    return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, s->db_id);
  if (sqlite3_step(stmt) != SQLITE_ROW) {
    sqlite3_finalize(stmt);
    return sql_fail(db, path, "counting assignments", err);
  }
  *dominates = 2 * sqlite3_column_int64(stmt, 0) >= sqlite3_column_int64(stmt, 1);
  sqlite3_finalize(stmt);
  return DPO_OK;
}

/* The counted votes. B was on the left when the assignment shows A on the
 * right (local raters each get their own sides). The two queries return the
 * same rows; when the study holds most of the database, reading the votes
 * table in order and looking each assignment up is about a third faster than
 * SQLite's own plan (assignments of the study, then their votes by index). */
static int load_votes(sqlite3 *db, const char *path, report_study *s, const id_index *item_map,
                      const id_index *rater_map, long *n_read, dpo_error *err) {
  static const char *const by_study =
      "SELECT a.item_id, a.rater_id, a.a_side = 'right', v.question_id, v.choice\n"
      "FROM votes v JOIN assignments a ON a.id = v.assignment_id\n"
      "WHERE a.study_id = ?1 AND a.excluded IS NULL AND a.extra = 0";
  static const char *const votes_first =
      "SELECT a.item_id, a.rater_id, a.a_side = 'right', v.question_id, v.choice\n"
      "FROM votes v CROSS JOIN assignments a ON a.id = v.assignment_id\n"
      "WHERE a.study_id = ?1 AND a.excluded IS NULL AND a.extra = 0";
  int dominates = 0;
  if (study_dominates(db, path, s, &dominates, err)) return DPO_ERR_DATA;
  sqlite3_stmt *stmt;
  if (prepare(db, path, dominates ? votes_first : by_study, &stmt, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, s->db_id);
  int step;
  while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
    /* Gold items are not in item_map (they are not real items): skipping
     * them here is the view's is_gold = 0, without joining items. */
    int item = find_index(item_map, s->n_items, sqlite3_column_int64(stmt, 0));
    if (item < 0) continue;
    int rater = find_index(rater_map, s->n_raters, sqlite3_column_int64(stmt, 1));
    report_question *q = question_by_id(s, sqlite3_column_int64(stmt, 3));
    if (rater < 0 || !q) {
      sqlite3_finalize(stmt);
      return dpo_fail(err, DPO_ERR_DATA, "%s: study \"%s\": a vote refers to an unknown rater or question",
                      path, s->name);
    }
    stats_vote v = {item, rater, parse_choice(sqlite3_column_text(stmt, 4)), sqlite3_column_int(stmt, 2)};
    if (!push_vote(q, v)) {
      sqlite3_finalize(stmt);
      return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading votes", path);
    }
    (*n_read)++;
  }
  sqlite3_finalize(stmt);
  if (step != SQLITE_DONE) return sql_fail(db, path, "reading votes", err);
  return DPO_OK;
}

/* Gold answers on questions that check gold, from every assignment,
 * excluded ones included: failing gold is why assignments get rejected, and
 * leaving those out would report a pass rate of nearly 100%. */
static int load_gold(sqlite3 *db, const char *path, report_study *s, const id_index *rater_map, dpo_error *err) {
  sqlite3_stmt *stmt;
  const char *sql =
      "SELECT a.rater_id, v.question_id, v.choice = g.expected\n"
      "FROM votes v JOIN assignments a ON a.id = v.assignment_id JOIN gold_items g ON g.item_id = a.item_id\n"
      "WHERE a.study_id = ?1";
  if (prepare(db, path, sql, &stmt, err)) return DPO_ERR_DATA;
  sqlite3_bind_int64(stmt, 1, s->db_id);
  int step;
  while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
    int rater = find_index(rater_map, s->n_raters, sqlite3_column_int64(stmt, 0));
    report_question *q = question_by_id(s, sqlite3_column_int64(stmt, 1));
    if (rater < 0 || !q || !q->gold_checked) continue;
    if (!push_gold(q, (stats_gold_check){rater, sqlite3_column_int(stmt, 2)})) {
      sqlite3_finalize(stmt);
      return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory reading gold answers", path);
    }
  }
  sqlite3_finalize(stmt);
  if (step != SQLITE_DONE) return sql_fail(db, path, "reading gold answers", err);
  return DPO_OK;
}

static id_index *make_map(int n, const int64_t *ids_or_null, const report_item *items) {
  id_index *map = malloc(sizeof(id_index) * (size_t)(n ? n : 1));
  if (!map) return NULL;
  for (int i = 0; i < n; i++) map[i] = (id_index){ids_or_null ? ids_or_null[i] : items[i].db_id, i};
  qsort(map, (size_t)n, sizeof *map, compare_id_index);
  return map;
}

static int load_study(sqlite3 *db, const char *path, const char *name, report_study *s, long *n_votes,
                      dpo_error *err) {
  int rc;
  if ((rc = load_study_row(db, path, name, s, err)) || (rc = load_questions(db, path, s, err)) ||
      (rc = load_items(db, path, s, err)) || (rc = index_prompts_and_categories(s, err)) ||
      (rc = load_raters(db, path, s, err)))
    return rc;
  id_index *item_map = make_map(s->n_items, NULL, s->items);
  id_index *rater_map = make_map(s->n_raters, s->rater_db_ids, NULL);
  if (!item_map || !rater_map) rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  if (rc == DPO_OK) rc = load_votes(db, path, s, item_map, rater_map, n_votes, err);
  if (rc == DPO_OK) rc = load_gold(db, path, s, rater_map, err);
  free(item_map);
  free(rater_map);
  return rc;
}

int report_load(const report_options *opt, report_data *data, dpo_error *err) {
  memset(data, 0, sizeof *data);
  data->seed = opt->seed;
  data->n_resamples = opt->n_resamples;
  for (int i = 0; i < opt->n_studies; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(opt->studies[i], opt->studies[j]) == 0)
        return dpo_fail(err, DPO_ERR_USAGE, "study \"%s\" is named twice", opt->studies[i]);
  studies_db *sdb = NULL;
  int rc = studies_open(opt->db_path, 0, &sdb, err);
  if (rc != DPO_OK) return rc;
  sqlite3 *db = studies_sqlite(sdb);
  data->studies = calloc((size_t)(opt->n_studies ? opt->n_studies : 1), sizeof(report_study));
  if (!data->studies) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  /* One read transaction: every study is read from the same snapshot even
   * while a rating server keeps writing votes. */
  if (rc == DPO_OK && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
    rc = sql_fail(db, opt->db_path, "starting a read transaction", err);
  long n_votes = 0;
  for (int i = 0; rc == DPO_OK && i < opt->n_studies; i++) {
    data->n_studies++;
    rc = load_study(db, opt->db_path, opt->studies[i], &data->studies[i], &n_votes, err);
  }
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  studies_close(sdb);
  return rc;
}

static void free_question(report_question *q) {
  free(q->text);
  free(q->votes);
  free(q->items);
  free(q->by_category);
  free(q->raters);
  free(q->gold);
  free(q->gold_by_rater);
}

static void free_study(report_study *s) {
  for (int i = 0; i < s->n_items; i++) {
    report_item *it = &s->items[i];
    free(it->public_id);
    free(it->prompt_set);
    free(it->prompt_id);
    free(it->prompt);
    free(it->category);
    free(it->image_a);
    free(it->image_b);
  }
  free(s->items);
  free(s->item_prompt);
  free(s->prompt_sets);
  for (int c = 0; c < s->n_categories; c++) free(s->categories[c]);
  free(s->categories);
  free(s->category_items);
  for (int r = 0; r < s->n_raters; r++) free(s->raters[r]);
  free(s->raters);
  free(s->rater_db_ids);
  for (int q = 0; q < s->n_questions; q++) free_question(&s->questions[q]);
  free(s->name);
  free(s->model_a);
  free(s->model_b);
  free(s->run_a);
  free(s->run_b);
}

void report_free(report_data *data) {
  for (int i = 0; i < data->n_studies; i++) free_study(&data->studies[i]);
  free(data->studies);
  for (int b = 0; b < data->n_bt; b++) {
    report_bt *bt = &data->bt[b];
    free(bt->arm_ids);
    for (int a = 0; a < bt->n_arms; a++) free(bt->arm_labels[a]);
    free(bt->arm_labels);
    free(bt->wins);
    free(bt->scores);
  }
  free(data->bt);
  memset(data, 0, sizeof *data);
}
