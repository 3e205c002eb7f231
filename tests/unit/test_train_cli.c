/* dpo train from the command line: exit status 2 for usage errors, 1 for
 * data errors with a message naming the line, file or component, no output
 * folder left behind by a failed run; a good run prints the effective lr and
 * the beta convention and writes the pipeline and the log. Runs the built
 * binary (DPO_BUILD_DIR/dpo). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/test.h"
#include "tests/train_fixture.h"

static char output[1 << 16];

/* Runs `dpo train ARGS` and returns its exit status; output gets stdout+stderr. */
static int dpo_train_cli(const char *args) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "'%s/dpo' train %s 2>&1", DPO_BUILD_DIR, args);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = fread(output, 1, sizeof output - 1, p);
  output[n] = '\0';
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

int main(void) {
  char base[1024], data[1024], args[8192], out[1024];
  snprintf(base, sizeof base, "%s", test_path("base"));
  snprintf(data, sizeof data, "%s", test_path("data"));
  snprintf(out, sizeof out, "%s", test_path("out"));
  CHECK_INT(tf_make_pipeline(base, 0, 1), 0);
  CHECK_INT(tf_make_pairs(data, 4, 3, 60, 16), 0);
  const char *common = "--resolution 16 --max-steps 2 --warmup-steps 0 --threads 1 --checkpoint-every 1";

  CHECK_INT(dpo_train_cli("--help"), 0);
  CHECK_CONTAINS(output, "5000");
  CHECK_CONTAINS(output, "2000");
  CHECK_CONTAINS(output, "-0.5*beta*(model_diff - ref_diff)");

  /* Usage errors: exit 2. */
  CHECK_INT(dpo_train_cli("--base x --pairs y"), 2);
  CHECK_CONTAINS(output, "--out");
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --loss kto", base, data, out);
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "--loss");
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --beta -3 %s", base, data, out, common);
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "--beta");
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --timesteps 5:5 %s", base, data, out, common);
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "--timesteps");
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --timesteps 0:5000 %s", base, data, out, common);
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "training timesteps");
  CHECK(!exists(out));
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --sft-weight -1 %s", base, data, out, common);
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "--sft-weight");
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --resolution 15 --max-steps 1", base, data, out);
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "--resolution 15");
  CHECK(!exists(out));

  /* Data errors: exit 1, named, nothing left. */
  char bad[1100];
  snprintf(bad, sizeof bad, "%s/bad.jsonl", data);
  tf_write_text(bad, "{\"caption\": \"a\", \"image_0\": \"0_0.png\", \"image_1\": \"0_1.png\", \"label_0\": 1, \"source\": \"s\"}\n"
                     "{\"caption\": \"a\", \"image_0\": \"0_0.png\", \"image_1\": \"0_1.png\", \"label_0\": 2, \"source\": \"s\"}\n");
  snprintf(args, sizeof args, "--base %s --pairs %s --out %s %s", base, bad, out, common);
  CHECK_INT(dpo_train_cli(args), 1);
  CHECK_CONTAINS(output, "bad.jsonl:2");
  CHECK_CONTAINS(output, "label_0");
  CHECK(!exists(out));
  tf_write_text(bad, "{\"caption\": \"a\", \"image_0\": \"missing.png\", \"image_1\": \"0_1.png\", \"label_0\": 1, \"source\": \"s\"}\n");
  CHECK_INT(dpo_train_cli(args), 1);
  CHECK_CONTAINS(output, "missing.png");
  CHECK(!exists(out));
  snprintf(args, sizeof args, "--base %s/nowhere --pairs %s/pairs.jsonl --out %s %s", base, data, out, common);
  CHECK_INT(dpo_train_cli(args), 1);
  CHECK_CONTAINS(output, "model_index.json");
  CHECK(!exists(out));

  /* A good run, then the same OUT again without --resume (2), then --resume latest (0). */
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --lr 1e-4 --scale-lr --grad-accum 2 %s", base,
           data, out, common);
  CHECK_INT(dpo_train_cli(args), 0);
  CHECK_CONTAINS(output, "effective learning rate 0.0002 = 0.0001 x batch 1 x grad-accum 2");
  CHECK_CONTAINS(output, "inside = -0.5 * beta");
  CHECK(exists(test_path("out/model_index.json")));
  CHECK(exists(test_path("out/train_log.jsonl")));
  CHECK(exists(test_path("out/checkpoint-2/train_state/optimizer.safetensors")));
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "--resume");
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s --lr 1e-4 --scale-lr --grad-accum 2 %s --resume latest",
           base, data, out, common);
  CHECK_INT(dpo_train_cli(args), 0);

  /* Validation during training: sampled and scored after every step. */
  char prompts[1100], vout[1100];
  snprintf(prompts, sizeof prompts, "%s/val.txt", data);
  tf_write_text(prompts, "a bright square\na dark circle\n");
  /* Sampling needs the tokenizer to pad to the text encoder's 12 positions
   * (training truncates on its own). */
  char tok_config[1100];
  snprintf(tok_config, sizeof tok_config, "%s/tokenizer/tokenizer_config.json", base);
  tf_write_text(tok_config, "{\"model_max_length\": 12}");
  snprintf(vout, sizeof vout, "%s", test_path("out_val"));
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s %s --validate-every 1", base, data, vout, common);
  CHECK_INT(dpo_train_cli(args), 2);
  CHECK_CONTAINS(output, "--validate-prompts");
  snprintf(args, sizeof args,
           "--base %s --pairs %s/pairs.jsonl --out %s %s --validate-prompts %s --validate-every 1 --scorer brightness "
           "--validate-steps 2",
           base, data, vout, common, prompts);
  CHECK_INT(dpo_train_cli(args), 0);
  CHECK_CONTAINS(output, "validation at step 2: brightness median");
  char vlog[1200], *vtext = NULL;
  size_t vlen = 0;
  dpo_error verr;
  snprintf(vlog, sizeof vlog, "%s/validation.jsonl", vout);
  CHECK_INT(dpo_read_file(vlog, 1 << 20, &vtext, &vlen, &verr), DPO_OK);
  CHECK_CONTAINS(vtext, "{\"step\": 1, \"scorer\": \"brightness\", \"score\": \"brightness\", \"n\": 2, \"median\": ");
  CHECK_CONTAINS(vtext, "{\"step\": 2, ");
  free(vtext);

  /* A base folder missing a component. */
  char p[1100];
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", base);
  remove(p);
  snprintf(args, sizeof args, "--base %s --pairs %s/pairs.jsonl --out %s %s", base, data, test_path("out2"), common);
  CHECK_INT(dpo_train_cli(args), 1);
  CHECK_CONTAINS(output, "scheduler");
  CHECK(!exists(test_path("out2")));
  return test_finish();
}
