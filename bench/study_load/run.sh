#!/usr/bin/env bash
# Load benchmark of `dpo study serve` (issue 7): CLIENTS concurrent raters
# vote on loopback for SECONDS; afterwards the ack log of the driver is
# compared with the database (nothing acknowledged lost, nothing twice).
# With --kill-at T the server is killed with SIGKILL T seconds into the run
# and restarted on the same port while the clients keep going.
#
# usage: bench/study_load/run.sh [--build DIR] [--seconds 30] [--clients 50]
#                                [--items 400] [--raters 500] [--kill-at T] [--keep DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$src/build
seconds=30
clients=50
items=400
raters=500
kill_at=
keep=
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$(cd "$2" && pwd); shift ;;
    --seconds) seconds=$2; shift ;;
    --clients) clients=$2; shift ;;
    --items) items=$2; shift ;;
    --raters) raters=$2; shift ;;
    --kill-at) kill_at=$2; shift ;;
    --keep) keep=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
dpo=$build/dpo
driver=$build/study_load
[ -x "$dpo" ] && [ -x "$driver" ] || { echo "run.sh: build dpo and study_load first ($build)" >&2; exit 1; }
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

python3 "$src/tests/e2e/study_helpers/make_run.py" runA base --prompts $((items / 2)) --seeds 2
python3 "$src/tests/e2e/study_helpers/make_run.py" runB tuned --prompts $((items / 2)) --seeds 2
"$dpo" -q study create --db s.db --name load --a runA --b runB --questions q1,q3 --votes 5 --seed 1
"$dpo" -q study invite --db s.db --study load --raters "$raters" > tokens.txt

start_server() {
  "$dpo" study serve --db s.db --port "$1" --port-file port.txt 2>>server.log &
  server_pid=$!
  for _ in $(seq 200); do [ -s port.txt ] && break; sleep 0.05; done
  [ -s port.txt ] || { echo "run.sh: the server did not start" >&2; cat server.log >&2; exit 1; }
}
start_server 0
port=$(cat port.txt)

"$driver" --url "http://127.0.0.1:$port" --tokens tokens.txt --acks acks.tsv --clients "$clients" \
  --seconds "$seconds" > driver.txt &
driver_pid=$!
verify_args=()
if [ -n "$kill_at" ]; then
  sleep "$kill_at"
  kill -9 "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  echo "killed the server with SIGKILL at ${kill_at}s; $(wc -l < acks.tsv) votes acknowledged so far"
  rm -f port.txt
  start_server "$port"
  verify_args=(--allow-unacked)
fi
driver_rc=0
wait "$driver_pid" || driver_rc=$?
kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
server_pid=
cat driver.txt
python3 "$src/bench/study_load/verify.py" s.db acks.tsv "${verify_args[@]}"
exit $driver_rc
