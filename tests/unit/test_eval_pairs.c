/* AI-feedback pairs and run folders as the other libraries read them: the
 * pairs.jsonl of eval_make_pairs loads with the trainer's reader (images
 * checked) with labels that follow the scores; a tie margin makes ties; a
 * generated run folder is accepted by the studies' strict manifest reader;
 * a torn manifest line is repaired on resume. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "studies/studies.h"
#include "tests/test.h"
#include "trainer/trainer.h"

static void base_config(eval_pairs_config *cfg, const char *out) {
  memset(cfg, 0, sizeof *cfg);
  eval_generate_config_default(&cfg->gen);
  cfg->gen.model = test_source_path("tests/fixtures/pipelines/tiny_pixel");
  cfg->gen.prompts = "world:train:3";
  cfg->gen.out = out;
  cfg->gen.images_per_prompt = 2;
  cfg->gen.sample.steps = 2;
  cfg->gen.threads = 1;
  cfg->gen.quiet = 1;
  cfg->score_batch = 4;
}

int main(void) {
  dpo_error err = {0};
  char out[1024], path[1200];
  snprintf(out, sizeof out, "%s", test_path("pairs"));
  eval_pairs_config cfg;
  base_config(&cfg, out);
  cfg.scorer = eval_find_scorer("pixel-pair");
  cfg.score_name = "alignment";
  eval_pairs_stats stats;
  CHECK_INT(eval_make_pairs(&cfg, &stats, &err), DPO_OK);
  if (err.code) fprintf(stderr, "%s\n", err.msg);
  CHECK_INT(stats.n_pairs, 3);
  CHECK_INT(stats.n_prompts, 3);

  snprintf(path, sizeof path, "%s/pairs.jsonl", out);
  dpo_pairs_options opt = {DPO_TIES_HALF, NULL, 1};
  dpo_pairs set;
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_OK);
  if (err.code) fprintf(stderr, "%s\n", err.msg);
  CHECK_INT(set.n, 3);
  /* The winner has the higher redness (the "alignment" of pixel-pair). */
  for (int i = 0; i < set.n; i++) {
    dpo_image w, l;
    CHECK_INT(dpo_image_read(set.pairs[i].image_w, 3, &w, &err), DPO_OK);
    CHECK_INT(dpo_image_read(set.pairs[i].image_l, 3, &l, &err), DPO_OK);
    if (set.pairs[i].label == 1.0f) CHECK(eval_mean_redness(&w) > eval_mean_redness(&l));
    CHECK(strncmp(set.pairs[i].source, "ai-feedback:pixel-pair:alignment", 32) == 0);
    dpo_image_free(&w);
    dpo_image_free(&l);
  }
  dpo_pairs_free(&set);

  /* A margin wider than any difference: every pair is a tie. */
  cfg.tie_margin = 10.0;
  CHECK_INT(eval_make_pairs(&cfg, &stats, &err), DPO_OK);
  CHECK_INT(stats.n_ties, 3);
  dpo_pairs_options skip = {DPO_TIES_SKIP, NULL, 1};
  CHECK_INT(dpo_pairs_load(path, &skip, &set, &err), DPO_ERR_DATA);   /* nothing left to train on */
  dpo_pairs_free(&set);
  cfg.tie_margin = 0;

  /* Best-worst pairing over 4 images a prompt: one line a prompt, its
   * image_0 the highest-scoring (by redness) of the four and image_1 the
   * lowest; the same run folder gives the all-pairs file 6 lines a prompt. */
  char out4[1024];
  snprintf(out4, sizeof out4, "%s", test_path("pairs4"));
  eval_pairs_config c4;
  base_config(&c4, out4);
  c4.scorer = cfg.scorer;
  c4.score_name = "alignment";
  c4.gen.images_per_prompt = 4;
  CHECK_INT(eval_make_pairs(&c4, &stats, &err), DPO_OK);
  CHECK_INT(stats.n_pairs, 18);
  c4.best_worst = 1;
  CHECK_INT(eval_make_pairs(&c4, &stats, &err), DPO_OK);
  CHECK_INT(stats.n_pairs + stats.n_tied_prompts, 3);
  CHECK(stats.n_pairs >= 1);
  snprintf(path, sizeof path, "%s/pairs.jsonl", out4);
  dpo_pairs bw;
  CHECK_INT(dpo_pairs_load(path, &opt, &bw, &err), DPO_OK);
  CHECK_INT(bw.n, stats.n_pairs);
  eval_run run4;
  char run_dir[1200];
  snprintf(run_dir, sizeof run_dir, "%s/run", out4);
  CHECK_INT(eval_run_load(run_dir, &run4, &err), DPO_OK);
  for (int i = 0; i < bw.n; i++) {
    dpo_image w, l;
    CHECK_INT(dpo_image_read(bw.pairs[i].image_w, 3, &w, &err), DPO_OK);
    CHECK_INT(dpo_image_read(bw.pairs[i].image_l, 3, &l, &err), DPO_OK);
    double rw = eval_mean_redness(&w), rl = eval_mean_redness(&l), hi = -1, lo = 2;
    for (int k = 0; k < run4.n; k++) {
      if (strcmp(run4.items[k].prompt, bw.pairs[i].caption)) continue;
      char file[1400];
      snprintf(file, sizeof file, "%s/%s", run_dir, run4.items[k].file);
      dpo_image im;
      CHECK_INT(dpo_image_read(file, 3, &im, &err), DPO_OK);
      double r = eval_mean_redness(&im);
      hi = r > hi ? r : hi;
      lo = r < lo ? r : lo;
      dpo_image_free(&im);
    }
    CHECK_NEAR(rw, hi, 1e-12);
    CHECK_NEAR(rl, lo, 1e-12);
    dpo_image_free(&w);
    dpo_image_free(&l);
  }
  eval_run_free(&run4);
  dpo_pairs_free(&bw);

  /* Errors: one image per prompt, an unknown score. */
  cfg.gen.images_per_prompt = 1;
  CHECK_INT(eval_make_pairs(&cfg, &stats, &err), DPO_ERR_USAGE);
  cfg.gen.images_per_prompt = 2;
  cfg.score_name = "nope";
  CHECK_INT(eval_make_pairs(&cfg, &stats, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "no score \"nope\"");

  /* Relabel: with the same scorer the labels stay; a line whose image is
   * missing fails naming the line; nothing is written then. */
  char in[1200], rel[1200];
  snprintf(in, sizeof in, "%s/pairs.jsonl", out);
  snprintf(rel, sizeof rel, "%s/relabelled.jsonl", out);
  cfg.score_name = "alignment";
  CHECK_INT(eval_make_pairs(&cfg, &stats, &err), DPO_OK);
  CHECK_INT(eval_relabel_pairs(in, rel, cfg.scorer, "alignment", 0, &stats, &err), DPO_OK);
  CHECK_INT(stats.n_pairs, 3);
  dpo_pairs a, b;
  CHECK_INT(dpo_pairs_load(in, &opt, &a, &err), DPO_OK);
  CHECK_INT(dpo_pairs_load(rel, &opt, &b, &err), DPO_OK);
  CHECK_INT(a.n, b.n);
  for (int i = 0; i < a.n && i < b.n; i++) CHECK(a.pairs[i].swapped == b.pairs[i].swapped && a.pairs[i].label == b.pairs[i].label);
  dpo_pairs_free(&a);
  dpo_pairs_free(&b);
  char bad[1200];
  snprintf(bad, sizeof bad, "%s/bad.jsonl", out);
  const char *text = "{\"caption\": \"x\", \"image_0\": \"run/images/000000-0.png\", \"image_1\": \"nope.png\", "
                     "\"label_0\": 1, \"source\": \"t\"}\n";
  CHECK_INT(test_write_file(bad, text, strlen(text)), 0);
  char bad_out[1200];
  snprintf(bad_out, sizeof bad_out, "%s/bad-out.jsonl", out);
  CHECK_INT(eval_relabel_pairs(bad, bad_out, cfg.scorer, NULL, 0, &stats, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "bad.jsonl:1");
  CHECK_CONTAINS(err.msg, "nope.png");
  FILE *fp = fopen(bad_out, "rb");
  CHECK(fp == NULL);
  if (fp) fclose(fp);
  CHECK_INT(eval_relabel_pairs(in, "/elsewhere.jsonl", cfg.scorer, NULL, 0, &stats, &err), DPO_ERR_USAGE);

  /* The run folder is a valid study input. */
  char run[1200];
  snprintf(run, sizeof run, "%s/run", out);
  studies_manifest m;
  dpo_error_clear(&err);
  CHECK_INT(studies_manifest_load(run, &m, &err), DPO_OK);
  if (err.code) fprintf(stderr, "%s\n", err.msg);
  CHECK_INT(m.n_entries, 6);
  studies_manifest_free(&m);

  /* A torn last line is dropped on resume and its image made again. */
  snprintf(path, sizeof path, "%s/manifest.jsonl", run);
  char *data;
  size_t len;
  CHECK_INT(dpo_read_file(path, 1u << 20, &data, &len, &err), DPO_OK);
  char *last = data + len - 2;
  while (last > data && last[-1] != '\n') last--;
  size_t keep = (size_t)(last - data) + 20;   /* 20 bytes of the last line, no newline */
  CHECK_INT(test_write_file(path, data, keep), 0);
  free(data);
  eval_generate_config gen = cfg.gen;
  gen.out = run;
  eval_generate_stats gs;
  CHECK_INT(eval_generate(&gen, &gs, &err), DPO_OK);
  CHECK_INT(gs.dropped_lines, 1);
  CHECK_INT(gs.skipped, 5);
  CHECK_INT(gs.generated, 1);
  CHECK_INT(studies_manifest_load(run, &m, &err), DPO_OK);
  CHECK_INT(m.n_entries, 6);
  studies_manifest_free(&m);
  return test_finish();
}
