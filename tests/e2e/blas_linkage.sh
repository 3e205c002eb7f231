#!/bin/bash
# The dpo binary's cblas_sgemm must come from OpenBLAS. Debian's libgsl pulls
# in GSL's reference libgslcblas, which exports the same CBLAS symbols; when
# it was searched first, every GEMM of the CPU kernels ran on its plain loops
# (the UNet ~8x slower). Asks the dynamic linker where the symbol binds.
set -euo pipefail
bindings=$(LD_BIND_NOW=1 LD_DEBUG=bindings "$DPO" version 2>&1 >/dev/null | grep "symbol \`cblas_sgemm'" || true)
if [ -z "$bindings" ]; then
  echo "FAIL: no binding of cblas_sgemm reported by the dynamic linker"
  exit 1
fi
if echo "$bindings" | grep -v -q openblas; then
  echo "FAIL: cblas_sgemm binds outside OpenBLAS:"
  echo "$bindings"
  exit 1
fi
echo "ok: every cblas_sgemm binding goes to OpenBLAS"
echo "$bindings"
