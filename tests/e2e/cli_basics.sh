#!/usr/bin/env bash
# The dpo command's contract: help, version, exit statuses 0/1/2, --quiet.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
fail=0
check() { # check DESCRIPTION EXPECTED_STATUS COMMAND...
  local what=$1 want=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; cat "$tmp/out" "$tmp/err"; fail=1
  fi
}
contains() { # contains DESCRIPTION FILE TEXT
  grep -qF -- "$3" "$2" || { echo "FAIL: $1: '$3' not in output:"; cat "$2"; fail=1; }
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check "help" 0 "$dpo" help
contains "help lists commands" "$tmp/out" "commands:"
contains "help lists version" "$tmp/out" "version"
check "--help" 0 "$dpo" --help
contains "--help shows usage" "$tmp/out" "usage: dpo"
check "--version" 0 "$dpo" --version
grep -qE '^dpo [0-9a-g][-.0-9a-z]*' "$tmp/out" || { echo "FAIL: version format"; cat "$tmp/out"; fail=1; }
check "version subcommand" 0 "$dpo" version
check "help of a command" 0 "$dpo" help version
contains "help version" "$tmp/out" "usage: dpo version"
check "CMD --help" 0 "$dpo" version --help
check "no command" 2 "$dpo"
check "unknown command" 2 "$dpo" frobnicate
contains "unknown command named" "$tmp/err" 'unknown command "frobnicate"'
check "unknown global option" 2 "$dpo" --frob
check "help of unknown command" 2 "$dpo" help frobnicate
check "extra argument" 2 "$dpo" version extra
# Every command listed by help has a working --help.
for c in $("$dpo" help | awk '/^commands:/{on=1; next} on && /^  [a-z]/{print $1} on && /^$/{exit}'); do
  check "$c --help" 0 "$dpo" "$c" --help
  contains "$c --help shows usage" "$tmp/out" "usage: dpo"
done
exit $fail
