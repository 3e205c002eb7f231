/* prompts: the built-in prompt sets (PartiPrompts, HPSv2, TEd-Bench) and user
 * prompt files, loaded into one in-memory form.
 *
 * Ids. Every prompt has a stable id "<set>:<index>" that names the same prompt
 * in every run, manifest and study:
 *   parti:N            N = 0-based data row of PartiPrompts.tsv (parti:0 is
 *                      "bond"; the header line is not counted)
 *   hpsv2:STYLE:N      N = 0-based index within the style's array, as the
 *                      HPSv2 benchmark and SiD-LSG cite them (hpsv2:anime:329
 *                      is "Walter White dressed as a medieval-style king.")
 *   tedbench:N         N = 0-based index into TEd-Bench's input_list.json
 *   STEM:LINE          a user file's prompt: STEM is the file name without its
 *                      extension and LINE the 1-based line the prompt is on,
 *                      so an id points at the line in an editor and does not
 *                      move when blank lines elsewhere come or go. A TSV `id`
 *                      column or a JSONL "id" key replaces it (verbatim).
 *
 * User files, chosen by extension (case-insensitive):
 *   .txt    one prompt per line. Empty and whitespace-only lines are skipped;
 *           other lines are kept verbatim (leading and trailing spaces too,
 *           since benchmarks score against the exact string).
 *   .tsv    a header line, then one prompt per line, split on tabs only (no
 *           quoting: a '"' is part of the text). Column `prompt` or `Prompt`
 *           is required; `category`/`Category` and `id` are optional; other
 *           columns become extras keyed by their header name. Every row must
 *           have as many columns as the header. Empty lines are skipped.
 *   .jsonl  one JSON object per line with a string "prompt"; optional string
 *           "id" and "category"; other string members become extras, other
 *           members are ignored. Empty lines are skipped.
 * In every format: a UTF-8 byte order mark at the start is skipped, a CR
 * before LF is dropped (CRLF files read like LF files), the text must be
 * valid UTF-8 without NUL bytes (errors give the byte offset of the first bad
 * byte), a file is at most PROMPT_MAX_FILE_BYTES and a prompt at most
 * PROMPT_MAX_TEXT_BYTES, a prompt may not be empty, ids may not contain
 * control characters, and ids are unique within a set (a duplicate is refused
 * with both line numbers). A file without any prompt is an error.
 *
 * Built-in data is read from $DPO_DATA_DIR if set, else from
 * <directory of the executable>/../prompts/data if that exists, else from the
 * source tree's prompts/data (compiled in). */
#ifndef DPO_PROMPTS_H
#define DPO_PROMPTS_H

#include <stddef.h>

#include "core/core.h"

#define PROMPT_MAX_FILE_BYTES (64u * 1024u * 1024u)
#define PROMPT_MAX_TEXT_BYTES (64u * 1024u)
#define PROMPT_MAX_ID_BYTES 1024u

/* A named string beside the prompt: Parti's "Challenge" and "Note", TEd-Bench's
 * "image" (absolute path of the input image) and "format" ("jpeg", "png" or
 * "unknown", from the file's magic bytes), a user TSV's other columns. */
typedef struct {
  char *key;
  char *value;
} prompt_extra;

typedef struct {
  char *id;
  char *text;
  char *category;   /* Parti Category, HPSv2 style, TEd-Bench image name; "" when none */
  prompt_extra *extras;
  int n_extras;
  int line;         /* 1-based line in the source file; 0 for JSON sources */
} prompt;

typedef struct {
  char name[256];   /* "parti", "hpsv2", "tedbench", or a user file's stem */
  char path[4096];  /* the file that was read */
  prompt *items;
  int n;
  int cap;
  int *by_id;       /* indices of items sorted by id, for prompt_set_find */
} prompt_set;

typedef struct {
  const char *name;
  const char *description;
  const char *file;             /* relative to the data directory */
  const char *item_noun;        /* what one entry is: "prompt", or "edit" for TEd-Bench */
  const char *category_label;   /* what the category is: "category", "style", "image" */
  const char *category_plural;
  const char *breakdown_key;    /* an extra worth counting per value (Parti's "Challenge"), or NULL */
} prompt_builtin;

/* The built-in sets, in a fixed order; *n receives their count. */
const prompt_builtin *prompt_builtins(int *n);
const prompt_builtin *prompt_builtin_find(const char *name);

/* The directory holding the built-in sets (see above), without checking that
 * the files are there. */
void prompt_data_dir(char *out, size_t n);

/* Loads a built-in set by name or a user file by path. A name that is neither
 * a built-in nor a file with a known extension fails with DPO_ERR_USAGE;
 * unreadable or malformed data with DPO_ERR_DATA and "file:line: what was
 * expected". On failure the set is left empty (safe to free). */
int prompt_set_load(const char *spec, prompt_set *set, dpo_error *err);

typedef enum { PROMPT_FORMAT_TXT = 0, PROMPT_FORMAT_TSV, PROMPT_FORMAT_JSONL } prompt_format;

/* Parses a user file held in memory (data need not be NUL-terminated). `where`
 * names the origin in errors ("my.tsv"), `name` is the stem used in ids and
 * becomes set->name. This is what prompt_set_load does after reading a file,
 * and what the fuzzer drives. */
int prompt_set_parse(const char *data, size_t len, prompt_format format, const char *where,
                     const char *name, prompt_set *set, dpo_error *err);

/* Finds a prompt by its full id ("parti:17") or by the id without the set's
 * name ("17" in set parti, "anime:329" in set hpsv2). NULL when absent. */
const prompt *prompt_set_find(const prompt_set *set, const char *id);

/* An extra's value by key (case-insensitive), or NULL. */
const char *prompt_extra_get(const prompt *p, const char *key);

void prompt_set_free(prompt_set *set);

#endif
