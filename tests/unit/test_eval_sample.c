/* The sampling pipelines on the tiny fixture pipelines: the starting noise is
 * a pure function of (seed, prompt id, image index); identical weights give
 * identical images whatever the batch; SDEdit keeps more of the source at
 * low strength; resize-and-crop; prompt lists; the errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "tests/test.h"

static const char *fixture(const char *name) {
  static char path[2][4096];
  static int next;
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/pipelines/%s", name);
  char *out = path[next++ % 2];
  snprintf(out, 4096, "%s", test_source_path(rel));
  return out;
}

static void test_noise(void) {
  float a[64], b[64], c[64], d[64];
  eval_initial_noise(3, "parti:17", 1, a, 64);
  eval_initial_noise(3, "parti:17", 1, b, 64);
  eval_initial_noise(3, "parti:17", 2, c, 64);
  eval_initial_noise(4, "parti:17", 1, d, 64);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(memcmp(a, c, sizeof a) != 0);
  CHECK(memcmp(a, d, sizeof a) != 0);
  double mean = 0, var = 0;
  for (int i = 0; i < 64; i++) mean += a[i] / 64.0;
  for (int i = 0; i < 64; i++) var += (a[i] - mean) * (a[i] - mean) / 63.0;
  CHECK(fabs(mean) < 0.5 && var > 0.4 && var < 2.0);
}

static int same_image(const dpo_image *x, const dpo_image *y) {
  return x->width == y->width && x->height == y->height && x->channels == y->channels &&
         memcmp(x->pixels, y->pixels, (size_t)x->width * x->height * x->channels) == 0;
}

/* Two loads of the same weights (two models) and two batch sizes agree. */
static void test_same_weights_same_images(const char *name) {
  dpo_error err = {0};
  dpo_pipeline p1, p2;
  CHECK_INT(dpo_pipeline_load(fixture(name), &p1, &err), DPO_OK);
  CHECK_INT(dpo_pipeline_load(fixture(name), &p2, &err), DPO_OK);
  if (err.code) {
    fprintf(stderr, "%s\n", err.msg);
    return;
  }
  eval_sample_options opt;
  eval_sample_options_default(&opt);
  opt.steps = 3;
  opt.guidance = 3.0f;
  eval_sampler *s1, *s3;
  CHECK_INT(eval_sampler_open(&s1, &p1, &opt, 1, 1, &err), DPO_OK);
  CHECK_INT(eval_sampler_open(&s3, &p2, &opt, 3, 1, &err), DPO_OK);
  size_t lat = eval_sampler_latent_numel(s1);
  CHECK(lat == eval_sampler_latent_numel(s3));
  const char *prompts[3] = {"a red circle", "a blue square", "a red circle"};
  const char *ids[3] = {"t:1", "t:2", "t:1"};
  float *noise = malloc(3 * lat * sizeof(float));
  for (int i = 0; i < 3; i++) eval_initial_noise(9, ids[i], i == 2 ? 1 : 0, noise + i * lat, lat);
  dpo_image batch[3], single[3];
  CHECK_INT(eval_txt2img(s3, prompts, 3, noise, NULL, batch, &err), DPO_OK);
  for (int i = 0; i < 3; i++) CHECK_INT(eval_txt2img(s1, prompts + i, 1, noise + i * lat, NULL, &single[i], &err), DPO_OK);
  for (int i = 0; i < 3; i++) CHECK(same_image(&batch[i], &single[i]));
  CHECK(!same_image(&batch[0], &batch[2]));   /* same prompt, other image index */
  CHECK(!same_image(&batch[0], &batch[1]));
  CHECK_INT(batch[0].channels, 3);
  CHECK_INT(batch[0].width, eval_sampler_resolution(s1));
  /* Too many images for the plan is a usage error. */
  dpo_image extra[3];
  CHECK_INT(eval_txt2img(s1, prompts, 2, noise, NULL, extra, &err), DPO_ERR_USAGE);
  for (int i = 0; i < 3; i++) {
    dpo_image_free(&batch[i]);
    dpo_image_free(&single[i]);
  }
  /* SDEdit: the edit of a flat image stays closer to it at strength 0.3
   * than at 1.0 (which starts from pure noise at the first timestep). */
  dpo_image flat;
  CHECK_INT(dpo_image_alloc(&flat, 40, 30, 3, &err), DPO_OK);
  for (int i = 0; i < 40 * 30 * 3; i++) flat.pixels[i] = i % 3 == 0 ? 230 : 20;
  double dist[2];
  float strengths[2] = {0.3f, 1.0f};
  for (int k = 0; k < 2; k++) {
    eval_sample_options e = opt;
    e.steps = 10;
    e.strength = strengths[k];
    eval_sampler *se;
    CHECK_INT(eval_sampler_open(&se, &p1, &e, 1, 1, &err), DPO_OK);
    dpo_image out;
    dpo_error_clear(&err);
    CHECK_INT(eval_img2img(se, prompts, 1, &flat, noise, NULL, &out, &err), DPO_OK);
    if (err.code) fprintf(stderr, "%s\n", err.msg);
    dist[k] = 0;
    size_t n = (size_t)out.width * out.height;
    for (size_t p = 0; p < n; p++) dist[k] += fabs(out.pixels[3 * p] - 230.0) + fabs(out.pixels[3 * p + 2] - 20.0);
    dpo_image_free(&out);
    eval_sampler_close(se);
  }
  printf("%s: SDEdit distance from the source: strength 0.3 %.1f, 1.0 %.1f\n", name, dist[0], dist[1]);
  CHECK(dist[0] < dist[1]);
  /* A strength that runs no step is refused, as in diffusers. */
  eval_sample_options tiny = opt;
  tiny.steps = 3;
  tiny.strength = 0.2f;
  eval_sampler *st;
  CHECK_INT(eval_sampler_open(&st, &p1, &tiny, 1, 1, &err), DPO_OK);
  dpo_image out;
  CHECK_INT(eval_img2img(st, prompts, 1, &flat, noise, NULL, &out, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "runs no step");
  eval_sampler_close(st);
  dpo_image_free(&flat);
  free(noise);
  eval_sampler_close(s1);
  eval_sampler_close(s3);
  dpo_pipeline_free(&p1);
  dpo_pipeline_free(&p2);
}

static void test_bad_options(void) {
  dpo_error err = {0};
  dpo_pipeline p;
  CHECK_INT(dpo_pipeline_load(fixture("tiny_sd"), &p, &err), DPO_OK);
  eval_sample_options opt;
  eval_sample_options_default(&opt);
  eval_sampler *s = NULL;
  opt.resolution = 10;   /* not a multiple of 4 (VAE factor 2 x UNet 2) */
  CHECK_INT(eval_sampler_open(&s, &p, &opt, 1, 1, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "multiple of 4");
  eval_sample_options_default(&opt);
  opt.steps = 0;
  CHECK_INT(eval_sampler_open(&s, &p, &opt, 1, 1, &err), DPO_ERR_USAGE);
  eval_sample_options_default(&opt);
  CHECK_INT(eval_sampler_open(&s, &p, &opt, 0, 1, &err), DPO_ERR_USAGE);
  CHECK(s == NULL);
  dpo_pipeline_free(&p);
}

static void test_resize(void) {
  dpo_error err = {0};
  dpo_image src, out;
  /* 6 x 2: left third red, middle green, right blue; the centre square (2x2
   * of the middle) is green, and a 1x1 of it too. */
  CHECK_INT(dpo_image_alloc(&src, 6, 2, 4, &err), DPO_OK);
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 6; x++) {
      uint8_t *px = src.pixels + (y * 6 + x) * 4;
      px[0] = x < 2 ? 255 : 0;
      px[1] = x >= 2 && x < 4 ? 255 : 0;
      px[2] = x >= 4 ? 255 : 0;
      px[3] = 7;   /* alpha is dropped */
    }
  CHECK_INT(eval_resize_center_crop(&src, 2, &out, &err), DPO_OK);
  CHECK_INT(out.channels, 3);
  for (int p = 0; p < 4; p++) CHECK(out.pixels[3 * p] == 0 && out.pixels[3 * p + 1] == 255 && out.pixels[3 * p + 2] == 0);
  dpo_image_free(&out);
  CHECK_INT(eval_resize_center_crop(&src, 1, &out, &err), DPO_OK);
  CHECK(out.pixels[1] == 255 && out.pixels[0] == 0);
  dpo_image_free(&out);
  /* Upscaling a flat image keeps it flat. */
  for (int i = 0; i < 12; i++) memcpy(src.pixels + 4 * i, (uint8_t[]){10, 20, 30, 40}, 4);
  CHECK_INT(eval_resize_center_crop(&src, 9, &out, &err), DPO_OK);
  int flat = 1;
  for (int p = 0; p < 81; p++) flat &= out.pixels[3 * p] == 10 && out.pixels[3 * p + 1] == 20 && out.pixels[3 * p + 2] == 30;
  CHECK(flat);
  dpo_image_free(&out);
  dpo_image_free(&src);
}

static void test_prompt_lists(void) {
  dpo_error err = {0};
  char path[1024];
  snprintf(path, sizeof path, "%s", test_path("mine.tsv"));
  const char *tsv = "prompt\tcategory\na cat\tAnimals\na car\tVehicles\na dog\tanimals\n";
  CHECK_INT(test_write_file(path, tsv, strlen(tsv)), 0);
  eval_prompt_list l;
  CHECK_INT(eval_prompt_list_load(path, &l, &err), DPO_OK);
  CHECK_INT(l.n, 3);
  CHECK_STR(l.set_name, "mine");
  CHECK(!l.is_edit);
  eval_prompt_list_free(&l);
  char spec[1100];
  snprintf(spec, sizeof spec, "%s:animals", path);
  CHECK_INT(eval_prompt_list_load(spec, &l, &err), DPO_OK);
  CHECK_INT(l.n, 2);
  if (l.n == 2) CHECK_STR(l.items[1].text, "a dog");
  eval_prompt_list_free(&l);
  snprintf(spec, sizeof spec, "%s:3", path);
  CHECK_INT(eval_prompt_list_load(spec, &l, &err), DPO_OK);
  CHECK_INT(l.n, 1);
  if (l.n == 1) CHECK_STR(l.items[0].id, "mine:3");
  eval_prompt_list_free(&l);
  snprintf(spec, sizeof spec, "%s:Plants", path);
  CHECK_INT(eval_prompt_list_load(spec, &l, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "matches no category");
  CHECK_INT(eval_prompt_list_load("world:train:4", &l, &err), DPO_OK);
  CHECK_INT(l.n, 4);
  CHECK_STR(l.set_name, "world-train");
  if (l.n == 4) CHECK_STR(l.items[3].id, "world-train:3");
  eval_prompt_list_free(&l);
  CHECK_INT(eval_prompt_list_load("world:sideways:4", &l, &err), DPO_ERR_USAGE);
  CHECK_INT(eval_prompt_list_load("world:train:0", &l, &err), DPO_ERR_USAGE);
  CHECK_INT(eval_prompt_list_load("tedbench:3", &l, &err), DPO_OK);
  CHECK_INT(l.n, 1);
  CHECK(l.is_edit && l.n == 1 && l.items[0].source_image != NULL);
  eval_prompt_list_free(&l);
}

/* Validation in memory equals generating the run and scoring it. */
static void test_validate(void) {
  dpo_error err = {0};
  dpo_pipeline p;
  CHECK_INT(dpo_pipeline_load(fixture("tiny_pixel"), &p, &err), DPO_OK);
  if (err.code) return;
  eval_sample_options opt;
  eval_sample_options_default(&opt);
  opt.steps = 3;
  const eval_scorer *judge = eval_find_scorer("shapes-judge");
  eval_validation v;
  CHECK_INT(eval_validate(&p, "world:heldout:5", 0, &opt, 7, judge, 2, 2, 1, &v, &err), DPO_OK);
  if (err.code) fprintf(stderr, "%s\n", err.msg);
  CHECK_INT(v.n, 5);
  eval_generate_config g;
  eval_generate_config_default(&g);
  g.model = fixture("tiny_pixel");
  g.prompts = "world:heldout:5";
  g.out = test_path("validate-run");
  g.sample = opt;
  g.seed = 7;
  g.threads = 1;
  g.quiet = 1;
  eval_generate_stats gs;
  CHECK_INT(eval_generate(&g, &gs, &err), DPO_OK);
  eval_run run;
  CHECK_INT(eval_run_load(g.out, &run, &err), DPO_OK);
  CHECK_INT(eval_run_score(&run, judge, 3, 1, &err), DPO_OK);
  double x[5];
  for (int i = 0; i < run.n && i < 5; i++) x[i] = run.items[i].scores[2];
  eval_summary s;
  CHECK_INT(eval_summarize(x, run.n, 100, 0, &s, &err), DPO_OK);
  CHECK_NEAR(v.median, s.median, 1e-12);
  CHECK_NEAR(v.mean, s.mean, 1e-12);
  CHECK(s.median_lo <= s.median && s.median <= s.median_hi && s.mean_lo <= s.mean && s.mean <= s.mean_hi);
  eval_run_free(&run);
  CHECK_INT(eval_validate(&p, "tedbench", 2, &opt, 7, judge, 0, 1, 1, &v, &err), DPO_ERR_USAGE);
  dpo_pipeline_free(&p);
}

int main(void) {
  test_validate();
  test_noise();
  test_same_weights_same_images("tiny_sd");
  test_same_weights_same_images("tiny_pixel");
  test_bad_options();
  test_resize();
  test_prompt_lists();
  return test_finish();
}
