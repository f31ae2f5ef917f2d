// PrimaryHttpBackend's head announcements (docs/performance.md "Where a single
// HTTP writer's time goes"): a write wakes the node's io thread only when the
// log's head grew past what was announced, and exactly one caller announces
// each growth, however many race for it. And its submitted writes
// (submit_execute): batched, each request answered once with its own results.
#include "net/http_backends.h"

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include "core/keys.h"
#include "net/backends.h"
#include "net/http_api.h"
#include "net/http_client.h"
#include "sqlbridge/engine/engine_test_util.h"

using namespace swarmlite;
using namespace swarmlite::testing;
using swarmlite::net::raise_announced_head;
using namespace std::chrono_literals;

TEST_CASE("raise_announced_head: true once per growth, never for the same or an older head") {
  std::atomic<uint64_t> announced{0};
  CHECK_FALSE(raise_announced_head(announced, 0));  // no head yet
  CHECK(raise_announced_head(announced, 5));
  CHECK(announced.load() == 5);
  CHECK_FALSE(raise_announced_head(announced, 5));  // a write that brought no new head
  CHECK_FALSE(raise_announced_head(announced, 3));  // an older head seen late
  CHECK(announced.load() == 5);
  CHECK(raise_announced_head(announced, 6));
  CHECK(announced.load() == 6);
}

TEST_CASE(
    "raise_announced_head: racing callers announce each size at most once, and the largest wins") {
  std::atomic<uint64_t> announced{0};
  constexpr int kThreads = 8;
  constexpr uint64_t kSizes = 2000;
  std::atomic<uint64_t> raises{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      // Every thread walks every size: each size can be raised to by one thread only.
      for (uint64_t size = 1; size <= kSizes; ++size) {
        if (raise_announced_head(announced, size)) raises.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(announced.load() == kSizes);
  CHECK(raises.load() >= 1);
  CHECK(raises.load() <= kSizes);
}

namespace {

// A request of the test below and what it must get back.
struct Submission {
  enum Kind { insert, pair_tx, failing_tx, insert_then_duplicate } kind;
  int64_t id = 0;
  std::promise<Result<std::vector<net::ExecOutcome>>> answer;
  std::atomic<int> answers{0};
};

std::vector<Statement> statements_for(const Submission& s) {
  auto ins = [](int64_t id) {
    return Statement{"INSERT INTO t(id, v) VALUES (?, ?)",
                     {Value{id}, Value{fmt::format("v{}", id)}}};
  };
  switch (s.kind) {
    case Submission::insert:
      return {ins(s.id)};
    case Submission::pair_tx:
      return {ins(s.id), ins(s.id + 1)};
    // The second statement repeats the first's unique v: the whole transaction fails.
    case Submission::failing_tx:
      return {ins(s.id), Statement{"INSERT INTO t(id, v) VALUES (?, ?)",
                                   {Value{s.id + 1}, Value{fmt::format("v{}", s.id)}}}};
    case Submission::insert_then_duplicate:
      return {ins(s.id), ins(s.id)};
  }
  return {};
}

// A primary whose log appends wait while `hold` is set (the first batch held
// while the others queue behind it), with `schema` run, and a node (not
// started: announcements just queue) for its HTTP backend.
struct HeldPrimary {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::atomic<bool> hold{false};
  std::unique_ptr<Primary> primary;
  std::unique_ptr<net::PrimaryBackend> node_backend;
  std::unique_ptr<net::Node> node;

  explicit HeldPrimary(const std::string& schema) {
    PrimaryOptions po = fast_primary();
    po.test_hook = [this](PrimaryHookPoint point) -> Status {
      while (point == PrimaryHookPoint::before_log_append && hold.load())
        std::this_thread::sleep_for(1ms);
      return ok_status();
    };
    auto opened = Primary::open(dir / "p.db", keys.secret, std::move(po));
    REQUIRE_MESSAGE(opened.ok(), opened.error_text());
    primary = std::move(opened).value();
    REQUIRE(primary->execute({Statement{schema, {}}}).ok());
    node_backend = std::make_unique<net::PrimaryBackend>(*primary);
    node = std::make_unique<net::Node>(*node_backend, net::NodeOptions{});
  }
};

}  // namespace

TEST_CASE("/db/execute without ?transaction: an error names the statement's place in the request") {
  HeldPrimary held("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)");
  net::PrimaryHttpBackend backend(*held.primary, *held.node);
  const std::vector<Statement> st = {
      Statement{"INSERT INTO t(id, v) VALUES (1, 'a')", {}},
      Statement{"INSERT INTO nope VALUES (1)", {}},
      Statement{"BEGIN", {}},
      Statement{"INSERT INTO t(id, v) VALUES (2, 'b')", {}},
  };
  auto r = backend.execute(st, /*transaction=*/false);
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  REQUIRE(r->size() == 4);
  CHECK_FALSE((*r)[0].error);
  REQUIRE((*r)[1].error);
  CHECK_MESSAGE((*r)[1].error->find("statement 1: ") != std::string::npos, *(*r)[1].error);
  REQUIRE((*r)[2].error);
  CHECK_MESSAGE((*r)[2].error->find("statement 2: BEGIN is refused") != std::string::npos,
                *(*r)[2].error);
  CHECK((*r)[2].error->find("statement 0") == std::string::npos);
  CHECK_FALSE((*r)[3].error);
  // In a transaction the primary's numbering is already the request's.
  auto t = backend.execute({Statement{"INSERT INTO t(id, v) VALUES (3, 'c')", {}}, st[1]},
                           /*transaction=*/true);
  REQUIRE(t.ok());
  REQUIRE(t->size() == 2);
  REQUIRE(t->back().error);
  CHECK_MESSAGE(t->back().error->find("statement 1: ") != std::string::npos, *t->back().error);
}

// /db/execute's writes go to PrimaryHttpBackend's submit thread, which runs all
// requests queued meanwhile in one Primary::execute_batch: requests must still
// get exactly their own answers, and one request's failure (a transaction
// rolled back, a statement refused) must not touch its neighbours in the batch.
TEST_CASE(
    "submitted writes: batched, each request answered once with its own results, failures "
    "isolated") {
  HeldPrimary held("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)");
  auto& hold = held.hold;
  auto& primary = held.primary;
  auto backend = std::make_unique<net::PrimaryHttpBackend>(*primary, *held.node);
  REQUIRE(backend->submits_writes());

  constexpr int kRequests = 240;
  std::vector<std::unique_ptr<Submission>> subs;
  for (int i = 0; i < kRequests; ++i) {
    auto s = std::make_unique<Submission>();
    s->kind = static_cast<Submission::Kind>(i % 4);
    s->id = 1 + 10 * i;
    subs.push_back(std::move(s));
  }
  auto submit = [&](Submission& s) {
    backend->submit_execute(statements_for(s),
                            s.kind == Submission::pair_tx || s.kind == Submission::failing_tx,
                            [&s](Result<std::vector<net::ExecOutcome>> r) {
                              if (s.answers.fetch_add(1) == 0) s.answer.set_value(std::move(r));
                            });
  };
  hold = true;
  submit(*subs[0]);
  // The rest from four threads while the first batch is held.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 1 + t; i < kRequests; i += 4) submit(*subs[static_cast<size_t>(i)]);
    });
  }
  for (auto& th : threads) th.join();
  hold = false;

  int64_t expected_rows = 0;
  for (auto& s : subs) {
    auto fut = s->answer.get_future();
    REQUIRE(fut.wait_for(30s) == std::future_status::ready);
    auto r = fut.get();
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    const auto& out = *r;
    INFO("request kind ", static_cast<int>(s->kind), " id ", s->id);
    switch (s->kind) {
      case Submission::insert:
        REQUIRE(out.size() == 1);
        CHECK_FALSE(out[0].error);
        CHECK(out[0].last_insert_id == s->id);
        expected_rows += 1;
        break;
      case Submission::pair_tx:
        REQUIRE(out.size() == 2);
        CHECK_FALSE(out[0].error);
        CHECK_FALSE(out[1].error);
        CHECK(out[1].last_insert_id == s->id + 1);
        expected_rows += 2;
        break;
      case Submission::failing_tx:
        REQUIRE(out.size() == 2);
        CHECK_FALSE(out[0].error);
        REQUIRE(out[1].error);
        CHECK(out[1].error->find("UNIQUE") != std::string::npos);
        break;
      case Submission::insert_then_duplicate:
        REQUIRE(out.size() == 2);
        CHECK_FALSE(out[0].error);
        CHECK(out[0].last_insert_id == s->id);
        REQUIRE(out[1].error);
        expected_rows += 1;
        break;
    }
  }
  backend.reset();  // joins the submit thread
  for (auto& s : subs) CHECK(s->answers.load() == 1);
  auto count = primary->execute({Statement{"SELECT count(*) FROM t", {}}});
  REQUIRE(count.ok());
  CHECK(std::get<int64_t>(count->statements.at(0).rows.at(0).at(0).v) == expected_rows);
  auto failed_rows = primary->execute({Statement{"SELECT count(*) FROM t WHERE id % 10 = 2", {}}});
  REQUIRE(failed_rows.ok());
  CHECK(std::get<int64_t>(failed_rows->statements.at(0).rows.at(0).at(0).v) ==
        kRequests / 4);  // pair_tx's second rows only
}

TEST_CASE(
    "submitted writes share batches: fewer execute_batch calls than requests while one runs") {
  HeldPrimary held("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  auto& hold = held.hold;
  net::PrimaryHttpBackend backend(*held.primary, *held.node);
  constexpr int kRequests = 50;
  std::atomic<int> answered{0};
  hold = true;
  for (int i = 0; i < kRequests; ++i) {
    backend.submit_execute({Statement{"INSERT INTO t(id) VALUES (?)", {Value{int64_t{i + 1}}}}},
                           false, [&](Result<std::vector<net::ExecOutcome>> r) {
                             CHECK(r.ok());
                             answered.fetch_add(1);
                           });
  }
  hold = false;
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (answered.load() < kRequests && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  REQUIRE(answered.load() == kRequests);
  const auto st = backend.submit_stats();
  CHECK(st.requests == kRequests);
  // The first batch held; everything submitted meanwhile ran in the next one
  // (or a few: the thread may take the first ones before the rest arrive).
  CHECK(st.batches <= 3);
}

// Two HTTP servers on one primary: `a` tries plain reads on its io thread
// (with `budget`, no pause after a declined read unless `pause` says so), `b`
// never does. same() sends a request to both and checks the answers match
// byte for byte.
struct InlineAndLane {
  HeldPrimary held{"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n REAL)"};
  net::PrimaryHttpBackend tries{*held.primary, *held.node}, never{*held.primary, *held.node};
  std::unique_ptr<net::HttpApi> a, b;

  explicit InlineAndLane(net::InlineBudget budget, std::chrono::milliseconds pause) {
    REQUIRE(held.primary
                ->execute({Statement{
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) "
                    "INSERT INTO t SELECT x, 'row ' || x, x * 0.5 FROM c",
                    {}}})
                .ok());
    a = start(tries, true, budget, pause);
    b = start(never, false, budget, pause);
  }
  ~InlineAndLane() {
    b->stop();
    a->stop();
  }
  static std::unique_ptr<net::HttpApi> start(net::HttpBackend& backend, bool inline_reads,
                                             net::InlineBudget budget,
                                             std::chrono::milliseconds pause) {
    net::HttpApiOptions o;
    o.listen = "127.0.0.1:0";
    o.inline_reads = inline_reads;
    o.inline_budget = budget;
    o.inline_pause = pause;
    auto api = std::make_unique<net::HttpApi>(backend, o);
    REQUIRE(api->start().ok());
    return api;
  }
  static net::HttpResponse get(net::HttpApi& api, const std::string& target,
                               const std::string& body = "") {
    net::HttpRequest r;
    r.method = body.empty() ? "GET" : "POST";
    r.target = target;
    r.body = body;
    auto res = net::http_call(net::HttpUrl{"127.0.0.1", api.bound_port(), "", "", ""}, r,
                              net::HttpClientOptions{5000ms});
    REQUIRE_MESSAGE(res.ok(), (res.ok() ? "" : res.error().to_string()));
    return std::move(res).value();
  }
  net::HttpResponse same(const std::string& target, const std::string& body = "") {
    auto x = get(*a, target, body);
    auto y = get(*b, target, body);
    CHECK(x.status == y.status);
    CHECK_MESSAGE(x.body == y.body, target << " " << body);
    return x;
  }
  static uint64_t counter(net::HttpApi& api, const char* name) {
    return api.metrics().counter(name, "").value();
  }
};

// Plain reads are tried on the server's io thread while its read lane is idle
// (docs/performance.md "Cheap reads on the io thread"): a cheap one is answered
// there, a costly one (over the budget) is stopped and answered by the lane.
// Either way the answer is the one a server that never tries gives, byte for
// byte: point reads by literal and by parameter, several statements, errors,
// refusals and the costly query.
TEST_CASE(
    "plain reads: cheap ones answered on the io thread, costly ones on the lane, same answers") {
  // The time budget off (a loaded test machine delays cheap reads past any):
  // what decides here is the VM-step budget alone.
  InlineAndLane s(net::InlineBudget{1000, 60s}, 100ms);
  auto inline_reads = [](net::HttpApi& api) {
    return InlineAndLane::counter(api, "swarmlite_inline_reads_total");
  };
  auto declined = [](net::HttpApi& api) {
    return InlineAndLane::counter(api, "swarmlite_inline_reads_declined_total");
  };

  // The first read finds no idle connection: the lane answers it (and opens one).
  s.same("/db/query?q=SELECT%20count(*)%20FROM%20t");
  CHECK(inline_reads(*s.a) == 0);
  std::this_thread::sleep_for(150ms);  // past the pause a declined read starts
  for (int i = 1; i <= 40; ++i) {
    s.same(fmt::format("/db/query?q=SELECT%20*%20FROM%20t%20WHERE%20id={}", i * 7));
    s.same("/db/query",
           fmt::format(R"([["SELECT v, n FROM t WHERE id = ?", {}], "SELECT max(id) FROM t"])", i));
  }
  CHECK(s.same("/db/query?q=SELECT%20*%20FROM%20nope").body.find("no such table") !=
        std::string::npos);
  CHECK(s.same("/db/query?q=PRAGMA%20writable_schema=1").body.find("not allowed") !=
        std::string::npos);
  const uint64_t cheap = inline_reads(*s.a);
  CHECK(cheap == 82);
  CHECK(inline_reads(*s.b) == 0);

  // Costly: stopped over the budget, answered by the lane, in full.
  const uint64_t declined_before = declined(*s.a);
  auto costly =
      s.same("/db/query?q=" +
             net::url_encode("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                             "WHERE x < 200000) SELECT sum(x) FROM c"));
  CHECK(costly.status == 200);
  CHECK(costly.body.find("20000100000") != std::string::npos);
  CHECK(declined(*s.a) == declined_before + 1);
  CHECK(inline_reads(*s.a) == cheap);
}

// Generated: requests of 1–4 statements mixing cheap and costly reads (scans,
// sorts, aggregates, joins, recursive counts of random length), parameters,
// errors, refusals and min_size, against a server that tries every read on its
// io thread with no pause and a tiny budget (so many are stopped part way and
// run again on the lane) and one that never does: the same answers, byte for
// byte, and both paths taken.
TEST_CASE("plain reads, generated: tried on the io thread or not, the same answers") {
  InlineAndLane s(net::InlineBudget{1000, 60s}, 0ms);
  std::mt19937_64 rng(20261206);
  auto pick = [&](std::initializer_list<const char*> xs) {
    return std::string(*(xs.begin() + rng() % xs.size()));
  };
  auto num = [&](int lo, int hi) {
    return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  auto statement = [&]() -> nlohmann::json {
    switch (rng() % 9) {
      case 0:
        return fmt::format("SELECT * FROM t WHERE id = {}", num(-5, 320));
      case 1:
        return nlohmann::json::array({"SELECT id, v FROM t WHERE id BETWEEN ? AND ? ORDER BY " +
                                          pick({"id", "v", "n DESC", "id DESC"}),
                                      num(0, 300), num(0, 300)});
      case 2:
        return fmt::format("SELECT {}(n), count(*) FROM t WHERE id % {} = {}",
                           pick({"sum", "avg", "max", "min", "total"}), num(1, 9), num(0, 3));
      case 3:
        return fmt::format(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {}) "
            "SELECT count(*), sum(x) FROM c",
            num(1, 3000));
      case 4:
        return fmt::format("SELECT a.id, b.v FROM t a JOIN t b ON b.id = a.id + {} WHERE a.id < {}",
                           num(0, 5), num(0, 40));
      case 5:
        return pick({"SELECT * FROM nope", "SELEC 1", "PRAGMA writable_schema=1", "DELETE FROM t",
                     "SELECT length(v) FROM t ORDER BY random() LIMIT 0"});
      case 6:
        return fmt::format("SELECT group_concat(v, ',') FROM t WHERE id < {}", num(0, 300));
      case 7:
        return nlohmann::json::array(
            {"SELECT ?, typeof(?), ? || v FROM t WHERE id = 1", num(-9, 9), "x", 1.5});
      default:
        return fmt::format("SELECT v FROM t ORDER BY n DESC LIMIT {} OFFSET {}", num(0, 5),
                           num(0, 310));
    }
  };
  int requests = 0;
  for (int i = 0; i < 400; ++i) {
    // One in four goes to the unified endpoint (/db/request: classified, and
    // the reads run at once when all are reads), where a write would change
    // the state between the two servers' answers: its DELETE is never sent.
    const uint64_t kind = rng() % 8;
    const bool unified = kind < 2;
    nlohmann::json body = nlohmann::json::array();
    const int n = num(1, 4);
    while (static_cast<int>(body.size()) < n) {
      nlohmann::json st = statement();
      if (unified && st == "DELETE FROM t") continue;
      body.push_back(std::move(st));
    }
    const std::string target = unified     ? "/db/request"
                               : kind == 2 ? "/db/query?min_size=2"
                                           : "/db/query";
    requests += unified;
    auto res = s.same(target, body.dump());
    CHECK(res.status == 200);
  }
  const uint64_t answered = InlineAndLane::counter(*s.a, "swarmlite_inline_reads_total");
  const uint64_t declined = InlineAndLane::counter(*s.a, "swarmlite_inline_reads_declined_total");
  MESSAGE("on the io thread: " << answered << ", stopped and run on the lane: " << declined
                               << "; of " << requests << " to /db/request");
  CHECK(requests > 50);
  CHECK(answered > 50);
  CHECK(declined > 50);
  CHECK(InlineAndLane::counter(*s.b, "swarmlite_inline_reads_total") == 0);
}

// The unified endpoint answers a request of reads at once, on the io thread
// when cheap (one classification and the reads on one connection), and the
// answers are those of a server that never tries; a request with a write
// still goes through classification, the primary and the reads after it.
TEST_CASE("/db/request: reads answered on the io thread or in one lane trip, same answers") {
  InlineAndLane s(net::InlineBudget{1000, 60s}, 100ms);
  auto inline_reads = [&] { return InlineAndLane::counter(*s.a, "swarmlite_inline_reads_total"); };
  s.same("/db/request", R"(["SELECT count(*) FROM t"])");  // opens a pooled connection
  std::this_thread::sleep_for(150ms);
  const uint64_t before = inline_reads();
  for (int i = 1; i <= 20; ++i) {
    auto res = s.same(
        "/db/request",
        fmt::format(R"([["SELECT v FROM t WHERE id = ?", {}], "SELECT max(id) FROM t"])", i));
    CHECK(res.body.find(fmt::format("row {}", i)) != std::string::npos);
  }
  CHECK(inline_reads() == before + 20);
  CHECK(s.same("/db/request", R"(["SELECT * FROM nope", "SELECT 1"])").body.find("no such table") !=
        std::string::npos);
  // A write among them: classified (here on the io thread), then the lane
  // flow; the read after it sees it.
  auto a = InlineAndLane::get(
      *s.a, "/db/request",
      R"J(["INSERT INTO t(id, v) VALUES (1001, 'new')", "SELECT v FROM t WHERE id = 1001"])J");
  CHECK(a.status == 200);
  CHECK(a.body.find("\"new\"") != std::string::npos);
  CHECK(a.body.find("rows_affected") != std::string::npos);
  auto b = InlineAndLane::get(*s.b, "/db/request", R"(["SELECT v FROM t WHERE id = 1001"])");
  CHECK(b.body.find("\"new\"") != std::string::npos);
}
