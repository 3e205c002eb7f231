/* Malformed run folders: eval_run_load (dpo score, dpo grid, dpo pairs) and
 * the resume scan of eval_generate name the line and what was expected. */
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "tests/test.h"

static const char *GOOD =
    "{\"prompt_set\":\"p\",\"prompt_id\":\"p:1\",\"prompt\":\"a\",\"category\":\"\",\"seed\":0,\"image_index\":0,"
    "\"file\":\"images/a.png\",\"sha256\":\"00\",\"model\":\"m\",\"settings\":{}}\n";

static int load_with(const char *name, const char *manifest, eval_run *run, dpo_error *err) {
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s", test_path(name));
  dpo_mkdir_p(dir, err);
  snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
  test_write_file(path, manifest, strlen(manifest));
  return eval_run_load(dir, run, err);
}

int main(void) {
  dpo_error err = {0};
  eval_run run;
  CHECK_INT(load_with("good", GOOD, &run, &err), DPO_OK);
  CHECK_INT(run.n, 1);
  if (run.n == 1) CHECK_STR(run.items[0].file, "images/a.png");
  eval_run_free(&run);

  char text[2048];
  snprintf(text, sizeof text, "%s{not json\n", GOOD);
  CHECK_INT(load_with("garbage", text, &run, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:2");
  CHECK_INT(load_with("empty", "\n\n", &run, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "no images listed");
  CHECK_INT(load_with("array", "[1, 2]\n", &run, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "expected a JSON object");
  CHECK_INT(load_with("nofile", "{\"prompt_set\":\"p\",\"prompt_id\":\"p:1\",\"prompt\":\"a\",\"seed\":0,\"image_index\":0}\n",
                      &run, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "file");
  const char *escapes[] = {"/etc/passwd", "../x.png", "images/../../x.png"};
  for (int i = 0; i < 3; i++) {
    snprintf(text, sizeof text,
             "{\"prompt_set\":\"p\",\"prompt_id\":\"p:1\",\"prompt\":\"a\",\"seed\":0,\"image_index\":0,\"file\":\"%s\"}\n",
             escapes[i]);
    CHECK_INT(load_with("escape", text, &run, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "inside the run folder");
  }
  CHECK_INT(load_with("missing", "", &run, &err), DPO_ERR_DATA);
  CHECK_INT(eval_run_load(test_path("nowhere"), &run, &err), DPO_ERR_DATA);

  /* The resume scan: a malformed line before the last is an error (only a
   * torn last line is repaired), and so is a line without model/settings. */
  eval_generate_config g;
  eval_generate_config_default(&g);
  g.model = test_source_path("tests/fixtures/pipelines/tiny_pixel");
  g.prompts = "world:train:1";
  g.sample.steps = 1;
  g.threads = 1;
  g.quiet = 1;
  eval_generate_stats gs;
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s", test_path("resume-bad"));
  dpo_mkdir_p(dir, &err);
  snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
  g.out = dir;
  const char *bad = "{oops\n{\"a\": 1}\n";
  test_write_file(path, bad, strlen(bad));
  CHECK_INT(eval_generate(&g, &gs, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "manifest.jsonl:1");
  bad = "{\"file\": \"images/000000-0.png\"}\n";
  test_write_file(path, bad, strlen(bad));
  CHECK_INT(eval_generate(&g, &gs, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "expected a manifest line with model, settings and file");
  /* A torn (unterminated) only line is dropped and the run proceeds. */
  bad = "{\"file\": \"images/0000";
  test_write_file(path, bad, strlen(bad));
  CHECK_INT(eval_generate(&g, &gs, &err), DPO_OK);
  CHECK_INT(gs.dropped_lines, 1);
  CHECK_INT(gs.generated, 1);
  /* Summaries: too few resamples, no values. */
  double x[3] = {1, 2, 3};
  eval_summary s;
  CHECK_INT(eval_summarize(x, 0, 100, 0, &s, &err), DPO_ERR_USAGE);
  CHECK_INT(eval_summarize(x, 3, 5, 0, &s, &err), DPO_ERR_USAGE);
  CHECK_INT(eval_summarize(x, 3, 1000, 0, &s, &err), DPO_OK);
  CHECK_NEAR(s.median, 2, 0);
  CHECK_NEAR(s.mean, 2, 1e-12);
  /* Wilson: 8 of 10 is [0.4902, 0.9433] (statsmodels). */
  double lo, hi;
  eval_wilson(8, 10, 1.959963984540054, &lo, &hi);
  CHECK_NEAR(lo, 0.4901624, 1e-6);
  CHECK_NEAR(hi, 0.9433178, 1e-6);
  return test_finish();
}
