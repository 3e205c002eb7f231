/* --backend cpu|cuda|auto and --precision float32|bf16, shared by the
 * commands that compute with the kernels: resolve the name
 * (kn_backend_resolve, kn_dtype_resolve) before any work starts, so that
 * asking for a backend this build or machine lacks fails at once. */
#include "cli/cli.h"
#include "kernels/kernels.h"

int cli_backend(const char *cmd, const char *name, int *backend) {
  dpo_error err = {0};
  kn_backend chosen = KN_BACKEND_CPU;
  if (kn_backend_resolve(name, &chosen, &err) != DPO_OK) {
    dpo_error_prefix(&err, "%s", cmd);
    return cli_report_error(&err);
  }
  *backend = (int)chosen;
  return EXIT_OK;
}

int cli_precision(const char *cmd, const char *name, int *dtype) {
  dpo_error err = {0};
  kn_dtype chosen = KN_F32;
  if (kn_dtype_resolve(name, &chosen, &err) != DPO_OK) {
    dpo_error_prefix(&err, "%s", cmd);
    return cli_report_error(&err);
  }
  *dtype = (int)chosen;
  return EXIT_OK;
}
