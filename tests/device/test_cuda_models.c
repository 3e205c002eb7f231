/* The models and the DPO step on the CUDA backend through the kernels'
 * dispatch (kn_ctx_init_backend), against the same calls on the CPU:
 *   1. the layout ops the models need (transpose, per-channel add, axpy,
 *      affine) through kn_<op>, on both backends;
 *   2. a tiny UNet (the block structure of SD1.5 at widths 32/64) forward
 *      and backward: output, input gradients, every parameter gradient;
 *   2b. the same tiny UNet in bf16 mixed precision on both backends
 *      (dpo_unet_set_precision(KN_BF16): the CPU's bf16 ops, float32 math on
 *      bf16-rounded values, are the reference of the CUDA bf16 kernels):
 *      output, dsample, dencoder and every parameter gradient; then a frozen
 *      bf16 model on the device (the DPO reference) against a trainable bf16
 *      one, both with inference plans: the same output bit for bit, its
 *      weights held as bf16 alone (no float32 values: parameter values a
 *      third of the trainable model's), and a training plan refused;
 *   3. the tiny CLIP text encoder of tests/fixtures forward and backward;
 *   4. a tiny Diffusion-DPO step (dpo_train_step_run: reference forward,
 *      policy forward + backward, loss on the host) with the text gradient;
 *   4b. the VAE of tests/fixtures/models/vae decoding on the device
 *      (dpo_vae_decode through the dispatch: latents and image in device
 *      memory), float32 and bf16 (dpo_vae_set_precision), against the CPU
 *      VAE of the same precision; a device plan holds no encoder;
 *   5. txt2img on the tiny latent pipeline of tests/fixtures (text encoder,
 *      UNet and VAE decoder on the device), 4 steps with guidance: the
 *      final latents against the CPU sampler's, and the 8-bit images
 *      within TOL_IMAGE_LEVELS;
 *   6. reward-acc's pair pass (eval_reward_pair) on the tiny pipeline, both
 *      models' MSE differences on the device against the CPU's;
 *   7. dpo train (dpo_train: latent cache, DPO steps, AdamW, checkpoints)
 *      on the tiny fixture pipeline of tests/train_fixture.h, 3 steps with
 *      --backend cuda against --backend cpu: the logged losses, gradient
 *      norms and the weight updates; then again with Adafactor, 2
 *      micro-batches per step, --sft-weight 0.5 and a max_grad_norm small
 *      enough that every step clips (stopped after step 2 and resumed from its checkpoint:
 *      the same weights as uninterrupted), once with the SFT loss, and once
 *      with --precision bf16 on both backends (beta 50; stopped and resumed
 *      too). On
 *      CUDA the whole step is device-resident (MSEs, DPO loss gradient,
 *      clipping, optimizer; one download of logged scalars per step), so
 *      this compares that path with the CPU's host step. Before it, the step's ops through kn_<op>
 *      (sum of squares, clip factor, scale-by, DPO loss, AdamW, Adafactor),
 *      and the multi-tensor ops (kn_multi_sum_squares, kn_multi_scale_by,
 *      kn_multi_adamw_update over a kn_param_table) against the per-tensor
 *      ones on the device bit for bit and against the CPU within TOL_STEP;
 *   8. the SD1.5 UNet (random weights) forward + backward at batch 4 (the
 *      PyTorch baseline's 2 pairs), 64x64 latents, 77 tokens, float32, on the
 *      device alone: time and memory, a check that the output and the last
 *      gradient are finite; then the same with activation checkpointing,
 *      whose gradient must equal the plain one bit for bit; then the same
 *      weights and inputs in bf16 mixed precision (the PyTorch baseline's
 *      precision), plain and checkpointed (again bitwise), printed as the
 *      float32 lines with "sd15 bf16" (run.sh picks both up); and the DPO
 *      reference as dpo train --precision bf16 holds it, frozen bf16 with
 *      an inference plan beside the bf16 policy: its forward time, the
 *      device memory it adds (beyond its plan at most
 *      FROZEN_MAX_BYTES_PER_PARAM per parameter) and its output against the
 *      policy's.
 * Written without a GPU at hand: none of this has run on a device yet; the
 * first run of tests/device/run.sh is its first execution.
 *
 * Needs a GPU: without one it says so and exits 77 (ctest: skipped, never
 * passed); label `device`, which the default suite leaves out. On a machine
 * with a GPU any difference beyond the tolerances is a failure (exit 1).
 *
 * Tolerances: the error is max |gpu - cpu| / max(max |cpu|, 1e-6) over a
 * tensor, i.e. relative to its scale. Both backends compute in float32 (TF32
 * off); they differ in summation orders (cuBLAS/cuDNN vs OpenBLAS, Winograd
 * data gradients on the CPU, flash-attention tiles), about 1e-6 per op,
 * growing through a deep network.
 *   TOL_LAYOUT 1e-6  the layout ops (the same arithmetic in the same order)
 *   TOL_OUT    1e-4  a model's forward output
 *   TOL_GRAD   1e-3  input gradients and all parameter gradients together
 *   TOL_PARAM  1e-2  each parameter's gradient on its own (small tensors such
 *                    as a bias near zero amplify relative differences)
 *   TOL_LOSS   1e-4  the DPO step's loss statistics (relative)
 *   TOL_SAMPLE 1e-3  final latents after 4 guided sampler steps; reward-acc's
 *                    MSE differences (relative to the largest)
 *   TOL_STEP   1e-5  the step's ops: sum of squares over 1M values, the clip factor,
 *                    the DPO loss and its gradient, one AdamW and one Adafactor
 *                    update (the same float32 operations; sums in double in another
 *                    order, sqrt/pow of the device's libm)
 *   TOL_TRAIN  1e-2  dpo train: each logged loss and gradient norm (relative, the
 *                    loss floored at 1e-3), and the mean
 *                    |update_gpu - update_cpu| over the mean |update_cpu| of
 *                    the UNet's weights after 3 AdamW steps (a mean, since
 *                    Adam's first steps are about lr * sign(g): an element
 *                    whose gradient is zero to rounding may flip alone)
 *   TOL_RESUME 1e-6  dpo train on the device stopped after step 2 and resumed,
 *                    against the uninterrupted run: max |diff| / max |w| of the
 *                    weights (the kernels are deterministic, so bitwise is
 *                    expected and printed; the tolerance leaves room for a
 *                    cuDNN algorithm choice that differs between plans)
 * bf16 (2b, 7, 8): both backends round each bf16 activation at the same
 * points, but their float32 sums run in other orders, so a value near a
 * rounding boundary can round the other way (2^-9 relative) and carry that
 * through the following layers; and a CUDA conv with bias rounds twice
 * (the product to bf16 in cuDNN, then + bias) where the CPU rounds once.
 * The tolerances are those of tests/unit/test_models_bf16.c (bf16 against
 * float32), which bound these differences too:
 *   TOL_BF16_OUT  3e-2  the output (scale-relative, as above)
 *   TOL_BF16_GRAD 8e-2  dsample and dencoder (they pass through about twice
 *                       as many rounded tensors); all parameter gradients
 *                       together; and each parameter's on its own unless
 *   MIN_COS_BF16  0.99  its cosine with the CPU's is at least this (a
 *                       gradient is a sum over batch and pixels in which
 *                       terms cancel, a small bias's most of all, so its
 *                       scaled error can exceed that of the values summed:
 *                       the direction is what matters)
 *   TOL_TRAIN_BF16_LOSS 0.15, TOL_TRAIN_BF16_NORM 5e-2, MIN_COS_TRAIN_BF16
 *                 0.9   dpo train --precision bf16: each logged loss and
 *                       gradient norm (relative, as TOL_TRAIN), and the
 *                       cosine of the two runs' weight updates (Adam
 *                       normalises each update to about lr, so a small
 *                       gradient whose sign rounding flips moves its weight
 *                       the other way by 2 lr: the mean measure of TOL_TRAIN
 *                       would count that noise, the cosine the bulk); the
 *                       tolerances of tests/unit/test_train_bf16.c
 *   TOL_IMAGE_LEVELS 8  txt2img's 8-bit images (largest difference of a
 *                       channel value): the decoded latents differ by
 *                       TOL_SAMPLE at most, far below one level, but a value
 *                       on a rounding edge may land one level over, and a
 *                       broken device decode is off by tens
 *   FROZEN_MAX_BYTES_PER_PARAM 3  SD1.5's frozen reference: device memory
 *                       beyond its plan per parameter (bf16 weights take 2,
 *                       float32 biases and norms a little more; a trainable
 *                       bf16 model's float32 masters + bf16 copies take 6)
 * --cpu-as-device runs all of it with a second CPU context standing in for
 * the device: that checks this test itself (its set-up, comparisons and
 * fixtures; every difference is then zero or a rounding), not CUDA; the
 * "device" DPO step and dpo train then take the resident path that CUDA
 * takes (dpo_train_step_make_resident, resident_step), on the CPU. The
 * default suite runs it so (unit.test_cuda_models_cpu, without SD1.5).
 * --sd15-tiny runs the SD1.5 section on the tiny UNet (16x16, 8 tokens):
 * with --cpu-as-device, a check of that section's code in seconds.
 *
 * Usage: test_cuda_models [--no-sd15 | --sd15-only] [--sd15-batch N] [--sd15-tiny] [--cpu-as-device] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "kernels/kernels.h"
#include "models/models.h"
#include "tests/test.h"
#include "tests/train_fixture.h"
#include "trainer/trainer.h"

#define TOL_LAYOUT 1e-6
#define TOL_OUT 1e-4
#define TOL_GRAD 1e-3
#define TOL_PARAM 1e-2
#define TOL_LOSS 1e-4
#define TOL_SAMPLE 1e-3
#define TOL_STEP 1e-5
#define TOL_TRAIN 1e-2
#define TOL_RESUME 1e-6
#define TOL_BF16_OUT 3e-2
#define TOL_BF16_GRAD 8e-2
#define MIN_COS_BF16 0.99
#define TOL_TRAIN_BF16_LOSS 0.15
#define TOL_TRAIN_BF16_NORM 5e-2
#define MIN_COS_TRAIN_BF16 0.9
#define FROZEN_MAX_BYTES_PER_PARAM 3.0
#define TOL_IMAGE_LEVELS 8

static kn_ctx cpu, gpu;
static uint64_t next_stream = 1;
static int n_checked;

/* The tiny UNet of `dpo bench train`: SD1.5's block types at widths 32/64. */
static const char *const tiny_unet_config =
    "{\"attention_head_dim\": 2, \"block_out_channels\": [32, 64], \"cross_attention_dim\": 32,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"layers_per_block\": 1,"
    " \"norm_num_groups\": 8, \"sample_size\": 32, \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}";

static const char *const sd15_unet_config =
    "{\"act_fn\": \"silu\", \"attention_head_dim\": 8, \"block_out_channels\": [320, 640, 1280, 1280],"
    " \"center_input_sample\": false, \"cross_attention_dim\": 768,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
    " \"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4,"
    " \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, \"norm_num_groups\": 32,"
    " \"out_channels\": 4, \"sample_size\": 64,"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";

/* ------------------------------------------------------------ helpers */

static float *host_random(size_t n, float scale) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  dpo_rng_normal_fill(4242, next_stream++, 0, x, n);
  for (size_t i = 0; i < n; i++) x[i] *= scale;
  return x;
}

static float *device_copy(const void *x, size_t bytes) {
  float *d = kn_malloc(&gpu, bytes ? bytes : 1);
  if (d && bytes) kn_upload(&gpu, d, x, bytes);
  return d;
}

static float *device_download(const float *d, size_t n) {
  float *h = malloc(sizeof(float) * (n ? n : 1));
  kn_download(&gpu, h, d, sizeof(float) * n);
  return h;
}

/* Relative error of got against want (see the header); NaN gives infinity. */
static double rel_error(const float *want, const float *got, size_t n, size_t *worst) {
  double max_ref = 0.0, max_diff = 0.0;
  *worst = 0;
  for (size_t i = 0; i < n; i++) {
    double r = fabs((double)want[i]);
    if (r > max_ref) max_ref = r;
    double d = fabs((double)got[i] - (double)want[i]);
    if (!(d <= max_diff)) {
      max_diff = isnan(d) ? INFINITY : d;
      *worst = i;
    }
  }
  return max_diff / (max_ref > 1e-6 ? max_ref : 1e-6);
}

/* Compares host values (the CPU's) with host values from the device. */
static void compare_host(const char *what, const float *want, const float *got, size_t n, double tol) {
  size_t worst;
  double rel = rel_error(want, got, n, &worst);
  int ok = rel <= tol;
  printf("  %-40s n=%-9zu rel.err=%-10.3g tol=%-7.0e %s\n", what, n, rel, tol, ok ? "ok" : "FAIL");
  if (!ok)
    test_fail(__FILE__, __LINE__, "%s: element %zu cpu %.9g gpu %.9g (rel.err %.3g > %.0e)", what, worst,
              (double)want[worst], (double)got[worst], rel, tol);
  n_checked++;
}

/* Compares host values with device values. */
static void compare(const char *what, const float *want, const float *device, size_t n, double tol) {
  dpo_error err = {0};
  float *got = device_download(device, n);
  if (kn_ctx_check(&gpu, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
  else compare_host(what, want, got, n, tol);
  free(got);
}

static int all_finite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

/* --------------------------------------------------------- layout ops */

static void test_layout_ops(void) {
  printf("layout ops through kn_<op>\n");
  int B = 2, C = 12, A = 37;
  size_t n = (size_t)B * C * A;
  float *x = host_random(n, 1.0f), *v = host_random((size_t)B * C, 1.0f), *g = host_random(n, 1.0f);
  float *dx = device_copy(x, n * sizeof(float)), *dv = device_copy(v, (size_t)B * C * sizeof(float));
  float *dg = device_copy(g, n * sizeof(float));
  float *out = calloc(n, sizeof(float)), *dout = kn_malloc(&gpu, n * sizeof(float));

  kn_transpose_forward(&cpu, out, x, B, C, A);
  kn_transpose_forward(&gpu, dout, dx, B, C, A);
  compare("transpose forward", out, dout, n, TOL_LAYOUT);
  kn_transpose_backward(&cpu, g, out, B, C, A); /* g += transpose back */
  kn_transpose_backward(&gpu, dg, dout, B, C, A);
  compare("transpose backward (accumulates)", g, dg, n, TOL_LAYOUT);

  kn_add_channel_forward(&cpu, x, v, B, C, A);
  kn_add_channel_forward(&gpu, dx, dv, B, C, A);
  compare("add_channel forward", x, dx, n, TOL_LAYOUT);
  kn_add_channel_backward(&cpu, v, g, B, C, A);
  kn_add_channel_backward(&gpu, dv, dg, B, C, A);
  compare("add_channel backward", v, dv, (size_t)B * C, TOL_LAYOUT);

  kn_axpy(&cpu, x, 2.0f, g, n);
  kn_axpy(&gpu, dx, 2.0f, dg, n);
  compare("axpy", x, dx, n, TOL_LAYOUT);
  kn_affine_forward(&cpu, out, x, 2.0f, -1.0f, n);
  kn_affine_forward(&gpu, dout, dx, 2.0f, -1.0f, n);
  compare("affine", out, dout, n, TOL_LAYOUT);

  free(x), free(v), free(g), free(out);
  kn_free(gpu.backend, dx), kn_free(gpu.backend, dv);
  kn_free(gpu.backend, dg), kn_free(gpu.backend, dout);
}

/* ---------------------------------------------- training step ops */

static void test_step_ops(void) {
  printf("training step ops through kn_<op> (loss, clipping, optimizers)\n");
  dpo_error err = {0};
  /* Sum of squares over a large tensor, the clip factor from two of them,
   * and the scaling by it (a factor read on the device). */
  size_t n = 1u << 20;
  float *x = host_random(n, 0.01f), *dx = device_copy(x, n * sizeof(float));
  float sq[2], out[2], *dsq = kn_malloc(&gpu, 2 * sizeof(float)), *dout = kn_malloc(&gpu, 2 * sizeof(float));
  kn_sum_squares(&cpu, sq, x, n);
  kn_sum_squares(&gpu, dsq, dx, n);
  kn_sum_squares(&cpu, sq + 1, x, n / 3);
  kn_sum_squares(&gpu, dsq + 1, dx, n / 3);
  compare("sum of squares", sq, dsq, 2, TOL_STEP);
  kn_clip_coefficient(&cpu, out, sq, 2, 1.0);
  kn_clip_coefficient(&gpu, dout, dsq, 2, 1.0);
  compare("clip norm and factor", out, dout, 2, TOL_STEP);
  kn_scale_by(&cpu, x, out + 1, n);
  kn_scale_by(&gpu, dx, dout + 1, n);
  compare("scale by the clip factor", x, dx, n, TOL_STEP);

  /* The DPO loss of 6 pairs with ties, its gradient and statistics. */
  enum { P = 6 };
  float mse[4 * P], label[P] = {1, 0.5f, 1, 1, 0.5f, 1};
  for (int i = 0; i < 4 * P; i++) mse[i] = 0.2f + 0.01f * sinf((float)i);
  float *dmse = device_copy(mse, sizeof mse), *dlabel = device_copy(label, sizeof label);
  float res[1 + 2 * P + 4], *dres = kn_malloc(&gpu, sizeof res);
  kn_dpo_loss(&cpu, res, res + 1, res + 1 + P, res + 1 + 2 * P, mse, mse + P, mse + 2 * P, mse + 3 * P, label, P,
              5000);
  kn_dpo_loss(&gpu, dres, dres + 1, dres + 1 + P, dres + 1 + 2 * P, dmse, dmse + P, dmse + 2 * P, dmse + 3 * P,
              dlabel, P, 5000);
  compare("dpo loss, gradient, stats", res, dres, 1 + 2 * P + 4, TOL_STEP);

  /* One AdamW and one Adafactor (factored [2, 48, 64]) update. */
  size_t m = 2 * 48 * 64;
  float *p = host_random(m, 1.0f), *g = host_random(m, 0.1f), *m1 = calloc(m, sizeof(float));
  float *v = calloc(m, sizeof(float)), *row = calloc(2 * 48, sizeof(float)), *col = calloc(2 * 64, sizeof(float));
  float *dp = device_copy(p, m * sizeof(float)), *dg = device_copy(g, m * sizeof(float));
  float *dm1 = kn_malloc(&gpu, m * sizeof(float)), *dv = kn_malloc(&gpu, m * sizeof(float));
  float *drow = kn_malloc(&gpu, 2 * 48 * sizeof(float)), *dcol = kn_malloc(&gpu, 2 * 64 * sizeof(float));
  for (int step = 1; step <= 2; step++) {
    kn_adamw_update(&cpu, p, NULL, g, m1, v, m, step, 1e-3, 0.9, 0.999, 1e-8, 1e-2);
    kn_adamw_update(&gpu, dp, NULL, dg, dm1, dv, m, step, 1e-3, 0.9, 0.999, 1e-8, 1e-2);
  }
  compare("adamw, 2 updates", p, dp, m, TOL_STEP);
  for (int step = 1; step <= 2; step++) {
    kn_adafactor_update(&cpu, p, NULL, g, NULL, NULL, row, col, 2, 48, 64, step, 1e-3, 1e-30, 1.0, -0.8, 0.0, 0.0);
    kn_adafactor_update(&gpu, dp, NULL, dg, NULL, NULL, drow, dcol, 2, 48, 64, step, 1e-3, 1e-30, 1.0, -0.8, 0.0, 0.0);
  }
  compare("adafactor (factored), 2 updates", p, dp, m, TOL_STEP);
  compare("adafactor row moments", row, drow, 2 * 48, TOL_STEP);
  if (kn_ctx_check(&gpu, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "step ops: %s", err.msg);
  free(x), free(p), free(g), free(m1), free(v), free(row), free(col);
  kn_free(gpu.backend, dx), kn_free(gpu.backend, dsq), kn_free(gpu.backend, dout), kn_free(gpu.backend, dmse);
  kn_free(gpu.backend, dlabel), kn_free(gpu.backend, dres), kn_free(gpu.backend, dp), kn_free(gpu.backend, dg);
  kn_free(gpu.backend, dm1), kn_free(gpu.backend, dv), kn_free(gpu.backend, drow), kn_free(gpu.backend, dcol);
}

/* 1 when `bytes` of two device buffers differ (or the device failed). */
static int bits_differ(const void *want_device, const void *got_device, size_t bytes) {
  dpo_error err = {0};
  unsigned char *want = malloc(bytes ? bytes : 1), *got = malloc(bytes ? bytes : 1);
  kn_download(&gpu, want, want_device, bytes);
  kn_download(&gpu, got, got_device, bytes);
  int differ = kn_ctx_check(&gpu, &err) != DPO_OK || memcmp(want, got, bytes) != 0;
  free(want);
  free(got);
  return differ;
}

static void report_bits(const char *what, size_t bytes, int bad) {
  printf("  %-40s bytes=%-9zu %s\n", what, bytes, bad < 0 ? "bitwise ok" : "FAIL");
  if (bad >= 0) test_fail(__FILE__, __LINE__, "%s: tensor %d: the multi-tensor op differs from the per-tensor op", what, bad);
  n_checked++;
}

/* Device tensors want[k] against got[k] (count[k] elements each, k < K),
 * bit for bit; pairs with a NULL are skipped. */
#define COMPARE_BITS(what, want, got, count, K)                                      \
  do {                                                                               \
    size_t bytes_ = 0;                                                               \
    int bad_ = -1;                                                                   \
    for (int k_ = 0; k_ < (K); k_++) {                                               \
      if (!(want)[k_] || !(got)[k_]) continue;                                       \
      size_t b_ = (count)[k_] * sizeof *(want)[k_];                                  \
      bytes_ += b_;                                                                  \
      if (bad_ < 0 && bits_differ((want)[k_], (got)[k_], b_)) bad_ = k_;             \
    }                                                                                \
    report_bits(what, bytes_, bad_);                                                 \
  } while (0)

/* The multi-tensor ops (kn_param_table, kn_multi_*) on the device against
 * the per-tensor ops on the device, bit for bit (the same arithmetic over
 * the same partitions), and against the CPU within TOL_STEP, as the
 * per-tensor ops are: tensors of one value up to past the sums' 256 x 256
 * grid and many multi-tensor work items, bf16 copies on every other. */
static void test_multi_step_ops(void) {
  printf("multi-tensor clipping and AdamW through kn_multi_<op>\n");
  enum { K = 6 };
  const size_t numel[K] = {1, 320, 2049, 65537, 300001, (1u << 20) + 3};
  float *hp[K], *hg[K], *hm[K], *hv[K];                 /* the CPU's */
  float *tp[K], *tg[K], *tm[K], *tv[K];                 /* device, per-tensor ops */
  float *up[K], *ug[K], *um[K], *uv[K];                 /* device, multi-tensor ops */
  kn_bf16 *tb[K], *ub[K];
  for (int k = 0; k < K; k++) {
    size_t n = numel[k], bytes = n * sizeof(float);
    hp[k] = host_random(n, 1.0f);
    hg[k] = host_random(n, 0.01f * (float)(k + 1));
    hm[k] = calloc(n, sizeof(float));
    hv[k] = calloc(n, sizeof(float));
    tp[k] = device_copy(hp[k], bytes), up[k] = device_copy(hp[k], bytes);
    tg[k] = device_copy(hg[k], bytes), ug[k] = device_copy(hg[k], bytes);
    tm[k] = kn_malloc(&gpu, bytes), um[k] = kn_malloc(&gpu, bytes);
    tv[k] = kn_malloc(&gpu, bytes), uv[k] = kn_malloc(&gpu, bytes);
    tb[k] = k % 2 ? NULL : kn_malloc(&gpu, n * sizeof(kn_bf16));
    ub[k] = k % 2 ? NULL : kn_malloc(&gpu, n * sizeof(kn_bf16));
  }
  dpo_error err = {0};
  kn_param_table *t = NULL;
  if (kn_param_table_create(&gpu, K, numel, up, ub, ug, um, uv, &t, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "multi-tensor table: %s", err.msg);
    return;
  }
  float sq[K], out[2], *dsq_t = kn_malloc(&gpu, sizeof sq), *dsq_u = kn_malloc(&gpu, sizeof sq);
  float *dout_t = kn_malloc(&gpu, sizeof out), *dout_u = kn_malloc(&gpu, sizeof out), one = 1.0f;
  float *done = device_copy(&one, sizeof one);
  for (int k = 0; k < K; k++) {
    kn_sum_squares(&cpu, sq + k, hg[k], numel[k]);
    kn_sum_squares(&gpu, dsq_t + k, tg[k], numel[k]);
  }
  kn_multi_sum_squares(&gpu, dsq_u, t);
  size_t n_sq = K, n_out = 2;
  COMPARE_BITS("multi sum of squares", &dsq_t, &dsq_u, &n_sq, 1);
  compare("multi sum of squares vs cpu", sq, dsq_u, K, TOL_STEP);

  /* Scaling by exactly 1 touches nothing; then by a clip factor below 1. */
  kn_multi_scale_by(&gpu, t, done);
  COMPARE_BITS("multi scale by 1", tg, ug, numel, K);
  double max_norm = 0.5 * sqrt((double)sq[K - 1]);
  kn_clip_coefficient(&cpu, out, sq, K, max_norm);
  kn_clip_coefficient(&gpu, dout_t, dsq_t, K, max_norm);
  kn_clip_coefficient(&gpu, dout_u, dsq_u, K, max_norm);
  COMPARE_BITS("clip factor from the multi sums", &dout_t, &dout_u, &n_out, 1);
  for (int k = 0; k < K; k++) {
    kn_scale_by(&cpu, hg[k], out + 1, numel[k]);
    kn_scale_by(&gpu, tg[k], dout_t + 1, numel[k]);
  }
  kn_multi_scale_by(&gpu, t, dout_u + 1);
  COMPARE_BITS("multi scale by the clip factor", tg, ug, numel, K);
  compare("multi scale by vs cpu", hg[K - 1], ug[K - 1], numel[K - 1], TOL_STEP);

  for (int step = 1; step <= 2; step++) {
    for (int k = 0; k < K; k++) {
      kn_adamw_update(&cpu, hp[k], NULL, hg[k], hm[k], hv[k], numel[k], step, 1e-3, 0.9, 0.999, 1e-8, 1e-2);
      kn_adamw_update(&gpu, tp[k], tb[k], tg[k], tm[k], tv[k], numel[k], step, 1e-3, 0.9, 0.999, 1e-8, 1e-2);
    }
    kn_multi_adamw_update(&gpu, t, step, 1e-3, 0.9, 0.999, 1e-8, 1e-2);
  }
  COMPARE_BITS("multi adamw, 2 updates: parameters", tp, up, numel, K);
  COMPARE_BITS("multi adamw: exp_avg", tm, um, numel, K);
  COMPARE_BITS("multi adamw: exp_avg_sq", tv, uv, numel, K);
  COMPARE_BITS("multi adamw: bf16 copies", tb, ub, numel, K);
  for (int k = 0; k < K; k += K - 1) compare("multi adamw vs cpu, 2 updates", hp[k], up[k], numel[k], TOL_STEP);
  if (kn_ctx_check(&gpu, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "multi-tensor ops: %s", err.msg);
  kn_param_table_free(t);
  for (int k = 0; k < K; k++) {
    free(hp[k]), free(hg[k]), free(hm[k]), free(hv[k]);
    kn_free(gpu.backend, tp[k]), kn_free(gpu.backend, tg[k]), kn_free(gpu.backend, tm[k]);
    kn_free(gpu.backend, tv[k]), kn_free(gpu.backend, tb[k]);
    kn_free(gpu.backend, up[k]), kn_free(gpu.backend, ug[k]), kn_free(gpu.backend, um[k]);
    kn_free(gpu.backend, uv[k]), kn_free(gpu.backend, ub[k]);
  }
  kn_free(gpu.backend, dsq_t), kn_free(gpu.backend, dsq_u), kn_free(gpu.backend, dout_t);
  kn_free(gpu.backend, dout_u), kn_free(gpu.backend, done);
}

/* ------------------------------------------------------------- models */

/* Every parameter gradient of a model: device against CPU, each on its own
 * (TOL_PARAM) and all together (TOL_GRAD). get(i) views parameter i. */
typedef void (*param_getter)(const void *model, int i, dpo_param *out);

static void compare_param_grads(const char *what, const void *cpu_model, const void *gpu_model, int n_params,
                                param_getter get) {
  size_t total = 0;
  for (int i = 0; i < n_params; i++) {
    dpo_param p;
    get(cpu_model, i, &p);
    total += p.numel;
  }
  float *want = malloc(total * sizeof(float)), *got = malloc(total * sizeof(float));
  size_t at = 0;
  int n_bad = 0;
  for (int i = 0; i < n_params; i++) {
    dpo_param pc, pg;
    get(cpu_model, i, &pc);
    get(gpu_model, i, &pg);
    memcpy(want + at, pc.grad, pc.numel * sizeof(float));
    kn_download(&gpu, got + at, pg.grad, pg.numel * sizeof(float));
    size_t worst;
    double rel = rel_error(want + at, got + at, pc.numel, &worst);
    if (!(rel <= TOL_PARAM)) {
      if (n_bad++ < 10)
        test_fail(__FILE__, __LINE__, "%s: gradient of %s: element %zu cpu %.9g gpu %.9g (rel.err %.3g > %.0e)",
                  what, pc.name, worst, (double)want[at + worst], (double)got[at + worst], rel, TOL_PARAM);
    }
    at += pc.numel;
  }
  printf("  %-40s %d parameters, %d beyond %.0e on their own\n", what, n_params, n_bad, TOL_PARAM);
  compare_host(what, want, got, total, TOL_GRAD);
  free(want);
  free(got);
}

static void unet_param_get(const void *m, int i, dpo_param *out) { dpo_unet_param((const dpo_unet *)m, i, out); }
static void clip_param_get(const void *m, int i, dpo_param *out) { dpo_clip_param((const dpo_clip *)m, i, out); }

static dpo_unet *tiny_unet(uint64_t seed) {
  json_t *cfg = json_loads(tiny_unet_config, 0, NULL);
  dpo_unet *u = NULL;
  dpo_error err = {0};
  if (!cfg || dpo_unet_create(cfg, &u, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "tiny unet: %s", err.msg);
  json_decref(cfg);
  if (u) dpo_unet_init_random(u, seed);
  return u;
}

static void test_unet(void) {
  printf("tiny UNet forward + backward\n");
  int B = 2, H = 16, W = 16, T = 8, D = 32, C = 4;
  size_t ns = (size_t)B * C * H * W, ne = (size_t)B * T * D;
  dpo_unet *uc = tiny_unet(3), *ug = tiny_unet(3);
  if (!uc || !ug) return;
  dpo_error err = {0};
  CHECK_INT(dpo_unet_plan(uc, &cpu, B, H, W, T, 1, &err), DPO_OK);
  CHECK_INT(dpo_unet_plan(ug, &gpu, B, H, W, T, 1, &err), DPO_OK);
  if (err.code) {
    fprintf(stderr, "plan: %s\n", err.msg);
    return;
  }
  float *sample = host_random(ns, 1.0f), *enc = host_random(ne, 1.0f), *dout = host_random(ns, 0.1f);
  float t[2] = {999.0f, 17.0f};
  float *dsample = calloc(ns, sizeof(float)), *denc = calloc(ne, sizeof(float));
  float *g_sample = device_copy(sample, ns * sizeof(float)), *g_enc = device_copy(enc, ne * sizeof(float));
  float *g_t = device_copy(t, sizeof t), *g_dout = device_copy(dout, ns * sizeof(float));
  float *g_dsample = kn_malloc(&gpu, ns * sizeof(float)), *g_denc = kn_malloc(&gpu, ne * sizeof(float));

  dpo_unet_zero_grads(uc);
  dpo_unet_zero_grads(ug);
  const float *oc = dpo_unet_forward(uc, &cpu, sample, t, enc);
  const float *og = dpo_unet_forward(ug, &gpu, g_sample, g_t, g_enc);
  compare("unet output", oc, og, ns, TOL_OUT);
  dpo_unet_backward(uc, &cpu, dout, dsample, denc);
  dpo_unet_backward(ug, &gpu, g_dout, g_dsample, g_denc);
  compare("unet d sample", dsample, g_dsample, ns, TOL_GRAD);
  compare("unet d encoder_hidden_states", denc, g_denc, ne, TOL_GRAD);
  compare_param_grads("unet parameter gradients", uc, ug, dpo_unet_n_params(uc), unet_param_get);

  /* A second forward on the device reuses the plan and gives the same output
   * bit for bit (the backend is deterministic: no atomics). */
  float *first = device_download(og, ns);
  og = dpo_unet_forward(ug, &gpu, g_sample, g_t, g_enc);
  float *second = device_download(og, ns);
  CHECK(memcmp(first, second, ns * sizeof(float)) == 0);

  /* Save fetches the device values into the host block: change the first
   * parameter on both sides (w += its gradient), save the device model and
   * read it back. */
  dpo_param a, b;
  dpo_unet_param(uc, 0, &a);
  dpo_unet_param(ug, 0, &b);
  kn_axpy(&cpu, a.data, 1.0f, a.grad, a.numel);
  kn_axpy(&gpu, b.data, 1.0f, b.grad, b.numel);
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/unet_from_device", test_tmpdir());
  CHECK_INT(dpo_unet_save(ug, dir, &err), DPO_OK);
  dpo_unet *back = NULL;
  CHECK_INT(dpo_unet_load(dir, &back, &err), DPO_OK);
  if (back) {
    dpo_unet_param(back, 0, &b);
    CHECK(a.numel == b.numel);
    compare_host("unet saved from the device (w + dw)", a.data, b.data, a.numel, TOL_GRAD);
    dpo_unet_free(back);
  }
  free(first), free(second), free(sample), free(enc), free(dout), free(dsample), free(denc);
  kn_free(gpu.backend, g_sample), kn_free(gpu.backend, g_enc), kn_free(gpu.backend, g_t);
  kn_free(gpu.backend, g_dout), kn_free(gpu.backend, g_dsample), kn_free(gpu.backend, g_denc);
  dpo_unet_free(uc);
  dpo_unet_free(ug);
}

/* ------------------------------------------------------- bf16 models */

/* Every parameter gradient of two bf16 UNets, device against CPU: each
 * parameter points the same way (cosine >= MIN_COS_BF16) or is within
 * TOL_BF16_GRAD of its own scale, and all together within TOL_BF16_GRAD of
 * the largest. */
static void compare_param_grads_bf16(const char *what, const dpo_unet *uc, const dpo_unet *ug) {
  int n_params = dpo_unet_n_params(uc), n_bad = 0;
  size_t total = 0;
  for (int i = 0; i < n_params; i++) {
    dpo_param p;
    dpo_unet_param(uc, i, &p);
    total += p.numel;
  }
  float *want = malloc(total * sizeof(float)), *got = malloc(total * sizeof(float));
  size_t at = 0;
  double worst_cos = 2.0; /* above any cosine: the first parameter sets it */
  const char *worst_name = "";
  for (int i = 0; i < n_params; i++) {
    dpo_param pc, pg;
    dpo_unet_param(uc, i, &pc);
    dpo_unet_param(ug, i, &pg);
    memcpy(want + at, pc.grad, pc.numel * sizeof(float));
    kn_download(&gpu, got + at, pg.grad, pg.numel * sizeof(float));
    size_t worst;
    double rel = rel_error(want + at, got + at, pc.numel, &worst), cs = test_cosine(want + at, got + at, pc.numel);
    if (cs < worst_cos) worst_cos = cs, worst_name = pc.name;
    if (!(cs >= MIN_COS_BF16) && !(rel <= TOL_BF16_GRAD) && n_bad++ < 10)
      test_fail(__FILE__, __LINE__, "%s: gradient of %s: cosine %.5f, rel.err %.3g (element %zu cpu %.9g gpu %.9g)",
                what, pc.name, cs, rel, worst, (double)want[at + worst], (double)got[at + worst]);
    at += pc.numel;
  }
  printf("  %-40s %d parameters, %d with cosine < %.2f and rel.err > %.0e; lowest cosine %.5f (%s)\n", what,
         n_params, n_bad, MIN_COS_BF16, TOL_BF16_GRAD, worst_cos, worst_name);
  compare_host(what, want, got, total, TOL_BF16_GRAD);
  free(want);
  free(got);
}

static dpo_unet *tiny_unet_bf16(uint64_t seed, int frozen) {
  dpo_unet *u = tiny_unet(seed);
  dpo_error err = {0};
  if (u && dpo_unet_set_precision(u, KN_BF16, frozen, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "tiny unet bf16: %s", err.msg);
    dpo_unet_free(u);
    return NULL;
  }
  return u;
}

/* Bytes that a placed model's parameter values take (float32 values and bf16
 * copies, as its views show them; gradients aside). */
static size_t param_value_bytes(const dpo_unet *u) {
  size_t bytes = 0;
  for (int i = 0; i < dpo_unet_n_params(u); i++) {
    dpo_param p;
    dpo_unet_param(u, i, &p);
    if (p.data) bytes += p.numel * sizeof(float);
    if (p.data_bf16) bytes += p.numel * sizeof(kn_bf16);
  }
  return bytes;
}

/* The tiny UNet in bf16 mixed precision on both backends (the CPU's bf16
 * ops, the reference, against the CUDA kernels); then a frozen bf16 model
 * on the device against a trainable one planned alike. */
static void test_unet_bf16(void) {
  printf("tiny UNet forward + backward in bf16 mixed precision (both models KN_BF16)\n");
  int B = 2, H = 16, W = 16, T = 8, D = 32, C = 4;
  size_t ns = (size_t)B * C * H * W, ne = (size_t)B * T * D;
  dpo_unet *uc = tiny_unet_bf16(3, 0), *ug = tiny_unet_bf16(3, 0);
  if (!uc || !ug) {
    dpo_unet_free(uc), dpo_unet_free(ug);
    return;
  }
  dpo_error err = {0};
  CHECK_INT(dpo_unet_plan(uc, &cpu, B, H, W, T, 1, &err), DPO_OK);
  CHECK_INT(dpo_unet_plan(ug, &gpu, B, H, W, T, 1, &err), DPO_OK);
  if (err.code) {
    fprintf(stderr, "plan: %s\n", err.msg);
    dpo_unet_free(uc), dpo_unet_free(ug);
    return;
  }
  CHECK_INT(dpo_unet_precision(ug), KN_BF16);
  float *sample = host_random(ns, 1.0f), *enc = host_random(ne, 1.0f), *dout = host_random(ns, 0.1f);
  float t[2] = {999.0f, 17.0f};
  float *dsample = calloc(ns, sizeof(float)), *denc = calloc(ne, sizeof(float));
  float *g_sample = device_copy(sample, ns * sizeof(float)), *g_enc = device_copy(enc, ne * sizeof(float));
  float *g_t = device_copy(t, sizeof t), *g_dout = device_copy(dout, ns * sizeof(float));
  float *g_dsample = kn_malloc(&gpu, ns * sizeof(float)), *g_denc = kn_malloc(&gpu, ne * sizeof(float));

  dpo_unet_zero_grads(uc);
  dpo_unet_zero_grads(ug);
  const float *oc = dpo_unet_forward(uc, &cpu, sample, t, enc);
  const float *og = dpo_unet_forward(ug, &gpu, g_sample, g_t, g_enc);
  float *out_trained = og ? device_download(og, ns) : NULL;
  if (oc && out_trained) compare_host("unet bf16 output", oc, out_trained, ns, TOL_BF16_OUT);
  dpo_unet_backward(uc, &cpu, dout, dsample, denc);
  dpo_unet_backward(ug, &gpu, g_dout, g_dsample, g_denc);
  compare("unet bf16 d sample", dsample, g_dsample, ns, TOL_BF16_GRAD);
  compare("unet bf16 d encoder_hidden_states", denc, g_denc, ne, TOL_BF16_GRAD);
  compare_param_grads_bf16("unet bf16 parameter gradients", uc, ug);

  /* Frozen: the same weights held as bf16 alone compute the same bits as a
   * trainable bf16 model planned alike (inference), and refuse a training
   * plan. On a device its weights have no float32 values (data NULL). */
  dpo_unet *ui = tiny_unet_bf16(3, 0), *uz = tiny_unet_bf16(3, 1);
  if (ui && uz) {
    CHECK_INT(dpo_unet_plan(ui, &gpu, B, H, W, T, 0, &err), DPO_OK);
    CHECK_INT(dpo_unet_plan(uz, &gpu, B, H, W, T, 0, &err), DPO_OK);
    const float *oi = err.code ? NULL : dpo_unet_forward(ui, &gpu, g_sample, g_t, g_enc);
    float *out_i = oi ? device_download(oi, ns) : NULL;
    const float *oz = err.code ? NULL : dpo_unet_forward(uz, &gpu, g_sample, g_t, g_enc);
    float *out_z = oz ? device_download(oz, ns) : NULL;
    CHECK_INT(kn_ctx_check(&gpu, &err), DPO_OK);
    int same = out_i && out_z && memcmp(out_i, out_z, ns * sizeof(float)) == 0;
    printf("  unet bf16 frozen output equals the trainable model's (inference plans) bit for bit: %s\n",
           same ? "yes" : "NO");
    CHECK(same);
    n_checked++;
    CHECK_INT(dpo_unet_plan(uz, &gpu, B, H, W, T, 1, &err), DPO_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "frozen");
    if (out_i && out_trained) {
      size_t worst;
      double rel = rel_error(out_trained, out_i, ns, &worst);
      printf("  unet bf16 inference plan vs training plan output: rel.err=%.3g%s\n", rel,
             rel == 0.0 ? " (bitwise)" : "");
      CHECK(rel <= TOL_BF16_OUT);
    }
    size_t bytes_i = param_value_bytes(ui), bytes_z = param_value_bytes(uz);
    int n_weights = 0, n_bf16_only = 0;
    for (int i = 0; i < dpo_unet_n_params(uz); i++) {
      dpo_param p;
      dpo_unet_param(uz, i, &p);
      if (p.ndim < 2) continue;
      n_weights++;
      if (!p.data && p.data_bf16) n_bf16_only++;
    }
    printf("  unet bf16 frozen: %d of %d weights held as bf16 alone; parameter values %.1f KiB vs %.1f KiB "
           "trainable (%s)\n",
           n_bf16_only, n_weights, bytes_z / 1024.0, bytes_i / 1024.0,
           gpu.backend == KN_BACKEND_CUDA ? "device" : "the CPU stand-in keeps float32 values");
    if (gpu.backend == KN_BACKEND_CUDA) {
      CHECK_INT(n_bf16_only, n_weights);
      CHECK(bytes_z * 10 < bytes_i * 4); /* bf16 alone: a third of float32 + bf16, biases and norms aside */
    }
    free(out_i), free(out_z);
  }
  dpo_unet_free(ui), dpo_unet_free(uz);

  free(out_trained), free(sample), free(enc), free(dout), free(dsample), free(denc);
  kn_free(gpu.backend, g_sample), kn_free(gpu.backend, g_enc), kn_free(gpu.backend, g_t);
  kn_free(gpu.backend, g_dout), kn_free(gpu.backend, g_dsample), kn_free(gpu.backend, g_denc);
  dpo_unet_free(uc);
  dpo_unet_free(ug);
}

static void test_clip(void) {
  printf("tiny CLIP text encoder forward + backward\n");
  dpo_error err = {0};
  dpo_clip *mc = NULL, *mg = NULL;
  char path[4200];
  snprintf(path, sizeof path, "%s", test_source_path("tests/fixtures/pipelines/tiny_sd/text_encoder"));
  if (dpo_clip_load(path, &mc, &err) != DPO_OK || dpo_clip_load(path, &mg, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "clip: %s", err.msg);
    dpo_clip_free(mc);
    return;
  }
  const dpo_clip_config *c = dpo_clip_get_config(mc);
  int B = 2, T = c->max_position_embeddings, Dm = c->hidden_size;
  size_t rows = (size_t)B * T, nh = rows * Dm;
  CHECK_INT(dpo_clip_plan(mc, &cpu, B, T, 0, 1, &err), DPO_OK);
  CHECK_INT(dpo_clip_plan(mg, &gpu, B, T, 0, 1, &err), DPO_OK);
  int32_t *ids = malloc(rows * sizeof *ids);
  for (size_t i = 0; i < rows; i++) ids[i] = (int32_t)((i * 37 + 5) % (size_t)c->vocab_size);
  const float *hc = NULL, *hg = NULL;
  CHECK_INT(dpo_clip_forward(mc, &cpu, ids, &hc, &err), DPO_OK);
  CHECK_INT(dpo_clip_forward(mg, &gpu, ids, &hg, &err), DPO_OK); /* ids are host memory on both */
  if (hc && hg) compare("clip last_hidden_state", hc, hg, nh, TOL_OUT);
  float *dh = host_random(nh, 0.1f), *g_dh = device_copy(dh, nh * sizeof(float));
  dpo_clip_zero_grads(mc);
  dpo_clip_zero_grads(mg);
  dpo_clip_backward(mc, &cpu, dh);
  dpo_clip_backward(mg, &gpu, g_dh);
  compare_param_grads("clip parameter gradients", mc, mg, dpo_clip_n_params(mc), clip_param_get);
  free(ids), free(dh);
  kn_free(gpu.backend, g_dh);
  dpo_clip_free(mc);
  dpo_clip_free(mg);
}

/* ----------------------------------------------------------- DPO step */

static void compare_stat(const char *what, double want, double got) {
  double rel = fabs(got - want) / (fabs(want) > 1e-6 ? fabs(want) : 1e-6);
  int ok = rel <= TOL_LOSS;
  printf("  dpo loss %-31s cpu %-14.8g gpu %-14.8g rel.err=%-10.3g %s\n", what, want, got, rel, ok ? "ok" : "FAIL");
  if (!ok) test_fail(__FILE__, __LINE__, "dpo step %s: cpu %.9g gpu %.9g", what, want, got);
  n_checked++;
}

static void test_dpo_step(void) {
  printf("tiny Diffusion-DPO step (reference forward, policy forward + backward)\n");
  int B = 2, HW = 16, T = 8;
  dpo_unet *pc = tiny_unet(5), *rc = tiny_unet(6), *pg = tiny_unet(5), *rg = tiny_unet(6);
  if (!pc || !rc || !pg || !rg) return;
  dpo_scheduler_config sc;
  dpo_scheduler_config_default(&sc, DPO_SCHED_DDPM);
  sc.beta_start = 0.00085;
  sc.beta_end = 0.012;
  snprintf(sc.beta_schedule, sizeof sc.beta_schedule, "scaled_linear");
  dpo_train_step sc_cpu, sc_gpu;
  dpo_error err = {0};
  CHECK_INT(dpo_train_step_init(&sc_cpu, pc, rc, &sc, &cpu, B, HW, HW, T, &err), DPO_OK);
  CHECK_INT(dpo_train_step_init(&sc_gpu, pg, rg, &sc, &gpu, B, HW, HW, T, &err), DPO_OK);
  /* The device's path (resident from init on CUDA; on the CPU stand-in, made so). */
  CHECK_INT(dpo_train_step_make_resident(&sc_gpu, &err), DPO_OK);
  CHECK(sc_gpu.resident);
  if (err.code) {
    fprintf(stderr, "step init: %s\n", err.msg);
    return;
  }
  size_t per = (size_t)sc_cpu.C * HW * HW, per_text = (size_t)T * sc_cpu.D;
  float *x0_w = host_random(B * per, 1.0f), *x0_l = host_random(B * per, 1.0f);
  float *noise = host_random(B * per, 1.0f), *text = host_random(B * per_text, 1.0f);
  float *dtext_c = calloc(B * per_text, sizeof(float)), *dtext_g = calloc(B * per_text, sizeof(float));
  int t[2] = {500, 40};
  dpo_loss_stats stc, stg;
  dpo_unet_zero_grads(pc);
  dpo_unet_zero_grads(pg);
  CHECK_INT(dpo_train_step_run(&sc_cpu, x0_w, x0_l, text, noise, t, NULL, 0, 5000, 1.0, dtext_c, &stc, &err), DPO_OK);
  CHECK_INT(dpo_train_step_run(&sc_gpu, x0_w, x0_l, text, noise, t, NULL, 0, 5000, 1.0, dtext_g, &stg, &err), DPO_OK);
  CHECK_INT(kn_ctx_check(&gpu, &err), DPO_OK);
  compare_stat("loss", stc.loss, stg.loss);
  compare_stat("model mse w", stc.model_mse_w, stg.model_mse_w);
  compare_stat("model mse l", stc.model_mse_l, stg.model_mse_l);
  compare_stat("ref mse w", stc.ref_mse_w, stg.ref_mse_w);
  compare_stat("ref mse l", stc.ref_mse_l, stg.ref_mse_l);
  CHECK(stc.implicit_acc == stg.implicit_acc);
  compare_host("dpo step d text", dtext_c, dtext_g, B * per_text, TOL_GRAD);
  compare_param_grads("dpo step policy gradients", pc, pg, dpo_unet_n_params(pc), unet_param_get);
  dpo_train_step_free(&sc_cpu);
  dpo_train_step_free(&sc_gpu);
  free(x0_w), free(x0_l), free(noise), free(text), free(dtext_c), free(dtext_g);
  dpo_unet_free(pc), dpo_unet_free(rc), dpo_unet_free(pg), dpo_unet_free(rg);
}

/* ----------------------------------------------------------------- VAE */

static dpo_vae *fixture_vae(kn_dtype dtype) {
  dpo_error err = {0};
  dpo_vae *v = NULL;
  if (dpo_vae_load(test_source_path("tests/fixtures/models/vae"), &v, &err) != DPO_OK ||
      dpo_vae_set_precision(v, dtype, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "vae: %s", err.msg);
    dpo_vae_free(v);
    return NULL;
  }
  return v;
}

/* One precision: the CPU VAE and the device VAE decode the same latents. */
static void vae_decode_case(kn_dtype dtype, double tol) {
  int B = 2, S = 16;
  dpo_vae *vc = fixture_vae(dtype), *vg = fixture_vae(dtype);
  float *latents = NULL, *g_latents = NULL;
  if (!vc || !vg) goto done;
  const dpo_vae_config *c = dpo_vae_get_config(vc);
  int f = 1 << (c->n_blocks - 1);
  size_t n_lat = (size_t)B * c->latent_channels * (S / f) * (S / f), n_img = (size_t)B * c->out_channels * S * S;
  dpo_error err = {0};
  CHECK_INT(dpo_vae_plan(vc, &cpu, B, S, S, &err), DPO_OK);
  CHECK_INT(dpo_vae_plan(vg, &gpu, B, S, S, &err), DPO_OK);
  if (err.code) {
    fprintf(stderr, "vae plan: %s\n", err.msg);
    goto done;
  }
  /* Encoding stays a float32 CPU path: a device plan leaves it out. */
  CHECK_INT(dpo_vae_can_encode(vg), gpu.backend == KN_BACKEND_CPU && dtype == KN_F32);
  latents = host_random(n_lat, 1.0f / c->scaling_factor);   /* unit-scale latents once unscaled */
  g_latents = device_copy(latents, n_lat * sizeof(float));
  const float *ic = dpo_vae_decode(vc, &cpu, latents, 1);
  const float *ig = dpo_vae_decode(vg, &gpu, g_latents, 1);
  CHECK(ic && ig);
  char what[64];
  snprintf(what, sizeof what, "vae decode %s", kn_dtype_name(dtype));
  if (ic && ig) compare(what, ic, ig, n_img, tol);
done:
  free(latents);
  kn_free(gpu.backend, g_latents);
  dpo_vae_free(vc);
  dpo_vae_free(vg);
}

static void test_vae(void) {
  printf("VAE decode on the device (float32 and bf16) against the CPU\n");
  vae_decode_case(KN_F32, TOL_OUT);
  vae_decode_case(KN_BF16, TOL_BF16_OUT);
}

/* ------------------------------------------------------------ sampling */

/* Largest difference of an 8-bit channel value between two image lists. */
static int max_level_difference(const dpo_image *a, const dpo_image *b, int n) {
  int worst = 0;
  for (int i = 0; i < n; i++) {
    if (a[i].width != b[i].width || a[i].height != b[i].height) return 256;
    size_t m = (size_t)a[i].width * a[i].height * 3;
    for (size_t k = 0; k < m; k++) {
      int d = abs((int)a[i].pixels[k] - (int)b[i].pixels[k]);
      if (d > worst) worst = d;
    }
  }
  return worst;
}

static void test_sampling(void) {
  printf("txt2img on the tiny latent pipeline (text encoder, UNet and VAE decoder on the device)\n");
  dpo_error err = {0};
  char path[4200];
  snprintf(path, sizeof path, "%s", test_source_path("tests/fixtures/pipelines/tiny_sd"));
  dpo_pipeline pc, pg;
  if (dpo_pipeline_load(path, &pc, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "pipeline: %s", err.msg);
    return;
  }
  if (dpo_pipeline_load(path, &pg, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "pipeline: %s", err.msg);
    dpo_pipeline_free(&pc);
    return;
  }
  eval_sample_options opt;
  eval_sample_options_default(&opt);
  opt.steps = 4;
  opt.guidance = 3.0f;
  eval_sampler *sc = NULL, *sg = NULL;
  CHECK_INT(eval_sampler_open(&sc, &pc, &opt, 2, 0, &err), DPO_OK);
  opt.backend = gpu.backend;
  CHECK_INT(eval_sampler_open(&sg, &pg, &opt, 2, 0, &err), DPO_OK);
  if (sc && sg) {
    size_t lat = eval_sampler_latent_numel(sc);
    const char *prompts[2] = {"a red circle", "a blue square"};
    float *noise = malloc(2 * lat * sizeof(float));
    eval_initial_noise(11, "t:1", 0, noise, lat);
    eval_initial_noise(11, "t:2", 0, noise + lat, lat);
    float *lc = malloc(2 * lat * sizeof(float)), *lg = malloc(2 * lat * sizeof(float));
    dpo_image ic[2], ig[2];
    CHECK_INT(eval_txt2img(sc, prompts, 2, noise, lc, ic, &err), DPO_OK);
    CHECK_INT(eval_txt2img(sg, prompts, 2, noise, lg, ig, &err), DPO_OK);
    if (!err.code) {
      compare_host("txt2img final latents", lc, lg, 2 * lat, TOL_SAMPLE);
      int levels = max_level_difference(ic, ig, 2);
      printf("  %-40s largest difference %d levels (tol %d) %s\n", "txt2img 8-bit images", levels,
             TOL_IMAGE_LEVELS, levels <= TOL_IMAGE_LEVELS ? "ok" : "FAIL");
      CHECK(levels <= TOL_IMAGE_LEVELS);
      for (int i = 0; i < 2; i++) {
        dpo_image_free(&ic[i]);
        dpo_image_free(&ig[i]);
      }
    } else {
      fprintf(stderr, "txt2img: %s\n", err.msg);
    }
    free(noise), free(lc), free(lg);
  }
  eval_sampler_close(sc);
  eval_sampler_close(sg);
  dpo_pipeline_free(&pc);
  dpo_pipeline_free(&pg);
}

static void test_reward(void) {
  printf("reward-acc pair pass on the tiny latent pipeline\n");
  dpo_error err = {0};
  char path[4200];
  snprintf(path, sizeof path, "%s", test_source_path("tests/fixtures/pipelines/tiny_sd"));
  dpo_pipeline p[4];
  int loaded = 0;
  for (; loaded < 4; loaded++)
    if (dpo_pipeline_load(path, &p[loaded], &err) != DPO_OK) break;
  eval_reward *rc = NULL, *rg = NULL;
  if (loaded == 4) {
    CHECK_INT(eval_reward_open_on(&rc, &p[0], &p[1], 0, 0, KN_BACKEND_CPU, &err), DPO_OK);
    CHECK_INT(eval_reward_open_on(&rg, &p[2], &p[3], 0, 0, gpu.backend, &err), DPO_OK);
  } else {
    test_fail(__FILE__, __LINE__, "pipeline: %s", err.msg);
  }
  if (rc && rg) {
    dpo_image w, l;
    CHECK_INT(dpo_image_alloc(&w, 40, 32, 3, &err), DPO_OK);
    CHECK_INT(dpo_image_alloc(&l, 32, 40, 3, &err), DPO_OK);
    for (size_t i = 0; i < 40u * 32u * 3u; i++) {
      w.pixels[i] = (uint8_t)((i * 7) % 251);
      l.pixels[i] = (uint8_t)((i * 13 + 50) % 253);
    }
    int n_t = 3, t[3];
    size_t lat = eval_reward_latent_numel(rc);
    float *noise = malloc(3 * lat * sizeof(float));
    eval_reward_draw(rc, 7, 1, n_t, t, noise);
    double md_c[3], rd_c[3], md_g[3], rd_g[3];
    CHECK_INT(eval_reward_pair(rc, &w, &l, "a red circle", n_t, t, noise, md_c, rd_c, &err), DPO_OK);
    CHECK_INT(eval_reward_pair(rg, &w, &l, "a red circle", n_t, t, noise, md_g, rd_g, &err), DPO_OK);
    float want[6], got[6];
    for (int k = 0; k < 3; k++) {
      want[k] = (float)md_c[k], want[3 + k] = (float)rd_c[k];
      got[k] = (float)md_g[k], got[3 + k] = (float)rd_g[k];
    }
    compare_host("reward-acc model_diff and ref_diff", want, got, 6, TOL_SAMPLE);
    free(noise);
    dpo_image_free(&w);
    dpo_image_free(&l);
  }
  eval_reward_close(rc);
  eval_reward_close(rg);
  for (int i = 0; i < loaded; i++) dpo_pipeline_free(&p[i]);
}

/* ---------------------------------------------------------- dpo train */

static void train_options(dpo_train_options *o, const char *base, const char *pairs, const char *out) {
  dpo_train_options_default(o);
  o->base_dir = base;
  o->pairs_path = pairs;
  o->out_dir = out;
  o->resolution = 16;
  o->lr = 1e-3;
  o->warmup_steps = 1;
  o->max_steps = 3;
  o->batch_size = 2;
  o->checkpoint_every = 2;
  o->seed = 3;
}

/* The number `key` of each line of a train_log.jsonl (at most max). */
static int read_log(const char *path, const char *key, double *values, int max) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096];
  int n = 0;
  while (n < max && fgets(line, sizeof line, f)) {
    json_t *o = json_loads(line, 0, NULL);
    if (o && json_is_number(json_object_get(o, key))) values[n++] = json_number_value(json_object_get(o, key));
    json_decref(o);
  }
  fclose(f);
  return n;
}

/* Each step's logged `key` of the two runs, relative to the CPU's value
 * floored at `floor` (a nearly converged pair's loss, -log sigmoid of a
 * large margin, carries beta times the MSE rounding). */
static void compare_log(const char *run, const char *key, const char *log_cpu, const char *log_gpu, double floor,
                        double tol) {
  double vc[8], vg[8];
  int nc = read_log(log_cpu, key, vc, 8), ng = read_log(log_gpu, key, vg, 8);
  CHECK_INT(nc, 3);
  CHECK_INT(ng, 3);
  for (int i = 0; i < nc && i < ng; i++) {
    double rel = fabs(vg[i] - vc[i]) / (fabs(vc[i]) > floor ? fabs(vc[i]) : floor);
    int ok = rel <= tol;
    printf("  train %s %s step %d: cpu %.8g gpu %.8g rel.err=%.3g %s\n", run, key, i + 1, vc[i], vg[i], rel,
           ok ? "ok" : "FAIL");
    if (!ok) test_fail(__FILE__, __LINE__, "train %s %s step %d: cpu %.9g gpu %.9g", run, key, i + 1, vc[i], vg[i]);
  }
}

static float *unet_weights(const char *dir, size_t *n) {
  char path[4200];
  snprintf(path, sizeof path, "%s/unet", dir);
  dpo_unet *u = NULL;
  dpo_error err = {0};
  if (dpo_unet_load(path, &u, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return NULL;
  }
  *n = dpo_unet_param_count(u);
  float *w = malloc(*n * sizeof(float));
  size_t at = 0;
  for (int i = 0; i < dpo_unet_n_params(u); i++) {
    dpo_param p;
    dpo_unet_param(u, i, &p);
    memcpy(w + at, p.data, p.numel * sizeof(float));
    at += p.numel;
  }
  dpo_unet_free(u);
  return w;
}

/* The device run stopped after step 2 (its checkpoint: the optimizer state
 * downloaded) and resumed from it (uploaded) against the uninterrupted one:
 * the same weights (deterministic kernels: bitwise expected; TOL_RESUME). */
static void check_resume(const char *run, const dpo_train_options *base_options, const char *out_gpu) {
  char out[1100], name[64];
  snprintf(name, sizeof name, "train_resume_%s", run);
  snprintf(out, sizeof out, "%s", test_path(name));
  dpo_train_options o = *base_options;
  dpo_train_result res;
  dpo_error err = {0};
  o.out_dir = out;
  o.stop_after = 2;
  if (dpo_train(&o, &res, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "dpo train %s, stopped: %s", run, err.msg);
    return;
  }
  o.stop_after = 0;
  o.resume = "latest";
  if (dpo_train(&o, &res, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "dpo train %s, resumed: %s", run, err.msg);
    return;
  }
  size_t n1 = 0, n2 = 0;
  float *w1 = unet_weights(out_gpu, &n1), *w2 = unet_weights(out, &n2);
  if (w1 && w2 && n1 == n2) {
    int bitwise = memcmp(w1, w2, n1 * sizeof(float)) == 0;
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n1; i++) {
      double d = fabs((double)w2[i] - w1[i]);
      if (!(d <= max_diff)) max_diff = isnan(d) ? INFINITY : d;
      if (fabs((double)w1[i]) > max_ref) max_ref = fabs((double)w1[i]);
    }
    double rel = max_diff / (max_ref > 0 ? max_ref : 1e-30);
    int ok = rel <= TOL_RESUME;
    printf("  train %s resumed after step 2 vs uninterrupted: rel.err=%.3g%s %s\n", run, rel,
           bitwise ? " (bitwise)" : "", ok ? "ok" : "FAIL");
    if (!ok) test_fail(__FILE__, __LINE__, "train %s resumed weights differ: %.3g", run, rel);
    n_checked++;
  }
  free(w1), free(w2);
}

/* One dpo train comparison: 3 steps of --backend cpu and of the device
 * (resident step) from the same base, pairs and options; a train_case holds
 * what its variant changes from train_options. */
typedef struct {
  const char *run;
  dpo_optim_kind optimizer;
  int grad_accum;
  double max_grad_norm;
  int sft;
  double sft_weight;
  int resume;           /* also check_resume on the device */
  kn_dtype precision;   /* KN_BF16: both runs bf16 (policy mixed precision, reference frozen bf16) */
  double beta;          /* 0: the default */
} train_case;

static void train_variant(const train_case *tc, const char *base, const char *pairs) {
  const char *run = tc->run;
  int bf16 = tc->precision == KN_BF16;
  char out_cpu[1100], out_gpu[1100], name[64];
  snprintf(name, sizeof name, "train_cpu_%s", run);
  snprintf(out_cpu, sizeof out_cpu, "%s", test_path(name));
  snprintf(name, sizeof name, "train_gpu_%s", run);
  snprintf(out_gpu, sizeof out_gpu, "%s", test_path(name));
  dpo_train_options o;
  dpo_train_result res;
  dpo_error err = {0};
  train_options(&o, base, pairs, out_cpu);
  o.optimizer = tc->optimizer;
  o.grad_accum = tc->grad_accum;
  o.max_grad_norm = tc->max_grad_norm;
  o.sft = tc->sft;
  o.sft_weight = tc->sft_weight;
  o.precision = tc->precision;
  if (tc->beta > 0) o.beta = tc->beta;
  if (dpo_train(&o, &res, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "dpo train %s --backend cpu: %s", run, err.msg);
    return;
  }
  o.out_dir = out_gpu;
  o.backend = gpu.backend;
  o.resident_step = 1; /* the CPU stand-in takes the device's path; a device always does */
  if (dpo_train(&o, &res, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "dpo train %s --backend %s: %s", run, kn_backend_name(gpu.backend), err.msg);
    return;
  }
  char log_cpu[1200], log_gpu[1200];
  snprintf(log_cpu, sizeof log_cpu, "%s/train_log.jsonl", out_cpu);
  snprintf(log_gpu, sizeof log_gpu, "%s/train_log.jsonl", out_gpu);
  compare_log(run, "loss", log_cpu, log_gpu, 1e-3, bf16 ? TOL_TRAIN_BF16_LOSS : TOL_TRAIN);
  compare_log(run, "grad_norm", log_cpu, log_gpu, 1e-12, bf16 ? TOL_TRAIN_BF16_NORM : TOL_TRAIN);
  size_t n0 = 0, n1 = 0, n2 = 0;
  float *w0 = unet_weights(base, &n0), *w1 = unet_weights(out_cpu, &n1), *w2 = unet_weights(out_gpu, &n2);
  if (w0 && w1 && w2 && n0 == n1 && n0 == n2) {
    double diff = 0, size = 0, ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n0; i++) {
      double u_cpu = (double)w1[i] - w0[i], u_gpu = (double)w2[i] - w0[i];
      diff += fabs(u_gpu - u_cpu);
      size += fabs(u_cpu);
      ab += u_cpu * u_gpu, aa += u_cpu * u_cpu, bb += u_gpu * u_gpu;
    }
    double rel = diff / (size > 0 ? size : 1e-30);
    double cs = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
    int ok = size > 0 && (bf16 ? cs >= MIN_COS_TRAIN_BF16 : rel <= TOL_TRAIN);
    printf("  train %s weight updates: mean |gpu - cpu| / mean |cpu| = %.3g, cosine %.5f over %zu weights %s\n", run,
           rel, cs, n0, ok ? "ok" : "FAIL");
    if (!ok)
      test_fail(__FILE__, __LINE__, "train %s weight updates differ: %.3g, cosine %.5f (size %.3g)", run, rel, cs,
                size);
    n_checked++;
  }
  free(w0), free(w1), free(w2);
  if (tc->resume) check_resume(run, &o, out_gpu);
}

static void test_train_loop(void) {
  printf("dpo train, 3 steps on the tiny fixture pipeline: --backend %s (resident step) vs cpu\n",
         kn_backend_name(gpu.backend));
  char base[1024], data[1024], pairs[1100];
  snprintf(base, sizeof base, "%s", test_path("train_base"));
  snprintf(data, sizeof data, "%s", test_path("train_data"));
  snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", data);
  CHECK_INT(tf_make_pipeline(base, 0, 1), 0);
  CHECK_INT(tf_make_pairs(data, 4, 3, 60, 16), 0);
  static const train_case cases[] = {
      /* AdamW, one micro-batch, the default max_grad_norm 1. */
      {.run = "adamw", .optimizer = DPO_OPTIM_ADAMW, .grad_accum = 1, .max_grad_norm = 1.0},
      /* Adafactor over 2 micro-batches, clipped at every step, with the
       * --sft-weight term; and stopped after step 2 and resumed (its factored
       * state through a checkpoint). */
      {.run = "adafactor-accum2-clip-sftw", .optimizer = DPO_OPTIM_ADAFACTOR, .grad_accum = 2,
       .max_grad_norm = 1e-4, .sft_weight = 0.5, .resume = 1},
      /* The SFT loss (seeds from the host, the rest resident). */
      {.run = "sft", .optimizer = DPO_OPTIM_ADAMW, .grad_accum = 1, .max_grad_norm = 1.0, .sft = 1},
      /* --precision bf16 on both backends (the CPU's bf16 emulation is the
       * reference), beta 50 so that the loss is not saturated and stays
       * comparable (beta 5000 turns bf16 rounding of the MSEs into loss
       * changes of order 1); stopped and resumed as well (the checkpoint
       * holds float32 masters, the bf16 copies are rounded from them again). */
      {.run = "bf16-adamw", .optimizer = DPO_OPTIM_ADAMW, .grad_accum = 1, .max_grad_norm = 1.0, .resume = 1,
       .precision = KN_BF16, .beta = 50},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) train_variant(&cases[i], base, pairs);
}

/* --------------------------------------------------------------- SD1.5 */

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The network and shapes of the SD1.5 section: SD1.5 itself, or (with
 * --sd15-tiny) the tiny UNet, to run this section's code on the CPU
 * stand-in in seconds. */
typedef struct {
  const char *config;
  int HW, T, D;
} sd15_shape;

typedef struct {
  const float *sample, *t, *enc, *dout; /* device */
  int B, HW, T;
} sd15_inputs;

/* Host copies of what the passes left: the last output and the first
 * parameter's gradient (the end of the backward pass). */
typedef struct {
  float *out, *grad;
  size_t n_out, n_grad;
} sd15_result;

static void sd15_result_free(sd15_result *r) {
  free(r->out);
  free(r->grad);
  *r = (sd15_result){0};
}

/* Plans u for training (with or without checkpointing), runs a warm-up and
 * `repeat` forward + backward passes, prints the medians and the device
 * memory under `label`, and fills r; 0 when the plan failed. */
static int sd15_passes(dpo_unet *u, const sd15_inputs *in, const char *label, int checkpoint, sd15_result *r) {
  enum { repeat = 3 };
  dpo_error err = {0};
  double gib = 1024.0 * 1024.0 * 1024.0;
  *r = (sd15_result){0};
  dpo_unet_set_checkpointing(u, checkpoint);
  if (dpo_unet_plan(u, &gpu, in->B, in->HW, in->HW, in->T, 1, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s plan: %s", label, err.msg);
    return 0;
  }
  double fwd[repeat], bwd[repeat];
  const float *out = NULL;
  for (int k = -1; k < repeat; k++) {
    dpo_unet_zero_grads(u);
    double a = dpo_now_seconds();
    out = dpo_unet_forward(u, &gpu, in->sample, in->t, in->enc);
    CHECK_INT(kn_ctx_check(&gpu, &err), DPO_OK);
    double b = dpo_now_seconds();
    dpo_unet_backward(u, &gpu, in->dout, NULL, NULL);
    CHECK_INT(kn_ctx_check(&gpu, &err), DPO_OK);
    double c = dpo_now_seconds();
    if (k >= 0) {
      fwd[k] = b - a;
      bwd[k] = c - b;
    }
  }
  qsort(fwd, repeat, sizeof *fwd, compare_doubles);
  qsort(bwd, repeat, sizeof *bwd, compare_doubles);
  printf("  %s forward %.1f ms, backward %.1f ms (median of %d after a warm-up)\n", label,
         1e3 * fwd[repeat / 2], 1e3 * bwd[repeat / 2], repeat);
  printf("  %s memory: %.2f GiB in use on the device (cudaMemGetInfo: parameters, gradients, "
         "activations, cuDNN/cuBLAS workspace); plan %.2f GiB of activations and their gradients\n",
         label, (double)kn_ctx_device_memory(&gpu) / gib, (double)dpo_unet_plan_bytes(u) / gib);
  r->n_out = (size_t)in->B * 4 * in->HW * in->HW;
  r->out = out ? device_download(out, r->n_out) : NULL;
  CHECK(r->out && all_finite(r->out, r->n_out));
  dpo_param p;
  dpo_unet_param(u, 0, &p);
  r->n_grad = p.numel;
  r->grad = device_download(p.grad, p.numel);
  CHECK(all_finite(r->grad, p.numel));
  double norm = 0;
  for (size_t i = 0; i < p.numel; i++) norm += (double)r->grad[i] * r->grad[i];
  printf("  %s |d %s| = %.4g (finite and non-zero expected)\n", label, p.name, sqrt(norm));
  CHECK(norm > 0);
  return 1;
}

/* The plain passes and the checkpointed ones of one model (`label` names
 * it): the gradient must be the same bit for bit (the recompute is the same
 * arithmetic). The plain passes' result stays in *plain. */
static void sd15_plain_and_checkpointed(dpo_unet *u, const sd15_inputs *in, const char *label, sd15_result *plain) {
  char name[96];
  sd15_result ckpt = {0};
  int ok_plain = sd15_passes(u, in, label, 0, plain);
  snprintf(name, sizeof name, "%s checkpointed", label);
  if (ok_plain && sd15_passes(u, in, name, 1, &ckpt)) {
    int same = plain->n_grad == ckpt.n_grad && memcmp(plain->grad, ckpt.grad, plain->n_grad * sizeof(float)) == 0;
    printf("  %s gradient equals the plain one bit for bit: %s\n", name, same ? "yes" : "NO");
    CHECK(same);
  }
  sd15_result_free(&ckpt);
}

/* The DPO reference as dpo train --precision bf16 holds it: frozen bf16,
 * an inference plan, beside the bf16 policy (still planned for training).
 * Its forward time; the device memory it adds, whose part beyond its plan
 * (the parameters, bf16 weights alone) must stay under
 * FROZEN_MAX_BYTES_PER_PARAM per parameter (trainable bf16 holds float32
 * masters and bf16 copies, 6 bytes a weight); its output against the
 * policy's on the same inputs and weights (the same bits expected; plans
 * differ, so within TOL_BF16_OUT). */
static void sd15_frozen_reference(dpo_unet *z, const sd15_inputs *in, const sd15_result *policy) {
  enum { repeat = 3 };
  dpo_error err = {0};
  double gib = 1024.0 * 1024.0 * 1024.0;
  double before = (double)kn_ctx_device_memory(&gpu);
  if (dpo_unet_plan(z, &gpu, in->B, in->HW, in->HW, in->T, 0, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "sd15 bf16 frozen reference plan: %s", err.msg);
    return;
  }
  double fwd[repeat];
  const float *out = NULL;
  for (int k = -1; k < repeat; k++) {
    double a = dpo_now_seconds();
    out = dpo_unet_forward(z, &gpu, in->sample, in->t, in->enc);
    CHECK_INT(kn_ctx_check(&gpu, &err), DPO_OK);
    if (k >= 0) fwd[k] = dpo_now_seconds() - a;
  }
  double after = (double)kn_ctx_device_memory(&gpu), plan = (double)dpo_unet_plan_bytes(z);
  double n_params = (double)dpo_unet_param_count(z), params = after - before - plan;
  qsort(fwd, repeat, sizeof *fwd, compare_doubles);
  printf("  sd15 bf16 frozen reference forward %.1f ms (median of %d after a warm-up)\n", 1e3 * fwd[repeat / 2],
         repeat);
  printf("  sd15 bf16 frozen reference memory: %.2f GiB in use on the device with the bf16 policy (training plan); "
         "the reference added %.2f GiB: plan %.2f GiB, parameters and the rest %.2f GiB = %.2f bytes per "
         "parameter\n",
         after / gib, (after - before) / gib, plan / gib, params / gib, params / n_params);
  if (gpu.backend == KN_BACKEND_CUDA) CHECK(params <= FROZEN_MAX_BYTES_PER_PARAM * n_params);
  size_t n = (size_t)in->B * 4 * in->HW * in->HW;
  float *host = out ? device_download(out, n) : NULL;
  CHECK(host && all_finite(host, n));
  if (host && policy->out && policy->n_out == n) {
    size_t worst;
    double rel = rel_error(policy->out, host, n, &worst);
    int ok = rel <= TOL_BF16_OUT;
    printf("  sd15 bf16 frozen reference output vs the policy's: rel.err=%.3g%s %s\n", rel,
           rel == 0.0 ? " (bitwise)" : "", ok ? "ok" : "FAIL");
    if (!ok) test_fail(__FILE__, __LINE__, "sd15 bf16 frozen reference output: rel.err %.3g", rel);
    n_checked++;
  }
  free(host);
}

static dpo_unet *sd15_model(const sd15_shape *shape) {
  json_t *cfg = json_loads(shape->config, 0, NULL);
  dpo_unet *u = NULL;
  dpo_error err = {0};
  if (!cfg || dpo_unet_create(cfg, &u, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "sd15 unet: %s", err.msg);
  json_decref(cfg);
  return u;
}

/* dst's parameters := src's (both unplaced: host blocks). */
static void copy_params(dpo_unet *dst, const dpo_unet *src) {
  for (int i = 0; i < dpo_unet_n_params(src); i++) {
    dpo_param a, b;
    dpo_unet_param(src, i, &a);
    dpo_unet_param(dst, i, &b);
    memcpy(b.data, a.data, a.numel * sizeof(float));
  }
}

/* B samples: 4 is the 2 pairs (winners and losers) of the PyTorch baseline's
 * fwd+bwd (bench/torch_cuda_baseline.py --pairs 2), for a like comparison.
 * float32, then bf16 mixed precision (the baseline's precision) on the same
 * weights and inputs, each plain and with activation checkpointing; then
 * the frozen bf16 reference forward beside the bf16 policy. */
static void test_sd15(int B, const sd15_shape *shape) {
  int HW = shape->HW, T = shape->T, D = shape->D, C = 4;
  const char *what = shape->config == sd15_unet_config ? "SD1.5 UNet" : "SD1.5 section on the tiny UNet";
  printf("%s forward + backward on the device (batch %d, %dx%d latents, %d tokens, float32)\n", what, B, HW, HW, T);
  dpo_unet *u = sd15_model(shape), *p = sd15_model(shape), *z = sd15_model(shape);
  dpo_error err = {0};
  if (!u || !p || !z || dpo_unet_set_precision(p, KN_BF16, 0, &err) != DPO_OK ||
      dpo_unet_set_precision(z, KN_BF16, 1, &err) != DPO_OK) {
    if (err.code) test_fail(__FILE__, __LINE__, "sd15 bf16: %s", err.msg);
    dpo_unet_free(u), dpo_unet_free(p), dpo_unet_free(z);
    return;
  }
  double t0 = dpo_now_seconds();
  dpo_unet_init_random(u, 1);
  printf("  random init on the host: %.1f s (%zu parameters); %.2f GiB in use on the device before\n",
         dpo_now_seconds() - t0, dpo_unet_param_count(u), (double)kn_ctx_device_memory(&gpu) / (1 << 30));
  copy_params(p, u);
  copy_params(z, u);
  size_t ns = (size_t)B * C * HW * HW, ne = (size_t)B * T * D;
  float *sample = host_random(ns, 1.0f), *enc = host_random(ne, 1.0f), *dout = host_random(ns, 1e-3f);
  float *t = malloc((size_t)B * sizeof(float));
  for (int b = 0; b < B; b++) t[b] = (float)((999 - 250 * b) % 1000);
  sd15_inputs in = {device_copy(sample, ns * sizeof(float)), device_copy(t, (size_t)B * sizeof(float)),
                    device_copy(enc, ne * sizeof(float)), device_copy(dout, ns * sizeof(float)), B, HW, T};
  sd15_result f32 = {0}, bf16 = {0};
  sd15_plain_and_checkpointed(u, &in, "sd15", &f32);
  dpo_unet_free(u); /* its device memory too: the bf16 lines count the bf16 model alone */

  printf("%s forward + backward on the device (batch %d, %dx%d latents, %d tokens, bf16 mixed precision)\n", what,
         B, HW, HW, T);
  sd15_plain_and_checkpointed(p, &in, "sd15 bf16", &bf16);
  if (f32.out && bf16.out) {
    size_t worst;
    double rel = rel_error(f32.out, bf16.out, f32.n_out, &worst);
    printf("  sd15 bf16 output vs float32 (random weights, for information): rel.err=%.3g\n", rel);
  }
  sd15_frozen_reference(z, &in, &bf16);

  sd15_result_free(&f32), sd15_result_free(&bf16);
  free(sample), free(enc), free(dout), free(t);
  kn_free(gpu.backend, (void *)in.sample), kn_free(gpu.backend, (void *)in.enc);
  kn_free(gpu.backend, (void *)in.t), kn_free(gpu.backend, (void *)in.dout);
  dpo_unet_free(z);
  dpo_unet_free(p);
}

int main(int argc, char **argv) {
  int sd15 = 1, small = 1, sd15_batch = 4, cpu_as_device = 0;
  sd15_shape shape = {sd15_unet_config, 64, 77, 768};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--no-sd15")) sd15 = 0;
    else if (!strcmp(argv[i], "--sd15-only")) small = 0;
    else if (!strcmp(argv[i], "--sd15-tiny")) shape = (sd15_shape){tiny_unet_config, 16, 8, 32};
    else if (!strcmp(argv[i], "--cpu-as-device")) cpu_as_device = 1;
    else if (!strcmp(argv[i], "--sd15-batch") && i + 1 < argc && atoi(argv[i + 1]) >= 1) sd15_batch = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: test_cuda_models [--no-sd15 | --sd15-only] [--sd15-batch N (default 4)] "
                      "[--sd15-tiny] [--cpu-as-device]\n");
      return 2;
    }
  }
  if (!cpu_as_device && (!kn_have_cuda() || kn_cuda_visible_devices() < 1)) {
    printf("test_cuda_models: no CUDA device visible; skipped (exit 77), nothing was compared\n");
    return 77;
  }
  dpo_error err = {0};
  kn_backend device = cpu_as_device ? KN_BACKEND_CPU : KN_BACKEND_CUDA;
  if (kn_ctx_init(&cpu, 0, &err) != DPO_OK || kn_ctx_init_backend(&gpu, device, 0, &err) != DPO_OK) {
    fprintf(stderr, "test_cuda_models: %s\n", err.msg);
    return 1;
  }
  char name[256];
  kn_ctx_describe(&gpu, name, sizeof name);
  printf("device: %s%s\n", name,
         cpu_as_device ? " (a CPU context stands in for the device: this checks the test, not CUDA)" : "");
  if (small) {
    test_layout_ops();
    test_step_ops();
    test_multi_step_ops();
    test_unet();
    test_unet_bf16();
    test_clip();
    test_dpo_step();
    test_vae();
    test_sampling();
    test_reward();
    test_train_loop();
  }
  if (sd15) test_sd15(sd15_batch, &shape);
  CHECK_INT(kn_ctx_check(&gpu, &err), DPO_OK);
  printf("%d tensors compared\n", n_checked);
  kn_ctx_free(&gpu);
  kn_ctx_free(&cpu);
  return test_finish();
}
