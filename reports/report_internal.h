/* Shared by the study-report files of reports/ (not a public header): the
 * data read from a study database and the statistics computed from it, which
 * the JSON, Markdown, HTML and CSV writers all print from, so every number a
 * reader sees comes from one place. */
#ifndef DPO_REPORT_INTERNAL_H
#define DPO_REPORT_INTERNAL_H

#include <stdio.h>

#include "reports/reports.h"

#define REPORT_MAX_QUESTIONS 4
#define REPORT_CONFIDENCE 0.95
#define REPORT_GALLERY_EACH 4

typedef struct {
  int64_t db_id;
  char *public_id, *prompt_set, *prompt_id, *prompt, *category;
  int64_t seed, image_index;
  int a_on_left;            /* the side the item record shows A on */
  char *image_a, *image_b;  /* registered image files */
  int prompt_index;         /* bootstrap cluster */
  int category_index;
} report_item;

/* Statistics of one question over a set of items (all, or one category). */
typedef struct {
  stats_counts counts;
  int votes[STATS_N_CHOICES];            /* counted votes by choice */
  int n_votes;
  stats_value rate[STATS_N_TIES_MODES];  /* item-level rate of B */
  stats_interval wilson[STATS_N_TIES_MODES], exact[STATS_N_TIES_MODES];
  stats_interval bootstrap[STATS_N_TIES_MODES];   /* vote-level rate, cluster bootstrap */
  int bootstrap_dropped[STATS_N_TIES_MODES];
  stats_value p_value, p_holm;
  int holm_reject;
  stats_value fleiss, krippendorff, unanimous;
  int fleiss_equal_counts;
  stats_position_bias bias;
} report_stats;

typedef struct {
  int64_t db_id;
  char key[16];
  char *text;
  int gold_checked;
  stats_vote *votes;        /* counted votes; item and rater are report indices */
  int n_votes, cap_votes;
  stats_item *items;        /* [n_items] outcomes */
  report_stats overall;
  report_stats *by_category;        /* [n_categories] */
  stats_rater_agreement *raters;    /* [n_raters] */
  stats_gold_check *gold;           /* gold answers on this question */
  int n_gold, cap_gold;
  stats_interval gold_pass;
  stats_interval *gold_by_rater;    /* [n_raters] */
} report_question;

typedef struct {
  int64_t db_id;
  char *name;
  int votes_per_item, allow_tie;
  int64_t arm_a, arm_b;
  char *model_a, *model_b, *run_a, *run_b;
  report_item *items;
  int n_items;
  int n_prompts;
  int *item_prompt;         /* [n_items] */
  char *prompt_sets;        /* the items' prompt sets, sorted, comma-separated: the benchmark */
  char **categories;        /* sorted */
  int n_categories;
  int *category_items;      /* [n_categories] items per category */
  char **raters;            /* "source:external_id" */
  int64_t *rater_db_ids;
  int n_raters;
  report_question questions[REPORT_MAX_QUESTIONS];
  int n_questions;
} report_study;

/* Bradley-Terry over the arms of every study given, one fit per question key. */
typedef struct {
  char key[16];
  int n_arms;
  int64_t *arm_ids;
  char **arm_labels;
  double *wins;             /* n_arms x n_arms */
  int n_comparisons;        /* item outcomes used */
  stats_interval *scores;
  stats_bt_fit fit;
  const char *reason;       /* "" when fitted */
} report_bt;

typedef struct {
  report_study *studies;
  int n_studies;
  report_bt *bt;
  int n_bt;
  uint64_t seed;
  int n_resamples;
} report_data;

int report_load(const report_options *opt, report_data *data, dpo_error *err);
int report_compute(report_data *data, dpo_error *err);
void report_free(report_data *data);

/* Writers, each to an open file; report_write opens the four files
 * atomically and renames them into place only when all four are written. */
int report_write_json(const report_data *data, FILE *f, dpo_error *err);
void report_write_markdown(const report_data *data, FILE *f);
void report_write_html(const report_data *data, FILE *f, int *n_images_missing);
void report_write_items_csv(const report_data *data, FILE *f);

/* Helpers shared by the writers. */
const char *report_outcome_name(stats_outcome o);
const char *report_ties_key(stats_ties t);   /* "ties_as_not_b", "ties_split", "ties_excluded" */
/* "62.3%" or "n/a" */
void report_format_percent(char *buf, size_t n, stats_value v);
/* "[58.1, 66.4]" or "n/a" */
void report_format_interval(char *buf, size_t n, stats_interval ci);
/* The gallery: up to max_each items with the largest |margin| and up to
 * max_each with the smallest (closest splits), items with votes only, ties
 * broken by item order. Both the HTML and the JSON use it. */
void report_gallery_items(const report_study *s, const report_question *q, int *largest, int *n_largest, int *smallest,
                          int *n_smallest, int max_each);
/* Short names of the questions for tables and charts. */
const char *report_question_title(const char *key);
/* Margin of an item: (votes B - votes A) / votes, 0 without votes. */
double report_item_margin(const stats_item *item);

#endif
