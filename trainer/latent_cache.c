/* The data side of training: image preprocessing (Resize, crop, flip,
 * normalise, as the official torchvision transforms), VAE encoding, text
 * encoding, and the latent / text-embedding cache that computes them once
 * per dataset and resolution instead of every step (the reference code
 * re-encodes every step).
 *
 * Cache layout: ROOT/<key>/shard-NNNNN.safetensors, DPO_CACHE_PAIRS_PER_SHARD
 * pairs each, tensors "x0.<pair>.<w|l>[.flip]" [C, h, w] and "text.<pair>"
 * [T, D], "text.empty" in shard 0; then ROOT/<key>/index.json (the marker,
 * written last and atomically, with the key's description). <key> is a
 * SHA-256 over everything the stored values depend on: the pairs file's
 * bytes, the ties mode and filter (they decide pair indices), the
 * resolution, hflip, the seed of the VAE noise, the VAE's and the text
 * encoder's weights and configs, and the tokenizer files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trainer/train_internal.h"

/* ------------------------------------------------------- preprocessing */

void dpo_image_resized_size(int width, int height, int resolution, int *out_w, int *out_h) {
  /* torchvision Resize(int): shorter side to size, longer int(size * long / short). */
  if (width <= height) {
    *out_w = resolution;
    *out_h = (int)((int64_t)resolution * height / width);
  } else {
    *out_h = resolution;
    *out_w = (int)((int64_t)resolution * width / height);
  }
}

/* Python's round() of d / 2 (halves to even), as CenterCrop. */
static int centre_offset(int d) {
  int q = d / 2;
  if (d % 2 == 0) return q;
  return (q % 2 == 0) ? q : q + 1;
}

void dpo_image_crop_origin(int width, int height, int resolution, double u, double v, int *top, int *left) {
  int dh = height - resolution, dw = width - resolution;
  if (u < 0) {
    *top = centre_offset(dh);
    *left = centre_offset(dw);
    return;
  }
  *top = (int)floor(u * (dh + 1));
  *left = (int)floor(v * (dw + 1));
  if (*top > dh) *top = dh;
  if (*left > dw) *left = dw;
}

/* Antialiased linear resampling weights (PIL's bilinear filter): output i
 * takes inputs around (i + 0.5) * scale with a triangle of half-width
 * max(scale, 1). */
typedef struct {
  int *first, *count;
  float *w;
  int max_taps;
} resample_plan;

static int resample_plan_make(resample_plan *p, int in, int out) {
  double scale = (double)in / out, support = scale > 1 ? scale : 1.0;
  p->max_taps = (int)ceil(support) * 2 + 1;
  p->first = malloc(sizeof(int) * (size_t)out);
  p->count = malloc(sizeof(int) * (size_t)out);
  p->w = malloc(sizeof(float) * (size_t)out * (size_t)p->max_taps);
  if (!p->first || !p->count || !p->w) return -1;
  for (int i = 0; i < out; i++) {
    double centre = (i + 0.5) * scale;
    int lo = (int)floor(centre - support), hi = (int)ceil(centre + support);
    if (lo < 0) lo = 0;
    if (hi > in) hi = in;
    double total = 0;
    int n = 0;
    float *w = p->w + (size_t)i * p->max_taps;
    for (int j = lo; j < hi && n < p->max_taps; j++, n++) {
      double x = fabs((j + 0.5 - centre) / support);
      double k = x < 1 ? 1 - x : 0;
      w[n] = (float)k;
      total += k;
    }
    for (int j = 0; j < n; j++) w[j] = total > 0 ? (float)(w[j] / total) : 0;
    p->first[i] = lo;
    p->count[i] = n;
  }
  return 0;
}

static void resample_plan_free(resample_plan *p) {
  free(p->first);
  free(p->count);
  free(p->w);
}

int dpo_image_to_model_input(const dpo_image *img, int resolution, double crop_u, double crop_v, int flip,
                             float *out, dpo_error *err) {
  if (img->channels != 3) return dpo_fail(err, DPO_ERR_USAGE, "image: expected RGB, got %d channels", img->channels);
  int rw, rh, top, left;
  dpo_image_resized_size(img->width, img->height, resolution, &rw, &rh);
  dpo_image_crop_origin(rw, rh, resolution, crop_u, crop_v, &top, &left);
  resample_plan px = {0}, py = {0};
  /* Only the rows and columns of the crop are computed. */
  float *rows = malloc(sizeof(float) * (size_t)resolution * (size_t)img->width * 3);
  if (!rows || resample_plan_make(&px, img->width, rw) || resample_plan_make(&py, img->height, rh)) {
    free(rows);
    resample_plan_free(&px);
    resample_plan_free(&py);
    return dpo_fail(err, DPO_ERR_DATA, "image: out of memory resizing %dx%d", img->width, img->height);
  }
  for (int y = 0; y < resolution; y++) {   /* vertical pass over the crop's rows */
    int oy = top + y;
    const float *w = py.w + (size_t)oy * py.max_taps;
    float *row = rows + (size_t)y * img->width * 3;
    for (int x = 0; x < img->width * 3; x++) {
      float acc = 0;
      for (int k = 0; k < py.count[oy]; k++)
        acc += w[k] * img->pixels[((size_t)(py.first[oy] + k) * img->width) * 3 + (size_t)x];
      row[x] = acc;
    }
  }
  size_t plane = (size_t)resolution * resolution;
  for (int y = 0; y < resolution; y++) {   /* horizontal pass, crop, flip, normalise */
    const float *row = rows + (size_t)y * img->width * 3;
    for (int x = 0; x < resolution; x++) {
      int ox = left + x;
      const float *w = px.w + (size_t)ox * px.max_taps;
      float acc[3] = {0, 0, 0};
      for (int k = 0; k < px.count[ox]; k++)
        for (int c = 0; c < 3; c++) acc[c] += w[k] * row[(size_t)(px.first[ox] + k) * 3 + c];
      int dx = flip ? resolution - 1 - x : x;
      for (int c = 0; c < 3; c++) {
        /* PIL rounds the resized pixel to 8 bits before ToTensor. */
        float v = floorf(acc[c] + 0.5f);
        if (v < 0) v = 0;
        if (v > 255) v = 255;
        out[c * plane + (size_t)y * resolution + dx] = v / 255.0f * 2.0f - 1.0f;
      }
    }
  }
  free(rows);
  resample_plan_free(&px);
  resample_plan_free(&py);
  return DPO_OK;
}

/* ------------------------------------------------------------- data side */

uint64_t train_data_cache_stream(int pair, int side, int flip) {
  return dpo_rng_stream_id("cache-vae", (uint64_t)pair, (uint64_t)(side * 2 + flip));
}

int train_data_init(train_data *d, const dpo_pairs *pairs, dpo_pipeline *pipe, kn_ctx *ctx, int resolution,
                    int hflip, int random_crop, int train_text_encoder, uint64_t seed, dpo_error *err) {
  memset(d, 0, sizeof *d);
  d->pairs = pairs;
  d->pipe = pipe;
  d->ctx = ctx;
  d->resolution = resolution;
  d->hflip = hflip;
  d->seed = seed;
  d->cache_images = !random_crop;
  d->cache_text = !train_text_encoder;
  const dpo_unet_config *uc = dpo_unet_get_config(pipe->unet);
  const dpo_clip_config *cc = dpo_clip_get_config(pipe->text_encoder);
  int factor = 1;
  if (pipe->vae) {
    const dpo_vae_config *vc = dpo_vae_get_config(pipe->vae);
    factor = 1 << (vc->n_blocks - 1);
    d->C = vc->latent_channels;
  } else {
    d->C = 3;
  }
  if (uc->in_channels != d->C)
    return dpo_fail(err, DPO_ERR_DATA, "%s/unet: in_channels %d, but the %s gives %d channels", pipe->dir,
                    uc->in_channels, pipe->vae ? "VAE" : "pixel-space pipeline (no vae)", d->C);
  if (uc->cross_attention_dim != cc->hidden_size)
    return dpo_fail(err, DPO_ERR_DATA, "%s: unet cross_attention_dim %d differs from text_encoder hidden_size %d",
                    pipe->dir, uc->cross_attention_dim, cc->hidden_size);
  int unet_factor = 1 << (uc->n_blocks - 1);
  if (resolution % factor || (resolution / factor) % unet_factor)
    return dpo_fail(err, DPO_ERR_USAGE, "--resolution %d: must be a multiple of %d for this pipeline", resolution,
                    factor * unet_factor);
  d->x0_hw = resolution / factor;
  d->D = cc->hidden_size;
  d->T = dpo_tokenizer_max_length(pipe->tokenizer);
  if (d->T > cc->max_position_embeddings) d->T = cc->max_position_embeddings;
  d->pixels = malloc(sizeof(float) * 3 * (size_t)resolution * resolution);
  if (!d->pixels) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  return DPO_OK;
}

void train_data_free(train_data *d) {
  for (int i = 0; i < d->n_shards; i++) dpo_st_close(&d->shards[i]);
  free(d->shards);
  free(d->pixels);
  memset(d, 0, sizeof *d);
}

static int encode_image(train_data *d, const char *path, int flip, double cu, double cv, uint64_t stream, float *out,
                        dpo_error *err) {
  dpo_image img;
  int rc = dpo_image_read(path, 3, &img, err);
  if (rc != DPO_OK) return rc;
  if (img.width < 1 || img.height < 1) {
    dpo_image_free(&img);
    return dpo_fail(err, DPO_ERR_DATA, "%s: empty image", path);
  }
  rc = dpo_image_to_model_input(&img, d->resolution, cu, cv, flip, d->pixels, err);
  dpo_image_free(&img);
  if (rc != DPO_OK) return rc;
  size_t n = (size_t)3 * d->resolution * d->resolution;
  if (!d->pipe->vae) {
    memcpy(out, d->pixels, n * sizeof(float));
    return DPO_OK;
  }
  if (!d->vae_planned) {
    rc = dpo_vae_plan(d->pipe->vae, d->ctx, 1, d->resolution, d->resolution, err);
    if (rc != DPO_OK) return rc;
    d->vae_planned = 1;
  }
  dpo_vae_encode(d->pipe->vae, d->ctx, d->pixels, d->seed, stream, 1, NULL, out);
  return DPO_OK;
}

int train_data_x0(train_data *d, int pair, int side, int flip, double crop_u, double crop_v, uint64_t vae_stream,
                  float *out, dpo_error *err) {
  if (d->cache_images && d->n_shards > 0) {
    char name[96];
    snprintf(name, sizeof name, "x0.%d.%c%s", pair, side ? 'l' : 'w', flip ? ".flip" : "");
    const dpo_tensor_view *t = dpo_st_find(&d->shards[pair / DPO_CACHE_PAIRS_PER_SHARD], name);
    if (!t || t->numel != (int64_t)d->C * d->x0_hw * d->x0_hw)
      return dpo_fail(err, DPO_ERR_DATA, "%s: cache shard lacks tensor %s (delete the cache folder)", d->dir, name);
    return dpo_st_to_f32(t, out, err);
  }
  const dpo_pair *p = &d->pairs->pairs[pair];
  return encode_image(d, side ? p->image_l : p->image_w, flip, crop_u, crop_v, vae_stream, out, err);
}

int train_data_encode_text(train_data *d, const char *const *captions, int B, int train, const float **hidden,
                           int32_t *ids, dpo_error *err) {
  int rc;
  if (d->clip_planned_B != B * (train ? -1 : 1)) {
    rc = dpo_clip_plan(d->pipe->text_encoder, d->ctx, B, d->T, 0, train, err);
    if (rc != DPO_OK) return rc;
    d->clip_planned_B = B * (train ? -1 : 1);
  }
  for (int b = 0; b < B; b++) {
    rc = dpo_tokenizer_encode(d->pipe->tokenizer, captions[b], ids + (size_t)b * d->T, d->T, NULL, err);
    if (rc != DPO_OK) return rc;
  }
  return dpo_clip_forward(d->pipe->text_encoder, d->ctx, ids, hidden, err);
}

int train_data_text_cached(train_data *d, int pair, int empty, float *out, dpo_error *err) {
  char name[64];
  int shard = empty ? 0 : pair / DPO_CACHE_PAIRS_PER_SHARD;
  if (empty)
    snprintf(name, sizeof name, "text.empty");
  else
    snprintf(name, sizeof name, "text.%d", pair);
  if (d->n_shards == 0) return dpo_fail(err, DPO_ERR_USAGE, "text cache not open");
  const dpo_tensor_view *t = dpo_st_find(&d->shards[shard], name);
  if (!t || t->numel != (int64_t)d->T * d->D)
    return dpo_fail(err, DPO_ERR_DATA, "%s: cache shard lacks tensor %s (delete the cache folder)", d->dir, name);
  return dpo_st_to_f32(t, out, err);
}

/* ---------------------------------------------------------------- the key */

static int hash_file_into(dpo_sha256 *h, const char *label, const char *path, dpo_error *err) {
  char hex[65];
  int rc = dpo_sha256_file(path, hex, err);
  if (rc != DPO_OK) return rc;
  dpo_sha256_update(h, label, strlen(label));
  dpo_sha256_update(h, hex, 64);
  return DPO_OK;
}

static int cache_key(train_data *d, char *description, size_t n, char hex[65], dpo_error *err) {
  dpo_sha256 h;
  dpo_sha256_init(&h);
  char path[4200];
  int rc = hash_file_into(&h, "pairs", d->pairs->path, err);
  const char *pipe_dir = d->key_dir ? d->key_dir : d->pipe->dir;
  if (rc == DPO_OK && d->cache_images && d->pipe->vae) {
    snprintf(path, sizeof path, "%s/vae/config.json", pipe_dir);
    rc = hash_file_into(&h, "vae-config", path, err);
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", pipe_dir);
    if (rc == DPO_OK) rc = hash_file_into(&h, "vae", path, err);
  }
  if (rc == DPO_OK && d->cache_text) {
    static const char *const files[] = {"text_encoder/config.json", "text_encoder/model.safetensors",
                                        "tokenizer/vocab.json", "tokenizer/merges.txt"};
    for (int i = 0; i < 4 && rc == DPO_OK; i++) {
      snprintf(path, sizeof path, "%s/%s", pipe_dir, files[i]);
      rc = hash_file_into(&h, files[i], path, err);
    }
  }
  if (rc != DPO_OK) return rc;
  snprintf(description, n,
           "version=%d pairs=%d images=%d text=%d resolution=%d hflip=%d vae=%s seed=%llu T=%d ties_skipped=%d "
           "filtered=%d",
           DPO_CACHE_VERSION, d->pairs->n, d->cache_images, d->cache_text, d->resolution, d->hflip,
           d->pipe->vae ? "yes" : "pixel", (unsigned long long)(d->pipe->vae ? d->seed : 0), d->T,
           d->pairs->n_ties_skipped, d->pairs->n_filtered);
  dpo_sha256_update(&h, description, strlen(description));
  /* Pair labels decide nothing stored, but ties mode changes which pairs
   * exist: n_ties_skipped covers it; the filter shows in n_filtered. */
  uint8_t digest[32];
  dpo_sha256_final(&h, digest);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return DPO_OK;
}

/* ------------------------------------------------------------ the shards */

static int write_shard(train_data *d, int shard, dpo_error *err) {
  int first = shard * DPO_CACHE_PAIRS_PER_SHARD, last = first + DPO_CACHE_PAIRS_PER_SHARD;
  if (last > d->pairs->n) last = d->pairs->n;
  int n_pairs = last - first, variants = d->hflip ? 2 : 1;
  size_t x0_n = (size_t)d->C * d->x0_hw * d->x0_hw, text_n = (size_t)d->T * d->D;
  size_t n_x0 = d->cache_images ? (size_t)n_pairs * 2 * variants : 0;
  size_t n_text = d->cache_text ? (size_t)n_pairs + (shard == 0) : 0;
  float *buf = malloc(sizeof(float) * (n_x0 * x0_n + n_text * text_n + 1));
  char (*names)[64] = malloc(sizeof *names * (n_x0 + n_text + 1));
  if (!buf || !names) {
    free(buf);
    free(names);
    return dpo_fail(err, DPO_ERR_DATA, "cache: out of memory");
  }
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  int rc = DPO_OK, k = 0;
  float *at = buf;
  int64_t x0_shape[3] = {d->C, d->x0_hw, d->x0_hw}, text_shape[2] = {d->T, d->D};
  for (int p = first; p < last && rc == DPO_OK; p++) {
    for (int side = 0; d->cache_images && side < 2 && rc == DPO_OK; side++) {
      for (int flip = 0; flip < variants && rc == DPO_OK; flip++) {
        const dpo_pair *pr = &d->pairs->pairs[p];
        rc = encode_image(d, side ? pr->image_l : pr->image_w, flip, -1, -1, train_data_cache_stream(p, side, flip),
                          at, err);
        if (rc != DPO_OK) break;
        snprintf(names[k], 64, "x0.%d.%c%s", p, side ? 'l' : 'w', flip ? ".flip" : "");
        rc = dpo_st_writer_add(&w, names[k++], DPO_DTYPE_F32, 3, x0_shape, at, err);
        at += x0_n;
      }
    }
    if (rc == DPO_OK && d->cache_text) {
      const char *caption = d->pairs->pairs[p].caption;
      const float *hidden;
      int32_t ids[1024];
      rc = train_data_encode_text(d, &caption, 1, 0, &hidden, ids, err);
      if (rc == DPO_OK) {
        memcpy(at, hidden, text_n * sizeof(float));
        snprintf(names[k], 64, "text.%d", p);
        rc = dpo_st_writer_add(&w, names[k++], DPO_DTYPE_F32, 2, text_shape, at, err);
        at += text_n;
      }
    }
  }
  if (rc == DPO_OK && d->cache_text && shard == 0) {
    const char *empty = "";
    const float *hidden;
    int32_t ids[1024];
    rc = train_data_encode_text(d, &empty, 1, 0, &hidden, ids, err);
    if (rc == DPO_OK) {
      memcpy(at, hidden, text_n * sizeof(float));
      snprintf(names[k], 64, "text.empty");
      rc = dpo_st_writer_add(&w, names[k++], DPO_DTYPE_F32, 2, text_shape, at, err);
    }
  }
  if (rc == DPO_OK) {
    char path[4400];
    snprintf(path, sizeof path, "%s/shard-%05d.safetensors", d->dir, shard);
    rc = dpo_st_writer_write(&w, path, err);
  }
  dpo_st_writer_free(&w);
  free(buf);
  free(names);
  return rc;
}

int train_data_open_cache(train_data *d, const char *root, int *hit, dpo_error *err) {
  *hit = 0;
  if (!d->cache_images && !d->cache_text) return DPO_OK;
  if (d->T > 1024) return dpo_fail(err, DPO_ERR_DATA, "text length %d too long", d->T);
  char description[512], hex[65], index_path[4400];
  int rc = cache_key(d, description, sizeof description, hex, err);
  if (rc != DPO_OK) return rc;
  snprintf(d->dir, sizeof d->dir, "%s/%.32s", root, hex);
  snprintf(index_path, sizeof index_path, "%s/index.json", d->dir);
  int n_shards = (d->pairs->n + DPO_CACHE_PAIRS_PER_SHARD - 1) / DPO_CACHE_PAIRS_PER_SHARD;
  struct stat st;
  if (stat(index_path, &st) == 0) {
    *hit = 1;
  } else {
    rc = dpo_mkdir_p(d->dir, err);
    for (int s = 0; s < n_shards && rc == DPO_OK; s++) rc = write_shard(d, s, err);
    if (rc != DPO_OK) return rc;
    json_t *index = json_object();
    json_object_set_new(index, "format", json_string("dpo-train-cache"));
    json_object_set_new(index, "key", json_string(hex));
    json_object_set_new(index, "description", json_string(description));
    json_object_set_new(index, "shards", json_integer(n_shards));
    rc = dpo_json_write_file(index_path, index, err);
    json_decref(index);
    if (rc != DPO_OK) return rc;
  }
  d->shards = calloc((size_t)n_shards + 1, sizeof *d->shards);
  if (!d->shards) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int s = 0; s < n_shards; s++) {
    char path[4400];
    snprintf(path, sizeof path, "%s/shard-%05d.safetensors", d->dir, s);
    rc = dpo_st_open(&d->shards[s], path, err);
    if (rc != DPO_OK) return rc;
    d->n_shards = s + 1;
  }
  return DPO_OK;
}
