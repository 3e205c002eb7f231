/* dpo bench <what>: benchmarks. `kernels` times each CPU kernel at SD1.5
 * shapes beside this machine's sgemm speed measured in the same run; the
 * other subjects (unet, train, sample) have a file each, in the table below. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kernels/kernels.h"

static int bench_kernels(int argc, char **argv) {
  int json = 0, quick = 0, list = 0, cpu_time = 0, winograd = 0;
  const char *only = NULL;
  uint64_t threads = 0, repeat = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--quick")) {
      quick = 1;
    } else if (!strcmp(argv[i], "--list")) {
      list = 1;
    } else if (!strcmp(argv[i], "--cpu-time")) {
      cpu_time = 1;
    } else if (!strcmp(argv[i], "--winograd")) {
      winograd = 1;
    } else if (!strcmp(argv[i], "--only")) {
      if (i + 1 >= argc) return cli_usage_error("bench", "--only needs a case name");
      only = argv[++i];
    } else if (!strcmp(argv[i], "--threads") || !strcmp(argv[i], "--repeat")) {
      if (i + 1 >= argc) return cli_usage_error("bench", "%s needs a value", argv[i]);
      uint64_t *dst = !strcmp(argv[i], "--threads") ? &threads : &repeat;
      int rc = cli_parse_u64("bench", argv[i], argv[i + 1], dst);
      if (rc != EXIT_OK) return rc;
      i++;
    } else {
      return cli_usage_error("bench", "unknown option \"%s\" for kernels", argv[i]);
    }
  }
  if (threads > 1024) return cli_usage_error("bench", "--threads must be at most 1024");
  if (repeat < 1 || repeat > 1000) return cli_usage_error("bench", "--repeat must be in 1..1000");
  if (list) {
    const char *names[64];
    int n_names = kn_bench_case_names(quick, names, 64);
    for (int i = 0; i < n_names; i++) printf("%s\n", names[i]);
    return EXIT_OK;
  }
  kn_bench_result results[64];
  dpo_error err = {0};
  kn_bench_options options = {(int)threads, (int)repeat, quick, cpu_time, only, winograd};
  int n = kn_bench_run(&options, results, 64, &err);
  if (n < 0) return err.code == DPO_ERR_USAGE ? cli_usage_error("bench", "%s", err.msg) : cli_report_error(&err);
  /* The sgemm reference: the first result, measured in this same run (none
   * with --only another case). */
  double sgemm = n > 0 && !strncmp(results[0].name, "sgemm", 5) ? results[0].gflops : 0.0;
  if (!json) printf("%-22s %-38s %10s %10s %9s\n", "op", "shape", "ms", "GFLOP/s", "of sgemm");
  for (int i = 0; i < n; i++) {
    const kn_bench_result *r = &results[i];
    double ratio = sgemm > 0 ? r->gflops / sgemm : 0.0;
    if (json)
      printf("{\"op\": \"%s\", \"shape\": \"%s\", \"threads\": %d, \"seconds\": %.6g, "
             "\"min_seconds\": %.6g, \"flops\": %.6g, \"gflops\": %.4g, \"sgemm_gflops\": %.4g, "
             "\"ratio_to_sgemm\": %.4g}\n",
             r->name, r->shape, r->threads, r->seconds, r->min_seconds, r->flops, r->gflops, sgemm, ratio);
    else
      printf("%-22s %-38s %10.3f %10.2f %8.0f%%\n", r->name, r->shape, r->seconds * 1e3, r->gflops,
             100.0 * ratio);
  }
  return EXIT_OK;
}

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
} bench_subject;

int bench_unet(int argc, char **argv);  /* cli/bench_unet.c */
void bench_unet_help(FILE *out);
int bench_train(int argc, char **argv);  /* cli/bench_train.c */
void bench_train_help(FILE *out);
int bench_sample(int argc, char **argv);  /* cli/bench_sample.c */
void bench_sample_help(FILE *out);

static const bench_subject subjects[] = {
    {"kernels", bench_kernels},
    {"unet", bench_unet},
    {"train", bench_train},
    {"sample", bench_sample},
};

int cmd_bench(int argc, char **argv) {
  if (argc < 2) return cli_usage_error("bench", "what to benchmark? (kernels, unet, train or sample)");
  if (cli_is_help(argv[1])) {
    cmd_bench_help(stdout);
    return EXIT_OK;
  }
  for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++)
    if (!strcmp(argv[1], subjects[i].name)) return subjects[i].run(argc - 1, argv + 1);
  return cli_usage_error("bench", "unknown benchmark \"%s\" (kernels, unet, train or sample)", argv[1]);
}

void cmd_bench_help(FILE *out) {
  fprintf(out,
          "usage: dpo bench kernels [--json] [--threads N] [--repeat R] [--only CASE] [--list]\n"
          "                         [--cpu-time] [--winograd] [--quick]\n\n"
          "Times each CPU kernel (conv2d, attention, group norm, ...) at Stable Diffusion 1.5\n"
          "shapes and prints GFLOP/s beside this machine's sgemm GFLOP/s measured in the\n"
          "same run. Each time is the median of R calls (default 5) after a warm-up.\n\n"
          "  --json        one JSON object per line instead of a table\n"
          "  --threads N   threads for OpenMP and OpenBLAS (default: all cores)\n"
          "  --repeat R    timed calls per op (1..1000)\n"
          "  --only CASE   run one case (names from --list)\n"
          "  --list        print the case names and exit\n"
          "  --cpu-time    time with the process CPU clock (with --threads 1: immune to\n"
          "                other jobs sharing the cores)\n"
          "  --winograd    3x3 forward convolutions by Winograd F(2x2,3x3): faster, less\n"
          "                precise; off by default in training and sampling\n"
          "  --quick       tiny shapes (for tests)\n");
  bench_unet_help(out);
  bench_train_help(out);
  bench_sample_help(out);
}
