/* Shared by the safetensors golden test and tests/golden/st_tool.c: the
 * tensors of tests/fixtures/safetensors/c_written.safetensors (which
 * tests/fixtures/make_safetensors_fixtures.py recomputes independently and
 * checks), and a checker of a safetensors file against the JSON description
 * that script writes for the files it makes. */
#ifndef DPO_TESTS_SAFETENSORS_SAMPLE_H
#define DPO_TESTS_SAFETENSORS_SAMPLE_H

#include "core/core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* f32 inputs whose rounding to f16 / bf16 exercises ties, overflow,
 * subnormals, NaN and signed zero. Must match make_safetensors_fixtures.py. */
static const uint32_t ST_SAMPLE_F16_SOURCE[24] = {
    0x3F800000, 0x3F801000, 0x3F803000, 0x3F801001, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x47C35000,
    0x33800000, 0x33000000, 0x33000001, 0x33C00000, 0x38800000, 0x387FC000, 0x387FE000, 0x7FC00000,
    0xFF800000, 0x80000000, 0xBF400000, 0x40490FDB, 0x00000001, 0xC7000000, 0x3DCCCCCD, 0x7F7FFFFF,
};
static const uint32_t ST_SAMPLE_BF16_SOURCE[7] = {
    0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0x7FC00001, 0x00010000, 0x807FFFFF,
};
static const char ST_SAMPLE_NOTE[] = "written by dpo \"c\"\n\ttab \xc3\xa9 \xc3\xbc\xc3\xaf \x01 /";

/* The data lives in a struct so that it outlives the writer's borrow. */
typedef struct {
  float f32[15];
  uint32_t f32_special[8];
  uint16_t f16[24];
  uint16_t bf16[7];
  double f64[4];
  int64_t i64[3];
  int32_t i32[4];
  uint8_t u8[5];
  uint8_t boolean[6];
  float scalar;
} st_sample_data;

static void st_sample_fill(st_sample_data *d) {
  for (int i = 0; i < 15; i++) d->f32[i] = (float)(i - 7) * 0.375f;
  const uint32_t special[8] = {0x00000000, 0x80000000, 0x7F800000, 0xFF800000,
                               0x7FC00000, 0x00000001, 0x7F7FFFFF, 0x3EAAAAAB};
  memcpy(d->f32_special, special, sizeof special);
  for (int i = 0; i < 24; i++) {
    float f;
    memcpy(&f, &ST_SAMPLE_F16_SOURCE[i], sizeof f);
    d->f16[i] = dpo_f32_to_f16(f);
  }
  for (int i = 0; i < 7; i++) {
    float f;
    memcpy(&f, &ST_SAMPLE_BF16_SOURCE[i], sizeof f);
    d->bf16[i] = dpo_f32_to_bf16(f);
  }
  const double f64[4] = {0.1, -2.5e300, 4.9406564584124654e-324, 3.141592653589793};
  memcpy(d->f64, f64, sizeof f64);
  const int64_t i64[3] = {INT64_MIN, -1, INT64_MAX};
  memcpy(d->i64, i64, sizeof i64);
  const int32_t i32[4] = {INT32_MIN, -7, 0, INT32_MAX};
  memcpy(d->i32, i32, sizeof i32);
  const uint8_t u8[5] = {0, 1, 127, 128, 255}, boolean[6] = {1, 0, 0, 1, 1, 0};
  memcpy(d->u8, u8, sizeof u8);
  memcpy(d->boolean, boolean, sizeof boolean);
  d->scalar = 42.5f;
}

/* Adds the tensors in an order unlike the file's layout, to exercise the
 * writer's sort. */
static int st_sample_add(dpo_st_writer *w, const st_sample_data *d, dpo_error *err) {
  if (dpo_st_writer_add(w, "u8", DPO_DTYPE_U8, 1, (int64_t[]){5}, d->u8, err) ||
      dpo_st_writer_add(w, "f32", DPO_DTYPE_F32, 2, (int64_t[]){3, 5}, d->f32, err) ||
      dpo_st_writer_add(w, "bool", DPO_DTYPE_BOOL, 2, (int64_t[]){2, 3}, d->boolean, err) ||
      dpo_st_writer_add(w, "f16", DPO_DTYPE_F16, 3, (int64_t[]){2, 3, 4}, d->f16, err) ||
      dpo_st_writer_add(w, "scalar", DPO_DTYPE_F32, 0, NULL, &d->scalar, err) ||
      dpo_st_writer_add(w, "bf16", DPO_DTYPE_BF16, 1, (int64_t[]){7}, d->bf16, err) ||
      dpo_st_writer_add(w, "empty", DPO_DTYPE_F32, 2, (int64_t[]){0, 3}, NULL, err) ||
      dpo_st_writer_add(w, "f64", DPO_DTYPE_F64, 2, (int64_t[]){4, 1}, d->f64, err) ||
      dpo_st_writer_add(w, "i32", DPO_DTYPE_I32, 2, (int64_t[]){2, 2}, d->i32, err) ||
      dpo_st_writer_add(w, "f32_special", DPO_DTYPE_F32, 1, (int64_t[]){8}, d->f32_special, err) ||
      dpo_st_writer_add(w, "empty_i64", DPO_DTYPE_I64, 3, (int64_t[]){2, 0, 4}, NULL, err) ||
      dpo_st_writer_add(w, "i64", DPO_DTYPE_I64, 1, (int64_t[]){3}, d->i64, err))
    return DPO_ERR_DATA;
  return dpo_st_writer_meta(w, "note", ST_SAMPLE_NOTE, err);
}

static int st_sample_write(const char *path, dpo_error *err) {
  st_sample_data d;
  st_sample_fill(&d);
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  int rc = st_sample_add(&w, &d, err);
  if (rc == DPO_OK) rc = dpo_st_writer_write(&w, path, err);
  dpo_st_writer_free(&w);
  return rc;
}

/* Little-endian element i of a width-byte element array. */
static uint64_t st_sample_load(const uint8_t *p, size_t width, int64_t i) {
  uint64_t v = 0;
  for (size_t b = width; b-- > 0;) v = (v << 8) | p[(size_t)i * width + b];
  return v;
}

static int st_sample_mismatch(const char *path, const char *name, const char *what) {
  fprintf(stderr, "%s: tensor \"%s\": %s\n", path, name, what);
  return 1;
}

/* Compares a list of hex strings with the tensor's elements. */
static int st_sample_check_bits(const char *path, const char *name, const json_t *hex, const uint8_t *data,
                                size_t width, int64_t numel) {
  if (!json_is_array(hex) || (int64_t)json_array_size(hex) != numel)
    return st_sample_mismatch(path, name, "wrong number of elements");
  int bad = 0;
  for (int64_t i = 0; i < numel; i++) {
    const char *text = json_string_value(json_array_get(hex, (size_t)i));
    uint64_t want = text ? strtoull(text, NULL, 16) : 0;
    uint64_t got = st_sample_load(data, width, i);
    if (!text || got != want) {
      fprintf(stderr, "%s: tensor \"%s\"[%" PRId64 "]: bits %" PRIx64 ", expected %s\n", path, name, i, got,
              text ? text : "?");
      bad++;
    }
  }
  return bad;
}

static int st_sample_check_values(const char *path, const dpo_tensor_view *t, const json_t *values) {
  if (!json_is_array(values) || (int64_t)json_array_size(values) != t->numel)
    return st_sample_mismatch(path, t->name, "wrong number of values");
  int bad = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    int64_t want = (int64_t)json_integer_value(json_array_get(values, (size_t)i));
    uint64_t raw = st_sample_load(t->data, dpo_dtype_size(t->dtype), i);
    int64_t got = (int64_t)raw;
    if (t->dtype == DPO_DTYPE_I32) got = (int32_t)(uint32_t)raw;
    if (got != want) {
      fprintf(stderr, "%s: tensor \"%s\"[%" PRId64 "] = %" PRId64 ", expected %" PRId64 "\n", path, t->name, i, got,
              want);
      bad++;
    }
  }
  return bad;
}

static int st_sample_check_tensor(const char *path, const dpo_tensor_view *t, const json_t *want) {
  const char *dtype = json_string_value(json_object_get(want, "dtype"));
  if (!dtype || strcmp(dtype, dpo_dtype_name(t->dtype)) != 0) return st_sample_mismatch(path, t->name, "dtype");
  const json_t *shape = json_object_get(want, "shape");
  if ((int)json_array_size(shape) != t->ndim) return st_sample_mismatch(path, t->name, "number of dimensions");
  for (int d = 0; d < t->ndim; d++)
    if (json_integer_value(json_array_get(shape, (size_t)d)) != t->shape[d])
      return st_sample_mismatch(path, t->name, "shape");
  const json_t *bits = json_object_get(want, "bits");
  if (!bits) return st_sample_check_values(path, t, json_object_get(want, "values"));
  int bad = st_sample_check_bits(path, t->name, bits, t->data, dpo_dtype_size(t->dtype), t->numel);
  /* dpo_st_to_f32 against numpy's conversion of the same elements. */
  float *f32 = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *f32);
  dpo_error err = {0};
  if (!f32 || dpo_st_to_f32(t, f32, &err) != DPO_OK) {
    free(f32);
    return bad + st_sample_mismatch(path, t->name, "dpo_st_to_f32 failed");
  }
  bad += st_sample_check_bits(path, t->name, json_object_get(want, "f32_bits"), (const uint8_t *)f32, 4, t->numel);
  free(f32);
  return bad;
}

/* Reads `path` and compares it with the description in `json_path`; returns
 * the number of mismatches (each printed to stderr). */
static int st_sample_check_file(const char *path, const char *json_path) {
  dpo_error err = {0};
  json_t *expected = dpo_json_load_file(json_path, 16u << 20, &err);
  if (!expected) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  dpo_safetensors st;
  if (dpo_st_open(&st, path, &err) != DPO_OK) {
    fprintf(stderr, "%s\n", err.msg);
    json_decref(expected);
    return 1;
  }
  int bad = 0;
  const json_t *tensors = json_object_get(expected, "tensors");
  if ((int)json_object_size(tensors) != st.n_tensors) bad += st_sample_mismatch(path, "*", "number of tensors");
  const char *name;
  json_t *want;
  json_object_foreach((json_t *)tensors, name, want) {
    const dpo_tensor_view *t = dpo_st_find(&st, name);
    bad += t ? st_sample_check_tensor(path, t, want) : st_sample_mismatch(path, name, "missing");
  }
  const json_t *meta = json_object_get(expected, "metadata");
  if ((int)json_object_size(meta) != st.n_meta) bad += st_sample_mismatch(path, "__metadata__", "number of keys");
  json_object_foreach((json_t *)meta, name, want) {
    const char *got = dpo_st_meta(&st, name);
    if (!got || strcmp(got, json_string_value(want)) != 0) bad += st_sample_mismatch(path, name, "metadata value");
  }
  dpo_st_close(&st);
  json_decref(expected);
  return bad;
}

#endif
