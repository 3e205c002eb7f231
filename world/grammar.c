/* The prompt grammar of the shapes world: parser, canonical text, splits,
 * the random prompt generator and one-attribute perturbations. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "world/world.h"

/* Prompts are short; anything longer is not in the grammar. */
#define PROMPT_MAX_BYTES 1024
#define PROMPT_MAX_WORDS 64

/* ---------------------------------------------------------- tokenizer */

typedef struct {
  char text[32];   /* lower-cased; longer words are cut (and match nothing) */
  int offset;      /* byte offset in the prompt */
} word;

typedef struct {
  word words[PROMPT_MAX_WORDS];
  int n;
  int pos;         /* next word to read */
} word_list;

/* Splits on spaces and commas (a comma is only punctuation here) and drops
 * one final period. */
static int split_words(const char *text, word_list *w, dpo_error *err) {
  size_t len = strlen(text);
  if (len > PROMPT_MAX_BYTES) return dpo_fail(err, DPO_ERR_DATA, "prompt is %zu bytes, longer than %d", len, PROMPT_MAX_BYTES);
  while (len > 0 && isspace((unsigned char)text[len - 1])) len--;
  if (len > 0 && text[len - 1] == '.') len--;
  memset(w, 0, sizeof *w);
  size_t i = 0;
  while (i < len) {
    unsigned char c = (unsigned char)text[i];
    if (isspace(c) || c == ',') {
      i++;
      continue;
    }
    if (w->n == PROMPT_MAX_WORDS)
      return dpo_fail(err, DPO_ERR_DATA, "prompt has more than %d words (byte %zu)", PROMPT_MAX_WORDS, i);
    word *cur = &w->words[w->n++];
    cur->offset = (int)i;
    size_t k = 0;
    while (i < len && !isspace((unsigned char)text[i]) && text[i] != ',') {
      if (k + 1 < sizeof cur->text) cur->text[k++] = (char)tolower((unsigned char)text[i]);
      i++;
    }
    cur->text[k] = '\0';
  }
  return DPO_OK;
}

static const char *peek(const word_list *w) { return w->pos < w->n ? w->words[w->pos].text : NULL; }

static int accept(word_list *w, const char *expected) {
  if (w->pos < w->n && strcmp(w->words[w->pos].text, expected) == 0) {
    w->pos++;
    return 1;
  }
  return 0;
}

/* Names the word where parsing stopped (number from 1, byte offset) and what
 * the grammar expected there, or says the prompt ended too early. */
static int fail_at(dpo_error *err, const word_list *w, const char *expected) {
  if (w->pos < w->n)
    return dpo_fail(err, DPO_ERR_DATA, "prompt word %d \"%s\" (byte %d) is unexpected: expected %s", w->pos + 1,
                    w->words[w->pos].text, w->words[w->pos].offset, expected);
  return dpo_fail(err, DPO_ERR_DATA, "prompt ends after word %d: expected %s", w->n, expected);
}

/* ------------------------------------------------------------- parser */

static int find_name(const char *text, const char *(*name_of)(int), int count) {
  if (!text) return -1;
  for (int i = 0; i < count; i++)
    if (strcmp(text, name_of(i)) == 0) return i;
  return -1;
}

#define COLOURS "a colour (red, orange, yellow, green, cyan, blue, purple, pink)"
#define SHAPES "a shape (circle, square, triangle, diamond, cross)"

static int parse_object(word_list *w, const world_prompt *so_far, world_object_spec *o, dpo_error *err) {
  if (!accept(w, "a") && !accept(w, "an")) return fail_at(err, w, "\"a\" or \"an\"");
  o->size = find_name(peek(w), world_size_name, WORLD_N_SIZES);
  if (o->size >= 0) w->pos++;
  else o->size = WORLD_ANY;
  o->colour = find_name(peek(w), world_colour_name, WORLD_N_COLOURS);
  if (o->colour < 0)
    return fail_at(err, w, o->size == WORLD_ANY ? "a size (small, large) or " COLOURS : COLOURS);
  for (int i = 0; i < so_far->n_objects; i++)
    if (so_far->objects[i].colour == o->colour)
      return fail_at(err, w, "a colour not used by another object (the objects of a prompt have distinct colours)");
  w->pos++;
  o->shape = find_name(peek(w), world_shape_name, WORLD_N_SHAPES);
  if (o->shape < 0) return fail_at(err, w, SHAPES);
  w->pos++;
  return DPO_OK;
}

/* "to the left of", "to the right of", "left of", "right of", "above", "below". */
static int parse_relation(word_list *w, int *relation, dpo_error *err) {
  if (accept(w, "above")) {
    *relation = WORLD_ABOVE;
    return DPO_OK;
  }
  if (accept(w, "below")) {
    *relation = WORLD_BELOW;
    return DPO_OK;
  }
  int had_to = accept(w, "to");
  if (had_to && !accept(w, "the")) return fail_at(err, w, "\"the\" (as in \"to the left of\")");
  if (accept(w, "left")) *relation = WORLD_LEFT_OF;
  else if (accept(w, "right")) *relation = WORLD_RIGHT_OF;
  else return fail_at(err, w, had_to ? "\"left\" or \"right\"" : "a relation (to the left of, to the right of, above, below)");
  if (!accept(w, "of")) return fail_at(err, w, "\"of\"");
  return DPO_OK;
}

static int is_relation_start(const char *t) {
  return t && (!strcmp(t, "to") || !strcmp(t, "left") || !strcmp(t, "right") || !strcmp(t, "above") ||
               !strcmp(t, "below"));
}

static int parse_background(word_list *w, int *background, dpo_error *err) {
  if (!accept(w, "a") && !accept(w, "an")) return fail_at(err, w, "\"a\" (as in \"on a white background\")");
  const char *t = peek(w);
  if (t && !strcmp(t, "grey")) *background = WORLD_GRAY;
  else *background = find_name(t, world_background_name, WORLD_N_BACKGROUNDS);
  if (*background < 0) return fail_at(err, w, "a background colour (white, black, gray)");
  w->pos++;
  if (!accept(w, "background")) return fail_at(err, w, "\"background\"");
  return DPO_OK;
}

int world_prompt_parse(const char *text, world_prompt *out, dpo_error *err) {
  word_list w;
  if (split_words(text, &w, err) != DPO_OK) return DPO_ERR_DATA;
  memset(out, 0, sizeof *out);
  out->background = WORLD_ANY;
  if (w.n == 0) return dpo_fail(err, DPO_ERR_DATA, "prompt is empty: expected e.g. \"a red circle\"");
  if (parse_object(&w, out, &out->objects[0], err) != DPO_OK) return DPO_ERR_DATA;
  out->n_objects = 1;
  if (is_relation_start(peek(&w))) {
    while (1) {
      if (parse_relation(&w, &out->relations[out->n_objects - 1], err) != DPO_OK) return DPO_ERR_DATA;
      if (parse_object(&w, out, &out->objects[out->n_objects], err) != DPO_OK) return DPO_ERR_DATA;
      out->n_objects++;
      if (out->n_objects == WORLD_MAX_OBJECTS || !accept(&w, "and")) break;
      if (!is_relation_start(peek(&w)))
        return fail_at(err, &w, "a relation after \"and\" (to the left of, to the right of, above, below)");
    }
  }
  if (accept(&w, "on")) {
    if (parse_background(&w, &out->background, err) != DPO_OK) return DPO_ERR_DATA;
    if (w.pos < w.n) return fail_at(err, &w, "the end after the background");
  }
  if (w.pos < w.n) {
    if (out->n_objects == WORLD_MAX_OBJECTS && !strcmp(w.words[w.pos].text, "and"))
      return fail_at(err, &w, "\"on\" or the end (a prompt has at most three objects)");
    if (out->n_objects == 1)
      return fail_at(err, &w, "a relation (to the left of, to the right of, above, below), \"on\" or the end");
    return fail_at(err, &w, out->n_objects < WORLD_MAX_OBJECTS ? "\"and\", \"on\" or the end" : "\"on\" or the end");
  }
  return DPO_OK;
}

/* ---------------------------------------------------- canonical text */

int world_prompt_validate(const world_prompt *p, dpo_error *err) {
  if (p->n_objects < 1 || p->n_objects > WORLD_MAX_OBJECTS)
    return dpo_fail(err, DPO_ERR_USAGE, "prompt has %d objects, expected 1 to %d", p->n_objects, WORLD_MAX_OBJECTS);
  for (int i = 0; i < p->n_objects; i++) {
    const world_object_spec *o = &p->objects[i];
    if (o->colour < 0 || o->colour >= WORLD_N_COLOURS || o->shape < 0 || o->shape >= WORLD_N_SHAPES ||
        o->size < WORLD_ANY || o->size >= WORLD_N_SIZES)
      return dpo_fail(err, DPO_ERR_USAGE, "prompt object %d has an invalid colour, shape or size", i + 1);
    for (int j = 0; j < i; j++)
      if (p->objects[j].colour == o->colour)
        return dpo_fail(err, DPO_ERR_USAGE, "prompt objects %d and %d are both %s", j + 1, i + 1,
                        world_colour_name(o->colour));
  }
  for (int k = 0; k + 1 < p->n_objects; k++)
    if (p->relations[k] < 0 || p->relations[k] >= WORLD_N_RELATIONS)
      return dpo_fail(err, DPO_ERR_USAGE, "prompt relation %d is invalid", k + 1);
  if (p->background < WORLD_ANY || p->background >= WORLD_N_BACKGROUNDS)
    return dpo_fail(err, DPO_ERR_USAGE, "prompt background is invalid");
  return DPO_OK;
}

static size_t append(char *buf, size_t n, size_t used, const char *s) {
  size_t len = strlen(s);
  if (used + len < n) memcpy(buf + used, s, len + 1);
  return used + len;
}

static size_t append_object(char *buf, size_t n, size_t used, const world_object_spec *o) {
  const char *first = o->size != WORLD_ANY ? world_size_name(o->size) : world_colour_name(o->colour);
  used = append(buf, n, used, strchr("aeiou", first[0]) ? "an " : "a ");
  if (o->size != WORLD_ANY) {
    used = append(buf, n, used, world_size_name(o->size));
    used = append(buf, n, used, " ");
  }
  used = append(buf, n, used, world_colour_name(o->colour));
  used = append(buf, n, used, " ");
  return append(buf, n, used, world_shape_name(o->shape));
}

int world_prompt_format(const world_prompt *p, char *buf, size_t n, dpo_error *err) {
  if (world_prompt_validate(p, err) != DPO_OK) return DPO_ERR_USAGE;
  if (n == 0) return dpo_fail(err, DPO_ERR_USAGE, "no room for the prompt text");
  buf[0] = '\0';
  size_t used = append_object(buf, n, 0, &p->objects[0]);
  for (int k = 1; k < p->n_objects; k++) {
    used = append(buf, n, used, k == 1 ? " " : " and ");
    used = append(buf, n, used, world_relation_name(p->relations[k - 1]));
    used = append(buf, n, used, " ");
    used = append_object(buf, n, used, &p->objects[k]);
  }
  if (p->background != WORLD_ANY) {
    used = append(buf, n, used, " on a ");
    used = append(buf, n, used, world_background_name(p->background));
    used = append(buf, n, used, " background");
  }
  if (used >= n) return dpo_fail(err, DPO_ERR_USAGE, "prompt text needs %zu bytes, the buffer has %zu", used + 1, n);
  return DPO_OK;
}

int world_prompt_equal(const world_prompt *a, const world_prompt *b) {
  if (a->n_objects != b->n_objects || a->background != b->background) return 0;
  for (int i = 0; i < a->n_objects; i++) {
    if (a->objects[i].colour != b->objects[i].colour || a->objects[i].shape != b->objects[i].shape ||
        a->objects[i].size != b->objects[i].size)
      return 0;
    if (i > 0 && a->relations[i - 1] != b->relations[i - 1]) return 0;
  }
  return 1;
}

/* -------------------------------------------------------------- splits */

int world_split_from_name(const char *name) {
  if (!strcmp(name, "train")) return WORLD_SPLIT_TRAIN;
  if (!strcmp(name, "heldout")) return WORLD_SPLIT_HELDOUT;
  return -1;
}

/* splitmix64's finaliser: spreads FNV-1a's bits so that "mod 10" is fair. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t prompt_hash(const world_prompt *p) {
  char text[WORLD_PROMPT_MAX];
  if (world_prompt_format(p, text, sizeof text, NULL) != DPO_OK) return 0;
  return mix64(dpo_rng_stream_id(text, 0, 0));
}

world_split world_prompt_split(const world_prompt *p) {
  return prompt_hash(p) % 10 == 0 ? WORLD_SPLIT_HELDOUT : WORLD_SPLIT_TRAIN;
}

/* ----------------------------------------------------------- generator */

static void draw_prompt(dpo_rng *rng, world_prompt *p) {
  memset(p, 0, sizeof *p);
  uint32_t r = dpo_rng_next_below(rng, 10);
  p->n_objects = r < 3 ? 1 : r < 7 ? 2 : 3;
  int used[WORLD_N_COLOURS] = {0};
  for (int i = 0; i < p->n_objects; i++) {
    world_object_spec *o = &p->objects[i];
    do o->colour = (int)dpo_rng_next_below(rng, WORLD_N_COLOURS);
    while (used[o->colour]);
    used[o->colour] = 1;
    o->shape = (int)dpo_rng_next_below(rng, WORLD_N_SHAPES);
    o->size = dpo_rng_next_below(rng, 2) ? (int)dpo_rng_next_below(rng, WORLD_N_SIZES) : WORLD_ANY;
    if (i > 0) p->relations[i - 1] = (int)dpo_rng_next_below(rng, WORLD_N_RELATIONS);
  }
  p->background = dpo_rng_next_below(rng, 10) < 3 ? (int)dpo_rng_next_below(rng, WORLD_N_BACKGROUNDS) : WORLD_ANY;
}

void world_prompt_random(uint64_t seed, uint64_t index, world_prompt *out) {
  /* Redraw the rare prompt that cannot be laid out (three large objects in
   * a row), so that every generated prompt renders. */
  for (uint64_t attempt = 0;; attempt++) {
    dpo_rng rng;
    dpo_rng_init(&rng, seed, dpo_rng_stream_id("world.prompts", index, attempt));
    draw_prompt(&rng, out);
    world_scene scene;
    if (world_layout(out, 0, &scene, NULL) == DPO_OK) return;
  }
}

/* An open-addressing set of prompt hashes, to keep generated prompts distinct. */
typedef struct {
  uint64_t *slots;   /* 0 = empty (a zero hash is stored as 1) */
  size_t cap;
} hash_set;

static int hash_set_insert(hash_set *s, uint64_t h) {
  if (h == 0) h = 1;
  for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (s->slots[i] == h) return 0;
    if (s->slots[i] == 0) {
      s->slots[i] = h;
      return 1;
    }
  }
}

int world_prompts_generate(world_split split, uint64_t seed, int n, world_prompt *out, dpo_error *err) {
  if (n < 0) return dpo_fail(err, DPO_ERR_USAGE, "cannot generate %d prompts", n);
  if (n > 10000000) return dpo_fail(err, DPO_ERR_USAGE, "at most 10000000 prompts at a time, asked for %d", n);
  hash_set set = {NULL, 16};
  while (set.cap < 2 * (size_t)n) set.cap *= 2;
  set.slots = calloc(set.cap, sizeof *set.slots);
  if (!set.slots) return dpo_fail(err, DPO_ERR_DATA, "out of memory for %d prompts", n);
  int found = 0;
  /* Draws are independent of the split, so a heldout list is the heldout
   * subsequence of the same stream; give up when distinct prompts run out. */
  uint64_t limit = 100 * (uint64_t)n + 100000;
  for (uint64_t index = 0; found < n && index < limit; index++) {
    world_prompt p;
    world_prompt_random(seed, index, &p);
    if (world_prompt_split(&p) != split) continue;
    if (!hash_set_insert(&set, prompt_hash(&p))) continue;
    out[found++] = p;
  }
  free(set.slots);
  if (found < n)
    return dpo_fail(err, DPO_ERR_USAGE, "found only %d distinct %s prompts, asked for %d", found,
                    split == WORLD_SPLIT_HELDOUT ? "heldout" : "train", n);
  return DPO_OK;
}

/* -------------------------------------------------------- perturbation */

const char *world_perturbation_name(int what) {
  static const char *const names[WORLD_N_PERTURB] = {"colour", "shape", "size", "relation", "background"};
  return what >= 0 && what < WORLD_N_PERTURB ? names[what] : "?";
}

/* A value in [0, count) other than `current`. */
static int other_value(dpo_rng *rng, int count, int current) {
  int v = (int)dpo_rng_next_below(rng, (uint32_t)(count - 1));
  return v >= current ? v + 1 : v;
}

void world_prompt_perturb(const world_prompt *p, uint64_t seed, uint64_t index, world_prompt *out,
                          world_perturbation *what) {
  dpo_rng rng;
  dpo_rng_init(&rng, seed, dpo_rng_stream_id("world.perturb", index, 0));
  *out = *p;
  int sized[WORLD_MAX_OBJECTS], n_sized = 0;
  for (int i = 0; i < p->n_objects; i++)
    if (p->objects[i].size != WORLD_ANY) sized[n_sized++] = i;
  int kinds[WORLD_N_PERTURB], n_kinds = 0;
  kinds[n_kinds++] = WORLD_PERTURB_COLOUR;
  kinds[n_kinds++] = WORLD_PERTURB_SHAPE;
  if (n_sized > 0) kinds[n_kinds++] = WORLD_PERTURB_SIZE;
  if (p->n_objects > 1) kinds[n_kinds++] = WORLD_PERTURB_RELATION;
  if (p->background != WORLD_ANY) kinds[n_kinds++] = WORLD_PERTURB_BACKGROUND;
  int kind = kinds[dpo_rng_next_below(&rng, (uint32_t)n_kinds)];
  *what = (world_perturbation)kind;
  int obj = (int)dpo_rng_next_below(&rng, (uint32_t)p->n_objects);
  switch (kind) {
    case WORLD_PERTURB_COLOUR: {
      int c;
      int clash;
      do {
        c = (int)dpo_rng_next_below(&rng, WORLD_N_COLOURS);
        clash = 0;
        for (int i = 0; i < p->n_objects; i++) clash |= p->objects[i].colour == c;
      } while (clash);
      out->objects[obj].colour = c;
      break;
    }
    case WORLD_PERTURB_SHAPE:
      out->objects[obj].shape = other_value(&rng, WORLD_N_SHAPES, p->objects[obj].shape);
      break;
    case WORLD_PERTURB_SIZE: {
      int i = sized[dpo_rng_next_below(&rng, (uint32_t)n_sized)];
      out->objects[i].size = 1 - p->objects[i].size;
      break;
    }
    case WORLD_PERTURB_RELATION: {
      int k = (int)dpo_rng_next_below(&rng, (uint32_t)(p->n_objects - 1));
      out->relations[k] = other_value(&rng, WORLD_N_RELATIONS, p->relations[k]);
      break;
    }
    default:
      out->background = other_value(&rng, WORLD_N_BACKGROUNDS, p->background);
  }
}
