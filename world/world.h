/* world: the built-in synthetic "shapes world", where the truth is known.
 *
 * Small scenes of one to three flat-coloured shapes on a plain background,
 * an English prompt grammar that describes them, a renderer that draws a
 * scene satisfying a prompt (random layout from a seed), a generator of
 * prompts with disjoint train/held-out splits, and a judge that scores an
 * image against a prompt from its pixels alone. The demo trains a small model
 * on this world and measures a real preference-tuning win with the judge.
 *
 * Prompt grammar (case-insensitive; words separated by spaces; commas and a
 * final "." are ignored; at most 1024 bytes and 64 words):
 *
 *   prompt     := subject [ relation object [ "and" relation object ] ]
 *                 [ "on" article background "background" ]
 *   subject, object := article [ size ] colour shape
 *   article    := "a" | "an"
 *   size       := "small" | "large"
 *   colour     := red | orange | yellow | green | cyan | blue | purple | pink
 *   shape      := circle | square | triangle | diamond | cross
 *   relation   := "to the left of" | "to the right of" | "above" | "below"
 *                 ("left of" and "right of" are accepted too)
 *   background := white | black | gray ("grey" is accepted)
 *
 * Every relation relates the subject (the first object) to the object that
 * follows it: "a red circle to the left of a blue square and above a green
 * triangle" puts the circle left of the square and above the triangle. The
 * objects of one prompt have distinct colours (the judge finds objects by
 * colour). A size or background left out is free: the renderer picks one.
 * The canonical text (world_prompt_format) uses "a"/"an" as English does,
 * "to the left of"/"to the right of", "gray", lower case and no final ".".
 *
 * Rendering. The renderer is a small hand rasteriser (no libraries, same
 * pixels everywhere): each pixel is the mean of 4x4 point samples, or one
 * sample at its centre for hard edges. The palette is fixed sRGB; object
 * colours are at least 109 apart (RGB) from each other and the backgrounds.
 *
 * Geometry. Coordinates are fractions of the image side (x right, y down), so
 * a layout renders at any size. Every shape is drawn inside a square box of
 * side WORLD_SMALL_SIDE or WORLD_LARGE_SIDE: circle (inscribed), square (the
 * box), triangle (apex up, base at the bottom), diamond (corners at the box's
 * edge midpoints) and cross (a plus sign with arms a third of the box wide).
 * "A left of B" means B's centre is to the right of A's and the horizontal
 * offset is larger than the vertical one (the dominant axis decides); the
 * renderer keeps a margin (the dominant offset at least 1.3 times the other)
 * and a gap between objects so that scenes are unambiguous.
 *
 * Splits. A prompt belongs to the held-out split when the hash of its
 * canonical text (FNV-1a, then splitmix64's finaliser) is 0 modulo 10 (world_prompt_split); the split
 * is a pure function of the text, so train and held-out are disjoint and
 * stable across seeds, runs and machines. There are only 480 one-object
 * prompts (about 48 held out), so long lists are mostly two- and
 * three-object prompts.
 *
 * Judge. Pixels are classified to the nearest palette colour (objects and
 * backgrounds; farther than 70 from all of them: unknown). The background is
 * the background colour of more than half the border pixels. Each object
 * colour's largest 4-connected component (at least 0.8% of the image, with
 * at least one interior pixel) is that colour's object; its soft mask (how
 * much of each nearby pixel is a blend of the object colour and the
 * background) is compared with each shape's template placed by the mask's
 * area and centroid, and the best soft intersection over union names the
 * shape; the fitted box gives the centre (for relations) and the size
 * (small or large, split halfway between the two box sides).
 * Alignment is the mean of the prompt's constraints, each 0 or 1: per object
 * present, right shape, right size (when the prompt gives one); each relation
 * (0 when either object is missing); the background (when given); and one
 * "nothing else" constraint (1 with no object of a colour the prompt does not
 * name and no second object of a named colour, 0.5 with one, 0 with more).
 * Appeal ignores the prompt: it rewards flat palette colours, clean edges and
 * some content, and drops with noise and blur (see world_judge_appeal). */
#ifndef DPO_WORLD_H
#define DPO_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef enum {
  WORLD_RED = 0,
  WORLD_ORANGE,
  WORLD_YELLOW,
  WORLD_GREEN,
  WORLD_CYAN,
  WORLD_BLUE,
  WORLD_PURPLE,
  WORLD_PINK,
  WORLD_N_COLOURS
} world_colour;

typedef enum { WORLD_WHITE = 0, WORLD_BLACK, WORLD_GRAY, WORLD_N_BACKGROUNDS } world_background;

typedef enum {
  WORLD_CIRCLE = 0,
  WORLD_SQUARE,
  WORLD_TRIANGLE,
  WORLD_DIAMOND,
  WORLD_CROSS,
  WORLD_N_SHAPES
} world_shape;

typedef enum { WORLD_SMALL = 0, WORLD_LARGE, WORLD_N_SIZES } world_size;

typedef enum { WORLD_LEFT_OF = 0, WORLD_RIGHT_OF, WORLD_ABOVE, WORLD_BELOW, WORLD_N_RELATIONS } world_relation;

/* "Not given in the prompt": the renderer chooses, the judge does not check. */
#define WORLD_ANY (-1)
#define WORLD_MAX_OBJECTS 3
/* Box sides as fractions of the image side (7 and 11 pixels at 32x32). */
#define WORLD_SMALL_SIDE 0.22f
#define WORLD_LARGE_SIDE 0.34f
#define WORLD_DEFAULT_SIZE 32
#define WORLD_MIN_IMAGE_SIZE 16
#define WORLD_MAX_IMAGE_SIZE 1024
/* Longest canonical prompt plus room to spare. */
#define WORLD_PROMPT_MAX 256

const char *world_colour_name(int colour);
const char *world_background_name(int background);
const char *world_shape_name(int shape);
const char *world_size_name(int size);
const char *world_relation_name(int relation);   /* "to the left of", ... */
/* The fixed sRGB values of object and background colours. */
void world_colour_rgb(int colour, uint8_t rgb[3]);
void world_background_rgb(int background, uint8_t rgb[3]);

/* ------------------------------------------------------------- prompts */

typedef struct {
  int colour;   /* world_colour */
  int shape;    /* world_shape */
  int size;     /* world_size or WORLD_ANY */
} world_object_spec;

/* What a prompt asks for: objects[0] is the subject; relations[k] relates the
 * subject to objects[k + 1]. */
typedef struct {
  int n_objects;                                /* 1..WORLD_MAX_OBJECTS */
  world_object_spec objects[WORLD_MAX_OBJECTS];
  int relations[WORLD_MAX_OBJECTS - 1];         /* world_relation */
  int background;                               /* world_background or WORLD_ANY */
} world_prompt;

/* Parses English in the grammar above. On failure (DPO_ERR_DATA) the message
 * names the word, its number (from 1) and byte offset, and what was expected. */
int world_prompt_parse(const char *text, world_prompt *out, dpo_error *err);
/* Writes the canonical text; fails (DPO_ERR_USAGE) on an invalid prompt or a
 * buffer that is too small. */
int world_prompt_format(const world_prompt *p, char *buf, size_t n, dpo_error *err);
/* Checks ranges, object count and distinct colours. */
int world_prompt_validate(const world_prompt *p, dpo_error *err);
int world_prompt_equal(const world_prompt *a, const world_prompt *b);

typedef enum { WORLD_SPLIT_TRAIN = 0, WORLD_SPLIT_HELDOUT = 1 } world_split;
/* "train" or "heldout"; returns -1 for anything else. */
int world_split_from_name(const char *name);
world_split world_prompt_split(const world_prompt *p);

/* A random prompt (any split) that the renderer can lay out: 1, 2 or 3
 * objects (30/40/30%), sizes given half the time, a background 30%. Pure
 * function of (seed, index). */
void world_prompt_random(uint64_t seed, uint64_t index, world_prompt *out);
/* n distinct prompts of one split, in a fixed order for the seed. Fails
 * (DPO_ERR_USAGE) if n is beyond what the split can supply. */
int world_prompts_generate(world_split split, uint64_t seed, int n, world_prompt *out, dpo_error *err);

/* Which attribute world_prompt_perturb changed. */
typedef enum {
  WORLD_PERTURB_COLOUR = 0,
  WORLD_PERTURB_SHAPE,
  WORLD_PERTURB_SIZE,
  WORLD_PERTURB_RELATION,
  WORLD_PERTURB_BACKGROUND,
  WORLD_N_PERTURB
} world_perturbation;
const char *world_perturbation_name(int what);
/* Changes exactly one attribute of a valid prompt (a colour to one the prompt
 * does not use, a shape, a given size to the other, a relation to another, a
 * given background to another), chosen from (seed, index); *what says which. */
void world_prompt_perturb(const world_prompt *p, uint64_t seed, uint64_t index, world_prompt *out,
                          world_perturbation *what);

/* --------------------------------------------------------------- scenes */

typedef struct {
  int colour;
  int shape;
  int size;        /* world_size */
  float cx, cy;    /* centre, fractions of the image side */
} world_object;

typedef struct {
  int n_objects;
  world_object objects[WORLD_MAX_OBJECTS];
  int background;
} world_scene;

/* A concrete scene satisfying the prompt: free sizes and the background
 * drawn, positions sampled with margins and gaps. Pure function of the
 * canonical prompt and seed. Fails (DPO_ERR_DATA) when no layout exists
 * (three large objects in a row do not fit). */
int world_layout(const world_prompt *p, uint64_t seed, world_scene *out, dpo_error *err);
/* Box side of a size, as a fraction of the image side. */
float world_object_side(int size);

/* Draws the scene as size x size RGB, each pixel the average of 4x4 samples
 * when antialias is set, else one sample at the pixel centre. img is
 * allocated here and freed with dpo_image_free. */
int world_render(const world_scene *s, int size, int antialias, dpo_image *img, dpo_error *err);
/* Parse, lay out and render (antialiased) in one call. */
int world_render_prompt(const char *prompt, uint64_t seed, int size, dpo_image *img, dpo_error *err);

/* ---------------------------------------------------------------- judge */

typedef struct {
  int colour;
  int shape;        /* best template */
  int size;
  float cx, cy;     /* bounding-box centre, fractions of the image side */
  int area;         /* pixels */
  float shape_iou;  /* IoU of the best template */
  int count;        /* components of this colour big enough to be objects */
} world_detected_object;

typedef struct {
  int n_objects;    /* at most one per colour */
  world_detected_object objects[WORLD_N_COLOURS];
  int background;   /* WORLD_ANY when the border has no majority background colour */
} world_detection;

/* Finds objects and the background from pixels (RGB or RGBA; other channel
 * counts fail with DPO_ERR_USAGE, sides over WORLD_MAX_IMAGE_SIZE with
 * DPO_ERR_DATA). */
int world_detect(const dpo_image *img, world_detection *out, dpo_error *err);
/* Whether a relation holds between two centroids (dominant axis). */
int world_relation_holds(int relation, float ax, float ay, float bx, float by);

typedef struct {
  double alignment;   /* [0, 1]: fraction of the prompt's constraints met */
  double appeal;      /* [0, 1]: prompt-free image quality */
  int n_constraints;
  double satisfied;   /* sum of the constraint scores */
} world_scores;

/* Alignment of a detection with a parsed prompt. */
double world_judge_alignment(const world_detection *d, const world_prompt *p, int *n_constraints,
                             double *satisfied);
/* Appeal from pixels alone: 0.5 * clean + 0.25 * smooth + 0.25 * content,
 * where clean is the share of pixels within 24 (RGB) of a palette colour
 * (blur and noise lower it), smooth = exp(-noise / 0.01) with noise the mean
 * over pixels of the smallest difference to a 4-neighbour (0 for flat
 * regions and clean edges, where a pixel always has a like neighbour), and
 * content is the clean object-coloured share of the image relative to 5%,
 * capped at 1 (an empty canvas is not appealing). */
double world_judge_appeal(const dpo_image *img);
/* The scorer: parses the prompt (DPO_ERR_DATA when outside the grammar),
 * detects and scores. */
int world_judge_score(const dpo_image *img, const char *prompt, world_scores *out, dpo_error *err);

#endif
