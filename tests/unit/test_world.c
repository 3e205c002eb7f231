/* The shapes world: palette, grammar (round trips and every malformed-prompt
 * path), splits, layouts, the renderer's determinism, and the judge's
 * acceptance check (true prompt above a one-attribute perturbation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "world/world.h"

/* --------------------------------------------------------- helpers */

static void format_or_fail(const world_prompt *p, char *buf) {
  dpo_error err;
  if (world_prompt_format(p, buf, WORLD_PROMPT_MAX, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "format: %s", err.msg);
    buf[0] = '\0';
  }
}

static double rgb_distance(const uint8_t a[3], const uint8_t b[3]) {
  double d2 = 0;
  for (int i = 0; i < 3; i++) d2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  return sqrt(d2);
}

static const uint8_t *pixel(const dpo_image *img, int x, int y) {
  return img->pixels + ((size_t)y * (size_t)img->width + (size_t)x) * (size_t)img->channels;
}

static void add_noise(dpo_image *img, float sigma, uint64_t seed) {
  size_t n = (size_t)img->width * (size_t)img->height * 3;
  for (size_t i = 0; i < n; i++) {
    float v = (float)img->pixels[i] + sigma * dpo_rng_normal(seed, 77, i);
    img->pixels[i] = v < 0 ? 0 : v > 255 ? 255 : (uint8_t)(v + 0.5f);
  }
}

static void box_blur(dpo_image *img) {
  int w = img->width, h = img->height;
  size_t bytes = (size_t)w * (size_t)h * 3;
  uint8_t *copy = malloc(bytes);
  memcpy(copy, img->pixels, bytes);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < 3; ch++) {
        int sum = 0, n = 0;
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++) {
            int qx = x + dx, qy = y + dy;
            if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
            sum += copy[((size_t)qy * (size_t)w + (size_t)qx) * 3 + (size_t)ch];
            n++;
          }
        img->pixels[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)ch] = (uint8_t)((sum + n / 2) / n);
      }
  free(copy);
}

/* ---------------------------------------------------------- palette */

static void test_palette_is_well_separated(void) {
  uint8_t all[WORLD_N_COLOURS + WORLD_N_BACKGROUNDS][3];
  int n = 0;
  for (int c = 0; c < WORLD_N_COLOURS; c++) world_colour_rgb(c, all[n++]);
  for (int b = 0; b < WORLD_N_BACKGROUNDS; b++) world_background_rgb(b, all[n++]);
  double least = 1e9;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) least = fmin(least, rgb_distance(all[i], all[j]));
  printf("palette: smallest RGB distance between two colours %.1f\n", least);
  CHECK(least >= 100.0);
  CHECK_STR(world_colour_name(WORLD_PINK), "pink");
  CHECK_STR(world_shape_name(WORLD_CROSS), "cross");
  CHECK_STR(world_relation_name(WORLD_RIGHT_OF), "to the right of");
  CHECK_STR(world_background_name(WORLD_GRAY), "gray");
  CHECK_STR(world_colour_name(99), "?");
}

/* ---------------------------------------------------------- grammar */

static void test_parse_examples(void) {
  struct { const char *in, *canonical; } cases[] = {
      {"a red circle", "a red circle"},
      {"A Large Blue Square.", "a large blue square"},
      {"  an orange   triangle  ", "an orange triangle"},
      {"a orange cross", "an orange cross"},
      {"a red circle left of a blue square", "a red circle to the left of a blue square"},
      {"a red circle to the right of a small blue square", "a red circle to the right of a small blue square"},
      {"a green triangle above a yellow circle on a white background",
       "a green triangle above a yellow circle on a white background"},
      {"a green triangle below a yellow circle, and to the left of a pink diamond on a grey background.",
       "a green triangle below a yellow circle and to the left of a pink diamond on a gray background"},
      {"a small cyan cross on an black background", "a small cyan cross on a black background"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    world_prompt p;
    dpo_error err = {0};
    int rc = world_prompt_parse(cases[i].in, &p, &err);
    if (rc != DPO_OK) {
      test_fail(__FILE__, __LINE__, "parse \"%s\": %s", cases[i].in, err.msg);
      continue;
    }
    char text[WORLD_PROMPT_MAX];
    format_or_fail(&p, text);
    CHECK_STR(text, cases[i].canonical);
  }
  world_prompt p;
  CHECK_INT(world_prompt_parse("a large red circle to the left of a blue square and above a small green cross on a "
                               "gray background", &p, NULL), DPO_OK);
  CHECK_INT(p.n_objects, 3);
  CHECK_INT(p.objects[0].colour, WORLD_RED);
  CHECK_INT(p.objects[0].size, WORLD_LARGE);
  CHECK_INT(p.objects[1].size, WORLD_ANY);
  CHECK_INT(p.objects[1].shape, WORLD_SQUARE);
  CHECK_INT(p.relations[0], WORLD_LEFT_OF);
  CHECK_INT(p.relations[1], WORLD_ABOVE);
  CHECK_INT(p.objects[2].colour, WORLD_GREEN);
  CHECK_INT(p.objects[2].shape, WORLD_CROSS);
  CHECK_INT(p.background, WORLD_GRAY);
}

static void test_parse_errors(void) {
  char long_prompt[1100];
  memset(long_prompt, 'a', sizeof long_prompt - 1);
  long_prompt[sizeof long_prompt - 1] = '\0';
  char many_words[400] = "";
  for (int i = 0; i < 70; i++) strcat(many_words, "a ");
  struct { const char *in, *fragments[2]; } cases[] = {
      {"", {"prompt is empty", ""}},
      {"  .", {"prompt is empty", ""}},
      {"red circle", {"word 1 \"red\" (byte 0)", "expected \"a\" or \"an\""}},
      {"a huge red circle", {"word 2 \"huge\" (byte 2)", "a size (small, large) or a colour"}},
      {"a large huge circle", {"word 3 \"huge\" (byte 8)", "expected a colour (red"}},
      {"a red squre", {"word 3 \"squre\" (byte 6)", "expected a shape (circle"}},
      {"a red", {"prompt ends after word 2", "expected a shape"}},
      {"a red circle to the lft of a blue square", {"word 6 \"lft\" (byte 20)", "\"left\" or \"right\""}},
      {"a red circle to left of a blue square", {"word 5 \"left\"", "expected \"the\""}},
      {"a red circle left a blue square", {"word 5 \"a\"", "expected \"of\""}},
      {"a red circle above", {"prompt ends after word 4", "expected \"a\" or \"an\""}},
      {"a red circle above a red square", {"word 6 \"red\" (byte 21)", "distinct colours"}},
      {"a red circle above a blue square and a green cross", {"word 9 \"a\" (byte 37)", "a relation after \"and\""}},
      {"a red circle above a blue square and below a green cross and above a pink diamond",
       {"word 13 \"and\" (byte 57)", "at most three objects"}},
      {"a red circle on a red background", {"word 6 \"red\"", "a background colour (white, black, gray)"}},
      {"a red circle on a white", {"prompt ends after word 6", "expected \"background\""}},
      {"a red circle on white background", {"word 5 \"white\"", "expected \"a\""}},
      {"a red circle on a white background please", {"word 8 \"please\"", "expected the end after the background"}},
      {"a red circle please", {"word 4 \"please\"", "a relation (to the left of"}},
      {"a red circle above a blue square please", {"word 8 \"please\" (byte 33)", "\"and\", \"on\" or the end"}},
      {long_prompt, {"longer than 1024", ""}},
      {many_words, {"more than 64 words", ""}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    world_prompt p;
    dpo_error err = {0};
    int rc = world_prompt_parse(cases[i].in, &p, &err);
    if (rc != DPO_ERR_DATA) {
      test_fail(__FILE__, __LINE__, "parse case %zu returned %d, expected DPO_ERR_DATA", i, rc);
      continue;
    }
    for (int k = 0; k < 2; k++) CHECK_CONTAINS(err.msg, cases[i].fragments[k]);
  }
}

static void test_format_refuses_invalid(void) {
  world_prompt p = {0};
  char buf[WORLD_PROMPT_MAX];
  dpo_error err = {0};
  p.n_objects = 0;
  CHECK_INT(world_prompt_format(&p, buf, sizeof buf, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "0 objects");
  p.n_objects = 2;
  p.objects[0] = (world_object_spec){WORLD_RED, WORLD_CIRCLE, WORLD_ANY};
  p.objects[1] = (world_object_spec){WORLD_RED, WORLD_SQUARE, WORLD_ANY};
  CHECK_INT(world_prompt_format(&p, buf, sizeof buf, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "both red");
  p.objects[1].colour = WORLD_BLUE;
  p.relations[0] = 7;
  CHECK_INT(world_prompt_format(&p, buf, sizeof buf, &err), DPO_ERR_USAGE);
  p.relations[0] = WORLD_ABOVE;
  p.background = 5;
  CHECK_INT(world_prompt_validate(&p, &err), DPO_ERR_USAGE);
  p.background = WORLD_ANY;
  CHECK_INT(world_prompt_format(&p, buf, 10, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "buffer has 10");
  CHECK_INT(world_prompt_format(&p, buf, sizeof buf, &err), DPO_OK);
  CHECK_STR(buf, "a red circle above a blue square");
}

/* generate -> format -> parse gives the same constraints and the same text. */
static void test_round_trip(void) {
  int failures = 0, counts[4] = {0};
  for (uint64_t i = 0; i < 3000; i++) {
    world_prompt p, q;
    char text[WORLD_PROMPT_MAX], again[WORLD_PROMPT_MAX];
    world_prompt_random(5, i, &p);
    counts[p.n_objects]++;
    format_or_fail(&p, text);
    dpo_error err = {0};
    if (world_prompt_parse(text, &q, &err) != DPO_OK) {
      if (failures++ < 5) test_fail(__FILE__, __LINE__, "\"%s\" does not parse: %s", text, err.msg);
      continue;
    }
    if (!world_prompt_equal(&p, &q) && failures++ < 5) test_fail(__FILE__, __LINE__, "\"%s\" parses differently", text);
    format_or_fail(&q, again);
    CHECK_STR(again, text);
  }
  CHECK_INT(failures, 0);
  /* All three prompt lengths are drawn (30/40/30%). */
  CHECK(counts[1] > 700 && counts[2] > 1000 && counts[3] > 700);
  /* world_prompt_random is a pure function of (seed, index). */
  world_prompt a, b;
  world_prompt_random(9, 123, &a);
  world_prompt_random(9, 123, &b);
  CHECK(world_prompt_equal(&a, &b));
}

/* ----------------------------------------------------------- splits */

static int contains_text(char (*texts)[WORLD_PROMPT_MAX], int n, const char *t) {
  for (int i = 0; i < n; i++)
    if (!strcmp(texts[i], t)) return 1;
  return 0;
}

static void test_splits(void) {
  enum { N_TRAIN = 600, N_HELDOUT = 200 };
  world_prompt *train = malloc(N_TRAIN * sizeof *train), *held = malloc(N_HELDOUT * sizeof *held);
  world_prompt *again = malloc(N_HELDOUT * sizeof *again), *other = malloc(N_HELDOUT * sizeof *other);
  char (*train_text)[WORLD_PROMPT_MAX] = malloc(N_TRAIN * sizeof *train_text);
  dpo_error err = {0};
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_TRAIN, 1, N_TRAIN, train, &err), DPO_OK);
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_HELDOUT, 1, N_HELDOUT, held, &err), DPO_OK);
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_HELDOUT, 1, N_HELDOUT, again, &err), DPO_OK);
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_HELDOUT, 2, N_HELDOUT, other, &err), DPO_OK);
  int same_order = 1, differs = 0, overlap = 0, duplicates = 0;
  for (int i = 0; i < N_TRAIN; i++) {
    format_or_fail(&train[i], train_text[i]);
    CHECK_INT(world_prompt_split(&train[i]), WORLD_SPLIT_TRAIN);
    if (contains_text(train_text, i, train_text[i])) duplicates++;
  }
  for (int i = 0; i < N_HELDOUT; i++) {
    char text[WORLD_PROMPT_MAX];
    format_or_fail(&held[i], text);
    CHECK_INT(world_prompt_split(&held[i]), WORLD_SPLIT_HELDOUT);
    CHECK_INT(world_prompt_split(&other[i]), WORLD_SPLIT_HELDOUT);
    if (contains_text(train_text, N_TRAIN, text)) overlap++;
    same_order &= world_prompt_equal(&held[i], &again[i]);
    differs += !world_prompt_equal(&held[i], &other[i]);
    for (int j = 0; j < i; j++) duplicates += world_prompt_equal(&held[i], &held[j]);
  }
  CHECK_INT(overlap, 0);
  CHECK_INT(duplicates, 0);
  CHECK(same_order);
  CHECK(differs > N_HELDOUT / 2);
  /* About a tenth of all prompts are held out. */
  int heldout = 0;
  for (uint64_t i = 0; i < 5000; i++) {
    world_prompt p;
    world_prompt_random(11, i, &p);
    heldout += world_prompt_split(&p) == WORLD_SPLIT_HELDOUT;
  }
  printf("splits: %d of 5000 random prompts held out\n", heldout);
  CHECK(heldout > 350 && heldout < 650);
  CHECK_INT(world_split_from_name("train"), WORLD_SPLIT_TRAIN);
  CHECK_INT(world_split_from_name("heldout"), WORLD_SPLIT_HELDOUT);
  CHECK_INT(world_split_from_name("test"), -1);
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_TRAIN, 1, 0, train, &err), DPO_OK);
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_TRAIN, 1, -1, train, &err), DPO_ERR_USAGE);
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_TRAIN, 1, 20000000, train, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "at most 10000000");
  free(train);
  free(held);
  free(again);
  free(other);
  free(train_text);
}

static void test_perturb_changes_one_attribute(void) {
  int seen[WORLD_N_PERTURB] = {0};
  for (uint64_t i = 0; i < 1000; i++) {
    world_prompt p, q;
    world_perturbation what;
    world_prompt_random(3, i, &p);
    world_prompt_perturb(&p, 4, i, &q, &what);
    seen[what]++;
    CHECK_INT(world_prompt_validate(&q, NULL), DPO_OK);
    int changes = (p.background != q.background);
    for (int k = 0; k < p.n_objects; k++) {
      changes += p.objects[k].colour != q.objects[k].colour;
      changes += p.objects[k].shape != q.objects[k].shape;
      changes += p.objects[k].size != q.objects[k].size;
      if (k > 0) changes += p.relations[k - 1] != q.relations[k - 1];
    }
    CHECK_INT(changes, 1);
  }
  for (int k = 0; k < WORLD_N_PERTURB; k++) CHECK(seen[k] > 50);
}

/* ------------------------------------------------- layout and render */

static void test_layouts_satisfy_prompts(void) {
  for (uint64_t i = 0; i < 500; i++) {
    world_prompt p;
    world_scene s;
    dpo_error err = {0};
    world_prompt_random(8, i, &p);
    if (world_layout(&p, i, &s, &err) != DPO_OK) {
      test_fail(__FILE__, __LINE__, "layout %llu: %s", (unsigned long long)i, err.msg);
      continue;
    }
    CHECK_INT(s.n_objects, p.n_objects);
    if (p.background != WORLD_ANY) CHECK_INT(s.background, p.background);
    for (int k = 0; k < s.n_objects; k++) {
      const world_object *o = &s.objects[k];
      float half = 0.5f * world_object_side(o->size);
      CHECK(o->cx - half >= 0 && o->cx + half <= 1 && o->cy - half >= 0 && o->cy + half <= 1);
      if (p.objects[k].size != WORLD_ANY) CHECK_INT(o->size, p.objects[k].size);
      if (k > 0) CHECK(world_relation_holds(p.relations[k - 1], s.objects[0].cx, s.objects[0].cy, o->cx, o->cy));
    }
  }
  /* Three large objects in a row do not fit. */
  world_prompt p;
  world_scene s;
  dpo_error err = {0};
  CHECK_INT(world_prompt_parse("a large red circle to the left of a large blue square and to the right of a large "
                               "green cross", &p, NULL), DPO_OK);
  CHECK_INT(world_layout(&p, 0, &s, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no layout fits");
  CHECK(world_relation_holds(WORLD_LEFT_OF, 0.2f, 0.5f, 0.6f, 0.6f));
  CHECK(!world_relation_holds(WORLD_LEFT_OF, 0.2f, 0.2f, 0.4f, 0.6f));   /* vertical offset dominates */
  CHECK(world_relation_holds(WORLD_BELOW, 0.5f, 0.8f, 0.5f, 0.2f));
}

static void test_render_determinism(void) {
  const char *prompt = "a small red circle to the left of a blue square and below a green triangle";
  dpo_image a = {0}, b = {0}, c = {0}, big = {0};
  dpo_error err = {0};
  CHECK_INT(world_render_prompt(prompt, 42, 32, &a, &err), DPO_OK);
  CHECK_INT(world_render_prompt(prompt, 42, 32, &b, &err), DPO_OK);
  CHECK_INT(world_render_prompt(prompt, 43, 32, &c, &err), DPO_OK);
  CHECK_INT(world_render_prompt(prompt, 42, 64, &big, &err), DPO_OK);
  CHECK_INT(a.width, 32);
  CHECK_INT(a.channels, 3);
  CHECK_INT(big.width, 64);
  CHECK(memcmp(a.pixels, b.pixels, 32 * 32 * 3) == 0);
  CHECK(memcmp(a.pixels, c.pixels, 32 * 32 * 3) != 0);
  /* The same pixels on every machine: Philox draws and float geometry in
   * ISO C (no contraction), pinned here. */
  char hex[65];
  dpo_sha256_hex(a.pixels, 32 * 32 * 3, hex);
  printf("render: sha256 of the pinned 32x32 scene %s\n", hex);
  CHECK_STR(hex, "7a8c5988e30754a4765c2a5c65ceab4ba3a7d949a56c7d4760e6e5d1dcc9c5fc");
  /* The layout does not depend on the size: the judge reads the same scene. */
  world_detection da, db;
  CHECK_INT(world_detect(&a, &da, &err), DPO_OK);
  CHECK_INT(world_detect(&big, &db, &err), DPO_OK);
  CHECK_INT(da.n_objects, 3);
  CHECK_INT(db.n_objects, 3);
  for (int k = 0; k < da.n_objects && k < db.n_objects; k++) {
    CHECK_INT(da.objects[k].colour, db.objects[k].colour);
    CHECK_INT(da.objects[k].shape, db.objects[k].shape);
    CHECK_NEAR(da.objects[k].cx, db.objects[k].cx, 0.03);
    CHECK_NEAR(da.objects[k].cy, db.objects[k].cy, 0.03);
  }
  dpo_image_free(&a);
  dpo_image_free(&b);
  dpo_image_free(&c);
  dpo_image_free(&big);
  /* Sizes outside the range and unparsable prompts fail cleanly. */
  CHECK_INT(world_render_prompt(prompt, 1, 8, &a, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "outside 16..1024");
  CHECK_INT(world_render_prompt("a red", 1, 32, &a, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "expected a shape");
}

static void test_render_draws_the_scene(void) {
  world_scene s = {0};
  s.n_objects = 2;
  s.background = WORLD_GRAY;
  s.objects[0] = (world_object){WORLD_ORANGE, WORLD_SQUARE, WORLD_LARGE, 0.25f, 0.25f};
  s.objects[1] = (world_object){WORLD_CYAN, WORLD_CROSS, WORLD_SMALL, 0.75f, 0.75f};
  dpo_image img = {0};
  dpo_error err = {0};
  CHECK_INT(world_render(&s, 64, 0, &img, &err), DPO_OK);
  uint8_t orange[3], cyan[3], gray[3];
  world_colour_rgb(WORLD_ORANGE, orange);
  world_colour_rgb(WORLD_CYAN, cyan);
  world_background_rgb(WORLD_GRAY, gray);
  CHECK(memcmp(pixel(&img, 16, 16), orange, 3) == 0);
  CHECK(memcmp(pixel(&img, 48, 48), cyan, 3) == 0);
  CHECK(memcmp(pixel(&img, 0, 63), gray, 3) == 0);
  /* A cross leaves its box's corners to the background. */
  CHECK(memcmp(pixel(&img, 48 - 6, 48 - 6), gray, 3) == 0);
  /* The hard-edged square covers 0.34 * 64 = 21.76 -> 22 pixels a side. */
  int orange_pixels = 0;
  for (int y = 0; y < 64; y++)
    for (int x = 0; x < 64; x++) orange_pixels += memcmp(pixel(&img, x, y), orange, 3) == 0;
  CHECK(orange_pixels >= 21 * 21 && orange_pixels <= 23 * 23);
  dpo_image_free(&img);
  s.objects[1].shape = 17;
  CHECK_INT(world_render(&s, 32, 1, &img, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "invalid object 1");
}

/* ------------------------------------------------------------- judge */

/* THE acceptance check: on rendered ground truth, the true prompt scores
 * above a prompt with one attribute changed at least 95% of the time. */
static void test_judge_prefers_true_prompt(void) {
  enum { N_TRAIN = 1000, N_HELDOUT = 200, N = N_TRAIN + N_HELDOUT };
  world_prompt *prompts = malloc(N * sizeof *prompts);
  dpo_error err = {0};
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_TRAIN, 21, N_TRAIN, prompts, &err), DPO_OK);
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_HELDOUT, 21, N_HELDOUT, prompts + N_TRAIN, &err), DPO_OK);
  int wins = 0, by_objects[4] = {0}, wins_kind[WORLD_N_PERTURB] = {0}, total_kind[WORLD_N_PERTURB] = {0};
  int perfect = 0, noisy_wins = 0;
  double sum_true = 0, sum_perturbed = 0;
  for (int i = 0; i < N; i++) {
    world_scene scene;
    dpo_image img = {0};
    if (world_layout(&prompts[i], (uint64_t)i, &scene, &err) != DPO_OK ||
        world_render(&scene, WORLD_DEFAULT_SIZE, 1, &img, &err) != DPO_OK) {
      test_fail(__FILE__, __LINE__, "prompt %d: %s", i, err.msg);
      continue;
    }
    world_detection d;
    CHECK_INT(world_detect(&img, &d, &err), DPO_OK);
    world_prompt perturbed;
    world_perturbation what;
    world_prompt_perturb(&prompts[i], 22, (uint64_t)i, &perturbed, &what);
    double truth = world_judge_alignment(&d, &prompts[i], NULL, NULL);
    double other = world_judge_alignment(&d, &perturbed, NULL, NULL);
    by_objects[prompts[i].n_objects]++;
    total_kind[what]++;
    sum_true += truth;
    sum_perturbed += other;
    perfect += truth == 1.0;
    if (truth > other) {
      wins++;
      wins_kind[what]++;
    }
    /* The same comparison on a noisy copy (what a model's samples look like
     * more than a clean render does). */
    add_noise(&img, 16.0f, (uint64_t)i);
    CHECK_INT(world_detect(&img, &d, &err), DPO_OK);
    noisy_wins += world_judge_alignment(&d, &prompts[i], NULL, NULL) > world_judge_alignment(&d, &perturbed, NULL, NULL);
    dpo_image_free(&img);
  }
  double rate = (double)wins / N;
  printf("judge: true prompt above a one-attribute perturbation in %d of %d scenes (%.2f%%)\n", wins, N, 100 * rate);
  for (int k = 0; k < WORLD_N_PERTURB; k++)
    printf("judge:   %-10s changed: %d of %d\n", world_perturbation_name(k), wins_kind[k], total_kind[k]);
  printf("judge: scenes with 1/2/3 objects: %d/%d/%d\n", by_objects[1], by_objects[2], by_objects[3]);
  printf("judge: mean alignment of the true prompt %.4f (%d of %d perfect), of the perturbed %.4f\n", sum_true / N,
         perfect, N, sum_perturbed / N);
  printf("judge: with Gaussian noise (sigma 16) added: %d of %d (%.2f%%)\n", noisy_wins, N, 100.0 * noisy_wins / N);
  CHECK(rate >= 0.95);
  CHECK((double)noisy_wins / N >= 0.9);
  CHECK(sum_true / N >= 0.97);
  CHECK(sum_perturbed / N <= 0.9);
  for (int k = 1; k <= 3; k++) CHECK(by_objects[k] >= 100);
  for (int k = 0; k < WORLD_N_PERTURB; k++) CHECK(total_kind[k] >= 50);
  free(prompts);
}

static void test_judge_appeal(void) {
  enum { N = 100 };
  world_prompt prompts[N];
  dpo_error err = {0};
  CHECK_INT(world_prompts_generate(WORLD_SPLIT_TRAIN, 31, N, prompts, &err), DPO_OK);
  double clean_sum = 0, noisy_sum = 0, blurred_sum = 0, noisy_alignment = 0;
  int noisy_lower = 0, blurred_lower = 0;
  for (int i = 0; i < N; i++) {
    world_scene scene;
    dpo_image clean = {0}, noisy = {0}, blurred = {0};
    CHECK_INT(world_layout(&prompts[i], (uint64_t)i, &scene, &err), DPO_OK);
    world_render(&scene, 32, 1, &clean, &err);
    world_render(&scene, 32, 1, &noisy, &err);
    world_render(&scene, 32, 1, &blurred, &err);
    add_noise(&noisy, 12.0f, (uint64_t)i);
    box_blur(&blurred);
    double a = world_judge_appeal(&clean), n = world_judge_appeal(&noisy), b = world_judge_appeal(&blurred);
    CHECK(a >= 0 && a <= 1 && n >= 0 && n <= 1 && b >= 0 && b <= 1);
    clean_sum += a;
    noisy_sum += n;
    blurred_sum += b;
    noisy_lower += n < a;
    blurred_lower += b < a;
    world_detection d;
    world_detect(&noisy, &d, &err);
    noisy_alignment += world_judge_alignment(&d, &prompts[i], NULL, NULL);
    dpo_image_free(&clean);
    dpo_image_free(&noisy);
    dpo_image_free(&blurred);
  }
  printf("appeal: mean clean %.3f, noisy (sigma 12) %.3f, blurred (3x3 box) %.3f; lower than clean: noisy %d/%d, "
         "blurred %d/%d; alignment of the noisy copies %.3f\n",
         clean_sum / N, noisy_sum / N, blurred_sum / N, noisy_lower, N, blurred_lower, N, noisy_alignment / N);
  CHECK_INT(noisy_lower, N);
  CHECK_INT(blurred_lower, N);
  CHECK(clean_sum / N - noisy_sum / N > 0.1);
  CHECK(clean_sum / N - blurred_sum / N > 0.05);
  /* Appeal ignores the prompt, alignment survives mild noise: they differ. */
  CHECK(noisy_alignment / N > 0.95);
  /* An empty canvas is less appealing than a scene. */
  world_scene empty = {0};
  empty.background = WORLD_WHITE;
  dpo_image img = {0};
  CHECK_INT(world_render(&empty, 32, 1, &img, &err), DPO_OK);
  CHECK(world_judge_appeal(&img) < clean_sum / N - 0.1);
  dpo_image_free(&img);
}

static void test_judge_constraints(void) {
  dpo_image img = {0};
  dpo_error err = {0};
  world_scores s;
  CHECK_INT(world_render_prompt("a red circle to the left of a blue square on a white background", 5, 32, &img, &err),
            DPO_OK);
  CHECK_INT(world_judge_score(&img, "a red circle to the left of a blue square on a white background", &s, &err),
            DPO_OK);
  CHECK_NEAR(s.alignment, 1.0, 1e-12);
  CHECK_INT(s.n_constraints, 7);   /* 2 x (present, shape), relation, background, nothing else */
  /* The blue square is not in this prompt: "nothing else" gets half. */
  CHECK_INT(world_judge_score(&img, "a red circle", &s, &err), DPO_OK);
  CHECK_INT(s.n_constraints, 3);
  CHECK_NEAR(s.alignment, 2.5 / 3.0, 1e-12);
  /* Wrong relation and wrong background: 5 of 7. */
  CHECK_INT(world_judge_score(&img, "a red circle to the right of a blue square on a black background", &s, &err),
            DPO_OK);
  CHECK_NEAR(s.alignment, 5.0 / 7.0, 1e-12);
  /* A missing object fails its presence, shape and relation. */
  CHECK_INT(world_judge_score(&img, "a red circle to the left of a green square", &s, &err), DPO_OK);
  CHECK_NEAR(s.satisfied, 2.5, 1e-12);
  CHECK_INT(s.n_constraints, 6);
  dpo_image_free(&img);
  /* A blank canvas: nothing is present, but nothing else is either. */
  world_scene blank = {0};
  blank.background = WORLD_BLACK;
  CHECK_INT(world_render(&blank, 32, 1, &img, &err), DPO_OK);
  CHECK_INT(world_judge_score(&img, "a large red circle on a black background", &s, &err), DPO_OK);
  CHECK_NEAR(s.alignment, 2.0 / 5.0, 1e-12);
  /* Errors: prompts outside the grammar, wrong channel counts, huge images. */
  CHECK_INT(world_judge_score(&img, "a red blob", &s, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "word 3 \"blob\"");
  img.channels = 1;
  CHECK_INT(world_judge_score(&img, "a red circle", &s, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "RGB or RGBA");
  img.channels = 3;
  int width = img.width;
  img.width = 4096;
  CHECK_INT(world_judge_score(&img, "a red circle", &s, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "4096x32");
  img.width = width;
  dpo_image_free(&img);
}

/* RGBA images (as a model's PNGs may be) judge like RGB. */
static void test_judge_rgba(void) {
  dpo_image rgb = {0}, rgba = {0};
  dpo_error err = {0};
  const char *prompt = "a large yellow diamond above a small purple cross";
  CHECK_INT(world_render_prompt(prompt, 9, 48, &rgb, &err), DPO_OK);
  CHECK_INT(dpo_image_alloc(&rgba, 48, 48, 4, &err), DPO_OK);
  for (int i = 0; i < 48 * 48; i++) {
    memcpy(rgba.pixels + i * 4, rgb.pixels + i * 3, 3);
    rgba.pixels[i * 4 + 3] = 255;
  }
  world_scores a, b;
  CHECK_INT(world_judge_score(&rgb, prompt, &a, &err), DPO_OK);
  CHECK_INT(world_judge_score(&rgba, prompt, &b, &err), DPO_OK);
  CHECK_NEAR(a.alignment, 1.0, 1e-12);
  CHECK_NEAR(b.alignment, a.alignment, 1e-12);
  CHECK_NEAR(b.appeal, a.appeal, 1e-12);
  dpo_image_free(&rgb);
  dpo_image_free(&rgba);
}

int main(void) {
  test_palette_is_well_separated();
  test_parse_examples();
  test_parse_errors();
  test_format_refuses_invalid();
  test_round_trip();
  test_splits();
  test_perturb_changes_one_attribute();
  test_layouts_satisfy_prompts();
  test_render_determinism();
  test_render_draws_the_scene();
  test_judge_prefers_true_prompt();
  test_judge_appeal();
  test_judge_constraints();
  test_judge_rgba();
  return test_finish();
}
