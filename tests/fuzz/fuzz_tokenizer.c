/* Fuzzes CLIP tokenization of arbitrary text (UTF-8 checks, the Unicode
 * cleanup and NFC, the split pattern, byte-level BPE, special tokens) over a
 * small tokenizer made at start-up: the 512 byte symbols, a few merges, and
 * SD 2.x's "!" pad token. The first byte picks the context length (2..77).
 * A success must give BOS, ids in range, EOS at used-1 and pads after it; a
 * failure must say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trainer/trainer.h"

static dpo_tokenizer *tok;
static int vocab_size;

/* GPT-2's bytes_to_unicode symbol of byte b, as UTF-8. */
static int byte_symbol(int b, int *next_extra, char *out) {
  int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  unsigned cp = printable ? (unsigned)b : 256u + (unsigned)(*next_extra)++;
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  out[0] = (char)(0xC0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fputs(text, f);
  fclose(f);
}

static void make_tokenizer(void) {
  char dir[] = "/tmp/dpo-fuzz-tokenizer-XXXXXX";
  if (!mkdtemp(dir)) abort();
  size_t cap = 1 << 16, n = 0;
  char *vocab = malloc(cap);
  int id = 0, extra = 0;
  n += (size_t)snprintf(vocab + n, cap - n, "{");
  for (int pass = 0; pass < 2; pass++) {
    extra = 0;
    for (int b = 0; b < 256; b++) {
      char sym[3] = {0};
      int len = byte_symbol(b, &extra, sym);
      sym[len] = '\0';
      const char *escape = (sym[0] == '"' || sym[0] == '\\') && len == 1 ? "\\" : "";
      n += (size_t)snprintf(vocab + n, cap - n, "\"%s%s%s\": %d, ", escape, sym, pass ? "</w>" : "", id++);
    }
  }
  n += (size_t)snprintf(vocab + n, cap - n,
                        "\"th\": %d, \"the</w>\": %d, \"ca\": %d, \"cat</w>\": %d, \"<|startoftext|>\": %d, "
                        "\"<|endoftext|>\": %d}", id, id + 1, id + 2, id + 3, id + 4, id + 5);
  vocab_size = id + 6;
  char path[256];
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  write_text(path, vocab);
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  write_text(path, "#version: 0.2\nt h\nth e</w>\nc a\nca t</w>\n");
  snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
  write_text(path, "{\"pad_token\": \"!\"}");
  dpo_error err;
  if (dpo_tokenizer_load(dir, &tok, &err)) {
    fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
    abort();
  }
  const char *files[] = {"vocab.json", "merges.txt", "special_tokens_map.json"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  free(vocab);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tok) make_tokenizer();
  if (size == 0) return 0;
  int length = 2 + data[0] % (DPO_CLIP_CONTEXT - 1);
  char *text = malloc(size);
  memcpy(text, data + 1, size - 1);
  text[size - 1] = '\0';
  int32_t ids[DPO_CLIP_CONTEXT];
  int used = -1;
  dpo_error err;
  err.msg[0] = '\0';
  int rc = dpo_tokenizer_encode(tok, text, ids, length, &used, &err);
  if (rc == DPO_OK) {
    if (used < 2 || used > length) abort();
    if (ids[0] != dpo_tokenizer_bos_id(tok) || ids[used - 1] != dpo_tokenizer_eos_id(tok)) abort();
    for (int i = 0; i < length; i++)
      if (ids[i] < 0 || ids[i] >= vocab_size) abort();
    for (int i = used; i < length; i++)
      if (ids[i] != dpo_tokenizer_pad_id(tok)) abort();
  } else if (err.msg[0] == '\0') {
    abort();
  }
  free(text);
  return 0;
}
