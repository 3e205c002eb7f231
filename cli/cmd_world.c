/* dpo world render | prompts | judge: the built-in shapes world. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "world/world.h"

void cmd_world_help(FILE *out) {
  fprintf(out,
          "usage: dpo world render --prompt TEXT --out FILE.png [--seed S] [--size N]\n"
          "       dpo world prompts --n N --split train|heldout [--seed S]\n"
          "       dpo world judge [--json] --prompt TEXT IMAGE\n\n"
          "The built-in synthetic shapes world: scenes of one to three flat shapes on a\n"
          "plain background, described by English prompts, and a judge that scores an\n"
          "image against a prompt from its pixels alone.\n\n"
          "subcommands:\n"
          "  render    draws a scene that satisfies the prompt (sizes and background left\n"
          "            out of the prompt, and the layout, are drawn from the seed) and\n"
          "            writes it as an RGB PNG with the canonical prompt, seed and size\n"
          "            in text chunks\n"
          "  prompts   N distinct prompts of one split, one canonical prompt a line, in a\n"
          "            fixed order for the seed. A prompt is held out when the hash of its\n"
          "            canonical text falls in the held-out tenth, so the splits are\n"
          "            disjoint and the same for every seed\n"
          "  judge     detects the objects (by colour), their shapes, sizes and relations\n"
          "            and prints alignment (the share of the prompt's constraints that\n"
          "            hold, 0 to 1), appeal (prompt-free: flat colours, no noise or blur,\n"
          "            some content, 0 to 1), the background and the objects found\n\n"
          "options:\n"
          "  --prompt TEXT   a prompt in the grammar below\n"
          "  --out FILE.png  (render) where to write the image (atomically)\n"
          "  --seed S        layout (render) or draw order (prompts); default 0\n"
          "  --size N        (render) image side in pixels, %d to %d; default %d\n"
          "  --n N           (prompts) how many prompts\n"
          "  --split NAME    (prompts) train or heldout\n"
          "  --json          (judge) one JSON object instead of text\n"
          "  -h, --help      this help\n\n"
          "prompt grammar (case-insensitive; commas and a final period are ignored):\n"
          "  prompt   := subject [relation object [and relation object]]\n"
          "              [on a BACKGROUND background]\n"
          "  subject, object := a|an [small|large] COLOUR SHAPE\n"
          "  COLOUR   := red orange yellow green cyan blue purple pink (distinct per prompt)\n"
          "  SHAPE    := circle square triangle diamond cross\n"
          "  relation := to the left of | to the right of | above | below\n"
          "  BACKGROUND := white black gray (or grey)\n"
          "Every relation relates the subject (the first object) to the object after it.\n\n"
          "examples:\n"
          "  dpo world render --prompt \"a red circle to the left of a blue square\" --out x.png\n"
          "  dpo world render --prompt \"a large green triangle above a yellow circle on a white background\" \\\n"
          "      --out y.png --seed 3 --size 64\n"
          "  dpo world prompts --n 200 --split heldout\n"
          "  dpo world judge --prompt \"a red circle to the left of a blue square\" x.png\n\n"
          "Exit status: 0 success; 1 a prompt outside the grammar (the message names the\n"
          "word, its number and byte offset, and what was expected), a scene that cannot\n"
          "be laid out, or an unreadable image; 2 usage error.\n",
          WORLD_MIN_IMAGE_SIZE, WORLD_MAX_IMAGE_SIZE, WORLD_DEFAULT_SIZE);
}

/* The flags every subcommand may take; each checks that it got only its own. */
typedef struct {
  const char *prompt;
  const char *out;
  const char *split;
  const char *positional;
  uint64_t seed, size, n;
  int has_seed, has_size, has_n, json;
} world_flags;

static int parse_flags(const char *sub, int argc, char **argv, world_flags *f) {
  memset(f, 0, sizeof *f);
  f->size = WORLD_DEFAULT_SIZE;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int needs_value = !strcmp(a, "--prompt") || !strcmp(a, "--out") || !strcmp(a, "--split") ||
                      !strcmp(a, "--seed") || !strcmp(a, "--size") || !strcmp(a, "--n");
    if (needs_value && i + 1 >= argc) return cli_usage_error("world", "%s expects a value", a);
    if (!strcmp(a, "--prompt")) f->prompt = argv[++i];
    else if (!strcmp(a, "--out")) f->out = argv[++i];
    else if (!strcmp(a, "--split")) f->split = argv[++i];
    else if (!strcmp(a, "--seed")) {
      if (cli_parse_u64("world", "--seed", argv[++i], &f->seed) != EXIT_OK) return EXIT_USAGE;
      f->has_seed = 1;
    } else if (!strcmp(a, "--size")) {
      if (cli_parse_u64("world", "--size", argv[++i], &f->size) != EXIT_OK) return EXIT_USAGE;
      f->has_size = 1;
    } else if (!strcmp(a, "--n")) {
      if (cli_parse_u64("world", "--n", argv[++i], &f->n) != EXIT_OK) return EXIT_USAGE;
      f->has_n = 1;
    } else if (!strcmp(a, "--json")) f->json = 1;
    else if (a[0] == '-' && a[1] != '\0') return cli_usage_error("world", "unknown option \"%s\"", a);
    else if (!f->positional) f->positional = a;
    else return cli_usage_error("world", "'%s' takes one IMAGE at most, got \"%s\" too", sub, a);
  }
  return EXIT_OK;
}

/* Refuses flags that belong to another subcommand. */
static int only_flags(const char *sub, const world_flags *f, const char *allowed) {
  struct { const char *name; int given; } all[] = {
      {"--prompt", f->prompt != NULL}, {"--out", f->out != NULL}, {"--split", f->split != NULL},
      {"--seed", f->has_seed},         {"--size", f->has_size},   {"--n", f->has_n},
      {"--json", f->json},             {"IMAGE", f->positional != NULL},
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (!all[i].given) continue;
    char token[32];
    snprintf(token, sizeof token, " %s ", all[i].name);
    if (!strstr(allowed, token))
      return cli_usage_error("world", "%s does not apply to '%s'", all[i].name, sub);
  }
  return EXIT_OK;
}

/* ------------------------------------------------------------- render */

static int world_render_command(const world_flags *f) {
  if (!f->prompt) return cli_usage_error("world", "'render' needs --prompt TEXT");
  if (!f->out) return cli_usage_error("world", "'render' needs --out FILE.png");
  if (f->size < WORLD_MIN_IMAGE_SIZE || f->size > WORLD_MAX_IMAGE_SIZE)
    return cli_usage_error("world", "--size must be %d to %d, got %llu", WORLD_MIN_IMAGE_SIZE, WORLD_MAX_IMAGE_SIZE,
                           (unsigned long long)f->size);
  dpo_error err = {0};
  world_prompt p;
  world_scene scene;
  char canonical[WORLD_PROMPT_MAX];
  if (world_prompt_parse(f->prompt, &p, &err) != DPO_OK || world_layout(&p, f->seed, &scene, &err) != DPO_OK ||
      world_prompt_format(&p, canonical, sizeof canonical, &err) != DPO_OK)
    return cli_report_error(&err);
  dpo_image img = {0};
  if (world_render(&scene, (int)f->size, 1, &img, &err) != DPO_OK) return cli_report_error(&err);
  char seed_text[32], size_text[32];
  snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)f->seed);
  snprintf(size_text, sizeof size_text, "%llu", (unsigned long long)f->size);
  dpo_image_text texts[4] = {{"prompt", canonical}, {"seed", seed_text}, {"size", size_text},
                             {"generator", "dpo world render"}};
  int rc = dpo_png_write(f->out, &img, texts, 4, &err);
  dpo_image_free(&img);
  if (rc != DPO_OK) return cli_report_error(&err);
  dpo_log_info("wrote %s (%llux%llu, seed %llu, %s background): %s", f->out, (unsigned long long)f->size,
               (unsigned long long)f->size, (unsigned long long)f->seed, world_background_name(scene.background),
               canonical);
  return EXIT_OK;
}

/* ------------------------------------------------------------ prompts */

static int world_prompts_command(const world_flags *f) {
  if (!f->has_n) return cli_usage_error("world", "'prompts' needs --n N");
  if (!f->split) return cli_usage_error("world", "'prompts' needs --split train|heldout");
  int split = world_split_from_name(f->split);
  if (split < 0) return cli_usage_error("world", "--split must be train or heldout, got \"%s\"", f->split);
  if (f->n > 1000000) return cli_usage_error("world", "--n is at most 1000000, got %llu", (unsigned long long)f->n);
  world_prompt *prompts = malloc(((size_t)f->n + 1) * sizeof *prompts);
  dpo_error err = {0};
  if (!prompts) {
    dpo_fail(&err, DPO_ERR_DATA, "out of memory for %llu prompts", (unsigned long long)f->n);
    return cli_report_error(&err);
  }
  if (world_prompts_generate((world_split)split, f->seed, (int)f->n, prompts, &err) != DPO_OK) {
    free(prompts);
    return cli_report_error(&err);
  }
  for (uint64_t i = 0; i < f->n; i++) {
    char text[WORLD_PROMPT_MAX];
    if (world_prompt_format(&prompts[i], text, sizeof text, &err) != DPO_OK) {
      free(prompts);
      return cli_report_error(&err);
    }
    puts(text);
  }
  free(prompts);
  return EXIT_OK;
}

/* -------------------------------------------------------------- judge */

static void print_judgement_text(const world_scores *s, const world_detection *d) {
  printf("alignment: %.4f (%g of %d constraints)\n", s->alignment, s->satisfied, s->n_constraints);
  printf("appeal: %.4f\n", s->appeal);
  printf("background: %s\n", d->background == WORLD_ANY ? "unknown" : world_background_name(d->background));
  for (int i = 0; i < d->n_objects; i++) {
    const world_detected_object *o = &d->objects[i];
    printf("object: %s %s %s at (%.2f, %.2f), %d pixels, shape fit %.2f", world_size_name(o->size),
           world_colour_name(o->colour), world_shape_name(o->shape), o->cx, o->cy, o->area, o->shape_iou);
    if (o->count > 1) printf(", %d pieces of this colour", o->count);
    putchar('\n');
  }
}

static int print_judgement_json(const world_scores *s, const world_detection *d) {
  json_t *root = json_object();
  json_object_set_new(root, "alignment", json_real(s->alignment));
  json_object_set_new(root, "appeal", json_real(s->appeal));
  json_object_set_new(root, "constraints", json_integer(s->n_constraints));
  json_object_set_new(root, "satisfied", json_real(s->satisfied));
  json_object_set_new(root, "background",
                      d->background == WORLD_ANY ? json_null() : json_string(world_background_name(d->background)));
  json_t *objects = json_array();
  for (int i = 0; i < d->n_objects; i++) {
    const world_detected_object *o = &d->objects[i];
    json_t *j = json_object();
    json_object_set_new(j, "colour", json_string(world_colour_name(o->colour)));
    json_object_set_new(j, "shape", json_string(world_shape_name(o->shape)));
    json_object_set_new(j, "size", json_string(world_size_name(o->size)));
    json_object_set_new(j, "x", json_real(o->cx));
    json_object_set_new(j, "y", json_real(o->cy));
    json_object_set_new(j, "pixels", json_integer(o->area));
    json_array_append_new(objects, j);
  }
  json_object_set_new(root, "objects", objects);
  char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
  json_decref(root);
  if (!text) {
    dpo_error err;
    dpo_fail(&err, DPO_ERR_DATA, "cannot encode the judgement as JSON");
    return cli_report_error(&err);
  }
  puts(text);
  free(text);
  return EXIT_OK;
}

static int world_judge_command(const world_flags *f) {
  if (!f->prompt) return cli_usage_error("world", "'judge' needs --prompt TEXT");
  if (!f->positional) return cli_usage_error("world", "'judge' needs an IMAGE");
  dpo_error err = {0};
  dpo_image img = {0};
  world_scores scores;
  world_detection detection;
  world_prompt p;
  if (world_prompt_parse(f->prompt, &p, &err) != DPO_OK) return cli_report_error(&err);
  if (dpo_image_read(f->positional, 3, &img, &err) != DPO_OK) return cli_report_error(&err);
  int rc = world_judge_score(&img, f->prompt, &scores, &err);
  if (rc == DPO_OK) rc = world_detect(&img, &detection, &err);
  dpo_image_free(&img);
  if (rc != DPO_OK) {
    dpo_error_prefix(&err, "%s", f->positional);
    return cli_report_error(&err);
  }
  if (f->json) return print_judgement_json(&scores, &detection);
  print_judgement_text(&scores, &detection);
  return EXIT_OK;
}

int cmd_world(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (cli_is_help(argv[i])) {
      cmd_world_help(stdout);
      return EXIT_OK;
    }
  if (argc < 2) return cli_usage_error("world", "expected a subcommand: render, prompts or judge");
  const char *sub = argv[1];
  world_flags f;
  if (!strcmp(sub, "render")) {
    if (parse_flags(sub, argc, argv, &f) != EXIT_OK || only_flags(sub, &f, " --prompt --out --seed --size ") != EXIT_OK)
      return EXIT_USAGE;
    return world_render_command(&f);
  }
  if (!strcmp(sub, "prompts")) {
    if (parse_flags(sub, argc, argv, &f) != EXIT_OK || only_flags(sub, &f, " --n --split --seed ") != EXIT_OK)
      return EXIT_USAGE;
    return world_prompts_command(&f);
  }
  if (!strcmp(sub, "judge")) {
    if (parse_flags(sub, argc, argv, &f) != EXIT_OK || only_flags(sub, &f, " --prompt --json IMAGE ") != EXIT_OK)
      return EXIT_USAGE;
    return world_judge_command(&f);
  }
  return cli_usage_error("world", "unknown subcommand \"%s\" (expected render, prompts or judge)", sub);
}
