/* `dpo study create`: pairs the images of two runs into items, decides each
 * item's sides from a seed, mixes in gold items, and records it all. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "studies/internal.h"

/* Missing pairs listed in an error, per side; the rest are counted. */
#define MAX_LISTED_MISSING 20

static int parse_questions(const char *list, char keys[STUDIES_MAX_QUESTIONS][16], int *n, dpo_error *err) {
  *n = 0;
  const char *p = list;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char key[16];
    if (len == 0 || len >= sizeof key)
      return dpo_fail(err, DPO_ERR_USAGE, "--questions: expected a comma list of q1, q2, q3, edit; got \"%s\"", list);
    memcpy(key, p, len);
    key[len] = '\0';
    if (!studies_question_text(key))
      return dpo_fail(err, DPO_ERR_USAGE, "--questions: unknown question \"%s\" (expected q1, q2, q3 or edit)", key);
    for (int i = 0; i < *n; i++)
      if (strcmp(keys[i], key) == 0) return dpo_fail(err, DPO_ERR_USAGE, "--questions: \"%s\" given twice", key);
    if (*n >= STUDIES_MAX_QUESTIONS) return dpo_fail(err, DPO_ERR_USAGE, "--questions: too many questions");
    memcpy(keys[(*n)++], key, len + 1);
    p = comma ? comma + 1 : p + len;
    if (comma && !*p) return dpo_fail(err, DPO_ERR_USAGE, "--questions: trailing comma in \"%s\"", list);
  }
  if (*n == 0) return dpo_fail(err, DPO_ERR_USAGE, "--questions: no question given");
  for (int i = 0; i < *n; i++)
    if (strcmp(keys[i], "edit") == 0 && *n > 1)
      return dpo_fail(err, DPO_ERR_USAGE, "--questions: \"edit\" is asked alone (TEd-Bench studies)");
  return DPO_OK;
}

static int compare_keys(const studies_manifest_entry *x, const studies_manifest_entry *y) {
  int c = strcmp(x->prompt_set, y->prompt_set);
  if (c) return c;
  c = strcmp(x->prompt_id, y->prompt_id);
  if (c) return c;
  if (x->seed != y->seed) return x->seed < y->seed ? -1 : 1;
  if (x->image_index != y->image_index) return x->image_index < y->image_index ? -1 : 1;
  return 0;
}

static void append_missing(char *buf, size_t n, int *count, const studies_manifest_entry *e) {
  if (*count < MAX_LISTED_MISSING) {
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "\n  %s/%s seed %lld image %lld", e->prompt_set, e->prompt_id, (long long)e->seed,
             (long long)e->image_index);
  }
  (*count)++;
}

/* Pairs entries of two sorted manifests by (prompt set, prompt id, seed,
 * image index); pairs[i] = {index in a, index in b}. Any unpaired entry
 * refuses the study, listing what each side lacks. */
static int pair_runs(const studies_manifest *a, const studies_manifest *b, int (*pairs)[2], int *n_pairs,
                     dpo_error *err) {
  char missing_in_b[4096] = "", missing_in_a[4096] = "";
  int n_missing_b = 0, n_missing_a = 0;
  int i = 0, j = 0;
  *n_pairs = 0;
  while (i < a->n_entries || j < b->n_entries) {
    int c = i >= a->n_entries ? 1 : j >= b->n_entries ? -1 : compare_keys(&a->entries[i], &b->entries[j]);
    if (c < 0) {
      append_missing(missing_in_b, sizeof missing_in_b, &n_missing_b, &a->entries[i++]);
    } else if (c > 0) {
      append_missing(missing_in_a, sizeof missing_in_a, &n_missing_a, &b->entries[j++]);
    } else {
      if (strcmp(a->entries[i].prompt, b->entries[j].prompt) != 0)
        return dpo_fail(err, DPO_ERR_DATA, "%s/manifest.jsonl:%d and %s/manifest.jsonl:%d: same prompt id %s but different prompt text",
                        a->run_dir, a->entries[i].line, b->run_dir, b->entries[j].line, a->entries[i].prompt_id);
      pairs[*n_pairs][0] = i++;
      pairs[*n_pairs][1] = j++;
      (*n_pairs)++;
    }
  }
  if (n_missing_a || n_missing_b) {
    char more_a[64] = "", more_b[64] = "";
    if (n_missing_b > MAX_LISTED_MISSING) snprintf(more_b, sizeof more_b, "\n  ... and %d more", n_missing_b - MAX_LISTED_MISSING);
    if (n_missing_a > MAX_LISTED_MISSING) snprintf(more_a, sizeof more_a, "\n  ... and %d more", n_missing_a - MAX_LISTED_MISSING);
    return dpo_fail(err, DPO_ERR_DATA, "runs do not match: %d image(s) missing in B (%s):%s%s\n%d image(s) missing in A (%s):%s%s",
                    n_missing_b, b->run_dir, missing_in_b, more_b, n_missing_a, a->run_dir, missing_in_a, more_a);
  }
  return DPO_OK;
}

/* Hashes an image, checks it against the manifest, and registers it by
 * content hash; *image_id is its row in images. */
static int register_image(studies_db *db, const char *run_dir, const char *file, const char *want_sha256,
                          const char *where, int64_t *image_id, dpo_error *err) {
  char path[4300], abs_path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", run_dir, file);
  char sha[65];
  if (dpo_sha256_file(path, sha, err)) {
    dpo_error_prefix(err, "%s", where);
    return DPO_ERR_DATA;
  }
  if (want_sha256 && strcmp(sha, want_sha256) != 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"sha256\": %s has content hash %s, the manifest says %s", where, path,
                    sha, want_sha256);
  uint8_t magic[16] = {0};
  FILE *f = fopen(path, "rb");
  size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
  if (f) fclose(f);
  dpo_image_format format = dpo_image_detect(magic, got);
  if (format == DPO_IMAGE_FORMAT_UNKNOWN)
    return dpo_fail(err, DPO_ERR_DATA, "%s: %s is neither PNG nor JPEG (by its first bytes)", where, path);
  if (!realpath(path, abs_path)) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot resolve %s", where, path);
  sqlite3_stmt *stmt;
  if (db_prepare(db, "INSERT INTO images(sha256, path, format) VALUES(?1, ?2, ?3) ON CONFLICT(sha256) DO UPDATE SET path = excluded.path RETURNING id",
                 &stmt, err))
    return DPO_ERR_DATA;
  db_bind_text(stmt, 1, sha);
  db_bind_text(stmt, 2, abs_path);
  db_bind_text(stmt, 3, format == DPO_IMAGE_FORMAT_PNG ? "png" : "jpeg");
  int rc = sqlite3_step(stmt) == SQLITE_ROW ? DPO_OK : db_fail(db, err, "registering an image");
  if (rc == DPO_OK) *image_id = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return rc;
}

static int register_arm(studies_db *db, const studies_manifest *m, int64_t *arm_id, dpo_error *err) {
  char abs_dir[PATH_MAX];
  if (!realpath(m->run_dir, abs_dir)) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot resolve the run folder", m->run_dir);
  sqlite3_stmt *stmt;
  if (db_prepare(db, "INSERT INTO arms(manifest_sha256, run_dir, model, n_images) VALUES(?1, ?2, ?3, ?4) "
                     "ON CONFLICT(manifest_sha256) DO UPDATE SET run_dir = excluded.run_dir RETURNING id",
                 &stmt, err))
    return DPO_ERR_DATA;
  db_bind_text(stmt, 1, m->manifest_sha256);
  db_bind_text(stmt, 2, abs_dir);
  db_bind_text(stmt, 3, m->entries[0].model);
  sqlite3_bind_int(stmt, 4, m->n_entries);
  int rc = sqlite3_step(stmt) == SQLITE_ROW ? DPO_OK : db_fail(db, err, "registering a run");
  if (rc == DPO_OK) *arm_id = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return rc;
}

/* One item ready to insert. */
typedef struct {
  const studies_manifest_entry *entry;   /* prompt, seed, ... */
  int64_t image_a, image_b, image_source;
  int is_gold;
  const char *decoy_prompt_id;
} pending_item;

static int insert_items(studies_db *db, int64_t study_id, const char *name, uint64_t seed, pending_item *items,
                        int n_items, studies_create_result *res, dpo_error *err) {
  /* Shuffled order (Fisher-Yates): gold items land anywhere. */
  int *order = malloc(sizeof *order * (size_t)n_items);
  if (!order) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int i = 0; i < n_items; i++) order[i] = i;
  dpo_rng rng;
  dpo_rng_init(&rng, seed, dpo_rng_stream_id("study-order", 0, 0));
  for (int i = n_items - 1; i > 0; i--) {
    int j = (int)dpo_rng_next_below(&rng, (uint32_t)i + 1);
    int t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  sqlite3_stmt *ins, *gold;
  if (db_prepare(db, "INSERT INTO items(study_id, public_id, position, prompt_set, prompt_id, prompt, category, seed, "
                     "image_index, image_a, image_b, image_source, a_side, side_seed, is_gold) "
                     "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
                 &ins, err)) {
    free(order);
    return DPO_ERR_DATA;
  }
  if (db_prepare(db, "INSERT INTO gold_items(item_id, expected, kind, decoy_prompt_id) VALUES(?1, 'a', 'other_prompt', ?2)",
                 &gold, err)) {
    sqlite3_finalize(ins);
    free(order);
    return DPO_ERR_DATA;
  }
  int rc = DPO_OK;
  for (int pos = 0; pos < n_items && rc == DPO_OK; pos++) {
    const pending_item *it = &items[order[pos]];
    const studies_manifest_entry *e = it->entry;
    /* An opaque id: says nothing about the arm, the side or gold-ness. */
    char id_text[512], hex[65], public_id[16];
    snprintf(id_text, sizeof id_text, "%s\n%llu\n%d", name, (unsigned long long)seed, pos);
    dpo_sha256_hex(id_text, strlen(id_text), hex);
    snprintf(public_id, sizeof public_id, "%.12s", hex);
    uint64_t side_seed = studies_seed63(seed, dpo_rng_stream_id("study-side", (uint64_t)pos, 0));
    const char *a_side = studies_side_from_seed(side_seed);
    if (strcmp(a_side, "left") == 0 && !it->is_gold) res->n_a_left++;
    sqlite3_reset(ins);
    sqlite3_bind_int64(ins, 1, study_id);
    db_bind_text(ins, 2, public_id);
    sqlite3_bind_int(ins, 3, pos);
    db_bind_text(ins, 4, e->prompt_set);
    db_bind_text(ins, 5, e->prompt_id);
    db_bind_text(ins, 6, e->prompt);
    db_bind_text(ins, 7, e->category);
    sqlite3_bind_int64(ins, 8, e->seed);
    sqlite3_bind_int64(ins, 9, e->image_index);
    sqlite3_bind_int64(ins, 10, it->image_a);
    sqlite3_bind_int64(ins, 11, it->image_b);
    if (it->image_source) sqlite3_bind_int64(ins, 12, it->image_source);
    else sqlite3_bind_null(ins, 12);
    db_bind_text(ins, 13, a_side);
    sqlite3_bind_int64(ins, 14, (int64_t)side_seed);
    sqlite3_bind_int(ins, 15, it->is_gold);
    rc = db_step_done(db, ins, "inserting an item", err);
    if (rc == DPO_OK && it->is_gold) {
      sqlite3_reset(gold);
      sqlite3_bind_int64(gold, 1, sqlite3_last_insert_rowid(db->db));
      db_bind_text(gold, 2, it->decoy_prompt_id);
      rc = db_step_done(db, gold, "inserting a gold item", err);
    }
  }
  sqlite3_finalize(ins);
  sqlite3_finalize(gold);
  free(order);
  return rc;
}

static int insert_study(studies_db *db, const studies_create_options *opt, int64_t arm_a, int64_t arm_b,
                        char keys[STUDIES_MAX_QUESTIONS][16], int n_keys, int64_t *study_id, dpo_error *err) {
  sqlite3_stmt *stmt;
  if (db_prepare(db, "INSERT INTO studies(name, arm_a, arm_b, votes_per_item, allow_tie, seed, created_at) "
                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                 &stmt, err))
    return DPO_ERR_DATA;
  db_bind_text(stmt, 1, opt->name);
  sqlite3_bind_int64(stmt, 2, arm_a);
  sqlite3_bind_int64(stmt, 3, arm_b);
  sqlite3_bind_int(stmt, 4, opt->votes);
  sqlite3_bind_int(stmt, 5, opt->allow_tie ? 1 : 0);
  sqlite3_bind_int64(stmt, 6, (int64_t)(opt->seed & (uint64_t)INT64_MAX));
  int rc = db_step_done(db, stmt, "inserting the study", err);
  sqlite3_finalize(stmt);
  if (rc) return rc;
  *study_id = sqlite3_last_insert_rowid(db->db);
  if (db_prepare(db, "INSERT INTO questions(study_id, key, text, position, gold_checked) VALUES(?1, ?2, ?3, ?4, ?5)", &stmt,
                 err))
    return DPO_ERR_DATA;
  for (int i = 0; i < n_keys && rc == DPO_OK; i++) {
    sqlite3_reset(stmt);
    sqlite3_bind_int64(stmt, 1, *study_id);
    db_bind_text(stmt, 2, keys[i]);
    db_bind_text(stmt, 3, studies_question_text(keys[i]));
    sqlite3_bind_int(stmt, 4, i);
    sqlite3_bind_int(stmt, 5, strcmp(keys[i], "q2") != 0);
    rc = db_step_done(db, stmt, "inserting a question", err);
  }
  sqlite3_finalize(stmt);
  return rc;
}

/* Registers every image of both runs and builds the real and gold items. */
static int build_items(studies_db *db, const studies_create_options *opt, const studies_manifest *ma,
                       const studies_manifest *mb, int (*pairs)[2], int n_pairs, int edit, pending_item *items,
                       dpo_error *err) {
  char where[2300];
  for (int p = 0; p < n_pairs; p++) {
    const studies_manifest_entry *ea = &ma->entries[pairs[p][0]], *eb = &mb->entries[pairs[p][1]];
    pending_item *it = &items[p];
    memset(it, 0, sizeof *it);
    it->entry = ea;
    snprintf(where, sizeof where, "%s/manifest.jsonl:%d", ma->run_dir, ea->line);
    if (register_image(db, ma->run_dir, ea->file, ea->sha256, where, &it->image_a, err)) return DPO_ERR_DATA;
    if (edit) {
      if (!ea->source_image)
        return dpo_fail(err, DPO_ERR_DATA, "%s: key \"settings.source_image\": an edit study needs the original image", where);
      if (register_image(db, ma->run_dir, ea->source_image, NULL, where, &it->image_source, err)) return DPO_ERR_DATA;
    }
    snprintf(where, sizeof where, "%s/manifest.jsonl:%d", mb->run_dir, eb->line);
    if (register_image(db, mb->run_dir, eb->file, eb->sha256, where, &it->image_b, err)) return DPO_ERR_DATA;
    if (edit) {
      int64_t source_b = 0;
      if (!eb->source_image)
        return dpo_fail(err, DPO_ERR_DATA, "%s: key \"settings.source_image\": an edit study needs the original image", where);
      if (register_image(db, mb->run_dir, eb->source_image, NULL, where, &source_b, err)) return DPO_ERR_DATA;
      if (source_b != it->image_source)
        return dpo_fail(err, DPO_ERR_DATA, "%s: key \"settings.source_image\": not the same original image as run A's", where);
    }
  }
  /* Gold: a real pair's image from one arm against the same arm's image for
   * another prompt; whoever reads the prompt can tell which fits. */
  dpo_rng rng;
  dpo_rng_init(&rng, opt->seed, dpo_rng_stream_id("study-gold", 0, 0));
  for (int g = 0; g < opt->gold; g++) {
    int p = (int)dpo_rng_next_below(&rng, (uint32_t)n_pairs);
    int d = -1;
    for (int tries = 0; tries < 1000 && d < 0; tries++) {
      int c = (int)dpo_rng_next_below(&rng, (uint32_t)n_pairs);
      if (strcmp(items[c].entry->prompt, items[p].entry->prompt) != 0) d = c;
    }
    if (d < 0) return dpo_fail(err, DPO_ERR_DATA, "--gold: gold items need at least two different prompts in the runs");
    int from_b = (int)(dpo_rng_next_u32(&rng) & 1u);
    pending_item *it = &items[n_pairs + g];
    *it = items[p];
    it->image_a = from_b ? items[p].image_b : items[p].image_a;
    it->image_b = from_b ? items[d].image_b : items[d].image_a;
    it->is_gold = 1;
    it->decoy_prompt_id = items[d].entry->prompt_id;
  }
  return DPO_OK;
}

static int create_in_transaction(studies_db *db, const studies_create_options *opt, char keys[][16], int n_keys,
                                 const studies_manifest *ma, const studies_manifest *mb, int (*pairs)[2], int n_pairs,
                                 int edit, studies_create_result *res, dpo_error *err) {
  int n_items = n_pairs + opt->gold;
  pending_item *items = calloc((size_t)n_items, sizeof *items);
  if (!items) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  int64_t arm_a = 0, arm_b = 0, study_id = 0;
  int rc = build_items(db, opt, ma, mb, pairs, n_pairs, edit, items, err);
  if (rc == DPO_OK) rc = register_arm(db, ma, &arm_a, err);
  if (rc == DPO_OK) rc = register_arm(db, mb, &arm_b, err);
  if (rc == DPO_OK) rc = insert_study(db, opt, arm_a, arm_b, keys, n_keys, &study_id, err);
  if (rc == DPO_OK) rc = insert_items(db, study_id, opt->name, opt->seed & (uint64_t)INT64_MAX, items, n_items, res, err);
  free(items);
  res->n_items = n_pairs;
  res->n_gold = opt->gold;
  return rc;
}

int studies_create(studies_db *db, const studies_create_options *opt, studies_create_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  char keys[STUDIES_MAX_QUESTIONS][16];
  int n_keys = 0;
  if (!opt->name || !*opt->name || strlen(opt->name) > 200)
    return dpo_fail(err, DPO_ERR_USAGE, "--name: expected a study name of 1 to 200 characters");
  if (opt->votes < 1 || opt->votes > 1000) return dpo_fail(err, DPO_ERR_USAGE, "--votes: expected 1 to 1000");
  if (opt->gold < 0 || opt->gold > 100000) return dpo_fail(err, DPO_ERR_USAGE, "--gold: expected 0 to 100000");
  if (parse_questions(opt->questions, keys, &n_keys, err)) return DPO_ERR_USAGE;
  int edit = strcmp(keys[0], "edit") == 0;
  if (opt->gold > 0 && n_keys == 1 && strcmp(keys[0], "q2") == 0)
    return dpo_fail(err, DPO_ERR_USAGE, "--gold: gold items check the prompt, and q2 (visual appeal) ignores it");
  study_info existing;
  dpo_error ignored;
  if (db_find_study(db, opt->name, &existing, &ignored) == DPO_OK)
    return dpo_fail(err, DPO_ERR_DATA, "%s: a study named \"%s\" already exists", db->path, opt->name);

  studies_manifest ma, mb;
  if (studies_manifest_load(opt->run_a, &ma, err)) return DPO_ERR_DATA;
  if (studies_manifest_load(opt->run_b, &mb, err)) {
    studies_manifest_free(&ma);
    return DPO_ERR_DATA;
  }
  int n_max = ma.n_entries < mb.n_entries ? ma.n_entries : mb.n_entries;
  int (*pairs)[2] = malloc(sizeof *pairs * (size_t)(n_max + 1));
  int n_pairs = 0;
  int rc = pairs ? pair_runs(&ma, &mb, pairs, &n_pairs, err) : dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (rc == DPO_OK) rc = db_exec(db, "BEGIN IMMEDIATE", err);
  if (rc == DPO_OK) {
    rc = create_in_transaction(db, opt, keys, n_keys, &ma, &mb, pairs, n_pairs, edit, res, err);
    if (rc == DPO_OK) rc = db_exec(db, "COMMIT", err);
    if (rc != DPO_OK) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  }
  free(pairs);
  studies_manifest_free(&ma);
  studies_manifest_free(&mb);
  return rc;
}
