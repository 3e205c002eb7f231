/* safetensors reader and writer: a round trip of every dtype, every way a
 * header can be malformed (each with the file name and the offset or tensor
 * in the message), the writer's layout and its refusals, and the f16 / bf16
 * conversions against a libm reference. */
#include "core/core.h"
#include "tests/test.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t bits_of(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  return x;
}

static float float_of(uint32_t x) {
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

/* ------------------------------------------------------------ round trip */

static void test_round_trip_every_dtype(void) {
  float f32[6] = {1.5f, -2.25f, 0.0f, INFINITY, 1e-40f, 3.0f};
  uint16_t f16[3] = {0x3c00, 0xfbff, 0x0001};     /* 1, -65504, smallest subnormal */
  uint16_t bf16[5] = {0x3f80, 0xc000, 0x7f80, 0x0001, 0x8000};
  double f64[2] = {0.1, -1e300};
  int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
  int32_t i32[1] = {-123456};
  uint8_t u8[7] = {0, 1, 2, 3, 254, 255, 128};
  uint8_t flags[4] = {1, 0, 1, 1};
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  dpo_error err = {0};
  CHECK_INT(dpo_st_writer_add(&w, "z.u8", DPO_DTYPE_U8, 1, (int64_t[]){7}, u8, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "a.f16", DPO_DTYPE_F16, 1, (int64_t[]){3}, f16, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "f32", DPO_DTYPE_F32, 2, (int64_t[]){2, 3}, f32, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "bf16", DPO_DTYPE_BF16, 3, (int64_t[]){5, 1, 1}, bf16, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "f64", DPO_DTYPE_F64, 1, (int64_t[]){2}, f64, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "i64", DPO_DTYPE_I64, 1, (int64_t[]){3}, i64, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "i32", DPO_DTYPE_I32, 0, NULL, i32, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "mask", DPO_DTYPE_BOOL, 2, (int64_t[]){2, 2}, flags, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "empty", DPO_DTYPE_F32, 2, (int64_t[]){4, 0}, NULL, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_meta(&w, "zeta", "last \"quoted\"\n", &err), DPO_OK);
  CHECK_INT(dpo_st_writer_meta(&w, "alpha", "first \xc3\xa9", &err), DPO_OK);
  const char *path = test_path("all.safetensors");
  CHECK_INT(dpo_st_writer_write(&w, path, &err), DPO_OK);
  const char *path2 = test_path("all2.safetensors");
  CHECK_INT(dpo_st_writer_write(&w, path2, &err), DPO_OK);
  dpo_st_writer_free(&w);

  /* Deterministic: the same tensors give the same bytes. */
  char *a, *b;
  size_t na, nb;
  CHECK_INT(dpo_read_file(path, 1 << 20, &a, &na, &err), DPO_OK);
  CHECK_INT(dpo_read_file(path2, 1 << 20, &b, &nb, &err), DPO_OK);
  CHECK(na == nb && memcmp(a, b, na) == 0);
  /* Metadata first with sorted keys, as the reference writes it; header padded to 8. */
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | (uint8_t)a[i];
  CHECK_INT(header_len % 8, 0);
  CHECK(strncmp(a + 8, "{\"__metadata__\":{\"alpha\":\"first \xc3\xa9\",\"zeta\":\"last \\\"quoted\\\"\\n\"},", 57) == 0);
  CHECK(a[8 + header_len - 1] == ' ' || a[8 + header_len - 1] == '}');
  free(a);
  free(b);

  dpo_safetensors st;
  CHECK_INT(dpo_st_open(&st, path, &err), DPO_OK);
  CHECK_INT(st.n_tensors, 9);
  CHECK_INT(st.n_meta, 2);
  CHECK_STR(dpo_st_meta(&st, "alpha"), "first \xc3\xa9");
  CHECK_STR(dpo_st_meta(&st, "zeta"), "last \"quoted\"\n");
  CHECK(dpo_st_meta(&st, "missing") == NULL);
  CHECK(dpo_st_find(&st, "missing") == NULL);
  /* Layout: I64, F64, F32, I32, BF16, F16, U8, BOOL, then by name; each
   * tensor aligned to its element size. */
  const char *layout[9] = {"i64", "f64", "empty", "f32", "i32", "bf16", "a.f16", "z.u8", "mask"};
  for (int i = 0; i < st.n_tensors && i < 9; i++) {
    CHECK_STR(st.tensors[i].name, layout[i]);
    CHECK_INT((size_t)(st.tensors[i].data - st.map) % dpo_dtype_size(st.tensors[i].dtype), 0);
  }
  const dpo_tensor_view *t = dpo_st_find(&st, "f32");
  CHECK(t && t->dtype == DPO_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6);
  CHECK(t && t->nbytes == sizeof f32 && memcmp(t->data, f32, sizeof f32) == 0);
  t = dpo_st_find(&st, "a.f16");
  CHECK(t && t->dtype == DPO_DTYPE_F16 && memcmp(t->data, f16, sizeof f16) == 0);
  t = dpo_st_find(&st, "bf16");
  CHECK(t && t->dtype == DPO_DTYPE_BF16 && t->ndim == 3 && memcmp(t->data, bf16, sizeof bf16) == 0);
  t = dpo_st_find(&st, "f64");
  CHECK(t && t->dtype == DPO_DTYPE_F64 && memcmp(t->data, f64, sizeof f64) == 0);
  t = dpo_st_find(&st, "i64");
  CHECK(t && t->dtype == DPO_DTYPE_I64 && memcmp(t->data, i64, sizeof i64) == 0);
  t = dpo_st_find(&st, "i32");
  CHECK(t && t->dtype == DPO_DTYPE_I32 && t->ndim == 0 && t->numel == 1 && memcmp(t->data, i32, 4) == 0);
  t = dpo_st_find(&st, "z.u8");
  CHECK(t && t->dtype == DPO_DTYPE_U8 && memcmp(t->data, u8, sizeof u8) == 0);
  t = dpo_st_find(&st, "mask");
  CHECK(t && t->dtype == DPO_DTYPE_BOOL && memcmp(t->data, flags, sizeof flags) == 0);
  t = dpo_st_find(&st, "empty");
  CHECK(t && t->numel == 0 && t->nbytes == 0 && t->ndim == 2 && t->shape[1] == 0);

  /* dpo_st_to_f32 for each float dtype. */
  float out[6];
  CHECK_INT(dpo_st_to_f32(dpo_st_find(&st, "f32"), out, &err), DPO_OK);
  CHECK(memcmp(out, f32, sizeof f32) == 0);
  CHECK_INT(dpo_st_to_f32(dpo_st_find(&st, "a.f16"), out, &err), DPO_OK);
  CHECK(out[0] == 1.0f && out[1] == -65504.0f && out[2] == ldexpf(1.0f, -24));
  CHECK_INT(dpo_st_to_f32(dpo_st_find(&st, "bf16"), out, &err), DPO_OK);
  CHECK(out[0] == 1.0f && out[1] == -2.0f && isinf(out[2]) && out[3] == ldexpf(1.0f, -133) && signbit(out[4]));
  CHECK_INT(dpo_st_to_f32(dpo_st_find(&st, "f64"), out, &err), DPO_OK);
  CHECK(out[0] == 0.1f && isinf(out[1]) && out[1] < 0);
  CHECK_INT(dpo_st_to_f32(dpo_st_find(&st, "i64"), out, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "\"i64\"");
  CHECK_CONTAINS(err.msg, "I64");
  dpo_st_close(&st);
  CHECK(st.tensors == NULL && st.n_tensors == 0);
  dpo_st_close(&st);   /* safe twice */
}

static void test_dtype_names(void) {
  for (int i = 0; i < DPO_DTYPE_COUNT; i++) {
    dpo_dtype d;
    CHECK_INT(dpo_dtype_from_name(dpo_dtype_name((dpo_dtype)i), &d), DPO_OK);
    CHECK_INT(d, i);
  }
  dpo_dtype d;
  CHECK_INT(dpo_dtype_from_name("I8", &d), DPO_ERR_DATA);
  CHECK_INT(dpo_dtype_size(DPO_DTYPE_BF16), 2);
  CHECK_INT(dpo_dtype_size(DPO_DTYPE_BOOL), 1);
  CHECK_INT(dpo_dtype_size(DPO_DTYPE_I64), 8);
}

static void test_empty_file_and_zero_size_tensors(void) {
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  dpo_error err = {0};
  const char *path = test_path("empty.safetensors");
  CHECK_INT(dpo_st_writer_write(&w, path, &err), DPO_OK);
  dpo_safetensors st;
  CHECK_INT(dpo_st_open(&st, path, &err), DPO_OK);
  CHECK_INT(st.n_tensors, 0);
  CHECK_INT(st.map_size, 16);   /* 8 + "{}" padded to 8 */
  dpo_st_close(&st);

  /* Several zero-size tensors at the same offset, one between two others. */
  uint8_t one = 7;
  CHECK_INT(dpo_st_writer_add(&w, "b", DPO_DTYPE_U8, 1, (int64_t[]){0}, NULL, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "a", DPO_DTYPE_U8, 2, (int64_t[]){3, 0}, NULL, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "c", DPO_DTYPE_U8, 0, NULL, &one, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_write(&w, path, &err), DPO_OK);
  dpo_st_writer_free(&w);
  CHECK_INT(dpo_st_open(&st, path, &err), DPO_OK);
  CHECK_INT(st.n_tensors, 3);
  CHECK(st.n_tensors == 3 && !strcmp(st.tensors[0].name, "a") && !strcmp(st.tensors[1].name, "b"));
  CHECK(dpo_st_find(&st, "c") && dpo_st_find(&st, "c")->data[0] == 7);
  dpo_st_close(&st);
}

/* ------------------------------------------------------------- malformed */

static uint8_t buffer[8192];

/* 8-byte length + header + data_len bytes of data; the length is taken from
 * the header unless declared_len is non-negative. */
static size_t make_file(const char *header, size_t data_len, long long declared_len) {
  size_t n = strlen(header);
  uint64_t len = declared_len >= 0 ? (uint64_t)declared_len : n;
  for (int i = 0; i < 8; i++) buffer[i] = (uint8_t)(len >> (8 * i));
  memcpy(buffer + 8, header, n);
  for (size_t i = 0; i < data_len; i++) buffer[8 + n + i] = (uint8_t)i;
  return 8 + n + data_len;
}

/* Parses size bytes of `buffer` and expects a data error whose message names
 * the file and contains both fragments. */
static void expect_bad(int line, size_t size, const char *fragment1, const char *fragment2) {
  dpo_safetensors st;
  dpo_error err = {0};
  int rc = dpo_st_parse(&st, buffer, size, "bad.safetensors", &err);
  if (rc != DPO_ERR_DATA || !strstr(err.msg, "bad.safetensors") || !strstr(err.msg, fragment1) ||
      (fragment2 && !strstr(err.msg, fragment2)))
    test_fail(__FILE__, line, "rc %d, message \"%s\", expected \"%s\" and \"%s\"", rc, err.msg, fragment1,
              fragment2 ? fragment2 : "");
  if (rc == DPO_OK) dpo_st_close(&st);
  CHECK(st.tensors == NULL && st.n_tensors == 0 && st.n_meta == 0);
}

static void expect_bad_header(int line, const char *header, size_t data_len, const char *f1, const char *f2) {
  expect_bad(line, make_file(header, data_len, -1), f1, f2);
}

static void expect_good(int line, const char *header, size_t data_len, int n_tensors) {
  dpo_safetensors st;
  dpo_error err = {0};
  int rc = dpo_st_parse(&st, buffer, make_file(header, data_len, -1), "good.safetensors", &err);
  if (rc != DPO_OK || st.n_tensors != n_tensors)
    test_fail(__FILE__, line, "header %s: rc %d (%s), %d tensors, expected %d", header, rc, err.msg, st.n_tensors,
              n_tensors);
  dpo_st_close(&st);
}

static void test_length_field(void) {
  expect_bad(__LINE__, 0, "0 bytes, shorter than the 8-byte header length", NULL);
  expect_bad(__LINE__, 7, "7 bytes, shorter than the 8-byte header length", NULL);
  expect_bad(__LINE__, make_file("{}", 0, 100000001), "byte 0", "exceeds the limit of 100000000");
  expect_bad(__LINE__, make_file("{}", 0, -2 + 0x7fffffffffffffffLL), "byte 0", "exceeds the limit");
  expect_bad(__LINE__, make_file("{}      ", 0, 9), "byte 0: header length 9 runs past the end", "at most 8");
  expect_bad(__LINE__, make_file("", 0, 0), "invalid JSON", "header starts at file byte 8");
}

static void test_header_json(void) {
  expect_bad_header(__LINE__, "{\"a\": {\"dtype\": \"F32\",", 0, "invalid JSON", "header starts at file byte 8");
  expect_bad_header(__LINE__, "{\"a\xff\": 1}", 0, "invalid JSON", "header");
  expect_bad_header(__LINE__, "[1, 2]", 0, "byte 8: the header must be a JSON object", NULL);
  expect_bad_header(__LINE__, "\"text\"", 0, "invalid JSON", "'[' or '{' expected");
  expect_bad_header(__LINE__, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate", "a");
  expect_bad_header(__LINE__, "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
                    "invalid JSON", "NUL byte in object key");
  expect_bad_header(__LINE__, "{\"a\": [1]}", 0, "tensor \"a\": expected an object", NULL);
  /* Padding with spaces (and nothing else) is fine. */
  expect_good(__LINE__, "{}      ", 0, 0);
  expect_good(__LINE__, "  {\"__metadata__\": {\"k\": \"v\"}}  ", 0, 0);
}

static void test_metadata(void) {
  expect_bad_header(__LINE__, "{\"__metadata__\": [\"x\"]}", 0, "\"__metadata__\" must be an object", NULL);
  expect_bad_header(__LINE__, "{\"__metadata__\": {\"k\": 3}}", 0, "key \"k\": value must be a string", NULL);
  expect_bad_header(__LINE__, "{\"__metadata__\": {\"k\": \"a\\u0000b\"}}", 0, "key \"k\"", "NUL");
  dpo_safetensors st;
  dpo_error err = {0};
  size_t n = make_file("{\"__metadata__\":{\"b\":\"2\",\"a\":\"1\"},\"t\":{\"dtype\":\"I32\",\"shape\":[],"
                       "\"data_offsets\":[0,4]}}", 4, -1);
  CHECK_INT(dpo_st_parse(&st, buffer, n, "m.safetensors", &err), DPO_OK);
  CHECK_INT(st.n_meta, 2);
  CHECK(st.n_meta == 2 && !strcmp(st.meta_keys[0], "b") && !strcmp(st.meta_values[1], "1"));   /* header order */
  CHECK_STR(st.path, "m.safetensors");
  dpo_st_close(&st);
}

static void test_tensor_entries(void) {
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                    "tensor \"w\": unsupported dtype \"I8\"", "expected one of F32");
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                    "tensor \"w\": \"dtype\" must be a string", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor \"w\"", "dtype");
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
                    "tensor \"w\": missing \"shape\"", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1,
                    "tensor \"w\": shape must be a list of non-negative integers", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1,
                    "tensor \"w\": shape must be a list of non-negative integers", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1,
                    "shape must be a list of non-negative integers", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
                    "tensor \"w\": shape has 9 dimensions, more than the limit of 8", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,2],\"data_offsets\":[0,1]}}",
                    1, "tensor \"w\": shape [4611686018427387904, 2] of F32 overflows", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,1]}}",
                    1, "tensor \"w\"", "overflows");
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1,
                    "tensor \"w\": data_offsets must be [begin, end]", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1,
                    "tensor \"w\": data_offsets must be [begin, end]", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "tensor \"w\": data_offsets", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":\"0,1\"}}", 1,
                    "tensor \"w\": data_offsets", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,1]}}", 2,
                    "tensor \"w\": data_offsets [2, 1]: begin is after end", NULL);
  /* Header of 62 bytes, so data starts at file byte 70; 4 data bytes. */
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[0,6]}}         ", 4,
                    "tensor \"w\": data_offsets end 6 (file byte 76) is beyond the data buffer of 4 bytes",
                    "file ends at byte 74");
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                    "tensor \"w\": shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] span 20", NULL);
  expect_bad_header(__LINE__, "{\"w\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
                    "shape [] of BOOL needs 1 bytes", NULL);
}

static void test_tiling(void) {
  /* A gap between two tensors (the reference rejects it). Header 108 bytes:
   * data starts at file byte 116. */
  expect_bad_header(__LINE__, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}  ", 12,
                    "tensor \"b\" begins at data byte 8 (file byte 124)", "end at data byte 4");
  /* A gap at the start. */
  expect_bad_header(__LINE__, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8,
                    "tensor \"a\" begins at data byte 4", "without gaps");
  /* Overlap. */
  expect_bad_header(__LINE__, "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}", 12,
                    "tensor \"b\" (data bytes 4..12", "overlaps tensor \"a\"");
  /* Two tensors on the same bytes. */
  expect_bad_header(__LINE__, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlaps", NULL);
  /* Bytes after the last tensor. Header 55 bytes: data at file byte 63. */
  expect_bad_header(__LINE__, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}  ", 6,
                    "cover 4 of the 6 data bytes: 2 unused bytes from file byte 67", NULL);
  /* A buffer with no tensors at all. */
  expect_bad_header(__LINE__, "{}", 3, "cover 0 of the 3 data bytes", NULL);
  /* Out of order in the header is fine: the layout is by offsets. */
  expect_good(__LINE__, "{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
              "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"e\":{\"dtype\":\"F64\",\"shape\":[0,5],\"data_offsets\":[8,8]}}", 8, 3);
}

static void test_open_errors(void) {
  dpo_safetensors st;
  dpo_error err = {0};
  const char *missing = test_path("missing.safetensors");
  CHECK_INT(dpo_st_open(&st, missing, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "missing.safetensors");
  CHECK_CONTAINS(err.msg, "cannot open");
  const char *short_file = test_path("short.safetensors");
  CHECK_INT(test_write_file(short_file, "\x08\0\0", 3), 0);
  CHECK_INT(dpo_st_open(&st, short_file, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "short.safetensors: file is 3 bytes, shorter than the 8-byte header length");
  const char *bad = test_path("gap.safetensors");
  size_t n = make_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, -1);
  CHECK_INT(test_write_file(bad, buffer, n), 0);
  CHECK_INT(dpo_st_open(&st, bad, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "gap.safetensors: tensor \"a\" begins at data byte 1");
  CHECK(st.map == NULL && st.tensors == NULL);
  CHECK_INT(dpo_st_open(&st, test_tmpdir(), &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "not a regular file");
}

/* ---------------------------------------------------------------- writer */

static void test_writer_refusals(void) {
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  dpo_error err = {0};
  float x[2] = {1, 2};
  CHECK_INT(dpo_st_writer_add(&w, "x", DPO_DTYPE_F32, 1, (int64_t[]){2}, x, &err), DPO_OK);
  CHECK_INT(dpo_st_writer_add(&w, "x", DPO_DTYPE_F32, 1, (int64_t[]){2}, x, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "tensor \"x\" added twice");
  CHECK_INT(dpo_st_writer_add(&w, "__metadata__", DPO_DTYPE_F32, 1, (int64_t[]){2}, x, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "__metadata__");
  CHECK_INT(dpo_st_writer_add(&w, "bad\xff", DPO_DTYPE_F32, 1, (int64_t[]){2}, x, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "UTF-8");
  CHECK_INT(dpo_st_writer_add(&w, "neg", DPO_DTYPE_F32, 1, (int64_t[]){-2}, x, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "tensor \"neg\"");
  CHECK_INT(dpo_st_writer_add(&w, "deep", DPO_DTYPE_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x, &err),
            DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "tensor \"deep\": 9 dimensions");
  CHECK_INT(dpo_st_writer_add(&w, "huge", DPO_DTYPE_F32, 2, (int64_t[]){INT64_MAX, 2}, x, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "overflows");
  CHECK_INT(dpo_st_writer_add(&w, "nodata", DPO_DTYPE_F32, 1, (int64_t[]){2}, NULL, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "tensor \"nodata\": no data");
  CHECK_INT(dpo_st_writer_add(&w, "dtype", DPO_DTYPE_COUNT, 1, (int64_t[]){2}, x, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_st_writer_meta(&w, "k", "v", &err), DPO_OK);
  CHECK_INT(dpo_st_writer_meta(&w, "k", "w", &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "metadata key \"k\" set twice");
  CHECK_INT(dpo_st_writer_meta(&w, "k2", "\xc3", &err), DPO_ERR_USAGE);
  CHECK_INT(w.n_tensors, 1);
  CHECK_INT(w.n_meta, 1);
  /* An unwritable destination is a data error and leaves nothing behind. */
  CHECK_INT(dpo_st_writer_write(&w, test_path("no/such/dir/x.safetensors"), &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no/such/dir/x.safetensors");
  dpo_st_writer_free(&w);
}

/* Many tensors, so that the writer's arrays grow. */
static void test_many_tensors(void) {
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  dpo_error err = {0};
  static int32_t values[100];
  char name[32];
  for (int i = 0; i < 100; i++) {
    values[i] = i * 3;
    snprintf(name, sizeof name, "layer.%03d", 99 - i);
    CHECK_INT(dpo_st_writer_add(&w, name, DPO_DTYPE_I32, 0, NULL, &values[i], &err), DPO_OK);
    snprintf(name, sizeof name, "key%d", i);
    if (i < 20) CHECK_INT(dpo_st_writer_meta(&w, name, name, &err), DPO_OK);
  }
  const char *path = test_path("many.safetensors");
  CHECK_INT(dpo_st_writer_write(&w, path, &err), DPO_OK);
  dpo_st_writer_free(&w);
  dpo_safetensors st;
  CHECK_INT(dpo_st_open(&st, path, &err), DPO_OK);
  CHECK_INT(st.n_tensors, 100);
  CHECK_INT(st.n_meta, 20);
  for (int i = 0; i < st.n_tensors; i++) {
    snprintf(name, sizeof name, "layer.%03d", i);   /* sorted by name within the dtype */
    CHECK_STR(st.tensors[i].name, name);
    int32_t v;
    memcpy(&v, st.tensors[i].data, 4);
    CHECK_INT(v, (99 - i) * 3);
  }
  CHECK_STR(dpo_st_meta(&st, "key7"), "key7");
  dpo_st_close(&st);
}

/* ----------------------------------------------------------- f16 / bf16 */

static void test_f16_values(void) {
  struct { uint32_t f32; uint16_t f16; } cases[] = {
      {0x00000000, 0x0000}, {0x80000000, 0x8000},                 /* signed zeros */
      {0x3f800000, 0x3c00}, {0xc0000000, 0xc000},                 /* 1, -2 */
      {0x477fe000, 0x7bff},                                       /* 65504, the largest */
      {0x477fefff, 0x7bff}, {0x477ff000, 0x7c00},                 /* just below / at the tie to 65536 */
      {0x7f7fffff, 0x7c00}, {0xff7fffff, 0xfc00},                 /* overflow to +-inf */
      {0x7f800000, 0x7c00}, {0xff800000, 0xfc00},                 /* infinities */
      {0x3f801000, 0x3c00}, {0x3f803000, 0x3c02}, {0x3f801001, 0x3c01},   /* ties to even */
      {0x38800000, 0x0400},                                       /* 2^-14, the smallest normal */
      {0x387fc000, 0x03ff}, {0x387fe000, 0x0400},                 /* largest subnormal; tie up to normal */
      {0x33800000, 0x0001},                                       /* 2^-24, the smallest subnormal */
      {0x33000000, 0x0000}, {0x33000001, 0x0001}, {0xb3000000, 0x8000},   /* 2^-25 ties to even 0 */
      {0x33c00000, 0x0002},                                       /* 1.5 * 2^-24 ties to 2 */
      {0x34200000, 0x0002},                                       /* 2.5 * 2^-24 ties to 2 */
      {0x00000001, 0x0000},                                       /* f32 subnormals vanish */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t got = dpo_f32_to_f16(float_of(cases[i].f32));
    if (got != cases[i].f16)
      test_fail(__FILE__, __LINE__, "f16(%08x) = %04x, expected %04x", cases[i].f32, got, cases[i].f16);
  }
  CHECK_INT(bits_of(dpo_f16_to_f32(0x0001)), bits_of(ldexpf(1.0f, -24)));
  CHECK_INT(bits_of(dpo_f16_to_f32(0x03ff)), bits_of(ldexpf(1023.0f, -24)));
  CHECK_INT(bits_of(dpo_f16_to_f32(0x8000)), 0x80000000);
  CHECK_INT(bits_of(dpo_f16_to_f32(0xfc00)), 0xff800000);
  CHECK(isnan(dpo_f16_to_f32(0x7e00)) && isnan(dpo_f16_to_f32(0xfc01)));
  /* NaN stays NaN (also one whose payload lives only in the low bits), sign kept. */
  uint16_t h = dpo_f32_to_f16(float_of(0x7f800001));
  CHECK((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
  h = dpo_f32_to_f16(float_of(0xffc00000));
  CHECK(h == 0xfe00);

  /* Every f16 survives f16 -> f32 -> f16 (NaNs as NaNs). */
  for (uint32_t v = 0; v < 65536; v++) {
    float f = dpo_f16_to_f32((uint16_t)v);
    uint16_t back = dpo_f32_to_f16(f);
    int is_nan = (v & 0x7c00) == 0x7c00 && (v & 0x3ff);
    if (is_nan ? !(isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != v)
      test_fail(__FILE__, __LINE__, "f16 %04x -> %08x -> %04x", v, bits_of(f), back);
  }
}

static void test_bf16_values(void) {
  struct { uint32_t f32; uint16_t bf16; } cases[] = {
      {0x00000000, 0x0000}, {0x80000000, 0x8000}, {0x3f800000, 0x3f80},
      {0x3f808000, 0x3f80}, {0x3f818000, 0x3f82}, {0x3f808001, 0x3f81},   /* ties to even */
      {0x7f7fffff, 0x7f80}, {0xff7fffff, 0xff80},                         /* overflow to inf */
      {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
      {0x00010000, 0x0001}, {0x00008000, 0x0000}, {0x00018000, 0x0002},   /* subnormals, ties */
      {0x807fffff, 0x8080},                                               /* up to the smallest normal */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t got = dpo_f32_to_bf16(float_of(cases[i].f32));
    if (got != cases[i].bf16)
      test_fail(__FILE__, __LINE__, "bf16(%08x) = %04x, expected %04x", cases[i].f32, got, cases[i].bf16);
  }
  /* A NaN whose payload is only in the low half must not become infinity. */
  uint16_t b = dpo_f32_to_bf16(float_of(0x7f800001));
  CHECK((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0);
  CHECK_INT(dpo_f32_to_bf16(float_of(0xffc00000)), 0xffc0);
  for (uint32_t v = 0; v < 65536; v++) {
    float f = dpo_bf16_to_f32((uint16_t)v);
    CHECK_INT(bits_of(f), v << 16);
    int is_nan = (v & 0x7f80) == 0x7f80 && (v & 0x7f);
    uint16_t back = dpo_f32_to_bf16(f);
    if (is_nan ? !isnan(dpo_bf16_to_f32(back)) : back != v)
      test_fail(__FILE__, __LINE__, "bf16 %04x -> %04x", v, back);
  }
}

/* Rounds x to a binary format with `mantissa_bits` explicit bits, smallest
 * normal exponent min_exp and largest finite max_finite, in double with rint
 * (ties to even): an independent reference for the bit-level conversions. */
static double reference_round(double x, int mantissa_bits, int min_exp, double max_finite) {
  if (x == 0 || isinf(x)) return x;
  int e;
  frexp(x, &e);   /* |x| = m * 2^e, m in [0.5, 1) */
  int exp = e - 1 < min_exp ? min_exp : e - 1;
  double ulp = ldexp(1.0, exp - mantissa_bits);
  double r = rint(x / ulp) * ulp;
  /* Past the largest finite value plus half an ulp, IEEE rounds to infinity;
   * rint already moved such values to at least 2^(emax+1). */
  if (fabs(r) > max_finite) return copysign(INFINITY, x);
  return r;
}

static void test_conversions_against_reference(void) {
  int bad = 0;
  for (uint64_t i = 0; i < 400000 && bad < 10; i++) {
    uint32_t x = dpo_rng_u32(7, 11, i);
    /* Half the draws near the f16 range, where the interesting cases are. */
    if (i % 2) x = (x & 0x80ffffff) | ((uint32_t)(96 + (x >> 24) % 50) << 23);
    float f = float_of(x);
    if (isnan(f)) continue;
    double want16 = reference_round(f, 10, -14, 65504.0);
    double got16 = dpo_f16_to_f32(dpo_f32_to_f16(f));
    double want_b = reference_round(f, 7, -126, (double)float_of(0x7f7f0000));
    double got_b = dpo_bf16_to_f32(dpo_f32_to_bf16(f));
    if (bits_of((float)want16) != bits_of((float)got16) || bits_of((float)want_b) != bits_of((float)got_b)) {
      test_fail(__FILE__, __LINE__, "%08x: f16 %.9g (want %.9g), bf16 %.9g (want %.9g)", x, got16, want16, got_b,
                want_b);
      bad++;
    }
  }
}

int main(void) {
  test_round_trip_every_dtype();
  test_dtype_names();
  test_empty_file_and_zero_size_tensors();
  test_length_field();
  test_header_json();
  test_metadata();
  test_tensor_entries();
  test_tiling();
  test_open_errors();
  test_writer_refusals();
  test_many_tensors();
  test_f16_values();
  test_bf16_values();
  test_conversions_against_reference();
  return test_finish();
}
