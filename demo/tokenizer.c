/* A CLIP-format tokenizer for the shapes grammar.
 *
 * CLIP's vocabulary starts with the 256 byte symbols of its byte-level
 * alphabet and the same 256 with "</w>" (end of word) appended; every merge
 * adds one token; <|startoftext|> and <|endoftext|> come last. Here the
 * merges are chosen so that every grammar word ends as one "word</w>" token:
 * words are taken one at a time, run through the BPE of the merges so far,
 * and while a word is still more than one symbol, a merge of its first two
 * symbols is appended. A later merge cannot split a word already whole (it
 * has no pairs left), so each word stays one token. Text outside the grammar
 * still encodes, as byte symbols, never as unknown tokens. */
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "world/world.h"

#define MAX_MERGES 512
#define MAX_SYMBOL 64
#define MAX_WORD_SYMBOLS 32

static const char *const function_words[] = {"a",     "an",  "small", "large", "to",  "the",
                                              "left",  "of",  "right", "above", "below", "and",
                                              "on",    "background", "grey", NULL};

/* Every word of world/world.h's grammar: the function words above plus the
 * names of colours, shapes and backgrounds. */
const char *const *demo_grammar_words(void) {
  static const char *words[64];
  if (words[0]) return words;
  int n = 0;
  for (int i = 0; function_words[i]; i++) words[n++] = function_words[i];
  for (int c = 0; c < WORLD_N_COLOURS; c++) words[n++] = world_colour_name(c);
  for (int s = 0; s < WORLD_N_SHAPES; s++) words[n++] = world_shape_name(s);
  for (int b = 0; b < WORLD_N_BACKGROUNDS; b++) words[n++] = world_background_name(b);
  words[n] = NULL;
  return words;
}

typedef struct {
  char first[MAX_SYMBOL], second[MAX_SYMBOL];
} merge_rule;

typedef struct {
  merge_rule rules[MAX_MERGES];
  int n;
} merge_list;

static int rule_rank(const merge_list *m, const char *a, const char *b) {
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->rules[i].first, a) && !strcmp(m->rules[i].second, b)) return i;
  return -1;
}

/* CLIP's bpe(): the word as characters, "</w>" on the last, then the
 * lowest-ranked adjacent pair merged (every occurrence) until none applies.
 * Words here are lower-case ASCII, so characters are byte symbols. */
static int bpe_word(const merge_list *m, const char *word, char syms[][MAX_SYMBOL]) {
  int n = 0;
  size_t len = strlen(word);
  for (size_t i = 0; i < len && n < MAX_WORD_SYMBOLS; i++) {
    snprintf(syms[n], MAX_SYMBOL, "%c%s", word[i], i + 1 == len ? "</w>" : "");
    n++;
  }
  for (;;) {
    int best = -1;
    for (int i = 0; i + 1 < n; i++) {
      int r = rule_rank(m, syms[i], syms[i + 1]);
      if (r >= 0 && (best < 0 || r < best)) best = r;
    }
    if (best < 0) return n;
    const merge_rule *rule = &m->rules[best];
    int out = 0;
    for (int i = 0; i < n; i++) {
      if (i + 1 < n && !strcmp(syms[i], rule->first) && !strcmp(syms[i + 1], rule->second)) {
        char joined[MAX_SYMBOL];
        snprintf(joined, sizeof joined, "%s%s", syms[i], syms[i + 1]);
        memcpy(syms[out++], joined, MAX_SYMBOL);
        i++;
      } else if (out != i) {
        memcpy(syms[out++], syms[i], MAX_SYMBOL);
      } else {
        out++;
      }
    }
    n = out;
  }
}

static int build_merges(merge_list *m, dpo_error *err) {
  m->n = 0;
  const char *const *words = demo_grammar_words();
  for (int w = 0; words[w]; w++) {
    char syms[MAX_WORD_SYMBOLS][MAX_SYMBOL];
    while (bpe_word(m, words[w], syms) > 1) {
      if (m->n == MAX_MERGES) return dpo_fail(err, DPO_ERR_USAGE, "shapes tokenizer: too many merges");
      snprintf(m->rules[m->n].first, MAX_SYMBOL, "%s", syms[0]);
      snprintf(m->rules[m->n].second, MAX_SYMBOL, "%s", syms[1]);
      m->n++;
    }
  }
  return DPO_OK;
}

/* GPT-2/CLIP bytes_to_unicode(): printable Latin-1 bytes stand for
 * themselves, the others for code points 256, 257, ... in byte order. */
static void byte_symbol(int byte, char out[8]) {
  int printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
  unsigned cp = (unsigned)byte;
  if (!printable) {
    int k = 0;
    for (int b = 0; b < byte; b++)
      if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) k++;
    cp = 256u + (unsigned)k;
  }
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
  } else {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    out[2] = 0;
  }
}

static int write_json(const char *path, json_t *root, dpo_error *err) {
  int rc = root ? dpo_json_write_file(path, root, err) : dpo_fail(err, DPO_ERR_USAGE, "%s: out of memory", path);
  json_decref(root);
  return rc;
}

static int write_vocab(const char *dir, const merge_list *m, dpo_error *err) {
  json_t *vocab = json_object();
  int id = 0;
  char sym[8], key[MAX_SYMBOL * 2 + 8];
  for (int b = 0; b < 256; b++) {
    byte_symbol(b, sym);
    json_object_set_new(vocab, sym, json_integer(id++));
  }
  for (int b = 0; b < 256; b++) {
    byte_symbol(b, sym);
    snprintf(key, sizeof key, "%s</w>", sym);
    json_object_set_new(vocab, key, json_integer(id++));
  }
  for (int i = 0; i < m->n; i++) {
    snprintf(key, sizeof key, "%s%s", m->rules[i].first, m->rules[i].second);
    json_object_set_new(vocab, key, json_integer(id++));
  }
  json_object_set_new(vocab, "<|startoftext|>", json_integer(id++));
  json_object_set_new(vocab, "<|endoftext|>", json_integer(id++));
  char path[4096];
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  return write_json(path, vocab, err);
}

static int write_merges(const char *dir, const merge_list *m, dpo_error *err) {
  size_t cap = 64 + (size_t)m->n * (2 * MAX_SYMBOL + 2);
  char *text = malloc(cap);
  if (!text) return dpo_fail(err, DPO_ERR_USAGE, "%s: out of memory", dir);
  size_t len = (size_t)snprintf(text, cap, "#version: 0.2 (shapes-world grammar)\n");
  for (int i = 0; i < m->n; i++)
    len += (size_t)snprintf(text + len, cap - len, "%s %s\n", m->rules[i].first, m->rules[i].second);
  char path[4096];
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  int rc = dpo_atomic_write(path, text, len, err);
  free(text);
  return rc;
}

int demo_tokenizer_write(const char *dir, int max_length, dpo_error *err) {
  merge_list *m = malloc(sizeof *m);
  if (!m) return dpo_fail(err, DPO_ERR_USAGE, "%s: out of memory", dir);
  int rc = build_merges(m, err);
  if (!rc) rc = dpo_mkdir_p(dir, err);
  if (!rc) rc = write_vocab(dir, m, err);
  if (!rc) rc = write_merges(dir, m, err);
  free(m);
  if (rc) return rc;
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  json_t *cfg = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:s}", "tokenizer_class", "CLIPTokenizer",
                          "bos_token", "<|startoftext|>", "eos_token", "<|endoftext|>", "unk_token",
                          "<|endoftext|>", "pad_token", "<|endoftext|>", "model_max_length", max_length,
                          "do_lower_case", 1, "clean_up_tokenization_spaces", "true");
  if (cfg) json_object_set_new(cfg, "clean_up_tokenization_spaces", json_true());
  if ((rc = write_json(path, cfg, err))) return rc;
  snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
  json_t *map = json_pack("{s:s, s:s, s:s, s:s}", "bos_token", "<|startoftext|>", "eos_token", "<|endoftext|>",
                          "unk_token", "<|endoftext|>", "pad_token", "<|endoftext|>");
  return write_json(path, map, err);
}
