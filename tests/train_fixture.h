/* Tiny pipelines and pairs sets for the training tests, built in the test's
 * temp dir: a UNet made with dpo_unet_create from tests/fixtures/models/
 * unet_sd15's config (edited: pixel space takes 3 channels; cross-attention
 * width 32 to match clip_quick) and randomly initialised, clip_quick as the
 * text encoder, a four-token tokenizer, a DDIM scheduler config, and for
 * latent pipelines tests/fixtures/models/vae. Pairs: small PNGs whose
 * winners are brighter than their losers. */
#ifndef DPO_TESTS_TRAIN_FIXTURE_H
#define DPO_TESTS_TRAIN_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static inline int tf_copy(const char *src_rel, const char *dst) {
  char *data;
  size_t n;
  dpo_error err;
  if (dpo_read_file(test_source_path(src_rel), 64u << 20, &data, &n, &err)) return -1;
  int rc = test_write_file(dst, data, n);
  free(data);
  return rc;
}

static inline int tf_write_text(const char *path, const char *text) { return test_write_file(path, text, strlen(text)); }

/* Makes a pipeline folder at dir; pixel space when with_vae is 0. */
static inline int tf_make_pipeline(const char *dir, int with_vae, uint64_t seed) {
  char p[4096], q[4096];
  dpo_error err;
  const char *parts[] = {"unet", "text_encoder", "tokenizer", "scheduler", "vae"};
  for (int i = 0; i < 4 + with_vae; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, parts[i]);
    if (dpo_mkdir_p(p, &err)) return -1;
  }
  char *text;
  size_t len;
  if (dpo_read_file(test_source_path("tests/fixtures/models/unet_sd15/config.json"), 1 << 20, &text, &len, &err))
    return -1;
  json_error_t jerr;
  json_t *cfg = json_loadb(text, len, 0, &jerr);
  free(text);
  if (!cfg) return -1;
  json_object_set_new(cfg, "in_channels", json_integer(with_vae ? 4 : 3));
  json_object_set_new(cfg, "out_channels", json_integer(with_vae ? 4 : 3));
  json_object_set_new(cfg, "cross_attention_dim", json_integer(32));
  json_object_set_new(cfg, "sample_size", json_integer(8));
  dpo_unet *u = NULL;
  int rc = dpo_unet_create(cfg, &u, &err);
  json_decref(cfg);
  if (rc) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  dpo_unet_init_random(u, seed);
  snprintf(p, sizeof p, "%s/unet", dir);
  rc = dpo_unet_save(u, p, &err);
  dpo_unet_free(u);
  if (rc) return -1;
  const char *clip_files[] = {"config.json", "model.safetensors"};
  for (int i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "tests/fixtures/models/clip_quick/%s", clip_files[i]);
    snprintf(q, sizeof q, "%s/text_encoder/%s", dir, clip_files[i]);
    if (tf_copy(p, q)) return -1;
  }
  if (with_vae) {
    const char *vae_files[] = {"config.json", "diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 2; i++) {
      snprintf(p, sizeof p, "tests/fixtures/models/vae/%s", vae_files[i]);
      snprintf(q, sizeof q, "%s/vae/%s", dir, vae_files[i]);
      if (tf_copy(p, q)) return -1;
    }
  }
  snprintf(p, sizeof p, "%s/tokenizer/vocab.json", dir);
  if (tf_write_text(p, "{\"!\": 0, \"a</w>\": 1, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}")) return -1;
  snprintf(p, sizeof p, "%s/tokenizer/merges.txt", dir);
  if (tf_write_text(p, "#version: 0.2\na </w>\n")) return -1;
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
  if (tf_write_text(p, "{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"scaled_linear\", "
                       "\"beta_start\": 0.00085, \"beta_end\": 0.012, \"num_train_timesteps\": 1000}"))
    return -1;
  snprintf(p, sizeof p, "%s/model_index.json", dir);
  return tf_write_text(p, with_vae ? "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], "
                                     "\"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], "
                                     "\"scheduler\": [\"diffusers\", \"DDIMScheduler\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}"
                                   : "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], "
                                     "\"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], "
                                     "\"scheduler\": [\"diffusers\", \"DDIMScheduler\"], \"vae\": [null, null]}");
}

/* A w x h PNG: a seeded colour pattern shifted by `shift` in brightness. */
static inline int tf_write_image(const char *path, int w, int h, uint64_t seed, uint64_t id, int shift) {
  dpo_image img;
  dpo_error err;
  if (dpo_image_alloc(&img, w, h, 3, &err)) return -1;
  float base[3];
  for (int c = 0; c < 3; c++) base[c] = 60 + 120 * dpo_rng_uniform(seed, id, (uint64_t)c);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        float v = base[c] + 40 * (dpo_rng_uniform(seed, id, 3 + (uint64_t)((y * w + x) * 3 + c)) - 0.5f) + shift;
        img.pixels[(y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
  int rc = dpo_png_write(path, &img, NULL, 0, &err);
  dpo_image_free(&img);
  return rc;
}

/* dir/pairs.jsonl with n pairs; winners are `shift` brighter, and image_0 is
 * the winner for even pairs (label_0 1) and the loser for odd (label_0 0). */
static inline int tf_make_pairs(const char *dir, int n, uint64_t seed, int shift, int size) {
  char p[4096];
  dpo_error err;
  if (dpo_mkdir_p(dir, &err)) return -1;
  snprintf(p, sizeof p, "%s/pairs.jsonl", dir);
  FILE *f = fopen(p, "w");
  if (!f) return -1;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    int winner_first = i % 2 == 0;
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%d_0.png", dir, i);
    snprintf(b, sizeof b, "%s/%d_1.png", dir, i);
    rc |= tf_write_image(a, size + 4, size, seed, (uint64_t)i, winner_first ? shift / 2 : -shift / 2);
    rc |= tf_write_image(b, size + 4, size, seed, (uint64_t)i, winner_first ? -shift / 2 : shift / 2);
    fprintf(f, "{\"caption\": \"a a\", \"image_0\": \"%d_0.png\", \"image_1\": \"%d_1.png\", \"label_0\": %d, \"source\": \"synthetic\"}\n",
            i, i, winner_first ? 1 : 0);
  }
  fclose(f);
  return rc;
}

#endif
