// The sync engine (net/sync.h) with no sockets, no threads and a fake clock:
// events go in, actions come out, and two engines can talk by handing each
// other's SendActions back as messages. Each case pins one rule of
// docs/protocol.md.
#include "net/sync.h"

#include <doctest/doctest.h>

#include "core/entry.h"
#include "net/frontier.h"
#include "net/test_log.h"

using namespace swarmlite;
using namespace swarmlite::net;
using namespace swarmlite::net::testing;
using namespace std::chrono_literals;

namespace {

const Clock::time_point t0 = Clock::time_point{} + 24h;

template <class T>
std::vector<T> all_of(const Actions& actions) {
  std::vector<T> out;
  for (const auto& a : actions) {
    if (const T* x = std::get_if<T>(&a)) out.push_back(*x);
  }
  return out;
}

// The messages of type M sent to `session`.
template <class M>
std::vector<M> sent(const Actions& actions, uint64_t session) {
  std::vector<M> out;
  for (const auto& s : all_of<SendAction>(actions)) {
    if (s.session != session) continue;
    if (const M* m = std::get_if<M>(&s.message)) out.push_back(*m);
  }
  return out;
}

bool closed(const Actions& actions, uint64_t session) {
  for (const auto& c : all_of<CloseAction>(actions)) {
    if (c.session == session) return true;
  }
  return false;
}

Hello hello_from(const PublicKey& log_id, uint64_t node_id, std::optional<Head> head,
                 const std::string& listen = "") {
  Hello h;
  h.log_id = log_id;
  h.node_id = node_id;
  h.head = std::move(head);
  h.listen = listen;
  return h;
}

// Opens session `id` and completes its handshake with the peer's Hello.
Actions connect(SyncEngine& e, uint64_t id, bool outbound, const std::string& address, Hello h,
                Clock::time_point now, const std::string& remote_ip = "10.9.9.9") {
  Actions out = e.opened(id, outbound, outbound ? address : "", remote_ip + ":5555", remote_ip, now);
  auto more = e.message(id, std::move(h), now);
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

NodeOptions options(uint32_t batch_entries = 100) {
  NodeOptions o;
  o.batch_entries = batch_entries;
  return o;
}

// A primary's log of `n` entries, and a replica engine (node id 1) over an empty log.
struct Replica {
  KeyPair keys = KeyPair::generate();
  TestLog p{keys.pub, true}, r{keys.pub, false};
  SyncEngine e;
  explicit Replica(int n, const NodeOptions& o = options(), const std::string& announce = "")
      : e(*r.backend, o, 1) {
    p.append(keys.secret, n);
    e.start(announce, std::nullopt);
  }
  // The replica dialled a peer (node id 100 + session) that announces the primary's head.
  Actions dial_holder(uint64_t session) {
    return connect(e, session, true, fmt::format("10.0.0.{}:7000", session),
                   hello_from(keys.pub, 100 + session, p.head()), t0);
  }
  // Session 1 to a peer that holds the primary's log (served by an engine over
  // it): the replica's first batch, ready to store.
  StoreAction first_batch() {
    auto asks = sent<GetEntries>(dial_holder(1), 1);
    REQUIRE(asks.size() == 1);
    auto stores = all_of<StoreAction>(e.message(1, Message{serve(asks[0])}, t0));
    REQUIRE(stores.size() == 1);
    return stores[0];
  }
  // What a peer holding the primary's log (an engine over it; the replica is
  // its session 1) answers to `g`: exactly one Entries.
  Entries serve(const GetEntries& g) {
    if (!server) {
      server = std::make_unique<SyncEngine>(*p.backend, options(), 2);
      server->start("", std::nullopt);
      connect(*server, 1, false, "", hello_from(keys.pub, 1, std::nullopt), t0);
    }
    auto reply = sent<Entries>(server->message(1, Message{g}, t0), 1);
    REQUIRE(reply.size() == 1);
    return reply[0];
  }
  std::unique_ptr<SyncEngine> server;
};

}  // namespace

// docs/protocol.md "Equivocation": our head anchors the request; a server on
// the other branch must send an anchor path from our size to its head, and
// that path proves the fork. (Flipping `roots->old_root != anchor->log_root`
// in SyncEngine::on_entries makes this fail: the batch goes to the store.)
TEST_CASE("sync: a head that does not extend ours is proven a fork by the anchor path") {
  ForkedPrimaries fork(5, 3, 6);
  TestLog r(fork.keys.pub, false);
  r.append(fork.keys.secret, 5, "common");
  r.append(fork.keys.secret, 3, "a");  // the replica followed branch a up to 8
  REQUIRE(r.head().log_root == fork.a.head().log_root);

  SyncEngine replica(*r.backend, options(), 1);
  SyncEngine server(*fork.b.backend, options(), 2);
  replica.start("", std::nullopt);
  server.start("", std::nullopt);
  // The replica dialled the server (session 1 on both sides).
  auto acts = connect(replica, 1, true, "10.0.0.2:7000", hello_from(fork.keys.pub, 2, fork.b.head()), t0);
  auto asks = sent<GetEntries>(acts, 1);
  REQUIRE(asks.size() == 1);
  CHECK(asks[0].from == 8);
  CHECK(asks[0].anchor == 8);
  connect(server, 1, false, "", hello_from(fork.keys.pub, 1, std::nullopt), t0);
  auto served = server.message(1, Message{asks[0]}, t0);
  auto replies = sent<Entries>(served, 1);
  REQUIRE(replies.size() == 1);
  CHECK_FALSE(replies[0].anchor_path.empty());

  auto got = replica.message(1, Message{replies[0]}, t0);
  auto eq = all_of<EquivocatedAction>(got);
  REQUIRE(eq.size() == 1);
  CHECK(eq[0].evidence.verify(fork.keys.pub).ok());
  CHECK(all_of<StoreAction>(got).empty());  // nothing of the other branch is stored
  CHECK(all_of<BanAction>(got).empty());    // the server is honest about its branch
  REQUIRE(replica.evidence());
  CHECK(replica.evidence()->verify(fork.keys.pub).ok());
  CHECK(sent<EvidenceMsg>(got, 1).size() == 1);  // spread to every peer
  // Following stops: a new head brings no fetch.
  CHECK(sent<GetEntries>(replica.tick(t0 + 1s), 1).empty());
}

TEST_CASE("sync: two signed heads of one size that differ are evidence at once") {
  ForkedPrimaries fork(5, 3, 3);
  TestLog r(fork.keys.pub, false);
  SyncEngine replica(*r.backend, options(), 1);
  replica.start("", std::nullopt);
  connect(replica, 1, true, "10.0.0.2:7000", hello_from(fork.keys.pub, 2, fork.a.head()), t0);
  auto acts = connect(replica, 2, true, "10.0.0.3:7000", hello_from(fork.keys.pub, 3, fork.b.head()), t0);
  auto eq = all_of<EquivocatedAction>(acts);
  REQUIRE(eq.size() == 1);
  CHECK(eq[0].evidence.verify(fork.keys.pub).ok());
}

// docs/protocol.md "Following the log": Error not_available lowers what we
// think the peer holds and the batch is asked of another peer; the first one
// is neither closed nor banned. (Making on_error stop the session on
// not_available makes this fail.)
TEST_CASE("sync: an entry that is not_available is asked of another session") {
  Replica fx(5);
  auto& e = fx.e;
  REQUIRE(sent<GetEntries>(fx.dial_holder(1), 1).size() == 1);
  CHECK(sent<GetEntries>(fx.dial_holder(2), 2).empty());  // one request at a time

  auto acts = e.message(1, ErrorMsg{ErrorCode::not_available, "restarted"}, t0 + 1s);
  CHECK_FALSE(closed(acts, 1));
  CHECK(all_of<BanAction>(acts).empty());
  auto asks = sent<GetEntries>(acts, 2);
  REQUIRE(asks.size() == 1);
  CHECK(asks[0].from == 0);
  CHECK(e.peers().at(1).head_size == 0);
  CHECK_FALSE(e.peers().at(1).request);
  // The request to session 1 is off, its deadline with it.
  bool cleared = false;
  for (auto& d : all_of<RequestDeadlineAction>(acts)) cleared |= d.session == 1 && d.at == Clock::time_point::max();
  CHECK(cleared);
}

// docs/protocol.md "Handshake": one session per pair of nodes, the one dialled
// by the smaller node id, on both ends and whichever Hello arrives first.
// (Keeping the newer session instead makes this fail.)
TEST_CASE("sync: of two sessions between the same nodes both ends keep the same one") {
  KeyPair keys = KeyPair::generate();
  TestLog lx(keys.pub, false), ly(keys.pub, false);
  const uint64_t x_id = 10, y_id = 20;  // x has the smaller id: x's dial wins
  for (bool x_dial_first : {true, false}) {
    CAPTURE(x_dial_first);
    SyncEngine x(*lx.backend, options(), x_id), y(*ly.backend, options(), y_id);
    x.start("10.0.0.1:7000", std::nullopt);
    y.start("10.0.0.2:7000", std::nullopt);
    // Connection A: x dialled y (x session 1, y session 11).
    // Connection B: y dialled x (x session 2, y session 12).
    auto hx = hello_from(keys.pub, y_id, std::nullopt, "10.0.0.2:7000");
    auto hy = hello_from(keys.pub, x_id, std::nullopt, "10.0.0.1:7000");
    Actions on_x, on_y;
    auto run = [](Actions& into, Actions more) { into.insert(into.end(), more.begin(), more.end()); };
    if (x_dial_first) {
      run(on_x, connect(x, 1, true, "10.0.0.2:7000", hx, t0));
      run(on_y, connect(y, 11, false, "", hy, t0, "10.0.0.1"));
      run(on_x, connect(x, 2, false, "", hx, t0, "10.0.0.2"));
      run(on_y, connect(y, 12, true, "10.0.0.1:7000", hy, t0));
    } else {
      run(on_x, connect(x, 2, false, "", hx, t0, "10.0.0.2"));
      run(on_y, connect(y, 12, true, "10.0.0.1:7000", hy, t0));
      run(on_x, connect(x, 1, true, "10.0.0.2:7000", hx, t0));
      run(on_y, connect(y, 11, false, "", hy, t0, "10.0.0.1"));
    }
    CHECK_FALSE(closed(on_x, 1));
    CHECK(closed(on_x, 2));
    CHECK_FALSE(closed(on_y, 11));
    CHECK(closed(on_y, 12));
    REQUIRE(sent<ErrorMsg>(on_x, 2).size() == 1);
    CHECK(sent<ErrorMsg>(on_x, 2)[0].code == ErrorCode::duplicate);
    CHECK(all_of<BanAction>(on_x).empty());
    CHECK(all_of<BanAction>(on_y).empty());
  }
}

// docs/protocol.md "Peer exchange": a seed that is not connected is redialled
// with its backoff even when learnt addresses hold every outbound slot.
// (Dialling only while slots_free makes this fail.)
TEST_CASE("sync: a seed is redialled after its backoff while the outbound slots are full") {
  KeyPair keys = KeyPair::generate();
  TestLog r(keys.pub, false);
  auto o = options();
  o.max_outbound = 2;
  o.backoff_initial = 1s;
  o.backoff_max = 8s;
  const std::string seed = "10.0.0.1:7000";
  o.seeds = {seed};
  SyncEngine e(*r.backend, o, 1);
  e.start("10.0.0.99:7000", std::nullopt);
  auto dials = all_of<DialAction>(e.tick(t0));
  REQUIRE(dials.size() == 1);
  CHECK(dials[0].address == seed);
  e.dial_failed(seed, t0);
  // Learnt addresses take both outbound slots.
  e.opened(1, true, "10.0.0.2:7000", "10.0.0.2:7000", "10.0.0.2", t0);
  e.opened(2, true, "10.0.0.3:7000", "10.0.0.3:7000", "10.0.0.3", t0);
  CHECK(all_of<DialAction>(e.tick(t0 + 500ms)).empty());  // its backoff (1 s) has not passed
  dials = all_of<DialAction>(e.tick(t0 + 1100ms));
  REQUIRE(dials.size() == 1);
  CHECK(dials[0].address == seed);
  e.dial_failed(seed, t0 + 1100ms);
  CHECK(all_of<DialAction>(e.tick(t0 + 2500ms)).empty());  // doubled: 2 s
  CHECK(all_of<DialAction>(e.tick(t0 + 3200ms)).size() == 1);
}

// docs/protocol.md "Bans": entries nobody asked for get the sender banned
// under every key it is known by (node id, announced address); the ban keeps
// it out until it expires, then it may come back and is dialled again.
// (Dropping the ban check in on_hello, or the ban exclusion in tick, makes this fail.)
TEST_CASE("sync: unrequested entries ban the sender until the ban expires") {
  auto o = options();
  o.ban_time = 10min;
  Replica fx(3, o, "10.0.0.99:7000");
  auto& e = fx.e;
  auto& keys = fx.keys;
  const std::string bad = "10.0.0.5:7000";
  connect(e, 1, false, "", hello_from(keys.pub, 5, std::nullopt, bad), t0, "10.0.0.5");
  Entries junk;
  junk.from = 0;
  junk.head = fx.p.head();
  auto acts = e.message(1, std::move(junk), t0);
  auto bans = all_of<BanAction>(acts);
  REQUIRE(bans.size() == 1);
  CHECK(bans[0].reason.find("unrequested entries") != std::string::npos);
  CHECK(bans[0].until == t0 + 10min);
  CHECK(closed(acts, 1));
  CHECK(e.peers().count(1) == 0);
  CHECK(e.bans(t0).size() == 2);  // "node:…05" and its address

  // Still banned: refused at the handshake, not dialled.
  auto again = connect(e, 2, false, "", hello_from(keys.pub, 5, std::nullopt, "10.0.0.6:7000"), t0 + 5min);
  REQUIRE(sent<ErrorMsg>(again, 2).size() == 1);
  CHECK(sent<ErrorMsg>(again, 2)[0].code == ErrorCode::banned);
  CHECK(closed(again, 2));
  CHECK_FALSE(e.peers().at(2).ready);
  for (auto& d : all_of<DialAction>(e.tick(t0 + 5min))) CHECK(d.address != bad);

  // Expired: gone from bans(), dialled again, and its Hello is accepted.
  const auto later = t0 + 10min + 1ms;
  bool dialled = false;
  for (auto& d : all_of<DialAction>(e.tick(later))) dialled |= d.address == bad;
  CHECK(dialled);
  CHECK(e.bans(later).empty());
  connect(e, 3, false, "", hello_from(keys.pub, 5, std::nullopt, bad), later, "10.0.0.5");
  CHECK(e.peers().at(3).ready);
}

TEST_CASE("sync: a head that does not verify gets the sender banned") {
  Replica fx(3);
  auto& e = fx.e;
  KeyPair other = KeyPair::generate();
  connect(e, 1, true, "10.0.0.2:7000", hello_from(fx.keys.pub, 2, std::nullopt), t0);
  Head forged = fx.p.head();
  forged.size = 4;  // the signature no longer matches
  auto acts = e.message(1, HeadMsg{forged}, t0);
  REQUIRE(all_of<BanAction>(acts).size() == 1);
  CHECK(all_of<BanAction>(acts)[0].reason.find("invalid head") != std::string::npos);
  CHECK(closed(acts, 1));

  connect(e, 2, true, "10.0.0.3:7000", hello_from(fx.keys.pub, 3, std::nullopt), t0);
  // Signed by another key, then claimed for this log (sign_with asserts that
  // the key matches log_id, so sign under the other key's id first).
  Head foreign = fx.p.head();
  foreign.log_id = other.pub;
  foreign.sign_with(other.secret);
  foreign.log_id = fx.keys.pub;
  acts = e.message(2, HeadMsg{foreign}, t0);
  CHECK(all_of<BanAction>(acts).size() == 1);
  CHECK_FALSE(e.best_head());
}

// docs/operations.md "Local faults": a store that fails on our own disk bans
// nobody; invalid data does. (Dropping the is_local_fault branch in
// SyncEngine::stored makes this fail.)
TEST_CASE("sync: a local store fault bans nobody; invalid entries ban the source") {
  Replica fx(4);
  auto& e = fx.e;
  const auto job = fx.first_batch();

  auto acts = e.stored(job.session, job.ban_keys, job.who, job.entries.entries.size(), job.entries.head,
                  make_error(Errc::io_error, "write: No space left on device"), t0);
  CHECK(all_of<BanAction>(acts).empty());
  CHECK_FALSE(closed(acts, 1));
  CHECK(e.bans(t0).empty());
  REQUIRE(e.store_fault().get());
  CHECK(e.store_fault().get()->what.find("No space left") != std::string::npos);
  CHECK(sent<GetEntries>(acts, 1).empty());  // retried after the fault's backoff, not now
  // The backoff runs on the engine's clock: not due 50 ms later, due after 100 ms.
  CHECK(sent<GetEntries>(e.tick(t0 + 50ms), 1).empty());
  CHECK(sent<GetEntries>(e.tick(t0 + 150ms), 1).size() == 1);

  acts = e.stored(job.session, job.ban_keys, job.who, job.entries.entries.size(), job.entries.head,
                  make_error(Errc::corrupt, "entry 2: bad seq"), t0);
  REQUIRE(all_of<BanAction>(acts).size() == 1);
  CHECK(closed(acts, 1));
  CHECK_FALSE(e.bans(t0).empty());
}

// docs/protocol.md "Following the log": the next batch is asked for while the
// one before it is stored (at most two wait for the store thread). When the
// first fails on our own disk, the second no longer follows the log: the node
// skips it (store_skipped), nobody is banned, and after the fault's backoff
// fetching starts again at the log's end — not after the skipped batch.
// (Without `draining_` in SyncEngine::schedule_fetch, the ban of the first
// batch's sender asks another peer for entries from 20, past the gap.)
TEST_CASE("sync: the next batch is fetched while one is stored; after a failed store it is skipped") {
  Replica fx(30, options(10));  // batches of 10 entries
  auto& e = fx.e;
  auto asks = sent<GetEntries>(fx.dial_holder(1), 1);
  REQUIRE(asks.size() == 1);
  // [0, 10) arrives: stored by the worker, and [10, 20) is asked for at once.
  auto got = e.message(1, Message{fx.serve(asks[0])}, t0);
  auto first = all_of<StoreAction>(got);
  REQUIRE(first.size() == 1);
  auto ask2 = sent<GetEntries>(got, 1);
  REQUIRE(ask2.size() == 1);
  CHECK(ask2[0].from == 10);
  CHECK(ask2[0].anchor == 30);  // the verified head [0, 10) is proven against
  // [10, 20) arrives while [0, 10) is still being stored: two wait, no third request.
  got = e.message(1, Message{fx.serve(ask2[0])}, t0);
  auto second = all_of<StoreAction>(got);
  REQUIRE(second.size() == 1);
  CHECK(second[0].entries.from == 10);
  CHECK(sent<GetEntries>(got, 1).empty());

  SUBCASE("both stored: the third request goes on from 20") {
    for (const auto& job : {first[0], second[0]}) {
      REQUIRE(fx.r.backend->store_entries(job.entries.entries, job.entries.head, job.entries.proof).ok());
    }
    auto acts = e.stored(1, first[0].ban_keys, first[0].who, 10, first[0].entries.head, {}, t0);
    auto ask3 = sent<GetEntries>(acts, 1);
    REQUIRE(ask3.size() == 1);
    CHECK(ask3[0].from == 20);
    acts = e.stored(1, second[0].ban_keys, second[0].who, 10, second[0].entries.head, {}, t0);
    CHECK(sent<GetEntries>(acts, 1).empty());  // [20, 30) is out already
    CHECK(e.entries_stored() == 20);
  }
  SUBCASE("the first is invalid: its sender is banned, the second skipped, fetching resumes at 0") {
    CHECK(sent<GetEntries>(fx.dial_holder(2), 2).empty());  // another holder; the fetch is busy
    auto acts = e.stored(1, first[0].ban_keys, first[0].who, 10, first[0].entries.head,
                         make_error(Errc::corrupt, "entry 2: bad seq"), t0);
    CHECK(all_of<BanAction>(acts).size() == 1);
    CHECK(sent<GetEntries>(acts, 2).empty());  // not past the batch that will be skipped
    acts = e.store_skipped(t0);
    auto retry = sent<GetEntries>(acts, 2);
    REQUIRE(retry.size() == 1);
    CHECK(retry[0].from == 0);
  }
  SUBCASE("the first fails on our disk: the second is skipped, fetching resumes at 0") {
    auto acts = e.stored(1, first[0].ban_keys, first[0].who, 10, first[0].entries.head,
                         make_error(Errc::io_error, "write: No space left on device"), t0);
    CHECK(all_of<BanAction>(acts).empty());
    CHECK(sent<GetEntries>(acts, 1).empty());
    acts = e.store_skipped(t0);  // the node found the log at 0, not at 10
    CHECK(all_of<BanAction>(acts).empty());
    CHECK(sent<GetEntries>(acts, 1).empty());  // the fault's backoff
    auto retry = sent<GetEntries>(e.tick(t0 + 150ms), 1);
    REQUIRE(retry.size() == 1);
    CHECK(retry[0].from == 0);
    CHECK(e.bans(t0).empty());
  }
}

// A prefetch is anchored on the head the pending batch is proven against; a
// source whose head is below it could not prove a path from there, so it is
// not asked until that batch is stored (then the request anchors on the
// stored head, as before prefetching). (Dropping the `anchor->size >
// s.head_size` check in SyncEngine::schedule_fetch makes this fail: peer 2 is
// asked with anchor 30, above its head.)
TEST_CASE("sync: a prefetch goes only to a source at or past the pending batch's head") {
  Replica fx(30, options(10));  // batches of 10 entries
  auto& e = fx.e;
  TestLog shorter(fx.keys.pub, true);
  shorter.append(fx.keys.secret, 20);  // the same first 20 entries, its head at 20
  auto asks = sent<GetEntries>(fx.dial_holder(1), 1);
  REQUIRE(asks.size() == 1);
  CHECK(sent<GetEntries>(connect(e, 2, true, "10.0.0.2:7000", hello_from(fx.keys.pub, 102, shorter.head()), t0), 2)
            .empty());
  auto got = e.message(1, Message{fx.serve(asks[0])}, t0);
  auto stores = all_of<StoreAction>(got);
  REQUIRE(stores.size() == 1);
  REQUIRE(sent<GetEntries>(got, 1).size() == 1);  // the prefetch, to peer 1 (head 30)
  // Peer 1 goes away with the prefetch: peer 2 (head 20) is not asked anchored at 30.
  auto acts = e.closed(1, "gone", t0);
  CHECK(sent<GetEntries>(acts, 2).empty());
  const Entries& b = stores[0].entries;
  REQUIRE(fx.r.backend->store_entries(b.entries, b.head, b.proof).ok());
  acts = e.stored(1, stores[0].ban_keys, stores[0].who, b.entries.size(), b.head, {}, t0);
  auto next = sent<GetEntries>(acts, 2);
  REQUIRE(next.size() == 1);
  CHECK(next[0].from == 10);
  CHECK(next[0].anchor <= 20);
}

// A store that succeeds: counted, applied, the head relayed to peers that lack it.
TEST_CASE("sync: a stored batch is applied and its head relayed") {
  Replica fx(4);
  auto& e = fx.e;
  connect(e, 2, false, "", hello_from(fx.keys.pub, 3, std::nullopt), t0);
  auto job = fx.first_batch();
  REQUIRE(fx.r.backend->store_entries(job.entries.entries, job.entries.head, job.entries.proof).ok());
  auto acts = e.stored(job.session, job.ban_keys, job.who, job.entries.entries.size(), job.entries.head, {}, t0);
  REQUIRE(all_of<ApplyAction>(acts).size() == 1);
  CHECK(all_of<ApplyAction>(acts)[0].up_to == 4);
  CHECK(e.entries_stored() == 4);
  CHECK(e.peers().at(1).entries_received == 4);
  REQUIRE(sent<HeadMsg>(acts, 2).size() == 1);
  CHECK(sent<HeadMsg>(acts, 2)[0].head.size == 4);
}

// docs/protocol.md "Following the log": a source answers up to its newest head,
// which at a steady write rate has moved past the one it announced by the time
// our request arrives. The request must leave room for that, so the batch ends
// at the served head, that head is stored, and the relay serves and announces
// the entries at once (issue 13: hop 2 of a chain). (Capping the count at the
// announced head in plan_batch makes this fail: the batch ends at 4, the stored
// head stays behind, nothing is relayed and peers are refused entries 0..6.)
TEST_CASE("sync: a batch from a source whose head moved on ends at its newest head, stored and relayed") {
  Replica fx(4);
  auto& e = fx.e;
  connect(e, 2, false, "", hello_from(fx.keys.pub, 3, std::nullopt), t0);  // the next hop
  auto asks = sent<GetEntries>(fx.dial_holder(1), 1);  // the source announced head 4
  REQUIRE(asks.size() == 1);
  fx.p.append(fx.keys.secret, 3);  // two more writes before the request is served: head 7
  SyncEngine server(*fx.p.backend, options(), 2);
  server.start("", std::nullopt);
  connect(server, 1, false, "", hello_from(fx.keys.pub, 1, std::nullopt), t0);
  auto replies = sent<Entries>(server.message(1, Message{asks[0]}, t0), 1);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].head.size == 7);
  CHECK(replies[0].entries.size() == 7);
  auto stores = all_of<StoreAction>(e.message(1, Message{replies[0]}, t0));
  REQUIRE(stores.size() == 1);
  const Entries& b = stores[0].entries;
  REQUIRE(fx.r.backend->store_entries(b.entries, b.head, b.proof).ok());
  auto acts = e.stored(1, stores[0].ban_keys, stores[0].who, b.entries.size(), b.head, {}, t0);
  CHECK(fx.r.head().size == 7);
  REQUIRE(sent<HeadMsg>(acts, 2).size() == 1);
  CHECK(sent<HeadMsg>(acts, 2)[0].head.size == 7);
  // The relay serves all it stored to the next hop.
  auto served = sent<Entries>(e.message(2, Message{GetEntries{0, 100, 0}}, t0), 2);
  REQUIRE(served.size() == 1);
  CHECK(served[0].entries.size() == 7);
}

// docs/protocol.md "First servable entry": a peer whose Hello says it serves
// only entries from `first` on is not asked for earlier ones; when every peer
// ahead of us is like that the engine reports the range once and waits, and a
// peer that holds them is asked as soon as it connects. (Dropping the
// `s.first > local_size` test in choose_source makes this fail: session 1 is
// asked for entries from 0.)
TEST_CASE("sync: a peer that compacted the entries we need is not asked; the gap is reported") {
  Replica fx(6);
  auto& e = fx.e;
  Hello compacted = hello_from(fx.keys.pub, 101, fx.p.head());
  compacted.first = 4;
  auto acts = connect(e, 1, true, "10.0.0.1:7000", compacted, t0);
  CHECK(e.peers().at(1).first == 4);
  CHECK(sent<GetEntries>(acts, 1).empty());
  REQUIRE(e.unserved());
  CHECK(*e.unserved() == EntryRange{0, 4});
  // Ticks do not spin into requests to it.
  for (int i = 1; i <= 3; ++i) CHECK(sent<GetEntries>(e.tick(t0 + i * 250ms), 1).empty());
  CHECK(e.unserved());

  // A peer holding everything connects: it is asked, and the gap is closed.
  auto asks = sent<GetEntries>(fx.dial_holder(2), 2);
  REQUIRE(asks.size() == 1);
  CHECK(asks[0].from == 0);
  CHECK_FALSE(e.unserved());
}

// Our own Hello says which entry we serve first (0: all, until the log is compacted).
TEST_CASE("sync: our Hello carries the first entry we serve") {
  Replica fx(3);
  uint64_t first;
  {
    std::lock_guard lock(fx.r.backend->log_mutex());
    first = first_servable_entry(*fx.r.log);
  }
  CHECK(fx.e.make_hello().first == first);
  CHECK(fx.e.make_hello().first == 0);
}

// docs/protocol.md "First servable entry": after `swarmlite compact` a node
// says where its log starts, and refuses entries before it.
TEST_CASE("sync: a compacted log's node announces its first entry and refuses older entries") {
  KeyPair keys = KeyPair::generate();
  LogStoreOptions small;
  small.sync = false;
  small.segment_bytes = 256;  // a segment per batch below: compaction has whole segments to drop
  TestLog p(keys.pub, true, small);
  for (int i = 0; i < 4; ++i) p.append(keys.secret, 5);
  uint64_t first = 0;
  {
    std::lock_guard lock(p.backend->log_mutex());
    auto dropped = p.log->compact(12);
    REQUIRE_MESSAGE(dropped.ok(), dropped.error_text());
    first = p.log->first_entry();
  }
  REQUIRE(first > 0);
  REQUIRE(first <= 12);
  SyncEngine server(*p.backend, options(), 2);
  server.start("", std::nullopt);
  CHECK(server.make_hello().first == first);
  connect(server, 1, false, "", hello_from(keys.pub, 1, std::nullopt), t0);
  auto refused = sent<ErrorMsg>(server.message(1, Message{GetEntries{first - 1, 4, 0}}, t0), 1);
  REQUIRE(refused.size() == 1);
  CHECK(refused[0].code == ErrorCode::not_available);
  CHECK(refused[0].message.find("compacted") != std::string::npos);
  // From the first entry on it serves as before.
  auto served = sent<Entries>(server.message(1, Message{GetEntries{first, 4, 0}}, t0), 1);
  REQUIRE(served.size() == 1);
  CHECK(served[0].entries.size() == 4);
}

// docs/protocol.md "First servable entry": a node that compacts while
// connected pushes its head again with the new first entry, once, to every
// connected peer (and a new head after that carries it too). (Without
// `first` in relay_head's test nothing is pushed after the compaction.)
TEST_CASE("sync: after a compaction the node pushes its head again with its new first entry") {
  KeyPair keys = KeyPair::generate();
  LogStoreOptions small;
  small.sync = false;
  small.segment_bytes = 256;
  TestLog p(keys.pub, true, small);
  for (int i = 0; i < 4; ++i) p.append(keys.secret, 5);
  SyncEngine server(*p.backend, options(), 2);
  server.start("", std::nullopt);
  connect(server, 1, false, "", hello_from(keys.pub, 1, std::nullopt), t0);
  connect(server, 3, false, "", hello_from(keys.pub, 3, std::nullopt), t0);
  CHECK(all_of<SendAction>(server.new_local_head()).empty());  // nothing new: nothing pushed
  uint64_t first = 0;
  {
    std::lock_guard lock(p.backend->log_mutex());
    auto dropped = p.log->compact(12);
    REQUIRE_MESSAGE(dropped.ok(), dropped.error_text());
    first = p.log->first_entry();
  }
  REQUIRE(first > 0);
  auto acts = server.new_local_head();
  for (uint64_t session : {1, 3}) {
    auto pushed = sent<HeadMsg>(acts, session);
    REQUIRE(pushed.size() == 1);
    CHECK(pushed[0].head.size == 20);
    CHECK(pushed[0].first == first);
  }
  CHECK(all_of<SendAction>(server.new_local_head()).empty());  // told once
  p.append(keys.secret, 5);
  auto next = sent<HeadMsg>(server.new_local_head(), 1);
  REQUIRE(next.size() == 1);
  CHECK(next[0].head.size == 25);
  CHECK(next[0].first == first);
}

// A head signed between our Hello and the peer's went to nobody's session
// that was not ready yet, and relay_head() never pushes a size twice: the peer
// learned of it only with the next write (CI: a new peer waited 60 s for the
// primary's last entry). The handshake now tells it our newest head.
TEST_CASE("sync: a head relayed while a session's handshake ran is sent when it completes") {
  KeyPair keys = KeyPair::generate();
  TestLog p(keys.pub, true);
  p.append(keys.secret, 3);
  SyncEngine server(*p.backend, options(), 2);
  server.start("", std::nullopt);
  auto hello = sent<Hello>(server.opened(1, false, "", "10.9.9.9:5555", "10.9.9.9", t0), 1);
  REQUIRE(hello.size() == 1);
  REQUIRE(hello[0].head);
  CHECK(hello[0].head->size == 3);
  p.append(keys.secret, 1);  // a write and its head while the peer's Hello is on its way
  CHECK(sent<HeadMsg>(server.new_local_head(), 1).empty());  // not ready: skipped
  auto acts = server.message(1, hello_from(keys.pub, 1, std::nullopt), t0);
  auto pushed = sent<HeadMsg>(acts, 1);
  REQUIRE(pushed.size() == 1);
  CHECK(pushed[0].head.size == 4);
  CHECK(sent<HeadMsg>(server.new_local_head(), 1).empty());  // told once
  // A session whose handshake saw no new head gets no extra push.
  auto quiet = connect(server, 3, false, "", hello_from(keys.pub, 3, std::nullopt), t0);
  CHECK(sent<HeadMsg>(quiet, 3).empty());
}

// The other side: a peer connected while it held everything, then compacted
// past us (we fell behind while connected). Its Head push says so: we stop
// asking it, report the gap, and its not_available for a request that
// crossed the push does not lower what we think it holds. (Without reading
// HeadMsg::first the engine asks it for entries from 0 and reports nothing.)
TEST_CASE("sync: a connected peer's new first entry is learned from its Head push") {
  Replica fx(6);
  auto& e = fx.e;
  auto acts = connect(e, 1, true, "10.0.0.1:7000", hello_from(fx.keys.pub, 101, fx.p.head()), t0);
  auto asked = sent<GetEntries>(acts, 1);
  REQUIRE(asked.size() == 1);
  CHECK(asked[0].from == 0);
  CHECK_FALSE(e.unserved());
  // The request crosses the peer's push: it compacted to 4.
  acts = e.message(1, HeadMsg{fx.p.head(), 4}, t0);
  CHECK(e.peers().at(1).first == 4);
  acts = e.message(1, ErrorMsg{ErrorCode::not_available, "entries from 0: entries before 4 were compacted away"},
                   t0 + 1ms);
  CHECK(e.peers().at(1).head_size == 6);  // still what it announced
  CHECK(sent<GetEntries>(acts, 1).empty());
  REQUIRE(e.unserved());
  CHECK(*e.unserved() == EntryRange{0, 4});
  for (int i = 1; i <= 3; ++i) CHECK(sent<GetEntries>(e.tick(t0 + i * 250ms), 1).empty());
  // A later push saying it serves everything again (e.g. restored) makes it a source again.
  auto again = sent<GetEntries>(e.message(1, HeadMsg{fx.p.head(), 0}, t0 + 1s), 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].from == 0);
  CHECK_FALSE(e.unserved());
}

// docs/protocol.md "Following the log": during a catch-up of several batches
// the stored head stays where it was (a batch that ends short of the served
// head does not store it), so a node that compacts while serving it (--retain)
// could no longer prove an anchor path from there. The next request anchors on
// the head the last stored batch was proven against, which extends our log and
// is one the server can prove from. (Anchoring on the stored head again makes
// this fail: the server answers not_available, the entries are not served.)
TEST_CASE("sync: a catch-up anchors on the head its last batch was proven against") {
  KeyPair keys = KeyPair::generate();
  LogStoreOptions small;
  small.sync = false;
  small.segment_bytes = 256;  // a segment per append below
  TestLog p(keys.pub, true, small), r(keys.pub, false);
  p.append(keys.secret, 10);
  r.append(keys.secret, 10);  // the same entries and head: the replica stored head 10
  for (int i = 0; i < 6; ++i) p.append(keys.secret, 5);  // segments [10,15) … [35,40), head 40
  NodeOptions o = options();
  o.batch_entries = 10;
  SyncEngine replica(*r.backend, o, 1);
  SyncEngine server(*p.backend, o, 2);
  replica.start("", std::nullopt);
  server.start("", std::nullopt);
  connect(server, 1, false, "", hello_from(keys.pub, 1, std::nullopt), t0);
  auto asks = sent<GetEntries>(connect(replica, 1, true, "10.0.0.2:7000", hello_from(keys.pub, 2, p.head()), t0), 1);
  REQUIRE(asks.size() == 1);
  CHECK(asks[0].from == 10);
  CHECK(asks[0].anchor == 10);
  // Serves a request and stores the batch; the next request, if any.
  auto round = [&](const GetEntries& ask) -> std::optional<GetEntries> {
    auto replies = sent<Entries>(server.message(1, Message{ask}, t0), 1);
    REQUIRE_MESSAGE(replies.size() == 1, "entries from " << ask.from << " anchored at " << ask.anchor
                                                          << " were not served");
    auto got = replica.message(1, Message{replies[0]}, t0);
    auto stores = all_of<StoreAction>(got);
    REQUIRE(stores.size() == 1);
    // The next batch is asked for while this one is stored (prefetch).
    auto next = sent<GetEntries>(got, 1);
    const Entries& e = stores[0].entries;
    REQUIRE(r.backend->store_entries(e.entries, e.head, e.proof).ok());
    CHECK(sent<GetEntries>(replica.stored(1, stores[0].ban_keys, stores[0].who, e.entries.size(), e.head, {}, t0), 1).empty());
    if (next.empty()) return std::nullopt;
    return next[0];
  };
  auto next = round(asks[0]);  // [10, 20), proven against head 40; stored head still 10
  REQUIRE(next);
  CHECK(next->from == 20);
  CHECK(r.head().size == 10);
  CHECK(next->anchor == 40);
  // The server compacts past the replica's stored head (the segment from 20 on stays).
  {
    std::lock_guard lock(p.backend->log_mutex());
    auto dropped = p.log->compact(20);
    REQUIRE_MESSAGE(dropped.ok(), dropped.error_text());
    REQUIRE(p.log->first_entry() == 20);
  }
  while (next) next = round(*next);
  CHECK(r.size() == 40);
  CHECK(r.head().size == 40);
}

// The anchor a catch-up carries may be as high as the served head: a served
// head of that size with another root is the fork, proven by the two heads.
// (Dropping the same-size check in SyncEngine::on_entries makes this fail: the
// batch goes to the store, which only bans the sender.)
TEST_CASE("sync: a served head at the anchor's size with another root is evidence") {
  ForkedPrimaries fork(5, 3, 3);
  TestLog r(fork.keys.pub, false);
  r.append(fork.keys.secret, 5, "common");
  NodeOptions o = options();
  o.batch_entries = 2;
  SyncEngine replica(*r.backend, o, 1);
  SyncEngine a(*fork.a.backend, o, 2), b(*fork.b.backend, o, 3);
  replica.start("", std::nullopt);
  a.start("", std::nullopt);
  b.start("", std::nullopt);
  connect(a, 1, false, "", hello_from(fork.keys.pub, 1, std::nullopt), t0);
  connect(b, 1, false, "", hello_from(fork.keys.pub, 1, std::nullopt), t0);
  auto asks = sent<GetEntries>(connect(replica, 1, true, "10.0.0.2:7000", hello_from(fork.keys.pub, 2, fork.a.head()), t0), 1);
  REQUIRE(asks.size() == 1);
  auto replies = sent<Entries>(a.message(1, Message{asks[0]}, t0), 1);
  REQUIRE(replies.size() == 1);
  auto first = replica.message(1, Message{replies[0]}, t0);
  auto stores = all_of<StoreAction>(first);
  REQUIRE(stores.size() == 1);
  auto next = sent<GetEntries>(first, 1);  // asked while [5, 7) is stored
  const Entries& e = stores[0].entries;
  REQUIRE(r.backend->store_entries(e.entries, e.head, e.proof).ok());
  CHECK(sent<GetEntries>(replica.stored(1, stores[0].ban_keys, stores[0].who, e.entries.size(), e.head, {}, t0), 1).empty());
  REQUIRE(next.size() == 1);
  CHECK(next[0].from == 7);
  CHECK(next[0].anchor == 8);  // branch a's head, which [5, 7) was proven against
  // The answer comes from branch b: its head at size 8, another root.
  auto forked = sent<Entries>(b.message(1, Message{next[0]}, t0), 1);
  REQUIRE(forked.size() == 1);
  REQUIRE(forked[0].head.size == 8);
  auto got = replica.message(1, Message{forked[0]}, t0);
  auto eq = all_of<EquivocatedAction>(got);
  REQUIRE(eq.size() == 1);
  CHECK(eq[0].evidence.verify(fork.keys.pub).ok());
  CHECK(all_of<StoreAction>(got).empty());
}

// docs/protocol.md "Snapshots": snapshot requests become SnapshotActions for
// the node's snapshot threads; one session may have at most
// kMaxSnapshotRequestsPerSession of them open, one more closes it (no ban).
// (Dropping the cap check in on_snapshot_request makes this fail.)
TEST_CASE("sync: snapshot requests go to the node, at most a cap per session") {
  Replica fx(3);
  auto& e = fx.e;
  connect(e, 1, false, "", hello_from(fx.keys.pub, 7, std::nullopt), t0);
  auto acts = e.message(1, GetSnapshot{}, t0);
  auto jobs = all_of<SnapshotAction>(acts);
  REQUIRE(jobs.size() == 1);
  CHECK(std::holds_alternative<GetSnapshot>(jobs[0].request));
  for (size_t i = 1; i < kMaxSnapshotRequestsPerSession; ++i) {
    acts = e.message(1, GetSnapshotPages{3, static_cast<uint32_t>(i), 1}, t0);
    REQUIRE(all_of<SnapshotAction>(acts).size() == 1);
  }
  CHECK(e.peers().at(1).snapshot_requests == kMaxSnapshotRequestsPerSession);
  // Answering one frees a slot.
  e.snapshot_answered(1);
  CHECK(all_of<SnapshotAction>(e.message(1, GetSnapshotPages{3, 1, 1}, t0)).size() == 1);
  acts = e.message(1, GetSnapshotPages{3, 1, 1}, t0);
  CHECK(all_of<SnapshotAction>(acts).empty());
  REQUIRE(sent<ErrorMsg>(acts, 1).size() == 1);
  CHECK(sent<ErrorMsg>(acts, 1)[0].code == ErrorCode::bad_request);
  CHECK(closed(acts, 1));
  CHECK(all_of<BanAction>(acts).empty());
}

// docs/protocol.md "Frontier": entry N-1 and its inclusion path in the tree of
// size N, which fold into the root of the signed head at N; N past our head is
// not_available. And a node never asks for SnapshotPages: unrequested ones ban.
TEST_CASE("sync: GetFrontier is answered from the log; unrequested snapshot answers ban") {
  Replica fx(7);
  SyncEngine server(*fx.p.backend, options(), 2);
  server.start("", std::nullopt);
  connect(server, 1, false, "", hello_from(fx.keys.pub, 9, std::nullopt), t0);
  for (uint64_t n : {1u, 4u, 6u, 7u}) {
    CAPTURE(n);
    auto replies = sent<Frontier>(server.message(1, GetFrontier{n}, t0), 1);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].size == n);
    Hash32 root;
    {
      std::lock_guard lock(fx.p.backend->log_mutex());
      CHECK(replies[0].last_entry == fx.p.log->entry_bytes(n - 1).value());
      root = fx.p.log->tree().root_at(n).value();
    }
    // Round-trips the codec (which checks the path length) and folds to the root.
    auto back = decode_frame(encode_frame(replies[0]));
    REQUIRE(back.ok());
    auto f = frontier_from_last_leaf_path(n, entry_leaf_hash(replies[0].last_entry), replies[0].path);
    REQUIRE(f.ok());
    CHECK(f->root == root);
    if (n == 7) CHECK(f->root == fx.p.head().log_root);  // the signed head's root
  }
  auto far = server.message(1, GetFrontier{8}, t0);
  REQUIRE(sent<ErrorMsg>(far, 1).size() == 1);
  CHECK(sent<ErrorMsg>(far, 1)[0].code == ErrorCode::not_available);
  CHECK_FALSE(closed(far, 1));

  auto acts = server.message(1, SnapshotPages{Bytes{1, 2, 3}}, t0);
  REQUIRE(all_of<BanAction>(acts).size() == 1);
  CHECK(all_of<BanAction>(acts)[0].reason.find("unrequested SnapshotPages") != std::string::npos);
}

// docs/protocol.md "Changes": the Hello says whether we answer GetChanges (the
// node's callback, read at each Hello); a GetChanges goes to the node's
// threads like GetLeaves; a Changes is never asked for on a sync session, so
// one arriving bans the sender. (Without GetChanges in on_snapshot_request's
// dispatch no SnapshotAction comes out; without ChangesMsg in the unrequested
// list nobody is banned.)
TEST_CASE("sync: GetChanges is served like GetLeaves; our Hello says so; unrequested Changes ban") {
  KeyPair keys = KeyPair::generate();
  TestLog log{keys.pub, false};
  uint64_t features = 0;
  SyncEngine e(*log.backend, options(), 1, {}, [&] { return features; });
  e.start("", std::nullopt);
  CHECK(e.make_hello().features == 0);
  features = kFeatureChanges;
  CHECK(e.make_hello().features == kFeatureChanges);
  auto hi = e.opened(1, false, "", "10.9.9.9:5555", "10.9.9.9", t0);
  REQUIRE(sent<Hello>(hi, 1).size() == 1);
  CHECK(sent<Hello>(hi, 1)[0].features == kFeatureChanges);
  e.message(1, hello_from(keys.pub, 7, std::nullopt), t0);
  auto jobs = all_of<SnapshotAction>(e.message(1, GetChanges{3, 0}, t0));
  REQUIRE(jobs.size() == 1);
  CHECK(std::get<GetChanges>(jobs[0].request) == GetChanges{3, 0});
  CHECK(e.peers().at(1).snapshot_requests == 1);  // the same per-session cap

  auto acts = e.message(1, ChangesMsg{Bytes{1, 2, 3}}, t0);
  REQUIRE(all_of<BanAction>(acts).size() == 1);
  CHECK(all_of<BanAction>(acts)[0].reason.find("unrequested Changes") != std::string::npos);
}

// GetEntries is served from runs of entries read at once (LogStore::read_range):
// every start and count gives the entries entry_bytes gives one by one, at
// least one, and no more than batch_bytes allows (the first always comes).
TEST_CASE("sync: GetEntries serves the log's entries from any start, within the byte budget") {
  Replica fx(40);
  for (size_t budget : {size_t{4} << 20, size_t{1}, size_t{600}}) {
    CAPTURE(budget);
    NodeOptions o = options();
    o.batch_bytes = budget;
    SyncEngine server(*fx.p.backend, o, 2);
    server.start("", std::nullopt);
    connect(server, 1, false, "", hello_from(fx.keys.pub, 9, std::nullopt), t0);
    for (uint64_t from : {0u, 1u, 17u, 39u}) {
      for (uint32_t count : {1u, 5u, 1000u}) {
        CAPTURE(from);
        CAPTURE(count);
        auto replies = sent<Entries>(server.message(1, GetEntries{from, count, 0}, t0), 1);
        REQUIRE(replies.size() == 1);
        const auto& got = replies[0].entries;
        REQUIRE(!got.empty());
        CHECK(got.size() <= count);
        CHECK(from + got.size() <= 40);
        size_t bytes = 0;
        std::lock_guard lock(fx.p.backend->log_mutex());
        for (size_t i = 0; i < got.size(); ++i) {
          CHECK(got[i] == fx.p.log->entry_bytes(from + i).value());
          bytes += got[i].size();
        }
        if (got.size() > 1) CHECK(bytes <= budget);
        if (budget == (size_t{4} << 20)) CHECK(got.size() == std::min<uint64_t>(count, 40 - from));
      }
    }
  }
}
