/* dpo pretrain: train the shapes-world base model, or measure one. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "demo/demo.h"

void cmd_pretrain_help(FILE *out) {
  fprintf(out,
          "usage: dpo pretrain --out DIR [--steps N] [--seed S] [--size PX] [--batch-size B]\n"
          "                    [--lr LR] [--threads T]\n"
          "       dpo pretrain --measure DIR [--n N] [--seed S] [--guidance G] [--sample-steps K]\n"
          "                    [--threads T]\n\n"
          "Trains the shapes world's base model from scratch: a small pixel-space\n"
          "diffusers pipeline (UNet2DConditionModel, CLIPTextModel, a CLIP tokenizer of\n"
          "the grammar's words, DDIM scheduler; no VAE). Every step renders fresh scenes of\n"
          "random train-split prompts, scales them to [-1, 1] and trains UNet and text\n"
          "encoder together on the noise-prediction MSE at random timesteps (AdamW, 10%%\n"
          "empty captions so that classifier-free guidance works). DIR is written\n"
          "atomically (built as DIR.tmp, then renamed), with pretrain.json recording the\n"
          "settings, final loss and wall time.\n\n"
          "--measure samples N held-out prompts with the built-in DDIM sampler and prints\n"
          "the judge's mean alignment of the samples next to ground-truth renders.\n\n"
          "options:\n"
          "  --out DIR          pipeline folder to write\n"
          "  --steps N          optimizer steps (default 3000)\n"
          "  --seed S           initialisation, scenes and noise (default 0)\n"
          "  --size PX          image side, a multiple of 4 (default 32)\n"
          "  --batch-size B     scenes per step (default 16)\n"
          "  --lr LR            AdamW learning rate after 100 warmup steps (default 1e-3)\n"
          "  --threads T        CPU threads (default 1; 0: all cores)\n"
          "  --init DIR         continue from the networks of the pipeline folder DIR\n"
          "                     (a shapes-world pipeline of the same size)\n"
          "  --lr-decay linear  after warmup, lr falls linearly to 0 (default: constant)\n"
          "  --measure DIR      measure the pipeline in DIR instead of training\n"
          "  --n N              (measure) held-out prompts (default 64)\n"
          "  --guidance G       (measure) classifier-free guidance scale (default 3)\n"
          "  --sample-steps K   (measure) DDIM steps (default 50)\n"
          "  -h, --help         this help\n\n"
          "examples:\n"
          "  dpo pretrain --out world/base --steps 3000 --seed 0\n"
          "  dpo pretrain --measure world/base --n 200\n\n"
          "Exit status: 0 success; 1 a training or file error; 2 usage error.\n");
}

static int measure(const char *dir, uint64_t n, uint64_t seed, double guidance, uint64_t steps, int threads) {
  dpo_error err = {0};
  dpo_pipeline pipe;
  if (dpo_pipeline_load(dir, &pipe, &err)) return cli_report_error(&err);
  kn_ctx ctx;
  if (kn_ctx_init(&ctx, threads, &err)) {
    dpo_pipeline_free(&pipe);
    return cli_report_error(&err);
  }
  demo_sample_options so;
  demo_sample_defaults(&so);
  so.guidance = guidance;
  so.steps = (int)steps;
  demo_alignment_result r;
  int rc = demo_measure_alignment(&pipe, &ctx, &so, (int)n, 0, seed, &r, &err);
  kn_ctx_free(&ctx);
  dpo_pipeline_free(&pipe);
  if (rc) return cli_report_error(&err);
  printf("held-out prompts %d, seed %llu, guidance %g, %d DDIM steps: judge alignment %.3f (ground truth %.3f), "
         "appeal %.3f, %.1f s\n",
         r.n_prompts, (unsigned long long)seed, guidance, so.steps, r.model_alignment, r.truth_alignment,
         r.model_appeal, r.seconds);
  return EXIT_OK;
}

int cmd_pretrain(int argc, char **argv) {
  demo_pretrain_options opt;
  demo_pretrain_defaults(&opt);
  const char *measure_dir = NULL;
  uint64_t steps = (uint64_t)opt.steps, seed = 0, size = (uint64_t)opt.size, batch = (uint64_t)opt.batch_size;
  uint64_t threads = 1, n = 64, sample_steps = 50;
  double guidance = 3.0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_pretrain_help(stdout);
      return EXIT_OK;
    }
    if (a[0] != '-') return cli_usage_error("pretrain", "unexpected argument \"%s\"", a);
    if (i + 1 >= argc) return cli_usage_error("pretrain", "%s expects a value", a);
    const char *v = argv[++i];
    int rc = EXIT_OK;
    if (!strcmp(a, "--out")) opt.out = v;
    else if (!strcmp(a, "--measure")) measure_dir = v;
    else if (!strcmp(a, "--init")) opt.init = v;
    else if (!strcmp(a, "--lr-decay")) {
      if (!strcmp(v, "linear")) opt.linear_decay = 1;
      else if (!strcmp(v, "constant")) opt.linear_decay = 0;
      else rc = cli_usage_error("pretrain", "--lr-decay expects linear or constant, got \"%s\"", v);
    }
    else if (!strcmp(a, "--steps")) rc = cli_parse_u64("pretrain", a, v, &steps);
    else if (!strcmp(a, "--seed")) rc = cli_parse_u64("pretrain", a, v, &seed);
    else if (!strcmp(a, "--size")) rc = cli_parse_u64("pretrain", a, v, &size);
    else if (!strcmp(a, "--batch-size")) rc = cli_parse_u64("pretrain", a, v, &batch);
    else if (!strcmp(a, "--threads")) rc = cli_parse_u64("pretrain", a, v, &threads);
    else if (!strcmp(a, "--n")) rc = cli_parse_u64("pretrain", a, v, &n);
    else if (!strcmp(a, "--sample-steps")) rc = cli_parse_u64("pretrain", a, v, &sample_steps);
    else if (!strcmp(a, "--lr") || !strcmp(a, "--guidance")) {
      char *end;
      double x = strtod(v, &end);
      if (*end || end == v) return cli_usage_error("pretrain", "%s expects a number, got \"%s\"", a, v);
      if (!strcmp(a, "--lr")) opt.lr = x;
      else guidance = x;
    } else return cli_usage_error("pretrain", "unknown option \"%s\"", a);
    if (rc != EXIT_OK) return rc;
  }
  if (threads > 1024) return cli_usage_error("pretrain", "--threads must be at most 1024");
  if (measure_dir) {
    if (opt.out) return cli_usage_error("pretrain", "--out and --measure exclude each other");
    if (n < 1 || n > 10000) return cli_usage_error("pretrain", "--n must be 1 to 10000");
    if (sample_steps < 1 || sample_steps > 1000) return cli_usage_error("pretrain", "--sample-steps must be 1 to 1000");
    return measure(measure_dir, n, seed, guidance, sample_steps, (int)threads);
  }
  if (!opt.out) return cli_usage_error("pretrain", "--out DIR is required");
  if (steps > 10000000 || size > 256 || batch > 1024)
    return cli_usage_error("pretrain", "--steps, --size or --batch-size out of range");
  opt.steps = (int64_t)steps;
  opt.seed = seed;
  opt.size = (int)size;
  opt.batch_size = (int)batch;
  opt.threads = (int)threads;
  char command[2048];
  int len = snprintf(command, sizeof command,
                     "dpo pretrain --out %s --steps %llu --seed %llu --size %llu --batch-size %llu --lr %g", opt.out,
                     (unsigned long long)steps, (unsigned long long)seed, (unsigned long long)size,
                     (unsigned long long)batch, opt.lr);
  if (opt.init && len > 0 && (size_t)len < sizeof command)
    len += snprintf(command + len, sizeof command - (size_t)len, " --init %s", opt.init);
  if (opt.linear_decay && len > 0 && (size_t)len < sizeof command)
    snprintf(command + len, sizeof command - (size_t)len, " --lr-decay linear");
  opt.command = command;
  demo_pretrain_result res;
  dpo_error err = {0};
  int rc = demo_pretrain(&opt, &res, &err);
  if (rc == DPO_ERR_USAGE) return cli_usage_error("pretrain", "%s", err.msg);
  if (rc) return cli_report_error(&err);
  printf("wrote %s: %zu parameters, final loss %.4f, %.1f s\n", opt.out, res.n_params, res.final_loss,
         res.wall_seconds);
  return EXIT_OK;
}
