/* From votes to item outcomes, counts and B's win rate, and the cluster
 * bootstrap of the vote-level rate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>


#include "reports/reports.h"

int stats_table_check(const stats_table *t, dpo_error *err) {
  if (t->n_items < 0 || t->n_raters < 0 || t->n_prompts < 0 || t->n_votes < 0 || t->votes_asked < 0)
    return dpo_fail(err, DPO_ERR_USAGE, "vote table: negative size (items %d, raters %d, prompts %d, votes %d, asked %d)",
                    t->n_items, t->n_raters, t->n_prompts, t->n_votes, t->votes_asked);
  if ((t->n_votes > 0 && !t->votes) || (t->n_items > 0 && !t->item_prompt))
    return dpo_fail(err, DPO_ERR_USAGE, "vote table: missing votes or item prompts array");
  for (int i = 0; i < t->n_items; i++)
    if (t->item_prompt[i] < 0 || t->item_prompt[i] >= t->n_prompts)
      return dpo_fail(err, DPO_ERR_USAGE, "vote table: item %d has prompt %d, expected 0..%d", i, t->item_prompt[i],
                      t->n_prompts - 1);
  for (int v = 0; v < t->n_votes; v++) {
    const stats_vote *vote = &t->votes[v];
    if (vote->item < 0 || vote->item >= t->n_items)
      return dpo_fail(err, DPO_ERR_USAGE, "vote table: vote %d is for item %d, expected 0..%d", v, vote->item,
                      t->n_items - 1);
    if (vote->rater < 0 || vote->rater >= t->n_raters)
      return dpo_fail(err, DPO_ERR_USAGE, "vote table: vote %d is by rater %d, expected 0..%d", v, vote->rater,
                      t->n_raters - 1);
    if ((int)vote->choice < 0 || (int)vote->choice >= STATS_N_CHOICES)
      return dpo_fail(err, DPO_ERR_USAGE, "vote table: vote %d has choice %d, expected 0 (A), 1 (B) or 2 (tie)", v,
                      (int)vote->choice);
  }
  return DPO_OK;
}

stats_outcome stats_majority(int votes_a, int votes_b, int votes_tie) {
  int total = votes_a + votes_b + votes_tie;
  if (total <= 0) return STATS_OUTCOME_NO_VOTES;
  if (2 * votes_b > total) return STATS_OUTCOME_B;
  if (2 * votes_a > total) return STATS_OUTCOME_A;
  return STATS_OUTCOME_TIE;
}

int stats_item_outcomes(const stats_table *t, stats_item *items, dpo_error *err) {
  int rc = stats_table_check(t, err);
  if (rc != DPO_OK) return rc;
  for (int i = 0; i < t->n_items; i++) items[i] = (stats_item){{0, 0, 0}, 0, STATS_OUTCOME_NO_VOTES, 0};
  for (int v = 0; v < t->n_votes; v++) {
    stats_item *item = &items[t->votes[v].item];
    item->votes[t->votes[v].choice]++;
    item->n_votes++;
  }
  for (int i = 0; i < t->n_items; i++) {
    stats_item *item = &items[i];
    item->outcome = stats_majority(item->votes[STATS_CHOICE_A], item->votes[STATS_CHOICE_B], item->votes[STATS_CHOICE_TIE]);
    item->short_of_votes = item->n_votes < t->votes_asked;
  }
  return DPO_OK;
}

stats_counts stats_count_outcomes(const stats_item *items, int n_items) {
  stats_counts c = {0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n_items; i++) {
    if (items[i].short_of_votes) c.n_short++;
    switch (items[i].outcome) {
      case STATS_OUTCOME_A: c.a_wins++; break;
      case STATS_OUTCOME_B: c.b_wins++; break;
      case STATS_OUTCOME_TIE: c.ties++; break;
      case STATS_OUTCOME_NO_VOTES: c.n_without_votes++; break;
    }
  }
  c.n_items = c.a_wins + c.b_wins + c.ties;
  return c;
}

const char *stats_ties_label(stats_ties ties) {
  switch (ties) {
    case STATS_TIES_AS_NOT_B: return "B wins / all items (ties count against B)";
    case STATS_TIES_SPLIT: return "(B wins + ties/2) / all items (ties split half)";
    case STATS_TIES_EXCLUDED: return "B wins / (A wins + B wins) (ties excluded)";
  }
  return "unknown ties mode";
}

void stats_rate_parts(double a, double b, double tie, stats_ties ties, double *successes, double *n) {
  switch (ties) {
    case STATS_TIES_SPLIT:
      *successes = b + 0.5 * tie;
      *n = a + b + tie;
      return;
    case STATS_TIES_EXCLUDED:
      *successes = b;
      *n = a + b;
      return;
    case STATS_TIES_AS_NOT_B:
    default:
      *successes = b;
      *n = a + b + tie;
      return;
  }
}

stats_value stats_win_rate(const stats_counts *c, stats_ties ties) {
  if (c->n_items == 0) return stats_undefined("no items");
  double x, n;
  stats_rate_parts(c->a_wins, c->b_wins, c->ties, ties, &x, &n);
  if (n == 0) return stats_undefined("no decisive items (all ties)");
  return stats_defined(x / n);
}

/* ------------------------------------------------------------- bootstrap */

/* numpy.quantile's default ("linear"): h = (n-1) q between the order
 * statistics x_(floor h) and x_(floor h + 1). Without sorting: the order statistics it needs, found by
 * quickselect (x is reordered). Reports take two quantiles per mode of
 * 10,000 resamples for every question and category, and sorting them all
 * was a tenth of a million-vote report. */
static double select_kth(double *x, int n, int k) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    double pivot = x[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (x[i] < pivot) i++;
      while (x[j] > pivot) j--;
      if (i <= j) {
        double t = x[i];
        x[i] = x[j];
        x[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return x[k];
  }
  return x[k];
}

static double select_quantile(double *x, int n, double q) {
  double h = (n - 1) * q;
  int lo = (int)floor(h);
  if (lo >= n - 1) return select_kth(x, n, n - 1);
  double a = select_kth(x, n, lo);
  /* after selection everything right of lo is >= x[lo]: the next order
   * statistic is their minimum */
  double b = x[lo + 1];
  for (int i = lo + 2; i < n; i++)
    if (x[i] < b) b = x[i];
  return a + (h - lo) * (b - a);
}

typedef struct {
  double votes[STATS_N_CHOICES];
} prompt_votes;

/* B's rate of one resample from its drawn vote totals; 0 when the rate has
 * no denominator (the caller drops that resample). */
static int resample_rate(const double drawn[STATS_N_CHOICES], stats_ties ties, double *rate) {
  double rx, rn;
  stats_rate_parts(drawn[STATS_CHOICE_A], drawn[STATS_CHOICE_B], drawn[STATS_CHOICE_TIE], ties, &rx, &rn);
  if (rn == 0) return 0;
  *rate = rx / rn;
  return 1;
}

/* Prompts with the same vote vector are interchangeable in a resample, so
 * drawing n prompts with replacement and summing their votes is the same as
 * drawing how many times each distinct vector comes up, Multinomial(n, m_k/n)
 * over the K vectors with multiplicities m_k. Studies have few distinct
 * vectors (5 votes per item: 21), so a million votes resample in K binomial
 * draws instead of n uniform ones. Groups are numbered by first appearance in
 * prompt order, which keeps swapping A and B a mirror image draw for draw. */
typedef struct {
  int n_groups;
  prompt_votes *vectors;   /* [n_groups] */
  double *multiplicity;    /* [n_groups] */
} vote_groups;

static int group_prompts(const prompt_votes *per_prompt, int n_prompts, vote_groups *g) {
  g->n_groups = 0;
  g->vectors = malloc(sizeof(prompt_votes) * (size_t)(n_prompts > 0 ? n_prompts : 1));
  g->multiplicity = malloc(sizeof(double) * (size_t)(n_prompts > 0 ? n_prompts : 1));
  size_t cap = 16;
  while (cap < 2 * (size_t)n_prompts) cap *= 2;
  int *slots = malloc(sizeof(int) * cap);
  if (!g->vectors || !g->multiplicity || !slots) {
    free(slots);
    return 0;
  }
  for (size_t s = 0; s < cap; s++) slots[s] = -1;
  for (int p = 0; p < n_prompts; p++) {
    const double *v = per_prompt[p].votes;
    uint64_t h = ((uint64_t)v[0] * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)v[1] * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)v[2] * 0x165667B19E3779F9ull);
    size_t s = (size_t)(h ^ (h >> 29)) & (cap - 1);
    while (slots[s] >= 0 && memcmp(g->vectors[slots[s]].votes, v, sizeof(prompt_votes)) != 0) s = (s + 1) & (cap - 1);
    if (slots[s] < 0) {
      slots[s] = g->n_groups;
      g->vectors[g->n_groups] = per_prompt[p];
      g->multiplicity[g->n_groups] = 0;
      g->n_groups++;
    }
    g->multiplicity[slots[s]] += 1;
  }
  free(slots);
  return 1;
}

/* Draws opt->n_resamples resamples and stores each one's vote totals in
 * drawn[r * 3 + choice]; every ties mode's rate comes from the same draws. */
static int draw_resamples(const prompt_votes *per_prompt, int n_prompts, const stats_bootstrap_options *opt,
                          double *drawn_all, dpo_error *err) {
  dpo_rng rng;
  dpo_rng_init(&rng, opt->seed, dpo_rng_stream_id("stats.bootstrap", 0, 0));
  vote_groups g = {0, NULL, NULL};
  if (!group_prompts(per_prompt, n_prompts, &g)) {
    free(g.vectors);
    free(g.multiplicity);
    return dpo_fail(err, DPO_ERR_DATA, "bootstrap: out of memory grouping %d prompts", n_prompts);
  }
  /* Few groups: multinomial counts per group. Many: draw prompts one by one
   * (a uniform draw is cheaper than a binomial one). */
  int grouped = (size_t)g.n_groups * 8 <= (size_t)n_prompts;
  unsigned int *counts = grouped ? malloc(sizeof(unsigned int) * (size_t)g.n_groups) : NULL;
  if (grouped && !counts) {
    free(g.vectors);
    free(g.multiplicity);
    return dpo_fail(err, DPO_ERR_DATA, "bootstrap: out of memory for %d vote groups", g.n_groups);
  }
  stats_sampler sampler;
  stats_sampler_init(&sampler, rng.seed, rng.stream);
  for (int r = 0; r < opt->n_resamples; r++) {
    double *drawn = &drawn_all[(size_t)r * STATS_N_CHOICES];
    for (int c = 0; c < STATS_N_CHOICES; c++) drawn[c] = 0;
    if (grouped) {
      stats_sample_multinomial(&sampler, (unsigned int)n_prompts, g.multiplicity, g.n_groups, counts);
      for (int k = 0; k < g.n_groups; k++)
        for (int c = 0; c < STATS_N_CHOICES; c++) drawn[c] += counts[k] * g.vectors[k].votes[c];
    } else {
      for (int i = 0; i < n_prompts; i++) {
        const prompt_votes *p = &per_prompt[dpo_rng_next_below(&rng, (uint32_t)n_prompts)];
        for (int c = 0; c < STATS_N_CHOICES; c++) drawn[c] += p->votes[c];
      }
    }
  }
  free(counts);
  free(g.vectors);
  free(g.multiplicity);
  return DPO_OK;
}

/* The percentile interval of one ties mode from the drawn totals. */
static stats_interval mode_interval(const double *drawn_all, int n_resamples, const double total[STATS_N_CHOICES],
                                    stats_ties ties, double confidence, double *rates, int *n_dropped) {
  double x, n;
  stats_rate_parts(total[STATS_CHOICE_A], total[STATS_CHOICE_B], total[STATS_CHOICE_TIE], ties, &x, &n);
  *n_dropped = 0;
  if (n == 0) return stats_interval_undefined("no decisive votes (all ties)");
  int n_rates = 0;
  for (int r = 0; r < n_resamples; r++) {
    if (resample_rate(&drawn_all[(size_t)r * STATS_N_CHOICES], ties, &rates[n_rates])) n_rates++;
    else (*n_dropped)++;
  }
  if (n_rates == 0) return stats_interval_undefined("every bootstrap resample had no decisive votes");
  double tail = (1.0 - confidence) / 2.0;
  return (stats_interval){1, x / n, select_quantile(rates, n_rates, tail), select_quantile(rates, n_rates, 1.0 - tail), ""};
}

int stats_vote_rate_bootstrap_modes(const stats_table *t, const stats_bootstrap_options *opt,
                                    stats_interval out[STATS_N_TIES_MODES], int n_dropped[STATS_N_TIES_MODES],
                                    dpo_error *err) {
  for (int m = 0; m < STATS_N_TIES_MODES; m++) n_dropped[m] = 0;
  int rc = stats_table_check(t, err);
  if (rc != DPO_OK) return rc;
  if (opt->n_resamples < 1) return dpo_fail(err, DPO_ERR_USAGE, "bootstrap: need at least one resample, got %d", opt->n_resamples);
  if (!(opt->confidence > 0 && opt->confidence < 1))
    return dpo_fail(err, DPO_ERR_USAGE, "bootstrap: confidence %g outside (0, 1)", opt->confidence);
  if (t->n_votes == 0) {
    for (int m = 0; m < STATS_N_TIES_MODES; m++) out[m] = stats_interval_undefined("no votes");
    return DPO_OK;
  }
  double total[STATS_N_CHOICES] = {0, 0, 0};
  for (int v = 0; v < t->n_votes; v++) total[t->votes[v].choice] += 1;

  /* Votes per prompt once, so each resample is a sum over drawn prompts. */
  prompt_votes *per_prompt = calloc((size_t)t->n_prompts, sizeof(prompt_votes));
  double *drawn = malloc(sizeof(double) * STATS_N_CHOICES * (size_t)opt->n_resamples);
  double *rates = malloc(sizeof(double) * (size_t)opt->n_resamples);
  if (!per_prompt || !drawn || !rates) {
    free(per_prompt);
    free(drawn);
    free(rates);
    return dpo_fail(err, DPO_ERR_DATA, "bootstrap: out of memory for %d prompts, %d resamples", t->n_prompts,
                    opt->n_resamples);
  }
  for (int v = 0; v < t->n_votes; v++) per_prompt[t->item_prompt[t->votes[v].item]].votes[t->votes[v].choice] += 1;
  rc = draw_resamples(per_prompt, t->n_prompts, opt, drawn, err);
  for (int m = 0; rc == DPO_OK && m < STATS_N_TIES_MODES; m++)
    out[m] = mode_interval(drawn, opt->n_resamples, total, (stats_ties)m, opt->confidence, rates, &n_dropped[m]);
  free(per_prompt);
  free(drawn);
  free(rates);
  return rc;
}

int stats_vote_rate_bootstrap(const stats_table *t, stats_ties ties, const stats_bootstrap_options *opt,
                              stats_interval *out, int *n_dropped, dpo_error *err) {
  stats_interval all[STATS_N_TIES_MODES];
  int dropped[STATS_N_TIES_MODES];
  *n_dropped = 0;
  if ((int)ties < 0 || (int)ties >= STATS_N_TIES_MODES)
    return dpo_fail(err, DPO_ERR_USAGE, "bootstrap: unknown ties mode %d", (int)ties);
  int rc = stats_vote_rate_bootstrap_modes(t, opt, all, dropped, err);
  if (rc != DPO_OK) return rc;
  *out = all[ties];
  *n_dropped = dropped[ties];
  return DPO_OK;
}
