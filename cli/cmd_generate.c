/* dpo generate: a checkpoint + a prompt set -> a run folder of images. */
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"

void cmd_generate_help(FILE *out) {
  fprintf(out,
          "usage: dpo generate --model CKPT --prompts SET|FILE[:FILTER] --out RUN [options]\n\n"
          "Samples images from a diffusers pipeline folder into a run folder:\n"
          "RUN/images/*.png (the settings in PNG text chunks) and RUN/manifest.jsonl,\n"
          "one line per image with exactly the keys prompt_set, prompt_id, prompt,\n"
          "category, seed, image_index, file, sha256, model, settings. The starting\n"
          "noise of every image is a pure function of (seed, prompt id, image index),\n"
          "so two models run with the same seed start from the same noise.\n\n"
          "A rerun with the same settings resumes: images already listed with a valid\n"
          "hash are skipped, a torn last manifest line is repaired. Shards may run at\n"
          "once into the same folder.\n\n"
          "prompts:\n"
          "  SET, FILE             a built-in set (parti, hpsv2, tedbench) or a prompt file\n"
          "  SET:FILTER            only prompts whose category or id is FILTER\n"
          "                        (parti:Animals, hpsv2:anime, parti:17)\n"
          "  world:SPLIT:N[:SEED]  the first N shapes-world prompts of split train or\n"
          "                        heldout (as 'dpo world prompts --split SPLIT --seed SEED')\n"
          "  tedbench              SDEdit of TEd-Bench's 100 edits: each source image is\n"
          "                        resized and centre-cropped to the resolution, copied\n"
          "                        to RUN/sources/, and recorded as settings.source_image\n\n"
          "options:\n"
          "  --images-per-prompt N  images of each prompt (default 1)\n"
          "  --steps N              sampling steps (default 50)\n"
          "  --guidance G           classifier-free guidance scale; <= 1 turns it off\n"
          "                         (default 7.5)\n"
          "  --sampler NAME         " CLI_SAMPLER_HELP "\n"
          "  --negative-prompt TEXT the unconditional prompt of guidance (default \"\")\n"
          "  --strength S           SDEdit strength for edit sets, in (0, 1] (default 0.6;\n"
          "                         the paper's colour-layout edits use 0.98)\n"
          "  --resolution PX        image side (default: the UNet's sample_size x the VAE's\n"
          "                         factor)\n"
          "  --batch-size B         images per forward pass (default 1)\n"
          "  --seed S               noise seed (default 0)\n"
          "  --limit N              only the first N prompts\n"
          "  --shard i/n            only prompts k with k %% n == i (for parallel runs)\n"
          "  --threads N            CPU threads (default: OpenMP's); per worker with --jobs\n"
          "  --jobs N               N worker processes, each making 1/N of the prompts\n"
          "                         (default 1); on small models N processes of one\n"
          "                         thread use N cores far better than N threads\n"
          "  --backend cpu|cuda|auto  where the text encoder and UNet run (default auto:\n"
          "                         cuda when this build has it and a device is visible;\n"
          "                         the VAE decodes there too). cuda without either: exit 2\n"
          "                         (build) or 1 (no device)\n"
          "  --precision float32|bf16  the UNet's and VAE's arithmetic (default float32);\n"
          "                         bf16: mixed precision (bf16 activations and weights,\n"
          "                         float32 sums), meant for cuda; recorded in each\n"
          "                         image's settings\n"
          "  -h, --help             this help\n\n"
          "example:\n"
          "  dpo generate --model sd15 --prompts parti --out runs/base --steps 50 --seed 1\n\n"
          "Exit status: 0 success; 1 unreadable model, prompts or run folder; 2 usage error\n"
          "(also a run folder made with other settings).\n");
}

int cmd_generate(int argc, char **argv) {
  eval_generate_config cfg;
  eval_generate_config_default(&cfg);
  const char *cmd = "generate";
  const char *backend_name = NULL, *precision_name = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_generate_help(stdout);
      return EXIT_OK;
    }
    if (i + 1 >= argc || strncmp(a, "--", 2) != 0)
      return cli_usage_error(cmd, strncmp(a, "--", 2) ? "unexpected argument \"%s\"" : "%s needs a value", a);
    const char *v = argv[++i];
    double d;
    uint64_t u;
    int rc = EXIT_OK;
    if (!strcmp(a, "--model")) cfg.model = v;
    else if (!strcmp(a, "--prompts")) cfg.prompts = v;
    else if (!strcmp(a, "--out")) cfg.out = v;
    else if (!strcmp(a, "--images-per-prompt")) rc = cli_parse_int(cmd, a, v, 1, 100000, &cfg.images_per_prompt);
    else if (!strcmp(a, "--steps")) rc = cli_parse_int(cmd, a, v, 1, 1000, &cfg.sample.steps);
    else if (!strcmp(a, "--guidance")) {
      rc = cli_parse_double(cmd, a, v, &d);
      if (!rc && d < 0) rc = cli_usage_error(cmd, "--guidance expects a number >= 0");
      cfg.sample.guidance = (float)d;
    } else if (!strcmp(a, "--strength")) {
      rc = cli_parse_double(cmd, a, v, &d);
      if (!rc && !(d > 0 && d <= 1)) rc = cli_usage_error(cmd, "--strength expects a number in (0, 1]");
      cfg.sample.strength = (float)d;
    } else if (!strcmp(a, "--sampler")) rc = cli_parse_sampler(cmd, v, &cfg.sample.sampler);
    else if (!strcmp(a, "--negative-prompt")) cfg.sample.negative_prompt = v;
    else if (!strcmp(a, "--resolution")) rc = cli_parse_int(cmd, a, v, 8, 4096, &cfg.sample.resolution);
    else if (!strcmp(a, "--batch-size")) rc = cli_parse_int(cmd, a, v, 1, 1024, &cfg.batch_size);
    else if (!strcmp(a, "--seed")) {
      rc = cli_parse_u64(cmd, a, v, &u);
      if (!rc && u > (uint64_t)INT64_MAX) rc = cli_usage_error(cmd, "--seed must be below 2^63");
      cfg.seed = u;
    } else if (!strcmp(a, "--limit")) rc = cli_parse_int(cmd, a, v, 1, 1 << 30, &cfg.limit);
    else if (!strcmp(a, "--shard")) rc = cli_parse_shard(cmd, v, &cfg.shard_index, &cfg.shard_count);
    else if (!strcmp(a, "--threads")) rc = cli_parse_int(cmd, a, v, 1, 1024, &cfg.threads);
    else if (!strcmp(a, "--jobs")) rc = cli_parse_int(cmd, a, v, 1, EVAL_MAX_JOBS, &cfg.jobs);
    else if (!strcmp(a, "--backend")) backend_name = v;
    else if (!strcmp(a, "--precision")) precision_name = v;
    else return cli_usage_error(cmd, "unknown option \"%s\"", a);
    if (rc) return rc;
  }
  if (!cfg.model || !cfg.prompts || !cfg.out) return cli_usage_error(cmd, "--model, --prompts and --out are required");
  if (cfg.jobs > 1 && cfg.shard_count > 1) return cli_usage_error(cmd, "--jobs and --shard do not go together");
  int backend, brc = cli_backend(cmd, backend_name, &backend);
  if (brc != EXIT_OK) return brc;
  cfg.sample.backend = (kn_backend)backend;
  int precision, prc = cli_precision(cmd, precision_name, &precision);
  if (prc != EXIT_OK) return prc;
  cfg.sample.precision = (kn_dtype)precision;
  cfg.quiet = dpo_log_get_level() == DPO_LOG_QUIET;
  eval_generate_stats stats;
  dpo_error err = {0};
  int rc = eval_generate(&cfg, &stats, &err);
  if (rc) return cli_report_error(&err);
  if (stats.dropped_lines)
    dpo_log_warn("%s/manifest.jsonl: removed %d torn, invalid or duplicate line(s)", cfg.out, stats.dropped_lines);
  dpo_log_info("%s: %d image(s) planned, %d already done, %d generated", cfg.out, stats.planned, stats.skipped,
               stats.generated);
  return EXIT_OK;
}
