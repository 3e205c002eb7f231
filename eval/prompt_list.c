/* The prompts a generation run works through: a prompt set or file with an
 * optional filter, or N prompts of a shapes-world split. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "eval/eval.h"
#include "prompts/prompts.h"
#include "world/world.h"

static char *dup_string(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n + 1);
  if (out) memcpy(out, s, n + 1);
  return out;
}

void eval_prompt_list_free(eval_prompt_list *list) {
  for (int i = 0; i < list->n; i++) {
    free(list->items[i].id);
    free(list->items[i].text);
    free(list->items[i].category);
    free(list->items[i].source_image);
  }
  free(list->items);
  memset(list, 0, sizeof *list);
}

static int add_item(eval_prompt_list *list, const char *id, const char *text, const char *category,
                    const char *source_image, dpo_error *err) {
  if (list->n == list->cap) {
    int cap = list->cap ? 2 * list->cap : 64;
    eval_prompt_item *grown = realloc(list->items, (size_t)cap * sizeof *grown);
    if (!grown) return dpo_fail(err, DPO_ERR_DATA, "out of memory for the prompt list");
    list->items = grown;
    list->cap = cap;
  }
  eval_prompt_item *it = &list->items[list->n];
  memset(it, 0, sizeof *it);
  it->id = dup_string(id);
  it->text = dup_string(text);
  it->category = dup_string(category ? category : "");
  it->source_image = source_image ? dup_string(source_image) : NULL;
  list->n++;
  if (!it->id || !it->text || !it->category || (source_image && !it->source_image))
    return dpo_fail(err, DPO_ERR_DATA, "out of memory for the prompt list");
  return DPO_OK;
}

/* world:SPLIT:N[:SEED] */
static int load_world(const char *spec, eval_prompt_list *list, dpo_error *err) {
  char split_name[32];
  unsigned long long n = 0, seed = 0;
  int fields = sscanf(spec, "world:%31[a-z]:%llu:%llu", split_name, &n, &seed);
  int split = fields >= 2 ? world_split_from_name(split_name) : -1;
  if (fields < 2 || split < 0 || n < 1 || n > 1000000)
    return dpo_fail(err, DPO_ERR_USAGE, "prompts \"%s\": expected world:train:N or world:heldout:N[:SEED] with N >= 1",
                    spec);
  world_prompt *prompts = malloc((size_t)n * sizeof *prompts);
  if (!prompts) return dpo_fail(err, DPO_ERR_DATA, "out of memory for %llu world prompts", n);
  int rc = world_prompts_generate((world_split)split, seed, (int)n, prompts, err);
  snprintf(list->set_name, sizeof list->set_name, "world-%s", split_name);
  for (int i = 0; rc == DPO_OK && i < (int)n; i++) {
    char text[WORLD_PROMPT_MAX], id[64], category[16];
    rc = world_prompt_format(&prompts[i], text, sizeof text, err);
    snprintf(id, sizeof id, "world-%s:%d", split_name, i);
    snprintf(category, sizeof category, "%d-object", prompts[i].n_objects);
    if (rc == DPO_OK) rc = add_item(list, id, text, category, NULL, err);
  }
  free(prompts);
  return rc;
}

/* Does `filter` select prompt p? A category (case-insensitive) or an id,
 * with or without the set's name. */
static int matches(const prompt_set *set, const prompt *p, const char *filter) {
  if (strcasecmp(p->category, filter) == 0) return 1;
  if (strcmp(p->id, filter) == 0) return 1;
  size_t n = strlen(set->name);
  return strncmp(p->id, set->name, n) == 0 && p->id[n] == ':' && strcmp(p->id + n + 1, filter) == 0;
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int eval_prompt_list_load(const char *spec, eval_prompt_list *list, dpo_error *err) {
  memset(list, 0, sizeof *list);
  if (strncmp(spec, "world:", 6) == 0) {
    int rc = load_world(spec, list, err);
    if (rc) eval_prompt_list_free(list);
    return rc;
  }
  /* SET or FILE, then an optional ":filter" after the last colon, unless the
   * whole spec is itself a file. */
  char base[4096];
  const char *filter = NULL;
  snprintf(base, sizeof base, "%s", spec);
  char *colon = strrchr(base, ':');
  if (colon && !is_file(spec) && !prompt_builtin_find(spec)) {
    *colon = '\0';
    filter = spec + (colon - base) + 1;
    if (!*filter) return dpo_fail(err, DPO_ERR_USAGE, "prompts \"%s\": empty filter after ':'", spec);
  }
  prompt_set set;
  int rc = prompt_set_load(base, &set, err);
  if (rc) return rc;
  snprintf(list->set_name, sizeof list->set_name, "%s", set.name);
  list->is_edit = strcmp(set.name, "tedbench") == 0 && prompt_builtin_find(base) != NULL;
  for (int i = 0; rc == DPO_OK && i < set.n; i++) {
    const prompt *p = &set.items[i];
    if (filter && !matches(&set, p, filter)) continue;
    const char *image = list->is_edit ? prompt_extra_get(p, "image") : NULL;
    if (list->is_edit && !image) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: prompt %s has no source image", set.path, p->id);
      break;
    }
    rc = add_item(list, p->id, p->text, p->category, image, err);
  }
  if (rc == DPO_OK && list->n == 0)
    rc = dpo_fail(err, DPO_ERR_USAGE, "prompts \"%s\": the filter \"%s\" matches no category or id of %s", spec,
                  filter ? filter : "", set.name);
  prompt_set_free(&set);
  if (rc) eval_prompt_list_free(list);
  return rc;
}
