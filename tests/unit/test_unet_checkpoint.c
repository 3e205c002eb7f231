/* Activation checkpointing of the UNet (dpo_unet_set_checkpointing): a
 * training plan with it takes less memory, and forward + backward give
 * bitwise the output, the input gradients and every parameter gradient of
 * the plan without it (each resnet and transformer block reruns its forward
 * before its backward, with the same arithmetic). Two backward passes in a
 * row also agree, since the second recomputes from scratch. */
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "tests/test.h"

/* SD1.5's block types at small widths, two transformer layers in the
 * middle of each attention block so the transformer's own recompute and
 * chaining are exercised. */
static const char *const config =
    "{\"attention_head_dim\": 2, \"block_out_channels\": [16, 32], \"cross_attention_dim\": 16,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"layers_per_block\": 2,"
    " \"norm_num_groups\": 8, \"sample_size\": 8, \"transformer_layers_per_block\": 2,"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}";

typedef struct {
  dpo_unet *u;
  float *out, *dsample, *denc, *grads;
  size_t plan_bytes;
} result;

static float *random_floats(size_t n, uint64_t stream, float scale) {
  float *x = malloc(n * sizeof(float));
  dpo_rng_normal_fill(99, stream, 0, x, n);
  for (size_t i = 0; i < n; i++) x[i] *= scale;
  return x;
}

/* One forward and `passes` backward passes (gradients zeroed before each). */
static int run(int checkpoint, int passes, result *r) {
  int B = 2, C = 4, H = 8, W = 8, T = 5, D = 16;
  size_t ns = (size_t)B * C * H * W, ne = (size_t)B * T * D;
  dpo_error err = {0};
  json_t *cfg = json_loads(config, 0, NULL);
  memset(r, 0, sizeof *r);
  int rc = dpo_unet_create(cfg, &r->u, &err);
  json_decref(cfg);
  if (rc != DPO_OK) {
    fprintf(stderr, "create: %s\n", err.msg);
    return rc;
  }
  kn_ctx ctx;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  dpo_unet_init_random(r->u, 17);
  dpo_unet_set_checkpointing(r->u, checkpoint);
  CHECK_INT(dpo_unet_plan(r->u, &ctx, B, H, W, T, 1, &err), DPO_OK);
  r->plan_bytes = dpo_unet_plan_bytes(r->u);
  float *sample = random_floats(ns, 1, 1.0f), *enc = random_floats(ne, 2, 1.0f), *dout = random_floats(ns, 3, 0.1f);
  float t[2] = {981.0f, 3.0f};
  r->out = malloc(ns * sizeof(float));
  memcpy(r->out, dpo_unet_forward(r->u, &ctx, sample, t, enc), ns * sizeof(float));
  for (int p = 0; p < passes; p++) {
    free(r->dsample);
    free(r->denc);
    r->dsample = calloc(ns, sizeof(float));
    r->denc = calloc(ne, sizeof(float));
    dpo_unet_zero_grads(r->u);
    dpo_unet_backward(r->u, &ctx, dout, r->dsample, r->denc);
  }
  size_t total = 0;
  for (int i = 0; i < dpo_unet_n_params(r->u); i++) {
    dpo_param q;
    dpo_unet_param(r->u, i, &q);
    total += q.numel;
  }
  r->grads = malloc(total * sizeof(float));
  size_t at = 0;
  for (int i = 0; i < dpo_unet_n_params(r->u); i++) {
    dpo_param q;
    dpo_unet_param(r->u, i, &q);
    memcpy(r->grads + at, q.grad, q.numel * sizeof(float));
    at += q.numel;
  }
  free(sample);
  free(enc);
  free(dout);
  kn_ctx_free(&ctx);
  return DPO_OK;
}

static void result_free(result *r) {
  dpo_unet_free(r->u);
  free(r->out);
  free(r->dsample);
  free(r->denc);
  free(r->grads);
}

int main(void) {
  result plain, ckpt, twice;
  if (run(0, 1, &plain) != DPO_OK || run(1, 1, &ckpt) != DPO_OK || run(1, 2, &twice) != DPO_OK) return test_finish();
  size_t ns = 2 * 4 * 8 * 8, ne = 2 * 5 * 16, np = dpo_unet_param_count(plain.u);
  CHECK(ckpt.plan_bytes < plain.plan_bytes);
  printf("plan bytes: %zu without checkpointing, %zu with\n", plain.plan_bytes, ckpt.plan_bytes);
  CHECK(memcmp(plain.out, ckpt.out, ns * sizeof(float)) == 0);
  CHECK(memcmp(plain.dsample, ckpt.dsample, ns * sizeof(float)) == 0);
  CHECK(memcmp(plain.denc, ckpt.denc, ne * sizeof(float)) == 0);
  CHECK(memcmp(plain.grads, ckpt.grads, np * sizeof(float)) == 0);
  CHECK(memcmp(plain.grads, twice.grads, np * sizeof(float)) == 0);
  CHECK(memcmp(plain.dsample, twice.dsample, ns * sizeof(float)) == 0);
  /* Not trivially equal: the gradients are not all zero. */
  int nonzero = 0;
  for (size_t i = 0; i < np; i++) nonzero += plain.grads[i] != 0.0f;
  CHECK(nonzero > (int)(np / 2));
  result_free(&plain);
  result_free(&ckpt);
  result_free(&twice);
  return test_finish();
}
