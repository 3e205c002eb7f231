/* Loads a pairs.jsonl with the trainer's loader, decodes every image, and
 * prints a summary line, for tests that drive the Python importer.
 * usage: pairs_tool PAIRS.jsonl skip|half [MODEL_FILTER] */
#include <stdio.h>
#include <string.h>

#include "trainer/trainer.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pairs_tool PAIRS.jsonl skip|half [MODEL_FILTER]\n");
    return 2;
  }
  dpo_error err = {0};
  dpo_pairs_options opt = {.check_images = 1, .model_filter = argc > 3 ? argv[3] : NULL};
  if (dpo_ties_mode_parse(argv[2], &opt.ties, &err) != DPO_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 2;
  }
  dpo_pairs set;
  if (dpo_pairs_load(argv[1], &opt, &set, &err) != DPO_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  int ties = 0, swapped = 0;
  for (int i = 0; i < set.n; i++) {
    const dpo_pair *p = &set.pairs[i];
    ties += p->label == 0.5f;
    swapped += p->swapped;
    const char *images[2] = {p->image_w, p->image_l};
    for (int k = 0; k < 2; k++) {
      dpo_image img;
      if (dpo_image_read(images[k], 3, &img, &err) != DPO_OK) {
        fprintf(stderr, "line %d: %s\n", p->line, err.msg);
        dpo_pairs_free(&set);
        return 1;
      }
      dpo_image_free(&img);
    }
  }
  printf("pairs=%d ties=%d swapped=%d ties_skipped=%d filtered=%d first_caption=%s\n", set.n, ties, swapped,
         set.n_ties_skipped, set.n_filtered, set.n ? set.pairs[0].caption : "");
  dpo_pairs_free(&set);
  return 0;
}
