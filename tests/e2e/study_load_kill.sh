#!/usr/bin/env bash
# A short version of bench/study_load with a kill -9: 8 clients vote for 4 s,
# the server is killed with SIGKILL after 1.5 s and restarted on its port;
# every vote the driver saw acknowledged must be in the database, once, with
# the answers sent (bench/study_load/verify.py checks the ack log).
set -u
: "${DPO:?DPO must point at the dpo binary}"
src=${DPO_SOURCE_DIR:?}
build=${DPO_BUILD_DIR:?}
[ -x "$build/study_load" ] || { echo "FAIL: $build/study_load is missing (the load driver)"; exit 1; }
out=$("$src/bench/study_load/run.sh" --build "$build" --seconds 4 --clients 8 --items 200 --raters 64 --kill-at 1.5 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "FAIL: run.sh exited $rc"; exit 1; }
echo "$out" | grep -q '"lost": 0, "duplicated": 0' || { echo "FAIL: votes lost or duplicated"; exit 1; }
# The run must really have acknowledged votes before and after the kill.
before=$(echo "$out" | sed -n 's/.*; \([0-9]*\) votes acknowledged so far/\1/p')
acked=$(echo "$out" | sed -n 's/.*"acked": \([0-9]*\),.*/\1/p')
[ "${before:-0}" -gt 0 ] && [ "${acked:-0}" -gt "$before" ] || { echo "FAIL: no votes around the kill ($before, $acked)"; exit 1; }
exit 0
