/* safetensors reader and writer.
 *
 * Reader: the file is mmapped (or a caller's buffer is used as is) and the
 * header is checked as strictly as the reference implementation checks it:
 * the tensors must tile the data buffer exactly, from 0 to its end, without
 * gaps or overlaps, and each tensor's byte length must equal its shape times
 * its dtype size. Every failure names the file, the tensor or the byte offset
 * in the file, and what was expected.
 *
 * Writer: produces the same bytes as the Python package (safetensors 0.4.5,
 * Rust `serialize`) for the same tensors: data sorted by dtype in descending
 * order of the reference's Dtype enum (I64, F64, F32, I32, BF16, F16, U8,
 * BOOL: largest alignment first, so every tensor is aligned to its element
 * size in an 8-byte aligned buffer), then by name; the header lists
 * "__metadata__" first and then the tensors in data order, compact JSON
 * escaped as serde_json escapes it, padded with spaces to a multiple of 8.
 * The one difference: the reference writes metadata keys in hash order, we
 * sort them, so that our output is deterministic. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ dtypes */

typedef struct {
  const char *name;
  size_t size;
  int layout_rank;   /* position in the reference's Dtype enum; larger is laid out first */
} dtype_info;

static const dtype_info DTYPES[DPO_DTYPE_COUNT] = {
    [DPO_DTYPE_F32] = {"F32", 4, 11},  [DPO_DTYPE_F16] = {"F16", 2, 7},
    [DPO_DTYPE_BF16] = {"BF16", 2, 8}, [DPO_DTYPE_F64] = {"F64", 8, 12},
    [DPO_DTYPE_I64] = {"I64", 8, 13},  [DPO_DTYPE_I32] = {"I32", 4, 9},
    [DPO_DTYPE_U8] = {"U8", 1, 1},     [DPO_DTYPE_BOOL] = {"BOOL", 1, 0},
};

const char *dpo_dtype_name(dpo_dtype dtype) {
  if ((unsigned)dtype >= DPO_DTYPE_COUNT) return "?";
  return DTYPES[dtype].name;
}

int dpo_dtype_from_name(const char *name, dpo_dtype *out) {
  for (int i = 0; i < DPO_DTYPE_COUNT; i++) {
    if (strcmp(name, DTYPES[i].name) == 0) {
      *out = (dpo_dtype)i;
      return DPO_OK;
    }
  }
  return DPO_ERR_DATA;
}

size_t dpo_dtype_size(dpo_dtype dtype) {
  if ((unsigned)dtype >= DPO_DTYPE_COUNT) return 0;
  return DTYPES[dtype].size;
}

/* Multiplies the dimensions and the element size, refusing any product that
 * would not fit in int64 (and so in the offsets of a file). */
static int shape_sizes(int ndim, const int64_t *shape, size_t dtype_size, int64_t *numel, size_t *nbytes) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
    n *= shape[i];
  }
  if (n > INT64_MAX / (int64_t)dtype_size) return -1;
  if ((uint64_t)n * dtype_size > SIZE_MAX) return -1;
  *numel = n;
  *nbytes = (size_t)((uint64_t)n * dtype_size);
  return 0;
}

static void format_shape(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

/* ------------------------------------------------------------------ reader */

/* A tensor while its header entry is checked: the view plus its offsets. */
typedef struct {
  dpo_tensor_view view;
  uint64_t begin;
  uint64_t end;
} parsed_tensor;

static uint64_t read_u64_le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Reads a JSON array of non-negative integers into out (at most max). */
static int read_index_list(const json_t *array, int64_t *out, size_t max, size_t *count) {
  if (!json_is_array(array) || json_array_size(array) > max) return -1;
  for (size_t i = 0; i < json_array_size(array); i++) {
    const json_t *v = json_array_get(array, i);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    out[i] = (int64_t)json_integer_value(v);
  }
  *count = json_array_size(array);
  return 0;
}

static int parse_shape(const json_t *entry, dpo_tensor_view *t, const char *where, dpo_error *err) {
  const json_t *shape = json_object_get(entry, "shape");
  if (!shape) return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": missing \"shape\"", where, t->name);
  if (json_is_array(shape) && json_array_size(shape) > DPO_ST_MAX_DIMS)
    return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": shape has %zu dimensions, more than the limit of %d",
                    where, t->name, json_array_size(shape), DPO_ST_MAX_DIMS);
  size_t ndim;
  if (read_index_list(shape, t->shape, DPO_ST_MAX_DIMS, &ndim) != 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": shape must be a list of non-negative integers",
                    where, t->name);
  t->ndim = (int)ndim;
  if (shape_sizes(t->ndim, t->shape, dpo_dtype_size(t->dtype), &t->numel, &t->nbytes) != 0) {
    char text[256];
    format_shape(t->ndim, t->shape, text, sizeof text);
    return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": shape %s of %s overflows the size of a tensor",
                    where, t->name, text, dpo_dtype_name(t->dtype));
  }
  return DPO_OK;
}

/* Checks one {"dtype", "shape", "data_offsets"} entry against a data buffer
 * of buffer_size bytes that starts at file byte data_start. */
static int parse_tensor_entry(const json_t *entry, parsed_tensor *p, uint64_t buffer_size, uint64_t data_start,
                              const char *where, dpo_error *err) {
  dpo_tensor_view *t = &p->view;
  if (!json_is_object(entry))
    return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": expected an object with dtype, shape and data_offsets",
                    where, t->name);
  const json_t *dtype = json_object_get(entry, "dtype");
  if (!json_is_string(dtype))
    return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": \"dtype\" must be a string", where, t->name);
  if (dpo_dtype_from_name(json_string_value(dtype), &t->dtype) != DPO_OK)
    return dpo_fail(err, DPO_ERR_DATA,
                    "%s: tensor \"%s\": unsupported dtype \"%.64s\" (expected one of F32, F16, BF16, F64, I64, "
                    "I32, U8, BOOL)", where, t->name, json_string_value(dtype));
  if (parse_shape(entry, t, where, err)) return DPO_ERR_DATA;

  int64_t offsets[2];
  size_t count = 0;
  if (read_index_list(json_object_get(entry, "data_offsets"), offsets, 2, &count) != 0 || count != 2)
    return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": data_offsets must be [begin, end], two non-negative integers",
                    where, t->name);
  p->begin = (uint64_t)offsets[0];
  p->end = (uint64_t)offsets[1];
  if (p->begin > p->end)
    return dpo_fail(err, DPO_ERR_DATA, "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 "]: begin is after end",
                    where, t->name, p->begin, p->end);
  if (p->end > buffer_size)
    return dpo_fail(err, DPO_ERR_DATA,
                    "%s: tensor \"%s\": data_offsets end %" PRIu64 " (file byte %" PRIu64 ") is beyond the data "
                    "buffer of %" PRIu64 " bytes (the file ends at byte %" PRIu64 ")",
                    where, t->name, p->end, data_start + p->end, buffer_size, data_start + buffer_size);
  if (p->end - p->begin != t->nbytes) {
    char text[256];
    format_shape(t->ndim, t->shape, text, sizeof text);
    return dpo_fail(err, DPO_ERR_DATA,
                    "%s: tensor \"%s\": shape %s of %s needs %zu bytes but data_offsets [%" PRIu64 ", %" PRIu64
                    "] span %" PRIu64, where, t->name, text, dpo_dtype_name(t->dtype), t->nbytes, p->begin, p->end,
                    p->end - p->begin);
  }
  return DPO_OK;
}

static int parse_metadata(dpo_safetensors *st, const json_t *meta, const char *where, dpo_error *err) {
  if (!json_is_object(meta))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"__metadata__\" must be an object of strings", where);
  size_t n = json_object_size(meta);
  st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
  st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
  if (!st->meta_keys || !st->meta_values) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  for (void *it = json_object_iter((json_t *)meta); it; it = json_object_iter_next((json_t *)meta, it)) {
    const char *key = json_object_iter_key(it);
    const json_t *value = json_object_iter_value(it);
    if (!json_is_string(value))
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"__metadata__\" key \"%s\": value must be a string", where, key);
    /* jansson refuses NUL in keys but, with JSON_ALLOW_NUL, not in values. */
    if (json_string_length(value) != strlen(json_string_value(value)))
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"__metadata__\" key \"%s\": contains a NUL character", where, key);
    st->meta_keys[st->n_meta] = strdup(key);
    st->meta_values[st->n_meta] = strdup(json_string_value(value));
    st->n_meta++;
    if (!st->meta_keys[st->n_meta - 1] || !st->meta_values[st->n_meta - 1])
      return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  }
  return DPO_OK;
}

/* Data order; zero-size tensors sharing an offset go first, then by name, so
 * that the order is the same on every platform. */
static int compare_by_offsets(const void *a, const void *b) {
  const parsed_tensor *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return strcmp(x->view.name, y->view.name);
}

/* The tensors, sorted by offsets, must tile [0, buffer_size) exactly. */
static int check_tiling(const parsed_tensor *p, int n, uint64_t buffer_size, uint64_t data_start,
                        const char *where, dpo_error *err) {
  uint64_t covered = 0;
  for (int i = 0; i < n; i++) {
    if (p[i].begin > covered)
      return dpo_fail(err, DPO_ERR_DATA,
                      "%s: tensor \"%s\" begins at data byte %" PRIu64 " (file byte %" PRIu64 ") but the tensors "
                      "before it end at data byte %" PRIu64 ": expected contiguous tensors without gaps",
                      where, p[i].view.name, p[i].begin, data_start + p[i].begin, covered);
    if (p[i].begin < covered)
      return dpo_fail(err, DPO_ERR_DATA,
                      "%s: tensor \"%s\" (data bytes %" PRIu64 "..%" PRIu64 ", file byte %" PRIu64 ") overlaps "
                      "tensor \"%s\", which ends at data byte %" PRIu64 ": expected non-overlapping tensors",
                      where, p[i].view.name, p[i].begin, p[i].end, data_start + p[i].begin, p[i - 1].view.name,
                      covered);
    covered = p[i].end;
  }
  if (covered != buffer_size)
    return dpo_fail(err, DPO_ERR_DATA,
                    "%s: the tensors cover %" PRIu64 " of the %" PRIu64 " data bytes: %" PRIu64 " unused bytes "
                    "from file byte %" PRIu64 " to the end (expected the tensors to cover the buffer exactly)",
                    where, covered, buffer_size, buffer_size - covered, data_start + covered);
  return DPO_OK;
}

/* Parses the header object into st; on failure the caller closes st. */
static int parse_header(dpo_safetensors *st, const json_t *root, const uint8_t *buffer, uint64_t buffer_size,
                        uint64_t data_start, const char *where, dpo_error *err) {
  size_t n_entries = json_object_size(root);
  parsed_tensor *parsed = calloc(n_entries ? n_entries : 1, sizeof *parsed);
  if (!parsed) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory for %zu tensors", where, n_entries);
  int n = 0, rc = DPO_OK;
  for (void *it = json_object_iter((json_t *)root); it && rc == DPO_OK;
       it = json_object_iter_next((json_t *)root, it)) {
    const char *key = json_object_iter_key(it);
    if (strcmp(key, "__metadata__") == 0) {
      rc = parse_metadata(st, json_object_iter_value(it), where, err);
    } else {
      parsed[n].view.name = strdup(key);
      if (!parsed[n].view.name) {
        rc = dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
        break;
      }
      n++;
      rc = parse_tensor_entry(json_object_iter_value(it), &parsed[n - 1], buffer_size, data_start, where, err);
    }
  }
  if (rc == DPO_OK) {
    qsort(parsed, (size_t)n, sizeof *parsed, compare_by_offsets);
    rc = check_tiling(parsed, n, buffer_size, data_start, where, err);
  }
  st->tensors = calloc(n ? (size_t)n : 1, sizeof *st->tensors);
  if (!st->tensors) {
    for (int i = 0; i < n; i++) free(parsed[i].view.name);
    free(parsed);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", where);
  }
  /* The names move into st even on failure, so that dpo_st_close frees them. */
  for (int i = 0; i < n; i++) {
    st->tensors[i] = parsed[i].view;
    st->tensors[i].data = buffer + parsed[i].begin;
  }
  st->n_tensors = n;
  free(parsed);
  return rc;
}

int dpo_st_parse(dpo_safetensors *st, const uint8_t *data, size_t size, const char *where, dpo_error *err) {
  memset(st, 0, sizeof *st);
  snprintf(st->path, sizeof st->path, "%s", where);
  st->map = (uint8_t *)data;
  st->map_size = size;
  if (size < 8)
    return dpo_fail(err, DPO_ERR_DATA, "%s: file is %zu bytes, shorter than the 8-byte header length", where, size);
  uint64_t header_len = read_u64_le(data);
  if (header_len > DPO_ST_MAX_HEADER_BYTES)
    return dpo_fail(err, DPO_ERR_DATA, "%s: byte 0: header length %" PRIu64 " exceeds the limit of %u bytes",
                    where, header_len, DPO_ST_MAX_HEADER_BYTES);
  if (header_len > size - 8)
    return dpo_fail(err, DPO_ERR_DATA,
                    "%s: byte 0: header length %" PRIu64 " runs past the end of the file (%zu bytes, so at most %zu)",
                    where, header_len, size, size - 8);
  char header_where[1100];
  snprintf(header_where, sizeof header_where, "%s: header", where);
  json_t *root = dpo_json_parse((const char *)data + 8, (size_t)header_len, header_where, err);
  if (!root) {
    size_t used = strlen(err ? err->msg : "");
    if (err && used < sizeof err->msg)
      snprintf(err->msg + used, sizeof err->msg - used, " (the header starts at file byte 8)");
    return DPO_ERR_DATA;
  }
  int rc;
  if (!json_is_object(root))
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: byte 8: the header must be a JSON object", where);
  else
    rc = parse_header(st, root, data + 8 + header_len, size - 8 - header_len, 8 + header_len, where, err);
  json_decref(root);
  if (rc != DPO_OK) dpo_st_close(st);
  return rc;
}

int dpo_st_open(dpo_safetensors *st, const char *path, dpo_error *err) {
  memset(st, 0, sizeof *st);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open: %s", path, strerror(errno));
  struct stat info;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    close(fd);
    return dpo_fail(err, DPO_ERR_DATA, "%s: not a regular file", path);
  }
  size_t size = (size_t)info.st_size;
  if (size < 8) {
    close(fd);
    return dpo_fail(err, DPO_ERR_DATA, "%s: file is %zu bytes, shorter than the 8-byte header length", path, size);
  }
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int saved = errno;
  close(fd);   /* the mapping stays valid without the descriptor */
  if (map == MAP_FAILED) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot mmap: %s", path, strerror(saved));
  int rc = dpo_st_parse(st, map, size, path, err);
  if (rc != DPO_OK) {
    munmap(map, size);
    memset(st, 0, sizeof *st);
    return rc;
  }
  st->owns_map = 1;
  return DPO_OK;
}

void dpo_st_close(dpo_safetensors *st) {
  for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
  free(st->tensors);
  for (int i = 0; i < st->n_meta; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->meta_keys);
  free(st->meta_values);
  if (st->owns_map && st->map) munmap(st->map, st->map_size);
  memset(st, 0, sizeof *st);
}

const dpo_tensor_view *dpo_st_find(const dpo_safetensors *st, const char *name) {
  for (int i = 0; i < st->n_tensors; i++)
    if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
  return NULL;
}

const char *dpo_st_meta(const dpo_safetensors *st, const char *key) {
  for (int i = 0; i < st->n_meta; i++)
    if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
  return NULL;
}

/* Data in a mapping is only as aligned as the file made it: read bytes. */
static uint16_t load_u16_le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t load_u32_le(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

int dpo_st_to_f32(const dpo_tensor_view *t, float *out, dpo_error *err) {
  const uint8_t *p = t->data;
  switch (t->dtype) {
    case DPO_DTYPE_F32:
      /* Compilers turn the byte assembly into plain loads on little-endian hosts. */
      for (int64_t i = 0; i < t->numel; i++) {
        uint32_t bits = load_u32_le(p + 4 * i);
        memcpy(&out[i], &bits, sizeof bits);
      }
      return DPO_OK;
    case DPO_DTYPE_F16:
      for (int64_t i = 0; i < t->numel; i++) out[i] = dpo_f16_to_f32(load_u16_le(p + 2 * i));
      return DPO_OK;
    case DPO_DTYPE_BF16:
      for (int64_t i = 0; i < t->numel; i++) out[i] = dpo_bf16_to_f32(load_u16_le(p + 2 * i));
      return DPO_OK;
    case DPO_DTYPE_F64:
      for (int64_t i = 0; i < t->numel; i++) {
        uint64_t bits = read_u64_le(p + 8 * i);
        double d;
        memcpy(&d, &bits, sizeof d);
        out[i] = (float)d;   /* round to nearest even, overflow to infinity */
      }
      return DPO_OK;
    default:
      return dpo_fail(err, DPO_ERR_DATA, "tensor \"%s\": dtype %s cannot be converted to F32 (expected F32, F16, "
                      "BF16 or F64)", t->name, dpo_dtype_name(t->dtype));
  }
}

/* ------------------------------------------------------------------ writer */

void dpo_st_writer_init(dpo_st_writer *w) { memset(w, 0, sizeof *w); }

void dpo_st_writer_free(dpo_st_writer *w) {
  for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
  free(w->tensors);
  for (int i = 0; i < w->n_meta; i++) {
    free(w->meta_keys[i]);
    free(w->meta_values[i]);
  }
  free(w->meta_keys);
  free(w->meta_values);
  memset(w, 0, sizeof *w);
}

/* Names and metadata go into JSON, so they must be valid UTF-8; jansson's
 * string constructor is the check. */
static int is_valid_utf8(const char *s) {
  json_t *j = json_string(s);
  json_decref(j);
  return j != NULL;
}

int dpo_st_writer_add(dpo_st_writer *w, const char *name, dpo_dtype dtype, int ndim, const int64_t *shape,
                      const void *data, dpo_error *err) {
  if (!name || !is_valid_utf8(name) || strcmp(name, "__metadata__") == 0)
    return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: tensor name \"%s\" is not allowed (expected UTF-8, "
                    "not \"__metadata__\")", name ? name : "(null)");
  for (int i = 0; i < w->n_tensors; i++)
    if (strcmp(w->tensors[i].name, name) == 0)
      return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: tensor \"%s\" added twice", name);
  if ((unsigned)dtype >= DPO_DTYPE_COUNT)
    return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: tensor \"%s\": unknown dtype %d", name, (int)dtype);
  if (ndim < 0 || ndim > DPO_ST_MAX_DIMS || (ndim > 0 && !shape))
    return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: tensor \"%s\": %d dimensions (expected 0 to %d)", name,
                    ndim, DPO_ST_MAX_DIMS);
  dpo_tensor_view t = {0};
  t.dtype = dtype;
  t.ndim = ndim;
  for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
  if (shape_sizes(ndim, t.shape, dpo_dtype_size(dtype), &t.numel, &t.nbytes) != 0)
    return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: tensor \"%s\": shape has a negative dimension or "
                    "overflows", name);
  if (t.nbytes > 0 && !data)
    return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: tensor \"%s\": no data", name);
  t.data = data;
  if (w->n_tensors == w->cap_tensors) {
    int cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
    dpo_tensor_view *grown = realloc(w->tensors, (size_t)cap * sizeof *grown);
    if (!grown) return dpo_fail(err, DPO_ERR_DATA, "safetensors writer: out of memory");
    w->tensors = grown;
    w->cap_tensors = cap;
  }
  t.name = strdup(name);
  if (!t.name) return dpo_fail(err, DPO_ERR_DATA, "safetensors writer: out of memory");
  w->tensors[w->n_tensors++] = t;
  return DPO_OK;
}

int dpo_st_writer_meta(dpo_st_writer *w, const char *key, const char *value, dpo_error *err) {
  if (!key || !value || !is_valid_utf8(key) || !is_valid_utf8(value))
    return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: metadata \"%s\" must be a UTF-8 key and value",
                    key ? key : "(null)");
  for (int i = 0; i < w->n_meta; i++)
    if (strcmp(w->meta_keys[i], key) == 0)
      return dpo_fail(err, DPO_ERR_USAGE, "safetensors writer: metadata key \"%s\" set twice", key);
  if (w->n_meta == w->cap_meta) {
    int cap = w->cap_meta ? 2 * w->cap_meta : 8;
    char **keys = realloc(w->meta_keys, (size_t)cap * sizeof *keys);
    if (keys) w->meta_keys = keys;
    char **values = realloc(w->meta_values, (size_t)cap * sizeof *values);
    if (values) w->meta_values = values;
    if (!keys || !values) return dpo_fail(err, DPO_ERR_DATA, "safetensors writer: out of memory");
    w->cap_meta = cap;
  }
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return dpo_fail(err, DPO_ERR_DATA, "safetensors writer: out of memory");
  }
  w->meta_keys[w->n_meta] = k;
  w->meta_values[w->n_meta] = v;
  w->n_meta++;
  return DPO_OK;
}

/* A growing text buffer for the header; `failed` remembers an allocation
 * failure so that the appends need no checks of their own. */
typedef struct {
  char *text;
  size_t len;
  size_t cap;
  int failed;
} text_buffer;

static void text_append(text_buffer *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *grown = realloc(b->text, cap);
    if (!grown) {
      b->failed = 1;
      return;
    }
    b->text = grown;
    b->cap = cap;
  }
  memcpy(b->text + b->len, s, n);
  b->len += n;
  b->text[b->len] = '\0';
}

static void text_append_str(text_buffer *b, const char *s) { text_append(b, s, strlen(s)); }

/* A JSON string escaped as serde_json does: \" \\ \b \f \n \r \t, other
 * control characters as \u00xx in lower case, everything else (UTF-8 and
 * DEL included) as is. */
static void text_append_json_string(text_buffer *b, const char *s) {
  text_append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    switch (*p) {
      case '"': text_append(b, "\\\"", 2); break;
      case '\\': text_append(b, "\\\\", 2); break;
      case '\b': text_append(b, "\\b", 2); break;
      case '\f': text_append(b, "\\f", 2); break;
      case '\n': text_append(b, "\\n", 2); break;
      case '\r': text_append(b, "\\r", 2); break;
      case '\t': text_append(b, "\\t", 2); break;
      default:
        if (*p < 0x20) {
          snprintf(esc, sizeof esc, "\\u%04x", *p);
          text_append(b, esc, 6);
        } else {
          text_append(b, (const char *)p, 1);
        }
    }
  }
  text_append(b, "\"", 1);
}

/* Layout order of the reference writer: larger dtype rank first, then name. */
static int compare_layout(const void *a, const void *b) {
  const dpo_tensor_view *x = *(const dpo_tensor_view *const *)a, *y = *(const dpo_tensor_view *const *)b;
  int rx = DTYPES[x->dtype].layout_rank, ry = DTYPES[y->dtype].layout_rank;
  if (rx != ry) return ry - rx;
  return strcmp(x->name, y->name);
}

typedef struct {
  const char *key;
  const char *value;
} meta_entry;

static int compare_meta(const void *a, const void *b) {
  return strcmp(((const meta_entry *)a)->key, ((const meta_entry *)b)->key);
}

/* "__metadata__":{...} with the keys sorted, so that the file is deterministic. */
static void append_metadata(text_buffer *b, const dpo_st_writer *w) {
  meta_entry *entries = malloc((size_t)w->n_meta * sizeof *entries);
  if (!entries) {
    b->failed = 1;
    return;
  }
  for (int i = 0; i < w->n_meta; i++) entries[i] = (meta_entry){w->meta_keys[i], w->meta_values[i]};
  qsort(entries, (size_t)w->n_meta, sizeof *entries, compare_meta);
  text_append_str(b, "\"__metadata__\":{");
  for (int i = 0; i < w->n_meta; i++) {
    if (i) text_append(b, ",", 1);
    text_append_json_string(b, entries[i].key);
    text_append(b, ":", 1);
    text_append_json_string(b, entries[i].value);
  }
  text_append(b, "}", 1);
  free(entries);
}

/* Builds the padded header for the tensors in `order`. */
static int build_header(const dpo_st_writer *w, const dpo_tensor_view *const *order, text_buffer *b) {
  char number[64];
  uint64_t offset = 0;
  text_append(b, "{", 1);
  if (w->n_meta > 0) append_metadata(b, w);
  for (int k = 0; k < w->n_tensors; k++) {
    const dpo_tensor_view *t = order[k];
    if (k || w->n_meta > 0) text_append(b, ",", 1);
    text_append_json_string(b, t->name);
    text_append_str(b, ":{\"dtype\":\"");
    text_append_str(b, dpo_dtype_name(t->dtype));
    text_append_str(b, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      snprintf(number, sizeof number, "%s%" PRId64, d ? "," : "", t->shape[d]);
      text_append_str(b, number);
    }
    snprintf(number, sizeof number, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + t->nbytes);
    text_append_str(b, number);
    offset += t->nbytes;
  }
  text_append(b, "}", 1);
  while (!b->failed && b->len % 8 != 0) text_append(b, " ", 1);
  return b->failed ? -1 : 0;
}

int dpo_st_writer_write(dpo_st_writer *w, const char *path, dpo_error *err) {
  const dpo_tensor_view **order = malloc((size_t)(w->n_tensors ? w->n_tensors : 1) * sizeof *order);
  if (!order) return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory", path);
  for (int i = 0; i < w->n_tensors; i++) order[i] = &w->tensors[i];
  qsort(order, (size_t)w->n_tensors, sizeof *order, compare_layout);
  text_buffer header = {0};
  if (build_header(w, order, &header) != 0) {
    free(order);
    free(header.text);
    return dpo_fail(err, DPO_ERR_DATA, "%s: out of memory for the header", path);
  }
  uint8_t length[8];
  for (int i = 0; i < 8; i++) length[i] = (uint8_t)((uint64_t)header.len >> (8 * i));

  dpo_atomic_file af;
  int rc = dpo_atomic_open(&af, path, err);
  if (rc == DPO_OK) {
    int ok = fwrite(length, 1, 8, af.fp) == 8 && fwrite(header.text, 1, header.len, af.fp) == header.len;
    for (int k = 0; ok && k < w->n_tensors; k++) {
      const dpo_tensor_view *t = order[k];
      ok = t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, af.fp) == t->nbytes;
    }
    if (ok) {
      rc = dpo_atomic_commit(&af, err);
    } else {
      int saved = errno;
      dpo_atomic_abort(&af);
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: write failed: %s", path, strerror(saved));
    }
  }
  free(order);
  free(header.text);
  return rc;
}
