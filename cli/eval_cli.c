/* Flag parsing shared by the eval commands. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"

int cli_parse_double(const char *cmd, const char *flag, const char *text, double *out) {
  char *end = NULL;
  if (!text || !*text) return cli_usage_error(cmd, "%s expects a number", flag);
  double v = strtod(text, &end);
  if (*end != '\0' || !isfinite(v)) return cli_usage_error(cmd, "%s expects a number, got \"%s\"", flag, text);
  *out = v;
  return EXIT_OK;
}

int cli_parse_int(const char *cmd, const char *flag, const char *text, int lo, int hi, int *out) {
  char *end = NULL;
  if (!text || !*text) return cli_usage_error(cmd, "%s expects an integer in %d..%d", flag, lo, hi);
  long long v = strtoll(text, &end, 10);
  if (*end != '\0' || v < lo || v > hi)
    return cli_usage_error(cmd, "%s expects an integer in %d..%d, got \"%s\"", flag, lo, hi, text);
  *out = (int)v;
  return EXIT_OK;
}

int cli_parse_sampler(const char *cmd, const char *text, int *kind) {
  static const struct {
    const char *name;
    int kind;
  } names[] = {{"ddim", DPO_SCHED_DDIM}, {"pndm", DPO_SCHED_PNDM}, {"euler", DPO_SCHED_EULER},
               {"dpmpp-2m", DPO_SCHED_DPMPP_2M}, {"dpm++2m", DPO_SCHED_DPMPP_2M}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(text, names[i].name) == 0) {
      *kind = names[i].kind;
      return EXIT_OK;
    }
  dpo_scheduler_kind k;
  if (dpo_scheduler_kind_from_name(text, &k) == DPO_OK && k != DPO_SCHED_DDPM) {
    *kind = (int)k;
    return EXIT_OK;
  }
  return cli_usage_error(cmd, "--sampler \"%s\": expected ddim, pndm, euler or dpmpp-2m", text);
}

int cli_parse_shard(const char *cmd, const char *text, int *index, int *count) {
  int i, n, used = 0;
  if (sscanf(text, "%d/%d%n", &i, &n, &used) != 2 || text[used] != '\0' || n < 1 || i < 0 || i >= n)
    return cli_usage_error(cmd, "--shard \"%s\": expected i/n with 0 <= i < n (e.g. 0/4)", text);
  *index = i;
  *count = n;
  return EXIT_OK;
}

const eval_scorer *cli_find_scorer(const char *cmd, const char *name) {
  if (strncmp(name, "http:", 5) == 0) {
    eval_http_options opt;
    eval_http_options_default(&opt, name + 5);
    if (strlen(name + 5) >= sizeof opt.url) {
      cli_usage_error(cmd, "--scorer: URL too long");
      return NULL;
    }
    dpo_error err = {0};
    const eval_scorer *s = eval_http_scorer_register(&opt, &err);
    if (!s) cli_usage_error(cmd, "%s", err.msg);
    return s;
  }
  const eval_scorer *s = eval_find_scorer(name);
  if (!s) {
    char names[1024] = "";
    for (int i = 0; i < eval_scorer_count(); i++) {
      if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
      strncat(names, eval_scorer_at(i)->name, sizeof names - strlen(names) - 1);
    }
    cli_usage_error(cmd, "unknown scorer \"%s\" (known: %s, or http:URL)", name, names);
  }
  return s;
}
