/* A minimal test runner: CHECK records a failure with file and line and goes
 * on, so one run reports every broken expectation; test_finish() turns the
 * count into the exit status that ctest reads. */
#ifndef DPO_TESTS_TEST_H
#define DPO_TESTS_TEST_H

#include <stddef.h>
#include <stdio.h>

void test_fail(const char *file, int line, const char *fmt, ...);
int test_finish(void);
/* A fresh empty directory under $TMPDIR, removed by test_finish(). */
const char *test_tmpdir(void);
/* Joins the temp dir and a name into a static-lifetime buffer owned by the runner. */
const char *test_path(const char *name);
/* Absolute path of a file in the source tree ($DPO_SOURCE_DIR when set). */
const char *test_source_path(const char *relative);
int test_write_file(const char *path, const void *data, size_t n);
/* Comparisons of float tensors (bf16 against float32, device against CPU):
 * max |got - want| / max(max |want|, 1e-3), infinite when got holds a NaN;
 * and the cosine of the two as vectors (1 for two zero vectors, -1 when
 * it is NaN). */
double test_scaled_error(const float *got, const float *want, size_t n);
double test_cosine(const float *a, const float *b, size_t n);

#define CHECK(cond) \
  do { if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define CHECK_INT(a, b) \
  do { long long a_ = (long long)(a), b_ = (long long)(b); \
       if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, a_, #b, b_); } while (0)
#define CHECK_NEAR(a, b, tol) \
  do { double a_ = (double)(a), b_ = (double)(b); \
       if (!(a_ - b_ <= (tol) && b_ - a_ <= (tol))) \
         test_fail(__FILE__, __LINE__, "%s = %.9g, expected %.9g within %g", #a, a_, b_, (double)(tol)); } while (0)
#define CHECK_STR(a, b) \
  do { const char *a_ = (a), *b_ = (b); \
       if (!a_ || !b_ || strcmp(a_, b_) != 0) \
         test_fail(__FILE__, __LINE__, "%s = \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
/* The message must contain the given fragment. */
#define CHECK_CONTAINS(haystack, needle) \
  do { const char *h_ = (haystack), *n_ = (needle); \
       if (!h_ || !strstr(h_, n_)) \
         test_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); } while (0)

#endif
