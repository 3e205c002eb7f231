/* dpo score: per-image scores of a run folder, with mean and median. */
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"

void cmd_score_help(FILE *out) {
  fprintf(out,
          "usage: dpo score --scorer NAME --run RUN [--batch-size B] [--bootstrap N] [--seed S]\n"
          "                 [--timeout SEC] [--retries N] [--json]\n"
          "       dpo score --scorer-url URL --run RUN ...\n\n"
          "Scores every image of a run folder (dpo generate) and writes\n"
          "RUN/scores-<scorer>.jsonl atomically: one line per image with prompt_set,\n"
          "prompt_id, image_index, seed, file and one key per score. Prints, for each\n"
          "score, the mean and the median with percentile-bootstrap 95%% intervals\n"
          "(the paper's validation metric is the median score over 500 prompts).\n\n"
          "scorers:\n"
          "  brightness, redness, pixel-pair  pixel statistics (tests)\n"
          "  shapes-judge                      the shapes world's judge: alignment,\n"
          "                                    appeal, overall\n"
          "  http:URL (or --scorer-url URL)    a scoring service. Request: POST URL with\n"
          "      {\"items\": [{\"prompt\": TEXT, \"image_png_base64\": B64}, ...]}\n"
          "      (at most --batch-size items); response: status 200 and\n"
          "      {\"scores\": [NUMBER, ...]}, one per item, in order. Failures (no\n"
          "      connection, timeout, a status other than 200, anything but that JSON)\n"
          "      are retried --retries times with exponential backoff from 1 s, then\n"
          "      reported; 4xx other than 408 and 429 are not retried.\n\n"
          "options:\n"
          "  --batch-size B   images per scorer call (default 16)\n"
          "  --bootstrap N    bootstrap resamples (default 2000)\n"
          "  --seed S         bootstrap seed (default 0)\n"
          "  --timeout SEC    HTTP: seconds per request (default 60)\n"
          "  --retries N      HTTP: retries after a failure (default 3)\n"
          "  --json           print the summary as JSON\n"
          "  -h, --help       this help\n\n"
          "Exit status: 0 success; 1 unreadable run or scorer failure; 2 usage error.\n");
}

int cmd_score(int argc, char **argv) {
  const char *cmd = "score", *scorer_name = NULL, *url = NULL, *run_dir = NULL;
  int batch = 16, resamples = 2000, json = 0, retries = 3;
  double timeout = 60;
  uint64_t seed = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_score_help(stdout);
      return EXIT_OK;
    }
    if (!strcmp(a, "--json")) {
      json = 1;
      continue;
    }
    if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
      return cli_usage_error(cmd, strncmp(a, "--", 2) ? "unexpected argument \"%s\"" : "%s needs a value", a);
    const char *v = argv[++i];
    int rc = EXIT_OK;
    if (!strcmp(a, "--scorer")) scorer_name = v;
    else if (!strcmp(a, "--scorer-url")) url = v;
    else if (!strcmp(a, "--run")) run_dir = v;
    else if (!strcmp(a, "--batch-size")) rc = cli_parse_int(cmd, a, v, 1, 4096, &batch);
    else if (!strcmp(a, "--bootstrap")) rc = cli_parse_int(cmd, a, v, 10, 1000000, &resamples);
    else if (!strcmp(a, "--seed")) rc = cli_parse_u64(cmd, a, v, &seed);
    else if (!strcmp(a, "--retries")) rc = cli_parse_int(cmd, a, v, 0, 100, &retries);
    else if (!strcmp(a, "--timeout")) {
      rc = cli_parse_double(cmd, a, v, &timeout);
      if (!rc && !(timeout > 0)) rc = cli_usage_error(cmd, "--timeout expects seconds > 0");
    } else return cli_usage_error(cmd, "unknown option \"%s\"", a);
    if (rc) return rc;
  }
  if (!run_dir || (!scorer_name == !url))
    return cli_usage_error(cmd, "--run and one of --scorer or --scorer-url are required");
  dpo_error err = {0};
  const eval_scorer *scorer;
  if (url || strncmp(scorer_name, "http:", 5) == 0) {
    eval_http_options opt;
    eval_http_options_default(&opt, url ? url : scorer_name + 5);
    opt.timeout_s = timeout;
    opt.retries = retries;
    opt.batch = batch;
    scorer = eval_http_scorer_register(&opt, &err);
    if (!scorer) return cli_usage_error(cmd, "%s", err.msg);
  } else {
    scorer = cli_find_scorer(cmd, scorer_name);
    if (!scorer) return EXIT_USAGE;
  }
  eval_run run;
  if (eval_run_load(run_dir, &run, &err)) return cli_report_error(&err);
  int rc = eval_run_score(&run, scorer, batch, dpo_log_get_level() == DPO_LOG_QUIET, &err);
  char path[4400];
  if (!rc) rc = eval_run_write_scores(&run, scorer, path, sizeof path, &err);
  double *x = malloc((size_t)run.n * sizeof *x);
  json_t *summary = json_object();
  for (int k = 0; !rc && k < scorer->n_scores; k++) {
    for (int i = 0; i < run.n; i++) x[i] = run.items[i].scores[k];
    eval_summary s;
    rc = eval_summarize(x, run.n, resamples, seed, &s, &err);
    if (rc) break;
    if (json) {
      json_t *o = json_object();
      json_object_set_new(o, "n", json_integer(s.n));
      json_object_set_new(o, "mean", json_real(s.mean));
      json_object_set_new(o, "mean_ci95", json_pack("[ff]", s.mean_lo, s.mean_hi));
      json_object_set_new(o, "median", json_real(s.median));
      json_object_set_new(o, "median_ci95", json_pack("[ff]", s.median_lo, s.median_hi));
      json_object_set_new(summary, scorer->score_names[k], o);
    } else {
      if (k == 0) printf("%s: %d images scored by %s\n", run_dir, run.n, scorer->name);
      printf("  %-10s mean %.4f [%.4f, %.4f]  median %.4f [%.4f, %.4f]  (95%% bootstrap, %d resamples)\n",
             scorer->score_names[k], s.mean, s.mean_lo, s.mean_hi, s.median, s.median_lo, s.median_hi, resamples);
    }
  }
  if (!rc && json) {
    json_t *root = json_pack("{s:s, s:s, s:i, s:s, s:o}", "run", run_dir, "scorer", scorer->name, "images", run.n,
                             "scores_file", path, "scores", json_incref(summary));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("%s\n", text);
    free(text);
    json_decref(root);
  }
  if (!rc) dpo_log_info("wrote %s", path);
  json_decref(summary);
  free(x);
  eval_run_free(&run);
  return rc ? cli_report_error(&err) : EXIT_OK;
}
