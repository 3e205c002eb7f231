/* dpo report: win-rate reports. For now only `dpo report power`, the items a
 * study needs; study reports (`dpo report --db study.db ...`) arrive with the
 * study database, and each further form gets its own branch in cmd_report. */
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

int cmd_report(int argc, char **argv) {
  if (argc >= 2 && cli_is_help(argv[1])) {
    cmd_report_help(stdout);
    return EXIT_OK;
  }
  if (argc >= 2 && strcmp(argv[1], "power") == 0) return report_power(argc - 1, argv + 1);
  return cli_usage_error("report",
                         "study reports need the study database (dpo study), which is not available yet; "
                         "only 'dpo report power' works for now");
}

void cmd_report_help(FILE *out) {
  fprintf(out,
          "usage: dpo report power --p P [--alpha A] [--power Q]\n\n"
          "Win-rate reports. Study reports (dpo report --db study.db) need the study\n"
          "database, which is not available yet.\n\n"
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
