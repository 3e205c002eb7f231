/* report.md (tables in the shape of the paper's results) and items.csv (one
 * row per study, question and item). */
#include <stdlib.h>
#include <string.h>

#include "reports/report_internal.h"
#include "studies/studies.h"

const char *report_question_title(const char *key) {
  if (strcmp(key, "q1") == 0) return "General preference";
  if (strcmp(key, "q2") == 0) return "Visual appeal";
  if (strcmp(key, "q3") == 0) return "Prompt alignment";
  if (strcmp(key, "edit") == 0) return "Edit preference";
  return key;
}

/* Table cells: '|' and line breaks would end the cell or the row. */
static void md_text(FILE *f, const char *text) {
  for (const char *p = text; *p; p++) {
    if (*p == '|') fputs("\\|", f);
    else if (*p == '\n' || *p == '\r') fputc(' ', f);
    else fputc(*p, f);
  }
}

static void md_p(FILE *f, stats_value p) {
  if (!p.defined) fputs("n/a", f);
  else if (p.value < 1e-4) fputs("<0.0001", f);
  else fprintf(f, "%.4f", p.value);
}

static void md_number(FILE *f, stats_value v) {
  if (v.defined) fprintf(f, "%.3f", v.value);
  else fputs("n/a", f);
}

static void md_rate_cell(FILE *f, stats_value rate, stats_interval ci) {
  char r[32], c[48];
  report_format_percent(r, sizeof r, rate);
  report_format_interval(c, sizeof c, ci);
  if (rate.defined) fprintf(f, "%s %s", r, c);
  else fprintf(f, "n/a (%s)", rate.reason);
}

static const report_question *find_question(const report_study *s, const char *key) {
  for (int q = 0; q < s->n_questions; q++)
    if (strcmp(s->questions[q].key, key) == 0) return &s->questions[q];
  return NULL;
}

/* The paper's table: rows are studies (one per benchmark), columns questions. */
static void md_overview(FILE *f, const report_data *d) {
  const char *keys[] = {"q1", "q2", "q3", "edit"};
  int used[4] = {0, 0, 0, 0};
  for (int i = 0; i < d->n_studies; i++)
    for (int k = 0; k < 4; k++) used[k] |= find_question(&d->studies[i], keys[k]) != NULL;
  fputs("## Win rate of B by question and benchmark\n\n", f);
  fputs("B wins / items with 95% Wilson interval (ties count against B); n = items with votes.\n\n", f);
  fputs("| Study | Benchmark | A | B |", f);
  for (int k = 0; k < 4; k++)
    if (used[k]) fprintf(f, " %s |", report_question_title(keys[k]));
  fputs("\n|---|---|---|---|", f);
  for (int k = 0; k < 4; k++)
    if (used[k]) fputs("---|", f);
  fputc('\n', f);
  for (int i = 0; i < d->n_studies; i++) {
    const report_study *s = &d->studies[i];
    fputs("| ", f);
    md_text(f, s->name);
    fputs(" | ", f);
    md_text(f, s->prompt_sets && *s->prompt_sets ? s->prompt_sets : "(no items)");
    fputs(" | ", f);
    md_text(f, s->model_a);
    fputs(" | ", f);
    md_text(f, s->model_b);
    fputs(" |", f);
    for (int k = 0; k < 4; k++) {
      if (!used[k]) continue;
      const report_question *q = find_question(s, keys[k]);
      fputc(' ', f);
      if (q) {
        md_rate_cell(f, q->overall.rate[0], q->overall.wilson[0]);
        fprintf(f, " n=%d", q->overall.counts.n_items);
      } else {
        fputs("not asked", f);
      }
      fputs(" |", f);
    }
    fputc('\n', f);
  }
  fputc('\n', f);
}

static void md_counts_row(FILE *f, const char *label, const report_stats *st) {
  const stats_counts *c = &st->counts;
  fputs("| ", f);
  md_text(f, label);
  fprintf(f, " | %d | %d | %d | %d | %d | ", c->n_items, c->b_wins, c->a_wins, c->ties, c->n_short);
  md_rate_cell(f, st->rate[0], st->wilson[0]);
  fputs(" | ", f);
  char ci[48];
  report_format_interval(ci, sizeof ci, st->exact[0]);
  fputs(ci, f);
  fputs(" | ", f);
  stats_interval boot = st->bootstrap[0];
  md_rate_cell(f, boot.defined ? stats_defined(boot.estimate) : stats_undefined(boot.reason), boot);
  fputs(" | ", f);
  md_p(f, st->p_value);
  fputs(" | ", f);
  md_p(f, st->p_holm);
  fputs(" |\n", f);
}

static const char *counts_header =
    "| %s | Items | B wins | A wins | Ties | Short of votes | Win rate B [Wilson 95%%] | Exact 95%% | "
    "Vote rate B [bootstrap 95%%] | p (sign test) | p (Holm) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|\n";

static void md_study(FILE *f, const report_data *d, const report_study *s) {
  fputs("## Study ", f);
  md_text(f, s->name);
  fputs("\n\nA: ", f);
  md_text(f, s->model_a);
  fputs(" (", f);
  md_text(f, s->run_a);
  fputs("); B: ", f);
  md_text(f, s->model_b);
  fputs(" (", f);
  md_text(f, s->run_b);
  fputs(").\nBenchmark: ", f);
  md_text(f, s->prompt_sets && *s->prompt_sets ? s->prompt_sets : "(no items)");
  fprintf(f, ". %d items over %d prompts, %d votes asked per item, ties %s, %d raters.\n\n", s->n_items,
          s->n_prompts, s->votes_per_item, s->allow_tie ? "allowed" : "not allowed", s->n_raters);
  fprintf(f, counts_header, "Question");
  for (int q = 0; q < s->n_questions; q++) md_counts_row(f, report_question_title(s->questions[q].key), &s->questions[q].overall);
  fputs("\nWin rate of B under each way of counting ties (item level, 95% intervals):\n\n", f);
  fputs("| Question | Ties | Win rate B [Wilson] | Exact |\n|---|---|---|---|\n", f);
  for (int q = 0; q < s->n_questions; q++)
    for (int m = 0; m < STATS_N_TIES_MODES; m++) {
      const report_stats *st = &s->questions[q].overall;
      char ci[48];
      report_format_interval(ci, sizeof ci, st->exact[m]);
      fprintf(f, "| %s | %s | ", report_question_title(s->questions[q].key), stats_ties_label((stats_ties)m));
      md_rate_cell(f, st->rate[m], st->wilson[m]);
      fprintf(f, " | %s |\n", ci);
    }
  fputs("\nAgreement and position bias:\n\n", f);
  fputs("| Question | Fleiss kappa | Krippendorff alpha | Unanimous items | Left choices [Wilson 95%] | p (left = 50%) "
        "| Gold pass rate |\n|---|---|---|---|---|---|---|\n", f);
  for (int q = 0; q < s->n_questions; q++) {
    const report_question *qq = &s->questions[q];
    const report_stats *st = &qq->overall;
    fprintf(f, "| %s | ", report_question_title(qq->key));
    md_number(f, st->fleiss);
    fputs(" | ", f);
    md_number(f, st->krippendorff);
    fputs(" | ", f);
    char pct[32];
    report_format_percent(pct, sizeof pct, st->unanimous);
    fprintf(f, "%s | ", pct);
    stats_interval left = st->bias.left_share;
    md_rate_cell(f, left.defined ? stats_defined(left.estimate) : stats_undefined(left.reason), left);
    fputs(" | ", f);
    md_p(f, st->bias.p_value);
    fputs(" | ", f);
    if (qq->gold_pass.defined) {
      report_format_percent(pct, sizeof pct, stats_defined(qq->gold_pass.estimate));
      fprintf(f, "%s of %d", pct, qq->n_gold);
    } else {
      fprintf(f, "n/a (%s)", qq->gold_pass.reason);
    }
    fputs(" |\n", f);
  }
  for (int q = 0; q < s->n_questions; q++) {
    const report_question *qq = &s->questions[q];
    fprintf(f, "\n### %s by category\n\n", report_question_title(qq->key));
    fprintf(f, counts_header, "Category");
    for (int c = 0; c < s->n_categories; c++) md_counts_row(f, s->categories[c], &qq->by_category[c]);
  }
  (void)d;
  fputc('\n', f);
}

static void md_bradley_terry(FILE *f, const report_data *d) {
  fputs("## Ranking across studies (Bradley-Terry)\n\n", f);
  if (d->n_studies < 2) {
    fputs("Not fitted: one study compares two arms, and its win rate is the comparison.\n", f);
    return;
  }
  fputs("Scores are log-odds of winning against an average arm (mean 0), with 95% Wald intervals.\n\n", f);
  fputs("| Question | Rank | Model | Score [95%] | Comparisons |\n|---|---|---|---|---|\n", f);
  for (int b = 0; b < d->n_bt; b++) {
    const report_bt *bt = &d->bt[b];
    for (int a = 0; a < bt->n_arms; a++) {
      fprintf(f, "| %s | ", report_question_title(bt->key));
      int rank = 1;
      for (int o = 0; o < bt->n_arms; o++) rank += bt->scores[o].estimate > bt->scores[a].estimate;
      if (bt->scores[a].defined) fprintf(f, "%d | ", rank);
      else fputs("n/a | ", f);
      md_text(f, bt->arm_labels[a] ? bt->arm_labels[a] : "");
      if (bt->scores[a].defined)
        fprintf(f, " | %.3f [%.3f, %.3f] | %d |\n", bt->scores[a].estimate, bt->scores[a].lower, bt->scores[a].upper,
                bt->n_comparisons);
      else
        fprintf(f, " | n/a (%s) | %d |\n", bt->scores[a].reason, bt->n_comparisons);
    }
  }
}

void report_write_markdown(const report_data *d, FILE *f) {
  fputs("# Win-rate report\n\n", f);
  fprintf(f,
          "Written by dpo report. Each item's counted votes decide it by majority (B when more than half chose B, "
          "A likewise, otherwise a tie). Intervals are 95%%: Wilson and Clopper-Pearson on the item-level rate, "
          "a cluster bootstrap over prompts (%d resamples, seed %llu) on the vote-level rate. p is the two-sided "
          "exact sign test of B wins against A wins; Holm adjusts across each study's questions. Items with fewer "
          "counted votes than asked are counted and listed as short of votes.\n\n",
          d->n_resamples, (unsigned long long)d->seed);
  md_overview(f, d);
  for (int i = 0; i < d->n_studies; i++) md_study(f, d, &d->studies[i]);
  md_bradley_terry(f, d);
}

/* ---------------------------------------------------------------- CSV */

void report_write_items_csv(const report_data *d, FILE *f) {
  const char *header[] = {"study", "question", "item", "prompt_set", "prompt_id", "category", "prompt", "seed",
                          "image_index", "a_side", "votes_asked", "votes_a", "votes_b", "votes_tie", "votes_counted",
                          "short_of_votes", "outcome", "margin"};
  enum { N_COLUMNS = (int)(sizeof header / sizeof header[0]) };
  studies_csv_write_row(f, header, N_COLUMNS);
  for (int i = 0; i < d->n_studies; i++) {
    const report_study *s = &d->studies[i];
    for (int q = 0; q < s->n_questions; q++) {
      const report_question *qq = &s->questions[q];
      for (int it = 0; it < s->n_items; it++) {
        const report_item *item = &s->items[it];
        const stats_item *o = &qq->items[it];
        char seed[32], index[32], asked[16], va[16], vb[16], vt[16], vn[16], margin[32];
        snprintf(seed, sizeof seed, "%lld", (long long)item->seed);
        snprintf(index, sizeof index, "%lld", (long long)item->image_index);
        snprintf(asked, sizeof asked, "%d", s->votes_per_item);
        snprintf(va, sizeof va, "%d", o->votes[STATS_CHOICE_A]);
        snprintf(vb, sizeof vb, "%d", o->votes[STATS_CHOICE_B]);
        snprintf(vt, sizeof vt, "%d", o->votes[STATS_CHOICE_TIE]);
        snprintf(vn, sizeof vn, "%d", o->n_votes);
        if (o->n_votes) snprintf(margin, sizeof margin, "%.6f", report_item_margin(o));
        else margin[0] = '\0';
        const char *row[] = {s->name, qq->key, item->public_id, item->prompt_set, item->prompt_id, item->category,
                             item->prompt, seed, index, item->a_on_left ? "left" : "right", asked, va, vb, vt, vn,
                             o->short_of_votes ? "1" : "0", report_outcome_name(o->outcome), margin};
        studies_csv_write_row(f, row, N_COLUMNS);
      }
    }
  }
}
