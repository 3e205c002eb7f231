/* dpo report: win-rate reports of studies (`dpo report --db DB --study NAME
 * --out DIR`) and `dpo report power`, the items a study needs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "reports/reports.h"

/* Parses a number strictly inside (0, 1); fails as a usage error naming the flag. */
static int parse_open_unit(const char *cmd, const char *flag, const char *text, double *out) {
  char *end = NULL;
  if (!text) return cli_usage_error(cmd, "%s needs a value", flag);
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || !(v > 0 && v < 1))
    return cli_usage_error(cmd, "%s expects a number between 0 and 1 (exclusive), got \"%s\"", flag, text);
  *out = v;
  return EXIT_OK;
}

static void print_power(const stats_power_result *r) {
  printf("win rate to detect  %g against 0.5 (two-sided exact binomial test)\n", r->p);
  printf("alpha               %g\n", r->alpha);
  printf("power               %g\n", r->power);
  printf("normal approx n     %d   (%.4f before rounding up)\n", r->normal_n, r->normal_n_real);
  if (!r->exact_found) {
    printf("exact first n       undefined (%s)\n", r->exact_reason);
    printf("exact stable n      undefined (%s)\n", r->exact_reason);
    return;
  }
  printf("exact first n       %d   (power %.4f; the first n that reaches %g)\n", r->exact_first_n,
         r->exact_first_power, r->power);
  printf("exact stable n      %d   (power %.4f; every n from here to %d reaches %g)\n", r->exact_stable_n,
         r->exact_stable_power, r->search_limit, r->power);
}

static int report_power(int argc, char **argv) {
  const char *cmd = "report power";
  double p = -1, alpha = 0.05, power = 0.8;
  for (int i = 1; i < argc; i++) {
    int rc = EXIT_OK;
    if (cli_is_help(argv[i])) {
      cmd_report_help(stdout);
      return EXIT_OK;
    } else if (strcmp(argv[i], "--p") == 0) {
      rc = parse_open_unit(cmd, "--p", i + 1 < argc ? argv[++i] : NULL, &p);
    } else if (strcmp(argv[i], "--alpha") == 0) {
      rc = parse_open_unit(cmd, "--alpha", i + 1 < argc ? argv[++i] : NULL, &alpha);
    } else if (strcmp(argv[i], "--power") == 0) {
      rc = parse_open_unit(cmd, "--power", i + 1 < argc ? argv[++i] : NULL, &power);
    } else {
      return cli_usage_error(cmd, "unknown argument \"%s\"", argv[i]);
    }
    if (rc != EXIT_OK) return rc;
  }
  if (p < 0) return cli_usage_error(cmd, "--p (the win rate to detect) is required");
  if (p == 0.5) return cli_usage_error(cmd, "--p 0.5 is the null hypothesis itself; give the win rate to detect");
  stats_power_result r;
  dpo_error err = {0};
  if (stats_power(p, alpha, power, &r, &err) != DPO_OK) return cli_report_error(&err);
  print_power(&r);
  return EXIT_OK;
}

#define REPORT_MAX_STUDIES 64

static int report_studies(int argc, char **argv) {
  const char *cmd = "report";
  const char *db = NULL, *out = NULL;
  const char *studies[REPORT_MAX_STUDIES];
  int n_studies = 0;
  uint64_t seed = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_report_help(stdout);
      return EXIT_OK;
    }
    if (strcmp(a, "--db") != 0 && strcmp(a, "--study") != 0 && strcmp(a, "--out") != 0 && strcmp(a, "--seed") != 0)
      return cli_usage_error(cmd, "unknown argument \"%s\"", a);
    if (i + 1 >= argc) return cli_usage_error(cmd, "%s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--db") == 0) db = v;
    else if (strcmp(a, "--out") == 0) out = v;
    else if (strcmp(a, "--seed") == 0) {
      int rc = cli_parse_u64(cmd, a, v, &seed);
      if (rc != EXIT_OK) return rc;
    } else {
      if (n_studies == REPORT_MAX_STUDIES) return cli_usage_error(cmd, "at most %d studies", REPORT_MAX_STUDIES);
      studies[n_studies++] = v;
    }
  }
  if (!db) return cli_usage_error(cmd, "--db (the study database) is required");
  if (!out) return cli_usage_error(cmd, "--out is required");
  if (n_studies == 0) return cli_usage_error(cmd, "--study is required (once per study)");
  report_options opt = {db, studies, n_studies, out, seed, STATS_BOOTSTRAP_RESAMPLES};
  report_summary sum;
  dpo_error err = {0};
  int rc = report_write(&opt, &sum, &err);
  if (rc == DPO_ERR_USAGE) return cli_usage_error(cmd, "%s", err.msg);
  if (rc != DPO_OK) return cli_report_error(&err);
  printf("report: %d stud%s, %d items, %ld counted votes -> %s/report.json, report.md, report.html, items.csv\n",
         sum.n_studies, sum.n_studies == 1 ? "y" : "ies", sum.n_items, sum.n_votes, out);
  if (sum.n_images_missing)
    printf("report: %d gallery image%s could not be read and show as missing\n", sum.n_images_missing,
           sum.n_images_missing == 1 ? "" : "s");
  return EXIT_OK;
}

int cmd_report(int argc, char **argv) {
  if (argc >= 2 && cli_is_help(argv[1])) {
    cmd_report_help(stdout);
    return EXIT_OK;
  }
  if (argc >= 2 && strcmp(argv[1], "power") == 0) return report_power(argc - 1, argv + 1);
  return report_studies(argc, argv);
}

void cmd_report_help(FILE *out) {
  fprintf(out,
          "usage: dpo report --db DB --study NAME [--study NAME2 ...] --out DIR [--seed S]\n"
          "       dpo report power --p P [--alpha A] [--power Q]\n\n"
          "Win-rate reports of studies in a study database (dpo study). Each item's\n"
          "counted votes decide it by majority; per study, question and category the\n"
          "report gives B's win rate (ties against B, split, excluded) with 95%% Wilson,\n"
          "Clopper-Pearson and cluster-bootstrap intervals (10,000 resamples over\n"
          "prompts, seed S, default 0), the exact sign test with Holm across questions,\n"
          "Fleiss' kappa, Krippendorff's alpha, rater and gold agreement, position bias,\n"
          "and with several studies a Bradley-Terry ranking of their arms. Writes\n"
          "DIR/report.json (every number; undefined values are null with a reason),\n"
          "DIR/report.md, DIR/report.html (self-contained: charts and example pairs)\n"
          "and DIR/items.csv (per-item outcomes).\n\n"
          "power: how many items a study needs to detect a win rate P of the tuned model\n"
          "against 0.5 with a two-sided test at level A (default 0.05) and power Q\n"
          "(default 0.8). Prints the normal-approximation answer and two answers from the\n"
          "exact binomial test, whose power rises with n in a sawtooth:\n"
          "  first n   the first n whose exact test reaches the power;\n"
          "  stable n  the smallest n from which every n up to 2 x normal + 100 reaches it.\n"
          "Use the stable n when planning.\n\n"
          "  --p P       the win rate to detect, in (0, 1), not 0.5\n"
          "  --alpha A   significance level, in (0, 1)\n"
          "  --power Q   target power, in (0, 1)\n");
}
