/* A string -> int hash map (open addressing, FNV-1a, linear probing) for the
 * tokenizer's vocabulary, merge ranks and word cache. */
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer_internal.h"

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

int str_map_init(str_map *m, size_t expected) {
  size_t cap = 64;
  while (cap < expected * 2) cap *= 2;
  m->keys = calloc(cap, sizeof *m->keys);
  m->values = calloc(cap, sizeof *m->values);
  m->cap = cap;
  m->count = 0;
  if (!m->keys || !m->values) {
    str_map_free(m);
    return -1;
  }
  return 0;
}

void str_map_free(str_map *m) {
  if (m->keys)
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
  free(m->keys);
  free(m->values);
  memset(m, 0, sizeof *m);
}

/* Slot holding key, or the empty slot where it would go. */
static size_t find_slot(const str_map *m, const char *key, size_t key_len) {
  size_t i = hash_bytes(key, key_len) & (m->cap - 1);
  while (m->keys[i]) {
    if (strlen(m->keys[i]) == key_len && memcmp(m->keys[i], key, key_len) == 0) return i;
    i = (i + 1) & (m->cap - 1);
  }
  return i;
}

static int grow(str_map *m) {
  str_map bigger;
  if (str_map_init(&bigger, m->cap)) return -1;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i]) continue;
    size_t slot = find_slot(&bigger, m->keys[i], strlen(m->keys[i]));
    bigger.keys[slot] = m->keys[i];
    bigger.values[slot] = m->values[i];
    bigger.count++;
    m->keys[i] = NULL;
  }
  str_map_free(m);
  *m = bigger;
  return 0;
}

int str_map_put(str_map *m, const char *key, size_t key_len, int value) {
  if ((m->count + 1) * 2 > m->cap && grow(m)) return -1;
  size_t slot = find_slot(m, key, key_len);
  if (!m->keys[slot]) {
    char *copy = malloc(key_len + 1);
    if (!copy) return -1;
    memcpy(copy, key, key_len);
    copy[key_len] = '\0';
    m->keys[slot] = copy;
    m->count++;
  }
  m->values[slot] = value;
  return 0;
}

int str_map_get(const str_map *m, const char *key, size_t key_len, int *value) {
  if (!m->cap) return 0;
  size_t slot = find_slot(m, key, key_len);
  if (!m->keys[slot]) return 0;
  *value = m->values[slot];
  return 1;
}
