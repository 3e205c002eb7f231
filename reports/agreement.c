/* Rater agreement: Fleiss' kappa, Krippendorff's alpha, unanimity, each
 * rater against the others' majority, gold checks and position bias. */
#include "reports/reports.h"

stats_value stats_fleiss_kappa(const stats_item *items, int n_items, int *equal_counts) {
  double per_choice[STATS_N_CHOICES] = {0, 0, 0};
  double total_votes = 0, sum_agreement = 0;
  int used = 0, first_count = -1, equal = 1;
  for (int i = 0; i < n_items; i++) {
    const stats_item *item = &items[i];
    double n_i = item->n_votes;
    if (item->n_votes < 2) continue;
    if (first_count < 0) first_count = item->n_votes;
    if (item->n_votes != first_count) equal = 0;
    double squares = 0;
    for (int c = 0; c < STATS_N_CHOICES; c++) {
      squares += (double)item->votes[c] * item->votes[c];
      per_choice[c] += item->votes[c];
    }
    sum_agreement += (squares - n_i) / (n_i * (n_i - 1));
    total_votes += n_i;
    used++;
  }
  if (equal_counts) *equal_counts = used > 0 && equal;
  if (used == 0) return stats_undefined("no item has two or more votes");
  double chance = 0;
  for (int c = 0; c < STATS_N_CHOICES; c++) {
    double p = per_choice[c] / total_votes;
    chance += p * p;
  }
  /* Pe = 1 exactly when every vote is one choice: then 0/0. */
  for (int c = 0; c < STATS_N_CHOICES; c++)
    if (per_choice[c] == total_votes) return stats_undefined("every vote is the same choice");
  double observed = sum_agreement / used;
  return stats_defined((observed - chance) / (1.0 - chance));
}

stats_value stats_krippendorff_alpha(const stats_item *items, int n_items) {
  double o[STATS_N_CHOICES][STATS_N_CHOICES] = {{0}};
  int pairable_items = 0;
  for (int i = 0; i < n_items; i++) {
    const stats_item *item = &items[i];
    if (item->n_votes < 2) continue;
    pairable_items++;
    double m_1 = item->n_votes - 1;
    for (int c = 0; c < STATS_N_CHOICES; c++)
      for (int k = 0; k < STATS_N_CHOICES; k++) {
        double pairs = (double)item->votes[c] * item->votes[k] - (c == k ? item->votes[c] : 0);
        o[c][k] += pairs / m_1;
      }
  }
  if (pairable_items == 0) return stats_undefined("no item has two or more votes");
  double n_c[STATS_N_CHOICES] = {0, 0, 0}, n = 0;
  for (int c = 0; c < STATS_N_CHOICES; c++) {
    for (int k = 0; k < STATS_N_CHOICES; k++) n_c[c] += o[c][k];
    n += n_c[c];
  }
  double observed = 0, expected = 0;
  for (int c = 0; c < STATS_N_CHOICES; c++)
    for (int k = 0; k < STATS_N_CHOICES; k++) {
      if (c == k) continue;
      observed += o[c][k];
      expected += n_c[c] * n_c[k] / (n - 1);
    }
  if (expected == 0) return stats_undefined("every vote on items with two or more votes is the same choice");
  return stats_defined(1.0 - observed / expected);
}

stats_value stats_unanimous_share(const stats_item *items, int n_items) {
  int multi = 0, unanimous = 0;
  for (int i = 0; i < n_items; i++) {
    if (items[i].n_votes < 2) continue;
    multi++;
    for (int c = 0; c < STATS_N_CHOICES; c++)
      if (items[i].votes[c] == items[i].n_votes) unanimous++;
  }
  if (multi == 0) return stats_undefined("no item has two or more votes");
  return stats_defined((double)unanimous / multi);
}

int stats_rater_majority_agreement(const stats_table *t, const stats_item *items, stats_rater_agreement *per_rater,
                                   dpo_error *err) {
  int rc = stats_table_check(t, err);
  if (rc != DPO_OK) return rc;
  for (int r = 0; r < t->n_raters; r++) per_rater[r] = (stats_rater_agreement){0, 0, stats_undefined("")};
  for (int v = 0; v < t->n_votes; v++) {
    const stats_vote *vote = &t->votes[v];
    const stats_item *item = &items[vote->item];
    int others[STATS_N_CHOICES] = {item->votes[0], item->votes[1], item->votes[2]};
    others[vote->choice]--;
    stats_outcome majority = stats_majority(others[STATS_CHOICE_A], others[STATS_CHOICE_B], others[STATS_CHOICE_TIE]);
    if (majority == STATS_OUTCOME_NO_VOTES) continue;
    stats_rater_agreement *a = &per_rater[vote->rater];
    a->n_compared++;
    if ((int)majority == (int)vote->choice) a->n_agree++;
  }
  for (int r = 0; r < t->n_raters; r++) {
    stats_rater_agreement *a = &per_rater[r];
    a->rate = a->n_compared ? stats_defined((double)a->n_agree / a->n_compared)
                            : stats_undefined("the rater shared no item with another rater");
  }
  return DPO_OK;
}

stats_interval stats_gold_pass_rate(const stats_gold_check *checks, int n_checks, int rater) {
  int n = 0, passed = 0;
  for (int i = 0; i < n_checks; i++) {
    if (rater >= 0 && checks[i].rater != rater) continue;
    n++;
    passed += checks[i].passed != 0;
  }
  if (n == 0) return stats_interval_undefined("no gold checks");
  return stats_wilson(passed, n, 0.95);
}

int stats_position_bias_of(const stats_table *t, stats_position_bias *out, dpo_error *err) {
  int rc = stats_table_check(t, err);
  if (rc != DPO_OK) return rc;
  int decisive = 0, left = 0;
  for (int v = 0; v < t->n_votes; v++) {
    const stats_vote *vote = &t->votes[v];
    if (vote->choice == STATS_CHOICE_TIE) continue;
    decisive++;
    int chose_b = vote->choice == STATS_CHOICE_B;
    if (chose_b == (vote->b_on_left != 0)) left++;
  }
  out->n_decisive_votes = decisive;
  out->n_left = left;
  if (decisive == 0) {
    out->left_share = stats_interval_undefined(t->n_votes ? "no decisive votes (all ties)" : "no votes");
    out->p_value = stats_undefined(out->left_share.reason);
  } else {
    out->left_share = stats_wilson(left, decisive, 0.95);
    out->p_value = stats_binom_test(left, decisive, 0.5);
  }
  return DPO_OK;
}
