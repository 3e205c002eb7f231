/* The prompts library: the built-in sets against the counts and traps their
 * SOURCE.md files list, and user files (.txt, .tsv, .jsonl) good and bad. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prompts/prompts.h"
#include "tests/test.h"

/* ---------------------------------------------------------- helpers */

static int count_category(const prompt_set *set, const char *category) {
  int n = 0;
  for (int i = 0; i < set->n; i++)
    if (strcmp(set->items[i].category, category) == 0) n++;
  return n;
}

static int count_extra(const prompt_set *set, const char *key, const char *value) {
  int n = 0;
  for (int i = 0; i < set->n; i++) {
    const char *v = prompt_extra_get(&set->items[i], key);
    if (v && strcmp(v, value) == 0) n++;
  }
  return n;
}

/* Prompts of a category whose text also appears earlier in that category. */
static int count_duplicates(const prompt_set *set, const char *category) {
  int dup = 0;
  for (int i = 0; i < set->n; i++) {
    if (strcmp(set->items[i].category, category) != 0) continue;
    for (int j = 0; j < i; j++) {
      if (strcmp(set->items[j].category, category) == 0 && strcmp(set->items[j].text, set->items[i].text) == 0) {
        dup++;
        break;
      }
    }
  }
  return dup;
}

static int has_non_ascii(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s >= 0x80) return 1;
  return 0;
}

static const char *text_of(const prompt_set *set, const char *id) {
  const prompt *p = prompt_set_find(set, id);
  return p ? p->text : NULL;
}

/* Parses bytes as a user file and returns the status; err gets the message. */
static int parse(const char *data, size_t len, prompt_format format, prompt_set *set, dpo_error *err) {
  return prompt_set_parse(data, len, format, "t.in", "t", set, err);
}

static int parse_fails(const char *data, prompt_format format, const char *fragment) {
  prompt_set set;
  dpo_error err = {0};
  int rc = parse(data, strlen(data), format, &set, &err);
  if (rc == DPO_OK) {
    test_fail(__FILE__, __LINE__, "parse of \"%s\" succeeded, expected an error containing \"%s\"", data, fragment);
    prompt_set_free(&set);
    return 0;
  }
  if (!strstr(err.msg, fragment)) {
    test_fail(__FILE__, __LINE__, "error \"%s\" does not contain \"%s\"", err.msg, fragment);
    return 0;
  }
  CHECK_INT(set.n, 0);
  return 1;
}

/* ----------------------------------------------------------- Parti */

static void test_parti(void) {
  prompt_set set;
  dpo_error err = {0};
  if (prompt_set_load("parti", &set, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "loading parti: %s", err.msg);
    return;
  }
  CHECK_STR(set.name, "parti");
  CHECK_INT(set.n, 1632);
  static const struct { const char *name; int count; } categories[] = {
      {"Animals", 314}, {"Artifacts", 287}, {"World Knowledge", 214}, {"People", 177},
      {"Outdoor Scenes", 131}, {"Illustrations", 124}, {"Vehicles", 104}, {"Food & Beverage", 74},
      {"Arts", 66}, {"Abstract", 51}, {"Produce & Plants", 50}, {"Indoor Scenes", 40}};
  int total = 0;
  for (size_t i = 0; i < sizeof categories / sizeof categories[0]; i++) {
    CHECK_INT(count_category(&set, categories[i].name), categories[i].count);
    total += categories[i].count;
  }
  CHECK_INT(total, 1632);   /* the 12 categories cover every prompt */
  static const struct { const char *name; int count; } challenges[] = {
      {"Fine-grained Detail", 312}, {"Basic", 272}, {"Simple Detail", 232}, {"Style & Format", 206},
      {"Imagination", 150}, {"Complex", 113}, {"Writing & Symbols", 91}, {"Quantity", 90},
      {"Perspective", 70}, {"Linguistic Structures", 61}, {"Properties & Positioning", 35}};
  total = 0;
  for (size_t i = 0; i < sizeof challenges / sizeof challenges[0]; i++) {
    CHECK_INT(count_extra(&set, "Challenge", challenges[i].name), challenges[i].count);
    total += challenges[i].count;
  }
  CHECK_INT(total, 1632);
  /* The Note column: empty (the line ends in a tab) on 1442 rows. */
  CHECK_INT(count_extra(&set, "Note", ""), 1442);
  int quoted = 0, non_ascii_rows = 0, non_ascii_prompts = 0;
  for (int i = 0; i < set.n; i++) {
    const prompt *p = &set.items[i];
    if (strchr(p->text, '"')) quoted++;
    if (has_non_ascii(p->text)) non_ascii_prompts++;
    if (has_non_ascii(p->text) || has_non_ascii(p->category) || has_non_ascii(prompt_extra_get(p, "Note")))
      non_ascii_rows++;
    CHECK(strchr(p->text, '\t') == NULL);
    CHECK(strchr(p->text, '\n') == NULL);
    CHECK(strchr(prompt_extra_get(p, "Note"), '\n') == NULL);
    CHECK_INT(p->line, i + 2);   /* header on line 1 */
  }
  CHECK_INT(quoted, 22);          /* literal quotes, no CSV unquoting */
  CHECK_INT(non_ascii_rows, 18);
  CHECK_INT(non_ascii_prompts, 17);
  /* Ids are 0-based data rows. */
  CHECK_STR(text_of(&set, "parti:0"), "bond");
  CHECK_STR(text_of(&set, "parti:17"), "black hole");
  CHECK_STR(text_of(&set, "17"), "black hole");
  CHECK_STR(text_of(&set, "parti:53"), "Salvador Dal\xC3\xAD");
  CHECK_STR(text_of(&set, "parti:437"), "a corgi\xE2\x80\x99s head depicted as an explosion of a nebula");
  CHECK_STR(text_of(&set, "parti:1631"), "a series of musical notes on a computer screen");
  CHECK(prompt_set_find(&set, "parti:1632") == NULL);
  CHECK(prompt_set_find(&set, "parti:-1") == NULL);
  const prompt *p = prompt_set_find(&set, "parti:276");
  CHECK(p && strstr(p->text, "The words \"Fly an airplane\" are written on the wall."));
  p = prompt_set_find(&set, "parti:17");
  CHECK(p && !strcmp(p->category, "Abstract") && !strcmp(prompt_extra_get(p, "challenge"), "Basic") &&
        !strcmp(prompt_extra_get(p, "Note"), "Physics concepts"));
  /* The last row's Note is empty: its line ends "...\t\n". */
  p = prompt_set_find(&set, "parti:1631");
  CHECK(p && !strcmp(prompt_extra_get(p, "Note"), "") && !strcmp(p->category, "Artifacts"));
  prompt_set_free(&set);
}

/* ----------------------------------------------------------- HPSv2 */

static void test_hpsv2(void) {
  prompt_set set;
  dpo_error err = {0};
  if (prompt_set_load("hpsv2", &set, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "loading hpsv2: %s", err.msg);
    return;
  }
  CHECK_INT(set.n, 3200);
  static const struct { const char *style; int duplicates; } styles[] = {
      {"anime", 19}, {"concept-art", 5}, {"paintings", 2}, {"photo", 0}};
  for (int s = 0; s < 4; s++) {
    CHECK_INT(count_category(&set, styles[s].style), 800);
    CHECK_INT(count_duplicates(&set, styles[s].style), styles[s].duplicates);
  }
  /* File order: the 800 prompts of each style in turn, ids by index. */
  CHECK_STR(set.items[0].id, "hpsv2:anime:0");
  CHECK_STR(set.items[800].id, "hpsv2:concept-art:0");
  CHECK_STR(set.items[3199].id, "hpsv2:photo:799");
  /* The indices SiD-LSG cites. */
  CHECK_STR(text_of(&set, "hpsv2:anime:329"), "Walter White dressed as a medieval-style king.");
  CHECK_STR(text_of(&set, "anime:329"), "Walter White dressed as a medieval-style king.");
  CHECK(strncmp(text_of(&set, "hpsv2:anime:57"), "A hyena fursona sitting in the grass", 36) == 0);
  CHECK_STR(text_of(&set, "hpsv2:photo:165"), "Large dog looking at television show in living room.");
  CHECK(strncmp(text_of(&set, "hpsv2:concept-art:668"), "Half-length head portrait of the goddess of autumn",
                50) == 0);
  /* Embedded newlines, exactly at the six places the SOURCE.md names. */
  const char *with_newline[] = {"hpsv2:anime:723", "hpsv2:concept-art:412", "hpsv2:concept-art:453",
                                "hpsv2:paintings:168", "hpsv2:photo:204", "hpsv2:photo:344"};
  int newlines = 0;
  for (int i = 0; i < set.n; i++)
    if (strchr(set.items[i].text, '\n')) newlines++;
  CHECK_INT(newlines, 6);
  for (int i = 0; i < 6; i++) {
    const char *t = text_of(&set, with_newline[i]);
    CHECK(t && strchr(t, '\n'));
  }
  CHECK_STR(text_of(&set, "hpsv2:anime:723"),
            ".\n\nA full-body shot of an anime maid with rich detail, featuring a pretty face and eyes.");
  CHECK_STR(text_of(&set, "hpsv2:photo:204"), "A man is standing in front of a case filled with pastries.\n");
  /* Photo prompts keep their spaces: 111 end in whitespace, 4 start with a space. */
  int trailing = 0, leading = 0, trailing_other = 0;
  for (int i = 0; i < set.n; i++) {
    const char *t = set.items[i].text;
    size_t n = strlen(t);
    int ends = t[n - 1] == ' ' || t[n - 1] == '\n';
    if (!strcmp(set.items[i].category, "photo")) {
      trailing += ends;
      leading += t[0] == ' ';
    } else {
      trailing_other += ends || t[0] == ' ';
    }
  }
  CHECK_INT(trailing, 111);
  CHECK_INT(leading, 4);
  CHECK_INT(trailing_other, 0);
  CHECK_STR(text_of(&set, "hpsv2:photo:251"), " A blender sitting on top of a table.");
  /* JSON escapes decoded: 158 quotes, 18 prompts with non-ASCII (\uXXXX). */
  int quotes = 0, non_ascii = 0;
  size_t longest = 0;
  for (int i = 0; i < set.n; i++) {
    for (const char *c = set.items[i].text; *c; c++) quotes += *c == '"';
    non_ascii += has_non_ascii(set.items[i].text);
    if (strlen(set.items[i].text) > longest) longest = strlen(set.items[i].text);
  }
  CHECK_INT(quotes, 158);
  CHECK_INT(non_ascii, 18);
  CHECK_INT(longest, 404);
  CHECK_STR(text_of(&set, "hpsv2:anime:338"), "A Pok\xC3\xA9mon battle between Obi-Wan Kenobi and Anakin Skywalker.");
  CHECK_INT(strlen(text_of(&set, "hpsv2:concept-art:753")), 404);
  prompt_set_free(&set);
}

/* -------------------------------------------------------- TEd-Bench */

/* The PNG IHDR: width, height, bit depth and colour type (6 = RGBA). */
static int png_header(const char *path, uint32_t *w, uint32_t *h, int *depth, int *color_type) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  unsigned char b[26];
  size_t got = fread(b, 1, sizeof b, f);
  fclose(f);
  if (got != sizeof b || memcmp(b + 12, "IHDR", 4) != 0) return -1;
  *w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
  *h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
  *depth = b[24];
  *color_type = b[25];
  return 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void test_tedbench(void) {
  prompt_set set;
  dpo_error err = {0};
  if (prompt_set_load("tedbench", &set, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "loading tedbench: %s", err.msg);
    return;
  }
  CHECK_INT(set.n, 100);
  /* Distinct images and texts, edits per image. */
  const char *images[100];
  int edits[100] = {0}, n_images = 0, distinct_texts = 0;
  for (int i = 0; i < set.n; i++) {
    const prompt *p = &set.items[i];
    int j = 0;
    while (j < n_images && strcmp(images[j], p->category) != 0) j++;
    if (j == n_images) images[n_images++] = p->category;
    edits[j]++;
    int seen = 0;
    for (int k = 0; k < i; k++) seen |= !strcmp(set.items[k].text, p->text);
    distinct_texts += !seen;
    CHECK(ends_with(p->text, "."));
    /* Every referenced image exists, at an absolute path ending in its name. */
    const char *image = prompt_extra_get(p, "image");
    CHECK(image && image[0] == '/' && ends_with(image, p->category));
    struct stat st;
    CHECK(image && stat(image, &st) == 0 && S_ISREG(st.st_mode));
  }
  CHECK_INT(n_images, 40);
  CHECK_INT(distinct_texts, 97);
  int histogram[8] = {0};
  for (int j = 0; j < n_images; j++) histogram[edits[j] < 8 ? edits[j] : 7]++;
  CHECK_INT(histogram[1], 16);
  CHECK_INT(histogram[2], 6);
  CHECK_INT(histogram[3], 7);
  CHECK_INT(histogram[4], 5);
  CHECK_INT(histogram[5], 5);
  CHECK_INT(histogram[6], 1);
  CHECK_INT(count_category(&set, "white_horse2.png"), 6);
  CHECK_INT(count_category(&set, "bird.png"), 1);
  CHECK_INT(count_category(&set, "bird.jpeg"), 4);
  /* Formats by magic bytes, counted per image: 33 JPEG (bird.png among them), 7 PNG. */
  int jpeg = 0, png = 0, ext_png = 0, ext_jpeg = 0, ext_jpg = 0;
  for (int j = 0; j < n_images; j++) {
    char id_image[256];
    snprintf(id_image, sizeof id_image, "%s", images[j]);
    const prompt *first = NULL;
    for (int i = 0; i < set.n && !first; i++)
      if (!strcmp(set.items[i].category, id_image)) first = &set.items[i];
    const char *format = prompt_extra_get(first, "format");
    jpeg += !strcmp(format, "jpeg");
    png += !strcmp(format, "png");
    ext_png += ends_with(images[j], ".png");
    ext_jpeg += ends_with(images[j], ".jpeg");
    ext_jpg += ends_with(images[j], ".jpg");
    if (!strcmp(format, "png")) {
      uint32_t w = 0, h = 0;
      int depth = 0, color = 0;
      CHECK_INT(png_header(prompt_extra_get(first, "image"), &w, &h, &depth, &color), 0);
      CHECK(w == 256 && h == 256 && depth == 8 && color == 6);   /* 256x256 RGBA */
    }
  }
  CHECK_INT(jpeg, 33);
  CHECK_INT(png, 7);
  CHECK_INT(ext_jpeg, 28);
  CHECK_INT(ext_jpg, 4);
  CHECK_INT(ext_png, 8);
  const prompt *bird = prompt_set_find(&set, "tedbench:63");
  CHECK(bird && !strcmp(bird->category, "bird.png"));
  CHECK(bird && !strcmp(prompt_extra_get(bird, "format"), "jpeg"));
  CHECK_STR(text_of(&set, "tedbench:0"), "A photo of a sitting dog.");
  CHECK_STR(text_of(&set, "3"), "A photo of a dog laying down.");
  /* Every file in originals/ is referenced. */
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", prompt_extra_get(&set.items[0], "image"));
  *strrchr(dir, '/') = '\0';
  DIR *d = opendir(dir);
  struct dirent *e;
  int files = 0;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    files++;
    CHECK(count_category(&set, e->d_name) > 0);
  }
  if (d) closedir(d);
  CHECK_INT(files, 40);
  prompt_set_free(&set);
}

/* ---------------------------------------------------- load and dirs */

static void test_load_errors(void) {
  prompt_set set;
  dpo_error err = {0};
  CHECK_INT(prompt_set_load("nosuch", &set, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "unknown prompt set \"nosuch\"");
  CHECK_INT(set.n, 0);
  const char *odd = test_path("prompts.csv");
  test_write_file(odd, "a\n", 2);
  CHECK_INT(prompt_set_load(odd, &set, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "unknown prompt file type");
  CHECK_INT(prompt_set_load(test_path("missing.txt"), &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "missing.txt: cannot open");
  /* Files over 64 MiB are refused before reading (a sparse file). */
  const char *big = test_path("big.txt");
  int fd = open(big, O_CREAT | O_WRONLY | O_TRUNC, 0644);
  CHECK(fd >= 0 && ftruncate(fd, (off_t)PROMPT_MAX_FILE_BYTES + 1) == 0);
  if (fd >= 0) close(fd);
  CHECK_INT(prompt_set_load(big, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "larger than the limit of 67108864 bytes");
  /* The in-memory parser enforces the same limit. */
  CHECK_INT(prompt_set_parse("x", (size_t)PROMPT_MAX_FILE_BYTES + 1, PROMPT_FORMAT_TXT, "m", "m", &set, &err),
            DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "larger than the limit");
  /* A user file: ids from its stem and line. */
  const char *path = test_path("my.prompts.txt");
  test_write_file(path, "a cat\n\nthe dog\n", 15);
  CHECK_INT(prompt_set_load(path, &set, &err), DPO_OK);
  CHECK_STR(set.name, "my.prompts");
  CHECK_INT(set.n, 2);
  CHECK_STR(set.items[1].id, "my.prompts:3");
  CHECK_STR(text_of(&set, "3"), "the dog");
  prompt_set_free(&set);
}

static void test_data_dir(void) {
  char dir[4096];
  unsetenv("DPO_DATA_DIR");
  prompt_data_dir(dir, sizeof dir);
  CHECK(dir[0] != '\0');
  /* DPO_DATA_DIR wins: a stand-in Parti file with two prompts. */
  char parti_dir[1024];
  snprintf(parti_dir, sizeof parti_dir, "%s", test_path("data/partiprompts"));
  dpo_error err = {0};
  CHECK_INT(dpo_mkdir_p(parti_dir, &err), DPO_OK);
  const char *tsv = "Prompt\tCategory\tChallenge\tNote\nred\tA\tBasic\t\nblue\tB\tBasic\tn\n";
  char file[1100];
  snprintf(file, sizeof file, "%s/PartiPrompts.tsv", parti_dir);
  test_write_file(file, tsv, strlen(tsv));
  setenv("DPO_DATA_DIR", test_path("data"), 1);
  prompt_data_dir(dir, sizeof dir);
  CHECK_STR(dir, test_path("data"));
  prompt_set set;
  CHECK_INT(prompt_set_load("parti", &set, &err), DPO_OK);
  CHECK_INT(set.n, 2);
  CHECK_STR(text_of(&set, "parti:1"), "blue");
  prompt_set_free(&set);
  /* A data directory without the set names the variable in the error. */
  CHECK_INT(prompt_set_load("hpsv2", &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "DPO_DATA_DIR=");
  CHECK_CONTAINS(err.msg, "hpsv2_benchmark_prompts.json: cannot open");
  unsetenv("DPO_DATA_DIR");
}

static void test_builtins_table(void) {
  int n;
  const prompt_builtin *b = prompt_builtins(&n);
  CHECK_INT(n, 3);
  CHECK_STR(b[0].name, "parti");
  CHECK(prompt_builtin_find("hpsv2") == &b[1]);
  CHECK(prompt_builtin_find("tedbench") == &b[2]);
  CHECK(prompt_builtin_find("Parti") == NULL);
}

/* ------------------------------------------------------------- .txt */

static void test_txt(void) {
  prompt_set set;
  dpo_error err = {0};
  /* BOM skipped, CRLF read as LF, blank and whitespace-only lines skipped,
   * spaces kept, tabs and quotes are text. */
  const char *text = "\xEF\xBB\xBF" "first prompt\r\n\r\n  \t \n  spaced  \r\nsay \"hi\"\tthere\nno newline at end";
  CHECK_INT(parse(text, strlen(text), PROMPT_FORMAT_TXT, &set, &err), DPO_OK);
  CHECK_INT(set.n, 4);
  CHECK_STR(set.items[0].text, "first prompt");
  CHECK_STR(set.items[0].id, "t:1");
  CHECK_STR(set.items[1].text, "  spaced  ");
  CHECK_STR(set.items[1].id, "t:4");
  CHECK_INT(set.items[1].line, 4);
  CHECK_STR(set.items[2].text, "say \"hi\"\tthere");
  CHECK_STR(set.items[3].text, "no newline at end");
  CHECK_STR(set.items[3].category, "");
  CHECK_INT(set.items[3].n_extras, 0);
  CHECK_STR(text_of(&set, "t:5"), "say \"hi\"\tthere");
  CHECK_STR(text_of(&set, "5"), "say \"hi\"\tthere");
  CHECK(prompt_set_find(&set, "t:2") == NULL);
  prompt_set_free(&set);
  /* Non-ASCII UTF-8 is fine. */
  const char *utf8 = "caf\xC3\xA9 \xE2\x98\x95 \xF0\x9F\x90\x88\n";
  CHECK_INT(parse(utf8, strlen(utf8), PROMPT_FORMAT_TXT, &set, &err), DPO_OK);
  CHECK_STR(set.items[0].text, "caf\xC3\xA9 \xE2\x98\x95 \xF0\x9F\x90\x88");
  prompt_set_free(&set);
  /* A BOM alone or in the middle: only the leading one is skipped. */
  const char *mid_bom = "a\n\xEF\xBB\xBF" "b\n";
  CHECK_INT(parse(mid_bom, strlen(mid_bom), PROMPT_FORMAT_TXT, &set, &err), DPO_OK);
  CHECK_STR(set.items[1].text, "\xEF\xBB\xBF" "b");
  prompt_set_free(&set);
}

static void test_txt_malformed(void) {
  parse_fails("", PROMPT_FORMAT_TXT, "t.in: no prompts found");
  parse_fails("\n \n\t\n", PROMPT_FORMAT_TXT, "no prompts found");
  parse_fails("\xEF\xBB\xBF", PROMPT_FORMAT_TXT, "no prompts found");
  /* Invalid UTF-8: the line and the byte offset of the first bad byte. */
  parse_fails("ok\nbad \xFF here\n", PROMPT_FORMAT_TXT, "t.in:2: invalid UTF-8 at byte offset 7 (byte 0xff)");
  parse_fails("overlong \xC0\xAF\n", PROMPT_FORMAT_TXT, "invalid UTF-8 at byte offset 9");
  parse_fails("overlong3 \xE0\x80\xAF\n", PROMPT_FORMAT_TXT, "invalid UTF-8 at byte offset 10");
  parse_fails("surrogate \xED\xA0\x80\n", PROMPT_FORMAT_TXT, "invalid UTF-8 at byte offset 10");
  parse_fails("too big \xF4\x90\x80\x80\n", PROMPT_FORMAT_TXT, "invalid UTF-8 at byte offset 8");
  parse_fails("cut \xE2\x98", PROMPT_FORMAT_TXT, "invalid UTF-8 at byte offset 4");
  parse_fails("stray \x80 continuation", PROMPT_FORMAT_TXT, "invalid UTF-8 at byte offset 6");
  /* A NUL byte (strlen would stop at it, so pass the length). */
  prompt_set set;
  dpo_error err = {0};
  CHECK_INT(parse("a\nb\0c\n", 6, PROMPT_FORMAT_TXT, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "t.in:2: NUL byte at byte offset 3");
  /* A prompt over 64 KiB names its line. */
  size_t n = PROMPT_MAX_TEXT_BYTES + 1;
  char *long_text = malloc(n + 8);
  memcpy(long_text, "short\n", 6);
  memset(long_text + 6, 'x', n);
  long_text[6 + n] = '\n';
  CHECK_INT(parse(long_text, n + 7, PROMPT_FORMAT_TXT, &set, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "t.in:2: prompt is 65537 bytes, longer than the limit of 65536 bytes");
  /* Exactly 64 KiB is accepted. */
  CHECK_INT(parse(long_text, n + 6 - 1, PROMPT_FORMAT_TXT, &set, &err), DPO_OK);
  CHECK_INT(set.n, 2);
  CHECK_INT(strlen(set.items[1].text), PROMPT_MAX_TEXT_BYTES);
  prompt_set_free(&set);
  free(long_text);
}

/* ------------------------------------------------------------- .tsv */

static void test_tsv(void) {
  prompt_set set;
  dpo_error err = {0};
  /* Quotes are literal, the last column may be empty (trailing tab), CRLF
   * and blank lines are fine, unknown columns become extras. */
  const char *text =
      "\xEF\xBB\xBFPrompt\tCategory\tChallenge\tNote\r\n"
      "a \"quoted\" word\tArts\tBasic\t\r\n"
      "\r\n"
      "\"starts with a quote\tArts\tComplex\tsome note\r\n"
      "Dal\xC3\xAD\tPeople\tBasic\t\r\n";
  CHECK_INT(parse(text, strlen(text), PROMPT_FORMAT_TSV, &set, &err), DPO_OK);
  CHECK_INT(set.n, 3);
  CHECK_STR(set.items[0].text, "a \"quoted\" word");
  CHECK_STR(set.items[0].id, "t:2");
  CHECK_STR(set.items[0].category, "Arts");
  CHECK_STR(prompt_extra_get(&set.items[0], "Challenge"), "Basic");
  CHECK_STR(prompt_extra_get(&set.items[0], "Note"), "");
  CHECK_INT(set.items[0].n_extras, 2);
  CHECK_STR(set.items[1].text, "\"starts with a quote");
  CHECK_STR(set.items[1].id, "t:4");
  CHECK_STR(prompt_extra_get(&set.items[1], "note"), "some note");
  CHECK_STR(set.items[2].text, "Dal\xC3\xAD");
  prompt_set_free(&set);
  /* Lower-case names, an id column, columns in any order. */
  const char *with_ids = "id\tcategory\tprompt\nx1\tc\tfirst\nx2\t\tsecond\n";
  CHECK_INT(parse(with_ids, strlen(with_ids), PROMPT_FORMAT_TSV, &set, &err), DPO_OK);
  CHECK_INT(set.n, 2);
  CHECK_STR(text_of(&set, "x2"), "second");
  CHECK_STR(set.items[1].category, "");
  CHECK_INT(set.items[1].n_extras, 0);
  prompt_set_free(&set);
  /* Only a prompt column. */
  const char *only = "prompt\none\n";
  CHECK_INT(parse(only, strlen(only), PROMPT_FORMAT_TSV, &set, &err), DPO_OK);
  CHECK_STR(set.items[0].id, "t:2");
  prompt_set_free(&set);
}

static void test_tsv_malformed(void) {
  parse_fails("", PROMPT_FORMAT_TSV, "t.in: empty file, expected a header line");
  parse_fails("Prompt\tCategory\n", PROMPT_FORMAT_TSV, "no prompts found");
  parse_fails("text\tCategory\nhello\tA\n", PROMPT_FORMAT_TSV, "t.in:1: header has no \"prompt\" or \"Prompt\" column");
  parse_fails("prompt\tPrompt\na\tb\n", PROMPT_FORMAT_TSV, "both \"prompt\" and \"Prompt\"");
  parse_fails("prompt\tcategory\tCategory\na\tb\tc\n", PROMPT_FORMAT_TSV, "both \"category\" and \"Category\"");
  parse_fails("prompt\tx\tx\na\tb\tc\n", PROMPT_FORMAT_TSV, "t.in:1: header names column \"x\" twice (columns 2 and 3)");
  parse_fails("prompt\t\na\tb\n", PROMPT_FORMAT_TSV, "t.in:1: header column 2 has an empty name");
  /* Wrong column counts name the line and both counts. */
  parse_fails("Prompt\tCategory\tChallenge\tNote\na\tb\tc\t\nd\te\tf\n", PROMPT_FORMAT_TSV,
              "t.in:3: found 3 tab-separated columns, expected 4 as in the header (line 1)");
  parse_fails("Prompt\tCategory\na\tb\tc\n", PROMPT_FORMAT_TSV, "t.in:2: found 3 tab-separated columns, expected 2");
  parse_fails("prompt\tcategory\n\tA\n", PROMPT_FORMAT_TSV, "t.in:2: prompt is empty");
  parse_fails("id\tprompt\na\tx\nb\ty\na\tz\n", PROMPT_FORMAT_TSV,
              "t.in:4: duplicate id \"a\" (first used on line 2)");
  parse_fails("id\tprompt\n\tx\n", PROMPT_FORMAT_TSV, "t.in:2: id is empty");
  parse_fails("id\tprompt\na\x01" "b\tx\n", PROMPT_FORMAT_TSV, "t.in:2: id contains the control character 0x01");
  parse_fails("prompt\nok\nbad\xC3\n", PROMPT_FORMAT_TSV, "t.in:3: invalid UTF-8 at byte offset 13");
  /* More columns than the limit. */
  char wide[4000] = "prompt";
  for (int i = 0; i < 300; i++) snprintf(wide + strlen(wide), sizeof wide - strlen(wide), "\tc%d", i);
  strcat(wide, "\n");
  parse_fails(wide, PROMPT_FORMAT_TSV, "t.in:1: header has 301 columns, more than the limit of 256");
}

/* ----------------------------------------------------------- .jsonl */

static void test_jsonl(void) {
  prompt_set set;
  dpo_error err = {0};
  const char *text =
      "{\"prompt\": \"a cat\"}\r\n"
      "\n"
      "{\"prompt\": \"two\\nlines \\\"quoted\\\" caf\\u00e9 \", \"id\": \"p2\", \"category\": \"c\", \"style\": \"s\", "
      "\"n\": 3, \"seed\": null}\n"
      "  {\"category\": null, \"prompt\": \"\\t tab\"}  \n";
  CHECK_INT(parse(text, strlen(text), PROMPT_FORMAT_JSONL, &set, &err), DPO_OK);
  CHECK_INT(set.n, 3);
  CHECK_STR(set.items[0].id, "t:1");
  CHECK_STR(set.items[0].text, "a cat");
  CHECK_STR(set.items[0].category, "");
  CHECK_STR(set.items[1].id, "p2");
  CHECK_STR(set.items[1].text, "two\nlines \"quoted\" caf\xC3\xA9 ");
  CHECK_STR(set.items[1].category, "c");
  CHECK_INT(set.items[1].n_extras, 1);   /* only string members become extras */
  CHECK_STR(prompt_extra_get(&set.items[1], "style"), "s");
  CHECK_INT(set.items[1].line, 3);
  CHECK_STR(set.items[2].text, "\t tab");
  CHECK_STR(set.items[2].id, "t:4");
  CHECK_STR(text_of(&set, "p2"), "two\nlines \"quoted\" caf\xC3\xA9 ");
  prompt_set_free(&set);
}

static void test_jsonl_malformed(void) {
  parse_fails("", PROMPT_FORMAT_JSONL, "no prompts found");
  parse_fails("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n", PROMPT_FORMAT_JSONL, "t.in:2:");
  parse_fails("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n", PROMPT_FORMAT_JSONL, "invalid JSON");
  parse_fails("{\"prompt\": \"a\"} {\"prompt\": \"b\"}\n", PROMPT_FORMAT_JSONL, "t.in:1:");
  parse_fails("[\"a\"]\n", PROMPT_FORMAT_JSONL, "t.in:1: expected a JSON object with a \"prompt\" string");
  parse_fails("\"a\"\n", PROMPT_FORMAT_JSONL, "t.in:1:");
  parse_fails("{\"text\": \"a\"}\n", PROMPT_FORMAT_JSONL, "t.in:1: missing key \"prompt\"");
  parse_fails("{\"prompt\": 5}\n", PROMPT_FORMAT_JSONL, "t.in:1: key \"prompt\": expected a string, got an integer");
  parse_fails("{\"prompt\": null}\n", PROMPT_FORMAT_JSONL, "key \"prompt\": expected a string, got null");
  parse_fails("{\"prompt\": \"a\", \"id\": 7}\n", PROMPT_FORMAT_JSONL, "t.in:1: key \"id\": expected a string");
  parse_fails("{\"prompt\": \"a\", \"category\": [1]}\n", PROMPT_FORMAT_JSONL,
              "t.in:1: key \"category\": expected a string, got an array");
  parse_fails("{\"prompt\": \"\"}\n", PROMPT_FORMAT_JSONL, "t.in:1: key \"prompt\" is empty");
  parse_fails("{\"prompt\": \"a\\u0000b\"}\n", PROMPT_FORMAT_JSONL, "t.in:1: key \"prompt\" contains a NUL character");
  parse_fails("{\"prompt\": \"a\", \"category\": \"x\\u0000\"}\n", PROMPT_FORMAT_JSONL,
              "key \"category\" contains a NUL character");
  parse_fails("{\"prompt\": \"a\", \"prompt\": \"b\"}\n", PROMPT_FORMAT_JSONL, "t.in:1:");
  parse_fails("{\"prompt\": \"a\", \"id\": \"\"}\n", PROMPT_FORMAT_JSONL, "t.in:1: id is empty");
  parse_fails("{\"prompt\": \"a\", \"id\": \"x\\ny\"}\n", PROMPT_FORMAT_JSONL, "t.in:1: id contains the control character 0x0a");
  parse_fails("{\"prompt\": \"a\", \"id\": \"k\"}\n\n{\"prompt\": \"b\", \"id\": \"k\"}\n", PROMPT_FORMAT_JSONL,
              "t.in:3: duplicate id \"k\" (first used on line 1)");
  /* An explicit id that collides with a line-based one. */
  parse_fails("{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"id\": \"t:1\"}\n", PROMPT_FORMAT_JSONL,
              "t.in:2: duplicate id \"t:1\" (first used on line 1)");
  parse_fails("{\"prompt\": \"caf\xC3\"}\n", PROMPT_FORMAT_JSONL, "t.in:1: invalid UTF-8 at byte offset 15");
}

static void test_user_files_on_disk(void) {
  /* The same three formats through prompt_set_load, as the CLI reads them. */
  prompt_set set;
  dpo_error err = {0};
  const char *tsv = test_path("bad.tsv");
  const char *bad = "prompt\tcategory\nok\tA\nmissing a column\n";
  test_write_file(tsv, bad, strlen(bad));
  CHECK_INT(prompt_set_load(tsv, &set, &err), DPO_ERR_DATA);
  char expected[1200];
  snprintf(expected, sizeof expected, "%s:3: found 1 tab-separated columns, expected 2", tsv);
  CHECK_CONTAINS(err.msg, expected);
  const char *jsonl = test_path("good.JSONL");
  const char *good = "{\"prompt\": \"x\"}\n";
  test_write_file(jsonl, good, strlen(good));
  CHECK_INT(prompt_set_load(jsonl, &set, &err), DPO_OK);
  CHECK_STR(set.items[0].id, "good:1");
  prompt_set_free(&set);
}

int main(void) {
  test_builtins_table();
  test_parti();
  test_hpsv2();
  test_tedbench();
  test_load_errors();
  test_data_dir();
  test_txt();
  test_txt_malformed();
  test_tsv();
  test_tsv_malformed();
  test_jsonl();
  test_jsonl_malformed();
  test_user_files_on_disk();
  return test_finish();
}
