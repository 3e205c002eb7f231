/* report.html: one self-contained file. Charts are inline SVG (text stays
 * sharp and searchable, no decoder needed), images are data URIs, and a
 * Content-Security-Policy forbids every network request, so the report reads
 * the same offline, attached to an e-mail or years later. */
#include <stdlib.h>
#include <string.h>

#include "reports/report_internal.h"

#define GALLERY_MAX_IMAGE_BYTES (4u * 1024u * 1024u)

static void html_text(FILE *f, const char *text) {
  for (const char *p = text ? text : ""; *p; p++) {
    switch (*p) {
      case '&': fputs("&amp;", f); break;
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&#x27;", f); break;
      default: fputc(*p, f);
    }
  }
}

/* ------------------------------------------------------------- charts */

typedef struct {
  const char *label;
  stats_interval ci;   /* estimate is the point; lower/upper the whisker */
} chart_row;

typedef struct {
  const char *title;
  const char *x_label;
  double x_min, x_max, tick_step;
  double reference;        /* a dashed line: 50% or 0 */
  const char *reference_label;
  int percent;             /* values are shares shown as % */
} chart_axes;

enum { CHART_LEFT = 300, CHART_PLOT = 380, CHART_RIGHT = 190, CHART_TOP = 44, CHART_ROW = 28, CHART_BOTTOM = 56 };

static double chart_x(const chart_axes *ax, double v) {
  if (v < ax->x_min) v = ax->x_min;
  if (v > ax->x_max) v = ax->x_max;
  return CHART_LEFT + (v - ax->x_min) / (ax->x_max - ax->x_min) * CHART_PLOT;
}

static void chart_value_text(char *buf, size_t n, const chart_axes *ax, stats_interval ci) {
  if (!ci.defined) snprintf(buf, n, "n/a");
  else if (ax->percent && ci.lower == ci.upper) snprintf(buf, n, "%.1f%%", 100 * ci.estimate);
  else if (ax->percent) snprintf(buf, n, "%.1f%% [%.1f, %.1f]", 100 * ci.estimate, 100 * ci.lower, 100 * ci.upper);
  else if (ci.lower == ci.upper) snprintf(buf, n, "%.3f", ci.estimate);
  else snprintf(buf, n, "%.2f [%.2f, %.2f]", ci.estimate, ci.lower, ci.upper);
}

/* A dot-and-whisker chart: one row per label, the point estimate as a dot,
 * its interval as a whisker, a dashed reference line, ticks and titles. */
static void svg_chart(FILE *f, const chart_axes *ax, const chart_row *rows, int n) {
  int width = CHART_LEFT + CHART_PLOT + CHART_RIGHT;
  int height = CHART_TOP + (n > 0 ? n : 1) * CHART_ROW + CHART_BOTTOM;
  int plot_bottom = CHART_TOP + (n > 0 ? n : 1) * CHART_ROW;
  fprintf(f, "<svg class=\"chart\" role=\"img\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\">\n<title>", width, height, width, height);
  html_text(f, ax->title);
  fprintf(f, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", width, height);
  fprintf(f, "<text x=\"%d\" y=\"24\" class=\"ct\">", width / 2);
  html_text(f, ax->title);
  fputs("</text>\n", f);
  /* grid and ticks */
  for (double t = ax->x_min; t <= ax->x_max + 1e-9; t += ax->tick_step) {
    double x = chart_x(ax, t);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e3e3e3\"/>\n", x, CHART_TOP - 4, x, plot_bottom);
    if (ax->percent) fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"tk\">%.0f%%</text>\n", x, plot_bottom + 16, 100 * t);
    else fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"tk\">%.1f</text>\n", x, plot_bottom + 16, t);
  }
  fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", CHART_LEFT, plot_bottom,
          CHART_LEFT + CHART_PLOT, plot_bottom);
  double rx = chart_x(ax, ax->reference);
  fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#c0392b\" stroke-dasharray=\"5,4\"/>\n", rx,
          CHART_TOP - 8, rx, plot_bottom);
  fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"rf\">", rx, CHART_TOP - 10);
  html_text(f, ax->reference_label);
  fputs("</text>\n", f);
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ax\">", CHART_LEFT + CHART_PLOT / 2, plot_bottom + 40);
  html_text(f, ax->x_label);
  fputs("</text>\n", f);
  if (n == 0) fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"na\">nothing to show</text>\n", CHART_LEFT + 8, CHART_TOP + 18);
  for (int i = 0; i < n; i++) {
    int y = CHART_TOP + i * CHART_ROW + CHART_ROW / 2;
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"lb\">", CHART_LEFT - 8, y + 4);
    html_text(f, rows[i].label);
    fputs("</text>\n", f);
    char value[96];
    chart_value_text(value, sizeof value, ax, rows[i].ci);
    if (!rows[i].ci.defined) {
      fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"na\">n/a: ", CHART_LEFT + 8, y + 4);
      html_text(f, rows[i].ci.reason);
      fputs("</text>\n", f);
      continue;
    }
    double x0 = chart_x(ax, rows[i].ci.lower), x1 = chart_x(ax, rows[i].ci.upper), xp = chart_x(ax, rows[i].ci.estimate);
    if (x1 > x0) {
      fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#1f4e79\" stroke-width=\"2\"/>\n", x0, y, x1, y);
      fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#1f4e79\" stroke-width=\"2\"/>\n", x0, y - 6, x0, y + 6);
      fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#1f4e79\" stroke-width=\"2\"/>\n", x1, y - 6, x1, y + 6);
    }
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%d\" r=\"5\" fill=\"#2e86de\" stroke=\"#1f4e79\"/>\n", xp, y);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"vl\">%s</text>\n", CHART_LEFT + CHART_PLOT + 10, y + 4, value);
  }
  fputs("</svg>\n", f);
}

static stats_interval point(stats_value v) {
  if (!v.defined) return stats_interval_undefined(v.reason);
  return (stats_interval){1, v.value, v.value, v.value, ""};
}

/* ------------------------------------------------------------- gallery */

typedef struct {
  double key;
  int item;
} ranked_item;

static int compare_ranked(const void *a, const void *b) {
  const ranked_item *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->item > y->item) - (x->item < y->item);
}

void report_gallery_items(const report_study *s, const report_question *q, int *largest, int *n_largest, int *smallest,
                          int *n_smallest, int max_each) {
  *n_largest = *n_smallest = 0;
  ranked_item *r = malloc(sizeof(ranked_item) * (size_t)(s->n_items ? s->n_items : 1));
  if (!r) return;
  int n = 0;
  for (int i = 0; i < s->n_items; i++) {
    if (q->items[i].n_votes == 0) continue;
    double m = report_item_margin(&q->items[i]);
    r[n++] = (ranked_item){-(m < 0 ? -m : m), i};
  }
  qsort(r, (size_t)n, sizeof *r, compare_ranked);
  int take = n < max_each ? n : max_each;
  for (int k = 0; k < take; k++) largest[(*n_largest)++] = r[k].item;
  /* smallest margins from the other end, never repeating a largest one */
  for (int k = n - 1; k >= take && *n_smallest < max_each; k--) smallest[(*n_smallest)++] = r[k].item;
  free(r);
}

static const char base64_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64_write(FILE *f, const unsigned char *data, size_t n) {
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16;
    if (i + 1 < n) v |= (uint32_t)data[i + 1] << 8;
    if (i + 2 < n) v |= data[i + 2];
    fputc(base64_digits[(v >> 18) & 63], f);
    fputc(base64_digits[(v >> 12) & 63], f);
    fputc(i + 1 < n ? base64_digits[(v >> 6) & 63] : '=', f);
    fputc(i + 2 < n ? base64_digits[v & 63] : '=', f);
  }
}

/* An <img> with the file as a data URI, or a placeholder naming the file
 * when it cannot be read (a moved run folder must not stop the report). */
static void embed_image(FILE *f, const char *path, const char *alt, int *n_missing) {
  char *data = NULL;
  size_t len = 0;
  dpo_error err = {0};
  const char *mime = NULL;
  if (dpo_read_file(path, GALLERY_MAX_IMAGE_BYTES, &data, &len, &err) == DPO_OK) {
    const unsigned char *u = (const unsigned char *)data;
    if (len >= 8 && memcmp(u, "\x89PNG\r\n\x1a\n", 8) == 0) mime = "image/png";
    else if (len >= 3 && u[0] == 0xFF && u[1] == 0xD8 && u[2] == 0xFF) mime = "image/jpeg";
  }
  if (!mime) {
    (*n_missing)++;
    fputs("<div class=\"missing\">image not embedded: ", f);
    html_text(f, path);
    fputs("</div>", f);
  } else {
    fprintf(f, "<img alt=\"");
    html_text(f, alt);
    fprintf(f, "\" src=\"data:%s;base64,", mime);
    base64_write(f, (const unsigned char *)data, len);
    fputs("\">", f);
  }
  free(data);
}

static void gallery_card(FILE *f, const report_study *s, int item, int *n_missing) {
  const report_item *it = &s->items[item];
  fputs("<div class=\"card\"><p class=\"prompt\">", f);
  html_text(f, it->prompt);
  fputs("</p><p class=\"meta\">", f);
  html_text(f, it->prompt_set);
  fputs(" / ", f);
  html_text(f, it->prompt_id);
  fprintf(f, " · seed %lld · ", (long long)it->seed);
  html_text(f, it->category);
  fputs("</p><div class=\"pair\"><figure>", f);
  embed_image(f, it->image_a, "A", n_missing);
  fputs("<figcaption>A: ", f);
  html_text(f, s->model_a);
  fputs("</figcaption></figure><figure>", f);
  embed_image(f, it->image_b, "B", n_missing);
  fputs("<figcaption>B: ", f);
  html_text(f, s->model_b);
  fputs("</figcaption></figure></div><table class=\"split\"><tr><th>Question</th><th>A</th><th>B</th><th>Tie</th>"
        "<th>Outcome</th></tr>", f);
  for (int q = 0; q < s->n_questions; q++) {
    const stats_item *si = &s->questions[q].items[item];
    fprintf(f, "<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%s</td></tr>", report_question_title(s->questions[q].key),
            si->votes[STATS_CHOICE_A], si->votes[STATS_CHOICE_B], si->votes[STATS_CHOICE_TIE],
            report_outcome_name(si->outcome));
  }
  fputs("</table></div>\n", f);
}

static void gallery(FILE *f, const report_study *s, int *n_missing) {
  if (s->n_questions == 0) return;
  const report_question *q = &s->questions[0];
  int largest[REPORT_GALLERY_EACH], smallest[REPORT_GALLERY_EACH], nl, ns;
  report_gallery_items(s, q, largest, &nl, smallest, &ns, REPORT_GALLERY_EACH);
  fprintf(f, "<h3>Examples: largest margins (%s)</h3>\n<div class=\"gallery\">\n", report_question_title(q->key));
  for (int k = 0; k < nl; k++) gallery_card(f, s, largest[k], n_missing);
  if (nl == 0) fputs("<p class=\"na\">no item has votes yet</p>", f);
  fprintf(f, "</div>\n<h3>Examples: smallest margins (%s)</h3>\n<div class=\"gallery\">\n", report_question_title(q->key));
  for (int k = 0; k < ns; k++) gallery_card(f, s, smallest[k], n_missing);
  if (ns == 0) fputs("<p class=\"na\">no further item has votes</p>", f);
  fputs("</div>\n", f);
}

/* -------------------------------------------------------------- tables */

static void td_percent(FILE *f, stats_value v) {
  char buf[32];
  report_format_percent(buf, sizeof buf, v);
  fprintf(f, "<td>%s</td>", buf);
}

static void td_interval(FILE *f, stats_interval ci) {
  char buf[48];
  report_format_interval(buf, sizeof buf, ci);
  fprintf(f, "<td>%s</td>", buf);
}

static void td_p(FILE *f, stats_value p) {
  if (!p.defined) fputs("<td>n/a</td>", f);
  else if (p.value < 1e-4) fputs("<td>&lt;0.0001</td>", f);
  else fprintf(f, "<td>%.4f</td>", p.value);
}

static void td_number(FILE *f, stats_value v) {
  if (v.defined) fprintf(f, "<td>%.3f</td>", v.value);
  else fputs("<td>n/a</td>", f);
}

static void stats_table_row(FILE *f, const char *label, const report_stats *st) {
  const stats_counts *c = &st->counts;
  fputs("<tr><td>", f);
  html_text(f, label);
  fprintf(f, "</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td>", c->n_items, c->b_wins, c->a_wins, c->ties,
          c->n_short);
  td_percent(f, st->rate[0]);
  td_interval(f, st->wilson[0]);
  td_interval(f, st->exact[0]);
  td_percent(f, st->bootstrap[0].defined ? stats_defined(st->bootstrap[0].estimate) : stats_undefined(""));
  td_interval(f, st->bootstrap[0]);
  td_p(f, st->p_value);
  td_p(f, st->p_holm);
  fputs("</tr>\n", f);
}

static void stats_table_head(FILE *f, const char *first) {
  fprintf(f, "<table><tr><th>%s</th><th>Items</th><th>B wins</th><th>A wins</th><th>Ties</th><th>Short of votes</th>"
             "<th>Win rate B</th><th>Wilson 95%%</th><th>Exact 95%%</th><th>Vote rate B</th><th>Bootstrap 95%%</th>"
             "<th>p (sign test)</th><th>p (Holm)</th></tr>\n", first);
}

/* Raters of the first question, least in agreement with the others first. */
typedef struct {
  double key;
  int rater;
} rater_rank;

static int compare_rater_rank(const void *a, const void *b) {
  const rater_rank *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->rater > y->rater) - (x->rater < y->rater);
}

#define HTML_MAX_RATER_ROWS 20

static void raters_table(FILE *f, const report_study *s) {
  if (s->n_questions == 0 || s->n_raters == 0) return;
  const report_question *q = &s->questions[0];
  rater_rank *rank = malloc(sizeof(rater_rank) * (size_t)s->n_raters);
  if (!rank) return;
  int n = 0;
  for (int r = 0; r < s->n_raters; r++)
    if (q->raters[r].n_compared > 0) rank[n++] = (rater_rank){q->raters[r].rate.value, r};
  qsort(rank, (size_t)n, sizeof *rank, compare_rater_rank);
  fprintf(f, "<h3>Raters' agreement with the majority of the other votes (%s)</h3>\n", report_question_title(q->key));
  if (n == 0) fputs("<p class=\"na\">no rater shared an item with another rater</p>\n", f);
  else {
    fprintf(f, "<p>%d rater%s compared; the %d least in agreement first.</p>\n", n, n == 1 ? "" : "s",
            n < HTML_MAX_RATER_ROWS ? n : HTML_MAX_RATER_ROWS);
    fputs("<table><tr><th>Rater</th><th>Compared votes</th><th>Agreed</th><th>Agreement</th><th>Gold pass rate</th></tr>\n", f);
    for (int k = 0; k < n && k < HTML_MAX_RATER_ROWS; k++) {
      int r = rank[k].rater;
      fputs("<tr><td>", f);
      html_text(f, s->raters[r]);
      fprintf(f, "</td><td>%d</td><td>%d</td>", q->raters[r].n_compared, q->raters[r].n_agree);
      td_percent(f, q->raters[r].rate);
      td_percent(f, q->gold_by_rater[r].defined ? stats_defined(q->gold_by_rater[r].estimate) : stats_undefined(""));
      fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
  }
  free(rank);
}

/* ---------------------------------------------------------------- study */

static void study_section(FILE *f, const report_study *s, int *n_missing) {
  fputs("<section><h2>Study ", f);
  html_text(f, s->name);
  fputs("</h2>\n<p>A: <b>", f);
  html_text(f, s->model_a);
  fputs("</b> (", f);
  html_text(f, s->run_a);
  fputs(") · B: <b>", f);
  html_text(f, s->model_b);
  fputs("</b> (", f);
  html_text(f, s->run_b);
  fputs(")<br>Benchmark: ", f);
  html_text(f, s->prompt_sets && *s->prompt_sets ? s->prompt_sets : "(no items)");
  fprintf(f, " · %d items over %d prompts · %d votes asked per item · ties %s · %d raters</p>\n", s->n_items,
          s->n_prompts, s->votes_per_item, s->allow_tie ? "allowed" : "not allowed", s->n_raters);

  chart_row rows[2 * REPORT_MAX_QUESTIONS];
  char labels[2 * REPORT_MAX_QUESTIONS][64];
  int n = 0;
  for (int q = 0; q < s->n_questions; q++) {
    const report_stats *st = &s->questions[q].overall;
    snprintf(labels[n], sizeof labels[n], "%s (items, Wilson)", report_question_title(s->questions[q].key));
    stats_interval ci = st->wilson[0];
    if (ci.defined) ci.estimate = st->rate[0].value;
    rows[n] = (chart_row){labels[n], ci};
    n++;
    snprintf(labels[n], sizeof labels[n], "%s (votes, bootstrap)", report_question_title(s->questions[q].key));
    rows[n] = (chart_row){labels[n], st->bootstrap[0]};
    n++;
  }
  chart_axes win = {"Win rate of B per question", "B wins (% of items or votes), 95% interval", 0, 1, 0.25, 0.5,
                    "50%: no preference", 1};
  svg_chart(f, &win, rows, n);
  stats_table_head(f, "Question");
  for (int q = 0; q < s->n_questions; q++)
    stats_table_row(f, report_question_title(s->questions[q].key), &s->questions[q].overall);
  fputs("</table>\n", f);

  /* position bias */
  n = 0;
  for (int q = 0; q < s->n_questions; q++) {
    snprintf(labels[n], sizeof labels[n], "%s", report_question_title(s->questions[q].key));
    rows[n] = (chart_row){labels[n], s->questions[q].overall.bias.left_share};
    n++;
  }
  chart_axes bias = {"Position bias: share of decisive votes for the left image", "left choices (%), 95% Wilson interval",
                     0, 1, 0.25, 0.5, "50%: no bias", 1};
  svg_chart(f, &bias, rows, n);

  /* agreement */
  n = 0;
  for (int q = 0; q < s->n_questions && n + 1 < 2 * REPORT_MAX_QUESTIONS; q++) {
    snprintf(labels[n], sizeof labels[n], "%s: Fleiss kappa", report_question_title(s->questions[q].key));
    rows[n] = (chart_row){labels[n], point(s->questions[q].overall.fleiss)};
    n++;
    snprintf(labels[n], sizeof labels[n], "%s: Krippendorff alpha", report_question_title(s->questions[q].key));
    rows[n] = (chart_row){labels[n], point(s->questions[q].overall.krippendorff)};
    n++;
  }
  chart_axes agree = {"Rater agreement", "agreement beyond chance (1 perfect, 0 chance)", -1, 1, 0.5, 0, "0: chance", 0};
  svg_chart(f, &agree, rows, n);
  fputs("<table><tr><th>Question</th><th>Fleiss kappa</th><th>Krippendorff alpha</th><th>Unanimous items</th>"
        "<th>Left choices</th><th>Left 95%</th><th>p (left = 50%)</th><th>Gold pass rate</th><th>Gold checks</th></tr>\n", f);
  for (int q = 0; q < s->n_questions; q++) {
    const report_question *qq = &s->questions[q];
    const report_stats *st = &qq->overall;
    fprintf(f, "<tr><td>%s</td>", report_question_title(qq->key));
    td_number(f, st->fleiss);
    td_number(f, st->krippendorff);
    td_percent(f, st->unanimous);
    td_percent(f, st->bias.left_share.defined ? stats_defined(st->bias.left_share.estimate) : stats_undefined(""));
    td_interval(f, st->bias.left_share);
    td_p(f, st->bias.p_value);
    td_percent(f, qq->gold_pass.defined ? stats_defined(qq->gold_pass.estimate) : stats_undefined(""));
    fprintf(f, "<td>%d</td></tr>\n", qq->n_gold);
  }
  fputs("</table>\n", f);
  raters_table(f, s);

  /* categories */
  for (int q = 0; q < s->n_questions; q++) {
    const report_question *qq = &s->questions[q];
    chart_row *crows = malloc(sizeof(chart_row) * (size_t)(s->n_categories ? s->n_categories : 1));
    if (!crows) continue;
    for (int c = 0; c < s->n_categories; c++) {
      stats_interval ci = qq->by_category[c].wilson[0];
      if (ci.defined) ci.estimate = qq->by_category[c].rate[0].value;
      crows[c] = (chart_row){s->categories[c], ci};
    }
    char title[128];
    snprintf(title, sizeof title, "Win rate of B by category: %s", report_question_title(qq->key));
    chart_axes cat = {title, "B wins (% of items), 95% Wilson interval", 0, 1, 0.25, 0.5, "50%: no preference", 1};
    fprintf(f, "<h3>%s by category</h3>\n", report_question_title(qq->key));
    svg_chart(f, &cat, crows, s->n_categories);
    free(crows);
    stats_table_head(f, "Category");
    for (int c = 0; c < s->n_categories; c++) stats_table_row(f, s->categories[c], &qq->by_category[c]);
    fputs("</table>\n", f);
  }
  gallery(f, s, n_missing);
  fputs("</section>\n", f);
}

static void bt_section(FILE *f, const report_data *d) {
  fputs("<section><h2>Ranking across studies (Bradley-Terry)</h2>\n", f);
  if (d->n_studies < 2) {
    fputs("<p>Not fitted: one study compares two arms, and its win rate is the comparison.</p></section>\n", f);
    return;
  }
  for (int b = 0; b < d->n_bt; b++) {
    const report_bt *bt = &d->bt[b];
    chart_row *rows = malloc(sizeof(chart_row) * (size_t)(bt->n_arms ? bt->n_arms : 1));
    if (!rows) continue;
    double lo = -1, hi = 1;
    for (int a = 0; a < bt->n_arms; a++) {
      rows[a] = (chart_row){bt->arm_labels[a] ? bt->arm_labels[a] : "", bt->scores[a]};
      if (bt->scores[a].defined && bt->scores[a].lower < lo) lo = bt->scores[a].lower;
      if (bt->scores[a].defined && bt->scores[a].upper > hi) hi = bt->scores[a].upper;
    }
    double step = 0.5;
    while ((hi - lo) / step > 8) step *= 2;
    lo = step * (double)(long)(lo / step - 1);
    hi = step * (double)(long)(hi / step + 1);
    char title[128];
    snprintf(title, sizeof title, "Bradley-Terry scores: %s", report_question_title(bt->key));
    chart_axes ax = {title, "log-odds of beating an average arm, 95% Wald interval", lo, hi, step, 0, "0: average", 0};
    svg_chart(f, &ax, rows, bt->n_arms);
    free(rows);
  }
  fputs("</section>\n", f);
}

static const char *style =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1200px}"
    "h1{font-size:26px}h2{font-size:21px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:36px}"
    "h3{font-size:17px}table{border-collapse:collapse;margin:10px 0 20px;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}svg.chart{display:block;margin:14px 0;font-size:12px}"
    ".ct{font-size:15px;font-weight:600;text-anchor:middle}.tk{text-anchor:middle;fill:#555}"
    ".ax{text-anchor:middle;fill:#333}.lb{text-anchor:end}.vl{fill:#1f4e79}.rf{fill:#c0392b;text-anchor:middle;"
    "font-size:11px}.na{fill:#888;color:#888;font-style:italic}text.na{stroke:#fff;stroke-width:4px;paint-order:stroke}"
    ".gallery{display:flex;flex-wrap:wrap;gap:14px}.card{border:1px solid #ccc;border-radius:6px;padding:8px;width:340px}"
    ".prompt{font-weight:600;margin:2px 0}.meta{color:#666;font-size:12px;margin:2px 0}.pair{display:flex;gap:6px}"
    "figure{margin:0;width:165px}figure img{width:165px;height:165px;object-fit:contain;background:#eee;"
    "image-rendering:pixelated}figcaption{font-size:12px;text-align:center}.missing{width:165px;height:165px;"
    "background:#eee;font-size:11px;overflow-wrap:anywhere;color:#888}.split{font-size:12px}";

void report_write_html(const report_data *d, FILE *f, int *n_images_missing) {
  *n_images_missing = 0;
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">\n<link rel=\"icon\" href=\"data:,\">\n<title>Win-rate report</title>\n<style>", f);
  fputs(style, f);
  fputs("</style></head><body>\n<h1>Win-rate report</h1>\n", f);
  fprintf(f, "<p>Each item's counted votes decide it by majority. Intervals are 95%%: Wilson and Clopper-Pearson on "
             "the item-level rate, a cluster bootstrap over prompts (%d resamples, seed %llu) on the vote-level rate. "
             "p is the two-sided exact sign test of B wins against A wins, Holm-adjusted across each study's "
             "questions. Every number here is also in report.json.</p>\n",
          d->n_resamples, (unsigned long long)d->seed);
  for (int i = 0; i < d->n_studies; i++) study_section(f, &d->studies[i], n_images_missing);
  bt_section(f, d);
  fputs("</body></html>\n", f);
}
