// Loopback tests of /db/request and the read consistency levels
// (docs/http-api.md "The unified endpoint", "Read consistency"): real servers
// on 127.0.0.1:0 with fake backends — a primary, and a peer whose
// --primary-url names it and whose applied size the test controls.
#include "net/http_request.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "net/http_api.h"
#include "net/http_client.h"

using namespace swarmlite;
using namespace swarmlite::net;
using nlohmann::json;

namespace {

// SELECT… is a read, "BAD…" does not prepare, anything else is a write; a
// write containing FAIL fails. Every read answers one row: the size it read at.
class MixedBackend : public HttpBackend {
 public:
  explicit MixedBackend(bool primary) : primary_(primary) {}
  bool accepts_writes() const override { return primary_; }
  Result<std::vector<ExecOutcome>> execute(const std::vector<Statement>& st, bool transaction) override {
    std::lock_guard lock(mu_);
    last_exec = st;
    last_transaction = transaction;
    std::vector<ExecOutcome> out;
    for (const auto& s : st) {
      ExecOutcome o;
      if (s.sql.find("FAIL") != std::string::npos) {
        o.error = "refused: FAIL";
        out.push_back(o);
        if (transaction) return out;  // results end at the failing statement
        continue;
      }
      if (!transaction) applied.fetch_add(1);
      o.last_insert_id = static_cast<int64_t>(applied.load());
      o.rows_affected = 1;
      log.push_back("W:" + s.sql);
      out.push_back(o);
    }
    if (transaction) applied.fetch_add(1);
    return out;
  }
  Result<std::vector<QueryOutcome>> query(const std::vector<Statement>& st, const QueryOptions& opts) override {
    std::lock_guard lock(mu_);
    std::vector<QueryOutcome> out;
    uint64_t at = applied.load();
    if (at < opts.min_size) return make_error(Errc::unavailable, "below min_size");
    for (const auto& s : st) {
      QueryOutcome o;
      if (s.sql.find("nope") != std::string::npos) {
        o.error = "no such table: nope";
      } else {
        o.columns = {"size"};
        o.types = {"integer"};
        o.rows = {{Value{static_cast<int64_t>(at)}}};
      }
      log.push_back("R:" + s.sql);
      out.push_back(o);
    }
    return out;
  }
  Result<std::vector<StatementClass>> classify(const std::vector<Statement>& st) override {
    std::vector<StatementClass> out;
    for (const auto& s : st) {
      StatementClass c;
      if (s.sql.rfind("SELECT", 0) == 0) c.kind = StatementKind::read;
      else if (s.sql.rfind("BAD", 0) == 0) c = {StatementKind::invalid, "near \"BAD\": syntax error"};
      else c.kind = StatementKind::write;
      out.push_back(c);
    }
    return out;
  }
  uint64_t size_value() const { return applied.load(); }
  uint64_t size() const override { return applied.load(); }
  uint64_t known_head_size() const override { return known.load(); }
  json status() const override { return json::object(); }
  Status ready() const override { return ok_status(); }

  std::vector<std::string> log_copy() { std::lock_guard l(mu_); return log; }
  std::vector<Statement> exec_copy() { std::lock_guard l(mu_); return last_exec; }
  bool transaction_copy() { std::lock_guard l(mu_); return last_transaction; }

  std::atomic<uint64_t> applied{0};
  std::atomic<uint64_t> known{0};

 private:
  bool primary_;
  std::mutex mu_;
  std::vector<std::string> log;
  std::vector<Statement> last_exec;
  bool last_transaction = false;
};

struct Node {
  MixedBackend backend;
  HttpApi api;
  HttpUrl url;
  Node(bool primary, HttpApiOptions o) : backend(primary), api(backend, listen_any(std::move(o))) {
    auto s = api.start();
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().to_string()));
    url.host = "127.0.0.1";
    url.port = api.bound_port();
  }
  static HttpApiOptions listen_any(HttpApiOptions o) {
    o.listen = "127.0.0.1:0";
    return o;
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(url.port); }
  HttpResponse call(std::string method, std::string target, std::string body = "") {
    HttpRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.body = std::move(body);
    auto res = http_call(url, r, HttpClientOptions{std::chrono::milliseconds(20000)});
    REQUIRE_MESSAGE(res.ok(), (res.ok() ? "" : res.error().to_string()));
    return std::move(res).value();
  }
};

HttpApiOptions peer_of(const Node& primary) {
  HttpApiOptions o;
  o.primary_url = primary.base();
  return o;
}

// Sets `b`'s applied size to `to` after `delay` (a peer catching up).
std::thread catch_up_later(MixedBackend& b, uint64_t to, std::chrono::milliseconds delay) {
  return std::thread([&b, to, delay] {
    std::this_thread::sleep_for(delay);
    b.applied.store(to);
  });
}

int64_t read_size(const json& result) { return result.at("values").at(0).at(0).get<int64_t>(); }

}  // namespace

TEST_CASE("/db/request on the primary: reads and writes in order, each in its own form") {
  Node p(true, {});
  auto r = p.call("POST", "/db/request",
                  R"J(["CREATE TABLE t(x)", "SELECT a", ["INSERT INTO t VALUES(?)", 1], "SELECT b"])J");
  REQUIRE(r.status == 200);
  auto doc = json::parse(r.body);
  REQUIRE(doc["results"].size() == 4);
  CHECK(doc["results"][0]["rows_affected"] == 1);
  CHECK(doc["results"][1]["columns"] == json::array({"size"}));
  CHECK(read_size(doc["results"][1]) == 1);
  CHECK(doc["results"][2]["last_insert_id"] == 2);
  CHECK(read_size(doc["results"][3]) == 2);
  CHECK(p.backend.log_copy() ==
        std::vector<std::string>{"W:CREATE TABLE t(x)", "R:SELECT a", "W:INSERT INTO t VALUES(?)", "R:SELECT b"});
  // GET ?q= works as on /db/query.
  r = p.call("GET", "/db/request?q=" + url_encode("SELECT 1"));
  CHECK(r.status == 200);
  CHECK(read_size(json::parse(r.body)["results"][0]) == 2);
  // /db/execute answers carry the primary's size.
  r = p.call("POST", "/db/execute", R"J(["INSERT 3"])J");
  CHECK(r.status == 200);
  CHECK(r.swarmlite_size == "3");
  CHECK(json::parse(p.call("GET", "/db/size").body)["size"] == 3);
  // Proofs are /db/query's.
  r = p.call("GET", "/db/request?proof=1&q=" + url_encode("SELECT 1"));
  CHECK(r.status == 400);
  CHECK(r.body.find("does not serve proofs") != std::string::npos);
}

TEST_CASE("/db/request: a statement that fails in the middle has its error in its own slot") {
  Node p(true, {});
  auto r = p.call("POST", "/db/request", R"J(["INSERT a", "BAD x", "INSERT FAIL", "SELECT nope", "SELECT z"])J");
  REQUIRE(r.status == 200);
  auto res = json::parse(r.body)["results"];
  REQUIRE(res.size() == 5);
  CHECK(res[0]["rows_affected"] == 1);
  CHECK(res[1]["error"] == "near \"BAD\": syntax error");
  CHECK(res[2]["error"] == "refused: FAIL");
  CHECK(res[3]["error"] == "no such table: nope");
  CHECK(read_size(res[4]) == 1);
}

TEST_CASE("/db/request?transaction: the writes in one transaction, reads after it; a failure ends the results") {
  Node p(true, {});
  auto r = p.call("POST", "/db/request?transaction", R"J(["INSERT a", "SELECT s", "INSERT b"])J");
  REQUIRE(r.status == 200);
  auto res = json::parse(r.body)["results"];
  REQUIRE(res.size() == 3);
  CHECK(p.backend.transaction_copy());
  CHECK(p.backend.exec_copy().size() == 2);
  CHECK(read_size(res[1]) == 1);  // one entry, and the read sees it
  r = p.call("POST", "/db/request?transaction", R"J(["INSERT c", "SELECT s", "INSERT FAIL", "SELECT t"])J");
  REQUIRE(r.status == 200);
  res = json::parse(r.body)["results"];
  REQUIRE(res.size() == 3);
  CHECK(res[1]["error"].get<std::string>().find("not run: the transaction failed at statement 2") == 0);
  CHECK(res[2]["error"] == "refused: FAIL");
  CHECK(p.backend.size_value() == 1);
}

TEST_CASE("/db/request on a peer: writes forwarded to the primary, the read after them sees them") {
  Node p(true, {});
  p.backend.applied.store(5);
  Node peer(false, peer_of(p));
  peer.backend.applied.store(5);
  // The peer applies the primary's new entries a while later.
  auto t = catch_up_later(peer.backend, 7, std::chrono::milliseconds(300));
  auto r = peer.call("POST", "/db/request?timeout=20s",
                     R"J(["SELECT before", ["INSERT INTO t VALUES(?, ?, ?)", 5, "x", [1, 2]], "INSERT 2", "SELECT after"])J");
  t.join();
  REQUIRE(r.status == 200);
  auto res = json::parse(r.body)["results"];
  REQUIRE(res.size() == 4);
  CHECK(read_size(res[0]) == 5);
  CHECK(res[1]["last_insert_id"] == 6);
  CHECK(res[2]["last_insert_id"] == 7);
  CHECK(read_size(res[3]) == 7);  // read-your-writes: waited for size 7
  auto sent = p.backend.exec_copy();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].params ==
        std::vector<Value>{Value{int64_t{5}}, Value{std::string("x")}, Value{Bytes{1, 2}}});
  CHECK(peer.backend.exec_copy().empty());
}

TEST_CASE("/db/request on a lagging peer: a statement that does not prepare is prepared again once caught up") {
  // BAD… does not prepare until the peer reaches size 4 (a table it has not received yet).
  struct Lagging : MixedBackend {
    Lagging() : MixedBackend(false) {}
    Result<std::vector<StatementClass>> classify(const std::vector<Statement>& st) override {
      auto out = MixedBackend::classify(st);
      if (applied.load() >= 4)
        for (auto& c : *out)
          if (c.kind == StatementKind::invalid) c = {StatementKind::read, ""};
      return out;
    }
  };
  Lagging b;
  b.applied.store(2);
  b.known.store(4);
  HttpApi api(b, Node::listen_any({}));
  REQUIRE(api.start().ok());
  HttpUrl url;
  url.host = "127.0.0.1";
  url.port = api.bound_port();
  auto t = catch_up_later(b, 4, std::chrono::milliseconds(300));
  HttpRequest rq;
  rq.method = "POST";
  rq.target = "/db/request?timeout=20s";
  rq.body = R"J(["BAD table not here yet"])J";
  auto r = http_call(url, rq, HttpClientOptions{std::chrono::milliseconds(20000)});
  t.join();
  REQUIRE(r.ok());
  REQUIRE(r->status == 200);
  CHECK(read_size(json::parse(r->body)["results"][0]) == 4);
}

TEST_CASE("/db/request on a peer without a primary: writes get a refusal in their slot, reads answer") {
  Node peer(false, {});
  auto r = peer.call("POST", "/db/request", R"J(["INSERT 1", "SELECT 2"])J");
  REQUIRE(r.status == 200);
  auto res = json::parse(r.body)["results"];
  CHECK(res[0]["error"].get<std::string>().find("knows no primary") != std::string::npos);
  CHECK(read_size(res[1]) == 0);
}

TEST_CASE("level=strong on a lagging peer waits until it applied the primary's size") {
  Node p(true, {});
  p.backend.applied.store(10);
  Node peer(false, peer_of(p));
  peer.backend.applied.store(3);
  auto r = peer.call("GET", "/db/query?q=" + url_encode("SELECT 1") + "&level=none");
  CHECK(read_size(json::parse(r.body)["results"][0]) == 3);
  auto t = catch_up_later(peer.backend, 10, std::chrono::milliseconds(300));
  r = peer.call("GET", "/db/query?q=" + url_encode("SELECT 1") + "&level=strong&timeout=20s");
  t.join();
  REQUIRE(r.status == 200);
  CHECK(read_size(json::parse(r.body)["results"][0]) == 10);
  // The unified endpoint takes it too.
  r = peer.call("GET", "/db/request?q=" + url_encode("SELECT 1") + "&level=linearizable");
  CHECK(read_size(json::parse(r.body)["results"][0]) == 10);
  // Not caught up in time: 503 naming both sizes.
  p.backend.applied.store(12);
  r = peer.call("GET", "/db/query?q=" + url_encode("SELECT 1") + "&level=strong&timeout=200ms");
  CHECK(r.status == 503);
  CHECK(r.body.find("applied 10 entries") != std::string::npos);
  CHECK(r.body.find("at size 12") != std::string::npos);
}

TEST_CASE("level=strong with an unreachable primary is a 503 naming it; without a primary URL the best head counts") {
  HttpApiOptions o;
  o.primary_url = "http://127.0.0.1:9";
  Node peer(false, o);
  auto r = peer.call("GET", "/db/query?q=" + url_encode("SELECT 1") + "&level=strong&timeout=2s");
  CHECK((r.status == 503 || r.status == 504));
  CHECK(r.body.find("cannot learn the current size from the primary at http://127.0.0.1:9") != std::string::npos);

  Node lone(false, {});
  lone.backend.applied.store(3);
  lone.backend.known.store(7);
  r = lone.call("GET", "/db/query?q=" + url_encode("SELECT 1") + "&level=strong&timeout=200ms");
  CHECK(r.status == 503);
  CHECK(r.body.find("newest head this peer has seen") != std::string::npos);
  CHECK(r.body.find("at size 7") != std::string::npos);
  lone.backend.applied.store(7);
  CHECK(lone.call("GET", "/db/query?q=" + url_encode("SELECT 1") + "&level=strong").status == 200);
}

TEST_CASE("an unknown level is a 400 naming the accepted ones") {
  Node peer(false, {});
  for (const char* path : {"/db/query", "/db/request"}) {
    auto r = peer.call("GET", std::string(path) + "?q=SELECT%201&level=eventual");
    CHECK(r.status == 400);
    CHECK(r.body.find("expected none, weak, strong, linearizable or auto") != std::string::npos);
  }
}

TEST_CASE("freshness=D refuses a state not known current within D") {
  Node peer(false, {});
  peer.backend.applied.store(3);
  peer.backend.known.store(5);
  const std::string q = "/db/query?q=" + url_encode("SELECT 1");
  auto r = peer.call("GET", q + "&freshness=1s");
  CHECK(r.status == 503);
  CHECK(r.body.find("stale: this node has applied 3 entries but knows of a head of size 5") != std::string::npos);
  CHECK(peer.call("GET", q).status == 200);  // without freshness: answers
  peer.backend.applied.store(5);                 // caught up: current now
  CHECK(peer.call("GET", q + "&freshness=1s").status == 200);
  peer.backend.known.store(6);                // behind again, but was current just now
  CHECK(peer.call("GET", q + "&freshness=30s").status == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  r = peer.call("GET", "/db/request?q=" + url_encode("SELECT 1") + "&freshness=10ms");
  CHECK(r.status == 503);
  CHECK(r.body.find("last seen current") != std::string::npos);
}

TEST_CASE("statements_to_json round-trips through parse_statements") {
  std::vector<Statement> st{{"INSERT ?", {Value{}, Value{int64_t{-9}}, Value{1.5}, Value{std::string("a\"b")},
                                           Value{Bytes{0, 255}}}},
                            {"SELECT 1", {}}};
  auto back = parse_statements(statements_to_json(st));
  REQUIRE(back.ok());
  CHECK(*back == st);
}
