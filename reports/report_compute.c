/* From the loaded votes to every statistic a report shows: per study,
 * question and category (and overall), then Holm across each study's
 * questions, rater agreement, gold pass rates, and a Bradley-Terry fit per
 * question across the studies given. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reports/report_internal.h"

/* Statistics of one question over the items of `items` (the table's items,
 * in the same order). */
static int compute_stats(const stats_table *t, const stats_item *items, uint64_t seed, int n_resamples,
                         report_stats *out, dpo_error *err) {
  memset(out, 0, sizeof *out);
  out->counts = stats_count_outcomes(items, t->n_items);
  for (int v = 0; v < t->n_votes; v++) out->votes[t->votes[v].choice]++;
  out->n_votes = t->n_votes;
  const stats_counts *c = &out->counts;
  stats_bootstrap_options boot = {seed, n_resamples, REPORT_CONFIDENCE};
  for (int m = 0; m < STATS_N_TIES_MODES; m++) {
    out->rate[m] = stats_win_rate(c, (stats_ties)m);
    double x, n;
    stats_rate_parts(c->a_wins, c->b_wins, c->ties, (stats_ties)m, &x, &n);
    if (out->rate[m].defined) {
      out->wilson[m] = stats_wilson(x, n, REPORT_CONFIDENCE);
      out->exact[m] = stats_clopper_pearson(x, n, REPORT_CONFIDENCE);
    } else {
      out->wilson[m] = out->exact[m] = stats_interval_undefined(out->rate[m].reason);
    }
  }
  int rc = stats_vote_rate_bootstrap_modes(t, &boot, out->bootstrap, out->bootstrap_dropped, err);
  if (rc != DPO_OK) return rc;
  out->p_value = stats_sign_test(c);
  out->p_holm = stats_undefined("not adjusted yet");
  out->fleiss = stats_fleiss_kappa(items, t->n_items, &out->fleiss_equal_counts);
  out->krippendorff = stats_krippendorff_alpha(items, t->n_items);
  out->unanimous = stats_unanimous_share(items, t->n_items);
  return stats_position_bias_of(t, &out->bias, err);
}

/* The table of one category: its items, prompts and votes renumbered. */
typedef struct {
  int *items;          /* local -> study item */
  int *item_prompt;    /* local item -> local prompt */
  stats_vote *votes;
  stats_item *outcomes;
  stats_table table;
} category_table;

static void free_category_table(category_table *ct) {
  free(ct->items);
  free(ct->item_prompt);
  free(ct->votes);
  free(ct->outcomes);
}

static int build_category_table(const report_study *s, const report_question *q, int category, int *local_of_item,
                                int *local_of_prompt, category_table *ct, dpo_error *err) {
  memset(ct, 0, sizeof *ct);
  int n = s->category_items[category];
  ct->items = malloc(sizeof(int) * (size_t)(n ? n : 1));
  ct->item_prompt = malloc(sizeof(int) * (size_t)(n ? n : 1));
  ct->outcomes = malloc(sizeof(stats_item) * (size_t)(n ? n : 1));
  if (!ct->items || !ct->item_prompt || !ct->outcomes) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int p = 0; p < s->n_prompts; p++) local_of_prompt[p] = -1;
  int n_local = 0, n_prompts = 0;
  for (int i = 0; i < s->n_items; i++) {
    local_of_item[i] = -1;
    if (s->items[i].category_index != category) continue;
    int p = s->item_prompt[i];
    if (local_of_prompt[p] < 0) local_of_prompt[p] = n_prompts++;
    ct->items[n_local] = i;
    ct->item_prompt[n_local] = local_of_prompt[p];
    ct->outcomes[n_local] = q->items[i];
    local_of_item[i] = n_local++;
  }
  int n_votes = 0;
  for (int v = 0; v < q->n_votes; v++) n_votes += local_of_item[q->votes[v].item] >= 0;
  ct->votes = malloc(sizeof(stats_vote) * (size_t)(n_votes ? n_votes : 1));
  if (!ct->votes) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  int k = 0;
  for (int v = 0; v < q->n_votes; v++) {
    int local = local_of_item[q->votes[v].item];
    if (local < 0) continue;
    ct->votes[k] = q->votes[v];
    ct->votes[k].item = local;
    k++;
  }
  ct->table = (stats_table){n_local, s->n_raters, n_prompts, s->votes_per_item, ct->item_prompt, ct->votes, n_votes};
  return DPO_OK;
}

/* Job -1 is the question overall, job c >= 0 category c. Each job writes
 * only its own report_stats; the first error (in job order) is returned. */
static int compute_all_stats(const stats_table *overall, report_question *q, const category_table *tables,
                             int n_categories, uint64_t seed, int n_resamples, dpo_error *err) {
  int n_jobs = n_categories + 1;
  int *codes = calloc((size_t)n_jobs, sizeof(int));
  dpo_error *errors = calloc((size_t)n_jobs, sizeof(dpo_error));
  if (!codes || !errors) {
    free(codes);
    free(errors);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < n_jobs; job++) {
    if (job == 0) codes[job] = compute_stats(overall, q->items, seed, n_resamples, &q->overall, &errors[job]);
    else
      codes[job] = compute_stats(&tables[job - 1].table, tables[job - 1].outcomes, seed, n_resamples,
                                 &q->by_category[job - 1], &errors[job]);
  }
  int rc = DPO_OK;
  for (int job = 0; job < n_jobs && rc == DPO_OK; job++)
    if (codes[job] != DPO_OK) {
      rc = codes[job];
      if (err) *err = errors[job];
    }
  free(codes);
  free(errors);
  return rc;
}

static int compute_question(const report_study *s, report_question *q, uint64_t seed, int n_resamples,
                            dpo_error *err) {
  stats_table t = {s->n_items, s->n_raters, s->n_prompts, s->votes_per_item, s->item_prompt, q->votes, q->n_votes};
  size_t ni = (size_t)(s->n_items ? s->n_items : 1), nr = (size_t)(s->n_raters ? s->n_raters : 1);
  q->items = malloc(sizeof(stats_item) * ni);
  q->raters = malloc(sizeof(stats_rater_agreement) * nr);
  q->gold_by_rater = malloc(sizeof(stats_interval) * nr);
  q->by_category = calloc((size_t)(s->n_categories ? s->n_categories : 1), sizeof(report_stats));
  if (!q->items || !q->raters || !q->gold_by_rater || !q->by_category) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  int rc = stats_item_outcomes(&t, q->items, err);
  if (rc == DPO_OK) rc = stats_rater_majority_agreement(&t, q->items, q->raters, err);
  if (rc != DPO_OK) return rc;
  q->gold_pass = q->gold_checked ? stats_gold_pass_rate(q->gold, q->n_gold, -1)
                                 : stats_interval_undefined("this question is not checked with gold items");
  /* Per rater in one pass (stats_gold_pass_rate per rater would be
   * raters x checks): the same Wilson interval over each rater's checks. */
  int *checks = calloc(nr, sizeof(int)), *passed = calloc(nr, sizeof(int));
  if (!checks || !passed) {
    free(checks);
    free(passed);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  for (int g = 0; g < q->n_gold; g++) {
    checks[q->gold[g].rater]++;
    passed[q->gold[g].rater] += q->gold[g].passed != 0;
  }
  for (int r = 0; r < s->n_raters; r++) {
    if (!q->gold_checked) q->gold_by_rater[r] = stats_interval_undefined("this question is not checked with gold items");
    else if (checks[r] == 0) q->gold_by_rater[r] = stats_interval_undefined("no gold checks");
    else q->gold_by_rater[r] = stats_wilson(passed[r], checks[r], REPORT_CONFIDENCE);
  }
  free(checks);
  free(passed);

  /* The categories' tables first (one thread), then every table's
   * statistics in parallel: the bootstrap is most of a report's time. */
  category_table *tables = calloc((size_t)(s->n_categories ? s->n_categories : 1), sizeof(category_table));
  int *local_of_item = malloc(sizeof(int) * ni);
  int *local_of_prompt = malloc(sizeof(int) * (size_t)(s->n_prompts ? s->n_prompts : 1));
  if (!tables || !local_of_item || !local_of_prompt) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int c = 0; rc == DPO_OK && c < s->n_categories; c++)
    rc = build_category_table(s, q, c, local_of_item, local_of_prompt, &tables[c], err);
  free(local_of_item);
  free(local_of_prompt);
  if (rc == DPO_OK) rc = compute_all_stats(&t, q, tables, s->n_categories, seed, n_resamples, err);
  for (int c = 0; tables && c < s->n_categories; c++) free_category_table(&tables[c]);
  free(tables);
  return rc;
}

/* Holm across the questions of a study: once overall, once per category. */
static int adjust_holm(report_study *s, dpo_error *err) {
  stats_value p[REPORT_MAX_QUESTIONS], adjusted[REPORT_MAX_QUESTIONS];
  int reject[REPORT_MAX_QUESTIONS];
  for (int c = -1; c < s->n_categories; c++) {
    for (int q = 0; q < s->n_questions; q++)
      p[q] = c < 0 ? s->questions[q].overall.p_value : s->questions[q].by_category[c].p_value;
    int rc = stats_holm(p, s->n_questions, 1.0 - REPORT_CONFIDENCE, adjusted, reject, err);
    if (rc != DPO_OK) return rc;
    for (int q = 0; q < s->n_questions; q++) {
      report_stats *st = c < 0 ? &s->questions[q].overall : &s->questions[q].by_category[c];
      st->p_holm = adjusted[q];
      st->holm_reject = reject[q];
    }
  }
  return DPO_OK;
}

/* ---------------------------------------------------------- Bradley-Terry */

static int arm_slot(report_bt *bt, int64_t arm, const char *model) {
  for (int a = 0; a < bt->n_arms; a++)
    if (bt->arm_ids[a] == arm) return a;
  bt->arm_ids[bt->n_arms] = arm;
  bt->arm_labels[bt->n_arms] = strdup(model);
  return bt->n_arms++;
}

static int fit_bt(report_data *d, const char *key, report_bt *bt, dpo_error *err) {
  memset(bt, 0, sizeof *bt);
  snprintf(bt->key, sizeof bt->key, "%s", key);
  int max_arms = 2 * d->n_studies;
  bt->arm_ids = calloc((size_t)max_arms, sizeof(int64_t));
  bt->arm_labels = calloc((size_t)max_arms, sizeof(char *));
  bt->wins = calloc((size_t)max_arms * (size_t)max_arms, sizeof(double));
  bt->scores = calloc((size_t)max_arms, sizeof(stats_interval));
  if (!bt->arm_ids || !bt->arm_labels || !bt->wins || !bt->scores) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  /* Arms first, so the win matrix has its final size. */
  for (int i = 0; i < d->n_studies; i++) {
    report_study *s = &d->studies[i];
    for (int q = 0; q < s->n_questions; q++)
      if (strcmp(s->questions[q].key, key) == 0) {
        arm_slot(bt, s->arm_a, s->model_a);
        arm_slot(bt, s->arm_b, s->model_b);
      }
  }
  int k = bt->n_arms;
  for (int i = 0; i < d->n_studies; i++) {
    report_study *s = &d->studies[i];
    for (int q = 0; q < s->n_questions; q++) {
      if (strcmp(s->questions[q].key, key) != 0) continue;
      int a = arm_slot(bt, s->arm_a, s->model_a), b = arm_slot(bt, s->arm_b, s->model_b);
      for (int it = 0; it < s->n_items; it++) {
        stats_outcome o = s->questions[q].items[it].outcome;
        if (o == STATS_OUTCOME_NO_VOTES) continue;
        bt->n_comparisons++;
        if (o == STATS_OUTCOME_A) bt->wins[a * k + b] += 1;
        else if (o == STATS_OUTCOME_B) bt->wins[b * k + a] += 1;
        else {
          bt->wins[a * k + b] += 0.5;
          bt->wins[b * k + a] += 0.5;
        }
      }
    }
  }
  int rc = stats_bradley_terry(k, bt->wins, REPORT_CONFIDENCE, bt->scores, &bt->fit, err);
  if (rc != DPO_OK) return rc;
  bt->reason = "";
  for (int a = 0; a < k; a++)
    if (!bt->scores[a].defined) bt->reason = bt->scores[a].reason;
  return DPO_OK;
}

/* One fit per question key that any study asks, when several studies are given. */
static int compute_bt(report_data *d, dpo_error *err) {
  if (d->n_studies < 2) return DPO_OK;
  const char *keys[] = {"q1", "q2", "q3", "edit"};
  d->bt = calloc(4, sizeof(report_bt));
  if (!d->bt) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int k = 0; k < 4; k++) {
    int asked = 0;
    for (int i = 0; i < d->n_studies; i++)
      for (int q = 0; q < d->studies[i].n_questions; q++) asked |= strcmp(d->studies[i].questions[q].key, keys[k]) == 0;
    if (!asked) continue;
    int rc = fit_bt(d, keys[k], &d->bt[d->n_bt], err);
    d->n_bt++;
    if (rc != DPO_OK) return rc;
  }
  return DPO_OK;
}

int report_compute(report_data *d, dpo_error *err) {
  for (int i = 0; i < d->n_studies; i++) {
    report_study *s = &d->studies[i];
    for (int q = 0; q < s->n_questions; q++) {
      int rc = compute_question(s, &s->questions[q], d->seed, d->n_resamples, err);
      if (rc != DPO_OK) {
        dpo_error_prefix(err, "study \"%s\", question %s", s->name, s->questions[q].key);
        return rc;
      }
    }
    int rc = adjust_holm(s, err);
    if (rc != DPO_OK) return rc;
  }
  return compute_bt(d, err);
}

/* ------------------------------------------------------ shared helpers */

const char *report_outcome_name(stats_outcome o) {
  switch (o) {
    case STATS_OUTCOME_A: return "a";
    case STATS_OUTCOME_B: return "b";
    case STATS_OUTCOME_TIE: return "tie";
    case STATS_OUTCOME_NO_VOTES: return "no_votes";
  }
  return "unknown";
}

const char *report_ties_key(stats_ties t) {
  switch (t) {
    case STATS_TIES_AS_NOT_B: return "ties_as_not_b";
    case STATS_TIES_SPLIT: return "ties_split";
    case STATS_TIES_EXCLUDED: return "ties_excluded";
  }
  return "unknown";
}

void report_format_percent(char *buf, size_t n, stats_value v) {
  if (v.defined) snprintf(buf, n, "%.1f%%", 100.0 * v.value);
  else snprintf(buf, n, "n/a");
}

void report_format_interval(char *buf, size_t n, stats_interval ci) {
  if (ci.defined) snprintf(buf, n, "[%.1f, %.1f]", 100.0 * ci.lower, 100.0 * ci.upper);
  else snprintf(buf, n, "n/a");
}

double report_item_margin(const stats_item *item) {
  if (item->n_votes == 0) return 0;
  return (double)(item->votes[STATS_CHOICE_B] - item->votes[STATS_CHOICE_A]) / item->n_votes;
}

enum { REPORT_N_FILES = 4 };
static const char *const report_files[REPORT_N_FILES] = {"items.csv", "report.md", "report.html", "report.json"};

/* All four files are written to temporary names first and renamed into place
 * only when every one of them was written, report.json last: a failure
 * leaves the previous report as it was, and a tool that waits for
 * report.json finds the other three already in place. */
static int write_outputs(const report_data *data, const char *out_dir, int *n_images_missing, dpo_error *err) {
  dpo_atomic_file af[REPORT_N_FILES];
  int n_open = 0, rc = DPO_OK;
  for (; n_open < REPORT_N_FILES; n_open++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, report_files[n_open]);
    if ((rc = dpo_atomic_open(&af[n_open], path, err)) != DPO_OK) break;
  }
  if (rc == DPO_OK) {
    report_write_items_csv(data, af[0].fp);
    report_write_markdown(data, af[1].fp);
    report_write_html(data, af[2].fp, n_images_missing);
    rc = report_write_json(data, af[3].fp, err);
  }
  for (int i = 0; rc == DPO_OK && i < REPORT_N_FILES; i++)
    if (ferror(af[i].fp)) rc = dpo_fail(err, DPO_ERR_DATA, "%s: write failed", af[i].path);
  for (int i = 0; rc == DPO_OK && i < REPORT_N_FILES; i++) rc = dpo_atomic_commit(&af[i], err);
  for (int i = 0; i < n_open; i++) dpo_atomic_abort(&af[i]);
  return rc;
}

int report_write(const report_options *opt, report_summary *summary, dpo_error *err) {
  memset(summary, 0, sizeof *summary);
  report_data data;
  int rc = report_load(opt, &data, err);
  if (rc == DPO_OK) rc = report_compute(&data, err);
  if (rc == DPO_OK) rc = dpo_mkdir_p(opt->out_dir, err);
  if (rc == DPO_OK) rc = write_outputs(&data, opt->out_dir, &summary->n_images_missing, err);
  summary->n_studies = data.n_studies;
  for (int i = 0; i < data.n_studies; i++) {
    summary->n_items += data.studies[i].n_items;
    for (int q = 0; q < data.studies[i].n_questions; q++) summary->n_votes += data.studies[i].questions[q].n_votes;
  }
  report_free(&data);
  return rc;
}
