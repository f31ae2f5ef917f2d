#include "net/http_backends.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include <fmt/ranges.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <unistd.h>

#include "net/process_memory.h"
#include "sqlbridge/engine/page_vfs.h"
#include "sqlbridge/proof/read_guard.h"
#include "sqlbridge/engine/snapshot.h"
#include "sqlbridge/tools/import.h"
#include "sqlbridge/tools/sql_script.h"

namespace swarmlite::net {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

QueryOutcome outcome_from(QueryResult&& r) {
  QueryOutcome o;
  o.columns = std::move(r.columns);
  for (auto& t : r.decltypes) o.types.push_back(lower(std::move(t)));
  o.rows = std::move(r.rows);
  return o;
}

// Plain reads: one guarded connection, one read snapshot for all statements.
// Not Primary/Replica::open_snapshot(): that opens an unguarded reader (client
// SQL must run under the read guard) and needs the state root of the size it
// sees, which a plain read does not (it would fail once that root left
// RecentRoots while writes go on). Ending the read is checked like the rest.
Result<std::vector<QueryOutcome>> guarded_query_on(ReadPool::Lease& conn,
                                                   const std::vector<Statement>& statements,
                                                   uint64_t min_size) {
  // One statement that asks for no particular size reads in SQLite's own
  // implicit transaction: the same one consistent snapshot, without the
  // BEGIN, the applied-size read and the COMMIT around it
  // (docs/performance.md "Plain reads").
  auto run_statements = [&] {
    std::vector<QueryOutcome> out;
    for (const auto& st : statements) {
      auto t0 = Clock::now();
      auto r = conn->query(st.sql, st.params);
      QueryOutcome o;
      if (r.ok()) {
        o = outcome_from(std::move(*r));
      } else {
        o.error = r.error().to_string();
      }
      o.seconds = seconds_since(t0);
      out.push_back(std::move(o));
    }
    return out;
  };
  if (statements.size() == 1 && min_size == 0) return run_statements();
  uint64_t size = 0;
  {
    GuardedConnection::TrustedScope trusted(*conn);
    auto began = conn.txn().begin();
    if (!began.ok()) {
      conn.discard();
      return began.take_error();
    }
    size = *began;
  }
  auto end_read = [&conn]() {
    GuardedConnection::TrustedScope trusted(*conn);
    Status ended = conn.txn().end();
    if (!ended.ok()) conn.discard();
    return ended;
  };
  if (size < min_size) {
    auto ended = end_read();
    return make_error(Errc::unavailable, "state is at size {}, below min_size {}{}", size, min_size,
                      ended.ok() ? "" : "; ending the read failed too: " + ended.error().to_string());
  }
  std::vector<QueryOutcome> out = run_statements();
  if (auto ended = end_read(); !ended.ok()) {
    return make_error(ended.error().code, "ending the read of size {} after {} statements: {}", size,
                      statements.size(), ended.error().message);
  }
  return out;
}

Result<std::vector<QueryOutcome>> guarded_query(ReadPool& pool,
                                                const std::vector<Statement>& statements,
                                                uint64_t min_size) {
  SWL_ASSIGN(auto conn, pool.acquire());
  return guarded_query_on(conn, statements, min_size);
}

// guarded_query_on under an inline budget: nullopt when stopped over it.
std::optional<Result<std::vector<QueryOutcome>>> guarded_query_on_trial(
    ReadPool::Lease& conn, const std::vector<Statement>& statements, uint64_t min_size,
    const InlineBudget& budget) {
  conn->set_trial(GuardedConnection::Trial{budget.vm_steps, Clock::now() + budget.time});
  auto r = guarded_query_on(conn, statements, min_size);
  const bool over = conn->over_trial();
  conn->set_trial(std::nullopt);
  if (over) return std::nullopt;
  return r;
}

// HttpBackend::try_query_inline for plain reads: on an idle pooled connection
// only (an open costs more than a cheap read), stopped over the budget.
std::optional<Result<std::vector<QueryOutcome>>> guarded_query_inline(
    ReadPool& pool, const std::vector<Statement>& statements, const QueryOptions& options,
    const InlineBudget& budget) {
  if (options.proof) return std::nullopt;
  auto conn = pool.acquire(/*open_if_none=*/false);
  if (!conn.ok()) return std::nullopt;
  return guarded_query_on_trial(*conn, statements, options.min_size, budget);
}

// Proved reads: one prove() per statement. A statement's own error goes in its
// slot; "cannot prove right now" (unavailable) fails the whole request (503).
template <class ProveFn>
Result<std::vector<QueryOutcome>> proved_query(const std::vector<Statement>& statements,
                                               uint64_t min_size, bool tamper, ProveFn&& prove) {
  std::vector<QueryOutcome> out;
  for (const auto& st : statements) {
    auto t0 = Clock::now();
    Result<ProvedQuery> r = prove(st);
    QueryOutcome o;
    if (r.ok()) {
      if (r->proof.head.size < min_size) {
        return make_error(Errc::unavailable, "state is at size {}, below min_size {}",
                          r->proof.head.size, min_size);
      }
      o = outcome_from(std::move(r->result));
      o.size = r->proof.head.size;
      if (tamper) {
        tamper_query_proof(r->proof);
        o.proof = encode_query_proof(r->proof);
      } else {
        o.proof = std::move(r->encoded);
      }
    } else if (r.error().code == Errc::unavailable) {
      return make_error(Errc::unavailable, "cannot prove right now: {}", r.error().message);
    } else if (r.error().code == Errc::corrupt) {  // the node's file, not the query: 503
      return make_error(Errc::unavailable, "cannot prove: {}", r.error().message);
    } else {
      o.error = r.error().to_string();
    }
    o.seconds = seconds_since(t0);
    out.push_back(std::move(o));
  }
  return out;
}

nlohmann::json head_json(const Head& h) {
  return {{"size", h.size},
          {"log_root", to_hex(h.log_root)},
          {"state_root", to_hex(h.state_root)},
          {"page_count", h.page_count},
          {"time_ms", h.time_ms},
          {"signature", to_hex(ByteView(h.signature.data(), h.signature.size()))}};
}

// {"what","since_ms","retries"}, or null when there is no fault.
nlohmann::json fault_json(const std::optional<LocalFault>& f) {
  if (!f) return nullptr;
  return {{"what", f->what}, {"since_ms", f->since_ms}, {"retries", f->retries}};
}

nlohmann::json node_json(const NodeStatus& s) {
  nlohmann::json j;
  j["role"] = s.primary ? "primary" : "peer";
  j["log_id"] = s.log_id;
  j["node_id"] = s.node_id;
  j["listen"] = s.listen;
  j["announce"] = s.announce;
  j["log_size"] = s.log_size;
  // docs/operations.md "Compacting a log": entries below it were dropped here.
  j["first_entry"] = s.first_entry;
  j["head"] = s.head ? head_json(*s.head) : nlohmann::json(nullptr);
  j["best_size"] = s.best_size;
  j["applied_size"] = s.applied_size;
  j["lag"] = static_cast<int64_t>(s.best_size) - static_cast<int64_t>(s.applied_size);
  j["entries_stored"] = s.entries_stored;
  j["entries_served"] = s.entries_served;
  j["bytes_in"] = s.bytes_in;
  j["bytes_out"] = s.bytes_out;
  j["known_addresses"] = s.known_addresses;
  j["snapshot_requests_served"] = s.snapshot_requests_served;
  // docs/protocol.md "First servable entry": entries no connected peer serves.
  j["unserved_entries"] = s.unserved_entries
                              ? nlohmann::json{{"from", s.unserved_entries->first}, {"to", s.unserved_entries->second}}
                              : nlohmann::json(nullptr);
  auto peers = nlohmann::json::array();
  for (const auto& p : s.peers) {
    peers.push_back({{"session", p.session},
                     {"address", p.address},
                     {"remote", p.remote},
                     {"node_id", p.node_id},
                     {"outbound", p.outbound},
                     {"head_size", p.head_size},
                     {"first_entry", p.first},
                     {"lag", p.lag},
                     {"bytes_in", p.bytes_in},
                     {"bytes_out", p.bytes_out},
                     {"entries_received", p.entries_received},
                     {"connected_ms", p.connected_ms}});
  }
  j["peers"] = std::move(peers);
  auto bans = nlohmann::json::array();
  for (const auto& b : s.bans) {
    bans.push_back({{"key", b.key}, {"reason", b.reason}, {"remaining_ms", b.remaining_ms}});
  }
  j["bans"] = std::move(bans);
  if (s.evidence) {
    j["evidence"] = {{"kind", s.evidence->kind == Evidence::Kind::same_size ? "same_size" : "inconsistent"},
                     {"a", head_json(s.evidence->a)},
                     {"b", head_json(s.evidence->b)}};
  } else {
    j["evidence"] = nullptr;
  }
  j["evidence_store_fault"] = fault_json(s.evidence_store_fault);
  j["apply_error"] = s.apply_error ? nlohmann::json(*s.apply_error) : nlohmann::json(nullptr);
  j["local_fault"] = fault_json(s.local_fault);
  ProcessMemory mem = read_process_memory();
  j["memory"] = {{"rss_bytes", mem.rss_bytes},
                 {"sqlite_bytes", mem.sqlite_bytes},
                 {"heap_in_use_bytes", mem.heap_in_use_bytes},
                 {"open_fds", mem.open_fds}};
  return j;
}

Status node_ready(const NodeReadiness& s, const std::optional<Error>& diverged) {
  if (s.evidence && s.evidence_store_fault) {
    return make_error(Errc::diverged,
                      "the log equivocated; its evidence is NOT stored yet (since {} ms (Unix), "
                      "{} attempts, retrying): {}",
                      s.evidence_store_fault->since_ms, s.evidence_store_fault->retries,
                      s.evidence_store_fault->what);
  }
  if (s.evidence) return make_error(Errc::diverged, "the log equivocated (evidence stored)");
  if (diverged) return make_error(Errc::diverged, "diverged: {}", diverged->to_string());
  if (s.apply_error) return make_error(Errc::unavailable, "applying stopped: {}", *s.apply_error);
  if (s.local_fault) {
    return make_error(Errc::unavailable, "local fault since {} ms (Unix), {} retries: {}",
                      s.local_fault->since_ms, s.local_fault->retries, s.local_fault->what);
  }
  if (!s.head) return make_error(Errc::unavailable, "no verified head yet");
  return ok_status();
}

// The sizes of the database file and its -wal file (0 for a file that is not
// there). The -wal file grows while a long read transaction keeps checkpoints
// from passing it, and is cut back to 64 MiB once they can (docs/operations.md
// "Looking at a running node's database with SQLite").
void database_file_metrics(Metrics& m, const std::filesystem::path& db) {
  auto size_of = [](const std::filesystem::path& p) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(p, ec);
    return ec ? 0.0 : static_cast<double>(n);
  };
  m.gauge("swarmlite_database_bytes", "Size of the database file").set(size_of(db));
  m.gauge("swarmlite_wal_bytes", "Size of the database's -wal file")
      .set(size_of(db.string() + "-wal"));
}

void node_metrics(Metrics& m, const NodeStatus& s) {
  m.gauge("swarmlite_entries_applied", "Log entries applied to the database")
      .set(static_cast<double>(s.applied_size));
  m.gauge("swarmlite_log_size", "Log entries stored (verified)").set(static_cast<double>(s.log_size));
  m.gauge("swarmlite_best_head_size", "Size of the highest valid head seen")
      .set(static_cast<double>(s.best_size));
  m.gauge("swarmlite_lag_entries", "Entries behind the highest valid head seen")
      .set(static_cast<double>(s.best_size > s.applied_size ? s.best_size - s.applied_size : 0));
  m.gauge("swarmlite_peers", "Connected peer sessions").set(static_cast<double>(s.peers.size()));
  m.gauge("swarmlite_bans", "Banned peers").set(static_cast<double>(s.bans.size()));
  m.gauge("swarmlite_local_fault", "1 while storing, applying or committing fails on this node's own I/O")
      .set(s.local_fault ? 1.0 : 0.0);
  m.gauge("swarmlite_local_fault_retries", "Failed attempts in the current local fault")
      .set(s.local_fault ? static_cast<double>(s.local_fault->retries) : 0.0);
  m.gauge("swarmlite_evidence_store_fault", "1 while equivocation evidence could not be stored on disk")
      .set(s.evidence_store_fault ? 1.0 : 0.0);
  m.gauge("swarmlite_node_bytes_in", "Peer protocol bytes received since start")
      .set(static_cast<double>(s.bytes_in));
  m.gauge("swarmlite_node_bytes_out", "Peer protocol bytes sent since start")
      .set(static_cast<double>(s.bytes_out));
  // The process (docs/operations.md "Memory").
  ProcessMemory mem = read_process_memory();
  m.gauge("process_resident_memory_bytes", "Resident memory (VmRSS)").set(static_cast<double>(mem.rss_bytes));
  m.gauge("process_open_fds", "Open file descriptors").set(static_cast<double>(mem.open_fds));
  m.gauge("swarmlite_resident_anon_bytes", "Resident anonymous memory (RssAnon): heap and stacks")
      .set(static_cast<double>(mem.rss_anon_bytes));
  m.gauge("swarmlite_sqlite_memory_bytes", "Memory SQLite has allocated (page caches, schemas, statements)")
      .set(static_cast<double>(mem.sqlite_bytes));
  m.gauge("swarmlite_sqlite_memory_peak_bytes", "Most memory SQLite had allocated at once since start")
      .set(static_cast<double>(mem.sqlite_peak_bytes));
  m.gauge("swarmlite_heap_in_use_bytes", "C heap allocated (glibc mallinfo2 uordblks + hblkhd)")
      .set(static_cast<double>(mem.heap_in_use_bytes));
  m.gauge("swarmlite_heap_free_bytes", "C heap freed but kept by malloc (glibc mallinfo2 fordblks)")
      .set(static_cast<double>(mem.heap_free_bytes));
  // Per-peer series: peers come and go, the gauges of gone sessions stay at
  // their last value (sessions are few and bounded by max_connections).
  for (const auto& p : s.peers) {
    MetricLabels l{{"peer", p.address}};
    m.gauge("swarmlite_peer_bytes_in", "Bytes received from a peer in its session", l)
        .set(static_cast<double>(p.bytes_in));
    m.gauge("swarmlite_peer_bytes_out", "Bytes sent to a peer in its session", l)
        .set(static_cast<double>(p.bytes_out));
    m.gauge("swarmlite_peer_lag_entries", "A peer's head size minus ours", l)
        .set(static_cast<double>(p.lag));
  }
}

}  // namespace

void tamper_query_proof(QueryProof& proof) {
  if (proof.pages.empty() || proof.pages.back().bytes.empty()) return;
  auto& bytes = proof.pages.back().bytes;
  bytes[bytes.size() / 2] ^= 0x01;
}

// --- /db/request: classifying statements (docs/http-api.md "The unified endpoint") ---

namespace {

// Prepares (never steps) each statement on a guarded read connection over one
// snapshot of the node's state: prepared = read (the guard's authorizer let it
// through, and SQLite says it does not write); refused by the authorizer
// (SQLITE_AUTH) or prepared but not read-only = write, for the primary to run
// or refuse; any other prepare error (syntax, no such table) = invalid, with
// SQLite's message. One statement is prepared in SQLite's own implicit read
// (as guarded_query_on reads one): the same one snapshot, without the BEGIN,
// the applied-size read and the COMMIT (a prepare that finds no table checks
// the schema is current, and retries if not).
Result<std::vector<StatementClass>> classify_on(ReadPool::Lease& conn,
                                                const std::vector<Statement>& statements) {
  const bool one = statements.size() == 1;
  if (!one) {
    GuardedConnection::TrustedScope trusted(*conn);
    auto began = conn.txn().begin();
    if (!began.ok()) {
      conn.discard();
      return began.take_error();
    }
  }
  std::vector<StatementClass> out;
  out.reserve(statements.size());
  sqlite3* db = conn->handle();
  for (const auto& st : statements) {
    StatementClass c;
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(db, st.sql.data(), static_cast<int>(st.sql.size()), &stmt, &tail);
    if (rc == SQLITE_OK) {
      // An empty statement (comments only) is a read: the read path reports it.
      c.kind = stmt == nullptr || sqlite3_stmt_readonly(stmt) ? StatementKind::read : StatementKind::write;
    } else if (rc == SQLITE_AUTH) {
      c.kind = StatementKind::write;
    } else {
      c.kind = StatementKind::invalid;
      c.error = fmt::format("sqlite error {}: {}", rc, sqlite3_errmsg(db));
    }
    sqlite3_finalize(stmt);
    out.push_back(std::move(c));
  }
  if (one) return out;
  GuardedConnection::TrustedScope trusted(*conn);
  if (!conn.txn().end().ok()) conn.discard();
  return out;
}

Result<std::vector<StatementClass>> classify_statements(ReadPool& pool,
                                                        const std::vector<Statement>& statements) {
  SWL_ASSIGN(auto conn, pool.acquire());
  return classify_on(conn, statements);
}

// HttpBackend::classify_and_read on one pooled connection: classified, and
// when all are reads run there; with a budget (try_classify_and_read_inline)
// the reads are stopped over it (nullopt).
std::optional<Result<HttpBackend::Classified>> classify_and_read_on(
    ReadPool::Lease& conn, const std::vector<Statement>& statements, const InlineBudget* budget) {
  HttpBackend::Classified out;
  auto classes = classify_on(conn, statements);
  if (!classes.ok()) return classes.take_error();
  out.classes = std::move(classes).value();
  if (!all_reads(out.classes)) return out;
  std::optional<Result<std::vector<QueryOutcome>>> r =
      budget ? guarded_query_on_trial(conn, statements, 0, *budget)
             : guarded_query_on(conn, statements, 0);
  if (!r) return std::nullopt;  // stopped over the budget
  if (!r->ok()) return r->take_error();
  out.outcomes = std::move(*r).value();
  return out;
}

Result<HttpBackend::Classified> classify_and_read_pooled(ReadPool& pool,
                                                         const std::vector<Statement>& statements) {
  SWL_ASSIGN(auto conn, pool.acquire());
  return *classify_and_read_on(conn, statements, nullptr);  // no budget: always run
}

std::optional<Result<HttpBackend::Classified>> classify_and_read_inline(
    ReadPool& pool, const std::vector<Statement>& statements, const InlineBudget& budget) {
  auto conn = pool.acquire(/*open_if_none=*/false);
  if (!conn.ok()) return std::nullopt;
  return classify_and_read_on(*conn, statements, &budget);
}

}  // namespace

Result<std::vector<StatementClass>> PrimaryHttpBackend::classify(const std::vector<Statement>& statements) {
  return classify_statements(reads_, statements);
}

Result<HttpBackend::Classified> PrimaryHttpBackend::classify_and_read(
    const std::vector<Statement>& statements) {
  return classify_and_read_pooled(reads_, statements);
}

Result<HttpBackend::Classified> ReplicaHttpBackend::classify_and_read(
    const std::vector<Statement>& statements) {
  if (auto c = replica_.corruption())
    return make_error(Errc::unavailable, "not serving reads: {}", c->message);
  return classify_and_read_pooled(reads_, statements);
}

std::optional<Result<HttpBackend::Classified>> PrimaryHttpBackend::try_classify_and_read_inline(
    const std::vector<Statement>& statements, const InlineBudget& budget) {
  return classify_and_read_inline(reads_, statements, budget);
}

std::optional<Result<HttpBackend::Classified>> ReplicaHttpBackend::try_classify_and_read_inline(
    const std::vector<Statement>& statements, const InlineBudget& budget) {
  if (replica_.corruption()) return std::nullopt;  // classify() says why
  return classify_and_read_inline(reads_, statements, budget);
}

Result<std::vector<StatementClass>> ReplicaHttpBackend::classify(const std::vector<Statement>& statements) {
  if (auto c = replica_.corruption()) return make_error(Errc::unavailable, "not serving reads: {}", c->message);
  return classify_statements(reads_, statements);
}

uint64_t ReplicaHttpBackend::known_head_size() const { return node_.best_size(); }

// --- primary -------------------------------------------------------------------

// One /db/execute request's writes as Primary::Write items, and its outcomes
// from their results: execute() runs one request, the submit thread several
// in one Primary::execute_batch (their writes then share group commits).
struct PrimaryHttpBackend::Pending {
  const std::vector<Statement>* statements = nullptr;
  bool transaction = false;
  EntryFailure failure;  // the transaction's (transaction only)
  size_t first = 0;      // its writes' index in the batch
  size_t count = 0;

  // Appends its writes: the whole transaction as one, or each statement as its
  // own entry. `this` must stay put until the batch ran (Write::failure).
  void add_writes(std::vector<Primary::Write>& writes) {
    first = writes.size();
    if (transaction) {
      writes.push_back(Primary::Write{std::span<const Statement>(*statements), &failure});
    } else {
      for (const auto& st : *statements)
        writes.push_back(Primary::Write{std::span<const Statement>(&st, 1)});
    }
    count = writes.size() - first;
  }

  // What execute() answers, from this request's results (`secs`: the batch's
  // time per write); `wrote` is set when an entry was written.
  Result<std::vector<ExecOutcome>> outcomes(std::span<Result<ExecuteResult>> all, double secs,
                                            bool& wrote) {
    std::span<Result<ExecuteResult>> results = all.subspan(first, count);
    std::vector<ExecOutcome> out;
    auto to_outcome = [](const StatementResult& r) {
      ExecOutcome o;
      o.last_insert_id = r.last_insert_rowid;
      o.rows_affected = r.rows_changed;
      o.columns = r.columns;
      o.rows = r.rows;
      return o;
    };
    // Errors that are the request's (or the node's), not one statement's.
    auto fatal = [](const Error& e) {
      return e.code == Errc::unavailable || e.code == Errc::io_error;
    };
    if (transaction) {
      auto& r = results.front();
      if (!r.ok()) {
        if (fatal(r.error())) return r.take_error();
        // As rqlite: the statements before the failing one show what they
        // returned (rolled back with the rest), the failing one its error, and
        // nothing follows it (docs/http-api.md). An error that belongs to no
        // statement (a bound checked at commit) is the request's.
        if (!failure.statement || *failure.statement >= statements->size()) return r.take_error();
        out.resize(*failure.statement + 1);
        for (const auto& sr : failure.completed) {
          if (sr.statement_index < *failure.statement) out[sr.statement_index] = to_outcome(sr);
        }
        out.back().error = r.error().to_string();
        return out;
      }
      wrote = true;
      out.resize(statements->size());
      // Several results may come from one Statement (multi-statement SQL): the
      // last one of each statement_index wins, as sqlite3_changes() would say.
      for (const auto& sr : r->statements) {
        if (sr.statement_index < out.size()) out[sr.statement_index] = to_outcome(sr);
      }
      for (auto& o : out) o.seconds = secs / static_cast<double>(std::max<size_t>(1, out.size()));
      return out;
    }
    // Each statement is its own transaction and entry. As when they ran one by
    // one: the request fails as a whole only if nothing was written.
    const bool any_written =
        std::any_of(results.begin(), results.end(), [](const auto& r) { return r.ok(); });
    for (size_t i = 0; i < results.size(); ++i) {
      auto& r = results[i];
      ExecOutcome o;
      if (r.ok()) {
        wrote = true;
        if (!r->statements.empty()) o = to_outcome(r->statements.back());
      } else if (fatal(r.error()) && !any_written) {
        return r.take_error();
      } else {
        // The primary numbers statements within their transaction, here always
        // "statement 0": the answer names the statement's place in the request.
        Error e = r.error();
        constexpr std::string_view kFirst = "statement 0: ";
        if (i > 0 && e.message.starts_with(kFirst))
          e.message = fmt::format("statement {}: {}", i, e.message.substr(kFirst.size()));
        o.error = e.to_string();
      }
      o.seconds = secs;
      out.push_back(std::move(o));
    }
    return out;
  }
};

Result<std::vector<ExecOutcome>> PrimaryHttpBackend::execute(
    const std::vector<Statement>& statements, bool transaction) {
  std::shared_lock load_lock(load_mu_);
  Pending pending;
  pending.statements = &statements;
  pending.transaction = transaction;
  std::vector<Primary::Write> writes;
  pending.add_writes(writes);
  auto t0 = Clock::now();
  // Queued with other callers' writes they share one group commit (one log
  // fdatasync, primary.h).
  auto results = primary_.execute_batch(writes);
  const double secs = seconds_since(t0) / static_cast<double>(std::max<size_t>(1, results.size()));
  bool wrote = false;
  auto out = pending.outcomes(results, secs, wrote);
  if (wrote) announce_after_write();
  return out;
}

void PrimaryHttpBackend::submit_execute(std::vector<Statement> statements, bool transaction,
                                        ExecuteDone done) {
  std::unique_lock lock(submit_mu_);
  if (submit_stop_) {
    lock.unlock();
    done(make_error(Errc::unavailable, "the primary's HTTP backend is stopping: no more writes"));
    return;
  }
  if (!submit_thread_.joinable()) submit_thread_ = std::thread([this] { run_submitted(); });
  submitted_.push_back(Submitted{std::move(statements), transaction, std::move(done)});
  if (submit_idle_) submit_cv_.notify_one();
}

// The submit thread: takes every queued request (up to kMaxSubmittedWrites
// writes) and runs their writes in one Primary::execute_batch, so they share
// group commits without a thread blocked per request, then answers each
// (docs/performance.md "Submitted HTTP writes").
void PrimaryHttpBackend::run_submitted() {
  constexpr size_t kMaxSubmittedWrites = 256;
  std::unique_lock lock(submit_mu_);
  for (;;) {
    submit_idle_ = true;
    submit_cv_.wait(lock, [&] { return submit_stop_ || !submitted_.empty(); });
    submit_idle_ = false;
    if (submitted_.empty()) return;  // stopping, nothing left
    std::vector<Submitted> batch;
    size_t writes_taken = 0;
    while (!submitted_.empty() && (batch.empty() || writes_taken < kMaxSubmittedWrites)) {
      const auto& front = submitted_.front();
      writes_taken += front.transaction ? 1 : front.statements.size();
      batch.push_back(std::move(submitted_.front()));
      submitted_.pop_front();
    }
    lock.unlock();
    std::vector<Result<std::vector<ExecOutcome>>> answers;
    answers.reserve(batch.size());
    try {
      std::shared_lock load_lock(load_mu_);
      std::vector<Pending> pending(batch.size());
      std::vector<Primary::Write> writes;
      for (size_t i = 0; i < batch.size(); ++i) {
        pending[i].statements = &batch[i].statements;
        pending[i].transaction = batch[i].transaction;
        pending[i].add_writes(writes);
      }
      auto t0 = Clock::now();
      auto results =
          writes.empty() ? std::vector<Result<ExecuteResult>>{} : primary_.execute_batch(writes);
      const double secs =
          seconds_since(t0) / static_cast<double>(std::max<size_t>(1, results.size()));
      bool wrote = false;
      for (auto& p : pending) answers.push_back(p.outcomes(results, secs, wrote));
      if (wrote) announce_after_write();
    } catch (const std::exception& e) {
      answers.clear();
      for (size_t i = 0; i < batch.size(); ++i)
        answers.push_back(make_error(Errc::internal, "backend threw: {}", e.what()));
    }
    submitted_batches_.fetch_add(1);
    submitted_requests_.fetch_add(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(answers[i]));
    lock.lock();
  }
}

std::optional<Result<std::vector<QueryOutcome>>> PrimaryHttpBackend::try_query_inline(
    const std::vector<Statement>& statements, const QueryOptions& options,
    const InlineBudget& budget) {
  return guarded_query_inline(reads_, statements, options, budget);
}

Result<std::vector<QueryOutcome>> PrimaryHttpBackend::query(const std::vector<Statement>& statements,
                                                            const QueryOptions& options) {
  if (!options.proof) {
    return guarded_query(reads_, statements, options.min_size);
  }
  auto before = primary_.head();
  auto out = proved_query(statements, options.min_size, false, [&](const Statement& st) {
    return primary_.prove(st.sql, st.params);
  });
  auto after = primary_.head();
  if (after && (!before || before->size != after->size)) node_.notify_new_head();
  return out;
}

// The node's status plus the Primary's own local fault (a failed commit).
NodeStatus PrimaryHttpBackend::node_status() const {
  NodeStatus s = node_.status();
  if (!s.local_fault) s.local_fault = primary_.local_fault();
  return s;
}

nlohmann::json PrimaryHttpBackend::status() const {
  auto j = node_json(node_status());
  j["size"] = primary_.size();
  j["state_root"] = to_hex(primary_.state_root());
  j["page_count"] = primary_.page_count();
  j["diverged"] = nullptr;
  auto c = primary_.corruption();
  j["corruption"] = c ? nlohmann::json(c->message) : nlohmann::json(nullptr);
  return j;
}

Status PrimaryHttpBackend::ready() const {
  // A probe also retries a pending re-apply whose backoff has passed, so an
  // idle primary recovers from a local fault without waiting for a write.
  if (primary_.local_fault() && primary_.retry_local_fault().ok() && !primary_.local_fault()) {
    node_.notify_new_head();
  }
  if (auto c = primary_.corruption()) return make_error(Errc::unavailable, "corrupted: {}", c->message);
  NodeReadiness r = node_.readiness();
  if (!r.local_fault) r.local_fault = primary_.local_fault();
  return node_ready(r, std::nullopt);
}

void PrimaryHttpBackend::update_metrics(Metrics& metrics) {
  node_metrics(metrics, node_status());
  database_file_metrics(metrics, primary_.db_path());
  const SubmitStats st = submit_stats();
  metrics
      .gauge("swarmlite_http_write_requests_batched",
             "/db/execute requests run by the submit thread since start")
      .set(static_cast<double>(st.requests));
  metrics
      .gauge("swarmlite_http_write_batches",
             "Batches (one Primary::execute_batch each) those requests took since start")
      .set(static_cast<double>(st.batches));
  metrics
      .gauge("swarmlite_wal_writebacks",
             "Background writebacks of the database's -wal file started between checkpoints "
             "since start")
      .set(static_cast<double>(primary_.wal_writebacks()));
}

// --- replica -------------------------------------------------------------------

std::optional<Result<std::vector<QueryOutcome>>> ReplicaHttpBackend::try_query_inline(
    const std::vector<Statement>& statements, const QueryOptions& options,
    const InlineBudget& budget) {
  if (replica_.corruption()) return std::nullopt;  // query() says why
  return guarded_query_inline(reads_, statements, options, budget);
}

Result<std::vector<QueryOutcome>> ReplicaHttpBackend::query(const std::vector<Statement>& statements,
                                                            const QueryOptions& options) {
  // A corrupted file serves nothing, plain or proved (Replica::corruption).
  if (auto c = replica_.corruption()) return make_error(Errc::unavailable, "not serving reads: {}", c->message);
  if (!options.proof) {
    return guarded_query(reads_, statements, options.min_size);
  }
  return proved_query(statements, options.min_size, options_.tamper_proofs,
                      [&](const Statement& st) {
                        ProveOptions po;
                        po.min_size = options.min_size;
                        return replica_.prove(st.sql, st.params, po);
                      });
}

nlohmann::json ReplicaHttpBackend::status() const {
  auto j = node_json(node_.status());
  j["size"] = replica_.size();
  j["state_root"] = to_hex(replica_.state_root());
  j["page_count"] = replica_.page_count();
  auto d = replica_.diverged();
  j["diverged"] = d ? nlohmann::json(d->to_string()) : nlohmann::json(nullptr);
  auto c = replica_.corruption();
  j["corruption"] = c ? nlohmann::json(c->message) : nlohmann::json(nullptr);
  if (options_.tamper_proofs) j["tamper_proofs"] = true;
  return j;
}

Status ReplicaHttpBackend::ready() const {
  if (auto c = replica_.corruption()) return make_error(Errc::unavailable, "corrupted: {}", c->message);
  return node_ready(node_.readiness(), replica_.diverged());
}

void ReplicaHttpBackend::update_metrics(Metrics& metrics) {
  node_metrics(metrics, node_.status());
  database_file_metrics(metrics, replica_.db_path());
  // Batched replay and decode once (docs/performance.md "Batched replay",
  // "Decode once"): totals since start.
  const ReplayStats r = replica_.replay_stats();
  auto total = [&](const char* name, const char* help, uint64_t v) {
    metrics.gauge(name, help).set(static_cast<double>(v));
  };
  total("swarmlite_replay_batches", "Replay batches committed since start", r.batches);
  total("swarmlite_replay_batched_entries", "Entries applied in replay batches since start",
        r.batched_entries);
  total("swarmlite_replay_single_entries",
        "Entries applied one SQLite transaction each since start (fallbacks included)",
        r.single_entries);
  total("swarmlite_replay_fallbacks",
        "Replay batches rolled back and replayed entry by entry since start", r.fallbacks);
  const Replica::WalRestartStats w = replica_.wal_restart_stats();
  total("swarmlite_wal_restarts_blocked",
        "RESTART checkpoints a reader of the -wal file outlasted since start (each waited 250 ms)",
        w.busy);
  total("swarmlite_wal_writebacks",
        "Background writebacks of the database's -wal file the applier started since start",
        replica_.wal_writebacks());
  total("swarmlite_replay_handed_entries",
        "Entries replayed from the copies decoded when they were stored, not read back from "
        "the log, since start",
        r.handed_entries);
  metrics.gauge("swarmlite_decoded_entries_bytes",
                "Heap held by entries decoded at store time and not replayed yet")
      .set(static_cast<double>(replica_.log().decoded_bytes()));
}

// --- backups (GET /db/backup, sqlbridge/tools/backup.h) -------------------------

namespace {

BackupSource primary_backup_source(Primary& primary, Node& node) {
  BackupSource source;
  source.head = [&primary] { return primary.head(); };
  source.open_snapshot = [&primary] { return primary.open_snapshot(); };
  source.sign_head = [&primary, &node]() -> Status {  // group signing left the newest state unsigned
    auto signed_head = primary.sign_head();
    if (!signed_head.ok()) return signed_head.take_error();
    node.notify_new_head();
    return ok_status();
  };
  return source;
}

BackupSource replica_backup_source(Replica& replica) {
  BackupSource source;
  source.head = [&replica]() -> std::optional<Head> { return replica.log().view().head; };
  source.open_snapshot = [&replica] { return replica.open_snapshot(); };
  return source;
}

// The replica's pinned head for snapshots served from the pin, no copy first
// (sqlbridge/tools/snapshot_source.h): Replica::pinned_pages names the pinned
// head (and pins an idle replica's newest), pinned_page_source gives its pages;
// a re-pin between the two shows as another state root and is refused here
// (the next request pins again), so the head always names the pages' state.
// The pin may lag the newest head the replica applied: an idle replica re-pins
// on request only once its pin is pin_interval (200 ms by default) old, a busy
// one by itself within it. A snapshot at the lagging pin would verify but make
// its fetcher replay the rest (restore_itest expects the newest head), so a
// lagging pin is asked for once more after that interval.
// The same for the primary (Primary::pinned_pages pins its newest signed head
// the same way; with group signing the newest head may lag the log).
template <class Owner>
PinnedHeadProvider pinned_head(Owner& owner, std::function<uint64_t()> newest, std::string_view what) {
  return [&owner, newest = std::move(newest), what]() -> Result<PinnedHead> {
    const uint32_t first = 1;
    SWL_ASSIGN(PageSet reply, owner.pinned_pages(0, std::span(&first, 1)));
    if (reply.head.size < newest()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      SWL_ASSIGN(reply, owner.pinned_pages(0, std::span(&first, 1)));
    }
    PinnedHead pin{reply.head, owner.pinned_page_source(), owner.db_path()};
    pin.wal_path += "-wal";
    if (!pin.pages || pin.pages->tree().root() != pin.head.state_root)
      return make_error(Errc::unavailable, "{} {}: re-pinned while the pin at size {} was taken", what,
                        owner.db_path().string(), pin.head.size);
    return pin;
  };
}

PinnedHeadProvider replica_pinned_head(Replica& replica) {
  return pinned_head(replica, [&replica]() -> uint64_t {  // the newest signed head applied (0: none)
    const uint64_t applied = replica.size();
    const auto head = replica.log().view().head;  // not log_mutex() (core/log.h)
    return head && applied >= head->size ? head->size : 0;
  }, "replica");
}

PinnedHeadProvider primary_pinned_head(Primary& primary) {
  return pinned_head(primary, [&primary]() -> uint64_t {  // the newest signed head (0: none)
    const auto head = primary.head();
    return head ? head->size : 0;
  }, "primary");
}

SnapshotSourceOptions in_dir(SnapshotSourceOptions o, const std::filesystem::path& db_path) {
  if (o.temp_dir.empty()) o.temp_dir = db_path.parent_path();
  return o;
}

}  // namespace

PrimaryHttpBackend::PrimaryHttpBackend(Primary& primary, Node& node,
                                       SnapshotSourceOptions snapshot_options)
    : primary_(primary),
      node_(node),
      reads_(primary.db_path(), 4, [&primary] { return primary.stats_epoch(); }),
      snapshots_(std::make_unique<SnapshotSource>(
          primary_backup_source(primary, node),
          in_dir(std::move(snapshot_options), primary.db_path()), primary_pinned_head(primary))) {
  primary_.set_head_listener([this](const Head& head) {
    raise_announced_head(announced_head_, head.size);
    node_.notify_new_head();  // always: the head just stored
  });
}

bool raise_announced_head(std::atomic<uint64_t>& announced, uint64_t head_size) {
  uint64_t seen = announced.load();
  while (seen < head_size) {
    if (announced.compare_exchange_weak(seen, head_size)) return true;
  }
  return false;
}

void PrimaryHttpBackend::announce_after_write() {
  // The write's own head (group signing), or one stored meanwhile that no one
  // announced yet: push it to the peers now. Otherwise the entries wait for
  // the next head, which the signer's listener announces; a post to the
  // node's io thread would only find no new head there (SyncEngine::
  // relay_head) after waking it (docs/performance.md "Where a single HTTP
  // writer's time goes").
  const auto head = primary_.head();
  if (raise_announced_head(announced_head_, head ? head->size : 0)) {
    node_.notify_new_head();
  } else {
    node_.notify_new_entries();
  }
}

PrimaryHttpBackend::~PrimaryHttpBackend() {
  {
    std::lock_guard lock(submit_mu_);
    submit_stop_ = true;  // what is queued still runs
  }
  submit_cv_.notify_one();
  if (submit_thread_.joinable()) submit_thread_.join();
  primary_.set_head_listener({});
}

ReplicaHttpBackend::ReplicaHttpBackend(Replica& replica, Node& node, ReplicaHttpOptions options,
                                       SnapshotSourceOptions snapshot_options)
    : replica_(replica),
      node_(node),
      options_(options),
      reads_(replica.db_path(), 4, [&replica] { return replica.stats_epoch(); }) {
  // A corrupt or diverged replica serves no snapshot (its copies would not
  // match a signed head anyway: make_backup checks), as it serves no backup.
  BackupSource source = replica_backup_source(replica);
  auto open = std::move(source.open_snapshot);
  source.open_snapshot = [this, open = std::move(open)]() -> Result<ReadSnapshot> {
    SWL_TRY(serving());
    return open();
  };
  PinnedHeadProvider pinned = [this, pin = replica_pinned_head(replica)]() -> Result<PinnedHead> {
    SWL_TRY(serving());
    return pin();
  };
  snapshots_ = std::make_unique<SnapshotSource>(std::move(source), in_dir(std::move(snapshot_options), replica.db_path()),
                                                std::move(pinned));
}

Status ReplicaHttpBackend::serving() const {
  if (auto c = replica_.corruption()) return make_error(Errc::unavailable, "not serving backups or snapshots: {}", c->message);
  if (auto d = replica_.diverged()) return make_error(Errc::unavailable, "not serving backups or snapshots: {}", d->message);
  // A pinned page that did not match its tree (latched by the SnapshotSource).
  if (snapshots_) {
    if (auto c = snapshots_->corruption()) return make_error(Errc::unavailable, "not serving backups: {}", c->message);
  }
  return ok_status();
}

Result<BackupFile> PrimaryHttpBackend::backup(BackupFormat format, std::chrono::steady_clock::time_point deadline,
                                              const std::atomic<bool>* cancel) {
  return make_backup(primary_backup_source(primary_, node_), {format, primary_.db_path().parent_path(), deadline, cancel});
}

Result<BackupFile> ReplicaHttpBackend::backup(BackupFormat format, std::chrono::steady_clock::time_point deadline,
                                              const std::atomic<bool>* cancel) {
  SWL_TRY(serving());
  return make_backup(replica_backup_source(replica_), {format, replica_.db_path().parent_path(), deadline, cancel});
}

// --- loads (POST /db/load, docs/http-api.md "Loading a database") -----------------

namespace {

// The spooled upload, mapped read-only: a dump of any size is split and run
// without a copy of it on the heap (the pages are the page cache's).
class MappedFile {
 public:
  static Result<MappedFile> open(const std::filesystem::path& path, uint64_t bytes) {
    MappedFile m;
    if (bytes == 0) return m;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return make_error(Errc::io_error, "opening the upload {}: {}", path.string(), std::strerror(errno));
    void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) return make_error(Errc::io_error, "mapping the upload {}: {}", path.string(), std::strerror(errno));
    m.data_ = static_cast<const char*>(p);
    m.size_ = bytes;
    return m;
  }
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&&) = delete;
  ~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  std::string_view text() const { return {data_ ? data_ : "", size_}; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

nlohmann::json check_json(const ImportCheck& check) {
  nlohmann::json tables = nlohmann::json::array();
  for (const TableCount& t : check.tables) {
    tables.push_back({{"table", t.table}, {"source_rows", t.source_rows}, {"loaded_rows", t.imported_rows}});
  }
  return {{"integrity_check", check.integrity},
          {"foreign_key_violations", check.foreign_key_violations},
          {"tables", std::move(tables)},
          {"problems", check.problems}};
}

}  // namespace

Result<nlohmann::json> PrimaryHttpBackend::load(const LoadRequest& request) {
  std::unique_lock load_lock(load_mu_);
  // Between entries: stop once the server stops or the load's time is up.
  auto keep_going = [&request]() -> Status {
    if (request.cancel && request.cancel->load()) {
      return make_error(Errc::unavailable, "the server is stopping");
    }
    if (Clock::now() > request.deadline) return make_error(Errc::unavailable, "the load ran out of its time limit");
    return ok_status();
  };
  // The load's entries are bounded by the load's own time limit instead of the
  // per-write one (an index over the loaded rows may take longer than a write
  // may), and by no page cap (its row entries are bounded by size already);
  // the value-size cap stays (docs/http-api.md "Loading a database").
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(request.deadline - Clock::now());
  const WriteBounds bounds{std::max(left, std::chrono::milliseconds(1)), 0};
  const uint64_t size_before = primary_.size();
  auto partial = [&](Error e) {
    const uint64_t written = primary_.size() - size_before;
    if (written > 0) {
      node_.notify_new_head();
      e.message += fmt::format(" ({} entries of the load were written before it and stay in the log)", written);
    } else {
      e.message += " (nothing was written)";
    }
    return e;
  };
  nlohmann::json out;
  if (request.format == LoadFormat::sqlite) {
    if (size_before != 1) {
      return make_error(Errc::refused,
                        "a SQLite file is loaded only into an empty primary (genesis alone in its log); this one "
                        "has {} entries. rqlite replaces its database; a swarmlite log is append-only and every "
                        "peer replays it, so add data to a running database as a SQL dump (text/plain) instead",
                        size_before);
    }
    ImportOptions options;
    options.before_entry = keep_going;
    options.bounds = bounds;
    auto stats = import_database(request.file, primary_, options);
    if (!stats.ok()) return partial(stats.take_error());
    node_.notify_new_head();
    auto check = check_import(request.file, primary_.db_path());
    if (!check.ok()) return partial(check.take_error());
    if (!check->ok()) {
      return make_error(Errc::internal, "the load finished but its check failed: {} ({} entries written)",
                        fmt::join(check->problems, "; "), primary_.size() - size_before);
    }
    out = {{"format", "sqlite"},
           {"tables", stats->tables},
           {"rows", stats->rows},
           {"indexes", stats->indexes},
           {"views", stats->views},
           {"triggers", stats->triggers},
           {"stat1_rows", stats->stat1_rows},
           {"check", check_json(*check)}};
  } else {
    SWL_ASSIGN(MappedFile text, MappedFile::open(request.file, request.bytes));
    if (text.text().empty()) return make_error(Errc::invalid_argument, "the SQL dump is empty");
    ScriptOptions options;
    options.before_entry = keep_going;
    options.bounds = bounds;
    auto stats = run_sql_script(primary_, text.text(), options);
    if (!stats.ok()) return partial(stats.take_error());
    if (primary_.size() != size_before) node_.notify_new_head();
    out = {{"format", "sql"},
           {"statements", stats->statements},
           {"skipped", stats->skipped},
           {"transactions", stats->transactions}};
  }
  out["entries"] = primary_.size() - size_before;
  out["size"] = primary_.size();
  out["bytes"] = request.bytes;
  return out;
}

}  // namespace swarmlite::net
