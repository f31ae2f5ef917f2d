#!/usr/bin/env bash
# Integration test of `swarmlite demo` (cli/cmd_demo.cpp): usage demo_test.sh PATH/TO/swarmlite
#  1. the demo exits 0, verified reads from every peer, the tampered proof rejected with a
#     reason, the light client re-fetching only changed pages after a write, and nothing
#     it started is left running or on disk;
#  2. --keep --dir: the nodes stay up and answer HTTP until SIGTERM, then all stop.
set -euo pipefail
bin=${1:?usage: demo_test.sh PATH/TO/swarmlite}
work=$(mktemp -d "${TMPDIR:-/tmp}/swl-demo-test-XXXXXX")
demo_pid=
cleanup() {
  [[ -n "$demo_pid" ]] && kill "$demo_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Processes whose command line mentions DIR (the demo's children name their files in it).
children_of_dir() { pgrep -f -- "$1/" || true; }

# --- 1. the full demo -----------------------------------------------------------
out="$work/demo.out"
TMPDIR="$work" "$bin" demo >"$out" 2>&1 || { cat "$out"; fail "swarmlite demo exited $?"; }
grep -q "all checks passed" "$out" || { cat "$out"; fail "no success line"; }
for p in peer1 peer2 peer3; do
  n=$(grep -c "^   $p — " "$out" || true)
  [[ "$n" -ge 2 ]] || { cat "$out"; fail "$p answered $n verified queries, expected at least 2"; }
done
v=$(grep -c "^   verified at size " "$out" || true)
[[ "$v" -ge 6 ]] || { cat "$out"; fail "$v verified answers, expected at least 6"; }
grep -q "^   REJECTED: " "$out" || { cat "$out"; fail "the tampered proof was not shown rejected"; }
# The light client: cold queries fetch pages; the same query again fetches none;
# after the write it fetches some, and fewer than its cold run did.
l=$(grep -c "^   light — " "$out" || true)
[[ "$l" -ge 3 ]] || { cat "$out"; fail "$l light-client queries shown, expected 3"; }
cold=$(grep -A3 "^   light — point lookup" "$out" | sed -n 's/^   at size [0-9]*: \([0-9]*\) pages fetched.*/\1/p' | head -1)
again=$(grep -A3 "the same point lookup again" "$out" | sed -n 's/^   at size [0-9]*: \([0-9]*\) pages fetched.*/\1/p' | head -1)
moved=$(sed -n 's/^   only the changed pages: at size [0-9]*: \([0-9]*\) pages fetched.*/\1/p' "$out" | head -1)
[[ -n "$cold" && -n "$again" && -n "$moved" ]] || { cat "$out"; fail "light-client fetch counts missing"; }
[[ "$again" -eq 0 ]] || { cat "$out"; fail "the cached re-query fetched $again pages"; }
[[ "$moved" -ge 1 && "$moved" -lt "$cold" ]] || { cat "$out"; fail "after the write: $moved pages fetched, cold run $cold"; }
dir=$(sed -n 's/^swarmlite demo: data in \([^ ]*\).*/\1/p' "$out")
[[ -n "$dir" ]] || fail "no data dir line"
[[ ! -e "$dir" ]] || fail "temp dir $dir was left behind"
left=$(children_of_dir "$dir")
[[ -z "$left" ]] || fail "processes left running: $left"
echo "ok: demo ($(grep -c . "$out") lines)"

# --- 2. --keep: stays up until a signal -------------------------------------------
kdir="$work/keep"
kout="$work/keep.out"
"$bin" demo --keep --dir "$kdir" >"$kout" 2>&1 &
demo_pid=$!
for _ in $(seq 1 600); do
  grep -q "everything stays up" "$kout" && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$kout"; fail "demo --keep exited early"; }
  sleep 0.1
done
grep -q "everything stays up" "$kout" || { cat "$kout"; fail "demo --keep never reached the keep step"; }
sleep 0.5
n=$(children_of_dir "$kdir" | wc -l)
[[ "$n" -eq 5 ]] || { cat "$kout"; fail "expected 5 running nodes under --keep, found $n"; }
kill -TERM "$demo_pid"
rc=0
wait "$demo_pid" || rc=$?
demo_pid=
[[ "$rc" -eq 0 ]] || { cat "$kout"; fail "demo --keep exited $rc after SIGTERM"; }
left=$(children_of_dir "$kdir")
[[ -z "$left" ]] || fail "processes left running after --keep stop: $left"
[[ -d "$kdir" ]] || fail "--dir $kdir was removed"
echo "ok: demo --keep"
