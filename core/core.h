/* core: the ground every other library stands on.
 *
 * Errors, logging and progress, whole-file reads and atomic writes, JSON
 * helpers over jansson, the counter-based RNG, safetensors, and PNG/JPEG.
 *
 * Conventions. A function that can fail returns an int status (DPO_OK, or
 * DPO_ERR_DATA for bad input and failed I/O, DPO_ERR_USAGE for a caller's
 * mistake) and fills a dpo_error whose message names the file, the position
 * (line, row or byte offset) and what was expected. Nothing here prints an
 * error; the caller decides. Input read from files is untrusted: every length
 * and offset is checked against the size of what was actually read. */
#ifndef DPO_CORE_H
#define DPO_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* ------------------------------------------------------------------ errors */

enum { DPO_OK = 0, DPO_ERR_DATA = 1, DPO_ERR_USAGE = 2 };

typedef struct {
  int code;
  char msg[1024];
} dpo_error;

/* Sets err (which may be NULL) and returns code, so that `return dpo_fail(...)`
 * reads naturally. */
int dpo_fail(dpo_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "context: " to an existing message. */
int dpo_error_prefix(dpo_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dpo_error_clear(dpo_error *err);

/* ---------------------------------------------------------------- logging */

typedef enum { DPO_LOG_QUIET = 0, DPO_LOG_NORMAL = 1, DPO_LOG_VERBOSE = 2 } dpo_log_level;

/* The level is owned by the process's main (set once from --quiet/--verbose). */
void dpo_log_set_level(dpo_log_level level);
dpo_log_level dpo_log_get_level(void);
void dpo_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dpo_log_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Warnings are shown even under --quiet: they mean something was skipped. */
void dpo_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --------------------------------------------------------------- progress */

/* Long work reports through a progress: a redrawn bar on a TTY (done/total,
 * rate, ETA), plain lines at most every 10% or 10 s otherwise, nothing under
 * --quiet. Output goes to stderr so stdout stays machine-readable. */
typedef struct {
  char label[64];
  char unit[16];
  uint64_t total;
  uint64_t done;
  double start_time;
  double last_draw_time;
  uint64_t last_line_done;
  int is_tty;
  int enabled;
  FILE *stream;
} dpo_progress;

double dpo_now_seconds(void);
void dpo_progress_begin(dpo_progress *p, const char *label, uint64_t total, const char *unit);
void dpo_progress_advance(dpo_progress *p, uint64_t n);
void dpo_progress_end(dpo_progress *p);
/* Formats the status line for `now` into buf (exposed for tests). */
void dpo_progress_format(const dpo_progress *p, double now, int bar_width, char *buf, size_t n);
/* "1:02:03", "4:05", or "?" for an unknown duration. */
void dpo_format_duration(double seconds, char *buf, size_t n);

/* ------------------------------------------------------------------ files */

/* Reads a whole file, refusing anything larger than max_bytes. The buffer is
 * NUL-terminated (not counted in *len) and freed by the caller. */
int dpo_read_file(const char *path, size_t max_bytes, char **data, size_t *len, dpo_error *err);

/* Atomic writes: data goes to a temporary name beside the target, is fsynced,
 * renamed over the target, and the directory is fsynced. A reader sees the old
 * file or the complete new one, never a partial one. */
typedef struct {
  char path[4096];
  char tmp_path[4096];
  FILE *fp;
} dpo_atomic_file;

int dpo_atomic_open(dpo_atomic_file *af, const char *path, dpo_error *err);
/* Flushes, fsyncs, renames; on failure the temporary file is removed. */
int dpo_atomic_commit(dpo_atomic_file *af, dpo_error *err);
/* Drops the temporary file; the target is untouched. Safe to call twice. */
void dpo_atomic_abort(dpo_atomic_file *af);
int dpo_atomic_write(const char *path, const void *data, size_t n, dpo_error *err);
/* Creates a directory and its parents (like mkdir -p). */
int dpo_mkdir_p(const char *path, dpo_error *err);
/* fsyncs a directory so that a rename inside it is durable. */
int dpo_fsync_dir(const char *dir, dpo_error *err);

/* ----------------------------------------------------------------- SHA-256 */

/* FIPS 180-4 SHA-256, for content hashes of images and imported files (the
 * allowed libraries have none; this is small and checked against the
 * standard's test vectors). */
typedef struct {
  uint32_t state[8];
  uint64_t length;       /* bytes hashed so far */
  uint8_t block[64];
  size_t block_used;
} dpo_sha256;

void dpo_sha256_init(dpo_sha256 *h);
void dpo_sha256_update(dpo_sha256 *h, const void *data, size_t n);
void dpo_sha256_final(dpo_sha256 *h, uint8_t digest[32]);
/* Lower-case hex digest (65 bytes with the NUL) of a buffer or a whole file. */
void dpo_sha256_hex(const void *data, size_t n, char hex[65]);
int dpo_sha256_file(const char *path, char hex[65], dpo_error *err);

/* ------------------------------------------------------------------- JSON */

/* Parses a JSON file (at most max_bytes); errors read "path:line:column: ...". */
json_t *dpo_json_load_file(const char *path, size_t max_bytes, dpo_error *err);
/* Parses a JSON text; `where` names its origin ("pairs.jsonl:12") in errors. */
json_t *dpo_json_parse(const char *text, size_t len, const char *where, dpo_error *err);
/* Typed member lookups: a missing key or a wrong type fails with `where` and
 * the key in the message. The _opt forms leave *out alone when the key is
 * absent or null and return DPO_OK. */
int dpo_json_get_string(const json_t *obj, const char *key, const char **out, const char *where, dpo_error *err);
int dpo_json_get_int(const json_t *obj, const char *key, int64_t *out, const char *where, dpo_error *err);
int dpo_json_get_number(const json_t *obj, const char *key, double *out, const char *where, dpo_error *err);
int dpo_json_get_bool(const json_t *obj, const char *key, int *out, const char *where, dpo_error *err);
int dpo_json_get_string_opt(const json_t *obj, const char *key, const char **out, const char *where, dpo_error *err);
int dpo_json_get_int_opt(const json_t *obj, const char *key, int64_t *out, const char *where, dpo_error *err);
int dpo_json_get_number_opt(const json_t *obj, const char *key, double *out, const char *where, dpo_error *err);
int dpo_json_get_bool_opt(const json_t *obj, const char *key, int *out, const char *where, dpo_error *err);
/* Writes a JSON value atomically (sorted keys, 2-space indent, final newline). */
int dpo_json_write_file(const char *path, const json_t *value, dpo_error *err);

/* -------------------------------------------------------------------- RNG */

/* Philox4x32-10 (Salmon et al. 2011, Random123): a counter-based generator, so
 * the value at (seed, stream, index) does not depend on what was drawn before
 * or on the backend; CUDA kernels implement the same function. */
void dpo_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* Block b of stream s under seed k: counter = (b_lo, b_hi, s_lo, s_hi),
 * key = (k_lo, k_hi). Element i of a stream lives in block i / 4, word i % 4. */
uint32_t dpo_rng_u32(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform in (0, 1]: never 0, so that log() is safe. */
float dpo_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Fills out[0..n) with elements offset..offset+n of a stream, uniform (0, 1]. */
void dpo_rng_uniform_fill(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n);
/* Standard normals by Box-Muller: normal i uses the uniform words of block i/2
 * ((w0, w1) for even i, (w2, w3) for odd i) and takes the cosine branch, so
 * each normal is a pure function of (seed, stream, i). */
float dpo_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
void dpo_rng_normal_fill(uint64_t seed, uint64_t stream, uint64_t offset, float *out, size_t n);
/* A stream id derived from a string and integers (e.g. prompt id, image index),
 * FNV-1a over the bytes: how the project turns names into independent streams. */
uint64_t dpo_rng_stream_id(const char *name, uint64_t a, uint64_t b);

/* A sequential generator over one stream, for code that draws many values. */
typedef struct {
  uint64_t seed;
  uint64_t stream;
  uint64_t index;
} dpo_rng;

void dpo_rng_init(dpo_rng *rng, uint64_t seed, uint64_t stream);
uint32_t dpo_rng_next_u32(dpo_rng *rng);
float dpo_rng_next_uniform(dpo_rng *rng);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint32_t dpo_rng_next_below(dpo_rng *rng, uint32_t n);
float dpo_rng_next_normal(dpo_rng *rng);

/* ------------------------------------------------------------ safetensors */

/* The safetensors format: an 8-byte little-endian header length N, N bytes of
 * JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {str: str}}, then the data buffer. Offsets are relative to the buffer. */
typedef enum {
  DPO_DTYPE_F32 = 0,
  DPO_DTYPE_F16,
  DPO_DTYPE_BF16,
  DPO_DTYPE_F64,
  DPO_DTYPE_I64,
  DPO_DTYPE_I32,
  DPO_DTYPE_U8,
  DPO_DTYPE_BOOL,
  DPO_DTYPE_COUNT
} dpo_dtype;

const char *dpo_dtype_name(dpo_dtype dtype);   /* "F32", "BF16", ... */
int dpo_dtype_from_name(const char *name, dpo_dtype *out);
size_t dpo_dtype_size(dpo_dtype dtype);

#define DPO_ST_MAX_DIMS 8
/* Largest header accepted: the reference implementation's limit (100 MB). */
#define DPO_ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

typedef struct {
  char *name;
  dpo_dtype dtype;
  int ndim;
  int64_t shape[DPO_ST_MAX_DIMS];
  int64_t numel;
  const uint8_t *data;   /* points into the mapping (reader) or caller memory (writer) */
  size_t nbytes;
} dpo_tensor_view;

typedef struct {
  uint8_t *map;          /* the whole file, mmapped read-only (or a caller buffer) */
  size_t map_size;
  int owns_map;
  dpo_tensor_view *tensors;   /* in file order of data_offsets */
  int n_tensors;
  char **meta_keys;      /* __metadata__, in header order */
  char **meta_values;
  int n_meta;
  char path[1024];
} dpo_safetensors;

/* Opens and validates a file: header length bound, well-formed JSON, known
 * dtypes, shape x dtype size = byte length, offsets in range, contiguous and
 * non-overlapping from 0 to the end of the buffer, no duplicate names. */
int dpo_st_open(dpo_safetensors *st, const char *path, dpo_error *err);
/* The same checks over bytes in memory (not copied; must outlive st). `where`
 * names the origin in errors. */
int dpo_st_parse(dpo_safetensors *st, const uint8_t *data, size_t size, const char *where, dpo_error *err);
void dpo_st_close(dpo_safetensors *st);
const dpo_tensor_view *dpo_st_find(const dpo_safetensors *st, const char *name);
const char *dpo_st_meta(const dpo_safetensors *st, const char *key);
/* Converts a F32/F16/BF16/F64 tensor to float32 into out (numel floats). */
int dpo_st_to_f32(const dpo_tensor_view *t, float *out, dpo_error *err);

/* Writer: collects tensors (data is borrowed until write), then writes the
 * file atomically, byte for byte as the Python package (safetensors 0.4.5)
 * writes the same tensors: data sorted by dtype, widest first (I64, F64, F32,
 * I32, BF16, F16, U8, BOOL), then by name, so each tensor is aligned to its
 * element size; header "__metadata__" first (keys sorted, which the package
 * leaves to hash order), then the tensors in data order, padded with spaces
 * to a multiple of 8. */
typedef struct {
  dpo_tensor_view *tensors;
  int n_tensors;
  int cap_tensors;
  char **meta_keys;
  char **meta_values;
  int n_meta;
  int cap_meta;
} dpo_st_writer;

void dpo_st_writer_init(dpo_st_writer *w);
int dpo_st_writer_add(dpo_st_writer *w, const char *name, dpo_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, dpo_error *err);
int dpo_st_writer_meta(dpo_st_writer *w, const char *key, const char *value, dpo_error *err);
int dpo_st_writer_write(dpo_st_writer *w, const char *path, dpo_error *err);
void dpo_st_writer_free(dpo_st_writer *w);

/* f32 <-> f16/bf16 conversions (round to nearest even), shared by backends. */
float dpo_f16_to_f32(uint16_t h);
uint16_t dpo_f32_to_f16(float f);
float dpo_bf16_to_f32(uint16_t b);
uint16_t dpo_f32_to_bf16(float f);

/* ----------------------------------------------------------------- images */

/* Largest image accepted from a file: 16384 on a side and 64 Mpixel. */
#define DPO_IMAGE_MAX_SIDE 16384
#define DPO_IMAGE_MAX_PIXELS (64u * 1024u * 1024u)
#define DPO_IMAGE_MAX_TEXT 32

/* 8-bit interleaved pixels, row-major, `channels` of 1 (gray), 3 (RGB) or 4 (RGBA). */
typedef struct {
  int width;
  int height;
  int channels;
  uint8_t *pixels;
} dpo_image;

typedef struct {
  char *key;
  char *value;
} dpo_image_text;

typedef enum { DPO_IMAGE_FORMAT_UNKNOWN = 0, DPO_IMAGE_FORMAT_PNG, DPO_IMAGE_FORMAT_JPEG } dpo_image_format;

/* Decides by magic bytes, never by file name. */
dpo_image_format dpo_image_detect(const uint8_t *data, size_t size);
/* Reads PNG or JPEG from a file or memory. Converts to the requested channels
 * (0 keeps the file's; 3 drops alpha and expands gray; 4 adds opaque alpha;
 * 1 takes luma). 16-bit PNGs are reduced to 8 bits and palettes expanded. */
int dpo_image_read(const char *path, int want_channels, dpo_image *img, dpo_error *err);
int dpo_image_decode(const uint8_t *data, size_t size, const char *where, int want_channels,
                     dpo_image *img, dpo_error *err);
/* PNG text chunks (tEXt/iTXt/zTXt) of a PNG file, for run-folder metadata;
 * *texts is freed with dpo_image_texts_free. */
int dpo_png_read_texts(const char *path, dpo_image_text **texts, int *n, dpo_error *err);
/* The same over PNG bytes in memory; `where` names the origin in errors. */
int dpo_png_decode_texts(const uint8_t *data, size_t size, const char *where, dpo_image_text **texts,
                         int *n, dpo_error *err);
void dpo_image_texts_free(dpo_image_text *texts, int n);
/* Writes an 8-bit PNG atomically with optional text chunks (UTF-8, iTXt). */
int dpo_png_write(const char *path, const dpo_image *img, const dpo_image_text *texts, int n_texts,
                  dpo_error *err);
/* Encodes a PNG into a malloc'd buffer (for HTTP scorers and data URIs). */
int dpo_png_encode(const dpo_image *img, const dpo_image_text *texts, int n_texts, uint8_t **out,
                   size_t *out_size, dpo_error *err);
int dpo_image_alloc(dpo_image *img, int width, int height, int channels, dpo_error *err);
void dpo_image_free(dpo_image *img);

#endif
