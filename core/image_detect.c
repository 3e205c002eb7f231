#include "core/core.h"

#include <string.h>

/* Magic bytes, never the file name: TEd-Bench's bird.png is a JPEG. */
dpo_image_format dpo_image_detect(const uint8_t *data, size_t size) {
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && memcmp(data, png_magic, 8) == 0) return DPO_IMAGE_FORMAT_PNG;
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return DPO_IMAGE_FORMAT_JPEG;
  return DPO_IMAGE_FORMAT_UNKNOWN;
}
