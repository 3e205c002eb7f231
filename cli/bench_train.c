/* dpo bench train: pairs/s of one Diffusion-DPO step on the CPU (reference
 * forward on winner and loser, policy forward + backward on both, the loss
 * and its gradient) for a tiny UNet and for the SD1.5 UNet at 64x64
 * latents, random weights. bench/bench_train.py runs the official step in
 * PyTorch beside it and writes bench/RESULTS.md. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trainer/trainer.h"

/* runwayml/stable-diffusion-v1-5 unet/config.json, less bookkeeping. */
static const char *const sd15_config =
    "{\"act_fn\": \"silu\", \"attention_head_dim\": 8, \"block_out_channels\": [320, 640, 1280, 1280],"
    " \"center_input_sample\": false, \"cross_attention_dim\": 768,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
    " \"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4,"
    " \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, \"norm_num_groups\": 32,"
    " \"out_channels\": 4, \"sample_size\": 64,"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";

/* Tiny: the same block structure, 32x32 latents, 8 tokens of width 32. */
static const char *const tiny_config =
    "{\"attention_head_dim\": 2, \"block_out_channels\": [32, 64], \"cross_attention_dim\": 32,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"layers_per_block\": 1,"
    " \"norm_num_groups\": 8, \"sample_size\": 32, \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}";

void bench_train_help(FILE *out) {
  fprintf(out,
          "\nusage: dpo bench train [--config tiny|sd15|both] [--batch N] [--threads N] [--repeat R]\n"
          "                       [--backend cpu|cuda|auto] [--precision float32|bf16]\n"
          "                       [--checkpointing] [--tf32] [--json]\n\n"
          "Pairs/s of one Diffusion-DPO step (on --backend: auto is cuda when this build has\n"
          "it and a device is visible, else cpu): the frozen reference UNet forward on\n"
          "winner and loser, the policy forward + backward on both, loss and gradient,\n"
          "and an AdamW update of the policy (its moments included in the memory)\n"
          "(random weights, one shared timestep and noise per pair). tiny: 32x32 latents,\n"
          "8 tokens; sd15: the SD1.5 UNet at 64x64 latents, 77 tokens. Median of R steps\n"
          "(default 1) after a warm-up step. bench/bench_train.py runs PyTorch beside it\n"
          "(CPU); tests/device/run.sh runs bench/torch_cuda_baseline.py beside --backend cuda.\n"
          "--precision bf16: the policy in bf16 mixed precision and the reference held\n"
          "frozen in bf16 (dpo train --precision; on the CPU an emulation). --json adds\n"
          "device_memory_gib on CUDA (device memory in use after the last step).\n"
          "--checkpointing: the policy's activation\n"
          "checkpointing (dpo train --gradient-checkpointing). --tf32: on CUDA, TF32\n"
          "tensor-core GEMMs and convolutions (no effect on the CPU).\n");
}

int bench_train(int argc, char **argv) {
  int json = 0, do_tiny = 1, do_sd15 = 1, checkpointing = 0, tf32 = 0;
  uint64_t threads = 0, repeat = 1, batch = 1;
  const char *backend_name = NULL, *precision_name = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--checkpointing")) {
      checkpointing = 1;
    } else if (!strcmp(argv[i], "--tf32")) {
      tf32 = 1;
    } else if (!strcmp(argv[i], "--backend")) {
      if (i + 1 >= argc) return cli_usage_error("bench", "--backend needs a value");
      backend_name = argv[++i];
    } else if (!strcmp(argv[i], "--precision")) {
      if (i + 1 >= argc) return cli_usage_error("bench", "--precision needs a value");
      precision_name = argv[++i];
    } else if (!strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) return cli_usage_error("bench", "--config needs a value");
      const char *v = argv[++i];
      do_tiny = !strcmp(v, "tiny") || !strcmp(v, "both");
      do_sd15 = !strcmp(v, "sd15") || !strcmp(v, "both");
      if (!do_tiny && !do_sd15) return cli_usage_error("bench", "--config: expected tiny, sd15 or both");
    } else if (!strcmp(argv[i], "--threads") || !strcmp(argv[i], "--repeat") || !strcmp(argv[i], "--batch")) {
      if (i + 1 >= argc) return cli_usage_error("bench", "%s needs a value", argv[i]);
      uint64_t *dst = !strcmp(argv[i], "--threads") ? &threads : !strcmp(argv[i], "--repeat") ? &repeat : &batch;
      int rc = cli_parse_u64("bench", argv[i], argv[i + 1], dst);
      if (rc != EXIT_OK) return rc;
      i++;
    } else {
      return cli_usage_error("bench", "unknown option \"%s\" for train", argv[i]);
    }
  }
  if (threads > 1024) return cli_usage_error("bench", "--threads must be at most 1024");
  if (repeat < 1 || repeat > 100) return cli_usage_error("bench", "--repeat must be in 1..100");
  if (batch < 1 || batch > 64) return cli_usage_error("bench", "--batch must be in 1..64");
  int backend, brc = cli_backend("bench train", backend_name, &backend);
  if (brc != EXIT_OK) return brc;
  int precision, prc = cli_precision("bench train", precision_name, &precision);
  if (prc != EXIT_OK) return prc;
  if (!json)
    printf("%-6s %6s %8s %7s %8s %10s %8s  %s\n", "config", "pairs", "latent", "tokens", "threads", "step s",
           "pairs/s", "backend");
  for (int c = 0; c < 2; c++) {
    if ((c == 0 && !do_tiny) || (c == 1 && !do_sd15)) continue;
    const char *name = c == 0 ? "tiny" : "sd15";
    int hw = c == 0 ? 32 : 64, T = c == 0 ? 8 : 77;
    json_t *cfg = json_loads(c == 0 ? tiny_config : sd15_config, 0, NULL);
    dpo_error err = {0};
    dpo_bench_train_options o = {(int)batch, hw, T, (int)threads, (kn_backend)backend, checkpointing, tf32,
                                 (int)repeat, (kn_dtype)precision};
    dpo_bench_train_result r;
    int rc = cfg ? dpo_bench_train_step(cfg, &o, &r, &err) : dpo_fail(&err, DPO_ERR_DATA, "bench train: bad built-in config");
    json_decref(cfg);
    if (rc != DPO_OK) return cli_report_error(&err);
    if (json)
      printf("{\"bench\": \"train\", \"config\": \"%s\", \"pairs\": %d, \"latent\": %d, \"tokens\": %d, "
             "\"threads\": %d, \"step_seconds\": %.6g, \"pairs_per_s\": %.6g, \"repeat\": %d, "
             "\"backend\": \"%s\", \"precision\": \"%s\", \"checkpointing\": %s, \"tf32\": %s, "
             "\"device_memory_gib\": %.3f}\n",
             name, (int)batch, hw, T, (int)threads, r.step_s, r.pairs_per_s, (int)repeat,
             kn_backend_name((kn_backend)backend), kn_dtype_name((kn_dtype)precision), checkpointing ? "true" : "false", tf32 ? "true" : "false",
             (double)r.device_bytes / (1024.0 * 1024.0 * 1024.0));
    else
      printf("%-6s %6d %5dx%-3d %7d %8d %10.3f %8.3f  %s %s\n", name, (int)batch, hw, hw, T, (int)threads,
             r.step_s, r.pairs_per_s, kn_backend_name((kn_backend)backend), kn_dtype_name((kn_dtype)precision));
    fflush(stdout);
  }
  return EXIT_OK;
}
