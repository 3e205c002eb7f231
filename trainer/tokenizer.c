/* The CLIP BPE tokenizer, matching transformers' CLIPTokenizer (4.46, the
 * path taken without ftfy) id for id.
 *
 * What CLIPTokenizer does, in order:
 *   1. splits the text on its added/special tokens ("<|startoftext|>",
 *      "<|endoftext|>", and the pad token, "!" in SD 2.x), which map to their
 *      ids directly;
 *   2. for each other piece, BasicTokenizer: drop control characters, turn
 *      whitespace into spaces, put spaces around CJK ideographs, NFC, split on
 *      whitespace, lower-case (unicode.c);
 *   3. splits that with CLIP's pattern
 *        <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *      (case-insensitive); characters no branch matches are dropped;
 *   4. maps each piece's UTF-8 bytes to printable stand-ins (bytes_to_unicode)
 *      and runs byte-level BPE with "</w>" on the last symbol, merging the
 *      lowest-ranked pair of merges.txt until none applies;
 *   5. looks the symbols up in vocab.json (unknown -> unk), truncates to
 *      length-2, adds BOS/EOS and pads. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"
#include "trainer/trainer_internal.h"

#define MAX_VOCAB_FILE (64u << 20)
#define MAX_MERGES_FILE (64u << 20)
#define MAX_CONFIG_FILE (1u << 20)
#define MAX_SPECIALS 64
#define MAX_TOKEN_ID (1 << 24)
/* CLIPTokenizer reads merges.txt lines 1 .. 49152-256-2 (48894 merges). */
#define CLIP_MERGE_LINES (49152 - 256 - 2)
/* The word cache is dropped when it grows past this many words. */
#define CACHE_MAX_WORDS 100000

typedef struct {
  char *content;
  int id;
} special_token;

typedef struct {
  int32_t *ids;
  size_t n;
  size_t cap;
} id_list;

struct dpo_tokenizer {
  str_map vocab;        /* token -> id */
  str_map merge_ranks;  /* "first second" -> rank */
  str_map cache;        /* byte-encoded word -> index into cache_start/cache_len */
  int32_t *cache_start, *cache_len;
  size_t cache_words, cache_words_cap;
  id_list cache_ids;
  char byte_symbol[256][3];   /* bytes_to_unicode, as UTF-8 */
  int byte_symbol_len[256];
  special_token specials[MAX_SPECIALS];
  int n_specials;
  int bos_id, eos_id, unk_id, pad_id;
  int max_length;
};

static int ids_push(id_list *l, int32_t id) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 128;
    int32_t *grown = realloc(l->ids, cap * sizeof *grown);
    if (!grown) return -1;
    l->ids = grown;
    l->cap = cap;
  }
  l->ids[l->n++] = id;
  return 0;
}

/* ------------------------------------------------------------- loading */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes take U+0100 upwards in byte order. */
static void init_byte_symbols(dpo_tokenizer *tok) {
  int next = 0;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + next++);
    tok->byte_symbol_len[b] = utf8_encode(cp, tok->byte_symbol[b]);
  }
}

static int load_vocab(dpo_tokenizer *tok, const char *path, dpo_error *err) {
  json_t *root = dpo_json_load_file(path, MAX_VOCAB_FILE, err);
  if (!root) return DPO_ERR_DATA;
  int rc = DPO_OK;
  if (!json_is_object(root)) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object of token -> id", path);
  } else if (str_map_init(&tok->vocab, json_object_size(root))) {
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  } else {
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
      if (!json_is_integer(value) || json_integer_value(value) < 0 || json_integer_value(value) >= MAX_TOKEN_ID) {
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: token \"%s\": expected an integer id in [0, %d)", path, key,
                      MAX_TOKEN_ID);
        break;
      }
      if (str_map_put(&tok->vocab, key, strlen(key), (int)json_integer_value(value))) {
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
        break;
      }
    }
    if (rc == DPO_OK && tok->vocab.count == 0) rc = dpo_fail(err, DPO_ERR_DATA, "%s: the vocabulary is empty", path);
  }
  json_decref(root);
  return rc;
}

static int is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* One merges.txt line "first second" -> rank. Lines that do not split into
 * exactly two symbols can never match a pair in CLIPTokenizer, so they are
 * skipped; a repeated pair keeps its last rank (Python's dict(zip(...))). */
static int add_merge_line(dpo_tokenizer *tok, const char *line, size_t len, int rank) {
  const char *parts[3];
  size_t lens[3];
  int n = 0;
  size_t i = 0;
  while (i < len && n < 3) {
    while (i < len && is_ascii_space(line[i])) i++;
    if (i == len) break;
    size_t start = i;
    while (i < len && !is_ascii_space(line[i])) i++;
    parts[n] = line + start;
    lens[n] = i - start;
    n++;
  }
  if (n != 2) return 0;
  char key[512];
  if (lens[0] + lens[1] + 2 > sizeof key) return 0;
  memcpy(key, parts[0], lens[0]);
  key[lens[0]] = ' ';
  memcpy(key + lens[0] + 1, parts[1], lens[1]);
  return str_map_put(&tok->merge_ranks, key, lens[0] + 1 + lens[1], rank);
}

static int load_merges(dpo_tokenizer *tok, const char *path, dpo_error *err) {
  char *data;
  size_t len;
  if (dpo_read_file(path, MAX_MERGES_FILE, &data, &len, err)) return DPO_ERR_DATA;
  if (str_map_init(&tok->merge_ranks, CLIP_MERGE_LINES)) {
    free(data);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  }
  /* Python: read().strip().split("\n")[1 : 48895] */
  size_t begin = 0, end = len;
  while (begin < end && is_ascii_space(data[begin])) begin++;
  while (end > begin && is_ascii_space(data[end - 1])) end--;
  int line_no = 0;
  size_t pos = begin;
  while (pos < end && line_no <= CLIP_MERGE_LINES) {
    const char *nl = memchr(data + pos, '\n', end - pos);
    size_t line_end = nl ? (size_t)(nl - data) : end;
    if (line_no >= 1 && add_merge_line(tok, data + pos, line_end - pos, line_no - 1)) {
      free(data);
      return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
    }
    line_no++;
    pos = line_end + 1;
  }
  free(data);
  if (tok->merge_ranks.count == 0) return dpo_fail(err, DPO_ERR_DATA, "%s: no merges after the header line", path);
  return DPO_OK;
}

/* A special-token field: "text" or {"content": "text", ...}; null or absent
 * leaves *content alone. */
static int read_token_field(const json_t *root, const char *key, const char **content, const char *path,
                            dpo_error *err) {
  const json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v)) return DPO_OK;
  if (json_is_object(v)) v = json_object_get(v, "content");
  if (!v || !json_is_string(v) || json_string_length(v) == 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\": expected a non-empty string or an object with \"content\"",
                    path, key);
  *content = json_string_value(v);
  return DPO_OK;
}

static int add_special(dpo_tokenizer *tok, const char *content, int id, const char *path, dpo_error *err) {
  for (int i = 0; i < tok->n_specials; i++) {
    if (strcmp(tok->specials[i].content, content) == 0) {
      tok->specials[i].id = id;
      return DPO_OK;
    }
  }
  if (tok->n_specials == MAX_SPECIALS)
    return dpo_fail(err, DPO_ERR_DATA, "%s: more than %d added tokens", path, MAX_SPECIALS);
  char *copy = strdup(content);
  if (!copy) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  tok->specials[tok->n_specials].content = copy;
  tok->specials[tok->n_specials].id = id;
  tok->n_specials++;
  return DPO_OK;
}

static int find_special(const dpo_tokenizer *tok, const char *content) {
  for (int i = 0; i < tok->n_specials; i++)
    if (strcmp(tok->specials[i].content, content) == 0) return tok->specials[i].id;
  return -1;
}

/* Config files may hold model_max_length = 1e30 as an integer literal, which
 * jansson only accepts when integers are decoded as reals. */
static json_t *load_config(const char *path, dpo_error *err) {
  char *data;
  size_t len;
  if (dpo_read_file(path, MAX_CONFIG_FILE, &data, &len, err)) return NULL;
  json_error_t jerr;
  json_t *root = json_loadb(data, len, JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &jerr);
  free(data);
  if (!root) {
    dpo_fail(err, DPO_ERR_DATA, "%s:%d:%d: invalid JSON: %s", path, jerr.line, jerr.column, jerr.text);
    return NULL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    dpo_fail(err, DPO_ERR_DATA, "%s: expected a JSON object", path);
    return NULL;
  }
  return root;
}

typedef struct {
  const char *bos, *eos, *unk, *pad;
} special_names;

static int read_tokenizer_config(dpo_tokenizer *tok, const char *path, json_t *root, special_names *names,
                                 dpo_error *err) {
  const json_t *cls = json_object_get(root, "tokenizer_class");
  if (cls && !json_is_null(cls)) {
    if (!json_is_string(cls))
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"tokenizer_class\": expected a string", path);
    const char *name = json_string_value(cls);
    if (strcmp(name, "CLIPTokenizer") != 0 && strcmp(name, "CLIPTokenizerFast") != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"tokenizer_class\": \"%s\" is not supported, expected CLIPTokenizer",
                      path, name);
  }
  const json_t *lower = json_object_get(root, "do_lower_case");
  if (lower && json_is_false(lower))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"do_lower_case\": false is not supported (CLIP lower-cases)", path);
  const json_t *mml = json_object_get(root, "model_max_length");
  if (mml && json_is_number(mml)) {
    double v = json_number_value(mml);
    if (v >= 2 && v <= 4096) tok->max_length = (int)v;
  }
  const json_t *added = json_object_get(root, "added_tokens_decoder");
  if (added && !json_is_null(added)) {
    if (!json_is_object(added))
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"added_tokens_decoder\": expected an object", path);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)added, key, value) {
      char *end;
      long id = strtol(key, &end, 10);
      const json_t *content = json_is_object(value) ? json_object_get(value, "content") : NULL;
      if (*key == '\0' || *end != '\0' || id < 0 || id >= MAX_TOKEN_ID || !content || !json_is_string(content) ||
          json_string_length(content) == 0)
        return dpo_fail(err, DPO_ERR_DATA,
                        "%s: \"added_tokens_decoder\" entry \"%s\": expected an id key and {\"content\": string}",
                        path, key);
      if (add_special(tok, json_string_value(content), (int)id, path, err)) return DPO_ERR_DATA;
    }
  }
  if (read_token_field(root, "bos_token", &names->bos, path, err)) return DPO_ERR_DATA;
  if (read_token_field(root, "eos_token", &names->eos, path, err)) return DPO_ERR_DATA;
  if (read_token_field(root, "unk_token", &names->unk, path, err)) return DPO_ERR_DATA;
  if (read_token_field(root, "pad_token", &names->pad, path, err)) return DPO_ERR_DATA;
  return DPO_OK;
}

/* The id of a special token: the added-token id when it has one, else its
 * vocabulary id; a token in neither is refused. */
static int resolve_special(dpo_tokenizer *tok, const char *field, const char *content, int *id, const char *dir,
                           dpo_error *err) {
  int found = find_special(tok, content);
  if (found < 0 && !str_map_get(&tok->vocab, content, strlen(content), &found))
    return dpo_fail(err, DPO_ERR_DATA, "%s: %s \"%s\" is neither in vocab.json nor an added token", dir, field,
                    content);
  *id = found;
  return add_special(tok, content, found, dir, err);
}

static int load_specials(dpo_tokenizer *tok, const char *dir, dpo_error *err) {
  special_names names = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
  json_t *roots[2] = {NULL, NULL};
  const char *files[2] = {"tokenizer_config.json", "special_tokens_map.json"};
  int rc = DPO_OK;
  for (int i = 0; i < 2 && rc == DPO_OK; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    FILE *probe = fopen(path, "rb");
    if (!probe) continue;   /* both are optional */
    fclose(probe);
    roots[i] = load_config(path, err);
    if (!roots[i]) rc = DPO_ERR_DATA;
    else if (i == 0) rc = read_tokenizer_config(tok, path, roots[i], &names, err);
    else {
      rc = read_token_field(roots[i], "bos_token", &names.bos, path, err);
      if (!rc) rc = read_token_field(roots[i], "eos_token", &names.eos, path, err);
      if (!rc) rc = read_token_field(roots[i], "unk_token", &names.unk, path, err);
      if (!rc) rc = read_token_field(roots[i], "pad_token", &names.pad, path, err);
    }
  }
  if (!rc) rc = resolve_special(tok, "bos_token", names.bos, &tok->bos_id, dir, err);
  if (!rc) rc = resolve_special(tok, "eos_token", names.eos, &tok->eos_id, dir, err);
  if (!rc) rc = resolve_special(tok, "unk_token", names.unk, &tok->unk_id, dir, err);
  if (!rc) rc = resolve_special(tok, "pad_token", names.pad, &tok->pad_id, dir, err);
  json_decref(roots[0]);
  json_decref(roots[1]);
  return rc;
}

int dpo_tokenizer_load(const char *dir, dpo_tokenizer **out, dpo_error *err) {
  *out = NULL;
  dpo_tokenizer *tok = calloc(1, sizeof *tok);
  if (!tok) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", dir);
  tok->max_length = DPO_CLIP_CONTEXT;
  init_byte_symbols(tok);
  char path[4096];
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  int rc = load_vocab(tok, path, err);
  if (!rc) {
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    rc = load_merges(tok, path, err);
  }
  if (!rc) rc = load_specials(tok, dir, err);
  if (!rc && str_map_init(&tok->cache, 1024)) rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", dir);
  if (rc) {
    dpo_tokenizer_free(tok);
    return rc;
  }
  *out = tok;
  return DPO_OK;
}

static void clear_cache(dpo_tokenizer *tok) {
  str_map_free(&tok->cache);
  free(tok->cache_start);
  free(tok->cache_len);
  free(tok->cache_ids.ids);
  tok->cache_start = tok->cache_len = NULL;
  tok->cache_words = tok->cache_words_cap = 0;
  memset(&tok->cache_ids, 0, sizeof tok->cache_ids);
}

void dpo_tokenizer_free(dpo_tokenizer *tok) {
  if (!tok) return;
  str_map_free(&tok->vocab);
  str_map_free(&tok->merge_ranks);
  clear_cache(tok);
  for (int i = 0; i < tok->n_specials; i++) free(tok->specials[i].content);
  free(tok);
}

int dpo_tokenizer_bos_id(const dpo_tokenizer *tok) { return tok->bos_id; }
int dpo_tokenizer_eos_id(const dpo_tokenizer *tok) { return tok->eos_id; }
int dpo_tokenizer_pad_id(const dpo_tokenizer *tok) { return tok->pad_id; }
int dpo_tokenizer_vocab_size(const dpo_tokenizer *tok) { return (int)tok->vocab.count; }
int dpo_tokenizer_max_length(const dpo_tokenizer *tok) { return tok->max_length; }

/* ------------------------------------------------------------------ BPE */

typedef struct {
  size_t start, end;   /* byte span in the word buffer */
} symbol;

static int same_symbol(const char *buf, symbol a, symbol b) {
  return a.end - a.start == b.end - b.start && memcmp(buf + a.start, buf + b.start, a.end - a.start) == 0;
}

/* Rank of the pair (a, b), or INT_MAX when merges.txt does not list it. */
static int pair_rank(const dpo_tokenizer *tok, const char *buf, symbol a, symbol b, char *key) {
  size_t la = a.end - a.start, lb = b.end - b.start;
  memcpy(key, buf + a.start, la);
  key[la] = ' ';
  memcpy(key + la + 1, buf + b.start, lb);
  int rank;
  return str_map_get(&tok->merge_ranks, key, la + 1 + lb, &rank) ? rank : INT_MAX;
}

/* BPE of one word (byte-encoded, len bytes, "</w>" appended here), as
 * CLIPTokenizer.bpe: merge every occurrence of the best-ranked pair, left to
 * right, until no pair is ranked. Appends the symbols' ids to out. */
static int bpe_word(const dpo_tokenizer *tok, const char *word, size_t len, id_list *out) {
  size_t buf_len = len + 4;
  char *buf = malloc(buf_len + 1);
  char *key = malloc(2 * buf_len + 2);
  symbol *syms = malloc((len + 1) * sizeof *syms);
  int rc = -1;
  if (!buf || !key || !syms) goto done;
  memcpy(buf, word, len);
  memcpy(buf + len, "</w>", 4);
  buf[buf_len] = '\0';
  size_t n = 0;
  for (size_t i = 0; i < len;) {   /* one symbol per code point of the word */
    size_t step = 1;
    uint8_t lead = (uint8_t)word[i];
    if (lead >= 0xF0) step = 4;
    else if (lead >= 0xE0) step = 3;
    else if (lead >= 0xC0) step = 2;
    syms[n].start = i;
    syms[n].end = i + step;
    n++;
    i += step;
  }
  syms[n - 1].end = buf_len;   /* the last symbol carries "</w>" */
  while (n > 1) {
    int best = INT_MAX;
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < n; i++) {
      int r = pair_rank(tok, buf, syms[i], syms[i + 1], key);
      if (r < best) {
        best = r;
        best_i = i;
      }
    }
    if (best == INT_MAX) break;
    symbol first = syms[best_i], second = syms[best_i + 1];
    size_t m = 0;
    for (size_t i = 0; i < n;) {
      if (i + 1 < n && same_symbol(buf, syms[i], first) && same_symbol(buf, syms[i + 1], second)) {
        syms[m].start = syms[i].start;
        syms[m].end = syms[i + 1].end;
        i += 2;
      } else {
        syms[m] = syms[i];
        i += 1;
      }
      m++;
    }
    n = m;
  }
  rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    int id;
    if (!str_map_get(&tok->vocab, buf + syms[i].start, syms[i].end - syms[i].start, &id)) id = tok->unk_id;
    rc = ids_push(out, id);
  }
done:
  free(buf);
  free(key);
  free(syms);
  return rc;
}

/* BPE through the cache of words already seen. */
static int bpe_cached(dpo_tokenizer *tok, const char *word, size_t len, id_list *out) {
  int index;
  if (str_map_get(&tok->cache, word, len, &index)) {
    for (int32_t k = 0; k < tok->cache_len[index]; k++)
      if (ids_push(out, tok->cache_ids.ids[tok->cache_start[index] + k])) return -1;
    return 0;
  }
  size_t before = out->n;
  if (bpe_word(tok, word, len, out)) return -1;
  if (tok->cache_words >= CACHE_MAX_WORDS) {
    clear_cache(tok);
    if (str_map_init(&tok->cache, 1024)) return -1;
  }
  if (tok->cache_words == tok->cache_words_cap) {
    size_t cap = tok->cache_words_cap ? tok->cache_words_cap * 2 : 1024;
    int32_t *s = realloc(tok->cache_start, cap * sizeof *s);
    if (!s) return -1;
    tok->cache_start = s;
    int32_t *l = realloc(tok->cache_len, cap * sizeof *l);
    if (!l) return -1;
    tok->cache_len = l;
    tok->cache_words_cap = cap;
  }
  size_t w = tok->cache_words;
  tok->cache_start[w] = (int32_t)tok->cache_ids.n;
  tok->cache_len[w] = (int32_t)(out->n - before);
  for (size_t k = before; k < out->n; k++)
    if (ids_push(&tok->cache_ids, out->ids[k])) return -1;
  if (str_map_put(&tok->cache, word, len, (int)w)) return -1;
  tok->cache_words++;
  return 0;
}

/* --------------------------------------------------------- split pattern */

/* Case-insensitive literal match as the regex module does it: ASCII case, and
 * U+017F (long s) for 's'; gen_unicode_tables.py checks nothing else folds
 * onto these letters. */
static int literal_char_matches(uint32_t c, char lit) {
  if (c == (uint32_t)(unsigned char)lit) return 1;
  if (lit >= 'a' && lit <= 'z' && c == (uint32_t)(lit - 'a' + 'A')) return 1;
  return lit == 's' && c == 0x17F;
}

static size_t match_literal(const uint32_t *s, size_t n, const char *lit) {
  size_t k = 0;
  for (; lit[k]; k++)
    if (k >= n || !literal_char_matches(s[k], lit[k])) return 0;
  return k;
}

/* Length of the pattern's match at s[0..n), 0 when nothing matches here. */
static size_t match_at(const uint32_t *s, size_t n) {
  static const char *literals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  for (size_t i = 0; i < sizeof literals / sizeof *literals; i++) {
    size_t len = match_literal(s, n, literals[i]);
    if (len) return len;
  }
  size_t k = 0;
  if (clip_is_letter(s[0])) {
    while (k < n && clip_is_letter(s[k])) k++;
    return k;
  }
  if (clip_is_number(s[0])) return 1;
  while (k < n && clip_is_other(s[k])) k++;
  return k;
}

/* Byte-encodes one piece of the pattern and appends its ids. */
static int encode_piece(dpo_tokenizer *tok, const uint32_t *s, size_t n, char **word, size_t *word_cap,
                        id_list *out) {
  if (*word_cap < n * 8 + 1) {
    char *grown = realloc(*word, n * 8 + 1);
    if (!grown) return -1;
    *word = grown;
    *word_cap = n * 8 + 1;
  }
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    char utf8[4];
    int nb = utf8_encode(s[i], utf8);
    for (int b = 0; b < nb; b++) {
      uint8_t byte = (uint8_t)utf8[b];
      memcpy(*word + len, tok->byte_symbol[byte], (size_t)tok->byte_symbol_len[byte]);
      len += (size_t)tok->byte_symbol_len[byte];
    }
  }
  (*word)[len] = '\0';
  /* CLIPTokenizer's cache starts with these two, which bypass BPE. */
  if (strcmp(*word, "<|startoftext|>") == 0 || strcmp(*word, "<|endoftext|>") == 0) {
    int id;
    if (!str_map_get(&tok->vocab, *word, len, &id)) id = tok->unk_id;
    return ids_push(out, id);
  }
  return bpe_cached(tok, *word, len, out);
}

/* CLIPTokenizer._tokenize of a piece of text between special tokens. */
static int encode_chunk(dpo_tokenizer *tok, const char *text, size_t len, id_list *out, dpo_error *err) {
  cp_string raw = {0}, clean = {0};
  char *word = NULL;
  size_t word_cap = 0;
  int rc = utf8_decode(text, len, &raw, err);
  if (!rc && clip_basic_clean(&raw, &clean)) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory tokenizing text");
  size_t i = 0;
  while (!rc && i < clean.n) {
    size_t m = match_at(clean.cp + i, clean.n - i);
    if (m == 0) {   /* findall skips what no branch matches (spaces) */
      i++;
      continue;
    }
    if (encode_piece(tok, clean.cp + i, m, &word, &word_cap, out))
      rc = dpo_fail(err, DPO_ERR_DATA, "out of memory tokenizing text");
    i += m;
  }
  cp_free(&raw);
  cp_free(&clean);
  free(word);
  return rc;
}

/* The longest special token starting at text, or -1. */
static int special_at(const dpo_tokenizer *tok, const char *text, size_t left, size_t *len) {
  int best = -1;
  size_t best_len = 0;
  for (int i = 0; i < tok->n_specials; i++) {
    size_t l = strlen(tok->specials[i].content);
    if (l <= left && l > best_len && memcmp(text, tok->specials[i].content, l) == 0) {
      best = i;
      best_len = l;
    }
  }
  *len = best_len;
  return best;
}

static int tokenize(dpo_tokenizer *tok, const char *text, id_list *out, dpo_error *err) {
  size_t len = strlen(text);
  if (len > DPO_TOKENIZER_MAX_TEXT)
    return dpo_fail(err, DPO_ERR_USAGE, "text is %zu bytes, longer than the limit of %u", len,
                    DPO_TOKENIZER_MAX_TEXT);
  cp_string check = {0};
  int rc = utf8_decode(text, len, &check, err);   /* errors name offsets in the whole text */
  cp_free(&check);
  if (rc) return rc;
  size_t chunk = 0, pos = 0;
  while (pos < len) {
    size_t special_len;
    int s = special_at(tok, text + pos, len - pos, &special_len);
    if (s < 0) {
      pos++;
      continue;
    }
    if (pos > chunk && encode_chunk(tok, text + chunk, pos - chunk, out, err)) return DPO_ERR_DATA;
    if (ids_push(out, tok->specials[s].id)) return dpo_fail(err, DPO_ERR_DATA, "out of memory tokenizing text");
    pos += special_len;
    chunk = pos;
  }
  if (len > chunk && encode_chunk(tok, text + chunk, len - chunk, out, err)) return DPO_ERR_DATA;
  return DPO_OK;
}

int dpo_tokenizer_tokens(dpo_tokenizer *tok, const char *text, int32_t **ids, int *n, dpo_error *err) {
  id_list out = {0};
  *ids = NULL;
  *n = 0;
  int rc = tokenize(tok, text, &out, err);
  if (rc) {
    free(out.ids);
    return rc;
  }
  *ids = out.ids;
  *n = (int)out.n;
  return DPO_OK;
}

int dpo_tokenizer_encode(dpo_tokenizer *tok, const char *text, int32_t *ids, int length, int *n_used,
                         dpo_error *err) {
  if (length < 2) return dpo_fail(err, DPO_ERR_USAGE, "tokenizer length %d: expected at least 2", length);
  id_list out = {0};
  int rc = tokenize(tok, text, &out, err);
  if (rc) {
    free(out.ids);
    return rc;
  }
  size_t keep = out.n < (size_t)(length - 2) ? out.n : (size_t)(length - 2);
  int k = 0;
  ids[k++] = tok->bos_id;
  for (size_t i = 0; i < keep; i++) ids[k++] = out.ids[i];
  ids[k++] = tok->eos_id;
  if (n_used) *n_used = k;
  while (k < length) ids[k++] = tok->pad_id;
  free(out.ids);
  return DPO_OK;
}
