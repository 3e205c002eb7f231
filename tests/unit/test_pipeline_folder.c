/* Pipeline folders: load a small diffusers-layout folder, save it, load the
 * copy (same weights, tokenizer and scheduler files byte for byte), and the
 * errors for a missing component; a folder without "vae" is pixel-space. */
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static void copy(const char *from, const char *to) {
  char *data;
  size_t len;
  dpo_error err;
  if (dpo_read_file(from, 64u << 20, &data, &len, &err)) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return;
  }
  CHECK_INT(test_write_file(to, data, len), 0);
  free(data);
}

static void write_text(const char *path, const char *text) { CHECK_INT(test_write_file(path, text, strlen(text)), 0); }

static void make_pipeline(const char *dir, int with_vae) {
  char p[1024], q[1024];
  dpo_error err;
  const char *parts[] = {"unet", "text_encoder", "tokenizer", "scheduler", "vae"};
  for (int i = 0; i < 5; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, parts[i]);
    CHECK_INT(dpo_mkdir_p(p, &err), DPO_OK);
  }
  const char *unet_files[] = {"config.json", "diffusion_pytorch_model.safetensors"};
  for (int i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "tests/fixtures/models/unet_sd15/%s", unet_files[i]);
    snprintf(q, sizeof q, "%s/unet/%s", dir, unet_files[i]);
    copy(test_source_path(p), q);
  }
  const char *clip_files[] = {"config.json", "model.safetensors"};
  for (int i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "tests/fixtures/models/clip_quick/%s", clip_files[i]);
    snprintf(q, sizeof q, "%s/text_encoder/%s", dir, clip_files[i]);
    copy(test_source_path(p), q);
  }
  if (with_vae) {
    const char *vae_files[] = {"config.json", "diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 2; i++) {
      snprintf(p, sizeof p, "tests/fixtures/models/vae/%s", vae_files[i]);
      snprintf(q, sizeof q, "%s/vae/%s", dir, vae_files[i]);
      copy(test_source_path(p), q);
    }
  }
  snprintf(p, sizeof p, "%s/tokenizer/vocab.json", dir);
  write_text(p, "{\"!\": 0, \"a</w>\": 1, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}");
  snprintf(p, sizeof p, "%s/tokenizer/merges.txt", dir);
  write_text(p, "#version: 0.2\na </w>\n");
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
  write_text(p, "{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"scaled_linear\", "
                "\"beta_start\": 0.00085, \"beta_end\": 0.012, \"num_train_timesteps\": 1000}");
  snprintf(p, sizeof p, "%s/model_index.json", dir);
  write_text(p, with_vae ? "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], "
                           "\"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], "
                           "\"scheduler\": [\"diffusers\", \"DDIMScheduler\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"], "
                           "\"safety_checker\": [null, null]}"
                         : "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], "
                           "\"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"], "
                           "\"scheduler\": [\"diffusers\", \"DDIMScheduler\"], \"vae\": [null, null]}");
}

static int same_file(const char *a, const char *b) {
  char *x, *y;
  size_t nx, ny;
  dpo_error err;
  if (dpo_read_file(a, 1u << 20, &x, &nx, &err)) return 0;
  if (dpo_read_file(b, 1u << 20, &y, &ny, &err)) { free(x); return 0; }
  int same = nx == ny && memcmp(x, y, nx) == 0;
  free(x);
  free(y);
  return same;
}

int main(void) {
  dpo_error err;
  dpo_pipeline p, q;
  char src[1024], dst[1024], a[1100], b[1100];
  snprintf(src, sizeof src, "%s", test_path("pipe"));
  snprintf(dst, sizeof dst, "%s", test_path("saved"));
  make_pipeline(src, 1);
  CHECK_INT(dpo_pipeline_load(src, &p, &err), DPO_OK);
  if (err.code) fprintf(stderr, "%s\n", err.msg);
  CHECK(p.unet && p.text_encoder && p.tokenizer && p.vae);
  CHECK_INT(p.scheduler.kind, DPO_SCHED_DDIM);
  CHECK_INT(dpo_pipeline_save(&p, dst, &err), DPO_OK);
  CHECK_INT(dpo_pipeline_load(dst, &q, &err), DPO_OK);
  if (p.unet && q.unet) {
    CHECK_INT(dpo_unet_n_params(p.unet), dpo_unet_n_params(q.unet));
    for (int i = 0; i < dpo_unet_n_params(p.unet); i++) {
      dpo_param x, y;
      dpo_unet_param(p.unet, i, &x);
      dpo_unet_param(q.unet, i, &y);
      CHECK_STR(x.name, y.name);
      CHECK(x.numel == y.numel && memcmp(x.data, y.data, x.numel * sizeof(float)) == 0);
    }
  }
  snprintf(a, sizeof a, "%s/tokenizer/vocab.json", src);
  snprintf(b, sizeof b, "%s/tokenizer/vocab.json", dst);
  CHECK(same_file(a, b));
  snprintf(a, sizeof a, "%s/scheduler/scheduler_config.json", src);
  snprintf(b, sizeof b, "%s/scheduler/scheduler_config.json", dst);
  CHECK(same_file(a, b));
  dpo_pipeline_free(&q);
  dpo_pipeline_free(&p);

  /* Pixel space: "vae": [null, null] loads without a VAE. */
  snprintf(src, sizeof src, "%s", test_path("pixel"));
  make_pipeline(src, 0);
  CHECK_INT(dpo_pipeline_load(src, &p, &err), DPO_OK);
  CHECK(p.vae == NULL);
  dpo_pipeline_free(&p);

  /* A component named but missing on disk, and one not named at all. */
  snprintf(a, sizeof a, "%s/text_encoder/model.safetensors", src);
  CHECK_INT(remove(a), 0);
  CHECK_INT(dpo_pipeline_load(src, &p, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "text_encoder");
  snprintf(a, sizeof a, "%s/model_index.json", src);
  write_text(a, "{\"unet\": [\"diffusers\", \"UNet2DConditionModel\"]}");
  CHECK_INT(dpo_pipeline_load(src, &p, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "missing component \"text_encoder\"");
  CHECK_INT(dpo_pipeline_load(test_path("nowhere"), &p, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "model_index.json");
  return test_finish();
}
