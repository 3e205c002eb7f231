/* From votes to item outcomes, counts and B's win rate, and the cluster
 * bootstrap of the vote-level rate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

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

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* numpy.quantile's default ("linear"): h = (n-1) q between order statistics. */
static double sorted_quantile(const double *x, int n, double q) {
  double h = (n - 1) * q;
  int lo = (int)floor(h);
  if (lo >= n - 1) return x[n - 1];
  return x[lo] + (h - lo) * (x[lo + 1] - x[lo]);
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

/* GSL's samplers driven by the Philox stream, so every draw stays a function
 * of the seed whichever path below runs. */
static unsigned long philox_get(void *state) { return dpo_rng_next_u32((dpo_rng *)state); }
static double philox_get_double(void *state) { return dpo_rng_next_u32((dpo_rng *)state) / 4294967296.0; }
static void philox_set(void *state, unsigned long seed) { dpo_rng_init((dpo_rng *)state, seed, 0); }
static const gsl_rng_type philox_type = {"dpo-philox", 0xffffffffUL, 0, sizeof(dpo_rng), philox_set, philox_get,
                                         philox_get_double};

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

static int draw_resamples(const prompt_votes *per_prompt, int n_prompts, stats_ties ties,
                          const stats_bootstrap_options *opt, double *rates, int *n_rates, int *n_dropped,
                          dpo_error *err) {
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
  gsl_rng *grng = grouped ? gsl_rng_alloc(&philox_type) : NULL;
  if (grouped && (!counts || !grng)) {
    free(counts);
    if (grng) gsl_rng_free(grng);
    free(g.vectors);
    free(g.multiplicity);
    return dpo_fail(err, DPO_ERR_DATA, "bootstrap: out of memory for %d vote groups", g.n_groups);
  }
  if (grouped) memcpy(grng->state, &rng, sizeof rng);
  for (int r = 0; r < opt->n_resamples; r++) {
    double drawn[STATS_N_CHOICES] = {0, 0, 0};
    if (grouped) {
      gsl_ran_multinomial(grng, (size_t)g.n_groups, (unsigned int)n_prompts, g.multiplicity, counts);
      for (int k = 0; k < g.n_groups; k++)
        for (int c = 0; c < STATS_N_CHOICES; c++) drawn[c] += counts[k] * g.vectors[k].votes[c];
    } else {
      for (int i = 0; i < n_prompts; i++) {
        const prompt_votes *p = &per_prompt[dpo_rng_next_below(&rng, (uint32_t)n_prompts)];
        for (int c = 0; c < STATS_N_CHOICES; c++) drawn[c] += p->votes[c];
      }
    }
    if (resample_rate(drawn, ties, &rates[*n_rates])) (*n_rates)++;
    else (*n_dropped)++;
  }
  free(counts);
  if (grng) gsl_rng_free(grng);
  free(g.vectors);
  free(g.multiplicity);
  return DPO_OK;
}

int stats_vote_rate_bootstrap(const stats_table *t, stats_ties ties, const stats_bootstrap_options *opt,
                              stats_interval *out, int *n_dropped, dpo_error *err) {
  *n_dropped = 0;
  int rc = stats_table_check(t, err);
  if (rc != DPO_OK) return rc;
  if (opt->n_resamples < 1) return dpo_fail(err, DPO_ERR_USAGE, "bootstrap: need at least one resample, got %d", opt->n_resamples);
  if (!(opt->confidence > 0 && opt->confidence < 1))
    return dpo_fail(err, DPO_ERR_USAGE, "bootstrap: confidence %g outside (0, 1)", opt->confidence);

  double total[STATS_N_CHOICES] = {0, 0, 0};
  for (int v = 0; v < t->n_votes; v++) total[t->votes[v].choice] += 1;
  double x, n;
  stats_rate_parts(total[STATS_CHOICE_A], total[STATS_CHOICE_B], total[STATS_CHOICE_TIE], ties, &x, &n);
  if (t->n_votes == 0) {
    *out = stats_interval_undefined("no votes");
    return DPO_OK;
  }
  if (n == 0) {
    *out = stats_interval_undefined("no decisive votes (all ties)");
    return DPO_OK;
  }

  /* Votes per prompt once, so each resample is a sum over drawn prompts. */
  prompt_votes *per_prompt = calloc((size_t)t->n_prompts, sizeof(prompt_votes));
  double *rates = malloc(sizeof(double) * (size_t)opt->n_resamples);
  if (!per_prompt || !rates) {
    free(per_prompt);
    free(rates);
    return dpo_fail(err, DPO_ERR_DATA, "bootstrap: out of memory for %d prompts, %d resamples", t->n_prompts,
                    opt->n_resamples);
  }
  for (int v = 0; v < t->n_votes; v++) per_prompt[t->item_prompt[t->votes[v].item]].votes[t->votes[v].choice] += 1;

  int n_rates = 0;
  rc = draw_resamples(per_prompt, t->n_prompts, ties, opt, rates, &n_rates, n_dropped, err);
  if (rc != DPO_OK) {
    free(per_prompt);
    free(rates);
    return rc;
  }
  if (n_rates == 0) {
    *out = stats_interval_undefined("every bootstrap resample had no decisive votes");
  } else {
    qsort(rates, (size_t)n_rates, sizeof(double), compare_double);
    double tail = (1.0 - opt->confidence) / 2.0;
    *out = (stats_interval){1, x / n, sorted_quantile(rates, n_rates, tail), sorted_quantile(rates, n_rates, 1.0 - tail), ""};
  }
  free(per_prompt);
  free(rates);
  return DPO_OK;
}
