#!/usr/bin/env bash
# `swarmlite fetch` from 3 local nodes (a primary and two peers) against
# `swarmlite backup` of the same database from one, on loopback, each timed
# ROUNDS times in alternation (docs/performance.md asks for ratios measured in
# one run on a quiet machine: report the load printed at the start).
#   scripts/fetch_bench.sh [BIN] [MiB] [ROUNDS]
set -euo pipefail
BIN=${1:-build/cli/swarmlite}
MIB=${2:-64}
ROUNDS=${3:-3}
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
uptime
"$BIN" keygen --out "$DIR/k" >/dev/null
wait_line() {  # file prefix -> the rest of the first line starting with prefix
  for _ in $(seq 600); do
    l=$(grep -m1 "^$2" "$1" 2>/dev/null || true)
    if [ -n "$l" ]; then echo "${l#"$2"}"; return; fi
    sleep 0.1
  done
  echo "timeout waiting for $2 in $1" >&2; exit 1
}
"$BIN" primary --db "$DIR/p.db" --key "$DIR/k/primary.key" --max-outbound 0 --write-timeout 0 --listen 127.0.0.1:0 \
  --http 127.0.0.1:0 >"$DIR/p.log" 2>&1 & PIDS+=($!)
P_LISTEN=$(wait_line "$DIR/p.log" "listen: ")
P=$(wait_line "$DIR/p.log" "http: ")
curl -sf -XPOST "$P/db/execute" -H 'Content-Type: application/json' \
  -d '["CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)"]' >/dev/null
for _ in $(seq $(((MIB + 7) / 8))); do  # 8 MiB per entry (under --max-entry-pages)
  curl -sf -XPOST "$P/db/execute" -H 'Content-Type: application/json' \
    -d '["WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v+1 FROM n WHERE v < 8192) INSERT INTO t(b) SELECT randomblob(1000) FROM n"]' >/dev/null
done
URLS=$P
for i in 1 2; do
  "$BIN" peer --db "$DIR/r$i.db" --pub "$DIR/k/primary.pub" --from "$P_LISTEN" --listen 127.0.0.1:0 \
    --http 127.0.0.1:0 >"$DIR/r$i.log" 2>&1 & PIDS+=($!)
  URLS="$URLS,$(wait_line "$DIR/r$i.log" "http: ")"
done
SIZE=$(curl -sf "$P/db/size" | sed 's/.*"size":\([0-9]*\).*/\1/')
for u in ${URLS//,/ }; do
  until [ "$(curl -sf "$u/db/size" | sed 's/.*"size":\([0-9]*\).*/\1/')" = "$SIZE" ]; do sleep 0.2; done
done
now() { date +%s.%N; }
echo "database: $(stat -c %s "$DIR/p.db") bytes; sources: $URLS"
for r in $(seq "$ROUNDS"); do
  rm -f "$DIR"/out.*
  t0=$(now); "$BIN" backup --from "$P" --pub "$DIR/k/primary.pub" --out "$DIR/out.backup" >/dev/null; t1=$(now)
  "$BIN" fetch --from "$URLS" --pub "$DIR/k/primary.pub" --out "$DIR/out.fetch" >/dev/null 2>&1; t2=$(now)
  echo "round $r: backup $(echo "$t1 - $t0" | bc) s, fetch (3 sources) $(echo "$t2 - $t1" | bc) s, fetch/backup $(echo "scale=2; ($t2 - $t1) / ($t1 - $t0)" | bc)"
done
uptime
