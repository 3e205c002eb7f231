/* The built-in sets, where their data lives, and prompt_set_load. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prompts/prompts_internal.h"

static const prompt_builtin builtins[] = {
    {"parti", "PartiPrompts (Yu et al. 2022): prompts in 12 categories and 11 challenge aspects",
     "partiprompts/PartiPrompts.tsv", "prompt", "category", "categories", "Challenge"},
    {"hpsv2", "HPSv2 benchmark (Wu et al. 2023): 800 prompts for each of 4 styles, duplicates kept",
     "hpsv2/hpsv2_benchmark_prompts.json", "prompt", "style", "styles", NULL},
    {"tedbench", "TEd-Bench (Kawar et al. 2023, Imagic): text edits of real images in tedbench/originals",
     "tedbench/input_list.json", "edit", "image", "images", NULL},
};

const prompt_builtin *prompt_builtins(int *n) {
  *n = (int)(sizeof builtins / sizeof builtins[0]);
  return builtins;
}

const prompt_builtin *prompt_builtin_find(const char *name) {
  for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
    if (strcmp(builtins[i].name, name) == 0) return &builtins[i];
  return NULL;
}

static int is_directory(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void prompt_data_dir(char *out, size_t n) {
  const char *env = getenv("DPO_DATA_DIR");
  if (env && *env) {
    snprintf(out, n, "%s", env);
    return;
  }
  /* An installed or copied tree: <prefix>/bin/dpo beside <prefix>/prompts/data,
   * and build/dpo inside the source tree. */
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    exe[len] = '\0';
    char candidate[PATH_MAX + 32];
    snprintf(candidate, sizeof candidate, "%s/../prompts/data", dirname(exe));
    char resolved[PATH_MAX];
    if (is_directory(candidate) && realpath(candidate, resolved)) {
      snprintf(out, n, "%s", resolved);
      return;
    }
  }
  snprintf(out, n, "%s", DPO_SOURCE_DATA_DIR);
}

/* <data dir>/<file>, made absolute when the directory exists, so that paths
 * handed to other tools (TEd-Bench images) do not depend on the cwd. */
static void data_path(const char *relative, char *out, size_t n) {
  char dir[PATH_MAX], resolved[PATH_MAX];
  prompt_data_dir(dir, sizeof dir);
  if (realpath(dir, resolved)) snprintf(out, n, "%s/%s", resolved, relative);
  else snprintf(out, n, "%s/%s", dir, relative);
}

/* ------------------------------------------------------------ Parti */

static int load_parti(const char *path, prompt_set *set, dpo_error *err) {
  char *data;
  size_t len;
  if (dpo_read_file(path, PROMPT_MAX_FILE_BYTES, &data, &len, err)) return DPO_ERR_DATA;
  int rc = prompts_parse_tsv(data, len, path, "parti", 1, set, err);
  free(data);
  return rc;
}

/* ------------------------------------------------------------ HPSv2 */

static int add_json_prompt(prompt_set *set, const json_t *value, const char *where, const char *id,
                           const char *category, prompt *p, dpo_error *err) {
  if (!json_is_string(value)) return dpo_fail(err, DPO_ERR_DATA, "%s: expected a string", where);
  const char *text = json_string_value(value);
  size_t len = json_string_length(value);
  if (prompts_check_text(text, len, where, 0, "prompt", err)) return DPO_ERR_DATA;
  p->id = prompts_strndup(id, strlen(id));
  p->text = prompts_strndup(text, len);
  p->category = prompts_strndup(category, strlen(category));
  return prompts_set_push(set, p, err);
}

/* {"anime": [800 strings], "concept-art": [...], ...}, kept in file order and
 * per-index order with duplicates: image i of a benchmark run is prompt i. */
static int load_hpsv2(const char *path, prompt_set *set, dpo_error *err) {
  json_t *root = dpo_json_load_file(path, PROMPT_MAX_FILE_BYTES, err);
  if (!root) return DPO_ERR_DATA;
  int rc = DPO_OK;
  if (!json_is_object(root))
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object mapping each style to an array of prompts", path);
  const char *style;
  json_t *array;
  json_object_foreach(root, style, array) {
    if (rc != DPO_OK) break;
    if (!json_is_array(array) || strlen(style) == 0 || strlen(style) > 64) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: style \"%.64s\": expected a non-empty style name mapping to an array of prompts",
                    path, style);
      break;
    }
    for (size_t i = 0; rc == DPO_OK && i < json_array_size(array); i++) {
      char where[4200], id[128];
      snprintf(where, sizeof where, "%s: style \"%s\" prompt %zu", path, style, i);
      snprintf(id, sizeof id, "hpsv2:%s:%zu", style, i);
      prompt p = {0};
      rc = add_json_prompt(set, json_array_get(array, i), where, id, style, &p, err);
      if (rc) prompts_free_prompt(&p);
    }
  }
  json_decref(root);
  return rc;
}

/* --------------------------------------------------------- TEd-Bench */

static const char *format_name(dpo_image_format f) {
  return f == DPO_IMAGE_FORMAT_PNG ? "png" : f == DPO_IMAGE_FORMAT_JPEG ? "jpeg" : "unknown";
}

/* The format from the first bytes of the file, never from its name. */
static int detect_image_file(const char *path, const char *where, dpo_image_format *format, dpo_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return dpo_fail(err, DPO_ERR_DATA, "%s: image %s: cannot open: %s", where, path, strerror(errno));
  uint8_t head[16];
  size_t got = fread(head, 1, sizeof head, f);
  fclose(f);
  *format = dpo_image_detect(head, got);
  return DPO_OK;
}

static int tedbench_entry(prompt_set *set, const json_t *entry, const char *path, const char *originals, size_t i,
                          dpo_error *err) {
  char where[4200];
  snprintf(where, sizeof where, "%s: entry %zu", path, i);
  const char *image_name, *text;
  if (dpo_json_get_string(entry, "img_name", &image_name, where, err)) return DPO_ERR_DATA;
  if (dpo_json_get_string(entry, "target_text", &text, where, err)) return DPO_ERR_DATA;
  size_t text_len = json_string_length(json_object_get(entry, "target_text"));
  if (prompts_check_text(text, text_len, where, 0, "target_text", err)) return DPO_ERR_DATA;
  /* The name is joined to a directory: refuse anything that leaves it. */
  if (!*image_name || strchr(image_name, '/') || !strcmp(image_name, ".") || !strcmp(image_name, ".."))
    return dpo_fail(err, DPO_ERR_DATA, "%s: img_name \"%s\": expected a file name inside originals/", where,
                    image_name);
  char image_path[PATH_MAX + 300];
  snprintf(image_path, sizeof image_path, "%s/%s", originals, image_name);
  dpo_image_format format = DPO_IMAGE_FORMAT_UNKNOWN;
  if (detect_image_file(image_path, where, &format, err)) return DPO_ERR_DATA;
  char id[64];
  snprintf(id, sizeof id, "tedbench:%zu", i);
  prompt p = {.id = prompts_strndup(id, strlen(id)), .text = prompts_strndup(text, text_len),
              .category = prompts_strndup(image_name, strlen(image_name))};
  const char *fmt = format_name(format);
  if (prompts_add_extra(&p, "image", 5, image_path, strlen(image_path), err) ||
      prompts_add_extra(&p, "format", 6, fmt, strlen(fmt), err)) {
    prompts_free_prompt(&p);
    return DPO_ERR_DATA;
  }
  return prompts_set_push(set, &p, err);
}

/* [{"img_name": "bird.png", "target_text": "..."}, ...] with the images in
 * originals/ beside the list. */
static int load_tedbench(const char *path, prompt_set *set, dpo_error *err) {
  json_t *root = dpo_json_load_file(path, PROMPT_MAX_FILE_BYTES, err);
  if (!root) return DPO_ERR_DATA;
  int rc = DPO_OK;
  if (!json_is_array(root))
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON array of {img_name, target_text} objects", path);
  char originals[PATH_MAX + 32], dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  snprintf(originals, sizeof originals, "%s/originals", dirname(dir));
  for (size_t i = 0; rc == DPO_OK && i < json_array_size(root); i++)
    rc = tedbench_entry(set, json_array_get(root, i), path, originals, i, err);
  json_decref(root);
  return rc;
}

/* ------------------------------------------------------------- load */

static int load_builtin(const prompt_builtin *b, prompt_set *set, dpo_error *err) {
  snprintf(set->name, sizeof set->name, "%s", b->name);
  data_path(b->file, set->path, sizeof set->path);
  int rc;
  if (!strcmp(b->name, "parti")) rc = load_parti(set->path, set, err);
  else if (!strcmp(b->name, "hpsv2")) rc = load_hpsv2(set->path, set, err);
  else rc = load_tedbench(set->path, set, err);
  if (rc == DPO_OK) rc = prompts_set_finish(set, set->path, err);
  if (rc != DPO_OK) {
    const char *env = getenv("DPO_DATA_DIR");
    if (env && *env) dpo_error_prefix(err, "built-in set %s (DPO_DATA_DIR=%s)", b->name, env);
    else dpo_error_prefix(err, "built-in set %s", b->name);
  }
  return rc;
}

static int format_from_extension(const char *path, prompt_format *format) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash + 1 : path, '.');
  if (!dot) return 0;
  if (!strcasecmp(dot, ".txt")) *format = PROMPT_FORMAT_TXT;
  else if (!strcasecmp(dot, ".tsv")) *format = PROMPT_FORMAT_TSV;
  else if (!strcasecmp(dot, ".jsonl")) *format = PROMPT_FORMAT_JSONL;
  else return 0;
  return 1;
}

/* "dir/my.prompts.tsv" -> "my.prompts". */
static void file_stem(const char *path, char *out, size_t n) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  const char *dot = strrchr(base, '.');
  size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
  if (len >= n) len = n - 1;
  memcpy(out, base, len);
  out[len] = '\0';
}

int prompt_set_load(const char *spec, prompt_set *set, dpo_error *err) {
  memset(set, 0, sizeof *set);
  const prompt_builtin *b = prompt_builtin_find(spec);
  if (b) {
    int rc = load_builtin(b, set, err);
    if (rc) prompt_set_free(set);
    return rc;
  }
  prompt_format format = PROMPT_FORMAT_TXT;
  if (!format_from_extension(spec, &format)) {
    struct stat st;
    if (stat(spec, &st) == 0)
      return dpo_fail(err, DPO_ERR_USAGE, "%s: unknown prompt file type, expected a .txt, .tsv or .jsonl file", spec);
    return dpo_fail(err, DPO_ERR_USAGE,
                    "unknown prompt set \"%s\": expected a built-in set (parti, hpsv2, tedbench) or a .txt, .tsv "
                    "or .jsonl file", spec);
  }
  char *data;
  size_t len;
  if (dpo_read_file(spec, PROMPT_MAX_FILE_BYTES, &data, &len, err)) return DPO_ERR_DATA;
  char stem[256];
  file_stem(spec, stem, sizeof stem);
  int rc = prompt_set_parse(data, len, format, spec, stem, set, err);
  free(data);
  return rc;
}
