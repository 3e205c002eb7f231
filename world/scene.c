/* Names, the palette, layouts and the rasteriser of the shapes world. */
#include <math.h>
#include <string.h>

#include "world/world.h"
#include "world/world_internal.h"

/* Object colours are saturated and far apart in RGB (at least 109 from each
 * other and from every background; the unit test checks), so that the judge
 * can classify even blurred pixels by their nearest palette colour. */
static const uint8_t colour_rgb[WORLD_N_COLOURS][3] = {
    {210, 20, 40},    /* red */
    {245, 120, 0},    /* orange */
    {250, 230, 30},   /* yellow */
    {30, 170, 50},    /* green */
    {0, 200, 220},    /* cyan */
    {30, 60, 220},    /* blue */
    {150, 40, 190},   /* purple */
    {250, 120, 200},  /* pink */
};
static const char *const colour_names[WORLD_N_COLOURS] = {"red",  "orange", "yellow", "green",
                                                          "cyan", "blue",   "purple", "pink"};
static const uint8_t background_rgb[WORLD_N_BACKGROUNDS][3] = {{255, 255, 255}, {0, 0, 0}, {128, 128, 128}};
static const char *const background_names[WORLD_N_BACKGROUNDS] = {"white", "black", "gray"};
static const char *const shape_names[WORLD_N_SHAPES] = {"circle", "square", "triangle", "diamond", "cross"};
static const char *const size_names[WORLD_N_SIZES] = {"small", "large"};
static const char *const relation_names[WORLD_N_RELATIONS] = {"to the left of", "to the right of", "above",
                                                              "below"};

const char *world_colour_name(int c) { return c >= 0 && c < WORLD_N_COLOURS ? colour_names[c] : "?"; }
const char *world_background_name(int b) {
  return b >= 0 && b < WORLD_N_BACKGROUNDS ? background_names[b] : "?";
}
const char *world_shape_name(int s) { return s >= 0 && s < WORLD_N_SHAPES ? shape_names[s] : "?"; }
const char *world_size_name(int s) { return s >= 0 && s < WORLD_N_SIZES ? size_names[s] : "?"; }
const char *world_relation_name(int r) { return r >= 0 && r < WORLD_N_RELATIONS ? relation_names[r] : "?"; }

void world_colour_rgb(int c, uint8_t rgb[3]) {
  if (c < 0 || c >= WORLD_N_COLOURS) c = 0;
  memcpy(rgb, colour_rgb[c], 3);
}

void world_background_rgb(int b, uint8_t rgb[3]) {
  if (b < 0 || b >= WORLD_N_BACKGROUNDS) b = 0;
  memcpy(rgb, background_rgb[b], 3);
}

float world_object_side(int size) { return size == WORLD_LARGE ? WORLD_LARGE_SIDE : WORLD_SMALL_SIDE; }

/* ------------------------------------------------------------- layout */

/* Space kept free between objects and from the image edge (2 and 1 pixels at
 * 32x32), and how much the dominant axis of a relation must exceed the other
 * in a rendered scene. The judge only asks for dominance (ratio 1). */
#define LAYOUT_GAP 0.06f
#define LAYOUT_EDGE 0.03f
#define LAYOUT_DOMINANCE 1.3f
#define LAYOUT_TRIES 2000

int world_relation_holds(int relation, float ax, float ay, float bx, float by) {
  float dx = bx - ax, dy = by - ay;   /* from A to B */
  switch (relation) {
    case WORLD_LEFT_OF: return dx > 0 && fabsf(dx) > fabsf(dy);
    case WORLD_RIGHT_OF: return dx < 0 && fabsf(dx) > fabsf(dy);
    case WORLD_ABOVE: return dy > 0 && fabsf(dy) > fabsf(dx);
    case WORLD_BELOW: return dy < 0 && fabsf(dy) > fabsf(dx);
    default: return 0;
  }
}

static int relation_holds_with_margin(int relation, const world_object *a, const world_object *b) {
  float dx = fabsf(b->cx - a->cx), dy = fabsf(b->cy - a->cy);
  if (!world_relation_holds(relation, a->cx, a->cy, b->cx, b->cy)) return 0;
  if (relation == WORLD_LEFT_OF || relation == WORLD_RIGHT_OF) return dx >= LAYOUT_DOMINANCE * dy;
  return dy >= LAYOUT_DOMINANCE * dx;
}

static int objects_apart(const world_object *a, const world_object *b) {
  float need = 0.5f * (world_object_side(a->size) + world_object_side(b->size)) + LAYOUT_GAP;
  return fabsf(a->cx - b->cx) >= need || fabsf(a->cy - b->cy) >= need;
}

static float uniform_between(dpo_rng *rng, float lo, float hi) {
  if (hi <= lo) return lo;
  return lo + (hi - lo) * dpo_rng_next_uniform(rng);
}

static int is_horizontal(int relation) { return relation == WORLD_LEFT_OF || relation == WORLD_RIGHT_OF; }
/* "The subject is left of / above the object": the object's coordinate is larger. */
static int object_is_after(int relation) { return relation == WORLD_LEFT_OF || relation == WORLD_ABOVE; }

/* The distance two objects' centres need on the main axis of a relation:
 * the dominance margin implies they are apart along it. */
static float needed_offset(const world_object *a, const world_object *b) {
  return 0.5f * (world_object_side(a->size) + world_object_side(b->size)) + LAYOUT_GAP;
}

/* Places the subject where every related object still has room on its side
 * (a subject with objects left and right of it must be near the middle).
 * Returns 0 when the drawn sizes leave no room. */
static int place_subject(dpo_rng *rng, const world_prompt *p, world_object *objects) {
  world_object *s = &objects[0];
  float half = 0.5f * world_object_side(s->size);
  float lo[2] = {LAYOUT_EDGE + half, LAYOUT_EDGE + half}, hi[2] = {1.0f - LAYOUT_EDGE - half, 1.0f - LAYOUT_EDGE - half};
  for (int k = 1; k < p->n_objects; k++) {
    int axis = is_horizontal(p->relations[k - 1]) ? 0 : 1;
    float room = needed_offset(s, &objects[k]) + 0.5f * world_object_side(objects[k].size) + LAYOUT_EDGE;
    if (object_is_after(p->relations[k - 1])) hi[axis] = fminf(hi[axis], 1.0f - room);
    else lo[axis] = fmaxf(lo[axis], room);
  }
  if (lo[0] > hi[0] || lo[1] > hi[1]) return 0;
  s->cx = uniform_between(rng, lo[0], hi[0]);
  s->cy = uniform_between(rng, lo[1], hi[1]);
  return 1;
}

/* Places an object relative to the subject along its relation's axis: the
 * main coordinate on the required side and far enough, the other within the
 * dominance cone (clipped to the image). Most draws satisfy the relation. */
static void place_related(dpo_rng *rng, const world_object *subject, int relation, world_object *o) {
  float half = 0.5f * world_object_side(o->size);
  float lo = LAYOUT_EDGE + half, hi = 1.0f - LAYOUT_EDGE - half;
  int horizontal = is_horizontal(relation);
  float s_main = horizontal ? subject->cx : subject->cy;
  float s_other = horizontal ? subject->cy : subject->cx;
  float need = needed_offset(subject, o);
  float main = object_is_after(relation) ? uniform_between(rng, s_main + need, hi)
                                         : uniform_between(rng, lo, s_main - need);
  float reach = fabsf(main - s_main) / LAYOUT_DOMINANCE;
  float other_lo = fmaxf(lo, s_other - reach), other_hi = fminf(hi, s_other + reach);
  float other = uniform_between(rng, other_lo, other_hi);
  if (horizontal) {
    o->cx = main;
    o->cy = other;
  } else {
    o->cy = main;
    o->cx = other;
  }
}

static int layout_valid(const world_prompt *p, const world_scene *s) {
  for (int i = 0; i < s->n_objects; i++)
    for (int j = i + 1; j < s->n_objects; j++)
      if (!objects_apart(&s->objects[i], &s->objects[j])) return 0;
  for (int k = 1; k < p->n_objects; k++)
    if (!relation_holds_with_margin(p->relations[k - 1], &s->objects[0], &s->objects[k])) return 0;
  return 1;
}

int world_layout(const world_prompt *p, uint64_t seed, world_scene *out, dpo_error *err) {
  char text[WORLD_PROMPT_MAX];
  if (world_prompt_format(p, text, sizeof text, err) != DPO_OK) return DPO_ERR_USAGE;
  dpo_rng rng;
  dpo_rng_init(&rng, seed, dpo_rng_stream_id(text, 0x1a7007, 0));
  memset(out, 0, sizeof *out);
  out->n_objects = p->n_objects;
  out->background =
      p->background == WORLD_ANY ? (int)dpo_rng_next_below(&rng, WORLD_N_BACKGROUNDS) : p->background;
  for (int attempt = 0; attempt < LAYOUT_TRIES; attempt++) {
    for (int i = 0; i < p->n_objects; i++) {
      world_object *o = &out->objects[i];
      o->colour = p->objects[i].colour;
      o->shape = p->objects[i].shape;
      o->size = p->objects[i].size == WORLD_ANY ? (int)dpo_rng_next_below(&rng, WORLD_N_SIZES) : p->objects[i].size;
    }
    if (!place_subject(&rng, p, out->objects)) continue;
    for (int k = 1; k < p->n_objects; k++) place_related(&rng, &out->objects[0], p->relations[k - 1], &out->objects[k]);
    if (layout_valid(p, out)) return DPO_OK;
  }
  return dpo_fail(err, DPO_ERR_DATA, "prompt \"%s\": no layout fits these objects and relations", text);
}

/* ----------------------------------------------------------- rasteriser */

/* Whether the point (u, v), in box coordinates ([-1, 1] across the object's
 * box, v down), lies inside the shape. */
static int shape_contains(int shape, float u, float v) {
  float au = fabsf(u), av = fabsf(v);
  if (au > 1.0f || av > 1.0f) return 0;
  switch (shape) {
    case WORLD_CIRCLE: return u * u + v * v <= 1.0f;
    case WORLD_SQUARE: return 1;
    case WORLD_TRIANGLE: return au <= 0.5f * (v + 1.0f);   /* apex at v = -1, base at v = 1 */
    case WORLD_DIAMOND: return au + av <= 1.0f;
    case WORLD_CROSS: return au <= 1.0f / 3.0f || av <= 1.0f / 3.0f;
    default: return 0;
  }
}

/* The colour at a point of the image (fractions of the side). */
static const uint8_t *scene_colour_at(const world_scene *s, float x, float y) {
  for (int i = 0; i < s->n_objects; i++) {
    const world_object *o = &s->objects[i];
    float half = 0.5f * world_object_side(o->size);
    if (shape_contains(o->shape, (x - o->cx) / half, (y - o->cy) / half)) return colour_rgb[o->colour];
  }
  return background_rgb[s->background];
}

int world_render(const world_scene *s, int size, int antialias, dpo_image *img, dpo_error *err) {
  if (size < WORLD_MIN_IMAGE_SIZE || size > WORLD_MAX_IMAGE_SIZE)
    return dpo_fail(err, DPO_ERR_USAGE, "image size %d is outside %d..%d", size, WORLD_MIN_IMAGE_SIZE,
                    WORLD_MAX_IMAGE_SIZE);
  if (s->n_objects < 0 || s->n_objects > WORLD_MAX_OBJECTS || s->background < 0 ||
      s->background >= WORLD_N_BACKGROUNDS)
    return dpo_fail(err, DPO_ERR_USAGE, "invalid scene");
  for (int i = 0; i < s->n_objects; i++) {
    const world_object *o = &s->objects[i];
    if (o->colour < 0 || o->colour >= WORLD_N_COLOURS || o->shape < 0 || o->shape >= WORLD_N_SHAPES ||
        o->size < 0 || o->size >= WORLD_N_SIZES)
      return dpo_fail(err, DPO_ERR_USAGE, "invalid object %d in scene", i);
  }
  if (dpo_image_alloc(img, size, size, 3, err) != DPO_OK) return DPO_ERR_DATA;
  int samples = antialias ? 4 : 1;
  for (int py = 0; py < size; py++) {
    for (int px = 0; px < size; px++) {
      int sum[3] = {0, 0, 0};
      for (int sy = 0; sy < samples; sy++) {
        for (int sx = 0; sx < samples; sx++) {
          float x = ((float)px + ((float)sx + 0.5f) / (float)samples) / (float)size;
          float y = ((float)py + ((float)sy + 0.5f) / (float)samples) / (float)size;
          const uint8_t *c = scene_colour_at(s, x, y);
          for (int ch = 0; ch < 3; ch++) sum[ch] += c[ch];
        }
      }
      uint8_t *out = img->pixels + ((size_t)py * (size_t)size + (size_t)px) * 3;
      int n = samples * samples;
      for (int ch = 0; ch < 3; ch++) out[ch] = (uint8_t)((sum[ch] + n / 2) / n);
    }
  }
  return DPO_OK;
}

int world_shape_contains(int shape, float u, float v) { return shape_contains(shape, u, v); }

int world_render_prompt(const char *prompt, uint64_t seed, int size, dpo_image *img, dpo_error *err) {
  world_prompt p;
  world_scene s;
  if (world_prompt_parse(prompt, &p, err) != DPO_OK) return DPO_ERR_DATA;
  if (world_layout(&p, seed, &s, err) != DPO_OK) return DPO_ERR_DATA;
  return world_render(&s, size, 1, img, err);
}
