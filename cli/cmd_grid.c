/* dpo grid: contact sheets of runs side by side, for eyeballing before a study. */
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"

void cmd_grid_help(FILE *out) {
  fprintf(out,
          "usage: dpo grid --runs RUN_A [RUN_B ...] --out grid.png [--cell PX] [--limit N]\n\n"
          "A contact sheet: one row per image of RUN_A that every run has (same prompt\n"
          "set, prompt id, seed and image index), with the prompt id, image index and\n"
          "prompt text on the left and each run's image in its own column, headed by\n"
          "the run folder's name. Written atomically as an RGB PNG.\n\n"
          "options:\n"
          "  --runs RUN...  1 to 16 run folders (dpo generate)\n"
          "  --cell PX      image cell size (default 128)\n"
          "  --limit N      at most N rows (default 50)\n"
          "  -h, --help     this help\n\n"
          "Exit status: 0 success; 1 unreadable runs or runs without a shared image;\n"
          "2 usage error.\n");
}

int cmd_grid(int argc, char **argv) {
  const char *cmd = "grid", *out = NULL;
  const char *runs[16];
  int n_runs = 0, cell = 128, limit = 50;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_grid_help(stdout);
      return EXIT_OK;
    }
    if (!strcmp(a, "--runs")) {
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
        if (n_runs == 16) return cli_usage_error(cmd, "at most 16 runs");
        runs[n_runs++] = argv[++i];
      }
      continue;
    }
    if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
      return cli_usage_error(cmd, strncmp(a, "--", 2) ? "unexpected argument \"%s\"" : "%s needs a value", a);
    const char *v = argv[++i];
    int rc = EXIT_OK;
    if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--cell")) rc = cli_parse_int(cmd, a, v, 16, 2048, &cell);
    else if (!strcmp(a, "--limit")) rc = cli_parse_int(cmd, a, v, 1, 100000, &limit);
    else return cli_usage_error(cmd, "unknown option \"%s\"", a);
    if (rc) return rc;
  }
  if (n_runs < 1 || !out) return cli_usage_error(cmd, "--runs (one or more) and --out are required");
  dpo_error err = {0};
  int rows;
  if (eval_grid(runs, n_runs, out, cell, limit, &rows, &err)) return cli_report_error(&err);
  dpo_log_info("wrote %s: %d rows x %d runs", out, rows, n_runs);
  return EXIT_OK;
}
