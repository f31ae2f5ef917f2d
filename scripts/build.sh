#!/usr/bin/env bash
# Configures and builds swarmlite into build/ (or $SWARMLITE_BUILD_DIR) with ccache.
# Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SWARMLITE_BUILD_DIR:-build}
jobs=${SWARMLITE_JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=${SWARMLITE_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build_dir" -j "$jobs"
