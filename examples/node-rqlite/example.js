// examples/node-rqlite/example.js — rqlite-js, an rqlite client we did not write, talking to
// swarmlite's rqlite-compatible HTTP API (docs/http-api.md): writes go to the primary, reads
// to a peer (an untrusted replica that syncs the primary's signed log).
//
// Usage: node example.js PRIMARY_URL PEER_URL WRITE_TOKEN_FILE
//    or: SWARMLITE_PRIMARY_URL=… SWARMLITE_PEER_URL=… SWARMLITE_WRITE_TOKEN=… node example.js
// (run.sh starts a primary and a peer and runs this). Exits 0 when every check holds, 1
// otherwise, saying which check failed.
'use strict';

const fs = require('fs');
const { DataApiClient, StatusApiClient } = require('rqlite-js');

const [primaryUrl, peerUrl, tokenFile] = [
  process.argv[2] || process.env.SWARMLITE_PRIMARY_URL,
  process.argv[3] || process.env.SWARMLITE_PEER_URL,
  process.argv[4],
];
const token = tokenFile ? fs.readFileSync(tokenFile, 'utf8').trim() : process.env.SWARMLITE_WRITE_TOKEN;
if (!primaryUrl || !peerUrl || !token) {
  console.error('usage: node example.js PRIMARY_URL PEER_URL WRITE_TOKEN_FILE (or the SWARMLITE_* env vars)');
  process.exit(2);
}

// The write secret goes as the password of HTTP basic auth (any user name), which is how
// rqlite clients authenticate; swarmlite also takes it as "Authorization: Bearer …".
const primary = new DataApiClient(primaryUrl, { authentication: { username: 'app', password: token } });
// Reads need no secret: a replica's data is public to the swarm by design.
const peer = new DataApiClient(peerUrl);

let failed = 0;
function check(ok, what) {
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed += 1;
}
// rqlite-js returns a DataResults; a statement that failed is a DataResultError in its slot.
function mustSucceed(results, what) {
  if (results.hasError()) throw new Error(`${what}: ${results.getFirstError().message}`);
  return results;
}

async function logSize(url) {
  const { body } = await new StatusApiClient(url).status();
  return body.role === 'primary' ? body.log_size : body.applied_size;
}

// A peer applies entries a moment after the primary wrote them. rqlite-js has no option for
// swarmlite's `min_size` freshness parameter, so wait on /status (also an rqlite endpoint)
// until the peer has applied everything the primary has.
async function waitForPeer() {
  const want = await logSize(primaryUrl);
  for (let i = 0; i < 300; i += 1) {
    if ((await logSize(peerUrl)) >= want) return want;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the peer did not reach log size ${want} within 30 s`);
}

async function main() {
  console.log(`primary ${primaryUrl}, peer ${peerUrl}`);

  console.log('\n1. schema and rows on the primary (POST /db/execute)');
  mustSucceed(await primary.execute(
    'CREATE TABLE pet (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, species TEXT, age INTEGER, weight REAL)'),
  'create table');
  // Several statements in one request, each with its params: positional and named.
  // Without { transaction: true } each statement is its own transaction (one log entry each).
  let r = mustSucceed(await primary.execute([
    ['INSERT INTO pet (name, species, age, weight) VALUES (?, ?, ?, ?)', 'fiona', 'cat', 20, 4.5],
    ['INSERT INTO pet (name, species, age, weight) VALUES (:name, :species, :age, :weight)',
      { name: 'declan', species: 'dog', age: 3, weight: 12.25 }],
    ['INSERT INTO pet (name, species, age) VALUES (?, ?, ?)', 'o\'malley', 'cat', null],
  ]), 'inserts');
  check(r.get(0).getLastInsertId() === 1 && r.get(2).getLastInsertId() === 3,
    `last insert ids ${r.get(0).getLastInsertId()}, ${r.get(1).getLastInsertId()}, ${r.get(2).getLastInsertId()}`);

  console.log('\n2. a transaction (?transaction): all or nothing');
  r = mustSucceed(await primary.execute([
    ['INSERT INTO pet (name, species, age) VALUES (?, ?, ?)', 'rex', 'dog', 7],
    ['UPDATE pet SET age = age + 1 WHERE species = ?', 'dog'],
  ], { transaction: true }), 'transaction');
  check(r.get(1).getRowsAffected() === 2, `birthday for ${r.get(1).getRowsAffected()} dogs`);
  // The second statement violates UNIQUE(name): the whole transaction is rolled back, so
  // 'tom' is not inserted either. The failing statement's slot carries the error.
  r = await primary.execute([
    ['INSERT INTO pet (name, species) VALUES (?, ?)', 'tom', 'cat'],
    ['INSERT INTO pet (name, species) VALUES (?, ?)', 'fiona', 'cat'],
  ], { transaction: true });
  check(r.hasError() && /UNIQUE/.test(r.getFirstError().message),
    `failed transaction reported: ${r.hasError() ? r.getFirstError().message : 'no error!'}`);

  console.log('\n3. reads on the PEER (GET and POST /db/query)');
  const size = await waitForPeer();
  console.log(`  peer caught up to log size ${size}`);
  r = mustSucceed(await peer.query('SELECT id, name, species, age, weight FROM pet ORDER BY id'), 'select all');
  const rows = r.toArray();
  console.log(rows.map((row) => `  ${JSON.stringify(row)}`).join('\n'));
  check(JSON.stringify(rows) === JSON.stringify([
    { id: 1, name: 'fiona', species: 'cat', age: 20, weight: 4.5 },
    { id: 2, name: 'declan', species: 'dog', age: 4, weight: 12.25 },
    { id: 3, name: "o'malley", species: 'cat', age: null, weight: null },
    { id: 4, name: 'rex', species: 'dog', age: 8, weight: null },
  ]), 'the peer has exactly the rows written on the primary (and no "tom")');
  // Parametrised queries go as a POST body; several statements = several results.
  r = mustSucceed(await peer.query([
    ['SELECT count(*) AS n FROM pet WHERE species = ?', 'cat'],
    ['SELECT name FROM pet WHERE age > :age ORDER BY name', { age: 5 }],
  ], { level: 'none', timings: true }), 'parametrised queries');
  check(r.get(0).get('n') === 2, `${r.get(0).get('n')} cats`);
  check(r.get(1).get('name') === 'fiona' && r.get(2).get('name') === 'rex',
    `older than 5: ${r.getResults().slice(1).map((x) => x.get('name')).join(', ')}`);
  // A write sent as a query is an error in its slot (the peer's read guard), not a crash.
  r = await peer.query('DELETE FROM pet');
  check(r.hasError(), `a write disguised as a query is refused: ${r.hasError() ? r.getFirstError().message : 'no error!'}`);

  console.log('\n4. a write sent to the peer is forwarded to the primary (as rqlite followers do)');
  // Without the secret: the primary's 401 comes back through the peer.
  try {
    await peer.execute(['INSERT INTO pet (name) VALUES (?)', 'intruder']);
    check(false, 'the write without the secret was accepted');
  } catch (e) {
    const status = e.response && e.response.status;
    console.log(`  without the secret: HTTP ${status}`);
    check(status === 401, `HTTP ${status} relayed from the primary (401 expected)`);
  }
  // With it: the write lands on the primary, and the peer sees it once it has replicated.
  const peerWriter = new DataApiClient(peerUrl, { authentication: { username: 'app', password: token } });
  r = mustSucceed(await peerWriter.execute([['INSERT INTO pet (name, species, age) VALUES (?, ?, ?)', 'via-peer', 'cat', 1]]),
    'a write through the peer');
  console.log(`  with the secret: last_insert_id ${r.get(0).getLastInsertId()}`);
  r = mustSucceed(await primary.query('SELECT count(*) AS n FROM pet WHERE name = \'via-peer\''), 'read back on the primary');
  check(r.get(0).get('n') === 1, 'the forwarded write is on the primary');

  console.log('\n5. a write without the secret is refused by the primary');
  try {
    await new DataApiClient(primaryUrl).execute('DELETE FROM pet');
    check(false, 'the primary accepted a write without the secret');
  } catch (e) {
    check(e.response && e.response.status === 401, `HTTP ${e.response && e.response.status} (401 expected)`);
  }

  if (failed > 0) {
    console.error(`\nexample.js: ${failed} check(s) FAILED`);
    process.exit(1);
  }
  console.log('\nexample.js: all checks passed');
}

main().catch((e) => {
  const detail = e.response ? ` (HTTP ${e.response.status}: ${JSON.stringify(e.response.data)})` : '';
  console.error(`example.js: FAILED: ${e.message}${detail}`);
  process.exit(1);
});
