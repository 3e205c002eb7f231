/* trainer internals shared between its source files; not a public API. */
#ifndef DPO_TRAINER_INTERNAL_H
#define DPO_TRAINER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "trainer/trainer.h"

/* ------------------------------------------- Unicode tables (generated) */

typedef struct {
  uint32_t lo, hi;   /* inclusive */
} clip_range;

typedef struct {
  uint32_t cp;
  uint8_t n;
  uint32_t v[4];
} clip_mapping;

typedef struct {
  uint32_t first, second, composite;
} clip_composition;

typedef struct {
  uint32_t lo, hi;
  uint8_t ccc;
} clip_ccc_range;

extern const clip_range clip_letter_ranges[];
extern const int clip_letter_ranges_count;
extern const clip_range clip_number_ranges[];
extern const int clip_number_ranges_count;
extern const clip_range clip_regex_space_ranges[];
extern const int clip_regex_space_ranges_count;
extern const clip_range clip_other_exception_ranges[];
extern const int clip_other_exception_ranges_count;
extern const clip_range clip_clean_removed_ranges[];
extern const int clip_clean_removed_ranges_count;
extern const clip_range clip_clean_space_ranges[];
extern const int clip_clean_space_ranges_count;
extern const clip_range clip_py_space_ranges[];
extern const int clip_py_space_ranges_count;
extern const clip_range clip_case_ignorable_ranges[];
extern const int clip_case_ignorable_ranges_count;
extern const clip_range clip_cased_ranges[];
extern const int clip_cased_ranges_count;
extern const clip_mapping clip_lower_map[];
extern const int clip_lower_map_count;
extern const clip_mapping clip_nfd_map[];
extern const int clip_nfd_map_count;
extern const clip_composition clip_compositions[];
extern const int clip_compositions_count;
extern const clip_ccc_range clip_ccc_ranges[];
extern const int clip_ccc_ranges_count;

/* ---------------------------------------------- code point strings */

typedef struct {
  uint32_t *cp;
  size_t n;
  size_t cap;
} cp_string;

int cp_push(cp_string *s, uint32_t c);
void cp_free(cp_string *s);

/* Decodes strict UTF-8 (no overlongs, surrogates or values past U+10FFFF);
 * on bad input fails naming the byte offset. */
int utf8_decode(const char *text, size_t len, cp_string *out, dpo_error *err);
/* Writes the UTF-8 of c into buf (4 bytes room), returns the byte count. */
int utf8_encode(uint32_t c, char *buf);

/* The text transformers' CLIPTokenizer hands to its split pattern when ftfy
 * is absent: BasicTokenizer(strip_accents=False, do_split_on_punc=False) ->
 * clean, space around CJK, NFC, split on whitespace, lower-case, join with " ". */
int clip_basic_clean(const cp_string *in, cp_string *out);

/* Unicode queries used by the split pattern. */
int clip_is_letter(uint32_t c);
int clip_is_number(uint32_t c);
int clip_is_other(uint32_t c);
/* NFC (unicodedata.normalize("NFC", ...)) of s, in a new string. */
int clip_nfc(const cp_string *s, cp_string *out);

/* ------------------------------------------------------- schedulers */

/* Checks the values the class of cfg->kind reads (scheduler_config.c). */
int scheduler_config_check(const dpo_scheduler_config *cfg, dpo_error *err);

/* ------------------------------------------------ string -> int map */

/* Open addressing with linear probing; keys are copied. */
typedef struct {
  char **keys;
  int *values;
  size_t cap;     /* power of two */
  size_t count;
} str_map;

int str_map_init(str_map *m, size_t expected);
void str_map_free(str_map *m);
/* Inserts or overwrites. Returns 0, or -1 when out of memory. */
int str_map_put(str_map *m, const char *key, size_t key_len, int value);
/* Returns 1 and sets *value when found. */
int str_map_get(const str_map *m, const char *key, size_t key_len, int *value);

#endif
