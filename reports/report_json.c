/* report.json: every number of the report, for tools.
 *
 * Layout (keys of each object):
 *   format "dpo.report/1", confidence, bootstrap {seed, resamples, cluster,
 *   interval}, ties_modes {mode: label}, studies [study], bradley_terry
 *   [fit] (null with a reason for a single study).
 *   study: name, arm_a / arm_b {arm_id, model, run_dir}, votes_per_item,
 *     allow_tie, n_items, n_prompts, prompt_sets (the benchmark, e.g. "parti"), n_raters, categories {name: items},
 *     questions [question], gallery.
 *   question: key, text, the core keys below, gold {checked, checks, passed,
 *     pass_rate, pass_rate_ci95}, raters [{rater, votes, compared, agreed,
 *     majority_agreement, gold_checks, gold_pass_rate}], by_category
 *     {category: core keys}.
 *   gallery (per study, the HTML's example pairs): question, largest_margin
 *     and smallest_margin [{item, prompt_id, prompt, seed, category, image_a,
 *     image_b, margin, votes {question: {a, b, tie, outcome}}}].
 *   core keys: items (with at least one counted vote), items_short (fewer
 *     counted votes than asked, those without any included), items_without_votes,
 *     a_wins, b_wins, ties, win_rate_b (B wins / items), ci95_wilson,
 *     ci95_exact ([lo, hi] of win_rate_b), vote_rate_b (B votes / votes),
 *     ci95_bootstrap ([lo, hi] of vote_rate_b, cluster bootstrap over
 *     prompts), p_value (exact sign test of B wins vs A wins), p_value_holm,
 *     holm_reject, votes {a, b, tie}, fleiss_kappa, fleiss_equal_counts,
 *     krippendorff_alpha, unanimous_share, left_rate (share of decisive votes
 *     for the left image), left_rate_ci95, left_p_value, decisive_votes,
 *     rates {ties_as_not_b | ties_split | ties_excluded: {label, win_rate_b,
 *     ci95_wilson, ci95_exact, vote_rate_b, ci95_bootstrap, bootstrap_dropped}}
 *     and reasons {key: why} for every key that is null.
 * Undefined values are null, never NaN, and always have a reason. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reports/report_internal.h"

static void set_reason(json_t *reasons, const char *key, const char *reason) {
  json_object_set_new(reasons, key, json_string(reason && *reason ? reason : "undefined"));
}

static void put_value(json_t *obj, json_t *reasons, const char *key, stats_value v) {
  if (v.defined && isfinite(v.value)) {
    json_object_set_new(obj, key, json_real(v.value));
  } else {
    json_object_set_new(obj, key, json_null());
    set_reason(reasons, key, v.defined ? "not a finite number" : v.reason);
  }
}

static void put_interval(json_t *obj, json_t *reasons, const char *key, stats_interval ci) {
  if (ci.defined && isfinite(ci.lower) && isfinite(ci.upper)) {
    json_object_set_new(obj, key, json_pack("[f, f]", ci.lower, ci.upper));
  } else {
    json_object_set_new(obj, key, json_null());
    set_reason(reasons, key, ci.defined ? "not a finite number" : ci.reason);
  }
}

static stats_value estimate_of(stats_interval ci) {
  return ci.defined ? stats_defined(ci.estimate) : stats_undefined(ci.reason);
}

static json_t *rates_json(const report_stats *st) {
  json_t *rates = json_object();
  for (int m = 0; m < STATS_N_TIES_MODES; m++) {
    json_t *r = json_object(), *reasons = json_object();
    json_object_set_new(r, "label", json_string(stats_ties_label((stats_ties)m)));
    put_value(r, reasons, "win_rate_b", st->rate[m]);
    put_interval(r, reasons, "ci95_wilson", st->wilson[m]);
    put_interval(r, reasons, "ci95_exact", st->exact[m]);
    put_value(r, reasons, "vote_rate_b", estimate_of(st->bootstrap[m]));
    put_interval(r, reasons, "ci95_bootstrap", st->bootstrap[m]);
    json_object_set_new(r, "bootstrap_dropped", json_integer(st->bootstrap_dropped[m]));
    json_object_set_new(r, "reasons", reasons);
    json_object_set_new(rates, report_ties_key((stats_ties)m), r);
  }
  return rates;
}

/* The core keys, the same for a question overall and for each category. */
static json_t *stats_json(const report_stats *st) {
  json_t *o = json_object(), *reasons = json_object();
  const stats_counts *c = &st->counts;
  json_object_set_new(o, "items", json_integer(c->n_items));
  json_object_set_new(o, "items_short", json_integer(c->n_short));
  json_object_set_new(o, "items_without_votes", json_integer(c->n_without_votes));
  json_object_set_new(o, "a_wins", json_integer(c->a_wins));
  json_object_set_new(o, "b_wins", json_integer(c->b_wins));
  json_object_set_new(o, "ties", json_integer(c->ties));
  put_value(o, reasons, "win_rate_b", st->rate[STATS_TIES_AS_NOT_B]);
  put_interval(o, reasons, "ci95_wilson", st->wilson[STATS_TIES_AS_NOT_B]);
  put_interval(o, reasons, "ci95_exact", st->exact[STATS_TIES_AS_NOT_B]);
  put_value(o, reasons, "vote_rate_b", estimate_of(st->bootstrap[STATS_TIES_AS_NOT_B]));
  put_interval(o, reasons, "ci95_bootstrap", st->bootstrap[STATS_TIES_AS_NOT_B]);
  put_value(o, reasons, "p_value", st->p_value);
  put_value(o, reasons, "p_value_holm", st->p_holm);
  json_object_set_new(o, "holm_reject", json_boolean(st->holm_reject));
  json_object_set_new(o, "votes", json_pack("{s:i, s:i, s:i}", "a", st->votes[STATS_CHOICE_A], "b",
                                            st->votes[STATS_CHOICE_B], "tie", st->votes[STATS_CHOICE_TIE]));
  put_value(o, reasons, "fleiss_kappa", st->fleiss);
  json_object_set_new(o, "fleiss_equal_counts", json_boolean(st->fleiss_equal_counts));
  put_value(o, reasons, "krippendorff_alpha", st->krippendorff);
  put_value(o, reasons, "unanimous_share", st->unanimous);
  put_value(o, reasons, "left_rate", estimate_of(st->bias.left_share));
  put_interval(o, reasons, "left_rate_ci95", st->bias.left_share);
  put_value(o, reasons, "left_p_value", st->bias.p_value);
  json_object_set_new(o, "decisive_votes", json_integer(st->bias.n_decisive_votes));
  json_object_set_new(o, "rates", rates_json(st));
  json_object_set_new(o, "reasons", reasons);
  return o;
}

static json_t *gold_json(const report_question *q) {
  json_t *g = json_object(), *reasons = json_object();
  json_object_set_new(g, "checked", json_boolean(q->gold_checked));
  json_object_set_new(g, "checks", json_integer(q->n_gold));
  int passed = 0;
  for (int i = 0; i < q->n_gold; i++) passed += q->gold[i].passed != 0;
  json_object_set_new(g, "passed", json_integer(passed));
  put_value(g, reasons, "pass_rate", estimate_of(q->gold_pass));
  put_interval(g, reasons, "pass_rate_ci95", q->gold_pass);
  json_object_set_new(g, "reasons", reasons);
  return g;
}

static json_t *raters_json(const report_study *s, const report_question *q) {
  json_t *arr = json_array();
  int *votes = calloc((size_t)(s->n_raters ? s->n_raters : 1), sizeof(int));
  int *checks = calloc((size_t)(s->n_raters ? s->n_raters : 1), sizeof(int));
  if (!votes || !checks) {
    free(votes);
    free(checks);
    return json_null();
  }
  for (int v = 0; v < q->n_votes; v++) votes[q->votes[v].rater]++;
  for (int g = 0; g < q->n_gold; g++) checks[q->gold[g].rater]++;
  for (int r = 0; r < s->n_raters; r++) {
    json_t *o = json_object(), *reasons = json_object();
    json_object_set_new(o, "rater", json_string(s->raters[r] ? s->raters[r] : ""));
    json_object_set_new(o, "votes", json_integer(votes[r]));
    json_object_set_new(o, "compared", json_integer(q->raters[r].n_compared));
    json_object_set_new(o, "agreed", json_integer(q->raters[r].n_agree));
    put_value(o, reasons, "majority_agreement", q->raters[r].rate);
    json_object_set_new(o, "gold_checks", json_integer(checks[r]));
    put_value(o, reasons, "gold_pass_rate", estimate_of(q->gold_by_rater[r]));
    json_object_set_new(o, "reasons", reasons);
    json_array_append_new(arr, o);
  }
  free(votes);
  free(checks);
  return arr;
}

/* The HTML's gallery: items of the first question's largest and smallest
 * margins, each with its vote split on every question. */
static json_t *gallery_json(const report_study *s) {
  if (s->n_questions == 0) return json_null();
  const report_question *first = &s->questions[0];
  int largest[REPORT_GALLERY_EACH], smallest[REPORT_GALLERY_EACH], nl = 0, ns = 0;
  report_gallery_items(s, first, largest, &nl, smallest, &ns, REPORT_GALLERY_EACH);
  json_t *o = json_object();
  json_object_set_new(o, "question", json_string(first->key));
  for (int which = 0; which < 2; which++) {
    json_t *arr = json_array();
    int *list = which == 0 ? largest : smallest, n = which == 0 ? nl : ns;
    for (int k = 0; k < n; k++) {
      const report_item *it = &s->items[list[k]];
      json_t *splits = json_object();
      for (int q = 0; q < s->n_questions; q++) {
        const stats_item *si = &s->questions[q].items[list[k]];
        json_object_set_new(splits, s->questions[q].key,
                            json_pack("{s:i, s:i, s:i, s:s}", "a", si->votes[STATS_CHOICE_A], "b",
                                      si->votes[STATS_CHOICE_B], "tie", si->votes[STATS_CHOICE_TIE], "outcome",
                                      report_outcome_name(si->outcome)));
      }
      json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:f, s:o}", "item", it->public_id, "prompt_id",
                                           it->prompt_id, "prompt", it->prompt, "seed", (json_int_t)it->seed,
                                           "category", it->category, "image_a", it->image_a, "image_b", it->image_b, "margin",
                                           report_item_margin(&first->items[list[k]]), "votes", splits));
    }
    json_object_set_new(o, which == 0 ? "largest_margin" : "smallest_margin", arr);
  }
  return o;
}

static json_t *question_json(const report_study *s, const report_question *q) {
  json_t *o = stats_json(&q->overall);
  json_object_set_new(o, "key", json_string(q->key));
  json_object_set_new(o, "text", json_string(q->text));
  json_object_set_new(o, "gold", gold_json(q));
  json_object_set_new(o, "raters", raters_json(s, q));
  json_t *cats = json_object();
  for (int c = 0; c < s->n_categories; c++) json_object_set_new(cats, s->categories[c], stats_json(&q->by_category[c]));
  json_object_set_new(o, "by_category", cats);
  return o;
}

static json_t *arm_json(int64_t id, const char *model, const char *run_dir) {
  return json_pack("{s:I, s:s, s:s}", "arm_id", (json_int_t)id, "model", model, "run_dir", run_dir);
}

static json_t *study_json(const report_study *s) {
  json_t *o = json_object();
  json_object_set_new(o, "name", json_string(s->name));
  json_object_set_new(o, "arm_a", arm_json(s->arm_a, s->model_a, s->run_a));
  json_object_set_new(o, "arm_b", arm_json(s->arm_b, s->model_b, s->run_b));
  json_object_set_new(o, "votes_per_item", json_integer(s->votes_per_item));
  json_object_set_new(o, "allow_tie", json_boolean(s->allow_tie));
  json_object_set_new(o, "n_items", json_integer(s->n_items));
  json_object_set_new(o, "n_prompts", json_integer(s->n_prompts));
  json_object_set_new(o, "prompt_sets", json_string(s->prompt_sets ? s->prompt_sets : ""));
  json_object_set_new(o, "n_raters", json_integer(s->n_raters));
  json_t *cats = json_object();
  for (int c = 0; c < s->n_categories; c++) json_object_set_new(cats, s->categories[c], json_integer(s->category_items[c]));
  json_object_set_new(o, "categories", cats);
  json_t *qs = json_array();
  for (int q = 0; q < s->n_questions; q++) json_array_append_new(qs, question_json(s, &s->questions[q]));
  json_object_set_new(o, "questions", qs);
  json_object_set_new(o, "gallery", gallery_json(s));
  return o;
}

static json_t *bt_json(const report_bt *bt) {
  json_t *o = json_object(), *arms = json_array();
  json_object_set_new(o, "question", json_string(bt->key));
  json_object_set_new(o, "comparisons", json_integer(bt->n_comparisons));
  json_object_set_new(o, "iterations", json_integer(bt->fit.iterations));
  json_object_set_new(o, "converged", json_boolean(bt->fit.converged));
  json_object_set_new(o, "reason", bt->reason && *bt->reason ? json_string(bt->reason) : json_null());
  for (int a = 0; a < bt->n_arms; a++) {
    json_t *arm = json_object(), *reasons = json_object();
    int rank = 1;
    for (int b = 0; b < bt->n_arms; b++)
      if (bt->scores[b].defined && bt->scores[a].defined && bt->scores[b].estimate > bt->scores[a].estimate) rank++;
    json_object_set_new(arm, "arm_id", json_integer(bt->arm_ids[a]));
    json_object_set_new(arm, "model", json_string(bt->arm_labels[a] ? bt->arm_labels[a] : ""));
    put_value(arm, reasons, "score", estimate_of(bt->scores[a]));
    put_interval(arm, reasons, "ci95", bt->scores[a]);
    if (bt->scores[a].defined) json_object_set_new(arm, "rank", json_integer(rank));
    else {
      json_object_set_new(arm, "rank", json_null());
      set_reason(reasons, "rank", bt->scores[a].reason);
    }
    json_object_set_new(arm, "reasons", reasons);
    json_array_append_new(arms, arm);
  }
  json_object_set_new(o, "arms", arms);
  return o;
}

int report_write_json(const report_data *d, FILE *f, dpo_error *err) {
  json_t *root = json_object();
  json_object_set_new(root, "format", json_string("dpo.report/1"));
  json_object_set_new(root, "confidence", json_real(REPORT_CONFIDENCE));
  json_object_set_new(root, "bootstrap",
                      json_pack("{s:I, s:i, s:s, s:s}", "seed", (json_int_t)d->seed, "resamples", d->n_resamples,
                                "cluster", "prompt", "interval", "percentile"));
  json_t *modes = json_object();
  for (int m = 0; m < STATS_N_TIES_MODES; m++)
    json_object_set_new(modes, report_ties_key((stats_ties)m), json_string(stats_ties_label((stats_ties)m)));
  json_object_set_new(root, "ties_modes", modes);
  json_t *studies = json_array();
  for (int i = 0; i < d->n_studies; i++) json_array_append_new(studies, study_json(&d->studies[i]));
  json_object_set_new(root, "studies", studies);
  json_t *reasons = json_object();
  if (d->n_studies < 2) {
    json_object_set_new(root, "bradley_terry", json_null());
    set_reason(reasons, "bradley_terry", "one study compares two arms: its win rate is the comparison");
  } else {
    json_t *fits = json_array();
    for (int b = 0; b < d->n_bt; b++) json_array_append_new(fits, bt_json(&d->bt[b]));
    json_object_set_new(root, "bradley_terry", fits);
  }
  json_object_set_new(root, "reasons", reasons);
  /* The layout of dpo_json_write_file: sorted keys, 2-space indent, 17
   * significant digits, final newline. */
  int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) == 0 && fputc('\n', f) != EOF
               ? DPO_OK
               : dpo_fail(err, DPO_ERR_DATA, "report.json: cannot serialise or write the JSON");
  json_decref(root);
  return rc;
}
