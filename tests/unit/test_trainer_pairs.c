/* pairs.jsonl: every malformed-line path with its line and field in the
 * message, winner-first ordering, ties, the generator filter, missing images,
 * and the deterministic epoch order with resume from a cursor. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static void write_text(const char *path, const char *text) { CHECK_INT(test_write_file(path, text, strlen(text)), 0); }

static int parse(const char *line, dpo_pair_record *r, dpo_error *err) {
  return dpo_pair_record_parse(line, strlen(line), "pairs.jsonl:7", r, err);
}

static void expect_bad(const char *line, const char *fragment) {
  dpo_pair_record r;
  dpo_error err = {0};
  int rc = parse(line, &r, &err);
  CHECK_INT(rc, DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "pairs.jsonl:7");
  CHECK_CONTAINS(err.msg, fragment);
  CHECK(r.caption == NULL && r.image_0 == NULL && r.source == NULL);
}

#define GOOD "\"caption\": \"a red cube\", \"image_0\": \"img/a.png\", \"image_1\": \"img/b.jpg\", \"source\": \"human\""

static void test_parse_good(void) {
  dpo_pair_record r;
  dpo_error err;
  CHECK_INT(parse("{" GOOD ", \"label_0\": 0.5, \"model_0\": \"dreamlike\", \"model_1\": \"sdxl\", \"extra\": 3}", &r, &err),
            DPO_OK);
  CHECK_STR(r.caption, "a red cube");
  CHECK_STR(r.image_0, "img/a.png");
  CHECK_STR(r.image_1, "img/b.jpg");
  CHECK_STR(r.source, "human");
  CHECK_STR(r.model_1, "sdxl");
  CHECK_NEAR(r.label_0, 0.5, 0);
  dpo_pair_record_free(&r);
  /* Integer labels, an empty caption and no model names are fine. */
  CHECK_INT(parse("{\"caption\": \"\", \"image_0\": \"a.png\", \"image_1\": \"b.png\", \"label_0\": 1, \"source\": \"s\"}",
                  &r, &err), DPO_OK);
  CHECK(r.model_0 == NULL && r.model_1 == NULL);
  CHECK_NEAR(r.label_0, 1, 0);
  dpo_pair_record_free(&r);
}

static void test_parse_bad(void) {
  expect_bad("{" GOOD ", \"label_0\": 1", "invalid JSON");
  expect_bad("[1, 2]", "expected a JSON object");
  expect_bad("{\"image_0\": \"a\", \"image_1\": \"b\", \"label_0\": 1, \"source\": \"s\"}", "missing field \"caption\"");
  expect_bad("{\"caption\": 3, \"image_0\": \"a\", \"image_1\": \"b\", \"label_0\": 1, \"source\": \"s\"}",
             "field \"caption\": expected a string");
  expect_bad("{\"caption\": \"c\", \"image_1\": \"b\", \"label_0\": 1, \"source\": \"s\"}", "missing field \"image_0\"");
  expect_bad("{\"caption\": \"c\", \"image_0\": \"a\", \"label_0\": 1, \"source\": \"s\"}", "missing field \"image_1\"");
  expect_bad("{\"caption\": \"c\", \"image_0\": \"\", \"image_1\": \"b\", \"label_0\": 1, \"source\": \"s\"}",
             "field \"image_0\": is empty");
  expect_bad("{\"caption\": \"c\", \"image_0\": \"/etc/passwd\", \"image_1\": \"b\", \"label_0\": 1, \"source\": \"s\"}",
             "is absolute");
  expect_bad("{\"caption\": \"c\", \"image_0\": \"a\", \"image_1\": \"x/../../b\", \"label_0\": 1, \"source\": \"s\"}",
             "field \"image_1\": \"x/../../b\" leaves the folder");
  expect_bad("{\"caption\": \"c\", \"image_0\": \"a\", \"image_1\": \"a\", \"label_0\": 1, \"source\": \"s\"}",
             "are the same file");
  expect_bad("{" GOOD "}", "missing field \"label_0\"");
  expect_bad("{" GOOD ", \"label_0\": \"1\"}", "field \"label_0\": expected 0, 0.5 or 1");
  expect_bad("{" GOOD ", \"label_0\": 0.7}", "field \"label_0\": 0.7");
  expect_bad("{" GOOD ", \"label_0\": -1}", "field \"label_0\"");
  expect_bad("{\"caption\": \"c\", \"image_0\": \"a\", \"image_1\": \"b\", \"label_0\": 1}", "missing field \"source\"");
  expect_bad("{" GOOD ", \"label_0\": 1, \"model_0\": 5}", "field \"model_0\": expected a string");
  expect_bad("{\"caption\": \"a\\u0000b\", \"image_0\": \"a\", \"image_1\": \"b\", \"label_0\": 1, \"source\": \"s\"}",
             "contains a NUL");
  /* Length limits: a caption over 64 KiB. */
  size_t big = DPO_PAIRS_MAX_CAPTION_BYTES + 10;
  char *line = malloc(big + 200);
  int n = snprintf(line, 200, "{\"caption\": \"");
  memset(line + n, 'x', big);
  snprintf(line + n + big, 200, "\", \"image_0\": \"a\", \"image_1\": \"b\", \"label_0\": 1, \"source\": \"s\"}");
  expect_bad(line, "field \"caption\"");
  free(line);
}

/* A dataset folder with images a..f and a pairs.jsonl. */
static const char *make_dataset(const char *name, const char *jsonl) {
  static char path[4096];
  char dir[4096], img[4200];
  snprintf(dir, sizeof dir, "%s", test_path(name));
  mkdir(dir, 0755);
  snprintf(img, sizeof img, "%s/img", dir);
  mkdir(img, 0755);
  for (char c = 'a'; c <= 'f'; c++) {
    snprintf(img, sizeof img, "%s/img/%c.png", dir, c);
    write_text(img, "not really a png; only existence is checked here");
  }
  snprintf(path, sizeof path, "%s/pairs.jsonl", dir);
  write_text(path, jsonl);
  return path;
}

#define LINE(cap, a, b, label, m0, m1) \
  "{\"caption\": \"" cap "\", \"image_0\": \"img/" a ".png\", \"image_1\": \"img/" b ".png\", \"label_0\": " label \
  ", \"source\": \"test\", \"model_0\": \"" m0 "\", \"model_1\": \"" m1 "\"}\n"

static void test_load(void) {
  const char *path = make_dataset("ds1", LINE("one", "a", "b", "1", "dreamlike-2", "dreamlike-2")
                                  "\n   \n"
                                  LINE("two", "c", "d", "0", "sdxl-beta", "dreamlike-2")
                                  LINE("three", "e", "f", "0.5", "dreamlike-2", "dreamlike-photoreal")
                                  LINE("four", "b", "e", "0", "dreamlike-1", "dreamlike-2"));
  dpo_pairs set;
  dpo_error err;
  dpo_pairs_options opt = {.ties = DPO_TIES_SKIP, .model_filter = NULL, .check_images = 1};
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_OK);
  CHECK_INT(set.n, 3);
  CHECK_INT(set.n_lines, 4);
  CHECK_INT(set.n_ties_skipped, 1);
  /* Winner first: line 4 has label_0 0, so image_1 (d) wins and its model goes with it. */
  CHECK_INT(set.pairs[1].line, 4);
  CHECK_INT(set.pairs[1].swapped, 1);
  CHECK(strstr(set.pairs[1].image_w, "/img/d.png") != NULL);
  CHECK(strstr(set.pairs[1].image_l, "/img/c.png") != NULL);
  CHECK_STR(set.pairs[1].model_w, "dreamlike-2");
  CHECK_STR(set.pairs[1].model_l, "sdxl-beta");
  CHECK_STR(set.pairs[0].caption, "one");
  CHECK_INT(set.pairs[0].swapped, 0);
  CHECK_NEAR(set.pairs[0].label, 1, 0);
  dpo_pairs_free(&set);

  /* Ties kept with label 0.5, in file order. */
  opt.ties = DPO_TIES_HALF;
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_OK);
  CHECK_INT(set.n, 4);
  CHECK_NEAR(set.pairs[2].label, 0.5, 0);
  CHECK(strstr(set.pairs[2].image_w, "/img/e.png") != NULL);
  dpo_pairs_free(&set);

  /* The generator filter: both models must contain "dream". */
  opt.model_filter = "dream";
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_OK);
  CHECK_INT(set.n, 3);
  CHECK_INT(set.n_filtered, 1);
  CHECK_STR(set.pairs[1].caption, "three");
  dpo_pairs_free(&set);
  opt.model_filter = "no-such-model";
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no pairs left of 4");
  CHECK_CONTAINS(err.msg, "4 not matching");
  CHECK(set.pairs == NULL && set.n == 0);
}

static void test_load_errors(void) {
  dpo_pairs set;
  dpo_error err;
  dpo_pairs_options opt = {.ties = DPO_TIES_SKIP, .check_images = 1};
  /* A bad line names the file, line number and field. */
  const char *path = make_dataset("ds2", LINE("one", "a", "b", "1", "m", "m")
                                  "{\"caption\": \"x\", \"image_0\": \"img/a.png\", \"image_1\": \"img/b.png\", "
                                  "\"label_0\": 2, \"source\": \"s\"}\n");
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "pairs.jsonl:2: field \"label_0\"");
  /* Missing images: by line and path as written in the file, with a count. */
  path = make_dataset("ds3", LINE("one", "a", "b", "1", "m", "m") LINE("two", "c", "zz", "0", "m", "m")
                      LINE("three", "yy", "d", "1", "m", "m"));
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "pairs.jsonl:2: image_1 \"img/zz.png\" not found (and 1 more missing images)");
  opt.check_images = 0;
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_OK);
  dpo_pairs_free(&set);
  opt.check_images = 1;
  /* A folder where an image should be is not an image. */
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/img/sub.png", test_path("ds3"));
  mkdir(dir, 0755);
  path = make_dataset("ds3", LINE("one", "a", "sub", "1", "m", "m"));
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "pairs.jsonl:1: image_1 \"img/sub.png\" not found");
  /* Empty file, only blank lines, a missing file. */
  path = make_dataset("ds4", "\n\n  \n");
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no pairs in the file");
  CHECK_INT(dpo_pairs_load(test_path("nope/pairs.jsonl"), &opt, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "cannot open");
  /* A line over the length limit, reported with its number. */
  size_t big = DPO_PAIRS_MAX_LINE_BYTES + 5;
  char *text = malloc(big + 300);
  int n = snprintf(text, 300, "%s", LINE("one", "a", "b", "1", "m", "m"));
  memset(text + n, ' ', big);
  text[n + big] = '\0';
  path = make_dataset("ds5", text);
  free(text);
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "pairs.jsonl:2: line longer than the limit");
  /* A last line without a newline is still read. */
  path = make_dataset("ds6", "{\"caption\": \"c\", \"image_0\": \"img/a.png\", \"image_1\": \"img/b.png\", "
                             "\"label_0\": 1, \"source\": \"s\"}");
  CHECK_INT(dpo_pairs_load(path, &opt, &set, &err), DPO_OK);
  CHECK_INT(set.n, 1);
  dpo_pairs_free(&set);
  dpo_ties_mode ties;
  CHECK_INT(dpo_ties_mode_parse("half", &ties, &err), DPO_OK);
  CHECK_INT(ties, DPO_TIES_HALF);
  CHECK_INT(dpo_ties_mode_parse("drop", &ties, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "drop");
}

static void test_sampler(void) {
  dpo_pair_sampler a, b;
  dpo_error err;
  const int n = 50;
  CHECK_INT(dpo_pair_sampler_init(&a, n, 42, 0, 0, &err), DPO_OK);
  /* Each epoch is a permutation, and consecutive epochs differ. */
  int seen[50] = {0}, first_epoch[50], differs = 0, not_identity = 0;
  for (int i = 0; i < n; i++) {
    int k = dpo_pair_sampler_next(&a);
    if (k >= 0 && k < 50) seen[k]++;
    else test_fail(__FILE__, __LINE__, "index %d out of range", k);
    first_epoch[i] = k;
    if (k != i) not_identity = 1;
  }
  for (int i = 0; i < n; i++) CHECK_INT(seen[i], 1);
  CHECK(not_identity);
  CHECK_INT(a.epoch, 0);
  int second[50];
  for (int i = 0; i < n; i++) {
    second[i] = dpo_pair_sampler_next(&a);
    if (second[i] != first_epoch[i]) differs = 1;
  }
  CHECK_INT(a.epoch, 1);
  CHECK(differs);
  /* Resuming from the cursor (epoch 1, position 20) continues the same sequence. */
  CHECK_INT(dpo_pair_sampler_init(&b, n, 42, 1, 20, &err), DPO_OK);
  for (int i = 20; i < n; i++) CHECK_INT(dpo_pair_sampler_next(&b), second[i]);
  /* ... into epoch 2 exactly as the uninterrupted one. */
  for (int i = 0; i < n; i++) CHECK_INT(dpo_pair_sampler_next(&b), dpo_pair_sampler_next(&a));
  dpo_pair_sampler_free(&b);
  /* Another seed, another order. */
  CHECK_INT(dpo_pair_sampler_init(&b, n, 43, 0, 0, &err), DPO_OK);
  int same = 1;
  for (int i = 0; i < n; i++) same &= dpo_pair_sampler_next(&b) == first_epoch[i];
  CHECK(!same);
  dpo_pair_sampler_free(&b);
  dpo_pair_sampler_free(&a);
  /* A single pair, and refused cursors. */
  CHECK_INT(dpo_pair_sampler_init(&a, 1, 7, 0, 0, &err), DPO_OK);
  CHECK_INT(dpo_pair_sampler_next(&a), 0);
  CHECK_INT(dpo_pair_sampler_next(&a), 0);
  CHECK_INT(a.epoch, 1);
  dpo_pair_sampler_free(&a);
  CHECK_INT(dpo_pair_sampler_init(&a, 10, 7, 0, 11, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "past the 10 pairs");
  CHECK_INT(dpo_pair_sampler_init(&a, 0, 7, 0, 0, &err), DPO_ERR_USAGE);
}

int main(void) {
  test_parse_good();
  test_parse_bad();
  test_load();
  test_load_errors();
  test_sampler();
  return test_finish();
}
