#!/usr/bin/env bash
# examples/auditor.sh — a walk-through for an auditor, with nothing but curl and the
# swarmlite CLI. Usage: examples/auditor.sh PATH/TO/swarmlite
#
# The auditor trusts exactly one thing: the primary's public key (primary.pub, the log id).
# Everything else — the peer that answers, its rows, its copy of the log, its database
# file — is checked against signatures made with that key:
#   1. start a primary and a peer (temp dir, ephemeral loopback ports, stopped on exit);
#   2. write a few transactions to the primary over HTTP with curl (rqlite-style API);
#   3. fetch a query PROOF from the peer with curl and verify it offline (`swarmlite verify`),
#      and see a tampered proof rejected;
#   4. ask the peer again with `swarmlite query --verify`, which does fetch + verify in one go;
#   5. stop the peer and `swarmlite audit` its log and database file: replay every entry
#      from scratch and compare state roots → exit 0;
#   6. edit one row in a copy of the replica (as a dishonest operator could) → audit fails.
# Each step prints what it does; any unexpected outcome stops the script with exit 1.
set -euo pipefail
swarmlite=${1:?usage: auditor.sh PATH/TO/swarmlite}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/nodes.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/swarmlite-auditor-XXXXXX")
cleanup() { swl_stop_all; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
step() { printf '\n== %s\n' "$*"; }
fail() { echo "auditor.sh: FAILED: $*" >&2; exit 1; }

# --- 1. a primary and a peer ------------------------------------------------------------
step "1. keys, a primary and a peer in $work"
"$swarmlite" keygen --out keys              # keys/primary.key (secret, 0600), keys/primary.pub
head -c 32 /dev/urandom | base64 >write.token  # the HTTP write secret (Bearer or basic-auth password)

# Port 0 = an ephemeral port; each server prints "listen: HOST:PORT" (peer protocol) and
# "http: URL" (HTTP API) once it is ready.
swl_start primary primary.out "$swarmlite" primary --db primary.db --key keys/primary.key \
  --listen 127.0.0.1:0 --http 127.0.0.1:0 --write-token write.token
swl_wait_ready primary
primary_url=${SWL_HTTP[primary]}
# The peer syncs from the primary's peer port, verifies every entry against a head signed
# by primary.pub, replays it into peer.db (its log copy goes to peer.db.data/log).
swl_start peer peer.out "$swarmlite" peer --db peer.db --pub keys/primary.pub \
  --from "${SWL_LISTEN[primary]}" --listen 127.0.0.1:0 --http 127.0.0.1:0 --primary-url "$primary_url"
swl_wait_ready peer
peer_url=${SWL_HTTP[peer]}
echo "primary: $primary_url   peer: $peer_url"

# --- 2. writes with curl ----------------------------------------------------------------
step "2. writes to the primary with curl (POST /db/execute)"
execute() {  # execute [QUERY-STRING] JSON-BODY: one authenticated write request
  curl -fsS -XPOST "$primary_url/db/execute?$1" -H "Authorization: Bearer $(cat write.token)" \
    -H 'Content-Type: application/json' -d "$2"
  echo
}
execute "" '["CREATE TABLE account (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, cents INTEGER NOT NULL CHECK (cents >= 0))"]'
execute "" '[["INSERT INTO account (owner, cents) VALUES (?, ?)", "alice", 10000],
             ["INSERT INTO account (owner, cents) VALUES (:owner, :cents)", {"owner": "bob", "cents": 2500}]]'
# ?transaction: both statements in one SQLite transaction = one log entry, all or nothing.
execute "transaction" '[["UPDATE account SET cents = cents - ? WHERE owner = ?", 1200, "alice"],
                        ["UPDATE account SET cents = cents + ? WHERE owner = ?", 1200, "bob"]]'
# Without the token the primary answers 401; a peer forwards writes to the primary, so the
# same 401 comes back through it. ?redirect asks the peer for a 301 to the primary instead.
code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$primary_url/db/execute" -d '["DELETE FROM account"]')
[[ "$code" == 401 ]] || fail "a write without the token got HTTP $code, expected 401"
echo "write without the token: HTTP $code (refused)"
code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "$peer_url/db/execute" -d '["DELETE FROM account"]')
[[ "$code" == 401 ]] || fail "a write without the token sent to the peer got HTTP $code, expected 401"
echo "write without the token, sent to the peer: HTTP $code (forwarded, refused by the primary)"
location=$(curl -s -o /dev/null -w '%{redirect_url}' -XPOST "$peer_url/db/execute?redirect" -d '["DELETE FROM account"]')
[[ "$location" == "$primary_url/db/execute?redirect" ]] || fail "?redirect on the peer gave Location '$location'"
echo "write to the peer with ?redirect: 301 to $location"

# How many entries the log has now (genesis + 3 writes): the freshness the auditor asks for.
size=$(curl -fsS "$primary_url/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_size"])')
echo "the primary's log has $size entries"

# --- 3. a proof with curl, verified offline ---------------------------------------------
step "3. fetch a query proof from the peer with curl; verify it offline"
query='SELECT owner, cents FROM account ORDER BY owner'
# proof=1 + Accept: application/octet-stream = the raw binary proof (docs/formats/query-proof.md).
# min_size: the peer must answer from a state with at least $size entries (it waits up to
# `timeout` for its sync to get there, else 503).
curl -fsS -G "$peer_url/db/query" --data-urlencode "q=$query" --data "proof=1&min_size=$size&timeout=20s" \
  -H 'Accept: application/octet-stream' -D proof.headers -o proof.bin
echo "proof.bin: $(stat -c %s proof.bin) bytes, $(grep -i '^x-swarmlite-size' proof.headers | tr -d '\r')"
# Offline: no network from here on. The verifier checks the head's signature against
# primary.pub, the pages against the signed state root, that the proof is for this SQL,
# then re-runs the query on the proven pages and prints the rows IT computed.
"$swarmlite" verify --pub keys/primary.pub --sql "$query" --min-size "$size" proof.bin | tee verify.out
grep -q 'alice  *8800' verify.out && grep -q 'bob  *3700' verify.out || fail "verified rows are not alice 8800, bob 3700"

# The same proof also comes base64-encoded in the JSON answer (without the Accept header).
curl -fsS -G "$peer_url/db/query" --data-urlencode "q=$query" --data "proof=1&min_size=$size" \
  | python3 -c 'import base64,json,sys; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["results"][0]["proof"]))' \
  >proof-from-json.bin
"$swarmlite" verify --pub keys/primary.pub --sql "$query" proof-from-json.bin >/dev/null \
  || fail "the proof from the JSON answer does not verify"
echo "the base64 proof from the JSON answer verifies too"

# A proof with one byte changed (here: inside the page data near its end) must not verify.
cp proof.bin tampered.bin
printf '\x5a' | dd of=tampered.bin bs=1 seek=$(($(stat -c %s tampered.bin) - 100)) conv=notrunc status=none
if "$swarmlite" verify --pub keys/primary.pub --sql "$query" tampered.bin >tampered.out 2>&1; then
  fail "a tampered proof verified: $(cat tampered.out)"
fi
echo "tampered proof rejected: $(tail -n 1 tampered.out)"
# A proof for another query is not accepted as an answer to this one.
if "$swarmlite" verify --pub keys/primary.pub --sql 'SELECT owner FROM account' proof.bin >other.out 2>&1; then
  fail "the proof was accepted for another SQL"
fi
echo "proof checked against another SQL: rejected"

# --- 4. fetch + verify in one command -------------------------------------------------
step "4. swarmlite query --verify (fetch and verify in one go)"
"$swarmlite" query --peer "$peer_url" --pub keys/primary.pub --verify --min-size "$size" \
  "SELECT sum(cents) AS total FROM account" | tee total.out
grep -q '^12500' total.out || fail "verified total is not 12500"

# --- 5. audit the peer's log and database -------------------------------------------
step "5. stop the peer; audit its log copy and its database file"
swl_stop peer || fail "the peer did not stop cleanly"
# Replays the peer's copy of the log from scratch (only reading it), checks every entry's
# state root and the signed head, then the state root of peer.db at the size it claims.
"$swarmlite" audit --log peer.db.data/log --pub keys/primary.pub --db peer.db
echo "audit of peer.db: exit 0"

# --- 6. a tampered replica fails the audit -------------------------------------------
step "6. edit one row in a copy of the replica; the audit must fail"
cp peer.db tampered.db
[[ -f peer.db-wal ]] && cp peer.db-wal tampered.db-wal
python3 - tampered.db <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE account SET cents = 1000000 WHERE owner = 'bob'")  # bob got rich
db.commit()
PY
rc=0
"$swarmlite" audit --log peer.db.data/log --pub keys/primary.pub --db tampered.db >audit-bad.out 2>&1 || rc=$?
cat audit-bad.out
[[ "$rc" -ne 0 ]] || fail "the audit of a tampered replica exited 0"
grep -q 'DOES NOT match the log' audit-bad.out || fail "the audit did not say which replica does not match"
echo "audit of the tampered copy: exit $rc (as it should)"

swl_stop primary || fail "the primary did not stop cleanly"
printf '\nauditor.sh: all steps behaved as expected\n'
