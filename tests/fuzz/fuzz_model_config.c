/* Fuzzes the model config parsers (UNet, CLIP text encoder, VAE) over a JSON
 * text, and builds the UNet of every small config a parser accepts, so that
 * the shape bookkeeping it vouches for is exercised (skip connections,
 * channel splits, head counts). */
#include <stdlib.h>

#include "models/models.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Only build what stays small: the fuzzer must not spend its time allocating. */
static int small_unet(const dpo_unet_config *c) {
  for (int i = 0; i < c->n_blocks; i++)
    if (c->block_out_channels[i] > 64 || c->layers_per_block[i] > 3 || c->transformer_layers[i] > 2) return 0;
  return c->cross_attention_dim <= 64 && c->in_channels <= 16 && c->out_channels <= 16;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dpo_error err;
  json_t *cfg = dpo_json_parse((const char *)data, size, "fuzz.json", &err);
  if (!cfg) return 0;
  dpo_unet_config unet;
  if (dpo_unet_config_parse(cfg, "fuzz.json", &unet, &err) == DPO_OK && small_unet(&unet)) {
    dpo_unet *u = NULL;
    if (dpo_unet_create(cfg, &u, &err) == DPO_OK && dpo_unet_n_params(u) <= 0) abort();
    dpo_unet_free(u);
  }
  dpo_clip_config clip;
  dpo_clip_config_parse(cfg, "fuzz.json", &clip, &err);
  dpo_vae_config vae;
  dpo_vae_config_parse(cfg, "fuzz.json", &vae, &err);
  json_decref(cfg);
  return 0;
}
