/* dpo train gives the same bytes in the dpo binary and inside this test
 * process, and in a fresh process and inside a long-lived one whose heap and
 * stack hold garbage: a run must be a function of its inputs, never of the
 * executable it runs in or of what the process did before.
 *
 * The two executables once trained to different bytes: Debian's libgsl
 * pulls in GSL's reference CBLAS, and in the binaries that searched it
 * before OpenBLAS, the kernels' cblas_sgemm was GSL's (another summation
 * order, and ~8x slower); which binaries did depended on their link lines.
 * So this test also asks where cblas_sgemm comes from in this process.
 *
 * For each configuration: the built binary trains in a fresh process (with
 * glibc's MALLOC_PERTURB_ filling its allocations), then this process trains
 * the same run twice more, each time after poisoning the heap (every malloc
 * comes back filled with 0x7f bytes: 3.4e38 as a float, inf once squared,
 * NaN once multiplied by zero) and the stack below the caller with NaN
 * bytes; the second in-process run also finds the first run's freed buffers.
 * The weights, the text encoder and the optimizer state must be identical.
 * Under ASan, mallopt does nothing: __asan_default_options asks ASan to fill
 * every allocation instead. */
#define _GNU_SOURCE /* dladdr, RTLD_DEFAULT */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "tests/test.h"
#include "tests/train_fixture.h"
#include "trainer/trainer.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifdef UNDER_ASAN
/* Read by ASan at start-up: fill every allocation (not only its first 4 KiB)
 * with 0x7f. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "malloc_fill_byte=127:max_malloc_fill_size=2147483647"; }
#endif

/* Every later malloc is filled with 0x7f bytes (glibc: ~M_PERTURB). */
static void poison_heap(void) {
#if defined(__GLIBC__) && !defined(UNDER_ASAN)
  mallopt(M_PERTURB, 0x80);
#endif
}

/* The poison is really there: a fresh block holds 0x7f bytes. */
static void check_heap_poisoned(void) {
  size_t n = 1 << 20;
  unsigned char *block = malloc(n);
  CHECK(block != NULL);
  if (!block) return;
  const volatile unsigned char *bytes = block;   /* read on purpose before any write */
  CHECK_INT(bytes[0], 0x7f);
  CHECK_INT(bytes[n - 1], 0x7f);
  free(block);
}

/* Fills the stack the training calls are about to use with 0xff (NaN). */
static void __attribute__((noinline)) poison_stack(void) {
  volatile unsigned char junk[1 << 19];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = 0xff;
}

static int same_file(const char *a, const char *b) {
  char *x, *y;
  size_t nx, ny;
  dpo_error err;
  if (dpo_read_file(a, 64u << 20, &x, &nx, &err)) return 0;
  if (dpo_read_file(b, 64u << 20, &y, &ny, &err)) {
    free(x);
    return 0;
  }
  int same = nx == ny && memcmp(x, y, nx) == 0;
  free(x);
  free(y);
  return same;
}

/* One run, as options and as the same command line. */
typedef struct {
  const char *name;
  int latent, train_te, random_crop, adafactor, sft;
  int max_steps;
  int stop_and_resume; /* the second in-process run stops after step 2 and resumes */
} config;

static void options_of(const config *c, const char *base, const char *pairs, const char *out, dpo_train_options *o) {
  dpo_train_options_default(o);
  o->base_dir = base;
  o->pairs_path = pairs;
  o->out_dir = out;
  o->resolution = c->latent ? 32 : 16;
  o->lr = 1e-3;
  o->warmup_steps = 2;
  o->max_steps = c->max_steps;
  o->batch_size = 2;
  o->grad_accum = 2;
  o->proportion_empty_prompts = 0.5;
  o->checkpoint_every = 2;
  o->threads = 1;
  o->seed = 5;
  o->train_text_encoder = c->train_te;
  o->random_crop = c->random_crop;
  o->optimizer = c->adafactor ? DPO_OPTIM_ADAFACTOR : DPO_OPTIM_ADAMW;
  o->sft = c->sft;
}

/* `dpo train` of the same run in a fresh process; returns its exit status. */
static int run_fresh(const config *c, const char *base, const char *pairs, const char *out) {
  char dpo[4200], steps[32];
  snprintf(dpo, sizeof dpo, "%s/dpo", DPO_BUILD_DIR);
  snprintf(steps, sizeof steps, "%d", c->max_steps);
  const char *argv[40] = {"dpo", "train", "--base", base, "--pairs", pairs, "--out", out, "--resolution",
                          c->latent ? "32" : "16", "--lr", "1e-3", "--warmup-steps", "2", "--max-steps", steps,
                          "--batch-size", "2", "--grad-accum", "2", "--proportion-empty-prompts", "0.5",
                          "--checkpoint-every", "2", "--threads", "1", "--seed", "5"};
  int n = 28;
  if (c->train_te) argv[n++] = "--train-text-encoder";
  if (c->random_crop) argv[n++] = "--random-crop";
  if (c->adafactor) argv[n++] = "--optimizer", argv[n++] = "adafactor";
  if (c->sft) argv[n++] = "--loss", argv[n++] = "sft";
  argv[n] = NULL;
  fflush(NULL);
  pid_t child = fork();
  if (child == 0) {
    if (!freopen("/dev/null", "w", stderr)) _exit(126);
    setenv("MALLOC_PERTURB_", "165", 1);
    execv(dpo, (char *const *)argv);
    _exit(127);
  }
  if (child < 0) return -1;
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run_here(const dpo_train_options *o) {
  poison_heap();
  poison_stack();
  dpo_train_result res;
  dpo_error err;
  int rc = dpo_train(o, &res, &err);
  if (rc) fprintf(stderr, "dpo_train: %s\n", err.msg);
  return rc;
}

/* The files of a finished run that must not depend on the process. */
static void check_same_run(const config *c, const char *a, const char *b) {
  static const char *const files[] = {"unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"};
  char x[4200], y[4200];
  for (int i = 0; i < 2; i++) {
    snprintf(x, sizeof x, "%s/%s", a, files[i]);
    snprintf(y, sizeof y, "%s/%s", b, files[i]);
    if (!same_file(x, y)) test_fail(__FILE__, __LINE__, "%s: %s differs from %s", c->name, y, x);
  }
  snprintf(x, sizeof x, "%s/checkpoint-%d/train_state/optimizer.safetensors", a, c->max_steps);
  snprintf(y, sizeof y, "%s/checkpoint-%d/train_state/optimizer.safetensors", b, c->max_steps);
  if (!same_file(x, y)) test_fail(__FILE__, __LINE__, "%s: %s differs from %s", c->name, y, x);
}

static void check_config(const config *c, const char *base, const char *pairs) {
  char fresh[1100], here1[1100], here2[1100];
  snprintf(fresh, sizeof fresh, "%s/%s-fresh", test_tmpdir(), c->name);
  snprintf(here1, sizeof here1, "%s/%s-here1", test_tmpdir(), c->name);
  snprintf(here2, sizeof here2, "%s/%s-here2", test_tmpdir(), c->name);
  if (run_fresh(c, base, pairs, fresh) != 0) {
    test_fail(__FILE__, __LINE__, "%s: dpo train failed in a fresh process", c->name);
    return;
  }
  dpo_train_options o;
  options_of(c, base, pairs, here1, &o);
  CHECK_INT(run_here(&o), DPO_OK);
  options_of(c, base, pairs, here2, &o);
  if (c->stop_and_resume) {
    o.stop_after = 2;
    CHECK_INT(run_here(&o), DPO_OK);
    o.stop_after = 0;
    o.resume = "latest";
  }
  CHECK_INT(run_here(&o), DPO_OK);
  check_same_run(c, fresh, here1);
  check_same_run(c, fresh, here2);
}

/* The CPU kernels' GEMM must be OpenBLAS's in every executable: the
 * definition the dynamic linker finds first is the one the kernels call. */
static void check_blas_is_openblas(void) {
  void *sgemm = dlsym(RTLD_DEFAULT, "cblas_sgemm");
  Dl_info info;
  CHECK(sgemm != NULL);
  if (!sgemm || !dladdr(sgemm, &info)) return;
  CHECK_CONTAINS(info.dli_fname, "openblas");
}

int main(void) {
  check_blas_is_openblas();
  poison_heap();
  check_heap_poisoned();
  char base[1024], latent[1024], data[1024], pairs[1100];
  snprintf(base, sizeof base, "%s", test_path("base"));
  snprintf(latent, sizeof latent, "%s", test_path("latent"));
  snprintf(data, sizeof data, "%s", test_path("data"));
  snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", data);
  CHECK_INT(tf_make_pipeline(base, 0, 1), 0);
  CHECK_INT(tf_make_pipeline(latent, 1, 2), 0);
  CHECK_INT(tf_make_pairs(data, 6, 3, 60, 16), 0);
  static const config configs[] = {
      /* name              latent te crop adafactor sft steps resume */
      {"dpo-adamw", 0, 0, 0, 0, 0, 4, 1},
      {"te-crop-adafactor", 0, 1, 1, 1, 0, 2, 0},
      {"latent-vae", 1, 0, 0, 0, 0, 2, 0},
      {"sft", 0, 0, 0, 0, 1, 2, 0},
  };
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
    check_config(&configs[i], configs[i].latent ? latent : base, pairs);
  return test_finish();
}
