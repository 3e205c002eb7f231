#!/usr/bin/env bash
# Installs what dpo needs on Debian 12 and builds it. Idempotent and
# non-interactive: packages already present are not reinstalled, and the
# Python test environment is created once per pinned requirements file.
#
# usage: scripts/setup.sh [--no-build] [--build-dir DIR] [--sanitize] [--fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
build_dir=build
cmake_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --build-dir) build_dir="$2"; shift ;;
    --sanitize) cmake_args+=(-DDPO_SANITIZE=ON) ;;
    --fuzz) cmake_args+=(-DDPO_FUZZ=ON -DCMAKE_C_COMPILER=clang) ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# Debian packages: compilers and build tools, the libraries of DESIGN.md, clang
# for the fuzzers, python3-venv for the test tools (the safetensors round trip),
# chromium and its driver for the HTML report's browser test.
packages=(
  build-essential cmake pkg-config git ca-certificates
  clang libclang-rt-14-dev
  libjansson-dev libpng-dev libjpeg62-turbo-dev libopenblas-dev libomp-dev
  libsqlite3-dev libgsl-dev libcurl4-openssl-dev libmicrohttpd-dev libcairo2-dev
  python3 python3-venv curl
  chromium chromium-driver
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python tools used by tests (never PyTorch): pinned, in a project-local venv.
# Debian's own python3 is used so that the venv works on a fresh machine.
req=tests/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv from $req"
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

if [ "$build" -eq 1 ]; then
  cmake -S . -B "$build_dir" "${cmake_args[@]}" >/dev/null
  cmake --build "$build_dir" -j "$(nproc)"
fi
