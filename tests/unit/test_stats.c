/* Properties of the reports/ statistics that hold whatever the reference:
 * intervals contain their estimate, narrow with n and mirror under swapping
 * A and B; the bootstrap is a function of its seed; undefined cases (no
 * items, all ties, one rater, no votes) say why instead of giving numbers;
 * bad tables and parameters are usage errors. The numbers themselves are
 * checked against scipy/statsmodels in tests/golden/test_stats_golden.c. */
#include <math.h>
#include <string.h>

#include "reports/reports.h"
#include "tests/test.h"

#define EPS 1e-12

static void check_contains(stats_interval v, double estimate) {
  CHECK(v.defined);
  CHECK_NEAR(v.estimate, estimate, EPS);
  CHECK(v.lower <= v.estimate + EPS && v.estimate <= v.upper + EPS);
  CHECK(v.lower >= -EPS && v.upper <= 1 + EPS);
}

static void test_intervals_contain_estimate(void) {
  for (int n = 1; n <= 120; n++)
    for (int twice_x = 0; twice_x <= 2 * n; twice_x++) {
      double x = twice_x / 2.0;
      check_contains(stats_wilson(x, n, 0.95), x / n);
      check_contains(stats_clopper_pearson(x, n, 0.95), x / n);
      check_contains(stats_clopper_pearson(x, n, 0.99), x / n);
    }
  /* Clopper-Pearson is the wider of the two away from the ends. */
  stats_interval w = stats_wilson(30, 100, 0.95), e = stats_clopper_pearson(30, 100, 0.95);
  CHECK(e.lower < w.lower && e.upper > w.upper);
}

static void test_intervals_narrow_with_n(void) {
  double last_wilson = 2, last_exact = 2;
  for (int n = 10; n <= 10240; n *= 2) {
    stats_interval w = stats_wilson(0.3 * n, n, 0.95), e = stats_clopper_pearson(0.3 * n, n, 0.95);
    CHECK(w.upper - w.lower < last_wilson);
    CHECK(e.upper - e.lower < last_exact);
    last_wilson = w.upper - w.lower;
    last_exact = e.upper - e.lower;
  }
  CHECK(last_wilson < 0.02);
  /* Higher confidence, wider interval. */
  CHECK(stats_wilson(30, 100, 0.99).lower < stats_wilson(30, 100, 0.95).lower);
}

static void test_swap_symmetry(void) {
  for (int n = 1; n <= 60; n++)
    for (int x = 0; x <= n; x++) {
      stats_interval w = stats_wilson(x, n, 0.95), ws = stats_wilson(n - x, n, 0.95);
      CHECK_NEAR(w.lower, 1 - ws.upper, EPS);
      CHECK_NEAR(w.upper, 1 - ws.lower, EPS);
      stats_interval e = stats_clopper_pearson(x, n, 0.95), es = stats_clopper_pearson(n - x, n, 0.95);
      CHECK_NEAR(e.lower, 1 - es.upper, 1e-9);
      CHECK_NEAR(e.upper, 1 - es.lower, 1e-9);
      stats_value p = stats_binom_test(x, n, 0.5), ps = stats_binom_test(n - x, n, 0.5);
      CHECK(p.defined && ps.defined);
      CHECK_NEAR(p.value, ps.value, 1e-12 * fmax(p.value, 1e-300));
    }
}

static void test_majority_rule(void) {
  CHECK_INT(stats_majority(0, 2, 1), STATS_OUTCOME_B);
  CHECK_INT(stats_majority(2, 1, 0), STATS_OUTCOME_A);
  CHECK_INT(stats_majority(1, 1, 1), STATS_OUTCOME_TIE);
  CHECK_INT(stats_majority(2, 2, 0), STATS_OUTCOME_TIE);
  CHECK_INT(stats_majority(1, 2, 1), STATS_OUTCOME_TIE); /* 2 of 4 is not more than half */
  CHECK_INT(stats_majority(0, 0, 3), STATS_OUTCOME_TIE);
  CHECK_INT(stats_majority(0, 1, 0), STATS_OUTCOME_B);
  CHECK_INT(stats_majority(0, 0, 0), STATS_OUTCOME_NO_VOTES);
}

/* ------------------------------------------------------------ a test table */

/* Items 0..5 over prompts {0,0,1,2,2,3}; three raters; item 5 has no votes. */
static const int prompts6[6] = {0, 0, 1, 2, 2, 3};
static const stats_vote votes6[] = {
    {0, 0, STATS_CHOICE_B, 1},   {0, 1, STATS_CHOICE_B, 1}, {0, 2, STATS_CHOICE_A, 1},
    {1, 0, STATS_CHOICE_B, 0},   {1, 1, STATS_CHOICE_B, 0}, {1, 2, STATS_CHOICE_B, 0},
    {2, 0, STATS_CHOICE_A, 1},   {2, 1, STATS_CHOICE_TIE, 1}, {2, 2, STATS_CHOICE_A, 1},
    {3, 0, STATS_CHOICE_TIE, 0}, {3, 1, STATS_CHOICE_B, 0}, {3, 2, STATS_CHOICE_A, 0},
    {4, 0, STATS_CHOICE_B, 1},   {4, 2, STATS_CHOICE_B, 1},
};

static stats_table table6(void) {
  return (stats_table){6, 3, 4, 3, prompts6, votes6, (int)(sizeof votes6 / sizeof votes6[0])};
}

static void test_outcomes_and_rates(void) {
  stats_table t = table6();
  stats_item items[6];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_OK);
  CHECK_INT(items[0].outcome, STATS_OUTCOME_B);
  CHECK_INT(items[2].outcome, STATS_OUTCOME_A);
  CHECK_INT(items[3].outcome, STATS_OUTCOME_TIE);
  CHECK_INT(items[4].outcome, STATS_OUTCOME_B);
  CHECK_INT(items[4].short_of_votes, 1);
  CHECK_INT(items[5].outcome, STATS_OUTCOME_NO_VOTES);
  CHECK_INT(items[0].short_of_votes, 0);
  stats_counts c = stats_count_outcomes(items, 6);
  CHECK_INT(c.n_items, 5);
  CHECK_INT(c.b_wins, 3);
  CHECK_INT(c.a_wins, 1);
  CHECK_INT(c.ties, 1);
  CHECK_INT(c.n_short, 2);
  CHECK_INT(c.n_without_votes, 1);
  CHECK_NEAR(stats_win_rate(&c, STATS_TIES_AS_NOT_B).value, 3.0 / 5, EPS);
  CHECK_NEAR(stats_win_rate(&c, STATS_TIES_SPLIT).value, 3.5 / 5, EPS);
  CHECK_NEAR(stats_win_rate(&c, STATS_TIES_EXCLUDED).value, 3.0 / 4, EPS);
  for (int m = 0; m < STATS_N_TIES_MODES; m++) CHECK(strlen(stats_ties_label((stats_ties)m)) > 10);
  CHECK_CONTAINS(stats_ties_label(STATS_TIES_EXCLUDED), "excluded");
  /* Sign test 3 vs 1: P = 2 * (1 + 4) / 16. */
  CHECK_NEAR(stats_sign_test(&c).value, 10.0 / 16, EPS);
}

static void test_agreement_by_hand(void) {
  stats_table t = table6();
  stats_item items[6];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_OK);
  /* Items with two or more votes: 0..4; unanimous: 1 and 4. */
  CHECK_NEAR(stats_unanimous_share(items, 6).value, 2.0 / 5, EPS);
  int equal = -1;
  stats_value kappa = stats_fleiss_kappa(items, 6, &equal);
  CHECK(kappa.defined);
  CHECK_INT(equal, 0); /* item 4 has two votes, the others three */
  CHECK(stats_krippendorff_alpha(items, 6).defined);

  /* Rater 2 against the others: item 0 others B,B -> B, voted A: no; item 1
   * B,B -> agree; item 2 A,tie -> tie, voted A: no; item 3 tie,B -> tie, voted
   * A: no; item 4 B -> agree. */
  stats_rater_agreement per_rater[3];
  CHECK_INT(stats_rater_majority_agreement(&t, items, per_rater, &err), DPO_OK);
  CHECK_INT(per_rater[2].n_compared, 5);
  CHECK_INT(per_rater[2].n_agree, 2);
  CHECK_NEAR(per_rater[2].rate.value, 0.4, EPS);
  CHECK_INT(per_rater[1].n_compared, 4);

  /* Position: decisive votes 12 (two ties); left choices are B with B on the
   * left or A with B on the right. */
  stats_position_bias bias;
  CHECK_INT(stats_position_bias_of(&t, &bias, &err), DPO_OK);
  CHECK_INT(bias.n_decisive_votes, 12);
  CHECK_INT(bias.n_left, 2 + 0 + 0 + 1 + 2);
  CHECK(bias.left_share.defined && bias.p_value.defined);
  CHECK_NEAR(bias.left_share.estimate, 5.0 / 12, EPS);

  stats_gold_check gold[] = {{0, 1}, {0, 1}, {1, 0}, {1, 1}, {2, 0}};
  stats_interval all = stats_gold_pass_rate(gold, 5, -1), r1 = stats_gold_pass_rate(gold, 5, 1);
  CHECK_NEAR(all.estimate, 3.0 / 5, EPS);
  CHECK_NEAR(r1.estimate, 0.5, EPS);
  stats_interval none = stats_gold_pass_rate(gold, 5, 7);
  CHECK(!none.defined);
  CHECK_CONTAINS(none.reason, "no gold");
}

static void test_bootstrap(void) {
  stats_table t = table6();
  stats_bootstrap_options opt = {12345, STATS_BOOTSTRAP_RESAMPLES, 0.95};
  stats_interval a, b, c;
  int dropped = -1;
  dpo_error err = {0};
  CHECK_INT(stats_vote_rate_bootstrap(&t, STATS_TIES_SPLIT, &opt, &a, &dropped, &err), DPO_OK);
  /* Prompt 3 has no votes: drawing it four times (1/256) leaves nothing. */
  CHECK(dropped > 10 && dropped < 100);
  CHECK_INT(stats_vote_rate_bootstrap(&t, STATS_TIES_SPLIT, &opt, &b, &dropped, &err), DPO_OK);
  CHECK(a.defined);
  CHECK(memcmp(&a.lower, &b.lower, sizeof(double)) == 0 && memcmp(&a.upper, &b.upper, sizeof(double)) == 0);
  /* Votes: 8 B, 4 A, 2 ties -> (8 + 1) / 14. */
  CHECK_NEAR(a.estimate, 9.0 / 14, EPS);
  CHECK(a.lower <= a.estimate && a.estimate <= a.upper && a.lower < a.upper);
  CHECK(a.lower >= 0 && a.upper <= 1);

  /* Swapping A and B mirrors the interval (same draws, rates 1 - r). */
  stats_vote swapped[sizeof votes6 / sizeof votes6[0]];
  for (int v = 0; v < t.n_votes; v++) {
    swapped[v] = votes6[v];
    if (swapped[v].choice != STATS_CHOICE_TIE)
      swapped[v].choice = swapped[v].choice == STATS_CHOICE_A ? STATS_CHOICE_B : STATS_CHOICE_A;
  }
  stats_table ts = t;
  ts.votes = swapped;
  opt.seed = 12345;
  CHECK_INT(stats_vote_rate_bootstrap(&ts, STATS_TIES_SPLIT, &opt, &c, &dropped, &err), DPO_OK);
  CHECK_NEAR(c.lower, 1 - a.upper, EPS);
  CHECK_NEAR(c.upper, 1 - a.lower, EPS);
  CHECK_NEAR(c.estimate, 1 - a.estimate, EPS);

  /* More votes at the same rate: a narrower interval. */
  enum { BIG = 400 };
  static int big_prompts[BIG];
  static stats_vote big_votes[BIG * 3];
  for (int i = 0; i < BIG; i++) {
    big_prompts[i] = i / 2;
    for (int r = 0; r < 3; r++) big_votes[3 * i + r] = votes6[(3 * i + r) % t.n_votes];
    for (int r = 0; r < 3; r++) big_votes[3 * i + r].item = i;
  }
  stats_table big = {BIG, 3, BIG / 2, 3, big_prompts, big_votes, BIG * 3};
  CHECK_INT(stats_vote_rate_bootstrap(&big, STATS_TIES_EXCLUDED, &opt, &c, &dropped, &err), DPO_OK);
  CHECK(c.defined && c.lower <= c.estimate && c.estimate <= c.upper);
  CHECK(c.upper - c.lower < a.upper - a.lower);
  opt.seed = 999;
  CHECK_INT(stats_vote_rate_bootstrap(&big, STATS_TIES_EXCLUDED, &opt, &b, &dropped, &err), DPO_OK);
  CHECK(b.lower != c.lower || b.upper != c.upper);
  CHECK_NEAR(b.lower, c.lower, 0.02);

  opt.n_resamples = 0;
  CHECK_INT(stats_vote_rate_bootstrap(&t, STATS_TIES_SPLIT, &opt, &c, &dropped, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "resample");
}

/* ------------------------------------------------------------- edge cases */

static void test_zero_items(void) {
  stats_table t = {0, 3, 0, 3, NULL, NULL, 0};
  stats_item items[1];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_OK);
  stats_counts c = stats_count_outcomes(items, 0);
  CHECK_INT(c.n_items, 0);
  for (int m = 0; m < STATS_N_TIES_MODES; m++) {
    stats_value r = stats_win_rate(&c, (stats_ties)m);
    CHECK(!r.defined && r.value == 0);
    CHECK_CONTAINS(r.reason, "no items");
  }
  CHECK(!stats_wilson(0, 0, 0.95).defined);
  CHECK(!stats_clopper_pearson(0, 0, 0.95).defined);
  CHECK_CONTAINS(stats_sign_test(&c).reason, "no items");
  CHECK(!stats_fleiss_kappa(items, 0, NULL).defined);
  CHECK(!stats_krippendorff_alpha(items, 0).defined);
  CHECK(!stats_unanimous_share(items, 0).defined);
  stats_bootstrap_options opt = {1, 100, 0.95};
  stats_interval b;
  int dropped;
  CHECK_INT(stats_vote_rate_bootstrap(&t, STATS_TIES_AS_NOT_B, &opt, &b, &dropped, &err), DPO_OK);
  CHECK(!b.defined && b.lower == 0 && b.upper == 0);
  CHECK_CONTAINS(b.reason, "no votes");
  stats_position_bias bias;
  CHECK_INT(stats_position_bias_of(&t, &bias, &err), DPO_OK);
  CHECK(!bias.left_share.defined && !bias.p_value.defined);
}

static void test_no_votes(void) {
  int prompts[3] = {0, 1, 2};
  stats_table t = {3, 2, 3, 2, prompts, NULL, 0};
  stats_item items[3];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_OK);
  stats_counts c = stats_count_outcomes(items, 3);
  CHECK_INT(c.n_items, 0);
  CHECK_INT(c.n_without_votes, 3);
  CHECK_INT(c.n_short, 3);
  CHECK(!stats_win_rate(&c, STATS_TIES_SPLIT).defined);
  stats_rater_agreement per_rater[2];
  CHECK_INT(stats_rater_majority_agreement(&t, items, per_rater, &err), DPO_OK);
  CHECK(!per_rater[0].rate.defined && per_rater[0].rate.reason[0]);
}

static void test_all_ties(void) {
  int prompts[2] = {0, 1};
  stats_vote votes[] = {{0, 0, STATS_CHOICE_TIE, 0}, {0, 1, STATS_CHOICE_TIE, 1}, {1, 0, STATS_CHOICE_TIE, 0},
                        {1, 1, STATS_CHOICE_TIE, 1}};
  stats_table t = {2, 2, 2, 2, prompts, votes, 4};
  stats_item items[2];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_OK);
  stats_counts c = stats_count_outcomes(items, 2);
  CHECK_INT(c.ties, 2);
  CHECK_NEAR(stats_win_rate(&c, STATS_TIES_AS_NOT_B).value, 0.0, 0);
  CHECK_NEAR(stats_win_rate(&c, STATS_TIES_SPLIT).value, 0.5, 0);
  stats_value excluded = stats_win_rate(&c, STATS_TIES_EXCLUDED);
  CHECK(!excluded.defined);
  CHECK_CONTAINS(excluded.reason, "all ties");
  stats_value sign = stats_sign_test(&c);
  CHECK(!sign.defined);
  CHECK_CONTAINS(sign.reason, "all ties");
  /* Perfect agreement on one category: kappa and alpha are 0/0. */
  CHECK_CONTAINS(stats_fleiss_kappa(items, 2, NULL).reason, "same choice");
  CHECK(!stats_krippendorff_alpha(items, 2).defined);
  CHECK_NEAR(stats_unanimous_share(items, 2).value, 1.0, 0);
  stats_bootstrap_options opt = {1, 50, 0.95};
  stats_interval b;
  int dropped;
  CHECK_INT(stats_vote_rate_bootstrap(&t, STATS_TIES_EXCLUDED, &opt, &b, &dropped, &err), DPO_OK);
  CHECK(!b.defined);
  CHECK_INT(stats_vote_rate_bootstrap(&t, STATS_TIES_SPLIT, &opt, &b, &dropped, &err), DPO_OK);
  CHECK(b.defined && b.lower == 0.5 && b.upper == 0.5);
  stats_position_bias bias;
  CHECK_INT(stats_position_bias_of(&t, &bias, &err), DPO_OK);
  CHECK_CONTAINS(bias.p_value.reason, "all ties");
}

static void test_one_rater(void) {
  int prompts[3] = {0, 0, 1};
  stats_vote votes[] = {{0, 0, STATS_CHOICE_B, 0}, {1, 0, STATS_CHOICE_A, 1}, {2, 0, STATS_CHOICE_B, 1}};
  stats_table t = {3, 1, 2, 1, prompts, votes, 3};
  stats_item items[3];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_OK);
  stats_value kappa = stats_fleiss_kappa(items, 3, NULL);
  CHECK(!kappa.defined);
  CHECK_CONTAINS(kappa.reason, "two or more votes");
  CHECK(!stats_krippendorff_alpha(items, 3).defined);
  CHECK(!stats_unanimous_share(items, 3).defined);
  stats_rater_agreement per_rater[1];
  CHECK_INT(stats_rater_majority_agreement(&t, items, per_rater, &err), DPO_OK);
  CHECK_INT(per_rater[0].n_compared, 0);
  CHECK(!per_rater[0].rate.defined);
  /* Win rates are still defined with one rater. */
  stats_counts c = stats_count_outcomes(items, 3);
  CHECK_NEAR(stats_win_rate(&c, STATS_TIES_AS_NOT_B).value, 2.0 / 3, EPS);
}

static void test_category_with_one_item(void) {
  /* Six items: five A, one B, three votes each, unanimous except one vote. */
  int prompts[6] = {0, 1, 2, 3, 4, 5};
  stats_vote votes[18];
  for (int i = 0; i < 6; i++)
    for (int r = 0; r < 3; r++) votes[3 * i + r] = (stats_vote){i, r, i == 5 ? STATS_CHOICE_B : STATS_CHOICE_A, r % 2};
  votes[0].choice = STATS_CHOICE_TIE;
  stats_table t = {6, 3, 6, 3, prompts, votes, 18};
  stats_item items[6];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_OK);
  stats_counts c = stats_count_outcomes(items, 6);
  CHECK_INT(c.b_wins, 1);
  CHECK_INT(c.a_wins, 5);
  stats_interval e = stats_clopper_pearson(c.b_wins, c.n_items, 0.95);
  check_contains(e, 1.0 / 6);
  CHECK(e.lower > 0);
  int equal = 0;
  stats_value kappa = stats_fleiss_kappa(items, 6, &equal);
  CHECK(kappa.defined && equal && kappa.value > 0.5 && kappa.value <= 1);
  stats_value alpha = stats_krippendorff_alpha(items, 6);
  CHECK(alpha.defined && alpha.value > 0.5 && alpha.value <= 1);
}

static void test_bad_tables(void) {
  int prompts[2] = {0, 1};
  stats_vote votes[2] = {{0, 0, STATS_CHOICE_A, 0}, {2, 0, STATS_CHOICE_A, 0}};
  stats_table t = {2, 1, 2, 1, prompts, votes, 2};
  stats_item items[2];
  dpo_error err = {0};
  CHECK_INT(stats_item_outcomes(&t, items, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "vote 1 is for item 2");
  votes[1] = (stats_vote){1, 3, STATS_CHOICE_A, 0};
  CHECK_INT(stats_table_check(&t, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "rater 3");
  votes[1] = (stats_vote){1, 0, (stats_choice)7, 0};
  CHECK_INT(stats_table_check(&t, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "choice 7");
  votes[1] = (stats_vote){1, 0, STATS_CHOICE_B, 0};
  prompts[1] = 5;
  stats_position_bias bias;
  CHECK_INT(stats_position_bias_of(&t, &bias, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "item 1 has prompt 5");
  prompts[1] = 1;
  CHECK_INT(stats_table_check(&t, &err), DPO_OK);
  t.n_votes = -1;
  CHECK_INT(stats_table_check(&t, &err), DPO_ERR_USAGE);
}

static void test_binom_and_holm(void) {
  CHECK(!stats_binom_test(0, 0, 0.5).defined);
  CHECK(!stats_binom_test(5, 4, 0.5).defined);
  CHECK(!stats_binom_test(1, 4, 1.5).defined);
  CHECK_NEAR(stats_binom_test(0, 10, 0.5).value, 2.0 / 1024, 1e-15);
  CHECK_NEAR(stats_binom_test(5, 10, 0.5).value, 1.0, 0);
  stats_value p[4] = {stats_defined(0.01), stats_undefined("no decisive items (all ties)"), stats_defined(0.04),
                      stats_defined(0.03)};
  stats_value adjusted[4];
  int reject[4];
  dpo_error err = {0};
  CHECK_INT(stats_holm(p, 4, 0.05, adjusted, reject, &err), DPO_OK);
  CHECK_NEAR(adjusted[0].value, 0.03, EPS);
  CHECK_NEAR(adjusted[3].value, 0.06, EPS);
  CHECK_NEAR(adjusted[2].value, 0.06, EPS);
  CHECK(!adjusted[1].defined);
  CHECK_CONTAINS(adjusted[1].reason, "all ties");
  CHECK_INT(reject[0], 1);
  CHECK_INT(reject[3], 0);
  CHECK_INT(reject[1], 0);
  CHECK_INT(stats_holm(p, 0, 0.05, adjusted, reject, &err), DPO_OK);
  p[0] = stats_defined(1.5);
  CHECK_INT(stats_holm(p, 4, 0.05, adjusted, reject, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "p-value 0");
}

static void test_bradley_terry(void) {
  /* Two arms, 3 wins to 1: scores +-log(3)/2; var of the difference 1/(n p q). */
  double wins2[4] = {0, 3, 1, 0};
  stats_interval s[4];
  stats_bt_fit fit;
  dpo_error err = {0};
  CHECK_INT(stats_bradley_terry(2, wins2, 0.95, s, &fit, &err), DPO_OK);
  CHECK(fit.converged);
  CHECK_NEAR(s[0].estimate, log(3.0) / 2, 1e-9);
  CHECK_NEAR(s[1].estimate, -log(3.0) / 2, 1e-9);
  double sd_diff = sqrt(1.0 / (4 * 0.75 * 0.25));
  CHECK_NEAR(s[0].upper - s[0].estimate, 1.959963984540054 * sd_diff / 2, 1e-9);
  CHECK(s[0].lower < s[0].estimate && s[0].estimate < s[0].upper);

  /* Three arms where C never wins: undefined, with the reason. */
  double wins3[9] = {0, 3, 4, 2, 0, 5, 0, 0, 0};
  CHECK_INT(stats_bradley_terry(3, wins3, 0.95, s, &fit, &err), DPO_OK);
  for (int i = 0; i < 3; i++) CHECK(!s[i].defined && s[i].estimate == 0);
  CHECK_CONTAINS(s[0].reason, "never beat");
  /* A split tie makes the graph connected again. */
  wins3[6] = 0.5;
  wins3[2] += 0.5;
  CHECK_INT(stats_bradley_terry(3, wins3, 0.95, s, &fit, &err), DPO_OK);
  CHECK(s[2].defined && s[2].estimate < s[0].estimate && s[2].estimate < s[1].estimate);
  CHECK_NEAR(s[0].estimate + s[1].estimate + s[2].estimate, 0, 1e-9);

  CHECK_INT(stats_bradley_terry(1, wins2, 0.95, s, &fit, &err), DPO_OK);
  CHECK(!s[0].defined);
  wins2[1] = -1;
  CHECK_INT(stats_bradley_terry(2, wins2, 0.95, s, &fit, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "wins[0][1]");
  wins2[1] = NAN;
  CHECK_INT(stats_bradley_terry(2, wins2, 0.95, s, &fit, &err), DPO_ERR_USAGE);
  CHECK_INT(stats_bradley_terry(0, wins2, 0.95, s, &fit, &err), DPO_ERR_USAGE);
}

static void test_power(void) {
  stats_power_result r;
  dpo_error err = {0};
  CHECK_INT(stats_power(0.6, 0.05, 0.8, &r, &err), DPO_OK);
  CHECK_INT(r.normal_n, 194);
  CHECK(r.exact_found);
  CHECK(r.exact_first_n <= r.exact_stable_n);
  CHECK(r.exact_first_power >= 0.8 && r.exact_stable_power >= 0.8);
  CHECK(stats_sign_test_power(r.exact_first_n - 1, 0.6, 0.05) < 0.8);
  CHECK(stats_sign_test_power(r.exact_stable_n - 1, 0.6, 0.05) < 0.8);
  for (int n = r.exact_stable_n; n <= r.search_limit; n += 7) CHECK(stats_sign_test_power(n, 0.6, 0.05) >= 0.8);
  /* Symmetric in p around 1/2. */
  stats_power_result mirrored;
  CHECK_INT(stats_power(0.4, 0.05, 0.8, &mirrored, &err), DPO_OK);
  CHECK_INT(mirrored.exact_first_n, r.exact_first_n);
  CHECK_INT(mirrored.exact_stable_n, r.exact_stable_n);
  /* The critical value: n = 10 rejects k <= 1 at 5% (p = 0.021), not k = 2 (0.109). */
  CHECK_INT(stats_sign_test_critical(10, 0.05), 1);
  CHECK_INT(stats_sign_test_critical(5, 0.05), -1);
  CHECK_NEAR(stats_sign_test_power(5, 0.9, 0.05), 0.0, 0);
  /* Too small an effect for the exact search: normal answer only. */
  CHECK_INT(stats_power(0.501, 0.05, 0.8, &r, &err), DPO_OK);
  CHECK(!r.exact_found && r.exact_reason[0] && r.normal_n > 100000);

  CHECK_INT(stats_power(0.5, 0.05, 0.8, &r, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "not 0.5");
  CHECK_INT(stats_power(1.0, 0.05, 0.8, &r, &err), DPO_ERR_USAGE);
  CHECK_INT(stats_power(0.6, 0.0, 0.8, &r, &err), DPO_ERR_USAGE);
  CHECK_INT(stats_power(0.6, 0.05, 1.0, &r, &err), DPO_ERR_USAGE);
  CHECK_INT(stats_power(NAN, 0.05, 0.8, &r, &err), DPO_ERR_USAGE);
}

int main(void) {
  test_intervals_contain_estimate();
  test_intervals_narrow_with_n();
  test_swap_symmetry();
  test_majority_rule();
  test_outcomes_and_rates();
  test_agreement_by_hand();
  test_bootstrap();
  test_zero_items();
  test_no_votes();
  test_all_ties();
  test_one_rater();
  test_category_with_one_item();
  test_bad_tables();
  test_binom_and_holm();
  test_bradley_terry();
  test_power();
  return test_finish();
}
