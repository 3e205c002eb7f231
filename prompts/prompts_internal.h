/* Helpers shared by the files of the prompts library; not part of its API. */
#ifndef DPO_PROMPTS_INTERNAL_H
#define DPO_PROMPTS_INTERNAL_H

#include "prompts/prompts.h"

/* A copy of n bytes with a NUL after them; NULL when out of memory. */
char *prompts_strndup(const char *s, size_t n);

/* Appends *p to the set, which takes ownership of its strings; on failure the
 * strings are freed. */
int prompts_set_push(prompt_set *set, prompt *p, dpo_error *err);
/* Adds key=value (copied) to a prompt being built. */
int prompts_add_extra(prompt *p, const char *key, size_t key_len, const char *value, size_t value_len,
                      dpo_error *err);
void prompts_free_prompt(prompt *p);

/* Checks a prompt's text (not empty, not too long, no NUL). `line` 0 leaves
 * the line out of the message. */
int prompts_check_text(const char *text, size_t len, const char *where, int line, const char *what,
                       dpo_error *err);
/* Checks an id (not empty, not too long, no control characters). */
int prompts_check_id(const char *id, size_t len, const char *where, int line, dpo_error *err);

/* Called once all prompts are in: refuses an empty set and duplicate ids and
 * builds the index that prompt_set_find searches. */
int prompts_set_finish(prompt_set *set, const char *where, dpo_error *err);

/* Parses a TSV held in memory. With ids_by_index, ids are "<name>:<0-based
 * data row>" (the built-in Parti set) instead of "<name>:<line>". */
int prompts_parse_tsv(const char *data, size_t len, const char *where, const char *name, int ids_by_index,
                      prompt_set *set, dpo_error *err);

#endif
