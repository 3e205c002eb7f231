/* cli: the `dpo` command. Each subcommand is one file that parses its flags and
 * calls the libraries; no logic that a library folder should own lives here. */
#ifndef DPO_CLI_H
#define DPO_CLI_H

#include "core/core.h"

/* Exit statuses: 0 success, 1 runtime or data error, 2 usage error. */
enum { EXIT_OK = 0, EXIT_DATA = 1, EXIT_USAGE = 2 };

typedef struct {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);   /* argv[0] is the subcommand name */
  void (*help)(FILE *out);             /* full help for `dpo CMD --help` */
} cli_command;

const cli_command *cli_find_command(const char *name);

/* Prints "dpo CMD: message" and a pointer to --help; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "dpo: error: message" from a library error; returns its exit status. */
int cli_report_error(const dpo_error *err);
/* True when argv[i] is -h or --help. */
int cli_is_help(const char *arg);
/* Parses a non-negative integer flag value; fails as a usage error naming the flag. */
int cli_parse_u64(const char *cmd, const char *flag, const char *text, uint64_t *out);
/* --backend NAME (NULL: auto) of `cmd` as a kn_backend (cli/backend_cli.c);
 * returns the exit status (the error printed). */
int cli_backend(const char *cmd, const char *name, int *backend);
/* --precision NAME (NULL: float32) into a kn_dtype; a usage error (exit 2) otherwise. */
int cli_precision(const char *cmd, const char *name, int *dtype);

/* The subcommands. */
int cmd_bench(int argc, char **argv);
void cmd_bench_help(FILE *out);
int cmd_help(int argc, char **argv);
void cmd_help_help(FILE *out);
int cmd_inspect(int argc, char **argv);
void cmd_inspect_help(FILE *out);
int cmd_prompts(int argc, char **argv);
void cmd_prompts_help(FILE *out);
int cmd_version(int argc, char **argv);
void cmd_version_help(FILE *out);
int cmd_report(int argc, char **argv);
void cmd_report_help(FILE *out);
int cmd_study(int argc, char **argv);
void cmd_study_help(FILE *out);
int cmd_generate(int argc, char **argv);
void cmd_generate_help(FILE *out);
int cmd_grid(int argc, char **argv);
void cmd_grid_help(FILE *out);
int cmd_pairs(int argc, char **argv);
void cmd_pairs_help(FILE *out);
int cmd_reward_acc(int argc, char **argv);
void cmd_reward_acc_help(FILE *out);
int cmd_score(int argc, char **argv);
void cmd_score_help(FILE *out);
int cmd_train(int argc, char **argv);
void cmd_train_help(FILE *out);
int cmd_world(int argc, char **argv);
void cmd_world_help(FILE *out);
int cmd_pretrain(int argc, char **argv);
void cmd_pretrain_help(FILE *out);
int cmd_demo(int argc, char **argv);
void cmd_demo_help(FILE *out);

#endif
