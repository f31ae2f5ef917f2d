#!/usr/bin/env bash
# README command 1: install what is missing, build, and run `swarmlite demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/cli/swarmlite demo "$@"
