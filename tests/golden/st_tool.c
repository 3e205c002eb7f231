/* The C half of the live safetensors round trip with the Python package
 * (tests/golden/safetensors_python_roundtrip.sh):
 *   st_tool write-sample OUT        writes the tensors of c_written.safetensors
 *   st_tool check FILE EXPECTED     compares FILE with a description written
 *                                   by make_safetensors_fixtures.py
 * Exit status 0 when everything matched. */
#include "tests/golden/safetensors_sample.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "write-sample") == 0) {
    dpo_error err = {0};
    if (st_sample_write(argv[2], &err) != DPO_OK) {
      fprintf(stderr, "st_tool: %s\n", err.msg);
      return 1;
    }
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "check") == 0) {
    int bad = st_sample_check_file(argv[2], argv[3]);
    if (bad) fprintf(stderr, "st_tool: %s: %d mismatches against %s\n", argv[2], bad, argv[3]);
    return bad ? 1 : 0;
  }
  fprintf(stderr, "usage: st_tool write-sample OUT | st_tool check FILE EXPECTED_JSON\n");
  return 2;
}
