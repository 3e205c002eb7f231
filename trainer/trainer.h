/* trainer: Stable Diffusion's pieces that the trainer and the samplers share.
 *
 * So far: the CLIP BPE tokenizer (diffusers' `tokenizer/` folder), and the
 * DDPM noise schedule with the samplers DDIM, PNDM, Euler discrete and
 * DPM-Solver++ 2M (`scheduler/scheduler_config.json`), each matching
 * transformers / diffusers step by step. */
#ifndef DPO_TRAINER_H
#define DPO_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* -------------------------------------------------------------- tokenizer */

/* CLIP's context length: Stable Diffusion pads and truncates to it. */
#define DPO_CLIP_CONTEXT 77
/* Longest prompt accepted, in bytes of UTF-8. */
#define DPO_TOKENIZER_MAX_TEXT (1u << 20)

/* CLIPTokenizer as transformers runs it without ftfy: BasicTokenizer cleanup
 * (drop control characters, whitespace to spaces, spaces around CJK, NFC,
 * lower-case), CLIP's split pattern, byte-level BPE with "</w>" ending each
 * word, and the special tokens split out before all that. Not thread-safe:
 * encoding fills a cache of BPE results for repeated words. */
typedef struct dpo_tokenizer dpo_tokenizer;

/* Loads dir/vocab.json and dir/merges.txt, and the special tokens (bos, eos,
 * unk, pad, added tokens) from dir/tokenizer_config.json and
 * dir/special_tokens_map.json when present (the latter wins, as in
 * transformers). Without them pad is "<|endoftext|>" (SD 1.x); SD 2.x folders
 * say "!". */
int dpo_tokenizer_load(const char *dir, dpo_tokenizer **out, dpo_error *err);
void dpo_tokenizer_free(dpo_tokenizer *tok);

/* Encodes text as the pipelines do (padding="max_length", truncation=True):
 * BOS, at most length-2 tokens, EOS, then pad ids up to length. *n_used (may
 * be NULL) receives the count before padding. length is at least 2. */
int dpo_tokenizer_encode(dpo_tokenizer *tok, const char *text, int32_t *ids, int length, int *n_used,
                         dpo_error *err);
/* The BPE token ids of text, without BOS/EOS, truncation or padding; *ids is
 * malloc'd. */
int dpo_tokenizer_tokens(dpo_tokenizer *tok, const char *text, int32_t **ids, int *n, dpo_error *err);

int dpo_tokenizer_bos_id(const dpo_tokenizer *tok);
int dpo_tokenizer_eos_id(const dpo_tokenizer *tok);
int dpo_tokenizer_pad_id(const dpo_tokenizer *tok);
int dpo_tokenizer_vocab_size(const dpo_tokenizer *tok);
/* model_max_length from tokenizer_config.json when it is a sane value
 * (2..4096), else DPO_CLIP_CONTEXT. */
int dpo_tokenizer_max_length(const dpo_tokenizer *tok);

#endif
