/* reports/ statistics against scipy, statsmodels and krippendorff: the
 * expected values come from tests/fixtures/make_stats_fixtures.py (pinned
 * versions) in the JSON files of tests/fixtures/stats.
 *
 * Tolerance: 1e-9 relative (plus 1e-13 absolute, for values that are 0 up to
 * rounding such as a Wilson bound at x = 0), except Bradley-Terry, whose
 * reference is a numerical optimiser (BFGS, gtol 1e-12): 1e-6 absolute. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reports/reports.h"
#include "tests/test.h"

#define REL_TOL 1e-9
#define ABS_TOL 1e-13
#define BT_TOL 1e-6

static int compared = 0;

static void check_close(double got, double want, const char *what, int index) {
  compared++;
  double scale = fmax(fabs(got), fabs(want));
  if (!(fabs(got - want) <= REL_TOL * scale + ABS_TOL))
    test_fail(__FILE__, __LINE__, "%s (case %d): got %.17g, expected %.17g", what, index, got, want);
}

static double num(const json_t *v) { return json_number_value(v); }
static double member(const json_t *obj, const char *key) { return json_number_value(json_object_get(obj, key)); }
static double item_of(const json_t *obj, const char *key, size_t i) {
  return json_number_value(json_array_get(json_object_get(obj, key), i));
}

static json_t *load_fixture(const char *name) {
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/stats/%s", name);
  dpo_error err = {0};
  json_t *root = dpo_json_load_file(test_source_path(rel), 16u << 20, &err);
  if (!root) test_fail(__FILE__, __LINE__, "cannot load %s: %s", rel, err.msg);
  return root;
}

/* A value expected as null must be undefined with a reason; a number must match. */
static void check_value(stats_value got, const json_t *want, const char *what, int index) {
  if (json_is_null(want) || !want) {
    if (got.defined) test_fail(__FILE__, __LINE__, "%s (case %d): got %.17g, expected undefined", what, index, got.value);
    else CHECK(got.reason && got.reason[0]);
    return;
  }
  if (!got.defined) {
    test_fail(__FILE__, __LINE__, "%s (case %d): undefined (%s), expected %.17g", what, index, got.reason, num(want));
    return;
  }
  check_close(got.value, num(want), what, index);
}

static void check_interval(stats_interval got, const json_t *pair, const char *what, int index) {
  if (!got.defined) {
    test_fail(__FILE__, __LINE__, "%s (case %d): undefined (%s)", what, index, got.reason);
    return;
  }
  check_close(got.lower, num(json_array_get(pair, 0)), what, index);
  check_close(got.upper, num(json_array_get(pair, 1)), what, index);
}

static void test_binomtest(void) {
  json_t *root = load_fixture("binomtest.json");
  if (!root) return;
  json_t *cases = json_object_get(root, "cases");
  CHECK(json_array_size(cases) > 500);
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c) {
    stats_value p = stats_binom_test((int)member(c, "k"), (int)member(c, "n"), member(c, "p0"));
    check_value(p, json_object_get(c, "pvalue"), "binomtest p-value", (int)i);
  }
  json_decref(root);
}

static void test_proportion_intervals(void) {
  json_t *root = load_fixture("proportion_ci.json");
  if (!root) return;
  json_t *cases = json_object_get(root, "cases");
  CHECK(json_array_size(cases) > 500);
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c) {
    double x = member(c, "x"), n = member(c, "n"), confidence = member(c, "confidence");
    check_interval(stats_wilson(x, n, confidence), json_object_get(c, "wilson"), "wilson", (int)i);
    check_interval(stats_clopper_pearson(x, n, confidence), json_object_get(c, "beta"), "clopper-pearson", (int)i);
  }
  json_decref(root);
}

/* ------------------------------------------------------------ vote tables */

typedef struct {
  stats_table table;
  int *item_prompt;
  stats_vote *votes;
} loaded_table;

static void load_table(const json_t *t, loaded_table *out) {
  memset(out, 0, sizeof *out);
  const json_t *prompts = json_object_get(t, "item_prompt"), *votes = json_object_get(t, "votes");
  size_t n_items = json_array_size(prompts), n_votes = json_array_size(votes);
  out->item_prompt = malloc(sizeof(int) * (n_items + 1));
  out->votes = malloc(sizeof(stats_vote) * (n_votes + 1));
  for (size_t i = 0; i < n_items; i++) out->item_prompt[i] = (int)json_integer_value(json_array_get(prompts, i));
  for (size_t v = 0; v < n_votes; v++) {
    const json_t *row = json_array_get(votes, v);
    out->votes[v] = (stats_vote){(int)json_integer_value(json_array_get(row, 0)),
                                 (int)json_integer_value(json_array_get(row, 1)),
                                 (stats_choice)json_integer_value(json_array_get(row, 2)),
                                 (int)json_integer_value(json_array_get(row, 3))};
  }
  out->table = (stats_table){(int)member(t, "n_items"), (int)member(t, "n_raters"), (int)member(t, "n_prompts"),
                             (int)member(t, "votes_asked"), out->item_prompt, out->votes, (int)n_votes};
}

static void free_table(loaded_table *t) {
  free(t->item_prompt);
  free(t->votes);
}

static void check_table(const json_t *t, int index, stats_value *sign_test) {
  loaded_table lt;
  load_table(t, &lt);
  const json_t *e = json_object_get(t, "expected");
  dpo_error err = {0};
  stats_item *items = malloc(sizeof(stats_item) * (size_t)(lt.table.n_items + 1));
  CHECK_INT(stats_item_outcomes(&lt.table, items, &err), DPO_OK);
  stats_counts counts = stats_count_outcomes(items, lt.table.n_items);
  CHECK_INT(counts.a_wins, member(e, "a_wins"));
  CHECK_INT(counts.b_wins, member(e, "b_wins"));
  CHECK_INT(counts.ties, member(e, "ties"));
  CHECK_INT(counts.n_items, member(e, "n_items"));
  CHECK_INT(counts.n_short, member(e, "n_short"));
  CHECK_INT(counts.n_without_votes, member(e, "n_without_votes"));

  static const char *modes[STATS_N_TIES_MODES] = {"as_not_b", "split", "excluded"};
  for (int m = 0; m < STATS_N_TIES_MODES; m++) {
    const json_t *r = json_object_get(json_object_get(e, "rates"), modes[m]);
    stats_value rate = stats_win_rate(&counts, (stats_ties)m);
    check_value(rate, json_is_object(r) ? json_object_get(r, "rate") : NULL, "win rate", index);
    if (!json_is_object(r)) continue;
    double x, n;
    stats_rate_parts(counts.a_wins, counts.b_wins, counts.ties, (stats_ties)m, &x, &n);
    check_interval(stats_wilson(x, n, 0.95), json_object_get(r, "wilson"), "table wilson", index);
    check_interval(stats_clopper_pearson(x, n, 0.95), json_object_get(r, "beta"), "table clopper-pearson", index);
  }
  *sign_test = stats_sign_test(&counts);
  check_value(*sign_test, json_object_get(e, "sign_test"), "sign test", index);

  int equal = -1;
  stats_value kappa = stats_fleiss_kappa(items, lt.table.n_items, &equal);
  CHECK_INT(equal, json_is_true(json_object_get(e, "fleiss_equal_counts")));
  if (equal) check_value(kappa, json_object_get(e, "fleiss_kappa"), "fleiss kappa", index);
  check_value(stats_krippendorff_alpha(items, lt.table.n_items), json_object_get(e, "krippendorff_alpha"),
              "krippendorff alpha", index);
  check_value(stats_unanimous_share(items, lt.table.n_items), json_object_get(e, "unanimous_share"),
              "unanimous share", index);

  stats_position_bias bias;
  CHECK_INT(stats_position_bias_of(&lt.table, &bias, &err), DPO_OK);
  const json_t *pos = json_object_get(e, "position");
  CHECK_INT(bias.n_decisive_votes, member(pos, "n_decisive"));
  CHECK_INT(bias.n_left, member(pos, "n_left"));
  if (bias.n_decisive_votes > 0) {
    check_interval(bias.left_share, json_object_get(pos, "wilson"), "position wilson", index);
    check_value(bias.p_value, json_object_get(pos, "pvalue"), "position p-value", index);
  } else {
    CHECK(!bias.left_share.defined && !bias.p_value.defined);
  }
  free(items);
  free_table(&lt);
}

static void check_holm(const stats_value *p, int m, double alpha, const json_t *want_adjusted,
                       const json_t *want_reject, int index) {
  stats_value *adjusted = malloc(sizeof(stats_value) * (size_t)(m + 1));
  int *reject = malloc(sizeof(int) * (size_t)(m + 1));
  dpo_error err = {0};
  CHECK_INT(stats_holm(p, m, alpha, adjusted, reject, &err), DPO_OK);
  for (int j = 0; j < m; j++) {
    check_value(adjusted[j], json_array_get(want_adjusted, (size_t)j), "holm adjusted", index);
    CHECK_INT(reject[j], json_is_true(json_array_get(want_reject, (size_t)j)));
  }
  free(adjusted);
  free(reject);
}

static void test_tables(void) {
  json_t *root = load_fixture("tables.json");
  if (!root) return;
  json_t *tables = json_object_get(root, "tables");
  size_t n_tables = json_array_size(tables);
  CHECK(n_tables > 100);
  stats_value *sign_tests = malloc(sizeof(stats_value) * (n_tables + 1));
  for (size_t i = 0; i < n_tables; i++) check_table(json_array_get(tables, i), (int)i, &sign_tests[i]);

  size_t s;
  json_t *study;
  json_array_foreach(json_object_get(root, "studies"), s, study) {
    const json_t *members = json_object_get(study, "tables");
    int m = (int)json_array_size(members);
    stats_value p[8];
    for (int j = 0; j < m && j < 8; j++) p[j] = sign_tests[json_integer_value(json_array_get(members, (size_t)j))];
    check_holm(p, m, member(study, "alpha"), json_object_get(study, "holm"), json_object_get(study, "reject"), (int)s);
  }
  json_t *c;
  json_array_foreach(json_object_get(root, "holm_cases"), s, c) {
    const json_t *pj = json_object_get(c, "p");
    int m = (int)json_array_size(pj);
    stats_value p[16];
    for (int j = 0; j < m && j < 16; j++) p[j] = stats_defined(num(json_array_get(pj, (size_t)j)));
    check_holm(p, m, member(c, "alpha"), json_object_get(c, "holm"), json_object_get(c, "reject"), (int)s);
  }
  free(sign_tests);
  json_decref(root);
}

/* ----------------------------------------------------------------- power */

static void test_power(void) {
  json_t *root = load_fixture("power.json");
  if (!root) return;
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(root, "cases"), i, c) {
    double p = member(c, "p"), alpha = member(c, "alpha");
    stats_power_result r;
    dpo_error err = {0};
    CHECK_INT(stats_power(p, alpha, member(c, "power"), &r, &err), DPO_OK);
    check_close(r.normal_n_real, member(c, "normal_n_real"), "normal n", (int)i);
    CHECK_INT(r.normal_n, member(c, "normal_n"));
    CHECK_INT(r.search_limit, member(c, "search_limit"));
    CHECK(r.exact_found);
    CHECK_INT(r.exact_first_n, member(c, "exact_first_n"));
    CHECK_INT(r.exact_stable_n, member(c, "exact_stable_n"));
    check_close(r.exact_first_power, member(c, "exact_first_power"), "first power", (int)i);
    check_close(r.exact_stable_power, member(c, "exact_stable_power"), "stable power", (int)i);
    const json_t *curve = json_object_get(c, "curve_head");
    for (size_t n = 1; n <= json_array_size(curve); n++)
      check_close(stats_sign_test_power((int)n, p, alpha), item_of(c, "curve_head", n - 1), "power curve", (int)n);
  }
  json_decref(root);
}

/* --------------------------------------------------------- Bradley-Terry */

static void test_bradley_terry(void) {
  json_t *root = load_fixture("bradley_terry.json");
  if (!root) return;
  double confidence = member(root, "confidence");
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(root, "cases"), i, c) {
    const json_t *rows = json_object_get(c, "wins");
    int k = (int)json_array_size(rows);
    double wins[64];
    stats_interval scores[8];
    for (int a = 0; a < k; a++)
      for (int b = 0; b < k; b++) wins[a * k + b] = num(json_array_get(json_array_get(rows, (size_t)a), (size_t)b));
    stats_bt_fit fit;
    dpo_error err = {0};
    CHECK_INT(stats_bradley_terry(k, wins, confidence, scores, &fit, &err), DPO_OK);
    if (json_is_null(json_object_get(c, "scores"))) {
      for (int a = 0; a < k; a++) CHECK(!scores[a].defined && scores[a].reason[0]);
      continue;
    }
    CHECK(fit.converged);
    for (int a = 0; a < k; a++) {
      CHECK(scores[a].defined);
      CHECK_NEAR(scores[a].estimate, item_of(c, "scores", (size_t)a), BT_TOL);
      CHECK_NEAR(scores[a].lower, item_of(c, "lower", (size_t)a), BT_TOL);
      CHECK_NEAR(scores[a].upper, item_of(c, "upper", (size_t)a), BT_TOL);
      compared += 3;
    }
  }
  json_decref(root);
}

int main(void) {
  test_binomtest();
  test_proportion_intervals();
  test_tables();
  test_power();
  test_bradley_terry();
  printf("compared %d values\n", compared);
  CHECK(compared > 5000);
  return test_finish();
}
