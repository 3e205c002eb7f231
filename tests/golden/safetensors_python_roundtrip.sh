#!/usr/bin/env bash
# Live safetensors round trip with the reference Python package:
#   C writes a file -> Python (safetensors 0.4.5, numpy) checks every value
#   and that it serialises the same tensors to the same bytes;
#   Python writes a file -> C checks every value.
# Needs .venv (scripts/setup.sh makes it; CI always has it): without it this
# test fails rather than skipping, so a missing venv cannot pass silently.
# env: ST_TOOL (tests/golden/st_tool.c), DPO_SOURCE_DIR.
set -euo pipefail
src=${DPO_SOURCE_DIR:?DPO_SOURCE_DIR not set}
tool=${ST_TOOL:?ST_TOOL not set}
python=$src/.venv/bin/python
if [ ! -x "$python" ]; then
  echo "FAIL: $python not found: run scripts/setup.sh (or scripts/setup.sh --no-build) to create .venv" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$tool" write-sample "$work/c.safetensors"
"$python" "$src/tests/fixtures/make_safetensors_fixtures.py" --out-dir "$work" --c-written "$work/c.safetensors"
"$tool" check "$work/py_written.safetensors" "$work/py_written.json"
# The fresh C file must also equal the committed one the fixtures were made from.
cmp "$work/c.safetensors" "$src/tests/fixtures/safetensors/c_written.safetensors"
echo "safetensors round trip with Python: ok"
