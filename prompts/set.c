/* The prompt set in memory: adding prompts, the id index, lookups, freeing. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "prompts/prompts_internal.h"

char *prompts_strndup(const char *s, size_t n) {
  char *out = malloc(n + 1);
  if (!out) return NULL;
  memcpy(out, s, n);
  out[n] = '\0';
  return out;
}

void prompts_free_prompt(prompt *p) {
  free(p->id);
  free(p->text);
  free(p->category);
  for (int i = 0; i < p->n_extras; i++) {
    free(p->extras[i].key);
    free(p->extras[i].value);
  }
  free(p->extras);
  memset(p, 0, sizeof *p);
}

int prompts_set_push(prompt_set *set, prompt *p, dpo_error *err) {
  if (!p->id || !p->text || !p->category) {
    prompts_free_prompt(p);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory building a prompt");
  }
  if (set->n == set->cap) {
    int cap = set->cap ? set->cap * 2 : 256;
    prompt *items = realloc(set->items, sizeof(prompt) * (size_t)cap);
    if (!items) {
      prompts_free_prompt(p);
      return dpo_fail(err, DPO_ERR_DATA, "out of memory: %d prompts", set->n);
    }
    set->items = items;
    set->cap = cap;
  }
  set->items[set->n++] = *p;
  memset(p, 0, sizeof *p);
  return DPO_OK;
}

int prompts_add_extra(prompt *p, const char *key, size_t key_len, const char *value, size_t value_len,
                      dpo_error *err) {
  prompt_extra *extras = realloc(p->extras, sizeof(prompt_extra) * (size_t)(p->n_extras + 1));
  if (!extras) return dpo_fail(err, DPO_ERR_DATA, "out of memory adding a prompt field");
  p->extras = extras;
  prompt_extra *e = &p->extras[p->n_extras];
  e->key = prompts_strndup(key, key_len);
  e->value = prompts_strndup(value, value_len);
  if (!e->key || !e->value) {
    free(e->key);
    free(e->value);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory adding a prompt field");
  }
  p->n_extras++;
  return DPO_OK;
}

/* "file:12: " or "file: " when there is no line. */
static void format_where(char *buf, size_t n, const char *where, int line) {
  if (line > 0) snprintf(buf, n, "%s:%d", where, line);
  else snprintf(buf, n, "%s", where);
}

int prompts_check_text(const char *text, size_t len, const char *where, int line, const char *what,
                       dpo_error *err) {
  char at[1200];
  format_where(at, sizeof at, where, line);
  if (len == 0) return dpo_fail(err, DPO_ERR_DATA, "%s: %s is empty, expected a non-empty prompt", at, what);
  if (len > PROMPT_MAX_TEXT_BYTES)
    return dpo_fail(err, DPO_ERR_DATA, "%s: %s is %zu bytes, longer than the limit of %u bytes", at, what, len,
                    PROMPT_MAX_TEXT_BYTES);
  if (memchr(text, '\0', len))
    return dpo_fail(err, DPO_ERR_DATA, "%s: %s contains a NUL character", at, what);
  return DPO_OK;
}

int prompts_check_id(const char *id, size_t len, const char *where, int line, dpo_error *err) {
  char at[1200];
  format_where(at, sizeof at, where, line);
  if (len == 0) return dpo_fail(err, DPO_ERR_DATA, "%s: id is empty, expected a non-empty id", at);
  if (len > PROMPT_MAX_ID_BYTES)
    return dpo_fail(err, DPO_ERR_DATA, "%s: id is %zu bytes, longer than the limit of %u bytes", at, len,
                    PROMPT_MAX_ID_BYTES);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c < 0x20 || c == 0x7f)
      return dpo_fail(err, DPO_ERR_DATA, "%s: id contains the control character 0x%02x at byte %zu", at, c, i);
  }
  return DPO_OK;
}

typedef struct {
  const char *id;
  int index;
} id_entry;

static int compare_id_entries(const void *a, const void *b) {
  const id_entry *x = a, *y = b;
  int c = strcmp(x->id, y->id);
  if (c) return c;
  return (x->index > y->index) - (x->index < y->index);
}

int prompts_set_finish(prompt_set *set, const char *where, dpo_error *err) {
  if (set->n == 0) return dpo_fail(err, DPO_ERR_DATA, "%s: no prompts found, expected at least one", where);
  id_entry *entries = malloc(sizeof(id_entry) * (size_t)set->n);
  set->by_id = malloc(sizeof(int) * (size_t)set->n);
  if (!entries || !set->by_id) {
    free(entries);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory indexing %d prompts", where, set->n);
  }
  for (int i = 0; i < set->n; i++) entries[i] = (id_entry){set->items[i].id, i};
  qsort(entries, (size_t)set->n, sizeof(id_entry), compare_id_entries);
  int rc = DPO_OK;
  for (int i = 0; i < set->n; i++) {
    set->by_id[i] = entries[i].index;
    if (rc == DPO_OK && i > 0 && strcmp(entries[i].id, entries[i - 1].id) == 0) {
      const prompt *first = &set->items[entries[i - 1].index];
      const prompt *second = &set->items[entries[i].index];
      if (second->line > 0)
        rc = dpo_fail(err, DPO_ERR_DATA, "%s:%d: duplicate id \"%s\" (first used on line %d), expected unique ids",
                      where, second->line, second->id, first->line);
      else
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: duplicate id \"%s\" (prompts %d and %d), expected unique ids", where,
                      second->id, entries[i - 1].index, entries[i].index);
    }
  }
  free(entries);
  return rc;
}

static const prompt *find_exact(const prompt_set *set, const char *id) {
  if (!set->by_id) return NULL;
  int lo = 0, hi = set->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    const prompt *p = &set->items[set->by_id[mid]];
    int c = strcmp(p->id, id);
    if (c == 0) return p;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

const prompt *prompt_set_find(const prompt_set *set, const char *id) {
  const prompt *p = find_exact(set, id);
  if (p || !set->name[0]) return p;
  /* "17" in set parti means "parti:17". */
  size_t n = strlen(set->name) + 1 + strlen(id) + 1;
  char *full = malloc(n);
  if (!full) return NULL;
  snprintf(full, n, "%s:%s", set->name, id);
  p = find_exact(set, full);
  free(full);
  return p;
}

const char *prompt_extra_get(const prompt *p, const char *key) {
  for (int i = 0; i < p->n_extras; i++)
    if (strcasecmp(p->extras[i].key, key) == 0) return p->extras[i].value;
  return NULL;
}

void prompt_set_free(prompt_set *set) {
  for (int i = 0; i < set->n; i++) prompts_free_prompt(&set->items[i]);
  free(set->items);
  free(set->by_id);
  memset(set, 0, sizeof *set);
}
