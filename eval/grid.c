/* Contact sheets: the images of several runs side by side per prompt, with
 * the prompt text, drawn with cairo (see eval.h). */
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <fontconfig/fontconfig.h>

#include "eval/eval.h"

#define GRID_TEXT_WIDTH 220
#define GRID_HEADER 24
#define GRID_PAD 4

/* The index in run of the item with the same prompt id and image index, or -1. */
static int find_item(const eval_run *run, const eval_run_item *key) {
  for (int i = 0; i < run->n; i++)
    if (run->items[i].image_index == key->image_index && run->items[i].seed == key->seed &&
        strcmp(run->items[i].prompt_id, key->prompt_id) == 0 && strcmp(run->items[i].prompt_set, key->prompt_set) == 0)
      return i;
  return -1;
}

/* Wrapped text in a box, cut at max_lines. */
static void draw_wrapped(cairo_t *cr, const char *text, double x, double y, double width, int max_lines) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  char line[1024] = "";
  const char *p = text;
  int lines = 0;
  while (*p && lines < max_lines) {
    const char *space = strchr(p, ' ');
    size_t n = space ? (size_t)(space - p) : strlen(p);
    char trial[1024];
    snprintf(trial, sizeof trial, "%s%s%.*s", line, line[0] ? " " : "", (int)n, p);
    cairo_text_extents_t te;
    cairo_text_extents(cr, trial, &te);
    if (te.x_advance > width && line[0]) {
      cairo_move_to(cr, x, y + fe.ascent + lines * fe.height);
      cairo_show_text(cr, line);
      lines++;
      line[0] = '\0';
      continue;   /* the word starts the next line */
    }
    snprintf(line, sizeof line, "%s", trial);
    p += n;
    while (*p == ' ') p++;
  }
  if (line[0] && lines < max_lines) {
    cairo_move_to(cr, x, y + fe.ascent + lines * fe.height);
    cairo_show_text(cr, line);
  }
}

static int draw_image(cairo_t *cr, const char *path, double x, double y, int cell, dpo_error *err) {
  dpo_image im;
  int rc = dpo_image_read(path, 4, &im, err);
  if (rc) return rc;
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, im.width, im.height);
  cairo_surface_flush(s);
  uint8_t *dst = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (int r = 0; r < im.height; r++)
    for (int c = 0; c < im.width; c++) {
      const uint8_t *px = im.pixels + ((size_t)r * im.width + c) * 4;
      uint32_t a = px[3], v = a << 24 | (px[0] * a / 255) << 16 | (px[1] * a / 255) << 8 | (px[2] * a / 255);
      memcpy(dst + (size_t)r * stride + (size_t)c * 4, &v, 4);
    }
  cairo_surface_mark_dirty(s);
  double scale = (double)cell / (im.width > im.height ? im.width : im.height);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_scale(cr, scale, scale);
  cairo_set_source_surface(cr, s, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), scale >= 2 ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD);
  cairo_paint(cr);
  cairo_restore(cr);
  cairo_surface_destroy(s);
  dpo_image_free(&im);
  return DPO_OK;
}

/* Copies a cairo ARGB32 surface into an RGB image (opaque background). */
static int surface_to_image(cairo_surface_t *s, dpo_image *out, dpo_error *err) {
  int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  int rc = dpo_image_alloc(out, w, h, 3, err);
  if (rc) return rc;
  cairo_surface_flush(s);
  const uint8_t *src = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (int r = 0; r < h; r++)
    for (int c = 0; c < w; c++) {
      uint32_t v;
      memcpy(&v, src + (size_t)r * stride + (size_t)c * 4, 4);
      uint8_t *px = out->pixels + ((size_t)r * w + c) * 3;
      px[0] = (uint8_t)(v >> 16);
      px[1] = (uint8_t)(v >> 8);
      px[2] = (uint8_t)v;
    }
  return DPO_OK;
}

int eval_grid(const char *const *run_dirs, int n_runs, const char *out_path, int cell, int limit, int *n_rows,
              dpo_error *err) {
  *n_rows = 0;
  if (n_runs < 1 || n_runs > 16) return dpo_fail(err, DPO_ERR_USAGE, "grid: expected 1 to 16 runs, got %d", n_runs);
  if (cell < 16 || cell > 2048) return dpo_fail(err, DPO_ERR_USAGE, "grid: cell size %d: expected 16..2048", cell);
  eval_run *runs = calloc((size_t)n_runs, sizeof *runs);
  if (!runs) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  int rc = DPO_OK, loaded = 0;
  for (; loaded < n_runs && !rc; loaded++) rc = eval_run_load(run_dirs[loaded], &runs[loaded], err);
  if (rc) loaded--;
  /* Rows: the first run's images that every run has. */
  int *rows = rc ? NULL : malloc((size_t)runs[0].n * sizeof *rows);
  int n = 0;
  for (int i = 0; !rc && rows && i < runs[0].n && (limit <= 0 || n < limit); i++) {
    int all = 1;
    for (int r = 1; r < n_runs && all; r++) all = find_item(&runs[r], &runs[0].items[i]) >= 0;
    if (all) rows[n++] = i;
  }
  if (!rc && n == 0) rc = dpo_fail(err, DPO_ERR_DATA, "grid: the runs share no image (prompt id, seed, image index)");
  cairo_surface_t *surface = NULL;
  cairo_t *cr = NULL;
  if (!rc) {
    int width = GRID_TEXT_WIDTH + n_runs * (cell + GRID_PAD) + GRID_PAD;
    int height = GRID_HEADER + n * (cell + GRID_PAD) + GRID_PAD;
    surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
    cr = cairo_create(surface);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12);
    cairo_set_source_rgb(cr, 0, 0, 0);
    for (int r = 0; r < n_runs; r++) {
      const char *name = strrchr(run_dirs[r], '/') ? strrchr(run_dirs[r], '/') + 1 : run_dirs[r];
      draw_wrapped(cr, name[0] ? name : run_dirs[r], GRID_TEXT_WIDTH + r * (cell + GRID_PAD), 4, cell, 1);
    }
  }
  for (int k = 0; k < n && !rc; k++) {
    const eval_run_item *key = &runs[0].items[rows[k]];
    double y = GRID_HEADER + k * (cell + GRID_PAD);
    char label[2048];
    snprintf(label, sizeof label, "%s #%lld: %s", key->prompt_id, (long long)key->image_index, key->prompt);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_wrapped(cr, label, 4, y, GRID_TEXT_WIDTH - 8, cell / 14 > 1 ? cell / 14 : 1);
    for (int r = 0; r < n_runs && !rc; r++) {
      const eval_run_item *it = &runs[r].items[find_item(&runs[r], key)];
      char path[8300];
      snprintf(path, sizeof path, "%s/%s", runs[r].dir, it->file);
      rc = draw_image(cr, path, GRID_TEXT_WIDTH + r * (cell + GRID_PAD), y, cell, err);
    }
  }
  if (!rc) {
    dpo_image image;
    rc = surface_to_image(surface, &image, err);
    if (!rc) {
      rc = dpo_png_write(out_path, &image, NULL, 0, err);
      dpo_image_free(&image);
    }
  }
  if (!rc) *n_rows = n;
  if (cr) cairo_destroy(cr);
  if (surface) cairo_surface_destroy(surface);
  /* Drops cairo's and fontconfig's font caches, so that memory checkers see
   * no leak (the next grid loads them again). */
  cairo_debug_reset_static_data();
  FcFini();
  free(rows);
  for (int r = 0; r < loaded; r++) eval_run_free(&runs[r]);
  free(runs);
  return rc;
}
