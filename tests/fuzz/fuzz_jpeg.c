/* libFuzzer target: JPEG bytes through dpo_image_decode, with a channel
 * conversion chosen by the input's length. It must succeed with a well-formed
 * image or fail with a data error and a message; a crash, a leak or libjpeg's
 * default exit() on an error is a finding. */
#include <stdlib.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int wants[4] = {0, 1, 3, 4};
  dpo_image img;
  dpo_error err = {0};
  int rc = dpo_image_decode(data, size, "fuzz.jpg", wants[size % 4], &img, &err);
  if (rc == DPO_OK) {
    if (!img.pixels || img.width <= 0 || img.height <= 0 || img.width > DPO_IMAGE_MAX_SIDE ||
        img.height > DPO_IMAGE_MAX_SIDE || (img.channels != 1 && img.channels != 3 && img.channels != 4))
      abort();
  } else if (rc != DPO_ERR_DATA || err.code != DPO_ERR_DATA || err.msg[0] == '\0' || img.pixels) {
    abort();
  }
  dpo_image_free(&img);
  return 0;
}
