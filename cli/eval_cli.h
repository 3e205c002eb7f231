/* Flag parsing shared by the eval commands (generate, score, pairs, reward-acc). */
#ifndef DPO_CLI_EVAL_CLI_H
#define DPO_CLI_EVAL_CLI_H

#include <stdint.h>

#include "cli/cli.h"
#include "eval/eval.h"

/* A finite number; a usage error naming the flag otherwise. */
int cli_parse_double(const char *cmd, const char *flag, const char *text, double *out);
/* An integer in [lo, hi]. */
int cli_parse_int(const char *cmd, const char *flag, const char *text, int lo, int hi, int *out);
/* ddim, pndm, euler, dpmpp-2m (or a diffusers class name); sets *kind. */
int cli_parse_sampler(const char *cmd, const char *text, int *kind);
/* "i/n" with 0 <= i < n. */
int cli_parse_shard(const char *cmd, const char *text, int *index, int *count);
/* A scorer by name: a registered one, or http:URL (registered on first use
 * with the HTTP scorer's defaults). NULL after printing a usage error. */
const eval_scorer *cli_find_scorer(const char *cmd, const char *name);
/* Shared help text for --sampler. */
#define CLI_SAMPLER_HELP "ddim, pndm (PLMS), euler or dpmpp-2m over the pipeline's\n" \
  "                         scheduler config (default: its own scheduler)"

#endif
