#!/usr/bin/env bash
# The report of `dpo demo --quick` (made by e2e.demo_quick, this test's ctest
# fixture, in artifacts/demo-quick/) in headless Chromium: charts rendered,
# every gallery image decoded, no console errors. The full-page screenshot is
# kept as artifacts/demo_report.png.
set -u
src=${DPO_SOURCE_DIR:?}
build=${DPO_BUILD_DIR:?}
python=$src/.venv/bin/python
[ -x "$python" ] || { echo "FAIL: $python not found: run scripts/setup.sh --no-build to create .venv (selenium)"; exit 1; }
html=$build/artifacts/demo-quick/report/report.html
[ -s "$html" ] || { echo "FAIL: $html missing: e2e.demo_quick makes it"; exit 1; }
"$python" "$src/tests/browser/helpers/report_browser.py" "$html" "$build/artifacts/demo_report.png"
