#!/usr/bin/env bash
# README command 2: install what is missing, build, and run every test
# (unit tests, fuzz-corpus replays, integration tests with real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
SWARMLITE_WITH_NODE=1 scripts/install-deps.sh
scripts/build.sh "$@"
build_dir=${SWARMLITE_BUILD_DIR:-build}
# SWARMLITE_CTEST_ARGS: extra ctest arguments (e.g. -LE bigdb), split on spaces.
# shellcheck disable=SC2086
ctest --test-dir "$build_dir" --output-on-failure -j "${SWARMLITE_JOBS:-$(nproc)}" --timeout 1800 ${SWARMLITE_CTEST_ARGS:-}
