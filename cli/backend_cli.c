/* --backend cpu|cuda|auto, shared by the commands that compute with the
 * kernels: resolves the name (kn_backend_resolve) before any work starts, so
 * that asking for a backend this build or machine lacks fails at once. */
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
