/* dpo bench unet: the SD1.5 UNet (diffusers' config, random weights) timed
 * forward and forward+backward on the CPU. bench/bench_unet.py runs this
 * beside diffusers on PyTorch at the same thread count and writes
 * bench/RESULTS.md. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "models/models.h"

/* runwayml/stable-diffusion-v1-5 unet/config.json, less bookkeeping. */
static const char *const sd15_config =
    "{\"act_fn\": \"silu\", \"attention_head_dim\": 8, \"block_out_channels\": [320, 640, 1280, 1280],"
    " \"center_input_sample\": false, \"cross_attention_dim\": 768,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
    " \"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4,"
    " \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, \"norm_num_groups\": 32,"
    " \"out_channels\": 4, \"sample_size\": 64,"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";

/* A tiny config of the same shape, for tests (--quick). */
static const char *const quick_config =
    "{\"attention_head_dim\": 2, \"block_out_channels\": [16, 32], \"cross_attention_dim\": 16,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"layers_per_block\": 1,"
    " \"norm_num_groups\": 4, \"sample_size\": 8, \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}";

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median seconds of `repeat` runs after one warm-up. */
static double time_runs(dpo_unet *u, kn_ctx *ctx, int backward, int repeat, const float *x, const float *t,
                        const float *enc, const float *g) {
  double times[64];
  for (int r = -1; r < repeat; r++) {
    double start = dpo_now_seconds();
    dpo_unet_forward(u, ctx, x, t, enc);
    if (backward) {
      dpo_unet_zero_grads(u);
      dpo_unet_backward(u, ctx, g, NULL, NULL);
    }
    if (r >= 0) times[r] = dpo_now_seconds() - start;
  }
  qsort(times, (size_t)repeat, sizeof *times, compare_doubles);
  return times[repeat / 2];
}

static int run_case(dpo_unet *u, kn_ctx *ctx, int B, int S, int T, int backward, int repeat, int json,
                    dpo_error *err) {
  const dpo_unet_config *c = dpo_unet_get_config(u);
  if (dpo_unet_plan(u, ctx, B, S, S, T, backward, err) != DPO_OK) return DPO_ERR_DATA;
  size_t n_x = (size_t)B * c->in_channels * S * S, n_enc = (size_t)B * T * c->cross_attention_dim;
  float *x = malloc(n_x * sizeof(float)), *g = malloc(n_x * sizeof(float));
  float *enc = malloc(n_enc * sizeof(float)), t[64];
  if (!x || !g || !enc) {
    free(x);
    free(g);
    free(enc);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  dpo_rng_normal_fill(7, 1, 0, x, n_x);
  dpo_rng_normal_fill(7, 2, 0, g, n_x);
  dpo_rng_normal_fill(7, 3, 0, enc, n_enc);
  for (int b = 0; b < B; b++) t[b] = 999.0f - 37.0f * (float)b;
  double seconds = time_runs(u, ctx, backward, repeat, x, t, enc, g);
  const char *what = backward ? "forward+backward" : "forward";
  double gib = (double)dpo_unet_plan_bytes(u) / (1024.0 * 1024.0 * 1024.0);
  if (json)
    printf("{\"model\": \"unet\", \"pass\": \"%s\", \"batch\": %d, \"latent\": %d, \"tokens\": %d, "
           "\"threads\": %d, \"seconds\": %.6g, \"plan_gib\": %.4g, \"repeat\": %d}\n",
           what, B, S, T, ctx->n_threads, seconds, gib, repeat);
  else
    printf("%-18s %6d %5dx%-5d %8d %10.3f %9.2f\n", what, B, S, S, ctx->n_threads, seconds, gib);
  fflush(stdout);
  free(x);
  free(g);
  free(enc);
  return DPO_OK;
}

int bench_unet(int argc, char **argv) {
  int json = 0, quick = 0, forward_only = 0;
  uint64_t threads = 0, repeat = 1, size = 64, batches[2] = {1, 2};
  int n_batches = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--quick")) {
      quick = 1;
    } else if (!strcmp(argv[i], "--forward-only")) {
      forward_only = 1;
    } else if (!strcmp(argv[i], "--threads") || !strcmp(argv[i], "--repeat") || !strcmp(argv[i], "--size") ||
               !strcmp(argv[i], "--batch")) {
      if (i + 1 >= argc) return cli_usage_error("bench", "%s needs a value", argv[i]);
      uint64_t *dst = !strcmp(argv[i], "--threads") ? &threads
                      : !strcmp(argv[i], "--repeat") ? &repeat
                      : !strcmp(argv[i], "--size")   ? &size
                                                      : &batches[0];
      int rc = cli_parse_u64("bench", argv[i], argv[i + 1], dst);
      if (rc != EXIT_OK) return rc;
      if (dst == &batches[0]) n_batches = 1;
      i++;
    } else {
      return cli_usage_error("bench", "unknown option \"%s\" for unet", argv[i]);
    }
  }
  if (threads > 1024) return cli_usage_error("bench", "--threads must be at most 1024");
  if (repeat < 1 || repeat > 64) return cli_usage_error("bench", "--repeat must be in 1..64");
  if (batches[0] < 1 || batches[0] > 64) return cli_usage_error("bench", "--batch must be in 1..64");
  if (size < 8 || size > 256 || size % 8 != 0)
    return cli_usage_error("bench", "--size must be a multiple of 8 in 8..256");
  if (quick) size = 8;

  dpo_error err = {0};
  json_t *cfg = json_loads(quick ? quick_config : sd15_config, 0, NULL);
  dpo_unet *u = NULL;
  kn_ctx ctx;
  if (!cfg || dpo_unet_create(cfg, &u, &err) != DPO_OK) {
    json_decref(cfg);
    if (!err.msg[0]) dpo_fail(&err, DPO_ERR_DATA, "bench unet: bad built-in config");
    return cli_report_error(&err);
  }
  json_decref(cfg);
  if (kn_ctx_init(&ctx, (int)threads, &err) != DPO_OK) {
    dpo_unet_free(u);
    return cli_report_error(&err);
  }
  dpo_unet_init_random(u, 42);
  int T = quick ? 4 : 77;
  if (!json) printf("%-18s %6s %11s %8s %10s %9s\n", "pass", "batch", "latent", "threads", "seconds", "plan GiB");
  int rc = DPO_OK;
  for (int bi = 0; bi < n_batches && rc == DPO_OK; bi++)
    for (int backward = 0; backward <= (forward_only ? 0 : 1) && rc == DPO_OK; backward++)
      rc = run_case(u, &ctx, (int)batches[bi], (int)size, T, backward, (int)repeat, json, &err);
  kn_ctx_free(&ctx);
  dpo_unet_free(u);
  return rc == DPO_OK ? EXIT_OK : cli_report_error(&err);
}

void bench_unet_help(FILE *out) {
  fprintf(out,
          "\nusage: dpo bench unet [--json] [--threads N] [--repeat R] [--size S] [--batch B]\n"
          "                      [--forward-only] [--quick]\n\n"
          "Times the Stable Diffusion 1.5 UNet (its diffusers config, random weights) forward\n"
          "and forward+backward on the CPU at an SxS latent (default 64) with 77 text tokens,\n"
          "batch 1 and 2 (or B). Each time is the median of R runs (default 1) after a warm-up.\n"
          "bench/bench_unet.py runs diffusers beside it at the same thread count.\n\n"
          "  --json          one JSON object per line instead of a table\n"
          "  --threads N     threads for OpenMP and OpenBLAS (default: all cores)\n"
          "  --forward-only  skip forward+backward\n"
          "  --quick         a tiny UNet at 8x8 (for tests)\n");
}
