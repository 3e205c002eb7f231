/* dpo train: Diffusion-DPO (or SFT) fine-tuning of a diffusers pipeline on a
 * pairs dataset; the loop lives in trainer/train_loop.c. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/eval_cli.h"
#include "eval/eval.h"
#include "trainer/trainer.h"

void cmd_train_help(FILE *out) {
  fprintf(out,
          "usage: dpo train --base DIR --pairs FILE --out DIR [options]\n\n"
          "Fine-tunes the UNet of the diffusers pipeline folder DIR with Diffusion-DPO\n"
          "(Wallace et al. 2023, Eq. 14) on pairs.jsonl (caption, image_0, image_1,\n"
          "label_0), against a frozen copy of the base UNet as reference. Every step:\n"
          "batch-size x grad-accum pairs; each pair's winner and loser share one\n"
          "timestep and one noise draw; per-sample MSE over latent elements.\n"
          "OUT receives the final pipeline (loadable by diffusers), train_log.jsonl\n"
          "(one line per step), checkpoint-<step>/ folders (pipeline + train_state/)\n"
          "and cache/ (VAE latents and text states, computed once and reused).\n\n"
          "Defaults are those of the official SD1.5 train.py (single process).\n\n"
          "loss:\n"
          "  --loss dpo|sft          dpo (default) or sft: plain diffusion MSE on winners\n"
          "  --beta B                KL weight (default 5000, the official code; the paper\n"
          "                          reports 2000 for SD1.5). Convention: inside =\n"
          "                          -0.5*beta*(model_diff - ref_diff), loss =\n"
          "                          -logsigmoid(inside); beta B here is B/2 in diffusers'\n"
          "                          SD1.5 DPO script\n"
          "  --sft-weight W          add W x the winner's MSE to the DPO loss (default 0:\n"
          "                          Eq. 14 alone); it keeps the winners' likelihood\n"
          "                          from falling with the losers'\n"
          "  --timesteps LO:HI       draw training timesteps from [LO, HI) only (default:\n"
          "                          all, as Eq. 14); a high range trains the steps that\n"
          "                          decide an image's layout\n"
          "  --ties skip|half        drop label_0 = 0.5 pairs (default, as official) or\n"
          "                          train them with a soft label 0.5\n"
          "  --model-filter S        keep pairs whose two generators contain S\n"
          "                          (official --dreamlike_pairs_only is \"dream\")\n"
          "optimization:\n"
          "  --lr X                  learning rate (default 1e-8)\n"
          "  --scale-lr              lr x batch x grad-accum x workers (1 worker); the\n"
          "                          effective lr is printed at the start (official\n"
          "                          launcher: 1e-8 x 1 x 128 x 16 GPUs = 2.048e-5)\n"
          "  --warmup-steps N        linear warmup from 0 (default 500)\n"
          "  --warmup-frac F         warmup as a fraction of --max-steps (paper: 0.25)\n"
          "  --max-steps N           optimizer steps (default 2000)\n"
          "  --batch-size N          pairs per micro-batch (default 1)\n"
          "  --grad-accum N          micro-batches per step (default 1; the official\n"
          "                          launcher uses 128 on 16 GPUs)\n"
          "  --optimizer adamw|adafactor   (default adamw, betas 0.9/0.999, eps 1e-8)\n"
          "  --weight-decay X        default: 1e-2 for adamw, 0 for adafactor\n"
          "  --max-grad-norm X       clip the total gradient norm (default 1.0; 0: off)\n"
          "  --train-text-encoder    also train the text encoder (small models)\n"
          "  --gradient-checkpointing  recompute each UNet resnet and transformer block's\n"
          "                          activations in its backward: much less memory, about\n"
          "                          a third more compute, the same numbers\n"
          "data:\n"
          "  --resolution N          square training size in pixels (default 512)\n"
          "  --random-crop           random crops (default: centre crop)\n"
          "  --no-hflip              no random horizontal flips (default: flip half)\n"
          "  --proportion-empty-prompts P  drop captions with probability P (default 0.2)\n"
          "  --cache-dir DIR         where the latent/text cache lives (default OUT/cache)\n"
          "run:\n"
          "  --seed N                all randomness (default 0)\n"
          "  --checkpoint-every N    checkpoint every N steps (default 500; 0: none)\n"
          "  --keep-checkpoints K    keep the K newest checkpoints (default: all)\n"
          "  --resume latest|PATH    continue from OUT's newest checkpoint (a fresh run\n"
          "                          when there is none) or from a checkpoint folder\n"
          "  --threads N             CPU threads (default: all cores)\n"
          "  --backend cpu|cuda|auto where the UNets run (default auto: cuda when this\n"
          "                          build has it and a device is visible). On cuda the\n"
          "                          step (loss, clipping, optimizer) stays on the device;\n"
          "                          the cache (VAE, text encoder) is made on the CPU;\n"
          "                          --train-text-encoder and validation need cpu.\n"
          "                          cuda without a build or device: exit 2 or 1\n"
          "  --precision float32|bf16  the UNets' arithmetic storage (default float32).\n"
          "                          bf16: mixed precision, bf16 activations and weight\n"
          "                          copies, float32 sums, master weights and optimizer;\n"
          "                          the reference held in bf16. Checkpoints stay float32.\n"
          "                          Meant for cuda: on the CPU it emulates bf16 (slow)\n"
          "\nvalidation (the paper's metric: the median score of generated images):\n"
          "  --validate-prompts SET  prompt set or file to sample during training\n"
          "  --validate-every N      after every N-th step (needs --validate-prompts)\n"
          "  --scorer NAME           scorer of the validation images (dpo score --help)\n"
          "  --validate-score NAME   which score of the scorer (default: its first)\n"
          "  --validate-limit N      first N prompts of the set (default 16; 0: all)\n"
          "  --validate-steps N      sampler steps per image (default 20)\n"
          "  Each validation appends {step, n, median, mean} to OUT/validation.jsonl.\n"
          "  --stop-after N          stop after N steps of this run without the final\n"
          "                          save, as if killed (for tests of --resume)\n"
          "  -h, --help              this help\n\n"
          "Exit status: 0 done, 1 data error (a malformed pairs line, a missing image,\n"
          "a pipeline component missing: the message names it), 2 usage error. A run\n"
          "that fails before its first checkpoint leaves OUT as it was.\n");
}

static int parse_int(const char *flag, const char *text, int64_t max, int64_t *out) {
  uint64_t v;
  int rc = cli_parse_u64("train", flag, text, &v);
  if (rc != EXIT_OK) return rc;
  if (v > (uint64_t)max) return cli_usage_error("train", "%s: at most %lld", flag, (long long)max);
  *out = (int64_t)v;
  return EXIT_OK;
}

/* What --validate-* asked for, handed to the training loop's callback. */
typedef struct {
  const char *prompts;
  const char *scorer_name;
  const char *score_name;
  int64_t every, limit, steps;
  const eval_scorer *scorer;
  int score_index;
  uint64_t seed;
  int threads;
  const char *out_dir;
} validation_request;

/* Samples and scores the validation prompts with the weights being trained,
 * prints the result and appends it to OUT/validation.jsonl. */
static int validate_policy(void *user, dpo_pipeline *policy, int64_t step, dpo_error *err) {
  const validation_request *v = user;
  eval_sample_options opt;
  eval_sample_options_default(&opt);
  opt.steps = (int)v->steps;
  eval_validation result;
  int rc = eval_validate(policy, v->prompts, (int)v->limit, &opt, v->seed, v->scorer, v->score_index, 1,
                         v->threads, &result, err);
  if (rc != DPO_OK) return dpo_error_prefix(err, "validation at step %lld", (long long)step);
  fprintf(stderr, "\nvalidation at step %lld: %s median %.4f, mean %.4f over %d prompts\n", (long long)step,
          v->scorer->score_names[v->score_index], result.median, result.mean, result.n);
  char path[4200];
  snprintf(path, sizeof path, "%s/validation.jsonl", v->out_dir);
  FILE *f = fopen(path, "a");
  if (!f) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot open for appending", path);
  /* Keys in this order, one object a line; names escaped by jansson. */
  json_t *line = json_pack("{s:I, s:s, s:s, s:i, s:f, s:f}", "step", (json_int_t)step, "scorer", v->scorer->name,
                           "score", v->scorer->score_names[v->score_index], "n", result.n, "median", result.median,
                           "mean", result.mean);
  char *text = line ? json_dumps(line, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
  if (text) fprintf(f, "%s\n", text);
  free(text);
  json_decref(line);
  int failed = fflush(f) != 0 || fsync(fileno(f)) != 0;
  if (fclose(f) != 0 || failed) return dpo_fail(err, DPO_ERR_DATA, "%s: write failed", path);
  return DPO_OK;
}

/* Checks the --validate-* flags and fills the loop's callback. */
static int setup_validation(validation_request *v, dpo_train_options *o) {
  if (!v->prompts && !v->every) return EXIT_OK;
  if (!v->prompts || v->every <= 0 || !v->scorer_name)
    return cli_usage_error("train", "validation needs --validate-prompts, --validate-every N > 0 and --scorer");
  v->scorer = eval_find_scorer(v->scorer_name);
  if (!v->scorer) return cli_usage_error("train", "--scorer: unknown scorer \"%s\"", v->scorer_name);
  v->score_index = v->score_name ? eval_score_index(v->scorer, v->score_name) : 0;
  if (v->score_index < 0)
    return cli_usage_error("train", "--validate-score: scorer %s has no score \"%s\"", v->scorer_name, v->score_name);
  v->seed = o->seed;
  v->threads = o->threads;
  v->out_dir = o->out_dir;
  o->validate_every = v->every;
  o->validate = validate_policy;
  o->validate_user = v;
  return EXIT_OK;
}

int cmd_train(int argc, char **argv) {
  validation_request validation = {NULL, NULL, NULL, 0, 16, 20, NULL, 0, 0, 0, NULL};
  dpo_train_options o;
  dpo_train_options_default(&o);
  dpo_error err = {0};
  const char *backend_name = NULL, *precision_name = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      cmd_train_help(stdout);
      return EXIT_OK;
    }
    /* Flags without a value. */
    if (strcmp(a, "--scale-lr") == 0) { o.scale_lr = 1; continue; }
    if (strcmp(a, "--random-crop") == 0) { o.random_crop = 1; continue; }
    if (strcmp(a, "--no-hflip") == 0) { o.hflip = 0; continue; }
    if (strcmp(a, "--train-text-encoder") == 0) { o.train_text_encoder = 1; continue; }
    if (strcmp(a, "--gradient-checkpointing") == 0) { o.gradient_checkpointing = 1; continue; }
    if (strncmp(a, "--", 2) != 0) return cli_usage_error("train", "unexpected argument \"%s\"", a);
    if (i + 1 >= argc) return cli_usage_error("train", "%s needs a value", a);
    const char *v = argv[++i];
    int64_t n = 0;
    int rc = EXIT_OK;
    if (strcmp(a, "--base") == 0) o.base_dir = v;
    else if (strcmp(a, "--backend") == 0) backend_name = v;
    else if (strcmp(a, "--precision") == 0) precision_name = v;
    else if (strcmp(a, "--pairs") == 0) o.pairs_path = v;
    else if (strcmp(a, "--out") == 0) o.out_dir = v;
    else if (strcmp(a, "--cache-dir") == 0) o.cache_dir = v;
    else if (strcmp(a, "--model-filter") == 0) o.model_filter = v;
    else if (strcmp(a, "--resume") == 0) o.resume = v;
    else if (strcmp(a, "--validate-prompts") == 0) validation.prompts = v;
    else if (strcmp(a, "--scorer") == 0) validation.scorer_name = v;
    else if (strcmp(a, "--validate-score") == 0) validation.score_name = v;
    else if (strcmp(a, "--validate-every") == 0) rc = parse_int(a, v, INT64_MAX / 2, &validation.every);
    else if (strcmp(a, "--validate-limit") == 0) rc = parse_int(a, v, 1 << 30, &validation.limit);
    else if (strcmp(a, "--validate-steps") == 0) rc = parse_int(a, v, 1000, &validation.steps);
    else if (strcmp(a, "--loss") == 0) {
      if (strcmp(v, "dpo") == 0) o.sft = 0;
      else if (strcmp(v, "sft") == 0) o.sft = 1;
      else return cli_usage_error("train", "--loss: expected dpo or sft, got \"%s\"", v);
    } else if (strcmp(a, "--optimizer") == 0) {
      if (dpo_optim_kind_parse(v, &o.optimizer, &err)) return cli_usage_error("train", "--optimizer: %s", err.msg);
    } else if (strcmp(a, "--ties") == 0) {
      if (dpo_ties_mode_parse(v, &o.ties, &err)) return cli_usage_error("train", "--ties: %s", err.msg);
    } else if (strcmp(a, "--beta") == 0) rc = cli_parse_double("train", a, v, &o.beta);
    else if (strcmp(a, "--lr") == 0) rc = cli_parse_double("train", a, v, &o.lr);
    else if (strcmp(a, "--warmup-frac") == 0) rc = cli_parse_double("train", a, v, &o.warmup_frac);
    else if (strcmp(a, "--weight-decay") == 0) rc = cli_parse_double("train", a, v, &o.weight_decay);
    else if (strcmp(a, "--max-grad-norm") == 0) rc = cli_parse_double("train", a, v, &o.max_grad_norm);
    else if (strcmp(a, "--sft-weight") == 0) rc = cli_parse_double("train", a, v, &o.sft_weight);
    else if (strcmp(a, "--proportion-empty-prompts") == 0) rc = cli_parse_double("train", a, v, &o.proportion_empty_prompts);
    else if (strcmp(a, "--timesteps") == 0) {
      int lo, hi, used = 0;
      if (sscanf(v, "%d:%d%n", &lo, &hi, &used) != 2 || v[used] != '\0' || lo < 0 || hi <= lo)
        return cli_usage_error("train", "--timesteps: expected LO:HI with 0 <= LO < HI, got \"%s\"", v);
      o.timestep_min = lo;
      o.timestep_max = hi;
    } else if (strcmp(a, "--warmup-steps") == 0) rc = parse_int(a, v, INT64_MAX / 2, &o.warmup_steps);
    else if (strcmp(a, "--max-steps") == 0) rc = parse_int(a, v, INT64_MAX / 2, &o.max_steps);
    else if (strcmp(a, "--checkpoint-every") == 0) rc = parse_int(a, v, INT64_MAX / 2, &o.checkpoint_every);
    else if (strcmp(a, "--stop-after") == 0) rc = parse_int(a, v, INT64_MAX / 2, &o.stop_after);
    else if (strcmp(a, "--seed") == 0) {
      uint64_t s;
      rc = cli_parse_u64("train", a, v, &s);
      o.seed = s;
    } else if (strcmp(a, "--batch-size") == 0 || strcmp(a, "--grad-accum") == 0 || strcmp(a, "--resolution") == 0 ||
               strcmp(a, "--keep-checkpoints") == 0 || strcmp(a, "--threads") == 0) {
      rc = parse_int(a, v, 1 << 30, &n);
      if (rc == EXIT_OK) {
        if (strcmp(a, "--batch-size") == 0) o.batch_size = (int)n;
        else if (strcmp(a, "--grad-accum") == 0) o.grad_accum = (int)n;
        else if (strcmp(a, "--resolution") == 0) o.resolution = (int)n;
        else if (strcmp(a, "--keep-checkpoints") == 0) o.keep_checkpoints = (int)n;
        else o.threads = (int)n;
      }
    } else {
      return cli_usage_error("train", "unknown option \"%s\"", a);
    }
    if (rc != EXIT_OK) return rc;
  }
  if (!o.base_dir || !o.pairs_path || !o.out_dir) return cli_usage_error("train", "--base, --pairs and --out are required");
  int backend, brc = cli_backend("train", backend_name, &backend);
  if (brc != EXIT_OK) return brc;
  o.backend = (kn_backend)backend;
  int precision, prc = cli_precision("train", precision_name, &precision);
  if (prc != EXIT_OK) return prc;
  o.precision = (kn_dtype)precision;
  if (o.warmup_frac >= 0 && o.warmup_frac > 1) return cli_usage_error("train", "--warmup-frac must be in [0, 1]");
  int vrc = setup_validation(&validation, &o);
  if (vrc != EXIT_OK) return vrc;
  o.info = stderr;
  o.progress = isatty(fileno(stderr)) ? stderr : NULL;
  dpo_train_result res;
  int rc = dpo_train(&o, &res, &err);
  if (rc != DPO_OK) return cli_report_error(&err);
  if (res.steps_done >= o.max_steps)
    fprintf(stderr, "trained %lld steps on %d pairs (last loss %.4f, implicit accuracy %.3f); model in %s\n",
            (long long)res.steps_done, res.n_pairs, res.last.loss, res.last.implicit_acc, o.out_dir);
  else
    fprintf(stderr, "stopped after step %lld (--stop-after); resume with --resume latest\n", (long long)res.steps_done);
  return EXIT_OK;
}
