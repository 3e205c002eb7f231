/* The training loop's data side (trainer/latent_cache.c), shared with
 * trainer/train_loop.c; not a public API. */
#ifndef DPO_TRAIN_INTERNAL_H
#define DPO_TRAIN_INTERNAL_H

#include "trainer/trainer.h"

/* Produces the model inputs of pairs: x0 (latents or pixels) of an image
 * with a crop and flip, and the text states of a caption, from the cache
 * when it holds them, else computed. */
typedef struct {
  const dpo_pairs *pairs;
  dpo_pipeline *pipe;
  kn_ctx *ctx;
  int resolution;
  int x0_hw;                 /* side of x0: resolution / VAE factor, or resolution */
  int C;                     /* channels of x0 */
  int T, D;                  /* text states */
  int hflip;
  int cache_images;          /* centre crop: x0 of every image variant cached */
  int cache_text;            /* no --train-text-encoder: text states cached */
  uint64_t seed;
  const char *key_dir;       /* pipeline whose VAE / text files key the cache (the base, also on resume) */
  char dir[4200];            /* the cache folder of this key ("" without a cache) */
  dpo_safetensors *shards;
  int n_shards;
  int vae_planned;
  int clip_planned_B;        /* batch the text encoder is planned for (0: none) */
  float *pixels;             /* [3, res, res] */
} train_data;

/* Plans nothing yet; checks the pipeline against the resolution. */
int train_data_init(train_data *d, const dpo_pairs *pairs, dpo_pipeline *pipe, kn_ctx *ctx, int resolution,
                    int hflip, int random_crop, int train_text_encoder, uint64_t seed, dpo_error *err);
/* Opens the cache under root (building it when absent); *hit says it existed. */
int train_data_open_cache(train_data *d, const char *root, int *hit, dpo_error *err);
void train_data_free(train_data *d);

/* The VAE sample noise stream of a cached (centre-crop) image variant. */
uint64_t train_data_cache_stream(int pair, int side, int flip);

/* x0 of one side (0 winner, 1 loser) of a pair into out[C, x0_hw, x0_hw].
 * Cached when the cache holds images (crop ignored); else the image is read,
 * resized, cropped (crop_u, crop_v in [0, 1) pick the top and left offsets
 * of a random crop, the same fractions for winner and loser; crop_u < 0:
 * centre crop), flipped and encoded with VAE noise stream vae_stream. */
int train_data_x0(train_data *d, int pair, int side, int flip, double crop_u, double crop_v, uint64_t vae_stream,
                  float *out, dpo_error *err);
/* Text states [T, D] of a pair's caption (empty: the empty prompt) from the cache. */
int train_data_text_cached(train_data *d, int pair, int empty, float *out, dpo_error *err);
/* Text states [B, T, D] of B captions through the text encoder (planned for
 * B, with train). */
int train_data_encode_text(train_data *d, const char *const *captions, int B, int train, const float **hidden,
                           int32_t *ids_out, dpo_error *err);

#endif
