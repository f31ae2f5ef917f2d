// Functions in replicated writes (docs/determinism.md, "Functions"): the one
// classification table agrees with the docs and covers every function of this
// SQLite build, and every function called from every place SQL is evaluated
// during a write is either refused before anything is logged or replays to the
// same state root on a fresh replica, after a failed transaction on the primary.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "sqlbridge/audit.h"
#include "sqlbridge/engine_test_util.h"
#include "sqlbridge/function_policy.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

struct Swarm {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> primary;
  std::unique_ptr<Replica> replica;

  Swarm() {
    auto p = Primary::open(dir / "p.db", keys.secret, fast_primary());
    REQUIRE_MESSAGE(p.ok(), p.error().to_string());
    primary = std::move(p).value();
    auto r = Replica::open(dir / "r.db", dir / "r.log", keys.pub, fast_replica());
    REQUIRE_MESSAGE(r.ok(), r.error().to_string());
    replica = std::move(r).value();
  }
  Result<ExecuteResult> exec(std::string text) { return primary->execute({sql(std::move(text))}); }
  void must(std::string text) {
    auto r = exec(text);
    REQUIRE_MESSAGE(r.ok(), text, ": ", r.error().to_string());
  }
  // A transaction that changes rows and then fails: the primary's connection
  // has history a replica never sees.
  void failed_transaction() {
    auto r = exec("INSERT INTO _fail_sink(v) VALUES (1), (2), (3); INSERT INTO _fail_uniq VALUES (1), (1)");
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.error().code == Errc::sqlite_error);
  }
  Status sync() { return sync_replica(*primary, *replica); }
};

}  // namespace

TEST_CASE("regression: total_changes() in a DEFAULT after a failed transaction replays and audits") {
  Swarm s;
  s.must("CREATE TABLE _fail_sink(v); CREATE TABLE _fail_uniq(a UNIQUE)");
  s.must("CREATE TABLE t(a, b DEFAULT (total_changes()))");
  s.failed_transaction();
  s.must("INSERT INTO t(a) VALUES (1)");
  s.must("INSERT INTO t(a) VALUES (2), (3)");
  Status st = s.sync();
  CHECK_MESSAGE(st.ok(), (st.ok() ? "" : st.error().to_string()));
  CHECK(s.replica->size() == s.primary->size());
  CHECK(s.replica->state_root() == s.primary->state_root());
  auto report = audit_log(s.primary->log_dir(), s.keys.pub);
  REQUIRE_MESSAGE(report.ok(), report.error().to_string());
  CHECK_MESSAGE(report->ok(), (report->problems.empty() ? "" : report->problems[0]));
  CHECK(report->replayed == s.primary->size());
}
