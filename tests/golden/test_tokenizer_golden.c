/* The CLIP tokenizer against transformers' CLIPTokenizer (4.46.3, without
 * ftfy) with CLIP's real vocabulary: the ids of every PartiPrompts and HPSv2
 * prompt (4832) and of hand-written edge cases (Unicode classes, NFC, final
 * sigma, CJK, control characters, special tokens in the text, truncation),
 * padded to 77, under an SD 1.x config (pad <|endoftext|>) and an SD 2.x one
 * (pad "!", which is then also split out of the text). The expected ids come
 * from tests/fixtures/make_tokenizer_fixtures.py. Ids must be identical. */
#include <stdlib.h>
#include <string.h>

#include "prompts/prompts.h"
#include "tests/test.h"
#include "tests/tokenizer_fixture.h"
#include "trainer/trainer.h"

static int mismatches_shown = 0;

static void check_ids(dpo_tokenizer *tok, const char *variant, const char *text, const json_t *want, int line) {
  int32_t ids[DPO_CLIP_CONTEXT];
  dpo_error err = {0};
  if (dpo_tokenizer_encode(tok, text, ids, DPO_CLIP_CONTEXT, NULL, &err)) {
    test_fail(__FILE__, __LINE__, "line %d (%s): encode failed: %s", line, variant, err.msg);
    return;
  }
  if (!json_is_array(want) || json_array_size(want) != DPO_CLIP_CONTEXT) {
    test_fail(__FILE__, __LINE__, "line %d (%s): fixture has no 77 ids", line, variant);
    return;
  }
  for (int i = 0; i < DPO_CLIP_CONTEXT; i++) {
    long long w = json_integer_value(json_array_get(want, (size_t)i));
    if (ids[i] != w) {
      if (mismatches_shown++ < 20)
        test_fail(__FILE__, __LINE__, "line %d (%s) \"%s\": id %d is %d, expected %lld", line, variant, text, i,
                  ids[i], w);
      else
        test_fail(__FILE__, __LINE__, "line %d (%s): mismatch", line, variant);
      return;
    }
  }
}

/* The fixture's prompt texts must be the ones the prompts library loads. */
static void check_builtin_texts(const char *set_name, char **texts, int n) {
  prompt_set set;
  dpo_error err = {0};
  if (prompt_set_load(set_name, &set, &err)) {
    test_fail(__FILE__, __LINE__, "cannot load %s: %s", set_name, err.msg);
    return;
  }
  CHECK_INT(set.n, n);
  for (int i = 0; i < set.n && i < n; i++)
    if (strcmp(set.items[i].text, texts[i]) != 0)
      test_fail(__FILE__, __LINE__, "%s prompt %d: library \"%s\", fixture \"%s\"", set_name, i, set.items[i].text,
                texts[i]);
  prompt_set_free(&set);
}

int main(void) {
  const char *sd1_dir = fixture_tokenizer_dir("sd1");
  const char *sd2_dir = fixture_tokenizer_dir("sd2");
  CHECK(sd1_dir && sd2_dir);
  if (!sd1_dir || !sd2_dir) return test_finish();
  dpo_tokenizer *sd1 = NULL, *sd2 = NULL;
  dpo_error err = {0};
  if (dpo_tokenizer_load(sd1_dir, &sd1, &err)) test_fail(__FILE__, __LINE__, "sd1: %s", err.msg);
  if (dpo_tokenizer_load(sd2_dir, &sd2, &err)) test_fail(__FILE__, __LINE__, "sd2: %s", err.msg);
  if (!sd1 || !sd2) return test_finish();
  CHECK_INT(dpo_tokenizer_vocab_size(sd1), 49408);
  CHECK_INT(dpo_tokenizer_pad_id(sd1), 49407);
  CHECK_INT(dpo_tokenizer_pad_id(sd2), 0);
  CHECK_INT(dpo_tokenizer_bos_id(sd2), 49406);
  CHECK_INT(dpo_tokenizer_eos_id(sd2), 49407);
  CHECK_INT(dpo_tokenizer_max_length(sd1), 77);

  size_t len;
  char *data = fixture_gunzip(test_source_path("tests/fixtures/tokenizer/ids.jsonl.gz"), &len);
  CHECK(data != NULL);
  if (!data) return test_finish();
  char **parti = calloc(5000, sizeof *parti), **hps = calloc(5000, sizeof *hps);
  int n_parti = 0, n_hps = 0, n_edge = 0, line_no = 0;
  json_t *records[6000];
  int n_records = 0;
  for (char *line = data, *next; line && *line && n_records < 6000; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    line_no++;
    json_t *rec = dpo_json_parse(line, strlen(line), "ids.jsonl", &err);
    if (!rec) {
      test_fail(__FILE__, __LINE__, "line %d: %s", line_no, err.msg);
      continue;
    }
    records[n_records++] = rec;
    const char *set = json_string_value(json_object_get(rec, "set"));
    const char *text = json_string_value(json_object_get(rec, "text"));
    if (!set || !text) {
      test_fail(__FILE__, __LINE__, "line %d: no set/text", line_no);
      continue;
    }
    check_ids(sd1, "sd1", text, json_object_get(rec, "sd1"), line_no);
    check_ids(sd2, "sd2", text, json_object_get(rec, "sd2"), line_no);
    if (!strcmp(set, "parti") && n_parti < 5000) parti[n_parti++] = (char *)text;
    else if (!strcmp(set, "hpsv2") && n_hps < 5000) hps[n_hps++] = (char *)text;
    else n_edge++;
  }
  CHECK_INT(n_parti, 1632);
  CHECK_INT(n_hps, 3200);
  CHECK(n_edge >= 20);
  check_builtin_texts("parti", parti, n_parti);
  check_builtin_texts("hpsv2", hps, n_hps);
  fprintf(stderr, "compared %d prompts (%d parti, %d hpsv2, %d edge cases) under two configs\n", n_records, n_parti,
          n_hps, n_edge);
  for (int i = 0; i < n_records; i++) json_decref(records[i]);
  free(parti);
  free(hps);
  free(data);
  dpo_tokenizer_free(sd1);
  dpo_tokenizer_free(sd2);
  return test_finish();
}
