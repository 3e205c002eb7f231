#!/usr/bin/env bash
# The HTML report in a real browser: a small study with known votes
# (tests/e2e/report_helpers), `dpo report`, then headless Chromium must
# render it without console errors. Keeps the screenshot as a test artifact
# in the build tree and prints its path. Fails (never skips) when chromium,
# chromedriver or the .venv with selenium is missing.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
src=${DPO_SOURCE_DIR:?}
build=${DPO_BUILD_DIR:?}
python=$src/.venv/bin/python
[ -x "$python" ] || { echo "FAIL: $python not found: run scripts/setup.sh --no-build to create .venv (selenium)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
text='p000=a <b>bold</b> & "quoted" cat, <script>alert(1)</script>'
for run in "runA base" "runB tuned" "runC cmodel"; do
  set -- $run
  python3 "$src/tests/e2e/study_helpers/make_run.py" "$1" "$2" --prompts 4 --seeds 2 --prompt-text "$text"
done
"$dpo" study create --db st.db --name s1 --a runA --b runB --questions q1,q3 --votes 3 --allow-tie --gold 2 --seed 7 >/dev/null &&
  "$dpo" study create --db st.db --name s2 --a runB --b runC --questions q1 --votes 3 --allow-tie --seed 8 >/dev/null &&
  for s in empty ties; do "$dpo" study create --db st.db --name $s --a runA --b runB --questions q1 --votes 3 --allow-tie >/dev/null; done &&
  "$dpo" study create --db st.db --name onerater --a runA --b runB --questions q1 --votes 1 >/dev/null &&
  python3 "$src/tests/e2e/report_helpers/report_case.py" votes st.db &&
  "$dpo" report --db st.db --study s1 --study s2 --study ties --study empty --out rep >/dev/null ||
  { echo "FAIL: could not make the report"; exit 1; }
"$python" "$src/tests/browser/helpers/report_browser.py" rep/report.html "$build/artifacts/report.png"
