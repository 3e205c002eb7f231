/* dpo demo: the whole Diffusion-DPO loop on the built-in shapes world. */
#include <string.h>

#include "cli/cli.h"
#include "cli/eval_cli.h"
#include "demo/demo.h"

void cmd_demo_help(FILE *out) {
  fprintf(out,
          "usage: dpo demo [--out DIR] [--quick] [--seed S] [--base DIR] [--threads T] [--jobs N]\n\n"
          "Runs the whole loop on the shapes world, where a judge knows the truth:\n"
          "  1 base      loads the shipped base model (world/base/)\n"
          "  2 pairs     AI-feedback pairs on train-split prompts: K base samples a\n"
          "              prompt, the judge's best-aligned against its worst\n"
          "  3 train     Diffusion-DPO from the base on those pairs\n"
          "  4 generate  held-out prompts with base and tuned model, same seeds\n"
          "  5 reward    implicit-reward accuracy on judge-labelled held-out pairs\n"
          "  6 study     q1, q2, q3 with 5 simulated votes (noisy raters, some random)\n"
          "  7 report    report.html/md/json, contact sheet, summary.json\n"
          "Every artifact goes into DIR; rerunning with the DIR of an interrupted or\n"
          "finished demo reuses the stages that are done.\n\n"
          "options:\n"
          "  --out DIR      output folder (default dpo-demo)\n"
          "  --quick        fewer prompts and steps (the test suite's run)\n"
          "  --seed S       prompts, samples and training (default 0)\n"
          "  --base DIR     base pipeline (default: the shipped world/base)\n"
          "  --threads T    CPU threads of each process (default 1; 0: all cores)\n"
          "  --jobs N       sampling worker processes (default: one a core, at most 8;\n"
          "                 the images do not depend on it)\n"
          "  -h, --help     this help\n\n"
          "settings (defaults: the full run, then --quick's):\n"
          "  --pair-prompts N       train prompts given a pair (%d, %d)\n"
          "  --images-per-prompt K  base samples a pair prompt; the judge's best and\n"
          "                         worst form its pair (%d)\n"
          "  --dpo-steps N          Diffusion-DPO steps of %d pairs (%d, %d)\n"
          "  --beta B               DPO beta, trainer convention (%g)\n"
          "  --lr X                 DPO learning rate (%g)\n"
          "  --heldout N            held-out prompts put to the raters (%d, %d)\n"
          "  --reward-prompts N     held-out prompts of the implicit-reward pairs (%d, %d)\n"
          "  --sample-steps N       DDIM steps of every sample (%d)\n\n"
          "Exit status: 0 success; 1 a stage failed or is missing from this build (the\n"
          "message names it); 2 usage error.\n",
          DEMO_PAIR_PROMPTS, DEMO_QUICK_PAIR_PROMPTS, DEMO_IMAGES_PER_PROMPT, DEMO_DPO_BATCH, DEMO_DPO_STEPS,
          DEMO_QUICK_DPO_STEPS, DEMO_DPO_BETA, DEMO_DPO_LR, DEMO_HELDOUT, DEMO_QUICK_HELDOUT, DEMO_REWARD_PROMPTS,
          DEMO_QUICK_REWARD_PROMPTS, DEMO_SAMPLE_STEPS);
}

int cmd_demo(int argc, char **argv) {
  demo_options opt;
  demo_options_defaults(&opt);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_demo_help(stdout);
      return EXIT_OK;
    }
    if (!strcmp(a, "--quick")) {
      opt.quick = 1;
      continue;
    }
    if (a[0] != '-') return cli_usage_error("demo", "unexpected argument \"%s\"", a);
    if (i + 1 >= argc) return cli_usage_error("demo", "%s expects a value", a);
    const char *v = argv[++i];
    uint64_t x = 0;
    if (!strcmp(a, "--out")) opt.out = v;
    else if (!strcmp(a, "--base")) opt.base = v;
    else if (!strcmp(a, "--seed")) {
      if (cli_parse_u64("demo", a, v, &opt.seed) != EXIT_OK) return EXIT_USAGE;
    } else if (!strcmp(a, "--threads")) {
      if (cli_parse_u64("demo", a, v, &x) != EXIT_OK) return EXIT_USAGE;
      if (x > 1024) return cli_usage_error("demo", "--threads must be at most 1024");
      opt.threads = (int)x;
    } else if (!strcmp(a, "--jobs")) {
      if (cli_parse_int("demo", a, v, 1, 256, &opt.jobs) != EXIT_OK) return EXIT_USAGE;
    } else if (!strcmp(a, "--pair-prompts")) {
      if (cli_parse_int("demo", a, v, 2, 1000000, &opt.pair_prompts) != EXIT_OK) return EXIT_USAGE;
    } else if (!strcmp(a, "--images-per-prompt")) {
      if (cli_parse_int("demo", a, v, 2, 64, &opt.images_per_prompt) != EXIT_OK) return EXIT_USAGE;
    } else if (!strcmp(a, "--dpo-steps")) {
      if (cli_parse_int("demo", a, v, 1, 10000000, &opt.dpo_steps) != EXIT_OK) return EXIT_USAGE;
    } else if (!strcmp(a, "--beta")) {
      if (cli_parse_double("demo", a, v, &opt.beta) != EXIT_OK) return EXIT_USAGE;
      if (!(opt.beta > 0)) return cli_usage_error("demo", "--beta must be positive");
    } else if (!strcmp(a, "--lr")) {
      if (cli_parse_double("demo", a, v, &opt.lr) != EXIT_OK) return EXIT_USAGE;
      if (!(opt.lr > 0 && opt.lr < 1)) return cli_usage_error("demo", "--lr must be in (0, 1)");
    } else if (!strcmp(a, "--heldout")) {
      if (cli_parse_int("demo", a, v, 1, 1000000, &opt.heldout) != EXIT_OK) return EXIT_USAGE;
    } else if (!strcmp(a, "--reward-prompts")) {
      if (cli_parse_int("demo", a, v, 1, 1000000, &opt.reward_prompts) != EXIT_OK) return EXIT_USAGE;
    } else if (!strcmp(a, "--sample-steps")) {
      if (cli_parse_int("demo", a, v, 1, 1000, &opt.sample_steps) != EXIT_OK) return EXIT_USAGE;
    } else return cli_usage_error("demo", "unknown option \"%s\"", a);
  }
  dpo_error err = {0};
  int rc = demo_run(&opt, &err);
  if (rc == DPO_ERR_USAGE) return cli_usage_error("demo", "%s", err.msg);
  if (rc) return cli_report_error(&err);
  return EXIT_OK;
}
