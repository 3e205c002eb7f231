/* CLIP tokenizer edge cases and malformed tokenizer folders. Expected ids
 * were printed by transformers' CLIPTokenizer (4.46.3, no ftfy) on the
 * fixture vocabulary; the exhaustive comparison is the golden test. */
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "tests/tokenizer_fixture.h"
#include "trainer/trainer.h"

#define BOS 49406
#define EOS 49407

static void check_ids(dpo_tokenizer *tok, const char *text, const int *want, int n_want) {
  int32_t ids[DPO_CLIP_CONTEXT];
  int used = -1;
  dpo_error err = {0};
  CHECK_INT(dpo_tokenizer_encode(tok, text, ids, DPO_CLIP_CONTEXT, &used, &err), DPO_OK);
  CHECK_INT(used, n_want);
  for (int i = 0; i < n_want && i < DPO_CLIP_CONTEXT; i++) CHECK_INT(ids[i], want[i]);
  for (int i = n_want; i < DPO_CLIP_CONTEXT; i++) CHECK_INT(ids[i], dpo_tokenizer_pad_id(tok));
}

static void test_real_vocabulary(void) {
  const char *dir = fixture_tokenizer_dir("bare");
  CHECK(dir != NULL);
  dpo_tokenizer *tok = NULL;
  dpo_error err = {0};
  CHECK_INT(dpo_tokenizer_load(dir, &tok, &err), DPO_OK);
  if (!tok) return;
  /* Without config files: SD 1.x defaults. */
  CHECK_INT(dpo_tokenizer_pad_id(tok), EOS);
  CHECK_INT(dpo_tokenizer_max_length(tok), 77);

  const int empty[] = {BOS, EOS};
  check_ids(tok, "", empty, 2);
  check_ids(tok, " \t\n ", empty, 2);
  check_ids(tok, "\x01\x7f", empty, 2);   /* control characters are dropped */

  const int cat[] = {BOS, 320, 1125, 539, 320, 2368, EOS};
  check_ids(tok, "a photo of a cat", cat, 7);
  check_ids(tok, "  A   PHOTO\tof a\nCat  ", cat, 7);   /* whitespace and case */

  const int cafe[] = {BOS, 15304, EOS};
  check_ids(tok, "caf\xc3\xa9", cafe, 3);             /* café */
  check_ids(tok, "CAFE\xcc\x81", cafe, 3);            /* CAFE + combining acute: NFC, lower */
  const int emoji[] = {BOS, 7334, EOS};
  check_ids(tok, "\xf0\x9f\x98\x80", emoji, 3);       /* 😀 */
  const int hello[] = {BOS, 3306, 748, EOS};
  check_ids(tok, "hello!!", hello, 4);

  /* A very long prompt: 75 tokens kept, EOS at position 76. */
  char *long_text = malloc(4001);
  for (int i = 0; i < 2000; i++) memcpy(long_text + 2 * i, "a ", 2);
  long_text[4000] = '\0';
  int32_t ids[DPO_CLIP_CONTEXT];
  int used = 0;
  CHECK_INT(dpo_tokenizer_encode(tok, long_text, ids, DPO_CLIP_CONTEXT, &used, &err), DPO_OK);
  CHECK_INT(used, 77);
  CHECK_INT(ids[0], BOS);
  CHECK_INT(ids[1], 320);
  CHECK_INT(ids[75], 320);
  CHECK_INT(ids[76], EOS);
  int32_t *all = NULL;
  int n_all = 0;
  CHECK_INT(dpo_tokenizer_tokens(tok, long_text, &all, &n_all, &err), DPO_OK);
  CHECK_INT(n_all, 2000);   /* untruncated, no BOS/EOS */
  free(all);
  /* A shorter context keeps EOS last too. */
  CHECK_INT(dpo_tokenizer_encode(tok, long_text, ids, 10, &used, &err), DPO_OK);
  CHECK_INT(used, 10);
  CHECK_INT(ids[9], EOS);
  free(long_text);

  /* Caller and input errors. */
  CHECK_INT(dpo_tokenizer_encode(tok, "x", ids, 1, NULL, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "at least 2");
  CHECK_INT(dpo_tokenizer_encode(tok, "ok \xc3\x28", ids, DPO_CLIP_CONTEXT, NULL, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "byte 4");
  CHECK_INT(dpo_tokenizer_encode(tok, "\xed\xa0\x80", ids, DPO_CLIP_CONTEXT, NULL, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "U+D800");   /* surrogates are not UTF-8 */
  CHECK_INT(dpo_tokenizer_encode(tok, "\xc0\xaf", ids, DPO_CLIP_CONTEXT, NULL, &err), DPO_ERR_DATA);   /* overlong */
  CHECK_INT(dpo_tokenizer_encode(tok, "abc\xe2\x82", ids, DPO_CLIP_CONTEXT, NULL, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "truncated");
  char *huge = malloc(DPO_TOKENIZER_MAX_TEXT + 2);
  memset(huge, 'a', DPO_TOKENIZER_MAX_TEXT + 1);
  huge[DPO_TOKENIZER_MAX_TEXT + 1] = '\0';
  CHECK_INT(dpo_tokenizer_encode(tok, huge, ids, DPO_CLIP_CONTEXT, NULL, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "longer than the limit");
  free(huge);
  dpo_tokenizer_free(tok);
}

static void test_sd2_pad(void) {
  const char *dir = fixture_tokenizer_dir("sd2");
  dpo_tokenizer *tok = NULL;
  dpo_error err = {0};
  CHECK_INT(dpo_tokenizer_load(dir, &tok, &err), DPO_OK);
  if (!tok) return;
  CHECK_INT(dpo_tokenizer_pad_id(tok), 0);
  int32_t ids[DPO_CLIP_CONTEXT];
  CHECK_INT(dpo_tokenizer_encode(tok, "a cat", ids, DPO_CLIP_CONTEXT, NULL, &err), DPO_OK);
  CHECK_INT(ids[3], EOS);
  CHECK_INT(ids[4], 0);
  CHECK_INT(ids[76], 0);
  dpo_tokenizer_free(tok);
}

/* A tiny folder: vocab and merges written by the test. */
static const char *tiny_dir(const char *name, const char *vocab, const char *merges, const char *config) {
  const char *dir = test_path(name);
  static char keep[8][4096];
  static int next = 0;
  char *d = keep[next++ % 8];
  snprintf(d, sizeof keep[0], "%s", dir);
  dpo_error err = {0};
  dpo_mkdir_p(d, &err);
  char path[4200];
  if (vocab) {
    snprintf(path, sizeof path, "%s/vocab.json", d);
    test_write_file(path, vocab, strlen(vocab));
  }
  if (merges) {
    snprintf(path, sizeof path, "%s/merges.txt", d);
    test_write_file(path, merges, strlen(merges));
  }
  if (config) {
    snprintf(path, sizeof path, "%s/tokenizer_config.json", d);
    test_write_file(path, config, strlen(config));
  }
  return d;
}

static const char *TINY_VOCAB =
    "{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1, \"a\": 2, \"b</w>\": 3, \"ab</w>\": 4, \"c</w>\": 5}";

static void test_tiny_bpe(void) {
  dpo_tokenizer *tok = NULL;
  dpo_error err = {0};
  const char *dir = tiny_dir("tiny", TINY_VOCAB, "#version: 0.2\na b</w>\n", NULL);
  CHECK_INT(dpo_tokenizer_load(dir, &tok, &err), DPO_OK);
  if (!tok) return;
  int32_t *ids = NULL;
  int n = 0;
  CHECK_INT(dpo_tokenizer_tokens(tok, "ab AB c zz", &ids, &n, &err), DPO_OK);
  /* ab -> ab</w>; AB the same; c -> c</w>; zz has no symbols: z, z</w> -> unk twice */
  const int want[] = {4, 4, 5, 1, 1};
  CHECK_INT(n, 5);
  for (int i = 0; i < n && i < 5; i++) CHECK_INT(ids[i], want[i]);
  free(ids);
  /* Special tokens in the text map straight to their ids. */
  CHECK_INT(dpo_tokenizer_tokens(tok, "c<|endoftext|>c", &ids, &n, &err), DPO_OK);
  CHECK_INT(n, 3);
  if (n == 3) {
    CHECK_INT(ids[0], 5);
    CHECK_INT(ids[1], 1);
    CHECK_INT(ids[2], 5);
  }
  free(ids);
  dpo_tokenizer_free(tok);
}

static void expect_load_error(const char *dir, const char *fragment) {
  dpo_tokenizer *tok = NULL;
  dpo_error err = {0};
  CHECK_INT(dpo_tokenizer_load(dir, &tok, &err), DPO_ERR_DATA);
  CHECK(tok == NULL);
  CHECK_CONTAINS(err.msg, fragment);
}

static void test_bad_folders(void) {
  const char *merges = "#version: 0.2\na b</w>\n";
  expect_load_error(tiny_dir("no_vocab", NULL, merges, NULL), "vocab.json");
  expect_load_error(tiny_dir("no_merges", TINY_VOCAB, NULL, NULL), "merges.txt");
  expect_load_error(tiny_dir("vocab_array", "[1, 2]", merges, NULL), "expected a JSON object");
  expect_load_error(tiny_dir("vocab_string_id", "{\"a\": \"x\"}", merges, NULL), "token \"a\"");
  expect_load_error(tiny_dir("vocab_negative", "{\"a\": -1}", merges, NULL), "token \"a\"");
  expect_load_error(tiny_dir("vocab_empty", "{}", merges, NULL), "empty");
  expect_load_error(tiny_dir("vocab_bad_json", "{\"a\": ", merges, NULL), "vocab.json:1:");
  expect_load_error(tiny_dir("merges_header_only", TINY_VOCAB, "#version: 0.2\n", NULL), "no merges");
  expect_load_error(tiny_dir("class", TINY_VOCAB, merges, "{\"tokenizer_class\": \"BertTokenizer\"}"),
                    "\"tokenizer_class\": \"BertTokenizer\"");
  expect_load_error(tiny_dir("pad_unknown", TINY_VOCAB, merges, "{\"pad_token\": \"<pad>\"}"), "pad_token \"<pad>\"");
  expect_load_error(tiny_dir("pad_number", TINY_VOCAB, merges, "{\"pad_token\": 5}"), "\"pad_token\"");
  expect_load_error(tiny_dir("bos_object", TINY_VOCAB, merges, "{\"bos_token\": {\"lstrip\": false}}"),
                    "\"bos_token\"");
  expect_load_error(tiny_dir("lower", TINY_VOCAB, merges, "{\"do_lower_case\": false}"), "do_lower_case");
  expect_load_error(tiny_dir("added_key", TINY_VOCAB, merges, "{\"added_tokens_decoder\": {\"x\": {\"content\": \"a\"}}}"),
                    "\"added_tokens_decoder\" entry \"x\"");
  expect_load_error(tiny_dir("config_json", TINY_VOCAB, merges, "{\"pad_token\": }"), "tokenizer_config.json:1:");
  expect_load_error(tiny_dir("config_array", TINY_VOCAB, merges, "[]"), "expected a JSON object");

  /* Accepted: huge model_max_length (as transformers writes 1e30) falls back to 77,
   * an added token with its own id is split out of the text. */
  dpo_tokenizer *tok = NULL;
  dpo_error err = {0};
  const char *dir = tiny_dir("added", TINY_VOCAB, merges,
                             "{\"model_max_length\": 1000000000000000019884624838656, \"pad_token\": \"c</w>\","
                             " \"added_tokens_decoder\": {\"7\": {\"content\": \"<x>\"}}}");
  CHECK_INT(dpo_tokenizer_load(dir, &tok, &err), DPO_OK);
  if (tok) {
    CHECK_INT(dpo_tokenizer_max_length(tok), 77);
    CHECK_INT(dpo_tokenizer_pad_id(tok), 5);
    int32_t *ids = NULL;
    int n = 0;
    CHECK_INT(dpo_tokenizer_tokens(tok, "ab<x>ab", &ids, &n, &err), DPO_OK);
    CHECK_INT(n, 3);
    if (n == 3) CHECK_INT(ids[1], 7);
    free(ids);
    dpo_tokenizer_free(tok);
  }
}

int main(void) {
  test_real_vocabulary();
  test_sd2_pad();
  test_tiny_bpe();
  test_bad_folders();
  return test_finish();
}
