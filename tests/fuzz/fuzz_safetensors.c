/* Fuzzes the safetensors header parser over bytes in memory, and converts
 * every float tensor it accepts, so that the offsets it vouches for are
 * actually read (AddressSanitizer catches a view past the buffer). */
#include "core/core.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dpo_safetensors st;
  dpo_error err;
  if (dpo_st_parse(&st, data, size, "fuzz.safetensors", &err) != DPO_OK) return 0;
  for (int i = 0; i < st.n_tensors; i++) {
    const dpo_tensor_view *t = &st.tensors[i];
    if (t->data < data || t->data + t->nbytes > data + size) abort();
    if (dpo_st_find(&st, t->name) == NULL) abort();
    float *out = malloc(t->numel > 0 ? (size_t)t->numel * sizeof *out : 1);
    if (!out) continue;
    dpo_st_to_f32(t, out, &err);
    free(out);
  }
  for (int i = 0; i < st.n_meta; i++)
    if (dpo_st_meta(&st, st.meta_keys[i]) == NULL) abort();
  dpo_st_close(&st);
  return 0;
}
