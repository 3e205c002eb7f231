/* The judge: objects, shapes, sizes and relations from pixels alone, scored
 * against a prompt (alignment), and a prompt-free image quality (appeal). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "world/world.h"
#include "world/world_internal.h"

/* Pixel classes: the object colours, then the backgrounds, then unknown. */
#define CLASS_BACKGROUND0 WORLD_N_COLOURS
#define N_CLASSES (WORLD_N_COLOURS + WORLD_N_BACKGROUNDS)
#define CLASS_UNKNOWN N_CLASSES
/* Farther than this (RGB Euclidean) from every palette colour: unknown.
 * Palette colours are >= 109 apart, so a pixel within 70 of one is
 * unambiguous, and heavy blends between two colours stay unknown. */
#define CLASS_MAX_DISTANCE 70.0
/* Within this of a palette colour a pixel counts as clean (appeal). */
#define CLEAN_DISTANCE 24.0
/* How far (RGB) a pixel may lie from the background-object colour line and
 * still count as a blend of the two. */
#define MEMBERSHIP_MAX_OFF_LINE 40.0
/* Components smaller than this share of the image are specks, not objects
 * (8 pixels at 32x32; a small object has 25 or more). */
#define MIN_OBJECT_SHARE 0.008

static void palette_rgb(int cls, uint8_t rgb[3]) {
  if (cls < WORLD_N_COLOURS) world_colour_rgb(cls, rgb);
  else world_background_rgb(cls - CLASS_BACKGROUND0, rgb);
}

/* The nearest palette class of a pixel and its distance. */
static int nearest_class(const uint8_t *px, double *distance) {
  int best = 0;
  double best_d2 = 1e30;
  for (int c = 0; c < N_CLASSES; c++) {
    uint8_t rgb[3];
    palette_rgb(c, rgb);
    double d2 = 0;
    for (int ch = 0; ch < 3; ch++) {
      double d = (double)px[ch] - (double)rgb[ch];
      d2 += d * d;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = c;
    }
  }
  *distance = sqrt(best_d2);
  return best;
}

static int check_image(const dpo_image *img, dpo_error *err) {
  if (!img || !img->pixels || (img->channels != 3 && img->channels != 4))
    return dpo_fail(err, DPO_ERR_USAGE, "the judge needs an RGB or RGBA image");
  if (img->width < 1 || img->height < 1 || img->width > WORLD_MAX_IMAGE_SIZE || img->height > WORLD_MAX_IMAGE_SIZE)
    return dpo_fail(err, DPO_ERR_DATA, "image is %dx%d; the judge takes 1 to %d pixels a side", img->width,
                    img->height, WORLD_MAX_IMAGE_SIZE);
  return DPO_OK;
}

static int *classify_pixels(const dpo_image *img) {
  size_t n = (size_t)img->width * (size_t)img->height;
  int *classes = malloc(n * sizeof *classes);
  if (!classes) return NULL;
  for (size_t i = 0; i < n; i++) {
    double d;
    int c = nearest_class(img->pixels + i * (size_t)img->channels, &d);
    classes[i] = d <= CLASS_MAX_DISTANCE ? c : CLASS_UNKNOWN;
  }
  return classes;
}

/* ------------------------------------------------------------- shapes */

/* Share of its box that each shape fills, and where its centroid sits below
 * the box centre (in half-sides): the fit places templates by both. */
static float shape_fill(int shape) {
  switch (shape) {
    case WORLD_CIRCLE: return 0.7853982f;
    case WORLD_SQUARE: return 1.0f;
    case WORLD_CROSS: return 5.0f / 9.0f;
    default: return 0.5f;   /* triangle, diamond */
  }
}

static float shape_centroid_drop(int shape) { return shape == WORLD_TRIANGLE ? 1.0f / 3.0f : 0.0f; }

/* Share of a pixel inside a shape's box (centre cx, cy, side s, in pixels),
 * from 4x4 samples: the renderer's antialiasing, so a clean render fits its
 * own template exactly. */
static float template_coverage(int shape, float cx, float cy, float side, int x, int y) {
  int hits = 0;
  for (int sy = 0; sy < 4; sy++)
    for (int sx = 0; sx < 4; sx++) {
      float u = ((float)x + ((float)sx + 0.5f) / 4.0f - cx) / (0.5f * side);
      float v = ((float)y + ((float)sy + 0.5f) / 4.0f - cy) / (0.5f * side);
      hits += world_shape_contains(shape, u, v);
    }
  return (float)hits / 16.0f;
}

/* ---------------------------------------------------------- components */

typedef struct {
  int cls;
  int area;
  int interior;          /* pixels whose four neighbours share the class */
  int x0, y0, x1, y1;    /* inclusive bounding box */
} component;

/* Labels the 4-connected component of `start` with `label` (iterative
 * flood fill over an explicit stack) and measures it. */
static void flood(const int *classes, int *labels, int *stack, int width, int height, int start, int label,
                  component *c) {
  int cls = classes[start];
  memset(c, 0, sizeof *c);
  c->cls = cls;
  c->x0 = width;
  c->y0 = height;
  c->x1 = -1;
  c->y1 = -1;
  int top = 0;
  stack[top++] = start;
  labels[start] = label;
  while (top > 0) {
    int p = stack[--top];
    int x = p % width, y = p / width;
    c->area++;
    if (x < c->x0) c->x0 = x;
    if (x > c->x1) c->x1 = x;
    if (y < c->y0) c->y0 = y;
    if (y > c->y1) c->y1 = y;
    int neighbours[4] = {x > 0 ? p - 1 : -1, x + 1 < width ? p + 1 : -1, y > 0 ? p - width : -1,
                         y + 1 < height ? p + width : -1};
    int same = 0;
    for (int k = 0; k < 4; k++) {
      int q = neighbours[k];
      if (q < 0 || classes[q] != cls) continue;
      same++;
      if (labels[q] == 0) {
        labels[q] = label;
        stack[top++] = q;
      }
    }
    if (same == 4) c->interior++;
  }
}

static int border_background(const int *classes, int width, int height) {
  int counts[WORLD_N_BACKGROUNDS] = {0}, total = 0;
  for (int y = 0; y < height; y++) {
    for (int x = 0; x < width; x++) {
      if (x != 0 && y != 0 && x != width - 1 && y != height - 1) continue;
      total++;
      int c = classes[(size_t)y * (size_t)width + (size_t)x];
      if (c >= CLASS_BACKGROUND0 && c < N_CLASSES) counts[c - CLASS_BACKGROUND0]++;
    }
  }
  for (int b = 0; b < WORLD_N_BACKGROUNDS; b++)
    if (2 * counts[b] > total) return b;
  return WORLD_ANY;
}

/* What share of a pixel is the object's colour: its projection onto the
 * line from the background colour to the object colour, clamped to [0, 1]
 * (an antialiased edge pixel that is 40% covered gives 0.4). Pixels of other
 * objects count 0. Without a known background the component's mask is used. */
typedef struct {
  const dpo_image *img;
  const int *classes;
  const int *labels;
  int label;
  int colour;
  int background;
} membership_ctx;

static float membership(const membership_ctx *m, int x, int y) {
  size_t i = (size_t)y * (size_t)m->img->width + (size_t)x;
  if (m->labels[i] == m->label) {
    if (m->background == WORLD_ANY) return 1.0f;
  } else if (m->background == WORLD_ANY || m->classes[i] < WORLD_N_COLOURS) {
    return 0.0f;
  }
  uint8_t obj[3], bg[3];
  world_colour_rgb(m->colour, obj);
  world_background_rgb(m->background, bg);
  const uint8_t *px = m->img->pixels + i * (size_t)m->img->channels;
  double dot = 0, len2 = 0;
  for (int ch = 0; ch < 3; ch++) {
    double axis = (double)obj[ch] - (double)bg[ch];
    dot += ((double)px[ch] - (double)bg[ch]) * axis;
    len2 += axis * axis;
  }
  double t = len2 > 0 ? dot / len2 : 0.0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  /* A pixel far off that line is something else (the edge of a neighbour). */
  double off2 = 0;
  for (int ch = 0; ch < 3; ch++) {
    double on_line = (double)bg[ch] + t * ((double)obj[ch] - (double)bg[ch]);
    off2 += ((double)px[ch] - on_line) * ((double)px[ch] - on_line);
  }
  return off2 <= MEMBERSHIP_MAX_OFF_LINE * MEMBERSHIP_MAX_OFF_LINE ? (float)t : 0.0f;
}

/* Fits each shape's template to the object's soft mask (a box whose area
 * matches the mask's and whose centroid matches its centroid) and keeps the
 * shape with the best soft intersection over union; the fitted box gives
 * the object's centre and size. Looking at coverage rather than at the
 * bounding box keeps small antialiased shapes apart: a diamond's tips fade
 * out of its bounding box, but not out of its area. */
static void describe_object(const membership_ctx *m, const component *c, world_detected_object *o) {
  int width = m->img->width, height = m->img->height;
  int margin = 3 + (c->x1 - c->x0 + c->y1 - c->y0) / 8;
  int x0 = c->x0 - margin < 0 ? 0 : c->x0 - margin, y0 = c->y0 - margin < 0 ? 0 : c->y0 - margin;
  int x1 = c->x1 + margin >= width ? width - 1 : c->x1 + margin;
  int y1 = c->y1 + margin >= height ? height - 1 : c->y1 + margin;
  int rw = x1 - x0 + 1, rh = y1 - y0 + 1;
  float *mask = malloc((size_t)rw * (size_t)rh * sizeof *mask);
  double area = 0, mx = 0, my = 0;
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      float v = mask ? membership(m, x, y) : 0.0f;
      if (mask) mask[(size_t)(y - y0) * (size_t)rw + (size_t)(x - x0)] = v;
      area += v;
      mx += v * (x + 0.5);
      my += v * (y + 0.5);
    }
  o->colour = c->cls;
  o->area = c->area;
  o->shape = 0;
  o->shape_iou = -1.0f;
  if (!mask || area <= 0) {   /* out of memory: fall back to the bounding box */
    free(mask);
    o->cx = 0.5f * (float)(c->x0 + c->x1 + 1) / (float)width;
    o->cy = 0.5f * (float)(c->y0 + c->y1 + 1) / (float)height;
    o->size = WORLD_SMALL;
    return;
  }
  mx /= area;
  my /= area;
  float best_side = 0, best_cy = (float)my;
  for (int shape = 0; shape < WORLD_N_SHAPES; shape++) {
    float side = sqrtf((float)area / shape_fill(shape));
    float cy = (float)my - shape_centroid_drop(shape) * 0.5f * side;
    double inter = 0, uni = 0;
    for (int y = y0; y <= y1; y++)
      for (int x = x0; x <= x1; x++) {
        float t = template_coverage(shape, (float)mx, cy, side, x, y);
        float v = mask[(size_t)(y - y0) * (size_t)rw + (size_t)(x - x0)];
        inter += fminf(t, v);
        uni += fmaxf(t, v);
      }
    float iou = uni > 0 ? (float)(inter / uni) : 0.0f;
    if (iou > o->shape_iou) {
      o->shape_iou = iou;
      o->shape = shape;
      best_side = side;
      best_cy = cy;
    }
  }
  free(mask);
  o->cx = (float)mx / (float)width;
  o->cy = best_cy / (float)height;
  float side = best_side / sqrtf((float)width * (float)height);
  o->size = side > 0.5f * (WORLD_SMALL_SIDE + WORLD_LARGE_SIDE) ? WORLD_LARGE : WORLD_SMALL;
}

int world_detect(const dpo_image *img, world_detection *out, dpo_error *err) {
  memset(out, 0, sizeof *out);
  int rc = check_image(img, err);
  if (rc != DPO_OK) return rc;
  int width = img->width, height = img->height;
  size_t n = (size_t)width * (size_t)height;
  int *classes = classify_pixels(img);
  int *labels = calloc(n, sizeof *labels);
  int *stack = malloc(n * sizeof *stack);
  if (!classes || !labels || !stack) {
    free(classes);
    free(labels);
    free(stack);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory judging a %dx%d image", width, height);
  }
  out->background = border_background(classes, width, height);
  int min_area = (int)ceil(MIN_OBJECT_SHARE * (double)n);
  if (min_area < 3) min_area = 3;
  component best[WORLD_N_COLOURS];
  int best_label[WORLD_N_COLOURS], count[WORLD_N_COLOURS] = {0};
  int next_label = 1;
  for (size_t p = 0; p < n; p++) {
    if (labels[p] != 0 || classes[p] >= WORLD_N_COLOURS) continue;
    component c;
    int label = next_label++;
    flood(classes, labels, stack, width, height, (int)p, label, &c);
    if (c.area < min_area || c.interior == 0) continue;
    if (count[c.cls] == 0 || c.area > best[c.cls].area) {
      best[c.cls] = c;
      best_label[c.cls] = label;
    }
    count[c.cls]++;
  }
  for (int colour = 0; colour < WORLD_N_COLOURS; colour++) {
    if (count[colour] == 0) continue;
    world_detected_object *o = &out->objects[out->n_objects++];
    membership_ctx m = {img, classes, labels, best_label[colour], colour, out->background};
    describe_object(&m, &best[colour], o);
    o->count = count[colour];
  }
  free(classes);
  free(labels);
  free(stack);
  return DPO_OK;
}

/* ------------------------------------------------------------ scoring */

static const world_detected_object *find_colour(const world_detection *d, int colour) {
  for (int i = 0; i < d->n_objects; i++)
    if (d->objects[i].colour == colour) return &d->objects[i];
  return NULL;
}

double world_judge_alignment(const world_detection *d, const world_prompt *p, int *n_constraints,
                             double *satisfied) {
  int n = 0;
  double sum = 0;
  const world_detected_object *found[WORLD_MAX_OBJECTS];
  int extra = 0;
  for (int i = 0; i < p->n_objects; i++) {
    const world_object_spec *want = &p->objects[i];
    const world_detected_object *o = found[i] = find_colour(d, want->colour);
    n += 2;
    sum += o != NULL;
    sum += o && o->shape == want->shape;
    if (want->size != WORLD_ANY) {
      n++;
      sum += o && o->size == want->size;
    }
    if (o) extra += o->count - 1;
  }
  for (int k = 1; k < p->n_objects; k++) {
    n++;
    const world_detected_object *a = found[0], *b = found[k];
    sum += a && b && world_relation_holds(p->relations[k - 1], a->cx, a->cy, b->cx, b->cy);
  }
  if (p->background != WORLD_ANY) {
    n++;
    sum += d->background == p->background;
  }
  for (int i = 0; i < d->n_objects; i++) {
    int named = 0;
    for (int k = 0; k < p->n_objects; k++) named |= p->objects[k].colour == d->objects[i].colour;
    if (!named) extra += d->objects[i].count;
  }
  n++;
  sum += extra == 0 ? 1.0 : extra == 1 ? 0.5 : 0.0;
  if (n_constraints) *n_constraints = n;
  if (satisfied) *satisfied = sum;
  return sum / n;
}

/* Appeal terms; see world.h. Noise is measured as each pixel's smallest
 * difference to a 4-neighbour: zero inside flat regions and along clean
 * edges (a pixel always has a like neighbour), large under noise. */
double world_judge_appeal(const dpo_image *img) {
  if (check_image(img, NULL) != DPO_OK) return 0.0;
  int width = img->width, height = img->height, ch = img->channels;
  size_t n = (size_t)width * (size_t)height;
  double clean = 0, object = 0, noise = 0;
  for (int y = 0; y < height; y++) {
    for (int x = 0; x < width; x++) {
      const uint8_t *px = img->pixels + ((size_t)y * (size_t)width + (size_t)x) * (size_t)ch;
      double d;
      int cls = nearest_class(px, &d);
      if (d <= CLEAN_DISTANCE) {
        clean++;
        if (cls < WORLD_N_COLOURS) object++;
      }
      int dx[4] = {-1, 1, 0, 0}, dy[4] = {0, 0, -1, 1};
      double least = 255.0;
      for (int k = 0; k < 4; k++) {
        int qx = x + dx[k], qy = y + dy[k];
        if (qx < 0 || qy < 0 || qx >= width || qy >= height) continue;
        const uint8_t *q = img->pixels + ((size_t)qy * (size_t)width + (size_t)qx) * (size_t)ch;
        double diff = (fabs((double)px[0] - q[0]) + fabs((double)px[1] - q[1]) + fabs((double)px[2] - q[2])) / 3.0;
        if (diff < least) least = diff;
      }
      if (n > 1) noise += least;
    }
  }
  double clean_share = clean / (double)n;
  double noise_level = noise / (double)n / 255.0;
  double smooth = exp(-noise_level / 0.01);
  double content = fmin(1.0, object / (double)n / 0.05);
  return 0.5 * clean_share + 0.25 * smooth + 0.25 * content;
}

int world_judge_score(const dpo_image *img, const char *prompt, world_scores *out, dpo_error *err) {
  world_prompt p;
  world_detection d;
  memset(out, 0, sizeof *out);
  if (world_prompt_parse(prompt, &p, err) != DPO_OK) return DPO_ERR_DATA;
  int rc = world_detect(img, &d, err);
  if (rc != DPO_OK) return rc;
  out->alignment = world_judge_alignment(&d, &p, &out->n_constraints, &out->satisfied);
  out->appeal = world_judge_appeal(img);
  return DPO_OK;
}
