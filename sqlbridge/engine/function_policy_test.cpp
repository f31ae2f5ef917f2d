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

#include "sqlbridge/tools/audit.h"
#include "sqlbridge/engine/engine_test_fixture.h"
#include "sqlbridge/engine/function_policy.h"

using namespace swarmlite;
using namespace swarmlite::testing;

namespace {

struct Swarm : PrimaryAndReplica {
  Result<ExecuteResult> exec(std::string text) { return primary->execute({sql(std::move(text))}); }
  void must(std::string text) {
    auto r = exec(text);
    REQUIRE_MESSAGE(r.ok(), text, ": ", r.error_text());
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
  REQUIRE_MESSAGE(report.ok(), report.error_text());
  CHECK_MESSAGE(report->ok(), (report->problems.empty() ? "" : report->problems[0]));
  CHECK(report->replayed == s.primary->size());
}

namespace {

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// The functions of a write connection as swarmlite configures it.
std::vector<SqlFunction> write_connection_functions() {
  TempDir dir;
  auto db = DeterministicDb::open(dir / "f.db");
  REQUIRE_MESSAGE(db.ok(), db.error_text());
  auto fns = list_functions((*db)->handle());
  REQUIRE_MESSAGE(fns.ok(), fns.error_text());
  return std::move(fns).value();
}

// The function table of docs/determinism.md ("## Functions…"): name -> class.
std::map<std::string, std::string> doc_function_table() {
  std::ifstream in(std::string(SWARMLITE_SOURCE_DIR) + "/docs/determinism.md");
  REQUIRE(in.good());
  std::map<std::string, std::string> out;
  std::string line;
  bool in_section = false;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) in_section = line.rfind("## Functions", 0) == 0;
    if (!in_section || line.rfind("| `", 0) != 0) continue;
    // | `name` | class | why |
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) {
      size_t b = cell.find_first_not_of(' '), e = cell.find_last_not_of(' ');
      cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
    }
    REQUIRE_MESSAGE(cells.size() >= 3, line);
    std::string name = cells[0];
    const bool quoted = name.size() > 2 && name.front() == '`' && name.back() == '`';
    REQUIRE_MESSAGE(quoted, line);
    name = name.substr(1, name.size() - 2);
    CHECK_MESSAGE(!cells[2].empty(), "no reason given for ", name);
    CHECK_MESSAGE(out.count(name) == 0, "listed twice in the docs: ", name);
    out[name] = cells[1];
  }
  return out;
}

}  // namespace

TEST_CASE("the function table covers every function of this SQLite and the docs agree with it") {
  auto policies = function_policies();
  CHECK(std::is_sorted(policies.begin(), policies.end(),
                       [](const FunctionPolicy& a, const FunctionPolicy& b) { return a.name < b.name; }));
  std::set<std::string> names;
  for (const SqlFunction& f : write_connection_functions()) names.insert(lower(f.name));
  REQUIRE(names.size() > 100);
  for (const std::string& n : names) {
    CAPTURE(n);
    const FunctionPolicy* p = find_function_policy(n);
    CHECK_MESSAGE(p != nullptr, n, "() is in PRAGMA function_list but not classified in "
                                   "sqlbridge/engine/function_policy.cpp and docs/determinism.md");
  }
  const auto doc = doc_function_table();
  for (const FunctionPolicy& p : policies) {
    const std::string n(p.name);
    CAPTURE(n);
    auto it = doc.find(n);
    REQUIRE_MESSAGE(it != doc.end(), n, "() is classified in the code but missing from docs/determinism.md");
    CHECK(it->second == function_class_name(p.cls));
    CHECK(!p.reason.empty());
  }
  for (const auto& entry : doc) {
    CHECK_MESSAGE(find_function_policy(entry.first) != nullptr, entry.first,
                  "() is in docs/determinism.md but not in sqlbridge/engine/function_policy.cpp");
  }
  CHECK(find_function_policy("SQLITE_VERSION") == find_function_policy("sqlite_version"));
  CHECK(find_function_policy("no_such_function") == nullptr);
}

namespace {

// Plausible arguments for a call of `name` with `narg` arguments (-1: any).
std::vector<std::string> arguments(const std::string& name, int narg) {
  static const std::map<std::string, std::vector<std::string>> kByName = {
      {"->", {"'{\"a\":[1,2.5]}'", "'$.a'"}},
      {"->>", {"'{\"a\":[1,2.5]}'", "'$.a[1]'"}},
      {"atan2", {"2", "3"}},
      {"char", {"65", "66"}},
      {"coalesce", {"NULL", "1.5"}},
      {"date", {"'now'", "'+1 day'"}},
      {"datetime", {"'now'", "'localtime'"}},
      {"format", {"'%d-%.3f-%s'", "7", "2.5"}},
      {"fts3_tokenizer", {"'simple'"}},
      {"glob", {"'a*'", "'abc'"}},
      {"group_concat", {"'x'", "','"}},
      {"iif", {"1", "'a'", "'b'"}},
      {"instr", {"'abc'", "'b'"}},
      {"json", {"'{\"a\": 1.5}'"}},
      {"json_array", {"1", "'x'", "2.5"}},
      {"json_array_length", {"'[1,2]'", "'$'"}},
      {"json_extract", {"'{\"a\":1}'", "'$.a'"}},
      {"json_group_object", {"'a'", "1"}},
      {"json_insert", {"'{\"a\":1}'", "'$.b'", "2"}},
      {"json_object", {"'a'", "1"}},
      {"json_patch", {"'{\"a\":1}'", "'{\"b\":2}'"}},
      {"json_remove", {"'{\"a\":1}'", "'$.a'"}},
      {"json_replace", {"'{\"a\":1}'", "'$.a'", "2"}},
      {"json_set", {"'{\"a\":1}'", "'$.b'", "2"}},
      {"json_type", {"'{\"a\":1}'", "'$.a'"}},
      {"json_valid", {"'{}'"}},
      {"julianday", {"'now'", "'start of day'"}},
      {"lag", {"1", "1", "0"}},
      {"lead", {"1", "1", "0"}},
      {"like", {"'a%'", "'abc'", "'!'"}},
      {"likelihood", {"1", "0.5"}},
      {"load_extension", {"'nosuch'", "'nosuch'"}},
      {"log", {"2", "8"}},
      {"max", {"1", "2.5"}},
      {"min", {"1", "2.5"}},
      {"mod", {"7.5", "2"}},
      {"nth_value", {"1", "1"}},
      {"ntile", {"2"}},
      {"pow", {"2", "0.5"}},
      {"power", {"2", "0.5"}},
      {"printf", {"'%d-%.3f-%s'", "7", "2.5"}},
      {"randomblob", {"6"}},
      {"replace", {"'abc'", "'b'", "'xy'"}},
      {"round", {"2.345", "2"}},
      {"rtreecheck", {"'x'"}},
      {"rtreenode", {"2", "x'00'"}},
      {"sqlite_compileoption_get", {"0"}},
      {"sqlite_compileoption_used", {"'THREADSAFE'"}},
      {"sqlite_log", {"1", "'x'"}},
      {"strftime", {"'%Y-%m-%d %H:%M:%f %s'", "'now'"}},
      {"substr", {"'abcdef'", "2", "3"}},
      {"substring", {"'abcdef'", "2", "3"}},
      {"time", {"'now'", "'+90 seconds'"}},
      {"unixepoch", {"'now'", "'subsec'"}},
      {"zeroblob", {"5"}},
  };
  static const std::vector<std::string> kDefault = {"0.75", "2", "'x'"};
  auto it = kByName.find(name);
  const std::vector<std::string>& pool = it != kByName.end() ? it->second : kDefault;
  size_t n = narg >= 0 ? static_cast<size_t>(narg) : std::min<size_t>(pool.size(), 2);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(i < pool.size() ? pool[i] : kDefault[i % kDefault.size()]);
  return out;
}

struct Site {
  const char* name;
  bool schema;  // the call is stored in the schema: refused at CREATE
  // %C = the call, %K = a unique suffix
  const char* create;
  const char* write;
};

const Site kSites[] = {
    {"DEFAULT", true, "CREATE TABLE d_%K(a, b DEFAULT (%C))", "INSERT INTO d_%K(a) VALUES (1)"},
    {"CHECK", true, "CREATE TABLE c_%K(a, CHECK (typeof(%C) <> 'z'))", "INSERT INTO c_%K VALUES (1)"},
    {"generated VIRTUAL", true, "CREATE TABLE gv_%K(a, g AS (%C) VIRTUAL)",
     "INSERT INTO gv_%K(a) VALUES (1); INSERT INTO sink SELECT g FROM gv_%K"},
    {"generated STORED", true, "CREATE TABLE gs_%K(a, g AS (%C) STORED)", "INSERT INTO gs_%K(a) VALUES (1)"},
    {"index expression", true, "CREATE TABLE ix_%K(a); CREATE INDEX ix_%K_i ON ix_%K((%C), a)",
     "INSERT INTO ix_%K VALUES (1)"},
    {"partial index WHERE", true,
     "CREATE TABLE pi_%K(a); CREATE INDEX pi_%K_i ON pi_%K(a) WHERE typeof(%C) <> 'z'",
     "INSERT INTO pi_%K VALUES (1)"},
    {"trigger BEFORE INSERT body", true,
     "CREATE TABLE tb_%K(a); CREATE TRIGGER tb_%K_t BEFORE INSERT ON tb_%K BEGIN INSERT INTO sink "
     "VALUES (%C); END",
     "INSERT INTO tb_%K VALUES (1)"},
    {"trigger AFTER UPDATE body", true,
     "CREATE TABLE ta_%K(a); CREATE TRIGGER ta_%K_t AFTER UPDATE OF a ON ta_%K BEGIN UPDATE sink SET v = "
     "(%C) WHERE rowid = (SELECT max(rowid) FROM sink); END",
     "INSERT INTO ta_%K VALUES (1); UPDATE ta_%K SET a = a + 1"},
    {"trigger WHEN", true,
     "CREATE TABLE tw_%K(a); CREATE TRIGGER tw_%K_t AFTER INSERT ON tw_%K WHEN typeof(%C) <> 'z' "
     "BEGIN INSERT INTO sink VALUES (new.a); END",
     "INSERT INTO tw_%K VALUES (1)"},
    {"view read by INSERT…SELECT", true, "CREATE VIEW v_%K AS SELECT %C%W AS x FROM base",
     "INSERT INTO sink SELECT x FROM v_%K"},
    {"FK ON DELETE SET DEFAULT", true,
     "CREATE TABLE fp_%K(id INTEGER PRIMARY KEY); CREATE TABLE fc_%K(p DEFAULT (nullif(typeof(%C), "
     "'z') || 'k') REFERENCES fp_%K(id) ON DELETE SET DEFAULT DEFERRABLE INITIALLY DEFERRED, q)",
     "INSERT INTO fp_%K VALUES (1); INSERT INTO fc_%K VALUES (1, 1); DELETE FROM fp_%K; DELETE FROM "
     "fc_%K WHERE p NOT IN (SELECT id FROM fp_%K)"},
    {"upsert DO UPDATE SET", false, "CREATE TABLE us_%K(id INTEGER PRIMARY KEY, v)",
     "INSERT INTO us_%K VALUES (1, 0); INSERT INTO us_%K VALUES (1, 0) ON CONFLICT(id) DO UPDATE SET v = "
     "(%C)"},
    {"upsert DO UPDATE WHERE", false, "CREATE TABLE uw_%K(id INTEGER PRIMARY KEY, v)",
     "INSERT INTO uw_%K VALUES (1, 0); INSERT INTO uw_%K VALUES (1, 0) ON CONFLICT(id) DO UPDATE SET v = "
     "2 WHERE typeof(%C) <> 'z'"},
    {"RETURNING", false, "CREATE TABLE rt_%K(a)", "INSERT INTO rt_%K VALUES (1) RETURNING %C"},
};

std::string expand(std::string text, const std::string& call, const std::string& window,
                   const std::string& key) {
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"%C", call}, {"%W", window}, {"%K", key}}) {
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
    }
  }
  return text;
}

}  // namespace

TEST_CASE("every function at every expression site: refused before logging, or replayed identically") {
  Swarm s;
  s.must("CREATE TABLE _fail_sink(v); CREATE TABLE _fail_uniq(a UNIQUE); CREATE TABLE sink(v);"
         "CREATE TABLE base(x); INSERT INTO base VALUES (1), (2), (3)");
  int key = 0;
  size_t refused_at_create = 0, refused_at_write = 0, written = 0, failed = 0;
  std::map<std::string, size_t> written_by_class;
  std::set<std::pair<std::string, int>> seen;  // random() etc. are listed as built-in and as ours
  for (const SqlFunction& f : write_connection_functions()) {
    const std::string name = lower(f.name);
    if (!seen.insert({name, f.narg}).second) continue;
    const FunctionPolicy* policy = find_function_policy(name);
    REQUIRE_MESSAGE(policy != nullptr, name);
    const bool refused = policy->cls == FunctionClass::refused;
    std::string call = name + "(";
    const auto args = arguments(name, f.narg);
    for (size_t i = 0; i < args.size(); ++i) call += (i ? ", " : "") + args[i];
    call += ")";
    const std::string window = f.type == 'w' ? " OVER ()" : "";
    for (const Site& site : kSites) {
      const std::string site_name = site.name;
      const std::string k = std::to_string(++key);
      const std::string create = expand(site.create, call, window, k);
      const std::string write = expand(site.write, call, window, k);
      CAPTURE(create);
      CAPTURE(write);
      const uint64_t before = s.primary->size();
      auto c = s.exec(create);
      if (!c.ok()) {
        if (refused) {
          CHECK_MESSAGE(c.error().code == Errc::refused, c.error().to_string());
          CHECK_MESSAGE(c.error().message.find(name + "()") != std::string::npos, c.error().message);
          CHECK(s.primary->size() == before);
          ++refused_at_create;
        } else {
          // An allowed function SQLite rejects here (an aggregate in a
          // DEFAULT, random() in an index, ...): never a refusal.
          CHECK_MESSAGE(c.error().code == Errc::sqlite_error, c.error().to_string());
          ++failed;
        }
        continue;
      }
      if (refused) {
        CHECK_MESSAGE(!site.schema, "a stored call of refused ", name, "() was not refused at CREATE (",
                      site_name, ")");
      }
      s.failed_transaction();
      const uint64_t mid = s.primary->size();
      auto w = s.exec(write);
      if (refused) {
        REQUIRE_FALSE_MESSAGE(w.ok(), "refused ", name, "() was evaluated and logged (", site_name, ")");
        CHECK_MESSAGE(w.error().code == Errc::refused, w.error().to_string());
        CHECK_MESSAGE(w.error().message.find("docs/determinism.md") != std::string::npos, w.error().message);
        CHECK(s.primary->size() == mid);
        ++refused_at_write;
      } else if (w.ok()) {
        ++written;
        ++written_by_class[std::string(function_class_name(policy->cls))];
      } else {
        CHECK_MESSAGE(w.error().code != Errc::refused, w.error().to_string());
        ++failed;
      }
    }
    // Replay what the primary logged for this function on the replica.
    Status st = s.sync();
    REQUIRE_MESSAGE(st.ok(), name, "/", f.narg, ": ", st.error_text());
    REQUIRE(s.replica->state_root() == s.primary->state_root());
  }
  MESSAGE("sites: refused at CREATE ", refused_at_create, ", refused at the write ", refused_at_write,
          ", written ", written, " (pinned ", written_by_class["pinned"], "), failed in SQLite ", failed,
          "; ", s.primary->size(), " entries replayed");
  CHECK(written_by_class["pinned"] > 0);
  auto report = audit_log(s.primary->log_dir(), s.keys.pub);
  REQUIRE_MESSAGE(report.ok(), report.error_text());
  CHECK_MESSAGE(report->ok(), (report->problems.empty() ? "" : report->problems[0]));
}

namespace {

// A function some future SQLite (or an extension loaded into every connection)
// adds, which the table does not know.
void fn_host_name(sqlite3_context* ctx, int, sqlite3_value**) { sqlite3_result_text(ctx, "host-a", -1, SQLITE_STATIC); }
int add_host_function(sqlite3* db, char**, const sqlite3_api_routines*) {
  return sqlite3_create_function_v2(db, "host_name", 0, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                    nullptr, fn_host_name, nullptr, nullptr, nullptr);
}

}  // namespace

TEST_CASE("a function the table does not classify is refused wherever it is called") {
  using Init = void (*)();
  REQUIRE(sqlite3_auto_extension(reinterpret_cast<Init>(add_host_function)) == SQLITE_OK);
  struct Cancel {
    ~Cancel() { sqlite3_cancel_auto_extension(reinterpret_cast<void (*)()>(add_host_function)); }
  } cancel;
  Swarm s;
  s.must("CREATE TABLE t(a)");
  for (const char* text : {"INSERT INTO t VALUES (host_name())", "CREATE TABLE d(a, b DEFAULT (host_name()))",
                           "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO t VALUES (host_name()); END",
                           "CREATE TABLE g(a, b AS (host_name()))"}) {
    const std::string sql_text = text;
    CAPTURE(sql_text);
    auto r = s.exec(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::refused);
    CHECK_MESSAGE(r.error().message.find("host_name() is not allowed in replicated writes") != std::string::npos,
                  r.error().message);
    CHECK_MESSAGE(r.error().message.find("not classified") != std::string::npos, r.error().message);
  }
  CHECK(s.primary->size() == 2);  // genesis and t
}
