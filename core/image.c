/* PNG and JPEG over libpng and libjpeg-turbo.
 *
 * Both libraries report errors by calling a handler that must not return; by
 * default libpng longjmps to a buffer the caller set and libjpeg calls exit().
 * Each decoder here installs handlers that copy the library's message into a
 * context and longjmp back to a small "guarded" function. Everything that must
 * be freed lives in that context (owned by the caller of the guarded
 * function), never in locals of the function that called setjmp, so no
 * volatile is needed and cleanup is one path for success and failure.
 *
 * Decoding goes to the file's own layout first (1 to 4 channels, 8 bits) and
 * is then converted to the channels the caller wants by one routine shared by
 * both formats. Dimensions are checked against DPO_IMAGE_MAX_SIDE and
 * DPO_IMAGE_MAX_PIXELS as soon as the header is read, before any pixel
 * memory is allocated. */
#include "core/core.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* jpeglib.h first: jerror.h lists some messages only under its jconfig.h. */
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

/* Largest image file read whole into memory. A 64 Mpixel RGBA PNG stored
 * without compression is 256 MiB; anything much larger is not an image we
 * produce or consume. */
#define IMAGE_MAX_FILE_BYTES (512u * 1024u * 1024u)
/* Largest text chunk value accepted, read or written. */
#define PNG_MAX_TEXT_BYTES (1024u * 1024u)
/* Largest decompressed zTXt/iTXt/iCCP that libpng may allocate (it drops
 * such a chunk with a warning past this). Chunk lengths themselves are
 * checked against the file's size by png_check_chunk_lengths. */
#define PNG_MAX_CHUNK_BYTES (16u * 1024u * 1024u)
/* Ancillary chunks libpng keeps per file (it drops the rest with a warning). */
#define PNG_MAX_CACHED_CHUNKS 256
/* Progressive JPEGs with thousands of tiny scans take quadratic time; real
 * encoders write about ten. TurboJPEG's own scan limit is 500. */
#define JPEG_MAX_SCANS 500

/* ------------------------------------------------------------- allocation */

static int check_dimensions(const char *where, long long width, long long height, int code,
                            dpo_error *err) {
  if (width <= 0 || height <= 0)
    return dpo_fail(err, code, "%s: image is %lldx%lld pixels, expected positive dimensions",
                    where, width, height);
  if (width > DPO_IMAGE_MAX_SIDE || height > DPO_IMAGE_MAX_SIDE ||
      (unsigned long long)width * (unsigned long long)height > DPO_IMAGE_MAX_PIXELS)
    return dpo_fail(err, code,
                    "%s: image is %lldx%lld pixels, larger than the limit of %d per side and %u pixels",
                    where, width, height, DPO_IMAGE_MAX_SIDE, DPO_IMAGE_MAX_PIXELS);
  return DPO_OK;
}

int dpo_image_alloc(dpo_image *img, int width, int height, int channels, dpo_error *err) {
  memset(img, 0, sizeof *img);
  if (channels != 1 && channels != 3 && channels != 4)
    return dpo_fail(err, DPO_ERR_USAGE, "image: %d channels requested, expected 1, 3 or 4", channels);
  int rc = check_dimensions("image", width, height, DPO_ERR_USAGE, err);
  if (rc) return rc;
  size_t n = (size_t)width * (size_t)height * (size_t)channels;
  img->pixels = calloc(n, 1);
  if (!img->pixels)
    return dpo_fail(err, DPO_ERR_DATA, "image: out of memory allocating %dx%dx%d pixels", width, height, channels);
  img->width = width;
  img->height = height;
  img->channels = channels;
  return DPO_OK;
}

void dpo_image_free(dpo_image *img) {
  if (!img) return;
  free(img->pixels);
  memset(img, 0, sizeof *img);
}

/* -------------------------------------------------------- channel changes */

/* ITU-R BT.601 luma, the weights JPEG and most tools use for gray. */
static uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return (uint8_t)((299u * r + 587u * g + 114u * b + 500u) / 1000u);
}

/* Converts one pixel of src_ch (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to
 * dst_ch (1, 3 or 4). Alpha is dropped, not composited; missing alpha is
 * opaque. */
static void convert_pixel(const uint8_t *s, int src_ch, uint8_t *d, int dst_ch) {
  uint8_t r, g, b, a = 255;
  if (src_ch <= 2) {
    r = g = b = s[0];
    if (src_ch == 2) a = s[1];
  } else {
    r = s[0];
    g = s[1];
    b = s[2];
    if (src_ch == 4) a = s[3];
  }
  if (dst_ch == 1) {
    d[0] = src_ch <= 2 ? s[0] : luma(r, g, b);
    return;
  }
  d[0] = r;
  d[1] = g;
  d[2] = b;
  if (dst_ch == 4) d[3] = a;
}

/* The channels an image ends up with: want, or for want == 0 the file's own,
 * except that gray+alpha (which dpo_image does not represent) becomes RGBA. */
static int output_channels(int file_channels, int want_channels) {
  if (want_channels != 0) return want_channels;
  return file_channels == 2 ? 4 : file_channels;
}

/* Fills img from decoded pixels, taking ownership of `decoded` (freed or kept). */
static int finish_image(uint8_t *decoded, int width, int height, int file_channels, int want_channels,
                        const char *where, dpo_image *img, dpo_error *err) {
  int out_ch = output_channels(file_channels, want_channels);
  if (out_ch == file_channels) {
    img->width = width;
    img->height = height;
    img->channels = out_ch;
    img->pixels = decoded;
    return DPO_OK;
  }
  size_t n = (size_t)width * (size_t)height;
  uint8_t *out = malloc(n * (size_t)out_ch);
  if (!out) {
    free(decoded);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory converting %dx%d pixels", where, width, height);
  }
  for (size_t i = 0; i < n; i++)
    convert_pixel(decoded + i * (size_t)file_channels, file_channels, out + i * (size_t)out_ch, out_ch);
  free(decoded);
  img->width = width;
  img->height = height;
  img->channels = out_ch;
  img->pixels = out;
  return DPO_OK;
}

/* ------------------------------------------------------------ PNG reading */

typedef struct {
  const char *where;
  const uint8_t *data;
  size_t size;
  size_t pos;
  char msg[512];          /* libpng's message when it gave up */
  png_structp png;
  png_infop info;
  /* Resources, freed by png_reader_free whatever happened. */
  uint8_t *pixels;
  png_bytep *rows;
  /* Results. */
  int width, height, channels, passes;
  int dims_rejected;      /* check_dimensions failed; err already filled */
  dpo_image_text *texts;
  int n_texts;
} png_reader;

static void png_on_error(png_structp png, png_const_charp msg) {
  png_reader *r = png_get_error_ptr(png);
  snprintf(r->msg, sizeof r->msg, "%s", msg);
  png_longjmp(png, 1);
}

/* libpng warns about things it has recovered from (an ancillary chunk with a
 * bad CRC is skipped, say); the pixels are still right, so stay quiet. */
static void png_on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static void png_read_from_memory(png_structp png, png_bytep out, png_size_t n) {
  png_reader *r = png_get_io_ptr(png);
  if (n > r->size - r->pos) {
    r->pos = r->size; /* the error names where the file ends */
    png_error(png, "unexpected end of file (truncated)");
  }
  memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

/* Walks the chunk lengths up to IEND before libpng sees them. libpng
 * allocates an ancillary chunk's buffer from its length field before reading
 * it, and this build only warns (then allocates anyway) when the length
 * passes the chunk_malloc_max limit; a length past the end of the bytes we
 * hold is a truncated or corrupt file whatever the chunk is. */
static int png_check_chunk_lengths(const uint8_t *data, size_t size, const char *where, dpo_error *err) {
  size_t pos = 8;
  while (size - pos >= 8) {
    uint32_t len = (uint32_t)data[pos] << 24 | (uint32_t)data[pos + 1] << 16 | (uint32_t)data[pos + 2] << 8 |
                   data[pos + 3];
    char type[5];
    for (int i = 0; i < 4; i++) {
      uint8_t c = data[pos + 4 + i];
      type[i] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ? (char)c : '?';
    }
    type[4] = '\0';
    if ((uint64_t)len + 12 > size - pos)
      return dpo_fail(err, DPO_ERR_DATA,
                      "%s: invalid PNG (at byte %zu of %zu): chunk %s claims %u bytes, past the end of the "
                      "file (truncated or corrupt)",
                      where, pos, size, type, len);
    if (memcmp(type, "IEND", 4) == 0) break;
    pos += 12 + (size_t)len;
  }
  return DPO_OK;
}

static int png_reader_init(png_reader *r, const uint8_t *data, size_t size, const char *where,
                           dpo_error *err) {
  memset(r, 0, sizeof *r);
  int rc = png_check_chunk_lengths(data, size, where, err);
  if (rc) return rc;
  r->where = where;
  r->data = data;
  r->size = size;
  r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, png_on_error, png_on_warning);
  if (r->png) r->info = png_create_info_struct(r->png);
  if (!r->png || !r->info) {
    png_destroy_read_struct(&r->png, &r->info, NULL);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory starting the PNG decoder", where);
  }
  png_set_read_fn(r->png, r, png_read_from_memory);
  png_set_chunk_cache_max(r->png, PNG_MAX_CACHED_CHUNKS);
  png_set_chunk_malloc_max(r->png, PNG_MAX_CHUNK_BYTES);
  return DPO_OK;
}

static void png_reader_free(png_reader *r) {
  png_destroy_read_struct(&r->png, &r->info, NULL);
  free(r->pixels);
  free(r->rows);
  dpo_image_texts_free(r->texts, r->n_texts);
  r->pixels = NULL;
  r->rows = NULL;
  r->texts = NULL;
  r->n_texts = 0;
}

/* Reads the header and sets up the transforms that yield 8-bit gray, gray +
 * alpha, RGB or RGBA. Returns 0 when the dimensions are refused. */
static int png_read_header(png_reader *r, dpo_error *err) {
  png_read_info(r->png, r->info);
  png_uint_32 w = png_get_image_width(r->png, r->info);
  png_uint_32 h = png_get_image_height(r->png, r->info);
  if (check_dimensions(r->where, w, h, DPO_ERR_DATA, err)) {
    r->dims_rejected = 1;
    return 0;
  }
  int color = png_get_color_type(r->png, r->info);
  int depth = png_get_bit_depth(r->png, r->info);
  if (depth == 16) png_set_scale_16(r->png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r->png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
  if (png_get_valid(r->png, r->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(r->png);
  r->passes = png_set_interlace_handling(r->png);
  png_read_update_info(r->png, r->info);
  r->width = (int)w;
  r->height = (int)h;
  r->channels = png_get_channels(r->png, r->info);
  return 1;
}

/* May longjmp out through png_on_error; see png_decode_guarded. */
static void png_decode_body(png_reader *r, dpo_error *err) {
  if (!png_read_header(r, err)) return;
  size_t row_bytes = png_get_rowbytes(r->png, r->info);
  if (row_bytes != (size_t)r->width * (size_t)r->channels)
    png_error(r->png, "unexpected row size after transforms");
  r->pixels = malloc(row_bytes * (size_t)r->height);
  r->rows = malloc(sizeof(png_bytep) * (size_t)r->height);
  if (!r->pixels || !r->rows) png_error(r->png, "out of memory for pixels");
  for (int y = 0; y < r->height; y++) r->rows[y] = r->pixels + (size_t)y * row_bytes;
  png_read_image(r->png, r->rows);
  /* Reads to IEND, so a file cut after its image data is refused too. */
  png_read_end(r->png, NULL);
}

static int png_decode_guarded(png_reader *r, dpo_error *err) {
  if (setjmp(png_jmpbuf(r->png))) return DPO_ERR_DATA;
  png_decode_body(r, err);
  return r->dims_rejected ? DPO_ERR_DATA : DPO_OK;
}

static int png_failure(png_reader *r, dpo_error *err) {
  return dpo_fail(err, DPO_ERR_DATA, "%s: invalid PNG (at byte %zu of %zu): %s", r->where, r->pos,
                  r->size, r->msg[0] ? r->msg : "unknown error");
}

static int decode_png(const uint8_t *data, size_t size, const char *where, int want_channels,
                      dpo_image *img, dpo_error *err) {
  png_reader r;
  int rc = png_reader_init(&r, data, size, where, err);
  if (rc) return rc;
  /* Text chunks do not change pixels: skip them instead of inflating zTXt. */
  static const png_byte text_chunks[] = {'t', 'E', 'X', 't', 0, 'z', 'T', 'X', 't', 0, 'i', 'T', 'X', 't', 0};
  png_set_keep_unknown_chunks(r.png, PNG_HANDLE_CHUNK_NEVER, text_chunks, 3);
  rc = png_decode_guarded(&r, err);
  if (rc == DPO_OK) {
    rc = finish_image(r.pixels, r.width, r.height, r.channels, want_channels, where, img, err);
    r.pixels = NULL; /* owned by img (or freed) now */
  } else if (!r.dims_rejected) {
    rc = png_failure(&r, err);
  }
  png_reader_free(&r);
  return rc;
}

/* ------------------------------------------------------------ PNG texts */

/* Copies Latin-1 bytes (tEXt, zTXt, and every keyword) as UTF-8. */
static char *latin1_to_utf8(const char *s, size_t n) {
  char *out = malloc(2 * n + 1);
  if (!out) return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      out[j++] = (char)c;
    } else {
      out[j++] = (char)(0xc0 | (c >> 6));
      out[j++] = (char)(0x80 | (c & 0x3f));
    }
  }
  out[j] = '\0';
  return out;
}

static char *copy_bytes(const char *s, size_t n) {
  char *out = malloc(n + 1);
  if (!out) return NULL;
  memcpy(out, s, n);
  out[n] = '\0';
  return out;
}

/* Copies libpng's text list into r->texts, enforcing the count and size
 * bounds. May longjmp (png_error) on a violation. */
static void png_collect_texts(png_reader *r) {
  png_textp list = NULL;
  int n = png_get_text(r->png, r->info, &list, NULL);
  if (n > DPO_IMAGE_MAX_TEXT) {
    snprintf(r->msg, sizeof r->msg, "%d text chunks, more than the limit of %d", n, DPO_IMAGE_MAX_TEXT);
    png_longjmp(r->png, 1);
  }
  if (n <= 0) return;
  r->texts = calloc((size_t)n, sizeof *r->texts);
  if (!r->texts) png_error(r->png, "out of memory for text chunks");
  for (int i = 0; i < n; i++) {
    const png_text *t = &list[i];
    size_t len = t->compression >= PNG_ITXT_COMPRESSION_NONE ? t->itxt_length : t->text_length;
    if (len > PNG_MAX_TEXT_BYTES) {
      snprintf(r->msg, sizeof r->msg, "text chunk \"%.79s\" is %zu bytes, more than the limit of %u",
               t->key, len, PNG_MAX_TEXT_BYTES);
      png_longjmp(r->png, 1);
    }
    const char *value = t->text ? t->text : "";
    r->texts[i].key = latin1_to_utf8(t->key, strlen(t->key));
    /* iTXt is UTF-8 already; tEXt and zTXt are Latin-1. */
    r->texts[i].value = t->compression >= PNG_ITXT_COMPRESSION_NONE ? copy_bytes(value, len)
                                                                     : latin1_to_utf8(value, len);
    r->n_texts = i + 1;
    if (!r->texts[i].key || !r->texts[i].value) png_error(r->png, "out of memory for text chunks");
  }
}

/* Decodes every row (one row buffer, so the memory stays small) to reach the
 * chunks after the image data, then collects all text chunks. */
static void png_texts_body(png_reader *r, dpo_error *err) {
  png_set_keep_unknown_chunks(r->png, PNG_HANDLE_CHUNK_AS_DEFAULT, NULL, 0);
  if (!png_read_header(r, err)) return;
  r->pixels = malloc(png_get_rowbytes(r->png, r->info));
  if (!r->pixels) png_error(r->png, "out of memory for a row");
  for (int pass = 0; pass < r->passes; pass++)
    for (int y = 0; y < r->height; y++) png_read_row(r->png, r->pixels, NULL);
  png_read_end(r->png, r->info);
  png_collect_texts(r);
}

static int png_texts_guarded(png_reader *r, dpo_error *err) {
  if (setjmp(png_jmpbuf(r->png))) return DPO_ERR_DATA;
  png_texts_body(r, err);
  return r->dims_rejected ? DPO_ERR_DATA : DPO_OK;
}

int dpo_png_decode_texts(const uint8_t *data, size_t size, const char *where, dpo_image_text **texts,
                         int *n, dpo_error *err) {
  *texts = NULL;
  *n = 0;
  if (dpo_image_detect(data, size) != DPO_IMAGE_FORMAT_PNG)
    return dpo_fail(err, DPO_ERR_DATA,
                    "%s: not a PNG file: expected the PNG magic bytes 89 50 4E 47 0D 0A 1A 0A", where);
  png_reader r;
  int rc = png_reader_init(&r, data, size, where, err);
  if (rc) return rc;
  rc = png_texts_guarded(&r, err);
  if (rc == DPO_OK) {
    *texts = r.texts;
    *n = r.n_texts;
    r.texts = NULL;
    r.n_texts = 0;
  } else if (!r.dims_rejected) {
    rc = png_failure(&r, err);
  }
  png_reader_free(&r);
  return rc;
}

int dpo_png_read_texts(const char *path, dpo_image_text **texts, int *n, dpo_error *err) {
  *texts = NULL;
  *n = 0;
  char *data;
  size_t size;
  int rc = dpo_read_file(path, IMAGE_MAX_FILE_BYTES, &data, &size, err);
  if (rc) return rc;
  rc = dpo_png_decode_texts((const uint8_t *)data, size, path, texts, n, err);
  free(data);
  return rc;
}

void dpo_image_texts_free(dpo_image_text *texts, int n) {
  if (!texts) return;
  for (int i = 0; i < n; i++) {
    free(texts[i].key);
    free(texts[i].value);
  }
  free(texts);
}

/* ----------------------------------------------------------- JPEG reading */

typedef struct {
  struct jpeg_error_mgr base; /* first, so that cinfo->err casts to this */
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX + 64];
} jpeg_error_trap;

typedef struct {
  const char *where;
  size_t size;
  struct jpeg_decompress_struct cinfo;
  jpeg_error_trap trap;
  struct jpeg_progress_mgr progress;
  int created;
  uint8_t *pixels;
  int width, height, channels;
  int refused;            /* err already filled (dimensions, color space) */
} jpeg_reader;

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_error_trap *trap = (jpeg_error_trap *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, trap->msg);
  longjmp(trap->jump, 1);
}

/* libjpeg reports damaged entropy-coded data as warnings and goes on with gray
 * filler; such an image is not the picture in the file, so those warnings are
 * errors here. Harmless ones (stray bytes between markers, unknown JFIF
 * revisions) and trace messages are dropped instead of printed. */
static int jpeg_warning_is_corruption(int code) {
  switch (code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
      return 1;
    default:
      return 0;
  }
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && jpeg_warning_is_corruption(cinfo->err->msg_code)) jpeg_on_error(cinfo);
}

static void jpeg_on_progress(j_common_ptr cinfo) {
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (d->input_scan_number > JPEG_MAX_SCANS) {
    jpeg_error_trap *trap = (jpeg_error_trap *)cinfo->err;
    snprintf(trap->msg, sizeof trap->msg, "more than %d progressive scans", JPEG_MAX_SCANS);
    longjmp(trap->jump, 1);
  }
}

/* May longjmp out through the error trap; see jpeg_decode_guarded. */
static void jpeg_decode_body(jpeg_reader *r, const uint8_t *data, dpo_error *err) {
  struct jpeg_decompress_struct *c = &r->cinfo;
  jpeg_create_decompress(c);
  r->created = 1;
  c->progress = &r->progress;
  jpeg_mem_src(c, data, (unsigned long)r->size);
  if (jpeg_read_header(c, TRUE) != JPEG_HEADER_OK) {
    snprintf(r->trap.msg, sizeof r->trap.msg, "no image in the file (tables only)");
    longjmp(r->trap.jump, 1);
  }
  if (check_dimensions(r->where, c->image_width, c->image_height, DPO_ERR_DATA, err)) {
    r->refused = 1;
    return;
  }
  if (c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK) {
    r->refused = 1;
    dpo_fail(err, DPO_ERR_DATA, "%s: CMYK JPEG is not supported, expected a gray or RGB (YCbCr) JPEG",
             r->where);
    return;
  }
  c->out_color_space = c->jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(c);
  r->width = (int)c->output_width;
  r->height = (int)c->output_height;
  r->channels = c->output_components;
  size_t row_bytes = (size_t)r->width * (size_t)r->channels;
  r->pixels = malloc(row_bytes * (size_t)r->height);
  if (!r->pixels) {
    snprintf(r->trap.msg, sizeof r->trap.msg, "out of memory for pixels");
    longjmp(r->trap.jump, 1);
  }
  while (c->output_scanline < c->output_height) {
    JSAMPROW row = r->pixels + (size_t)c->output_scanline * row_bytes;
    jpeg_read_scanlines(c, &row, 1);
  }
  jpeg_finish_decompress(c);
}

static int jpeg_decode_guarded(jpeg_reader *r, const uint8_t *data, dpo_error *err) {
  if (setjmp(r->trap.jump)) return DPO_ERR_DATA;
  jpeg_decode_body(r, data, err);
  return r->refused ? DPO_ERR_DATA : DPO_OK;
}

static int decode_jpeg(const uint8_t *data, size_t size, const char *where, int want_channels,
                       dpo_image *img, dpo_error *err) {
  jpeg_reader r;
  memset(&r, 0, sizeof r);
  r.where = where;
  r.size = size;
  r.cinfo.err = jpeg_std_error(&r.trap.base);
  r.trap.base.error_exit = jpeg_on_error;
  r.trap.base.emit_message = jpeg_on_message;
  r.progress.progress_monitor = jpeg_on_progress;
  int rc = jpeg_decode_guarded(&r, data, err);
  if (rc == DPO_OK) {
    rc = finish_image(r.pixels, r.width, r.height, r.channels, want_channels, where, img, err);
    r.pixels = NULL;
  } else if (!r.refused) {
    size_t left = r.created && r.cinfo.src ? r.cinfo.src->bytes_in_buffer : size;
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: invalid JPEG (at byte %zu of %zu): %s", where, size - left, size,
                  r.trap.msg[0] ? r.trap.msg : "unknown error");
  }
  if (r.created) jpeg_destroy_decompress(&r.cinfo);
  free(r.pixels);
  return rc;
}

/* -------------------------------------------------------------- decoding */

int dpo_image_decode(const uint8_t *data, size_t size, const char *where, int want_channels,
                     dpo_image *img, dpo_error *err) {
  memset(img, 0, sizeof *img);
  if (want_channels != 0 && want_channels != 1 && want_channels != 3 && want_channels != 4)
    return dpo_fail(err, DPO_ERR_USAGE, "%s: %d channels requested, expected 0 (keep), 1, 3 or 4", where,
                    want_channels);
  if (size == 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: empty file, expected a PNG or JPEG image", where);
  switch (dpo_image_detect(data, size)) {
    case DPO_IMAGE_FORMAT_PNG:
      return decode_png(data, size, where, want_channels, img, err);
    case DPO_IMAGE_FORMAT_JPEG:
      return decode_jpeg(data, size, where, want_channels, img, err);
    default:
      break;
  }
  char found[3 * 8 + 1] = "";
  size_t used = 0;
  for (size_t i = 0; i < size && i < 8; i++)
    used += (size_t)snprintf(found + used, sizeof found - used, "%s%02X", i ? " " : "", data[i]);
  return dpo_fail(err, DPO_ERR_DATA,
                  "%s: unknown image format: expected PNG magic bytes 89 50 4E 47 0D 0A 1A 0A or "
                  "JPEG magic bytes FF D8 FF, found %s",
                  where, found);
}

int dpo_image_read(const char *path, int want_channels, dpo_image *img, dpo_error *err) {
  memset(img, 0, sizeof *img);
  char *data;
  size_t size;
  int rc = dpo_read_file(path, IMAGE_MAX_FILE_BYTES, &data, &size, err);
  if (rc) return rc;
  rc = dpo_image_decode((const uint8_t *)data, size, path, want_channels, img, err);
  free(data);
  return rc;
}

/* ------------------------------------------------------------ PNG writing */

typedef struct {
  uint8_t *data;
  size_t size;
  size_t cap;
  char msg[512];
  png_structp png;
  png_infop info;
  png_bytep *rows;
  png_text *texts;
} png_writer;

static void png_write_to_memory(png_structp png, png_bytep in, png_size_t n) {
  png_writer *w = png_get_io_ptr(png);
  if (n > w->cap - w->size) {
    size_t cap = w->cap ? w->cap : 4096;
    while (n > cap - w->size) cap *= 2;
    uint8_t *grown = realloc(w->data, cap);
    if (!grown) png_error(png, "out of memory for the encoded PNG");
    w->data = grown;
    w->cap = cap;
  }
  memcpy(w->data + w->size, in, n);
  w->size += n;
}

static void png_flush_nothing(png_structp png) { (void)png; }

/* A PNG keyword: 1 to 79 printable Latin-1 characters, no leading, trailing
 * or doubled spaces. libpng would silently drop a chunk with a bad one, so it
 * is checked here first (and kept to ASCII, which is UTF-8 as well). */
static int valid_keyword(const char *key) {
  size_t n = strlen(key);
  if (n < 1 || n > 79 || key[0] == ' ' || key[n - 1] == ' ') return 0;
  for (size_t i = 0; i < n; i++) {
    if (key[i] < 32 || key[i] > 126) return 0;
    if (key[i] == ' ' && key[i + 1] == ' ') return 0;
  }
  return 1;
}

static int check_write_args(const dpo_image *img, const dpo_image_text *texts, int n_texts, dpo_error *err) {
  if (!img->pixels || (img->channels != 1 && img->channels != 3 && img->channels != 4))
    return dpo_fail(err, DPO_ERR_USAGE, "PNG encode: image has %d channels or no pixels, expected 1, 3 or 4",
                    img->channels);
  if (check_dimensions("PNG encode", img->width, img->height, DPO_ERR_USAGE, err)) return DPO_ERR_USAGE;
  if (n_texts < 0 || n_texts > DPO_IMAGE_MAX_TEXT || (n_texts > 0 && !texts))
    return dpo_fail(err, DPO_ERR_USAGE, "PNG encode: %d text chunks, expected 0 to %d", n_texts,
                    DPO_IMAGE_MAX_TEXT);
  for (int i = 0; i < n_texts; i++) {
    if (!texts[i].key || !valid_keyword(texts[i].key))
      return dpo_fail(err, DPO_ERR_USAGE,
                      "PNG encode: text key \"%s\" is not a PNG keyword (1-79 printable ASCII characters, "
                      "no leading, trailing or double spaces)",
                      texts[i].key ? texts[i].key : "(null)");
    if (!texts[i].value || strlen(texts[i].value) > PNG_MAX_TEXT_BYTES)
      return dpo_fail(err, DPO_ERR_USAGE, "PNG encode: text \"%s\" is missing or longer than %u bytes",
                      texts[i].key, PNG_MAX_TEXT_BYTES);
  }
  return DPO_OK;
}

/* May longjmp out through the error handler; see png_encode_guarded. */
static void png_encode_body(png_writer *w, const dpo_image *img, const dpo_image_text *texts, int n_texts) {
  static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGBA};
  png_set_write_fn(w->png, w, png_write_to_memory, png_flush_nothing);
  png_set_IHDR(w->png, w->info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
               color_types[img->channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (n_texts > 0) {
    w->texts = calloc((size_t)n_texts, sizeof *w->texts);
    if (!w->texts) png_error(w->png, "out of memory for text chunks");
    for (int i = 0; i < n_texts; i++) {
      w->texts[i].compression = PNG_ITXT_COMPRESSION_NONE;
      w->texts[i].key = texts[i].key;
      w->texts[i].text = texts[i].value;
      w->texts[i].lang = "";
      w->texts[i].lang_key = "";
    }
    png_set_text(w->png, w->info, w->texts, n_texts);
  }
  size_t row_bytes = (size_t)img->width * (size_t)img->channels;
  w->rows = malloc(sizeof(png_bytep) * (size_t)img->height);
  if (!w->rows) png_error(w->png, "out of memory for row pointers");
  for (int y = 0; y < img->height; y++) w->rows[y] = img->pixels + (size_t)y * row_bytes;
  png_write_info(w->png, w->info);
  png_write_image(w->png, w->rows);
  png_write_end(w->png, NULL);
}

static int png_encode_guarded(png_writer *w, const dpo_image *img, const dpo_image_text *texts, int n_texts) {
  if (setjmp(png_jmpbuf(w->png))) return DPO_ERR_DATA;
  png_encode_body(w, img, texts, n_texts);
  return DPO_OK;
}

static void png_writer_on_error(png_structp png, png_const_charp msg) {
  png_writer *w = png_get_error_ptr(png);
  snprintf(w->msg, sizeof w->msg, "%s", msg);
  png_longjmp(png, 1);
}

int dpo_png_encode(const dpo_image *img, const dpo_image_text *texts, int n_texts, uint8_t **out,
                   size_t *out_size, dpo_error *err) {
  *out = NULL;
  *out_size = 0;
  int rc = check_write_args(img, texts, n_texts, err);
  if (rc) return rc;
  png_writer w;
  memset(&w, 0, sizeof w);
  w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w, png_writer_on_error, png_on_warning);
  if (w.png) w.info = png_create_info_struct(w.png);
  if (!w.png || !w.info) {
    png_destroy_write_struct(&w.png, &w.info);
    return dpo_fail(err, DPO_ERR_DATA, "PNG encode: out of memory starting the encoder");
  }
  rc = png_encode_guarded(&w, img, texts, n_texts);
  png_destroy_write_struct(&w.png, &w.info);
  free(w.rows);
  free(w.texts);
  if (rc) {
    free(w.data);
    return dpo_fail(err, DPO_ERR_DATA, "PNG encode: %s", w.msg[0] ? w.msg : "unknown error");
  }
  *out = w.data;
  *out_size = w.size;
  return DPO_OK;
}

int dpo_png_write(const char *path, const dpo_image *img, const dpo_image_text *texts, int n_texts,
                  dpo_error *err) {
  uint8_t *data;
  size_t size;
  int rc = dpo_png_encode(img, texts, n_texts, &data, &size, err);
  if (rc) return dpo_error_prefix(err, "%s", path);
  rc = dpo_atomic_write(path, data, size, err);
  free(data);
  return rc;
}
