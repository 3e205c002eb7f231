/* Diffusers pipeline folders: model_index.json plus one folder a component. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trainer/trainer.h"

#define MODEL_INDEX_MAX_BYTES (1u << 20)
/* Tokenizer and scheduler files copied on save (those that exist). */
static const char *const tokenizer_files[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                              "special_tokens_map.json", "added_tokens.json"};
static const char *const scheduler_files[] = {"scheduler_config.json"};

static int path_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* A component entry is ["library", "ClassName"]; [null, null] or absent means
 * the pipeline has none. Returns 1 when present. */
static int component_present(const json_t *index, const char *name) {
  const json_t *entry = json_object_get(index, name);
  if (!json_is_array(entry) || json_array_size(entry) != 2) return 0;
  return json_is_string(json_array_get(entry, 1));
}

static int require_component(const json_t *index, const char *dir, const char *name, dpo_error *err) {
  if (component_present(index, name)) return DPO_OK;
  return dpo_fail(err, DPO_ERR_DATA,
                  "%s/model_index.json: missing component \"%s\" (expected [\"library\", \"ClassName\"])", dir,
                  name);
}

static int component_dir(const char *dir, const char *name, char *out, size_t n, dpo_error *err) {
  snprintf(out, n, "%s/%s", dir, name);
  if (!path_exists(out))
    return dpo_fail(err, DPO_ERR_DATA, "%s: component folder \"%s\" named in model_index.json is missing", dir,
                    name);
  return DPO_OK;
}

int dpo_pipeline_load(const char *dir, dpo_pipeline *p, dpo_error *err) {
  memset(p, 0, sizeof *p);
  snprintf(p->dir, sizeof p->dir, "%s", dir);
  char path[4200];
  snprintf(path, sizeof path, "%s/model_index.json", dir);
  p->model_index = dpo_json_load_file(path, MODEL_INDEX_MAX_BYTES, err);
  if (!p->model_index) return DPO_ERR_DATA;
  if (!json_is_object(p->model_index)) {
    dpo_pipeline_free(p);
    return dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object", path);
  }
  static const char *const required[] = {"unet", "text_encoder", "tokenizer", "scheduler"};
  for (int i = 0; i < 4; i++) {
    if (require_component(p->model_index, dir, required[i], err) ||
        component_dir(dir, required[i], path, sizeof path, err)) {
      dpo_pipeline_free(p);
      return DPO_ERR_DATA;
    }
  }
  int rc;
  snprintf(path, sizeof path, "%s/unet", dir);
  if ((rc = dpo_unet_load(path, &p->unet, err))) goto fail;
  snprintf(path, sizeof path, "%s/text_encoder", dir);
  if ((rc = dpo_clip_load(path, &p->text_encoder, err))) goto fail;
  snprintf(path, sizeof path, "%s/tokenizer", dir);
  if ((rc = dpo_tokenizer_load(path, &p->tokenizer, err))) goto fail;
  snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
  if ((rc = dpo_scheduler_config_load(path, &p->scheduler, err))) goto fail;
  if (component_present(p->model_index, "vae")) {
    if ((rc = component_dir(dir, "vae", path, sizeof path, err))) goto fail;
    if ((rc = dpo_vae_load(path, &p->vae, err))) goto fail;
  }
  return DPO_OK;
fail:
  dpo_pipeline_free(p);
  return rc;
}

static int copy_file(const char *from, const char *to, dpo_error *err) {
  char *data;
  size_t len;
  int rc = dpo_read_file(from, 256u << 20, &data, &len, err);
  if (rc) return rc;
  rc = dpo_atomic_write(to, data, len, err);
  free(data);
  return rc;
}

/* Copies the named files of one component folder that exist in the source. */
static int copy_component(const char *src_dir, const char *dst_dir, const char *name, const char *const *files,
                          int n_files, dpo_error *err) {
  char src[4200], dst[4200];
  snprintf(dst, sizeof dst, "%s/%s", dst_dir, name);
  int rc = dpo_mkdir_p(dst, err);
  for (int i = 0; rc == DPO_OK && i < n_files; i++) {
    snprintf(src, sizeof src, "%s/%s/%s", src_dir, name, files[i]);
    if (!path_exists(src)) continue;
    snprintf(dst, sizeof dst, "%s/%s/%s", dst_dir, name, files[i]);
    rc = copy_file(src, dst, err);
  }
  return rc;
}

int dpo_pipeline_save(const dpo_pipeline *p, const char *dir, dpo_error *err) {
  char path[4200];
  int rc = dpo_mkdir_p(dir, err);
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/unet", dir);
  if ((rc = dpo_unet_save(p->unet, path, err))) return rc;
  snprintf(path, sizeof path, "%s/text_encoder", dir);
  if ((rc = dpo_clip_save(p->text_encoder, path, err))) return rc;
  if (p->vae) {
    snprintf(path, sizeof path, "%s/vae", dir);
    if ((rc = dpo_vae_save(p->vae, path, err))) return rc;
  }
  if ((rc = copy_component(p->dir, dir, "tokenizer", tokenizer_files, 5, err))) return rc;
  if ((rc = copy_component(p->dir, dir, "scheduler", scheduler_files, 1, err))) return rc;
  /* model_index.json last: a folder is a pipeline only once it is there. */
  snprintf(path, sizeof path, "%s/model_index.json", dir);
  return dpo_json_write_file(path, p->model_index, err);
}

void dpo_pipeline_free(dpo_pipeline *p) {
  if (p->unet) dpo_unet_free(p->unet);
  if (p->text_encoder) dpo_clip_free(p->text_encoder);
  if (p->tokenizer) dpo_tokenizer_free(p->tokenizer);
  if (p->vae) dpo_vae_free(p->vae);
  if (p->model_index) json_decref(p->model_index);
  memset(p, 0, sizeof *p);
}
