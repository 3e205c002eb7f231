/* dpo reward-acc: implicit-reward classification accuracy on held-out pairs. */
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"

void cmd_reward_acc_help(FILE *out) {
  fprintf(out,
          "usage: dpo reward-acc --model TUNED --ref BASE --pairs FILE [--timesteps 10] [--seed S]\n"
          "                      [--beta B] [--resolution PX] [--limit N] [--threads N]\n"
          "                      [--backend cpu|cuda|auto] [--precision float32|bf16]\n"
          "                      [--out PER_PAIR.jsonl] [--json]\n"
          "       dpo reward-acc --scorer NAME [--score NAME] --pairs FILE [--limit N] [--json]\n\n"
          "How often Diffusion-DPO's implicit reward picks the preferred image of a\n"
          "held-out pair (the paper's Table 2). For each strict pair (ties are left\n"
          "out) and each of --timesteps random t (with noise shared by both images\n"
          "and both models), each model's denoising error on the winner and the\n"
          "loser gives model_diff = mse_w - mse_l and ref_diff likewise; the reward\n"
          "margin -0.5 * beta * (model_diff - ref_diff), averaged over t, is right\n"
          "when > 0. t and the noise are drawn from --seed and the pair's line, so a\n"
          "rerun gives the same numbers. Prints the accuracy with its 95%% Wilson\n"
          "interval; --out writes per pair: line, caption, image_w, image_l,\n"
          "model_diff, ref_diff, inside, correct.\n\n"
          "--pairs (or --data) is a pairs.jsonl as 'dpo train' reads it. With\n"
          "--scorer the same accuracy is computed for a scorer instead (the winner\n"
          "must score higher), so the two can be tabled side by side.\n\n"
          "options:\n"
          "  --timesteps N   timesteps per pair (default 10)\n"
          "  --seed S        (default 0)\n"
          "  --beta B        scales the printed margins only (default 5000)\n"
          "  --resolution PX images are resized and centre-cropped to it (default: the\n"
          "                  model's)\n"
          "  --limit N       only the first N strict pairs\n"
          "  --backend NAME  where the text encoders and UNets run: cpu, cuda or auto\n"
          "                  (default: cuda when this build has it and a device is\n"
          "                  visible; the VAEs run on the CPU). cuda without either:\n"
          "                  exit 2 (build) or 1 (no device)\n"
          "  --precision P   the UNets' arithmetic: float32 (default) or bf16 (mixed\n"
          "                  precision, meant for cuda)\n"
          "  --json          print the result as JSON\n\n"
          "Exit status: 0 success; 1 unreadable models or pairs; 2 usage error.\n");
}

int cmd_reward_acc(int argc, char **argv) {
  const char *cmd = "reward-acc", *scorer_name = NULL, *score_name = NULL, *backend_name = NULL;
  const char *precision_name = NULL;
  eval_reward_config cfg;
  eval_reward_config_default(&cfg);
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_reward_acc_help(stdout);
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
    if (!strcmp(a, "--model")) cfg.model = v;
    else if (!strcmp(a, "--ref")) cfg.ref = v;
    else if (!strcmp(a, "--pairs") || !strcmp(a, "--data")) cfg.pairs = v;
    else if (!strcmp(a, "--out")) cfg.out_jsonl = v;
    else if (!strcmp(a, "--scorer")) scorer_name = v;
    else if (!strcmp(a, "--score")) score_name = v;
    else if (!strcmp(a, "--timesteps")) rc = cli_parse_int(cmd, a, v, 1, 1000, &cfg.timesteps);
    else if (!strcmp(a, "--seed")) rc = cli_parse_u64(cmd, a, v, &cfg.seed);
    else if (!strcmp(a, "--beta")) {
      rc = cli_parse_double(cmd, a, v, &cfg.beta);
      if (!rc && !(cfg.beta > 0)) rc = cli_usage_error(cmd, "--beta expects a number > 0");
    } else if (!strcmp(a, "--resolution")) rc = cli_parse_int(cmd, a, v, 8, 4096, &cfg.resolution);
    else if (!strcmp(a, "--limit")) rc = cli_parse_int(cmd, a, v, 1, 1 << 30, &cfg.limit);
    else if (!strcmp(a, "--threads")) rc = cli_parse_int(cmd, a, v, 1, 1024, &cfg.threads);
    else if (!strcmp(a, "--backend")) backend_name = v;
    else if (!strcmp(a, "--precision")) precision_name = v;
    else return cli_usage_error(cmd, "unknown option \"%s\"", a);
    if (rc) return rc;
  }
  if (!cfg.pairs) return cli_usage_error(cmd, "--pairs is required");
  int backend, brc = cli_backend(cmd, backend_name, &backend);
  if (brc != EXIT_OK) return brc;
  cfg.backend = (kn_backend)backend;
  int precision, prc = cli_precision(cmd, precision_name, &precision);
  if (prc != EXIT_OK) return prc;
  cfg.precision = (kn_dtype)precision;
  if (scorer_name && (cfg.model || cfg.ref))
    return cli_usage_error(cmd, "give either --scorer or --model and --ref, not both");
  if (!scorer_name && (!cfg.model || !cfg.ref)) return cli_usage_error(cmd, "--model and --ref are required");
  cfg.quiet = dpo_log_get_level() == DPO_LOG_QUIET;
  dpo_error err = {0};
  eval_reward_result res;
  const char *what;
  char label[2200];
  if (scorer_name) {
    const eval_scorer *s = cli_find_scorer(cmd, scorer_name);
    if (!s) return EXIT_USAGE;
    int k = score_name ? eval_score_index(s, score_name) : 0;
    if (k < 0) return cli_usage_error(cmd, "scorer \"%s\" has no score \"%s\"", s->name, score_name);
    if (eval_scorer_accuracy(cfg.pairs, s, k, cfg.limit, &res, &err)) return cli_report_error(&err);
    snprintf(label, sizeof label, "scorer %s (%s)", s->name, s->score_names[k]);
    what = label;
  } else {
    if (eval_reward_accuracy(&cfg, &res, &err)) return cli_report_error(&err);
    snprintf(label, sizeof label, "implicit reward of %s against %s (%d timesteps, seed %llu)", cfg.model, cfg.ref,
             cfg.timesteps, (unsigned long long)cfg.seed);
    what = label;
  }
  if (json) {
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:f, s:[ff], s:f}", "pairs", cfg.pairs, "method", what,
                          "n_pairs", res.n_pairs, "n_correct", res.n_correct, "ties_skipped", res.n_ties_skipped,
                          "accuracy", res.accuracy, "wilson95", res.lo, res.hi, "mean_margin", res.mean_inside);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("%s\n", text);
    free(text);
    json_decref(o);
  } else {
    printf("%s\n  accuracy %.4f (%d of %d strict pairs) 95%% Wilson [%.4f, %.4f]; %d ties left out; mean margin %.6g\n",
           what, res.accuracy, res.n_correct, res.n_pairs, res.lo, res.hi, res.n_ties_skipped, res.mean_inside);
  }
  return EXIT_OK;
}
