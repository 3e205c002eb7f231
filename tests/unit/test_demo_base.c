/* The shapes-world tokenizer and the shipped base model (world/base/): every
 * grammar word is one known token, every prompt of both splits encodes
 * without unknown tokens inside the model's context, and the base model's
 * samples follow held-out prompts better than a floor (with a fixed seed). */
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "tests/test.h"
#include "world/world.h"

/* A tokenizer written fresh: each word one token "word</w>", not unknown. */
static void test_written_tokenizer_has_every_word(void) {
  dpo_error err = {0};
  const char *dir = test_path("tok");
  CHECK_INT(demo_tokenizer_write(dir, DEMO_MAX_TOKENS, &err), DPO_OK);
  dpo_tokenizer *tok = NULL;
  CHECK_INT(dpo_tokenizer_load(dir, &tok, &err), DPO_OK);
  if (!tok) return;
  CHECK_INT(dpo_tokenizer_max_length(tok), DEMO_MAX_TOKENS);
  CHECK_INT(dpo_tokenizer_pad_id(tok), dpo_tokenizer_eos_id(tok));
  CHECK_INT(dpo_tokenizer_eos_id(tok), dpo_tokenizer_vocab_size(tok) - 1);
  const char *const *words = demo_grammar_words();
  int n_words = 0;
  for (int w = 0; words[w]; w++, n_words++) {
    int32_t *ids = NULL;
    int n = 0;
    CHECK_INT(dpo_tokenizer_tokens(tok, words[w], &ids, &n, &err), DPO_OK);
    CHECK_INT(n, 1);
    /* A whole word: a merge result, or "a</w>" (a byte symbol with the end
     * of word, ids 256..511); never a special token. */
    if (n == 1) CHECK(ids[0] >= 256 && ids[0] < dpo_tokenizer_eos_id(tok) - 1);
    free(ids);
  }
  CHECK(n_words >= 30);
  /* Text outside the grammar still encodes as byte symbols, never unknown. */
  int32_t *ids = NULL;
  int n = 0;
  CHECK_INT(dpo_tokenizer_tokens(tok, "zebra!", &ids, &n, &err), DPO_OK);
  CHECK(n >= 2);
  for (int i = 0; i < n; i++) CHECK(ids[i] < 512);
  free(ids);
  dpo_tokenizer_free(tok);
}

/* Every prompt of both splits fits the context with no unknown (eos) id. */
static void check_split_encodes(dpo_tokenizer *tok, world_split split, int n) {
  dpo_error err = {0};
  world_prompt *p = calloc((size_t)n, sizeof *p);
  CHECK_INT(world_prompts_generate(split, 7, n, p, &err), DPO_OK);
  int eos = dpo_tokenizer_eos_id(tok), bad = 0;
  for (int i = 0; i < n; i++) {
    char text[WORLD_PROMPT_MAX];
    CHECK_INT(world_prompt_format(&p[i], text, sizeof text, &err), DPO_OK);
    int32_t *ids = NULL;
    int m = 0;
    CHECK_INT(dpo_tokenizer_tokens(tok, text, &ids, &m, &err), DPO_OK);
    int words = 1;
    for (const char *c = text; *c; c++) words += *c == ' ';
    if (m != words || m + 2 > DEMO_MAX_TOKENS) bad++;   /* one token a word */
    for (int k = 0; k < m; k++)
      if (ids[k] == eos || ids[k] < 256) bad++;
    free(ids);
  }
  CHECK_INT(bad, 0);
  free(p);
}

static void test_base_loads_and_encodes(dpo_pipeline *pipe) {
  CHECK(pipe->vae == NULL);
  const dpo_unet_config *uc = dpo_unet_get_config(pipe->unet);
  CHECK_INT(uc->in_channels, 3);
  CHECK_INT(uc->sample_size, WORLD_DEFAULT_SIZE);
  CHECK_INT(uc->cross_attention_dim, dpo_clip_get_config(pipe->text_encoder)->hidden_size);
  CHECK_INT(dpo_clip_get_config(pipe->text_encoder)->vocab_size, dpo_tokenizer_vocab_size(pipe->tokenizer));
  CHECK_INT(pipe->scheduler.kind, DPO_SCHED_DDIM);
  check_split_encodes(pipe->tokenizer, WORLD_SPLIT_TRAIN, 2000);
  check_split_encodes(pipe->tokenizer, WORLD_SPLIT_HELDOUT, 200);
}

/* The shipped base scores 0.302 on these 8 held-out prompts (seed 1, 20
 * DDIM steps, guidance 3; 0.355 over 96 prompts at 50 steps, README.md
 * there); a model trained 5 steps scores about 0.17 (noise still meets the
 * "nothing else" constraint). The floor sits between the two with a margin
 * for float differences across builds. */
#define BASE_ALIGNMENT_FLOOR 0.24

static void test_base_samples_follow_prompts(dpo_pipeline *pipe) {
  dpo_error err = {0};
  kn_ctx ctx;
  CHECK_INT(kn_ctx_init(&ctx, 1, &err), DPO_OK);
  demo_sample_options so;
  demo_sample_defaults(&so);
  so.steps = 20;
  demo_alignment_result r;
  CHECK_INT(demo_measure_alignment(pipe, &ctx, &so, 8, 0, 1, &r, &err), DPO_OK);
  if (r.model_alignment < BASE_ALIGNMENT_FLOOR)
    test_fail(__FILE__, __LINE__, "base alignment %.3f below the floor %.2f", r.model_alignment, BASE_ALIGNMENT_FLOOR);
  CHECK(r.truth_alignment > 0.95);
  /* Same seed, same images: the sampler is deterministic. */
  const char *prompt[1] = {"a red circle to the left of a blue square"};
  uint64_t index[1] = {3};
  dpo_image a[1], b[1];
  CHECK_INT(demo_sample(pipe, &ctx, &so, prompt, index, 1, 5, a, &err), DPO_OK);
  CHECK_INT(demo_sample(pipe, &ctx, &so, prompt, index, 1, 5, b, &err), DPO_OK);
  CHECK(memcmp(a[0].pixels, b[0].pixels, 32 * 32 * 3) == 0);
  index[0] = 4;
  dpo_image c[1];
  CHECK_INT(demo_sample(pipe, &ctx, &so, prompt, index, 1, 5, c, &err), DPO_OK);
  CHECK(memcmp(a[0].pixels, c[0].pixels, 32 * 32 * 3) != 0);
  dpo_image_free(&a[0]);
  dpo_image_free(&b[0]);
  dpo_image_free(&c[0]);
  kn_ctx_free(&ctx);
}

int main(void) {
  test_written_tokenizer_has_every_word();
  dpo_pipeline pipe;
  dpo_error err = {0};
  int rc = dpo_pipeline_load(test_source_path("world/base"), &pipe, &err);
  CHECK_INT(rc, DPO_OK);
  if (rc) {
    fprintf(stderr, "%s\n", err.msg);
    return test_finish();
  }
  test_base_loads_and_encodes(&pipe);
  test_base_samples_follow_prompts(&pipe);
  dpo_pipeline_free(&pipe);
  return test_finish();
}
