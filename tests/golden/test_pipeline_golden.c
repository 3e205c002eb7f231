/* End-to-end txt2img against diffusers' StableDiffusionPipeline: the tiny
 * latent pipeline of tests/fixtures/pipelines/tiny_sd, sampled from the same
 * starting latent with classifier-free guidance and a negative prompt, with
 * DDIM (the folder's scheduler) and Euler (another sampler over the same
 * config), recorded by tests/fixtures/make_pipeline_fixtures.py. The final
 * latent must agree within 1e-4 of its scale (fp32 rounding through 4 steps
 * of 2 UNet batches), and the 8-bit image within one level of
 * round(255 * diffusers' [0, 1] image). Then dpo reward-acc's per-timestep
 * MSE differences of a tuned/reference pair against PyTorch on the same t and
 * noise (within 2e-5, with the same sign of ref_diff - model_diff). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "tests/test.h"

static float *tensor(const dpo_safetensors *st, const char *name, size_t *numel) {
  const dpo_tensor_view *t = dpo_st_find(st, name);
  if (!t) {
    test_fail(__FILE__, __LINE__, "no tensor %s", name);
    return NULL;
  }
  float *out = malloc((size_t)t->numel * sizeof(float));
  dpo_error err = {0};
  if (dpo_st_to_f32(t, out, &err)) test_fail(__FILE__, __LINE__, "%s", err.msg);
  *numel = (size_t)t->numel;
  return out;
}

static void check_sampler(dpo_pipeline *pipe, const dpo_safetensors *st, const char *name, int kind) {
  dpo_error err = {0};
  char key[64];
  size_t n_start, n_latent, n_image;
  float *start = tensor(st, "start", &n_start);
  snprintf(key, sizeof key, "%s.latent", name);
  float *latent_ref = tensor(st, key, &n_latent);
  snprintf(key, sizeof key, "%s.image", name);
  float *image_ref = tensor(st, key, &n_image);
  if (!start || !latent_ref || !image_ref) goto done;

  eval_sample_options opt;
  eval_sample_options_default(&opt);
  opt.sampler = kind;
  opt.steps = atoi(dpo_st_meta(st, "steps"));
  opt.guidance = (float)atof(dpo_st_meta(st, "guidance"));
  opt.negative_prompt = dpo_st_meta(st, "negative_prompt");
  opt.resolution = atoi(dpo_st_meta(st, "height"));
  eval_sampler *s;
  CHECK_INT(eval_sampler_open(&s, pipe, &opt, 1, 2, &err), DPO_OK);
  if (err.code) {
    fprintf(stderr, "%s\n", err.msg);
    goto done;
  }
  CHECK(eval_sampler_latent_numel(s) == n_start && n_start == n_latent);
  float *latent = malloc(n_latent * sizeof(float));
  const char *prompt = dpo_st_meta(st, "prompt");
  dpo_image image;
  CHECK_INT(eval_txt2img(s, &prompt, 1, start, latent, &image, &err), DPO_OK);
  if (!err.code) {
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n_latent; i++) {
      scale = fmax(scale, fabs(latent_ref[i]));
      worst = fmax(worst, fabs(latent[i] - latent_ref[i]));
    }
    printf("%s: final latent max error %.3g of scale %.3g\n", name, worst, scale);
    CHECK(worst <= 1e-4 * scale);
    /* The image, NCHW [0, 1] in the fixture, interleaved bytes here. */
    size_t plane = (size_t)image.width * image.height;
    CHECK(n_image == 3 * plane);
    int worst_level = 0;
    for (size_t p = 0; p < plane && n_image == 3 * plane; p++)
      for (int c = 0; c < 3; c++) {
        int want = (int)lrint(fmin(1.0, fmax(0.0, image_ref[c * plane + p])) * 255.0);
        int d = abs(want - image.pixels[p * 3 + c]);
        if (d > worst_level) worst_level = d;
      }
    printf("%s: image max error %d levels\n", name, worst_level);
    CHECK(worst_level <= 1);
    dpo_image_free(&image);
  } else {
    fprintf(stderr, "%s\n", err.msg);
  }
  free(latent);
  eval_sampler_close(s);
done:
  free(start);
  free(latent_ref);
  free(image_ref);
}

/* The implicit-reward differences of one pair against the same computation
 * in PyTorch (make_pipeline_fixtures.py, reward_fixture): the "tuned" UNet
 * is the folder's with every element j scaled by 1 + 0.05 sin j. */
static void check_reward(const dpo_safetensors *st) {
  dpo_error err = {0};
  dpo_pipeline model, ref;
  const char *dir = test_source_path("tests/fixtures/pipelines/tiny_sd");
  CHECK_INT(dpo_pipeline_load(dir, &model, &err), DPO_OK);
  CHECK_INT(dpo_pipeline_load(dir, &ref, &err), DPO_OK);
  if (err.code) return;
  for (int i = 0; i < dpo_unet_n_params(model.unet); i++) {
    dpo_param p;
    dpo_unet_param(model.unet, i, &p);
    for (size_t j = 0; j < p.numel; j++) p.data[j] = (float)((double)p.data[j] * (1.0 + 0.05 * sin((double)j)));
  }
  const dpo_tensor_view *tw = dpo_st_find(st, "reward.image_w"), *tl = dpo_st_find(st, "reward.image_l");
  const dpo_tensor_view *tt = dpo_st_find(st, "reward.timesteps");
  size_t n_noise, n_md, n_rd;
  float *noise = tensor(st, "reward.noise", &n_noise);
  float *md_ref = tensor(st, "reward.model_diff", &n_md);
  float *rd_ref = tensor(st, "reward.ref_diff", &n_rd);
  CHECK(tw && tl && tt && tw->dtype == DPO_DTYPE_U8 && tt->dtype == DPO_DTYPE_I64 && tt->numel == 3 && n_md == 3);
  eval_reward *r;
  CHECK_INT(eval_reward_open(&r, &model, &ref, 16, 2, &err), DPO_OK);
  if (!err.code && tw && tl && tt && noise && md_ref && rd_ref) {
    dpo_image w = {16, 16, 3, (uint8_t *)tw->data}, l = {16, 16, 3, (uint8_t *)tl->data};
    int ts[3];
    for (int k = 0; k < 3; k++) {
      int64_t v;
      memcpy(&v, tt->data + 8 * k, 8);
      ts[k] = (int)v;
    }
    CHECK(n_noise == 3 * eval_reward_latent_numel(r));
    double md[3], rd[3];
    CHECK_INT(eval_reward_pair(r, &w, &l, dpo_st_meta(st, "reward_caption"), 3, ts, noise, md, rd, &err), DPO_OK);
    if (err.code) fprintf(stderr, "%s\n", err.msg);
    for (int k = 0; k < 3; k++) {
      printf("reward t=%d: model_diff %.8f (torch %.8f), ref_diff %.8f (torch %.8f)\n", ts[k], md[k], md_ref[k], rd[k],
             rd_ref[k]);
      CHECK_NEAR(md[k], md_ref[k], 2e-5);
      CHECK_NEAR(rd[k], rd_ref[k], 2e-5);
      /* The classification the accuracy counts agrees. */
      CHECK((rd[k] - md[k] > 0) == (rd_ref[k] - md_ref[k] > 0));
    }
    CHECK(fabs(md[0] - rd[0]) > 1e-6);   /* the perturbation changed the model */
  }
  eval_reward_close(r);
  free(noise);
  free(md_ref);
  free(rd_ref);
  dpo_pipeline_free(&model);
  dpo_pipeline_free(&ref);
}

int main(void) {
  dpo_error err = {0};
  dpo_pipeline pipe;
  CHECK_INT(dpo_pipeline_load(test_source_path("tests/fixtures/pipelines/tiny_sd"), &pipe, &err), DPO_OK);
  if (err.code) {
    fprintf(stderr, "%s\n", err.msg);
    return test_finish();
  }
  dpo_safetensors st;
  CHECK_INT(dpo_st_open(&st, test_source_path("tests/fixtures/pipelines/txt2img.safetensors"), &err), DPO_OK);
  if (!err.code) {
    check_sampler(&pipe, &st, "ddim", -1);
    check_sampler(&pipe, &st, "euler", DPO_SCHED_EULER);
    check_reward(&st);
    dpo_st_close(&st);
  }
  dpo_pipeline_free(&pipe);
  return test_finish();
}
