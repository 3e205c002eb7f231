/* PNG/JPEG reading and PNG writing: round trips, channel conversions, the PNG
 * variants libpng can write (16-bit, palette, tRNS, low bit depths, Adam7),
 * JPEGs encoded here with libjpeg, every malformed-input path, and the real
 * TEd-Bench originals. */
#include <dirent.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "core/core.h"
#include "tests/test.h"

/* ---------------------------------------------------------------- helpers */

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset of the first chunk of a type in a PNG (its length field), or 0. */
static size_t find_chunk(const uint8_t *png, size_t size, const char *type) {
  size_t pos = 8;
  while (pos + 12 <= size) {
    if (memcmp(png + pos + 4, type, 4) == 0) return pos;
    pos += 12 + get_be32(png + pos);
  }
  return 0;
}

/* Rewrites the CRC of the chunk at pos after its data was changed on purpose. */
static void fix_crc(uint8_t *png, size_t pos) {
  uint32_t len = get_be32(png + pos);
  put_be32(png + pos + 8 + len, crc32_png(png + pos + 4, 4 + len));
}

static void fill_pattern(dpo_image *img) {
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++)
      for (int c = 0; c < img->channels; c++)
        img->pixels[((size_t)y * img->width + x) * img->channels + c] = (uint8_t)(x * 7 + y * 13 + c * 50);
}

static int same_pixels(const dpo_image *a, const dpo_image *b) {
  return a->width == b->width && a->height == b->height && a->channels == b->channels &&
         memcmp(a->pixels, b->pixels, (size_t)a->width * a->height * a->channels) == 0;
}

static uint8_t test_luma(const uint8_t *p) {
  return (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
}

static uint8_t *read_whole(const char *path, size_t *size) {
  char *data = NULL;
  dpo_error err;
  if (dpo_read_file(path, 1u << 26, &data, size, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
  return (uint8_t *)data;
}

/* A PNG written directly with libpng, for the variants dpo_png_write never
 * produces. `rows` are packed rows of rowbytes each. */
typedef struct {
  int width, height, color, depth, interlace;
  const png_color *palette;
  int n_palette;
  const uint8_t *trns;
  int n_trns;
  const png_color_16 *trns_color;
  int n_texts;      /* tEXt chunks "k0".."kN" */
} raw_png;

static void write_raw_png(const char *path, const raw_png *spec, const uint8_t *rows, size_t rowbytes) {
  FILE *f = fopen(path, "wb");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    test_fail(__FILE__, __LINE__, "libpng failed writing %s", path);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, spec->width, spec->height, spec->depth, spec->color, spec->interlace,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (spec->palette) png_set_PLTE(png, info, spec->palette, spec->n_palette);
  if (spec->trns || spec->trns_color) png_set_tRNS(png, info, spec->trns, spec->n_trns, spec->trns_color);
  png_text texts[40];
  char keys[40][8];
  for (int i = 0; i < spec->n_texts; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    memset(&texts[i], 0, sizeof texts[i]);
    texts[i].compression = PNG_TEXT_COMPRESSION_NONE;
    texts[i].key = keys[i];
    texts[i].text = "v";
  }
  if (spec->n_texts) png_set_text(png, info, texts, spec->n_texts);
  png_write_info(png, info);
  if (spec->depth == 16) png_set_swap(png); /* rows are given little-endian */
  int passes = png_set_interlace_handling(png);
  for (int pass = 0; pass < passes; pass++)
    for (int y = 0; y < spec->height; y++) png_write_row(png, (png_bytep)(rows + (size_t)y * rowbytes));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  fclose(f);
}

/* A JPEG encoded here with libjpeg into memory. */
static uint8_t *encode_jpeg(const uint8_t *pixels, int w, int h, int comps, J_COLOR_SPACE space, int progressive,
                            unsigned long *size) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  unsigned char *out = NULL;
  *size = 0;
  c.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &out, size);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = comps;
  c.in_color_space = space;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(pixels + (size_t)c.next_scanline * w * comps);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  return out;
}

/* Expects a refusal as a data error whose message names the file. */
static void check_data_error(const char *path, const char *fragment) {
  dpo_image img;
  dpo_error err = {0};
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_ERR_DATA);
  CHECK_INT(err.code, DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, path);
  if (fragment) CHECK_CONTAINS(err.msg, fragment);
  CHECK(img.pixels == NULL);
}

/* ------------------------------------------------------------ round trips */

static void test_round_trip(void) {
  const dpo_image_text texts[3] = {
      {"prompt", "a caf\xc3\xa9 \xe2\x98\x95 on a table"}, {"seed", "42"}, {"empty value", ""}};
  const int channels[3] = {1, 3, 4};
  for (int k = 0; k < 3; k++) {
    dpo_error err;
    dpo_image img, back;
    CHECK_INT(dpo_image_alloc(&img, 37, 23, channels[k], &err), DPO_OK);
    fill_pattern(&img);
    char name[32];
    snprintf(name, sizeof name, "round%d.png", channels[k]);
    const char *path = test_path(name);
    CHECK_INT(dpo_png_write(path, &img, texts, 3, &err), DPO_OK);
    CHECK_INT(dpo_image_read(path, 0, &back, &err), DPO_OK);
    CHECK(same_pixels(&img, &back));
    dpo_image_free(&back);

    dpo_image_text *got;
    int n;
    CHECK_INT(dpo_png_read_texts(path, &got, &n, &err), DPO_OK);
    CHECK_INT(n, 3);
    for (int i = 0; i < n && i < 3; i++) {
      CHECK_STR(got[i].key, texts[i].key);
      CHECK_STR(got[i].value, texts[i].value);
    }
    dpo_image_texts_free(got, n);

    /* The in-memory encoder and decoder agree with the file versions. */
    uint8_t *png;
    size_t size;
    CHECK_INT(dpo_png_encode(&img, texts, 3, &png, &size, &err), DPO_OK);
    CHECK_INT(dpo_image_detect(png, size), DPO_IMAGE_FORMAT_PNG);
    CHECK_INT(dpo_image_decode(png, size, "memory", 0, &back, &err), DPO_OK);
    CHECK(same_pixels(&img, &back));
    dpo_image_free(&back);
    CHECK_INT(dpo_png_decode_texts(png, size, "memory", &got, &n, &err), DPO_OK);
    CHECK_INT(n, 3);
    if (n == 3) CHECK_STR(got[0].value, texts[0].value);
    dpo_image_texts_free(got, n);
    free(png);
    dpo_image_free(&img);
  }
  /* No texts at all. */
  dpo_error err;
  dpo_image img;
  CHECK_INT(dpo_image_alloc(&img, 1, 1, 3, &err), DPO_OK);
  const char *path = test_path("plain.png");
  CHECK_INT(dpo_png_write(path, &img, NULL, 0, &err), DPO_OK);
  dpo_image_text *got;
  int n = -1;
  CHECK_INT(dpo_png_read_texts(path, &got, &n, &err), DPO_OK);
  CHECK_INT(n, 0);
  dpo_image_texts_free(got, n);
  dpo_image_free(&img);
}

static void test_write_refusals(void) {
  dpo_error err;
  dpo_image img;
  CHECK_INT(dpo_image_alloc(&img, 4, 4, 3, &err), DPO_OK);
  dpo_image_text many[DPO_IMAGE_MAX_TEXT + 1];
  for (int i = 0; i <= DPO_IMAGE_MAX_TEXT; i++) many[i] = (dpo_image_text){"key", "value"};
  uint8_t *png;
  size_t size;
  CHECK_INT(dpo_png_encode(&img, many, DPO_IMAGE_MAX_TEXT + 1, &png, &size, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "text chunks");
  const dpo_image_text bad_keys[3] = {{"", "v"}, {" lead", "v"}, {"caf\xc3\xa9", "v"}};
  for (int i = 0; i < 3; i++) {
    CHECK_INT(dpo_png_encode(&img, &bad_keys[i], 1, &png, &size, &err), DPO_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "keyword");
  }
  const char *path = test_path("refused.png");
  CHECK_INT(dpo_png_write(path, &img, bad_keys, 1, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "refused.png");
  img.channels = 2;
  CHECK_INT(dpo_png_encode(&img, NULL, 0, &png, &size, &err), DPO_ERR_USAGE);
  img.channels = 3;
  dpo_image_free(&img);
  CHECK_INT(dpo_image_alloc(&img, DPO_IMAGE_MAX_SIDE + 1, 1, 3, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_image_alloc(&img, 0, 5, 3, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_image_alloc(&img, 4, 4, 2, &err), DPO_ERR_USAGE);
  CHECK(img.pixels == NULL);
  CHECK_INT(dpo_png_write(test_path("no/such/dir/x.png"), &img, NULL, 0, &err), DPO_ERR_USAGE);
}

/* ----------------------------------------------------- channel conversion */

static void test_conversions(void) {
  dpo_error err;
  dpo_image rgba, img;
  CHECK_INT(dpo_image_alloc(&rgba, 9, 5, 4, &err), DPO_OK);
  fill_pattern(&rgba);
  const char *path = test_path("rgba.png");
  CHECK_INT(dpo_png_write(path, &rgba, NULL, 0, &err), DPO_OK);
  size_t n = 9 * 5;

  CHECK_INT(dpo_image_read(path, 3, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 3);
  int ok = 1;
  for (size_t i = 0; i < n; i++) ok &= memcmp(img.pixels + 3 * i, rgba.pixels + 4 * i, 3) == 0;
  CHECK(ok);
  dpo_image_free(&img);

  CHECK_INT(dpo_image_read(path, 1, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 1);
  ok = 1;
  for (size_t i = 0; i < n; i++) ok &= img.pixels[i] == test_luma(rgba.pixels + 4 * i);
  CHECK(ok);
  dpo_image_free(&img);

  CHECK_INT(dpo_image_read(path, 4, &img, &err), DPO_OK);
  CHECK(same_pixels(&img, &rgba));
  dpo_image_free(&img);
  dpo_image_free(&rgba);

  dpo_image gray;
  CHECK_INT(dpo_image_alloc(&gray, 6, 7, 1, &err), DPO_OK);
  fill_pattern(&gray);
  path = test_path("gray.png");
  CHECK_INT(dpo_png_write(path, &gray, NULL, 0, &err), DPO_OK);
  CHECK_INT(dpo_image_read(path, 3, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 3);
  ok = 1;
  for (size_t i = 0; i < 42; i++)
    ok &= img.pixels[3 * i] == gray.pixels[i] && img.pixels[3 * i + 1] == gray.pixels[i] &&
          img.pixels[3 * i + 2] == gray.pixels[i];
  CHECK(ok);
  dpo_image_free(&img);
  CHECK_INT(dpo_image_read(path, 4, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 4);
  ok = 1;
  for (size_t i = 0; i < 42; i++) ok &= img.pixels[4 * i] == gray.pixels[i] && img.pixels[4 * i + 3] == 255;
  CHECK(ok);
  dpo_image_free(&img);
  dpo_image_free(&gray);

  dpo_image rgb;
  CHECK_INT(dpo_image_alloc(&rgb, 3, 3, 3, &err), DPO_OK);
  fill_pattern(&rgb);
  path = test_path("rgb.png");
  CHECK_INT(dpo_png_write(path, &rgb, NULL, 0, &err), DPO_OK);
  CHECK_INT(dpo_image_read(path, 4, &img, &err), DPO_OK);
  ok = img.channels == 4;
  for (size_t i = 0; ok && i < 9; i++) ok &= memcmp(img.pixels + 4 * i, rgb.pixels + 3 * i, 3) == 0 && img.pixels[4 * i + 3] == 255;
  CHECK(ok);
  dpo_image_free(&img);
  CHECK_INT(dpo_image_read(path, 1, &img, &err), DPO_OK);
  ok = img.channels == 1;
  for (size_t i = 0; ok && i < 9; i++) ok &= img.pixels[i] == test_luma(rgb.pixels + 3 * i);
  CHECK(ok);
  dpo_image_free(&img);
  dpo_image_free(&rgb);

  CHECK_INT(dpo_image_read(path, 2, &img, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "channels");
}

/* ----------------------------------------------------------- PNG variants */

static void test_png_16_bit(void) {
  enum { W = 11, H = 6 };
  uint16_t rows[H][W * 3];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W * 3; x++) rows[y][x] = (uint16_t)(x * 1979 + y * 7919 + 0x0101);
  raw_png spec = {.width = W, .height = H, .color = PNG_COLOR_TYPE_RGB, .depth = 16};
  const char *path = test_path("rgb16.png");
  write_raw_png(path, &spec, (const uint8_t *)rows, sizeof rows[0]);
  dpo_image img;
  dpo_error err;
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 3);
  CHECK_INT(img.width, W);
  CHECK_INT(img.height, H);
  double worst = 0;
  for (int y = 0; y < H && img.pixels; y++)
    for (int x = 0; x < W * 3; x++) {
      double d = img.pixels[y * W * 3 + x] - rows[y][x] / 257.0;
      if (d < 0) d = -d;
      if (d > worst) worst = d;
    }
  CHECK_NEAR(worst, 0, 0.51);
  dpo_image_free(&img);

  /* 16-bit gray + alpha: kept as RGBA, since dpo_image has no 2-channel form. */
  uint16_t ga[H][W * 2];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      ga[y][2 * x] = (uint16_t)(x * 5000);
      ga[y][2 * x + 1] = (uint16_t)(y * 10000);
    }
  spec.color = PNG_COLOR_TYPE_GRAY_ALPHA;
  path = test_path("ga16.png");
  write_raw_png(path, &spec, (const uint8_t *)ga, sizeof ga[0]);
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 4);
  if (img.pixels) {
    const uint8_t *p = img.pixels + (3 * W + 4) * 4; /* x = 4, y = 3 */
    CHECK_NEAR(p[0], 20000 / 257.0, 0.51);
    CHECK_INT(p[1], p[0]);
    CHECK_NEAR(p[3], 30000 / 257.0, 0.51);
  }
  dpo_image_free(&img);
}

static void test_png_palette(void) {
  enum { W = 5, H = 3 };
  const png_color palette[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
  /* 2 bits per index, packed: row y holds indices (x + y) % 4. */
  uint8_t rows[H][2];
  for (int y = 0; y < H; y++) {
    memset(rows[y], 0, 2);
    for (int x = 0; x < W; x++) rows[y][x / 4] |= (uint8_t)(((x + y) % 4) << (6 - 2 * (x % 4)));
  }
  raw_png spec = {.width = W, .height = H, .color = PNG_COLOR_TYPE_PALETTE, .depth = 2,
                  .palette = palette, .n_palette = 4};
  const char *path = test_path("palette.png");
  write_raw_png(path, &spec, &rows[0][0], 2);
  dpo_image img;
  dpo_error err;
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 3);
  int ok = img.pixels != NULL;
  for (int y = 0; ok && y < H; y++)
    for (int x = 0; x < W; x++) {
      const png_color *want = &palette[(x + y) % 4];
      const uint8_t *p = img.pixels + (y * W + x) * 3;
      ok &= p[0] == want->red && p[1] == want->green && p[2] == want->blue;
    }
  CHECK(ok);
  dpo_image_free(&img);

  /* tRNS on a palette: entry 1 half transparent, entry 2 clear. */
  const uint8_t trns[3] = {255, 128, 0};
  spec.trns = trns;
  spec.n_trns = 3;
  path = test_path("palette_trns.png");
  write_raw_png(path, &spec, &rows[0][0], 2);
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 4);
  ok = img.pixels != NULL;
  for (int y = 0; ok && y < H; y++)
    for (int x = 0; x < W; x++) {
      int index = (x + y) % 4;
      ok &= img.pixels[(y * W + x) * 4 + 3] == (index < 3 ? trns[index] : 255);
    }
  CHECK(ok);
  dpo_image_free(&img);
  CHECK_INT(dpo_image_read(path, 3, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 3);
  if (img.pixels) CHECK_INT(img.pixels[3], 255); /* x = 1, y = 0: red */
  dpo_image_free(&img);
}

static void test_png_gray_variants(void) {
  enum { W = 10, H = 2 };
  /* 1-bit gray: alternating pixels expand to 0 and 255. */
  uint8_t bits[H][2] = {{0xaa, 0x80}, {0x55, 0x40}};
  raw_png spec = {.width = W, .height = H, .color = PNG_COLOR_TYPE_GRAY, .depth = 1};
  const char *path = test_path("gray1.png");
  write_raw_png(path, &spec, &bits[0][0], 2);
  dpo_image img;
  dpo_error err;
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 1);
  int ok = img.pixels != NULL;
  for (int y = 0; ok && y < H; y++)
    for (int x = 0; x < W; x++) ok &= img.pixels[y * W + x] == (((x + y) % 2 == 0) ? 255 : 0);
  CHECK(ok);
  dpo_image_free(&img);

  /* 8-bit gray with a transparent gray level becomes RGBA. */
  uint8_t gray[H][W];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) gray[y][x] = (uint8_t)(x + y * W);
  png_color_16 key = {.gray = 7};
  raw_png trns = {.width = W, .height = H, .color = PNG_COLOR_TYPE_GRAY, .depth = 8, .trns_color = &key};
  path = test_path("gray_trns.png");
  write_raw_png(path, &trns, &gray[0][0], W);
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 4);
  ok = img.pixels != NULL;
  for (int i = 0; ok && i < W * H; i++)
    ok &= img.pixels[4 * i] == i && img.pixels[4 * i + 3] == (i == 7 ? 0 : 255);
  CHECK(ok);
  dpo_image_free(&img);
}

static void test_png_interlaced(void) {
  enum { W = 13, H = 9 };
  uint8_t rows[H][W * 3];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W * 3; x++) rows[y][x] = (uint8_t)(x * 17 + y * 31);
  raw_png spec = {.width = W, .height = H, .color = PNG_COLOR_TYPE_RGB, .depth = 8,
                  .interlace = PNG_INTERLACE_ADAM7, .n_texts = 2};
  const char *path = test_path("adam7.png");
  write_raw_png(path, &spec, &rows[0][0], W * 3);
  dpo_image img;
  dpo_error err;
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  CHECK(img.pixels && memcmp(img.pixels, rows, sizeof rows) == 0);
  dpo_image_free(&img);
  dpo_image_text *texts;
  int n;
  CHECK_INT(dpo_png_read_texts(path, &texts, &n, &err), DPO_OK);
  CHECK_INT(n, 2);
  if (n == 2) {
    CHECK_STR(texts[1].key, "k1");
    CHECK_STR(texts[1].value, "v");
  }
  dpo_image_texts_free(texts, n);
}

static void test_png_text_limits(void) {
  uint8_t row[3] = {1, 2, 3};
  raw_png spec = {.width = 1, .height = 1, .color = PNG_COLOR_TYPE_RGB, .depth = 8,
                  .n_texts = DPO_IMAGE_MAX_TEXT + 1};
  const char *path = test_path("many_texts.png");
  write_raw_png(path, &spec, row, 3);
  dpo_image_text *texts;
  int n;
  dpo_error err;
  CHECK_INT(dpo_png_read_texts(path, &texts, &n, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, path);
  CHECK_CONTAINS(err.msg, "limit");
  CHECK(texts == NULL);
  /* The pixels themselves are fine. */
  dpo_image img;
  CHECK_INT(dpo_image_read(path, 0, &img, &err), DPO_OK);
  dpo_image_free(&img);

  /* A Latin-1 tEXt value comes back as UTF-8. */
  FILE *f = fopen(test_path("latin1.png"), "wb");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png)) == 0) {
    png_init_io(png, f);
    png_set_IHDR(png, info, 1, 1, 8, PNG_COLOR_TYPE_GRAY, 0, 0, 0);
    png_text t = {.compression = PNG_TEXT_COMPRESSION_zTXt, .key = "note", .text = "caf\xe9"};
    png_set_text(png, info, &t, 1);
    png_write_info(png, info);
    png_write_row(png, row);
    png_write_end(png, NULL);
  }
  png_destroy_write_struct(&png, &info);
  fclose(f);
  CHECK_INT(dpo_png_read_texts(test_path("latin1.png"), &texts, &n, &err), DPO_OK);
  CHECK_INT(n, 1);
  if (n == 1) CHECK_STR(texts[0].value, "caf\xc3\xa9");
  dpo_image_texts_free(texts, n);

  /* A text chunk whose length runs past the end of the file. */
  dpo_image tiny;
  CHECK_INT(dpo_image_alloc(&tiny, 2, 2, 1, &err), DPO_OK);
  const dpo_image_text note = {"note", "hello"};
  uint8_t *encoded;
  size_t size;
  CHECK_INT(dpo_png_encode(&tiny, &note, 1, &encoded, &size, &err), DPO_OK);
  size_t itxt = find_chunk(encoded, size, "iTXt");
  CHECK(itxt > 0);
  put_be32(encoded + itxt, 0x40000000);
  CHECK_INT(dpo_png_decode_texts(encoded, size, "long_text.png", &texts, &n, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "long_text.png");
  CHECK_CONTAINS(err.msg, "chunk iTXt claims");
  free(encoded);
  dpo_image_free(&tiny);

  /* Texts of something that is not a PNG. */
  const char *jpeg_path = test_path("not_png.jpg");
  CHECK_INT(test_write_file(jpeg_path, "\xff\xd8\xff\xe0", 4), 0);
  CHECK_INT(dpo_png_read_texts(jpeg_path, &texts, &n, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, jpeg_path);
  CHECK_CONTAINS(err.msg, "89 50 4E 47");
}

/* -------------------------------------------------------------------- JPEG */

static void test_jpeg(void) {
  enum { W = 64, H = 48 };
  static uint8_t rgb[H][W * 3];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      rgb[y][3 * x] = (uint8_t)(x * 4);
      rgb[y][3 * x + 1] = (uint8_t)(y * 5);
      rgb[y][3 * x + 2] = 128;
    }
  for (int progressive = 0; progressive < 2; progressive++) {
    unsigned long size;
    uint8_t *jpeg = encode_jpeg(&rgb[0][0], W, H, 3, JCS_RGB, progressive, &size);
    dpo_image img;
    dpo_error err;
    CHECK_INT(dpo_image_decode(jpeg, size, "gradient.jpg", 0, &img, &err), DPO_OK);
    CHECK_INT(img.width, W);
    CHECK_INT(img.height, H);
    CHECK_INT(img.channels, 3);
    double total = 0, worst = 0;
    for (size_t i = 0; img.pixels && i < sizeof rgb; i++) {
      double d = (double)img.pixels[i] - (&rgb[0][0])[i];
      if (d < 0) d = -d;
      total += d;
      if (d > worst) worst = d;
    }
    CHECK_NEAR(total / sizeof rgb, 0, 2.0);
    CHECK_NEAR(worst, 0, 16);
    dpo_image_free(&img);
    CHECK_INT(dpo_image_decode(jpeg, size, "gradient.jpg", 4, &img, &err), DPO_OK);
    CHECK_INT(img.channels, 4);
    if (img.pixels) CHECK_INT(img.pixels[4 * (W * H - 1) + 3], 255);
    dpo_image_free(&img);

    /* Truncated: cut in the entropy-coded data. */
    const char *path = test_path(progressive ? "cut_progressive.jpg" : "cut_baseline.jpg");
    CHECK_INT(test_write_file(path, jpeg, size * 2 / 3), 0);
    check_data_error(path, "JPEG");
    free(jpeg);
  }

  static uint8_t gray[H][W];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) gray[y][x] = (uint8_t)(x * 2 + y);
  unsigned long size;
  uint8_t *jpeg = encode_jpeg(&gray[0][0], W, H, 1, JCS_GRAYSCALE, 0, &size);
  dpo_image img;
  dpo_error err;
  CHECK_INT(dpo_image_decode(jpeg, size, "gray.jpg", 0, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 1);
  if (img.pixels) CHECK_NEAR(img.pixels[20 * W + 30], gray[20][30], 4);
  dpo_image_free(&img);
  CHECK_INT(dpo_image_decode(jpeg, size, "gray.jpg", 3, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 3);
  if (img.pixels) CHECK_INT(img.pixels[3 * 100 + 1], img.pixels[3 * 100]);
  dpo_image_free(&img);
  free(jpeg);

  static uint8_t cmyk[H][W * 4];
  memset(cmyk, 100, sizeof cmyk);
  jpeg = encode_jpeg(&cmyk[0][0], W, H, 4, JCS_CMYK, 0, &size);
  const char *path = test_path("cmyk.jpg");
  CHECK_INT(test_write_file(path, jpeg, size), 0);
  check_data_error(path, "CMYK");
  free(jpeg);
}

static void test_jpeg_corrupt(void) {
  enum { W = 32, H = 32 };
  static uint8_t rgb[H * W * 3];
  for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37 % 251);
  unsigned long size;
  uint8_t *jpeg = encode_jpeg(rgb, W, H, 3, JCS_RGB, 0, &size);
  /* An end-of-image marker in the middle of the entropy-coded data. */
  size_t sos = 0;
  for (size_t i = 2; i + 1 < size; i++)
    if (jpeg[i] == 0xff && jpeg[i + 1] == 0xda) sos = i;
  CHECK(sos > 0);
  size_t middle = sos + (size - sos) / 2;
  jpeg[middle] = 0xff;
  jpeg[middle + 1] = 0xd9;
  const char *path = test_path("corrupt.jpg");
  CHECK_INT(test_write_file(path, jpeg, size), 0);
  check_data_error(path, "Corrupt JPEG data");
  /* A header that claims 12-bit samples. */
  jpeg[middle] = 0;
  jpeg[middle + 1] = 0;
  for (size_t i = 2; i + 4 < size; i++)
    if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {
      jpeg[i + 4] = 12;
      break;
    }
  path = test_path("precision.jpg");
  CHECK_INT(test_write_file(path, jpeg, size), 0);
  check_data_error(path, "precision");
  /* Only the magic bytes. */
  path = test_path("magic_only.jpg");
  CHECK_INT(test_write_file(path, jpeg, 3), 0);
  check_data_error(path, "invalid JPEG");
  free(jpeg);
}

/* -------------------------------------------------------- malformed PNGs */

static uint8_t *noisy_png(size_t *size) {
  dpo_image img;
  dpo_error err;
  dpo_image_alloc(&img, 64, 64, 3, &err);
  uint32_t state = 12345; /* xorshift: noise that deflate cannot shrink */
  for (size_t i = 0; i < 64 * 64 * 3; i++) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    img.pixels[i] = (uint8_t)state;
  }
  uint8_t *png = NULL;
  CHECK_INT(dpo_png_encode(&img, NULL, 0, &png, size, &err), DPO_OK);
  dpo_image_free(&img);
  return png;
}

static void test_png_malformed(void) {
  size_t size;
  uint8_t *png = noisy_png(&size);
  CHECK(size > 1000);

  const char *path = test_path("truncated.png");
  CHECK_INT(test_write_file(path, png, size / 2), 0);
  check_data_error(path, "truncated");
  /* Cut after the image data: IEND is missing. */
  path = test_path("no_iend.png");
  CHECK_INT(test_write_file(path, png, size - 12), 0);
  check_data_error(path, "truncated");
  path = test_path("signature_only.png");
  CHECK_INT(test_write_file(path, png, 8), 0);
  check_data_error(path, "invalid PNG");

  size_t idat = find_chunk(png, size, "IDAT");
  CHECK(idat > 0);
  uint8_t *bad = malloc(size);
  memcpy(bad, png, size);
  bad[idat + 8 + get_be32(png + idat)] ^= 0x55; /* the stored CRC itself */
  path = test_path("bad_crc.png");
  CHECK_INT(test_write_file(path, bad, size), 0);
  check_data_error(path, "CRC");
  /* A flipped bit in the pixel data: zlib or the CRC notices first. */
  memcpy(bad, png, size);
  bad[idat + 8 + 100] ^= 0x55;
  path = test_path("bad_idat.png");
  CHECK_INT(test_write_file(path, bad, size), 0);
  check_data_error(path, "IDAT");
  /* The same on the header. */
  memcpy(bad, png, size);
  bad[8 + 8 + 13] ^= 0x01;
  path = test_path("bad_ihdr_crc.png");
  CHECK_INT(test_write_file(path, bad, size), 0);
  check_data_error(path, "IHDR: CRC error");

  /* A broken zlib header with a correct CRC: the data itself is corrupt. */
  memcpy(bad, png, size);
  bad[idat + 8] = 0x00;
  fix_crc(bad, idat);
  path = test_path("bad_zlib.png");
  CHECK_INT(test_write_file(path, bad, size), 0);
  check_data_error(path, "IDAT");

  /* A chunk length far past the end of the file: refused before libpng
   * allocates anything for it. */
  memcpy(bad, png, size);
  put_be32(bad + idat, 0x6d10001d);
  path = test_path("huge_idat_length.png");
  CHECK_INT(test_write_file(path, bad, size), 0);
  check_data_error(path, "chunk IDAT claims 1829765149 bytes");

  /* A bad IHDR (bit depth 3) with a correct CRC. */
  memcpy(bad, png, size);
  bad[8 + 8 + 8] = 3;
  fix_crc(bad, 8);
  path = test_path("bad_depth.png");
  CHECK_INT(test_write_file(path, bad, size), 0);
  check_data_error(path, "invalid PNG");
  free(bad);
  free(png);
}

/* A PNG that is only a signature, an IHDR claiming width x height, an IDAT
 * holding an empty zlib stream and IEND, all CRCs valid: the refusal must
 * come before any pixel memory is taken. */
static void write_header_only_png(const char *path, uint32_t width, uint32_t height) {
  uint8_t file[8 + 25 + 20 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t *ihdr = file + 8;
  put_be32(ihdr, 13);
  memcpy(ihdr + 4, "IHDR", 4);
  put_be32(ihdr + 8, width);
  put_be32(ihdr + 12, height);
  ihdr[16] = 8; /* bit depth */
  ihdr[17] = 2; /* RGB */
  fix_crc(file, 8);
  static const uint8_t empty_zlib[8] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
  uint8_t *idat = file + 8 + 25;
  put_be32(idat, 8);
  memcpy(idat + 4, "IDAT", 4);
  memcpy(idat + 8, empty_zlib, 8);
  fix_crc(file, 8 + 25);
  uint8_t *iend = file + 8 + 25 + 20;
  put_be32(iend, 0);
  memcpy(iend + 4, "IEND", 4);
  fix_crc(file, 8 + 25 + 20);
  CHECK_INT(test_write_file(path, file, sizeof file), 0);
}

static void test_oversized(void) {
  const char *path = test_path("huge.png");
  write_header_only_png(path, 100000, 100000);
  check_data_error(path, "100000x100000");
  path = test_path("wide.png");
  write_header_only_png(path, DPO_IMAGE_MAX_SIDE + 1, 1);
  check_data_error(path, "larger than the limit");
  path = test_path("many_pixels.png");
  write_header_only_png(path, DPO_IMAGE_MAX_SIDE, DPO_IMAGE_MAX_PIXELS / DPO_IMAGE_MAX_SIDE + 1);
  check_data_error(path, "larger than the limit");
  /* Within the limits, the same file fails later, for lack of pixel data. */
  path = test_path("small_empty_idat.png");
  write_header_only_png(path, 16, 16);
  check_data_error(path, "invalid PNG");

  /* A JPEG whose frame header claims 20000 x 20000. */
  static uint8_t rgb[16 * 16 * 3];
  unsigned long size;
  uint8_t *jpeg = encode_jpeg(rgb, 16, 16, 3, JCS_RGB, 0, &size);
  for (size_t i = 2; i + 8 < size; i++)
    if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {
      jpeg[i + 5] = 20000 >> 8;
      jpeg[i + 6] = 20000 & 0xff;
      jpeg[i + 7] = 20000 >> 8;
      jpeg[i + 8] = 20000 & 0xff;
      break;
    }
  path = test_path("huge.jpg");
  CHECK_INT(test_write_file(path, jpeg, size), 0);
  check_data_error(path, "20000x20000");
  free(jpeg);
}

static void test_not_images(void) {
  const char *path = test_path("empty.png");
  CHECK_INT(test_write_file(path, "", 0), 0);
  check_data_error(path, "empty");
  path = test_path("anim.png");
  CHECK_INT(test_write_file(path, "GIF89a\x01\x00\x01\x00", 10), 0);
  check_data_error(path, "47 49 46 38 39 61 01 00");
  check_data_error(path, "expected PNG magic bytes 89 50 4E 47 0D 0A 1A 0A or JPEG magic bytes FF D8 FF");
  path = test_path("one_byte.jpg");
  CHECK_INT(test_write_file(path, "\xff", 1), 0);
  check_data_error(path, "found FF");
  path = test_path("missing.png");
  check_data_error(path, "cannot open");
}

/* ---------------------------------------------------------------- TEd-Bench */

static void test_tedbench(void) {
  dpo_image img;
  dpo_error err;
  /* Named .png but a JPEG: the magic bytes decide. */
  const char *bird = test_source_path("prompts/data/tedbench/originals/bird.png");
  size_t size;
  uint8_t *data = read_whole(bird, &size);
  CHECK_INT(dpo_image_detect(data, size), DPO_IMAGE_FORMAT_JPEG);
  free(data);
  CHECK_INT(dpo_image_read(bird, 0, &img, &err), DPO_OK);
  CHECK_INT(img.width, 1070);
  CHECK_INT(img.height, 1070);
  CHECK_INT(img.channels, 3);
  dpo_image_free(&img);

  const char *dog = test_source_path("prompts/data/tedbench/originals/dog2_standing.png");
  CHECK_INT(dpo_image_read(dog, 0, &img, &err), DPO_OK);
  CHECK_INT(img.width, 256);
  CHECK_INT(img.height, 256);
  CHECK_INT(img.channels, 4);
  dpo_image rgba = img;
  CHECK_INT(dpo_image_read(dog, 3, &img, &err), DPO_OK);
  CHECK_INT(img.channels, 3);
  int ok = img.pixels && rgba.pixels;
  for (size_t i = 0; ok && i < 256 * 256; i++) ok &= memcmp(img.pixels + 3 * i, rgba.pixels + 4 * i, 3) == 0;
  CHECK(ok);
  dpo_image_free(&img);
  dpo_image_free(&rgba);

  const char *ball = test_source_path("prompts/data/tedbench/originals/tennis_ball.jpeg");
  CHECK_INT(dpo_image_read(ball, 0, &img, &err), DPO_OK);
  CHECK_INT(img.width, 1045);
  CHECK_INT(img.height, 1046);
  dpo_image_free(&img);

  char dir[1024];
  snprintf(dir, sizeof dir, "%s", test_source_path("prompts/data/tedbench/originals"));
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  int count = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    int rc = dpo_image_read(path, 3, &img, &err);
    if (rc != DPO_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
    CHECK_INT(img.channels, 3);
    CHECK(img.width >= 256 && img.height >= 256);
    dpo_image_free(&img);
    count++;
  }
  if (d) closedir(d);
  CHECK_INT(count, 40);
}

int main(void) {
  test_round_trip();
  test_write_refusals();
  test_conversions();
  test_png_16_bit();
  test_png_palette();
  test_png_gray_variants();
  test_png_interlaced();
  test_png_text_limits();
  test_jpeg();
  test_jpeg_corrupt();
  test_png_malformed();
  test_oversized();
  test_not_images();
  test_tedbench();
  return test_finish();
}
