/* dpo bench sample: seconds per txt2img image of a diffusers pipeline
 * folder, end to end as `dpo generate` makes them (prompt encoding, the
 * sampler's steps with classifier-free guidance, the VAE decode), for
 * issue 10's sampling target against diffusers' StableDiffusionPipeline
 * (bench/torch_cuda_sampling.py, run beside it by tests/device/run.sh).
 * Everything is eval/'s public sampler; nothing here is timed inside it. */
#include <stdlib.h>
#include <string.h>

#include "cli/eval_cli.h"
#include "kernels/kernels.h"

#define BENCH_SAMPLE_PROMPT "a photograph of an astronaut riding a horse"
#define BENCH_SAMPLE_MAX_CALLS 1000

void bench_sample_help(FILE *out) {
  fprintf(out,
          "\nusage: dpo bench sample --model DIR [--steps 50] [--guidance 7.5] [--batch 1]\n"
          "                        [--images 3] [--sampler NAME] [--resolution PX]\n"
          "                        [--backend cpu|cuda|auto] [--precision float32|bf16]\n"
          "                        [--threads N] [--json]\n\n"
          "Seconds per txt2img image of the diffusers pipeline folder DIR, made as dpo\n"
          "generate makes them: the prompt \"" BENCH_SAMPLE_PROMPT "\"\n"
          "and the empty negative prompt encoded, --steps sampler steps (the UNet on both\n"
          "halves of classifier-free guidance unless --guidance <= 1), the VAE decode\n"
          "(where dpo generate runs it) and the 8-bit image. One warm-up batch, then\n"
          "--images N images (default 3, a multiple of --batch) in batches of --batch;\n"
          "seconds_per_image is the median batch's seconds / batch. Same noise every run\n"
          "(seed 0). --precision bf16: the UNet frozen in bf16 mixed precision (meant for\n"
          "cuda). --resolution: the image side (default: the pipeline's). --sampler: ddim,\n"
          "pndm, euler or dpmpp-2m over the pipeline's scheduler config (default: its own).\n"
          "With --backend cuda, device_memory_gib is cudaMemGetInfo's memory in use after\n"
          "the last image: the whole device, this process's contexts (the sampler's and one\n"
          "opened to read it) and anything else on the card; device_memory_context_gib is\n"
          "the same read before the sampler planned the networks (0 on the CPU).\n"
          "tests/device/run.sh runs bench/torch_cuda_sampling.py (diffusers) beside it.\n"
          "Exit status: 0; 1 unreadable pipeline folder, no device; 2 usage error.\n");
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void free_images(dpo_image *images, int n) {
  for (int i = 0; i < n; i++) dpo_image_free(&images[i]);
}

typedef struct {
  double load_s, open_s, warmup_s;
  double median_s, min_s;    /* per image */
  size_t context_bytes, device_bytes;
  int resolution;
  const char *sampler;
} sample_result;

/* Loads, plans, warms up and times; everything allocated is freed here. */
static int run_bench(const char *model, const eval_sample_options *opt, int batch, int images, int threads,
                     sample_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  /* A context of the sampler's backend, only to read the device's memory:
   * the sampler's own is not reachable from here. Opened first, so that the
   * reading before planning holds it too. */
  kn_ctx probe;
  int have_probe = opt->backend != KN_BACKEND_CPU;
  if (have_probe && kn_ctx_init_backend(&probe, opt->backend, 1, err) != DPO_OK) return DPO_ERR_DATA;
  dpo_pipeline pipe;
  double t0 = dpo_now_seconds();
  int rc = dpo_pipeline_load(model, &pipe, err);
  if (rc != DPO_OK) {
    if (have_probe) kn_ctx_free(&probe);
    return rc;
  }
  res->load_s = dpo_now_seconds() - t0;
  res->sampler = dpo_scheduler_kind_name(opt->sampler >= 0 ? (dpo_scheduler_kind)opt->sampler : pipe.scheduler.kind);
  if (have_probe) res->context_bytes = kn_ctx_device_memory(&probe);
  eval_sampler *s = NULL;
  t0 = dpo_now_seconds();
  rc = eval_sampler_open(&s, &pipe, opt, batch, threads, err);
  res->open_s = dpo_now_seconds() - t0;
  float *noise = NULL;
  dpo_image *out = calloc((size_t)batch, sizeof *out);
  const char **prompts = calloc((size_t)batch, sizeof *prompts);
  int calls = images / batch;
  double *times = calloc((size_t)calls, sizeof *times);
  if (!rc && (!out || !prompts || !times)) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (!rc) {
    res->resolution = eval_sampler_resolution(s);
    size_t numel = eval_sampler_latent_numel(s);
    noise = malloc((size_t)batch * numel * sizeof *noise);
    if (!noise) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
    for (int i = 0; !rc && i < batch; i++) {
      prompts[i] = BENCH_SAMPLE_PROMPT;
      eval_initial_noise(0, "bench-sample", i, noise + (size_t)i * numel, numel);
    }
  }
  /* Call -1 is the warm-up (first use of every plan, cuDNN's algorithm
   * search, page faults of the weights). */
  for (int c = -1; !rc && c < calls; c++) {
    t0 = dpo_now_seconds();
    rc = eval_txt2img(s, prompts, batch, noise, NULL, out, err);
    double dt = dpo_now_seconds() - t0;
    free_images(out, batch);
    if (rc) break;
    if (c < 0) res->warmup_s = dt;
    else times[c] = dt / batch;
  }
  if (!rc) {
    qsort(times, (size_t)calls, sizeof *times, compare_doubles);
    res->median_s = calls % 2 ? times[calls / 2] : 0.5 * (times[calls / 2 - 1] + times[calls / 2]);
    res->min_s = times[0];
    if (have_probe) res->device_bytes = kn_ctx_device_memory(&probe);
  }
  free(times);
  free(prompts);
  free(out);
  free(noise);
  eval_sampler_close(s);
  dpo_pipeline_free(&pipe);
  if (have_probe) kn_ctx_free(&probe);
  return rc;
}

int bench_sample(int argc, char **argv) {
  const char *cmd = "bench";
  const char *model = NULL, *backend_name = NULL, *precision_name = NULL;
  int json = 0, batch = 1, images = 3, threads = 0;
  eval_sample_options opt;
  eval_sample_options_default(&opt);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      bench_sample_help(stdout);
      return EXIT_OK;
    }
    if (!strcmp(a, "--json")) {
      json = 1;
      continue;
    }
    if (strncmp(a, "--", 2) != 0) return cli_usage_error(cmd, "sample: unexpected argument \"%s\"", a);
    if (i + 1 >= argc) return cli_usage_error(cmd, "sample: %s needs a value", a);
    const char *v = argv[++i];
    double d;
    int rc = EXIT_OK;
    if (!strcmp(a, "--model")) model = v;
    else if (!strcmp(a, "--steps")) rc = cli_parse_int(cmd, a, v, 1, 1000, &opt.steps);
    else if (!strcmp(a, "--guidance")) {
      rc = cli_parse_double(cmd, a, v, &d);
      if (!rc && !(d >= 0 && d <= 1000)) rc = cli_usage_error(cmd, "sample: --guidance expects a number in 0..1000");
      opt.guidance = (float)d;
    } else if (!strcmp(a, "--batch")) rc = cli_parse_int(cmd, a, v, 1, 64, &batch);
    else if (!strcmp(a, "--images")) rc = cli_parse_int(cmd, a, v, 1, BENCH_SAMPLE_MAX_CALLS, &images);
    else if (!strcmp(a, "--sampler")) rc = cli_parse_sampler(cmd, v, &opt.sampler);
    else if (!strcmp(a, "--resolution")) rc = cli_parse_int(cmd, a, v, 8, 4096, &opt.resolution);
    else if (!strcmp(a, "--threads")) rc = cli_parse_int(cmd, a, v, 1, 1024, &threads);
    else if (!strcmp(a, "--backend")) backend_name = v;
    else if (!strcmp(a, "--precision")) precision_name = v;
    else return cli_usage_error(cmd, "unknown option \"%s\" for sample", a);
    if (rc) return rc;
  }
  if (!model) return cli_usage_error(cmd, "sample: --model DIR (a diffusers pipeline folder) is required");
  if (images % batch != 0)
    return cli_usage_error(cmd, "sample: --images %d is not a multiple of --batch %d", images, batch);
  int backend, brc = cli_backend("bench sample", backend_name, &backend);
  if (brc != EXIT_OK) return brc;
  int precision, prc = cli_precision("bench sample", precision_name, &precision);
  if (prc != EXIT_OK) return prc;
  opt.backend = (kn_backend)backend;
  opt.precision = (kn_dtype)precision;

  sample_result r;
  dpo_error err = {0};
  if (run_bench(model, &opt, batch, images, threads, &r, &err) != DPO_OK) return cli_report_error(&err);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const char *bname = kn_backend_name((kn_backend)backend), *pname = kn_dtype_name((kn_dtype)precision);
  if (json) {
    char *model_json = json_dumps(json_string(model), JSON_ENCODE_ANY);
    printf("{\"bench\": \"sample\", \"model\": %s, \"backend\": \"%s\", \"precision\": \"%s\", "
           "\"sampler\": \"%s\", \"steps\": %d, \"guidance\": %.6g, \"batch\": %d, \"images\": %d, "
           "\"resolution\": %d, \"threads\": %d, \"seconds_per_image\": %.6g, \"min_seconds_per_image\": %.6g, "
           "\"images_per_s\": %.6g, \"warmup_seconds\": %.6g, \"load_seconds\": %.6g, \"plan_seconds\": %.6g, "
           "\"device_memory_gib\": %.3f, \"device_memory_context_gib\": %.3f}\n",
           model_json ? model_json : "null", bname, pname, r.sampler, opt.steps, (double)opt.guidance, batch,
           images, r.resolution, threads, r.median_s, r.min_s, 1.0 / r.median_s, r.warmup_s, r.load_s, r.open_s,
           (double)r.device_bytes / gib, (double)r.context_bytes / gib);
    free(model_json);
  } else {
    printf("%-8s %-8s %-14s %5s %8s %5s %6s %10s %9s %11s\n", "backend", "dtype", "sampler", "steps", "guidance",
           "batch", "side", "s/image", "images/s", "device GiB");
    printf("%-8s %-8s %-14s %5d %8.2f %5d %6d %10.3f %9.3f %11.2f\n", bname, pname, r.sampler, opt.steps,
           (double)opt.guidance, batch, r.resolution, r.median_s, 1.0 / r.median_s, (double)r.device_bytes / gib);
  }
  fflush(stdout);
  return EXIT_OK;
}
