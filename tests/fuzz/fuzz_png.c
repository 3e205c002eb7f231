/* libFuzzer target: PNG bytes through dpo_image_decode (with a channel
 * conversion chosen by the input's length) and dpo_png_decode_texts. Either
 * call must succeed with a well-formed result or fail with a data error and
 * a message; anything else (a crash, a leak, exit from inside libpng) is a
 * finding. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static void check_result(int rc, const dpo_image *img, const dpo_error *err) {
  if (rc == DPO_OK) {
    if (!img->pixels || img->width <= 0 || img->height <= 0 || img->width > DPO_IMAGE_MAX_SIDE ||
        img->height > DPO_IMAGE_MAX_SIDE || (img->channels != 1 && img->channels != 3 && img->channels != 4))
      abort();
  } else if (rc != DPO_ERR_DATA || err->code != DPO_ERR_DATA || err->msg[0] == '\0' || img->pixels) {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int wants[4] = {0, 1, 3, 4};
  dpo_image img;
  dpo_error err = {0};
  int rc = dpo_image_decode(data, size, "fuzz.png", wants[size % 4], &img, &err);
  check_result(rc, &img, &err);
  dpo_image_free(&img);

  dpo_image_text *texts;
  int n;
  rc = dpo_png_decode_texts(data, size, "fuzz.png", &texts, &n, &err);
  if (rc == DPO_OK) {
    if (n < 0 || n > DPO_IMAGE_MAX_TEXT || (n > 0 && !texts)) abort();
    for (int i = 0; i < n; i++)
      if (!texts[i].key || !texts[i].value) abort();
  } else if (rc != DPO_ERR_DATA || texts || n != 0) {
    abort();
  }
  dpo_image_texts_free(texts, n);
  return 0;
}
