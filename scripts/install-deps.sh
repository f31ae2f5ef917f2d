#!/usr/bin/env bash
# Installs the Debian 12 packages swarmlite needs to build, test and run its demo.
# Safe to run again: installs only what is missing. Uses sudo when not root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache git
  libsqlite3-dev libsodium-dev libboost-dev libfmt-dev libspdlog-dev
  doctest-dev libcli11-dev nlohmann-json3-dev libbenchmark-dev
  sqlite3 python3 python3-sqlalchemy curl
)
if [ "${SWARMLITE_WITH_FUZZ:-0}" = 1 ]; then
  packages+=(clang libclang-rt-14-dev)
fi
if [ "${SWARMLITE_WITH_NODE:-0}" = 1 ]; then
  command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
