/* dpo pairs: AI-feedback preference pairs from a model and a scorer. */
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"

void cmd_pairs_help(FILE *out) {
  fprintf(out,
          "usage: dpo pairs --model CKPT --prompts SET --scorer NAME --out DIR [options]\n"
          "       dpo pairs --relabel PAIRS.jsonl --scorer NAME [--score NAME] [--tie-margin M]\n"
          "                 --out NEW.jsonl\n\n"
          "AI feedback: samples N images of every prompt (each from its own noise,\n"
          "a pure function of seed, prompt id and image index) into DIR/run/ (a run\n"
          "folder; a rerun resumes), scores them (DIR/run/scores-<scorer>.jsonl), and\n"
          "writes DIR/pairs.jsonl in the format 'dpo train' reads: one line per two\n"
          "images i < j of a prompt with caption, image_0, image_1 (paths relative to\n"
          "DIR), label_0 (1: image_0 scored higher by more than the margin, 0: lower,\n"
          "0.5: a tie), source \"ai-feedback:SCORER:SCORE\", model_0, model_1, and the\n"
          "two scores (score_0, score_1).\n\n"
          "options:\n"
          "  --images-per-prompt N  images per prompt, N >= 2 (default 2: one pair)\n"
          "  --score NAME           which score of the scorer (default its first; e.g.\n"
          "                         alignment, appeal or overall for shapes-judge)\n"
          "  --tie-margin M         |score difference| <= M is a tie (default 1e-6, so\n"
          "                         that float rounding is not a preference)\n"
          "  --pairing all|best-worst  every two images of a prompt (default), or only\n"
          "                         its best-scoring image against its worst (one pair\n"
          "                         a prompt, none when they tie)\n"
          "  --seed S, --steps N, --guidance G, --sampler NAME, --negative-prompt TEXT,\n"
          "  --resolution PX, --batch-size B, --limit N, --threads N, --jobs N\n"
          "                         as for 'dpo generate'\n"
          "  --scorer http:URL      an HTTP scorer (see 'dpo score --help')\n"
          "  --relabel FILE         re-score an existing pairs file instead (the paper's\n"
          "                         PickScore relabelling): every line is kept, label_0,\n"
          "                         score_0, score_1 and source replaced; --out names the\n"
          "                         new file, which must be in FILE's folder\n"
          "  -h, --help             this help\n\n"
          "example:\n"
          "  dpo pairs --model base --prompts world:train:500 --scorer shapes-judge \\\n"
          "      --score overall --out pairs-ai\n\n"
          "Exit status: 0 success; 1 unreadable model or prompts, or a scorer failure;\n"
          "2 usage error.\n");
}

int cmd_pairs(int argc, char **argv) {
  const char *cmd = "pairs", *scorer_name = NULL, *relabel = NULL;
  eval_pairs_config cfg;
  memset(&cfg, 0, sizeof cfg);
  eval_generate_config_default(&cfg.gen);
  cfg.gen.images_per_prompt = 2;
  cfg.score_batch = 16;
  cfg.tie_margin = 1e-6;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_pairs_help(stdout);
      return EXIT_OK;
    }
    if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
      return cli_usage_error(cmd, strncmp(a, "--", 2) ? "unexpected argument \"%s\"" : "%s needs a value", a);
    const char *v = argv[++i];
    double d;
    uint64_t u;
    int rc = EXIT_OK;
    if (!strcmp(a, "--model")) cfg.gen.model = v;
    else if (!strcmp(a, "--prompts")) cfg.gen.prompts = v;
    else if (!strcmp(a, "--out")) cfg.gen.out = v;
    else if (!strcmp(a, "--scorer")) scorer_name = v;
    else if (!strcmp(a, "--relabel")) relabel = v;
    else if (!strcmp(a, "--score")) cfg.score_name = v;
    else if (!strcmp(a, "--tie-margin")) {
      rc = cli_parse_double(cmd, a, v, &cfg.tie_margin);
      if (!rc && cfg.tie_margin < 0) rc = cli_usage_error(cmd, "--tie-margin expects a number >= 0");
    } else if (!strcmp(a, "--pairing")) {
      if (!strcmp(v, "all")) cfg.best_worst = 0;
      else if (!strcmp(v, "best-worst")) cfg.best_worst = 1;
      else rc = cli_usage_error(cmd, "--pairing expects all or best-worst, got \"%s\"", v);
    } else if (!strcmp(a, "--images-per-prompt")) rc = cli_parse_int(cmd, a, v, 2, 64, &cfg.gen.images_per_prompt);
    else if (!strcmp(a, "--steps")) rc = cli_parse_int(cmd, a, v, 1, 1000, &cfg.gen.sample.steps);
    else if (!strcmp(a, "--guidance")) {
      rc = cli_parse_double(cmd, a, v, &d);
      if (!rc && d < 0) rc = cli_usage_error(cmd, "--guidance expects a number >= 0");
      cfg.gen.sample.guidance = (float)d;
    } else if (!strcmp(a, "--sampler")) rc = cli_parse_sampler(cmd, v, &cfg.gen.sample.sampler);
    else if (!strcmp(a, "--negative-prompt")) cfg.gen.sample.negative_prompt = v;
    else if (!strcmp(a, "--resolution")) rc = cli_parse_int(cmd, a, v, 8, 4096, &cfg.gen.sample.resolution);
    else if (!strcmp(a, "--batch-size")) rc = cli_parse_int(cmd, a, v, 1, 1024, &cfg.gen.batch_size);
    else if (!strcmp(a, "--seed")) {
      rc = cli_parse_u64(cmd, a, v, &u);
      if (!rc && u > (uint64_t)INT64_MAX) rc = cli_usage_error(cmd, "--seed must be below 2^63");
      cfg.gen.seed = u;
    } else if (!strcmp(a, "--limit")) rc = cli_parse_int(cmd, a, v, 1, 1 << 30, &cfg.gen.limit);
    else if (!strcmp(a, "--threads")) rc = cli_parse_int(cmd, a, v, 1, 1024, &cfg.gen.threads);
    else if (!strcmp(a, "--jobs")) rc = cli_parse_int(cmd, a, v, 1, EVAL_MAX_JOBS, &cfg.gen.jobs);
    else return cli_usage_error(cmd, "unknown option \"%s\"", a);
    if (rc) return rc;
  }
  dpo_error err = {0};
  eval_pairs_stats stats;
  if (relabel) {
    if (cfg.gen.model || cfg.gen.prompts || !cfg.gen.out || !scorer_name)
      return cli_usage_error(cmd, "--relabel takes --scorer and --out, not --model or --prompts");
    cfg.scorer = cli_find_scorer(cmd, scorer_name);
    if (!cfg.scorer) return EXIT_USAGE;
    if (eval_relabel_pairs(relabel, cfg.gen.out, cfg.scorer, cfg.score_name, cfg.tie_margin, &stats, &err))
      return cli_report_error(&err);
    dpo_log_info("%s: %d pairs relabelled (%d ties)", cfg.gen.out, stats.n_pairs, stats.n_ties);
    return EXIT_OK;
  }
  if (!cfg.gen.model || !cfg.gen.prompts || !cfg.gen.out || !scorer_name)
    return cli_usage_error(cmd, "--model, --prompts, --scorer and --out are required");
  cfg.scorer = cli_find_scorer(cmd, scorer_name);
  if (!cfg.scorer) return EXIT_USAGE;
  if (cfg.score_name && eval_score_index(cfg.scorer, cfg.score_name) < 0)
    return cli_usage_error(cmd, "scorer \"%s\" has no score \"%s\"", cfg.scorer->name, cfg.score_name);
  cfg.gen.quiet = dpo_log_get_level() == DPO_LOG_QUIET;
  if (eval_make_pairs(&cfg, &stats, &err)) return cli_report_error(&err);
  if (cfg.best_worst)
    dpo_log_info("%s/pairs.jsonl: %d best-worst pairs of %d prompts (%d prompts with all images tied)", cfg.gen.out,
                 stats.n_pairs, stats.n_prompts, stats.n_tied_prompts);
  else
    dpo_log_info("%s/pairs.jsonl: %d pairs of %d prompts (%d ties)", cfg.gen.out, stats.n_pairs, stats.n_prompts,
                 stats.n_ties);
  return EXIT_OK;
}
