/* reports: the statistics behind win-rate reports, and the study reports
 * themselves (report_write at the end: JSON, Markdown, self-contained HTML
 * with SVG charts, per-item CSV).
 *
 * Setting. A study compares two arms, A (usually the base model) and B (the
 * tuned one), on items (one prompt's pair of images) for one or more
 * questions. Raters vote A, B or tie; each item was asked for N votes.
 *
 * Undefined values. Every statistic that can be undefined (no items, all
 * ties, a single rater, ...) comes back as a stats_value or stats_interval
 * whose `defined` is 0 and whose `reason` says why in words; its numbers are
 * then 0, never NaN, so nothing undefined can leak into a report as a number.
 * Reasons are static strings.
 *
 * Reference implementations. Each formula below names the Python function it
 * matches; tests/fixtures/make_stats_fixtures.py (pinned versions) writes the
 * expected values and tests/golden/test_stats_golden.c compares them.
 *
 * Errors. Functions that take a table or allocate return DPO_OK or an error
 * code with a message in a dpo_error (DPO_ERR_USAGE for out-of-range indices
 * or parameters, DPO_ERR_DATA for failed allocations). Pure formulas return
 * their value directly. */
#ifndef DPO_REPORTS_H
#define DPO_REPORTS_H

#include <stdint.h>

#include "core/core.h"

/* ------------------------------------------------------ values, intervals */

typedef struct {
  int defined;          /* 1 when value is a number */
  double value;         /* 0 when undefined */
  const char *reason;   /* why undefined; "" when defined */
} stats_value;

typedef struct {
  int defined;          /* 1 when estimate, lower and upper are numbers */
  double estimate;      /* the point estimate the interval is about */
  double lower, upper;
  const char *reason;   /* why undefined; "" when defined */
} stats_interval;

stats_value stats_defined(double value);
stats_value stats_undefined(const char *reason);
stats_interval stats_interval_undefined(const char *reason);

/* ------------------------------------------------------------ vote tables */

typedef enum { STATS_CHOICE_A = 0, STATS_CHOICE_B = 1, STATS_CHOICE_TIE = 2 } stats_choice;
#define STATS_N_CHOICES 3

typedef struct {
  int item;            /* 0 .. n_items-1 */
  int rater;           /* 0 .. n_raters-1 */
  stats_choice choice; /* in terms of arms, whatever side they were shown on */
  int b_on_left;       /* 1 when B's image was on the left (for position bias) */
} stats_vote;

/* The counted votes of one question. The study database decides which votes
 * count (e.g. drops raters who failed gold checks); everything given here is
 * counted. */
typedef struct {
  int n_items;
  int n_raters;
  int n_prompts;
  int votes_asked;          /* N, the votes requested per item */
  const int *item_prompt;   /* [n_items] prompt (bootstrap cluster) of each item, 0..n_prompts-1 */
  const stats_vote *votes;
  int n_votes;
} stats_table;

/* Checks every index against the table's sizes (DPO_ERR_USAGE naming the
 * vote or item). All functions taking a table call it first. */
int stats_table_check(const stats_table *table, dpo_error *err);

/* ------------------------------------------------------- item outcomes */

typedef enum {
  STATS_OUTCOME_A = 0,
  STATS_OUTCOME_B = 1,
  STATS_OUTCOME_TIE = 2,
  STATS_OUTCOME_NO_VOTES = 3   /* no counted vote: left out of every count */
} stats_outcome;

/* Majority rule: B when more than half of the counted votes (ties included)
 * chose B, A likewise, otherwise a tie. So 2 B + 1 tie is B, 1 A + 1 B + 1
 * tie is a tie, 2 A + 2 B is a tie. No votes gives STATS_OUTCOME_NO_VOTES. */
stats_outcome stats_majority(int votes_a, int votes_b, int votes_tie);

typedef struct {
  int votes[STATS_N_CHOICES];   /* counted votes per choice */
  int n_votes;
  stats_outcome outcome;
  int short_of_votes;           /* flag: fewer counted votes than votes_asked */
} stats_item;

/* Fills items[0..n_items) from the table. */
int stats_item_outcomes(const stats_table *table, stats_item *items, dpo_error *err);

typedef struct {
  int n_items;          /* items with at least one counted vote */
  int a_wins, b_wins, ties;
  int n_short;          /* items flagged short_of_votes (those without votes included) */
  int n_without_votes;  /* items with no counted vote (not in n_items) */
} stats_counts;

stats_counts stats_count_outcomes(const stats_item *items, int n_items);

/* ------------------------------------------------------------ win rates */

/* How ties enter B's win rate. With a, b, t the counts of A, B and tie:
 *   STATS_TIES_AS_NOT_B  rate = b / (a + b + t)    the paper's "preferred X% of the time"
 *   STATS_TIES_SPLIT     rate = (b + t/2) / (a + b + t)
 *   STATS_TIES_EXCLUDED  rate = b / (a + b) */
typedef enum { STATS_TIES_AS_NOT_B = 0, STATS_TIES_SPLIT = 1, STATS_TIES_EXCLUDED = 2 } stats_ties;
#define STATS_N_TIES_MODES 3

/* A label for reports, e.g. "B wins / items (ties count against B)". */
const char *stats_ties_label(stats_ties ties);
/* The numerator ("successes") and denominator of B's rate under a mode. */
void stats_rate_parts(double a, double b, double tie, stats_ties ties, double *successes, double *n);

/* B's item-level win rate. Undefined for zero items, or all ties when ties
 * are excluded. */
stats_value stats_win_rate(const stats_counts *counts, stats_ties ties);

/* Intervals for a proportion x / n at a confidence level (0.95 for 95%).
 * x may be fractional (ties split half); 0 <= x <= n. Undefined when n = 0.
 *
 * Wilson score, as statsmodels proportion_confint(method="wilson"):
 *   z = Phi^-1(1 - alpha/2), q = x/n,
 *   centre = (q + z^2/(2n)) / (1 + z^2/n),
 *   half   = z sqrt(q(1-q)/n + z^2/(4n^2)) / (1 + z^2/n).
 * Clopper-Pearson exact, as proportion_confint(method="beta"):
 *   lower = Beta^-1(alpha/2; x, n-x+1)   (0 when x = 0),
 *   upper = Beta^-1(1-alpha/2; x+1, n-x) (1 when x = n),
 * with GSL's gsl_cdf_beta_Pinv / gsl_cdf_beta_Qinv. */
stats_interval stats_wilson(double x, double n, double confidence);
stats_interval stats_clopper_pearson(double x, double n, double confidence);

/* Vote-level rate: the same rate over all counted votes instead of item
 * outcomes (ties mode applied to vote counts), with a percentile interval
 * from a cluster bootstrap over prompts: each resample draws n_prompts
 * prompts with replacement (Philox stream dpo_rng_stream_id("stats.bootstrap",
 * 0, 0) under `seed`, dpo_rng_next_below) and pools all votes of the drawn
 * prompts; the interval is the (1-confidence)/2 and (1+confidence)/2
 * quantiles of the resampled rates with linear interpolation between order
 * statistics (numpy.quantile's default). Resamples whose denominator is 0
 * (all ties drawn, ties excluded) are dropped and counted in *n_dropped; the
 * interval is undefined if every resample was dropped. Prompts without votes
 * still take part in the draw.
 * Speed: prompts with the same vote vector are interchangeable, so when there
 * are at least 8 prompts per distinct vector the resample draws how often
 * each vector comes up (Multinomial(n_prompts, m_k / n_prompts), GSL's
 * stats_sample_multinomial on the same Philox stream) instead of each
 * prompt: the same distribution in O(vectors) per resample, which is what
 * lets a million-vote study resample 10,000 times in milliseconds. */
#define STATS_BOOTSTRAP_RESAMPLES 10000   /* what reports use */

typedef struct {
  uint64_t seed;
  int n_resamples;
  double confidence;
} stats_bootstrap_options;

int stats_vote_rate_bootstrap(const stats_table *table, stats_ties ties, const stats_bootstrap_options *opt,
                              stats_interval *out, int *n_dropped, dpo_error *err);
/* The same for the three ties modes at once, from the same resamples (a
 * resample's vote totals give every mode's rate); out[m] and n_dropped[m]
 * are what stats_vote_rate_bootstrap gives for mode m. */
int stats_vote_rate_bootstrap_modes(const stats_table *table, const stats_bootstrap_options *opt,
                                    stats_interval out[STATS_N_TIES_MODES], int n_dropped[STATS_N_TIES_MODES],
                                    dpo_error *err);

/* Draws for the grouped bootstrap, from a Philox stream: element i of the
 * stream is word i % 4 of block i / 4 (dpo_rng_u32's layout; each block is
 * computed once); uniforms are (word + 1/2) / 2^32. */
typedef struct {
  uint64_t seed, stream, index;
  uint32_t block[4];
  uint64_t cached_block;
} stats_sampler;

void stats_sampler_init(stats_sampler *s, uint64_t seed, uint64_t stream);
/* Binomial(n, p), exact in distribution: with p' = min(p, 1-p), inversion
 * (BINV) when n p' < 10, else Hormann's BTRS (transformed rejection with
 * squeeze, acceptance by the exact log-probability ratio). */
unsigned int stats_sample_binomial(stats_sampler *s, unsigned int n, double p);
/* Multinomial(n, weights / sum of weights) over k categories by conditional
 * binomials in order; weights <= 0 get 0. */
void stats_sample_multinomial(stats_sampler *s, unsigned int n, const double *weights, int k, unsigned int *counts);

/* ---------------------------------------------------------------- tests */

/* Two-sided exact binomial test of k successes in n trials against p0, as
 * scipy.stats.binomtest(k, n, p0, alternative="two-sided").pvalue: the sum of
 * the probabilities of all outcomes no more likely than k, where "no more
 * likely" allows a relative tolerance of 1e-7 (scipy's rerr), capped at 1.
 * Undefined when n = 0. Needs 0 <= k <= n and 0 <= p0 <= 1 (else undefined). */
stats_value stats_binom_test(int k, int n, double p0);

/* Sign test of B wins against A wins among decisive items (ties dropped):
 * stats_binom_test(b_wins, a_wins + b_wins, 0.5). Undefined with no decisive item. */
stats_value stats_sign_test(const stats_counts *counts);

/* Holm step-down adjustment across the questions of a study, as statsmodels
 * multipletests(p, alpha, method="holm"): sort the m p-values ascending,
 * adjusted_(i) = max_{j<=i} min(1, (m - j) p_(j)) (0-based j), and reject the
 * questions before the first sorted p_(i) > alpha / (m - i). Undefined
 * p-values are left out of m and stay undefined (reject 0). */
int stats_holm(const stats_value *p_values, int n, double alpha, stats_value *adjusted, int *reject,
               dpo_error *err);

/* ------------------------------------------------------------ agreement */

/* Fleiss' kappa over the choices A / B / tie. Items with fewer than two
 * votes carry no agreement and are left out; when the remaining items all
 * have the same number of votes this is statsmodels
 * fleiss_kappa(table, method="fleiss") on them: with n_ij the votes of item i for choice j and n_i = sum_j n_ij,
 *   P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)),  P = mean_i P_i,
 *   p_j = sum_i n_ij / sum_i n_i,  Pe = sum_j p_j^2,  kappa = (P - Pe) / (1 - Pe).
 * Unequal counts (statsmodels refuses them): the same formula with each
 * item's own n_i, the usual generalisation; *equal_counts (may be NULL) says
 * which case applied so reports can label it. Undefined with no item of two or more votes, or when every
 * vote is the same choice (Pe = 1). */
stats_value stats_fleiss_kappa(const stats_item *items, int n_items, int *equal_counts);

/* Krippendorff's alpha, nominal, as krippendorff.alpha(reliability_data,
 * level_of_measurement="nominal") with missing votes as NaN: coincidences
 *   o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1) over items with m_u >= 2 votes,
 *   n_c = sum_k o_ck, n = sum_c n_c, e_ck = (n_c n_k - [c = k] n_c) / (n - 1),
 *   alpha = 1 - sum_{c != k} o_ck / sum_{c != k} e_ck.
 * Undefined with no item of two or more votes, or when those votes are all one
 * choice (expected disagreement 0). */
stats_value stats_krippendorff_alpha(const stats_item *items, int n_items);

/* Share of items with two or more votes where every vote is the same choice.
 * Undefined when no item has two votes (one rater). */
stats_value stats_unanimous_share(const stats_item *items, int n_items);

/* Each rater's agreement with the majority of the OTHER votes on the same
 * item (leave-one-out, so a rater does not agree with themselves): for each
 * vote, the majority rule over the item's remaining votes; a tie vote agrees
 * with a tie outcome. Items where the rater is the only voter are skipped.
 * rate is agree / compared, undefined when nothing was compared. */
typedef struct {
  int n_compared;
  int n_agree;
  stats_value rate;
} stats_rater_agreement;

/* items: stats_item_outcomes of the same table; per_rater: n_raters entries. */
int stats_rater_majority_agreement(const stats_table *table, const stats_item *items,
                                   stats_rater_agreement *per_rater, dpo_error *err);

/* Gold checks: items with a known answer shown to raters. */
typedef struct {
  int rater;
  int passed;   /* 1 when the rater gave the known answer */
} stats_gold_check;

/* Pass rate with its 95% Wilson interval over all checks (rater = -1) or one
 * rater's; undefined without checks. */
stats_interval stats_gold_pass_rate(const stats_gold_check *checks, int n_checks, int rater);

/* Position bias: among votes for A or B (ties left out), the share that chose
 * the image on the left, its 95% Wilson interval and the two-sided exact
 * binomial test against 1/2. */
typedef struct {
  int n_decisive_votes;
  int n_left;
  stats_interval left_share;
  stats_value p_value;
} stats_position_bias;

int stats_position_bias_of(const stats_table *table, stats_position_bias *out, dpo_error *err);

/* --------------------------------------------------------- Bradley-Terry */

/* Bradley-Terry over k arms from pairwise results: wins[i*k + j] is how often
 * arm i beat arm j (items, so fractional when a tie is split half to each
 * side). Model P(i beats j) = 1 / (1 + exp(s_j - s_i)).
 *
 * Fit: Hunter's (2004) MM algorithm on strengths pi_i = exp(s_i),
 *   pi_i <- W_i / sum_{j != i} n_ij / (pi_i + pi_j),
 * until the largest change of a score is below 1e-12 (at most 100000
 * iterations); scores are centred (mean 0), so they are log-odds relative to
 * an average arm.
 * Intervals: Wald, s_i +- z sd_i, with the covariance the Moore-Penrose
 * inverse of the Fisher information I (I_ii = sum_j n_ij p_ij p_ji,
 * I_ij = -n_ij p_ij p_ji), which is the covariance of the centred scores.
 * Undefined (every score, with the reason) when the maximum likelihood
 * estimate does not exist: some group of arms never beat the rest (the
 * directed "beat" graph is not strongly connected), or fewer than two arms. */
typedef struct {
  int n_arms;
  int iterations;
  int converged;
} stats_bt_fit;

int stats_bradley_terry(int n_arms, const double *wins, double confidence, stats_interval *scores,
                        stats_bt_fit *fit, dpo_error *err);

/* ---------------------------------------------------------------- power */

/* Items needed to detect B's win rate p against 1/2 with the two-sided
 * test at level alpha and the given power.
 *
 * Normal approximation (one-sample proportion test):
 *   n = ((z_{1-alpha/2} sqrt(1/4) + z_power sqrt(p(1-p))) / (p - 1/2))^2,
 *   normal_n = ceil(n).
 * Exact: power(n) = P_p(K <= c_n) + P_p(K >= n - c_n), where c_n is the
 * largest k < n/2 with stats_binom_test(k, n, 0.5) <= alpha (the test's
 * rejection region is symmetric). power(n) is not monotone in n (the
 * critical value moves in steps), so two answers are given over the search
 * range n = 1 .. limit with limit = 2 normal_n + 100:
 *   exact_first_n:  the first n with power(n) >= target;
 *   exact_stable_n: the smallest n with power(n') >= target for every n'
 *                   from n to limit (the safe choice).
 * The search stops at STATS_POWER_MAX_N; beyond it the exact answers are
 * undefined (exact_found 0, exact_reason set). */
#define STATS_POWER_MAX_N 200000

typedef struct {
  double p, alpha, power;
  double normal_n_real;     /* the formula before rounding up */
  int normal_n;
  int exact_found;
  const char *exact_reason; /* "" when found */
  int search_limit;
  int exact_first_n;
  double exact_first_power;
  int exact_stable_n;
  double exact_stable_power;
} stats_power_result;

/* Usage errors: p not in (0, 1) or equal to 1/2, alpha or power not in (0, 1). */
int stats_power(double p, double alpha, double power, stats_power_result *out, dpo_error *err);

/* Largest k < n/2 rejected by the two-sided exact test at alpha; -1 if none. */
int stats_sign_test_critical(int n, double alpha);
/* Power of that test at n when the true rate is p. */
double stats_sign_test_power(int n, double p, double alpha);

/* ------------------------------------------------------- study reports */

/* `dpo report`: reads the counted votes of one or more studies from a study
 * database (see studies/studies.h) and writes DIR/report.json, report.md,
 * report.html and items.csv, each atomically. The layout of report.json is
 * documented in reports/report_json.c. */
typedef struct {
  const char *db_path;
  const char *const *studies;   /* study names */
  int n_studies;
  const char *out_dir;
  uint64_t seed;                /* bootstrap seed */
  int n_resamples;              /* STATS_BOOTSTRAP_RESAMPLES for reports */
} report_options;

typedef struct {
  int n_studies;
  long n_votes;      /* counted votes read, all studies and questions */
  int n_items;       /* real items, all studies */
  int n_images_missing;   /* gallery images that could not be read (shown as missing) */
} report_summary;

int report_write(const report_options *opt, report_summary *summary, dpo_error *err);

#endif
