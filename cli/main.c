/* dpo: Diffusion-DPO training, evaluation, human studies and reports.
 * Global flags come before the subcommand: dpo [--quiet|--verbose] CMD [ARGS]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dpo_version.h"

static const cli_command commands[] = {
    {"bench", "built-in benchmarks: dpo bench kernels|unet|train", cmd_bench, cmd_bench_help},
    {"help", "show help for dpo or for one command", cmd_help, cmd_help_help},
    {"version", "print the version", cmd_version, cmd_version_help},
    {"inspect", "validate and describe safetensors, PNG and JPEG files", cmd_inspect, cmd_inspect_help},
    {"prompts", "list, show and count the built-in prompt sets and prompt files", cmd_prompts, cmd_prompts_help},
    {"report", "win rates, intervals, tests, agreement; study sizes (power)", cmd_report, cmd_report_help},
    {"study", "A/B human studies: create, export, ingest, review, status, serve, invite", cmd_study, cmd_study_help},
    {"generate", "sample a checkpoint over a prompt set into a run folder (txt2img, SDEdit)", cmd_generate,
     cmd_generate_help},
    {"grid", "contact sheet of runs side by side per prompt (PNG)", cmd_grid, cmd_grid_help},
    {"pairs", "AI-feedback preference pairs: sample two images per prompt, label them by a scorer", cmd_pairs,
     cmd_pairs_help},
    {"reward-acc", "implicit-reward (or scorer) accuracy on held-out preference pairs", cmd_reward_acc,
     cmd_reward_acc_help},
    {"score", "score a run folder's images (built-in or HTTP scorers): mean and median with intervals", cmd_score,
     cmd_score_help},
    {"train", "Diffusion-DPO / SFT fine-tuning of a pipeline on preference pairs", cmd_train, cmd_train_help},
    {"world", "the built-in shapes world: render prompts, list prompt splits, judge images", cmd_world, cmd_world_help},
    {"pretrain", "train the shapes-world base model (small pixel-space pipeline) from scratch", cmd_pretrain, cmd_pretrain_help},
    {"demo", "the whole Diffusion-DPO loop on the built-in shapes world, with a measured result", cmd_demo, cmd_demo_help},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

const cli_command *cli_find_command(const char *name) {
  for (int i = 0; i < n_commands; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static void print_main_help(FILE *out) {
  fprintf(out,
          "usage: dpo [--quiet | --verbose] <command> [<args>]\n"
          "       dpo --version | --help\n\n"
          "Diffusion-DPO: preference-tune text-to-image diffusion models, generate\n"
          "benchmark images, run A/B human studies and report win rates.\n\n"
          "commands:\n");
  for (int i = 0; i < n_commands; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\nglobal options:\n"
          "  -q, --quiet     no progress or informational output (warnings and errors remain)\n"
          "  -v, --verbose   more informational output\n"
          "  --version       print the version and exit\n"
          "  -h, --help      this help\n\n"
          "Run 'dpo help <command>' or 'dpo <command> --help' for a command's options.\n"
          "Exit status: 0 success, 1 runtime or data error, 2 usage error.\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "dpo%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (cmd) fprintf(stderr, "\nRun 'dpo %s --help' for usage.\n", cmd);
  else fprintf(stderr, "\nRun 'dpo --help' for usage.\n");
  return EXIT_USAGE;
}

int cli_report_error(const dpo_error *err) {
  fprintf(stderr, "dpo: error: %s\n", err->msg[0] ? err->msg : "unknown error");
  return err->code == DPO_ERR_USAGE ? EXIT_USAGE : EXIT_DATA;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

int cli_parse_u64(const char *cmd, const char *flag, const char *text, uint64_t *out) {
  char *end = NULL;
  if (!text || !*text || *text == '-') return cli_usage_error(cmd, "%s expects a non-negative integer, got \"%s\"", flag, text ? text : "");
  unsigned long long v = strtoull(text, &end, 10);
  if (*end != '\0') return cli_usage_error(cmd, "%s expects a non-negative integer, got \"%s\"", flag, text);
  *out = (uint64_t)v;
  return EXIT_OK;
}

int cmd_help(int argc, char **argv) {
  if (argc < 2) {
    print_main_help(stdout);
    return EXIT_OK;
  }
  if (cli_is_help(argv[1])) {
    cmd_help_help(stdout);
    return EXIT_OK;
  }
  const cli_command *c = cli_find_command(argv[1]);
  if (!c) return cli_usage_error("help", "unknown command \"%s\"", argv[1]);
  c->help(stdout);
  return EXIT_OK;
}

void cmd_help_help(FILE *out) {
  fprintf(out, "usage: dpo help [<command>]\n\nShows the list of commands, or the full help of one command.\n");
}

int cmd_version(int argc, char **argv) {
  (void)argv;
  if (argc > 1 && cli_is_help(argv[1])) {
    cmd_version_help(stdout);
    return EXIT_OK;
  }
  if (argc > 1) return cli_usage_error("version", "takes no arguments");
  printf("dpo %s\n", DPO_VERSION);
  return EXIT_OK;
}

void cmd_version_help(FILE *out) {
  fprintf(out, "usage: dpo version\n\nPrints the version (from git describe at build time).\n");
}

int main(int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
      dpo_log_set_level(DPO_LOG_QUIET);
    } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
      dpo_log_set_level(DPO_LOG_VERBOSE);
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("dpo %s\n", DPO_VERSION);
      return EXIT_OK;
    } else if (cli_is_help(argv[i])) {
      print_main_help(stdout);
      return EXIT_OK;
    } else {
      return cli_usage_error(NULL, "unknown option \"%s\"", argv[i]);
    }
  }
  if (i >= argc) {
    print_main_help(stderr);
    return EXIT_USAGE;
  }
  const cli_command *c = cli_find_command(argv[i]);
  if (!c) return cli_usage_error(NULL, "unknown command \"%s\"", argv[i]);
  /* A subcommand may also take --quiet after its name, as users expect. */
  int sub_argc = 0;
  char **sub_argv = malloc(sizeof(char *) * (size_t)(argc - i + 1));
  if (!sub_argv) return EXIT_DATA;
  for (int j = i; j < argc; j++) {
    if (j > i && (strcmp(argv[j], "--quiet") == 0 || strcmp(argv[j], "-q") == 0)) {
      dpo_log_set_level(DPO_LOG_QUIET);
      continue;
    }
    sub_argv[sub_argc++] = argv[j];
  }
  sub_argv[sub_argc] = NULL;
  int rc = c->run(sub_argc, sub_argv);
  free(sub_argv);
  return rc;
}
