#!/usr/bin/env bash
# examples/node-rqlite/run.sh — runs example.js (rqlite-js) against a real primary and peer.
# Usage: run.sh PATH/TO/swarmlite [NODE_DIR]
#   NODE_DIR: where `npm ci` installs rqlite-js (kept between runs, e.g. in the build tree);
#   default: a temporary directory. Exit 0 = every check passed, 77 = skipped because node
#   or npm is missing (CTest reports the test as skipped), anything else = failure.
set -euo pipefail
swarmlite=${1:?usage: run.sh PATH/TO/swarmlite [NODE_DIR]}
swarmlite=$(realpath "$swarmlite")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib/nodes.sh"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIPPED: $tool is not installed (SWARMLITE_WITH_NODE=1 scripts/install-deps.sh installs it)"
    exit 77
  fi
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 18)); then
  echo "SKIPPED: node $(node --version) is older than 18, which rqlite-js 2.5 (axios 1.x) needs"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/swarmlite-node-rqlite-XXXXXX")
cleanup() { swl_stop_all; rm -rf "$work"; }
trap cleanup EXIT
node_dir=${2:-$work/node}
mkdir -p "$node_dir"
node_dir=$(realpath "$node_dir")

# The exact versions in package-lock.json; --prefer-offline uses npm's cache when it can.
# A NODE_DIR that already holds an install from this very lock file is reused as it is.
cp "$here/example.js" "$node_dir/"
if [[ -d "$node_dir/node_modules" ]] && cmp -s "$here/package-lock.json" "$node_dir/installed-lock.json"; then
  echo "== rqlite-js already installed in $node_dir from this package-lock.json"
else
  echo "== npm ci in $node_dir (node $(node --version), npm $(npm --version))"
  rm -f "$node_dir/installed-lock.json"
  cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)
  cp "$here/package-lock.json" "$node_dir/installed-lock.json"
fi

echo "== a primary (writes need the token) and a peer, in $work"
cd "$work"
"$swarmlite" keygen --out keys >/dev/null
head -c 32 /dev/urandom | base64 >write.token
swl_start primary primary.out "$swarmlite" primary --db primary.db --key keys/primary.key \
  --listen 127.0.0.1:0 --http 127.0.0.1:0 --write-token write.token
swl_wait_ready primary
swl_start peer peer.out "$swarmlite" peer --db peer.db --pub keys/primary.pub \
  --from "${SWL_LISTEN[primary]}" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
  --primary-url "${SWL_HTTP[primary]}"
swl_wait_ready peer

echo "== node example.js"
rc=0
node "$node_dir/example.js" "${SWL_HTTP[primary]}" "${SWL_HTTP[peer]}" write.token || rc=$?
if ((rc != 0)); then
  echo "--- primary output"; cat primary.out
  echo "--- peer output"; cat peer.out
  exit "$rc"
fi
swl_stop peer || { echo "the peer did not stop cleanly:"; cat peer.out; exit 1; }
swl_stop primary || { echo "the primary did not stop cleanly:"; cat primary.out; exit 1; }
