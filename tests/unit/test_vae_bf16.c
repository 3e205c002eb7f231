/* The VAE in bf16 (dpo_vae_set_precision) on the CPU, whose bf16 ops are
 * kernels.h's reference: the decode against the same VAE in float32 within
 * a bf16 tolerance and not bitwise equal (the path really rounds); a bf16
 * plan leaves the encoder out (encode refused, touching nothing) while a
 * float32 clone encodes and decodes the original's bits; the precision is
 * fixed once planned.
 *
 * Tolerance: error = max |bf16 - f32| / max(max |f32|, 1e-3) over the image.
 * bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 2e-3 per value); the
 * fixture's decoder is ~20 rounded layers deep (conv_in, a mid block with
 * attention, two up blocks of two resnets, norm_out, conv_out), and the
 * UNet's tests hold 3e-2 through ~30: TOL_IMAGE is the same bound. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "tests/test.h"

#define TOL_IMAGE 3e-2

static kn_ctx ctx;

static dpo_vae *load(kn_dtype dtype) {
  dpo_error err = {0};
  dpo_vae *v = NULL;
  if (dpo_vae_load(test_source_path("tests/fixtures/models/vae"), &v, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return NULL;
  }
  if (dpo_vae_set_precision(v, dtype, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
  return v;
}

enum { B = 2, S = 16, LAT = 4 * 8 * 8, IMG = 3 * S * S };

/* Decodes B latents (scaled) and copies the images out. */
static int decode(dpo_vae *v, const float *latents, float *image) {
  dpo_error err = {0};
  if (dpo_vae_plan(v, &ctx, B, S, S, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return 0;
  }
  const float *out = dpo_vae_decode(v, &ctx, latents, 1);
  CHECK(out != NULL);
  if (!out) return 0;
  memcpy(image, out, (size_t)B * IMG * sizeof(float));
  return 1;
}

static void test_decode_against_float32(void) {
  dpo_vae *f = load(KN_F32), *h = load(KN_BF16);
  if (!f || !h) goto done;
  CHECK_INT(dpo_vae_precision(f), KN_F32);
  CHECK_INT(dpo_vae_precision(h), KN_BF16);
  float latents[B * LAT], want[B * IMG], got[B * IMG];
  /* Latents of an SD-like scale (std 1 / scaling_factor after unscaling). */
  dpo_rng_normal_fill(5, 1, 0, latents, (size_t)B * LAT);
  if (!decode(f, latents, want) || !decode(h, latents, got)) goto done;
  double e = test_scaled_error(got, want, (size_t)B * IMG);
  printf("vae bf16 decode: scaled error %.3g (tolerance %.3g)\n", e, TOL_IMAGE);
  CHECK(e <= TOL_IMAGE);
  CHECK(memcmp(got, want, sizeof got) != 0);
  /* Decoding is repeatable: the same bits a second time. */
  const float *again = dpo_vae_decode(h, &ctx, latents, 1);
  CHECK(again && memcmp(again, got, sizeof got) == 0);
done:
  dpo_vae_free(f);
  dpo_vae_free(h);
}

/* A bf16 plan has no encoder; a float32 clone encodes as the original. */
static void test_encode_and_clone(void) {
  dpo_vae *f = load(KN_F32), *h = load(KN_BF16), *c = NULL;
  dpo_error err = {0};
  if (!f || !h) goto done;
  float image[B * IMG], mean_f[B * LAT], mean_c[B * LAT], untouched[B * LAT];
  dpo_rng_normal_fill(6, 1, 0, image, (size_t)B * IMG);
  for (int i = 0; i < B * LAT; i++) untouched[i] = mean_c[i] = 42.0f;
  CHECK_INT(dpo_vae_can_encode(f), 0);   /* not planned */
  CHECK_INT(dpo_vae_encode(f, &ctx, image, 0, 0, 1, mean_c, NULL), DPO_ERR_USAGE);
  CHECK_INT(dpo_vae_plan(f, &ctx, B, S, S, &err), DPO_OK);
  CHECK_INT(dpo_vae_plan(h, &ctx, B, S, S, &err), DPO_OK);
  CHECK_INT(dpo_vae_can_encode(f), 1);
  CHECK_INT(dpo_vae_can_encode(h), 0);
  CHECK_INT(dpo_vae_encode(h, &ctx, image, 0, 0, 1, mean_c, NULL), DPO_ERR_USAGE);
  CHECK(memcmp(mean_c, untouched, sizeof untouched) == 0);
  CHECK_INT(dpo_vae_encode(f, &ctx, image, 0, 0, 1, mean_f, NULL), DPO_OK);

  CHECK_INT(dpo_vae_clone(h, &c, &err), DPO_OK);
  if (!c) goto done;
  CHECK_INT(dpo_vae_precision(c), KN_F32);
  CHECK_INT(dpo_vae_plan(c, &ctx, B, S, S, &err), DPO_OK);
  CHECK_INT(dpo_vae_encode(c, &ctx, image, 0, 0, 1, mean_c, NULL), DPO_OK);
  CHECK(memcmp(mean_c, mean_f, sizeof mean_f) == 0);
  const float *a = dpo_vae_decode(f, &ctx, mean_f, 1);
  float first[B * IMG];
  if (a) memcpy(first, a, sizeof first);
  const float *b = dpo_vae_decode(c, &ctx, mean_f, 1);
  CHECK(a && b && memcmp(first, b, sizeof first) == 0);
done:
  dpo_vae_free(f);
  dpo_vae_free(h);
  dpo_vae_free(c);
}

/* The precision is set before the first plan, to a known dtype. */
static void test_precision_usage(void) {
  dpo_vae *v = load(KN_F32);
  if (!v) return;
  dpo_error err = {0};
  CHECK_INT(dpo_vae_set_precision(v, (kn_dtype)7, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_vae_plan(v, &ctx, 1, S, S, &err), DPO_OK);
  CHECK_INT(dpo_vae_set_precision(v, KN_BF16, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "before the first plan");
  CHECK_INT(dpo_vae_precision(v), KN_F32);
  dpo_vae_free(v);
}

int main(void) {
  dpo_error err = {0};
  if (kn_ctx_init(&ctx, 1, &err) != DPO_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  test_decode_against_float32();
  test_encode_and_clone();
  test_precision_usage();
  kn_ctx_free(&ctx);
  return test_finish();
}
