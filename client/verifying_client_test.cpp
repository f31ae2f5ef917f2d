// The verifying client against an in-process peer: a Primary behind the real
// HTTP API on 127.0.0.1 (test_peer_test_util.h).
#ifdef SWARMLITE_CLIENT_HAVE_NET
#include "client/verifying_client.h"

#include <doctest/doctest.h>

#include "client/test_peer_test_util.h"

using namespace swarmlite;
using namespace swarmlite::client;
using swarmlite::client::testing::TestLog;
using swarmlite::client::testing::TestPeer;

namespace {

const std::string kSql = "SELECT id, body FROM notes WHERE id = ?";

ClientOptions options_for(const KeyPair& keys, std::vector<std::string> peers) {
  ClientOptions o;
  o.log_id = keys.pub;
  o.peers = std::move(peers);
  o.timeout = std::chrono::milliseconds(20000);  // a liveness bound, not a speed check
  return o;
}

std::string text(const ClientError& e) { return e.to_string(); }

}  // namespace

TEST_CASE("a peer's answer verifies: the rows the proof shows, from which peer, at which head") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  TestPeer peer(*log.primary);
  VerifyingClient c(options_for(keys, {peer.url}));
  auto a = c.query(kSql, {Value{int64_t{2}}});
  REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : text(a.error())));
  CHECK(a->peer == peer.url);
  CHECK(a->columns == std::vector<std::string>{"id", "body"});
  REQUIRE(a->rows.size() == 1);
  CHECK(a->rows[0][1] == Value{std::string("two")});
  CHECK(a->sql == kSql);
  CHECK(a->head == *log.primary->head());
  CHECK(a->freshness.entries_behind == 0);
  // min_size at the log's size is answered; the head cache now holds that head.
  c.check_options().min_size = log.primary->size();
  CHECK(c.query(kSql, {Value{int64_t{1}}}).ok());
  CHECK(c.heads().newest(keys.pub) == log.primary->head());
}

TEST_CASE("a peer that proves other SQL than asked is refused: sql_mismatch naming both") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  TestPeer peer(*log.primary);
  peer.backend.set_swap_sql("SELECT id, body FROM notes WHERE id = 3");
  VerifyingClient c(options_for(keys, {peer.url}));
  auto a = c.query("SELECT id, body FROM notes WHERE id = 2");
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().kind == ClientErrorKind::sql_mismatch);
  CHECK(a.error().peer == peer.url);
  CHECK(a.error().message.find("WHERE id = 2") != std::string::npos);
  CHECK(a.error().message.find("WHERE id = 3") != std::string::npos);
}

TEST_CASE("a stale head fails max_age; min_size beyond the peer is the peer's 503") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  TestPeer peer(*log.primary);
  auto o = options_for(keys, {peer.url});
  o.check.max_age = std::chrono::milliseconds(1000);
  o.check.now_ms = log.primary->head()->time_ms + 5000;
  VerifyingClient c(o);
  auto a = c.query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().kind == ClientErrorKind::stale_head);
  auto w = options_for(keys, {peer.url});
  w.check.min_size = log.primary->size() + 1;
  w.timeout = std::chrono::milliseconds(200);
  auto waited = VerifyingClient(w).query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(waited.ok());
  CHECK(waited.error().kind == ClientErrorKind::peer_status);
  CHECK(waited.error().http_status == 503);
}

TEST_CASE("a second peer with a different head of the same size is reported as equivocation, and stops the search") {
  KeyPair keys = KeyPair::generate();
  TestLog a(keys, "a", 2), b(keys, "b", 2);
  REQUIRE(a.primary->size() == b.primary->size());
  TestPeer honest(*a.primary), forked(*b.primary), spare(*a.primary);
  VerifyingClient c(options_for(keys, {forked.url, spare.url}));
  REQUIRE(c.query_peer(honest.url, kSql, {Value{int64_t{1}}}).ok());
  auto r = c.query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ClientErrorKind::equivocation);
  CHECK(r.error().peer == forked.url);
  REQUIRE(r.error().evidence);
  CHECK(r.error().evidence->verify(keys.pub).ok());
  CHECK(r.error().earlier_attempts.empty());
}

TEST_CASE("a peer's 503 is a typed peer_status error; an unreachable peer is transport; the next peer answers") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  TestPeer busy(*log.primary), good(*log.primary);
  busy.backend.set_unavailable("cannot prove right now: no signed head applied yet");
  std::string gone;
  {
    TestPeer closed(*log.primary);
    gone = closed.url;
  }
  VerifyingClient only_busy(options_for(keys, {busy.url}));
  auto r = only_busy.query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ClientErrorKind::peer_status);
  CHECK(r.error().http_status == 503);
  CHECK_FALSE(r.error().is_verification_failure());
  CHECK_MESSAGE(r.error().message.find("no signed head applied yet") != std::string::npos, r.error().message);

  VerifyingClient only_gone(options_for(keys, {gone}));
  auto t = only_gone.query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().kind == ClientErrorKind::transport);

  VerifyingClient all(options_for(keys, {gone, busy.url, good.url}));
  auto ok = all.query(kSql, {Value{int64_t{1}}});
  REQUIRE_MESSAGE(ok.ok(), (ok.ok() ? "" : text(ok.error())));
  CHECK(ok->peer == good.url);
  VerifyingClient none(options_for(keys, {gone, busy.url}));
  auto failed = none.query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().kind == ClientErrorKind::peer_status);
  REQUIRE(failed.error().earlier_attempts.size() == 1);
  CHECK(failed.error().earlier_attempts[0].kind == ClientErrorKind::transport);
}

TEST_CASE("a tampered proof is proof_invalid; no proof is no_proof; a failed statement is query_failed") {
  KeyPair keys = KeyPair::generate();
  TestLog log(keys);
  TestPeer peer(*log.primary);
  Bytes bad = log.prove(kSql, {Value{int64_t{1}}});
  bad[bad.size() - 40] ^= 0x01;
  peer.backend.set_fixed_proof(bad);
  VerifyingClient c(options_for(keys, {peer.url}));
  auto r = c.query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind == ClientErrorKind::proof_invalid);
  peer.backend.set_fixed_proof(Bytes{});
  auto none = c.query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().kind == ClientErrorKind::no_proof);
  peer.backend.set_fixed_proof(std::nullopt);
  auto failed = c.query("SELECT * FROM nope");
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().kind == ClientErrorKind::query_failed);
  auto blob = c.query(kSql, {Value{Bytes{1, 2}}});
  REQUIRE_FALSE(blob.ok());
  CHECK(blob.error().kind == ClientErrorKind::invalid_argument);
  auto url = VerifyingClient(options_for(keys, {"ftp://x"})).query(kSql, {Value{int64_t{1}}});
  REQUIRE_FALSE(url.ok());
  CHECK(url.error().kind == ClientErrorKind::invalid_argument);
}

#endif  // SWARMLITE_CLIENT_HAVE_NET
