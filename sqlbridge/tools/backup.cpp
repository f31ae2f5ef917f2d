#include "sqlbridge/tools/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "sqlbridge/engine/genesis.h"
#include "sqlbridge/engine/state_tree.h"
#include "sqlbridge/sqlite_util.h"

namespace swarmlite {
namespace {

using Clock = std::chrono::steady_clock;

// A temporary file removed on destruction unless released.
struct TempFile {
  std::filesystem::path path;
  ~TempFile() {
    if (!path.empty()) {
      std::error_code ignored;
      std::filesystem::remove(path, ignored);
      std::filesystem::remove(path.string() + "-journal", ignored);
    }
  }
};

Result<std::filesystem::path> make_temp_path(const std::filesystem::path& dir) {
  std::string templ = ((dir.empty() ? std::filesystem::temp_directory_path() : dir) /
                       ".swarmlite-backup-XXXXXX").string();
  int fd = ::mkstemp(templ.data());
  if (fd < 0)
    return make_error(Errc::io_error, "backup: cannot create a temporary file in {}: {}", dir.string(),
                      std::strerror(errno));
  ::close(fd);
  return std::filesystem::path(templ);
}

// The snapshot of the source at exactly the size of a signed head.
struct HeadSnapshot {
  ReadSnapshot snap;
  Head head;
};

// Whether to stop now: past the deadline or cancelled.
struct Bound {
  Clock::time_point deadline;
  const std::atomic<bool>* cancel = nullptr;
  bool over() const { return Clock::now() > deadline || (cancel && cancel->load()); }
};

Status past_deadline(const Bound& bound, std::string_view what) {
  if (bound.over())
    return make_error(Errc::unavailable, "backup: {} while {}",
                      bound.cancel && bound.cancel->load() ? "stopped (the server is stopping)" : "time bound reached",
                      what);
  return ok_status();
}

Result<HeadSnapshot> snapshot_at_signed_head(const BackupSource& source, const Bound& bound) {
  auto backoff = std::chrono::milliseconds(2);
  std::string last = "no signed head yet";
  for (;;) {
    std::optional<Head> before = source.head();
    auto snap = source.open_snapshot();
    if (snap.ok()) {
      std::optional<Head> after = source.head();
      for (const std::optional<Head>* h : {&before, &after}) {
        if (!*h || (*h)->size == 0 || (*h)->size != snap->state.size) continue;
        const Head& head = **h;
        if (head.state_root != snap->state.state_root || head.page_count != snap->state.page_count)
          return make_error(Errc::internal,
                            "backup: signed head at size {} has state root {} / {} pages but the "
                            "snapshot at that size has {} / {}",
                            head.size, to_hex(head.state_root), head.page_count,
                            to_hex(snap->state.state_root), snap->state.page_count);
        return HeadSnapshot{std::move(*snap), head};
      }
      last = fmt::format("snapshot at size {}, newest signed head at size {}", snap->state.size,
                         after ? after->size : 0);
      if (source.sign_head && (!after || after->size < snap->state.size) && snap->state.size > 0) {
        ReadSnapshot drop = std::move(*snap);  // never hold a read transaction while signing
        (void)drop;
        auto signed_now = source.sign_head();
        if (!signed_now.ok()) last = "signing a head: " + signed_now.error().to_string();
      }
    } else if (snap.error().code == Errc::unavailable) {
      last = snap.error().message;
    } else {
      return snap.take_error();
    }
    if (Clock::now() + backoff > bound.deadline || bound.over())
      return make_error(Errc::unavailable, "backup: no snapshot at a signed head before the deadline ({})",
                        last);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(100));
  }
}

// The database copy (see backup.h): sqlite3_backup from the snapshot's read
// transaction, then page 1's schema cookie restored and the WAL flag cleared.
Status copy_database(const HeadSnapshot& hs, const std::filesystem::path& out, const Bound& bound) {
  sqlite3* src = hs.snap.db.get();
  uint32_t schema_cookie = 0;
  {
    SWL_ASSIGN(SqliteStmt st, prepare(src, "PRAGMA schema_version"));
    if (sqlite3_step(st.get()) != SQLITE_ROW) return sqlite_error(src, "backup: reading the schema cookie");
    schema_cookie = static_cast<uint32_t>(sqlite3_column_int64(st.get(), 0));
  }
  {
    SWL_ASSIGN(SqliteDb dst, open_sqlite(out.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX));
    SWL_TRY(exec_sql(dst.get(), "PRAGMA journal_mode=OFF"));
    sqlite3_backup* b = sqlite3_backup_init(dst.get(), "main", src, "main");
    if (!b) return sqlite_error(dst.get(), "backup: sqlite3_backup_init");
    int rc = SQLITE_OK;
    while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      if (bound.over()) {
        sqlite3_backup_finish(b);
        return past_deadline(bound, "copying pages");
      }
      rc = sqlite3_backup_step(b, 1024);
    }
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || frc != SQLITE_OK) return sqlite_error(dst.get(), "backup: copying pages");
  }
  // Page 1 header: bytes 18–19 (1 = rollback journal, normalised by the state
  // tree) and 40–43 (schema cookie, not normalised) — docs/formats/state-tree.md.
  SWL_ASSIGN(file_io::Fd fd, file_io::open(out, O_RDWR));
  const uint8_t versions[2] = {1, 1};
  SWL_TRY(file_io::pwrite_all(fd.get(), ByteView(versions, 2), 18, out));
  const uint8_t cookie[4] = {static_cast<uint8_t>(schema_cookie >> 24), static_cast<uint8_t>(schema_cookie >> 16),
                             static_cast<uint8_t>(schema_cookie >> 8), static_cast<uint8_t>(schema_cookie)};
  SWL_TRY(file_io::pwrite_all(fd.get(), ByteView(cookie, 4), 40, out));
  return fd.close(out);
}

// --- SQL dump ---------------------------------------------------------------

class DumpWriter {
 public:
  DumpWriter(int fd, const std::filesystem::path& name) : fd_(fd), name_(name) {}
  Status put(std::string_view s) {
    buf_.append(s);
    if (buf_.size() >= (256u << 10)) return flush();
    return ok_status();
  }
  Status flush() {
    if (buf_.empty()) return ok_status();
    SWL_TRY(file_io::write_all(fd_, ByteView(reinterpret_cast<const uint8_t*>(buf_.data()), buf_.size()), name_));
    buf_.clear();
    return ok_status();
  }

 private:
  int fd_;
  std::filesystem::path name_;
  std::string buf_;
};

void append_literal(std::string& out, sqlite3_stmt* st, int col) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  switch (sqlite3_column_type(st, col)) {
    case SQLITE_NULL:
      out += "NULL";
      return;
    case SQLITE_INTEGER:
      out += std::to_string(sqlite3_column_int64(st, col));
      return;
    case SQLITE_FLOAT: {
      double d = sqlite3_column_double(st, col);
      if (std::isnan(d)) {
        out += "NULL";
      } else if (std::isinf(d)) {
        out += d > 0 ? "1e999" : "-1e999";
      } else {
        std::string s = fmt::format("{}", d);  // shortest text that reads back as the same double
        if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
        out += s;
      }
      return;
    }
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
      std::string_view text(or_empty(p), static_cast<size_t>(sqlite3_column_bytes(st, col)));
      if (text.find('\0') != std::string_view::npos) {  // not expressible as a literal
        out += "CAST(X'";
        for (unsigned char c : text) {
          out += kHex[c >> 4];
          out += kHex[c & 15];
        }
        out += "' AS TEXT)";
        return;
      }
      out += '\'';
      for (char c : text) {
        if (c == '\'') out += '\'';
        out += c;
      }
      out += '\'';
      return;
    }
    default: {
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, col));
      int n = sqlite3_column_bytes(st, col);
      out += "X'";
      for (int i = 0; i < n; ++i) {
        out += kHex[p[i] >> 4];
        out += kHex[p[i] & 15];
      }
      out += '\'';
      return;
    }
  }
}

// INSERTs for every row of `table` (its ordinary columns only: generated and
// hidden columns are left to SQLite).
Status dump_rows(sqlite3* db, const std::string& table, DumpWriter& w, const Bound& bound) {
  std::vector<std::string> cols;
  {
    SWL_ASSIGN(SqliteStmt st, prepare(db, "SELECT name, hidden FROM pragma_table_xinfo(?1)"));
    sqlite3_bind_text(st.get(), 1, table.data(), static_cast<int>(table.size()), SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
      if (sqlite3_column_int(st.get(), 1) != 0) continue;
      cols.push_back(quote_ident(or_empty(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0)))));
    }
    if (rc != SQLITE_DONE) return sqlite_error(db, fmt::format("dump: columns of {}", table));
  }
  if (cols.empty()) return ok_status();
  std::string list;
  for (size_t i = 0; i < cols.size(); ++i) list += (i ? "," : "") + cols[i];
  const std::string qt = quote_ident(table);
  SWL_ASSIGN(SqliteStmt st, prepare(db, fmt::format("SELECT {} FROM {}", list, qt)));
  const std::string prefix = fmt::format("INSERT INTO {}({}) VALUES(", qt, list);
  std::string line;
  uint64_t n = 0;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    if ((++n & 1023) == 0) SWL_TRY(past_deadline(bound, "dumping rows"));
    line = prefix;
    for (int c = 0; c < static_cast<int>(cols.size()); ++c) {
      if (c) line += ',';
      append_literal(line, st.get(), c);
    }
    line += ");\n";
    SWL_TRY(w.put(line));
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, fmt::format("dump: rows of {}", table));
  return ok_status();
}

}  // namespace

Status write_sql_dump(sqlite3* db, int fd, const std::filesystem::path& fd_name, Clock::time_point deadline,
                      const std::atomic<bool>* cancel) {
  const Bound bound{deadline, cancel};
  DumpWriter w(fd, fd_name);
  // Which tables are shadow tables of a virtual table (their rows come back
  // through the virtual table's own INSERTs).
  std::vector<std::string> shadow;
  {
    SWL_ASSIGN(SqliteStmt st, prepare(db, "SELECT name FROM pragma_table_list WHERE schema='main' AND type='shadow'"));
    while (sqlite3_step(st.get()) == SQLITE_ROW)
      shadow.emplace_back(or_empty(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0))));
  }
  struct Obj {
    std::string type, name, sql;
  };
  std::vector<Obj> objs;
  {
    SWL_ASSIGN(SqliteStmt st, prepare(db, "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid"));
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW)
      objs.push_back({or_empty(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0))),
                      or_empty(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 1))),
                      or_empty(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 2)))});
    if (rc != SQLITE_DONE) return sqlite_error(db, "dump: reading the schema");
  }
  SWL_TRY(w.put("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n"));
  bool has_sequence = false, has_stat1 = false;
  for (const Obj& o : objs) {
    if (o.type != "table") continue;
    const std::string lname = lower_ascii(o.name);
    if (lname == kMetaTable) continue;  // swarmlite's own bookkeeping (docs/determinism.md "Genesis")
    if (lname == "sqlite_sequence") { has_sequence = true; continue; }
    if (lname == "sqlite_stat1") { has_stat1 = true; continue; }
    if (lname.rfind("sqlite_", 0) == 0) continue;
    if (std::find(shadow.begin(), shadow.end(), o.name) != shadow.end()) continue;
    SWL_TRY(w.put(o.sql + ";\n"));
    SWL_TRY(dump_rows(db, o.name, w, bound));
  }
  if (has_stat1) {
    SWL_TRY(w.put("ANALYZE sqlite_schema;\nDELETE FROM sqlite_stat1;\n"));
    SWL_TRY(dump_rows(db, "sqlite_stat1", w, bound));
  }
  if (has_sequence) {
    SWL_TRY(w.put("DELETE FROM sqlite_sequence;\n"));
    SWL_TRY(dump_rows(db, "sqlite_sequence", w, bound));
  }
  for (const Obj& o : objs) {
    if (o.type == "table") continue;
    if (lower_ascii(o.name).rfind("sqlite_", 0) == 0) continue;
    SWL_TRY(w.put(o.sql + ";\n"));
  }
  SWL_TRY(w.put("COMMIT;\n"));
  return w.flush();
}

Result<BackupFile> make_backup(const BackupSource& source, const BackupOptions& options) {
  const Bound bound{options.deadline, options.cancel};
  SWL_ASSIGN(HeadSnapshot hs, snapshot_at_signed_head(source, bound));
  TempFile tmp;
  SWL_ASSIGN(tmp.path, make_temp_path(options.temp_dir));
  if (options.format == BackupFormat::sqlite) {
    SWL_TRY(copy_database(hs, tmp.path, bound));
    hs.snap.db.reset();  // release the read transaction before hashing
    SWL_TRY(past_deadline(bound, "checking the copy"));
    SWL_ASSIGN(StateTree tree, StateTree::from_file(tmp.path));
    if (tree.root() != hs.head.state_root || tree.page_count() != hs.head.page_count)
      return make_error(Errc::internal,
                        "backup: the copy's state root {} ({} pages) differs from the signed head's {} "
                        "({} pages) at size {}",
                        to_hex(tree.root()), tree.page_count(), to_hex(hs.head.state_root),
                        hs.head.page_count, hs.head.size);
  } else {
    SWL_ASSIGN(file_io::Fd out, file_io::open(tmp.path, O_WRONLY | O_TRUNC));
    SWL_TRY(write_sql_dump(hs.snap.db.get(), out.get(), tmp.path, options.deadline, options.cancel));
    SWL_TRY(out.close(tmp.path));
    hs.snap.db.reset();
  }
  SWL_ASSIGN(file_io::Fd fd, file_io::open(tmp.path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return make_error(Errc::io_error, "backup: stat {}: {}", tmp.path.string(), std::strerror(errno));
  // tmp's destructor unlinks the file; the open descriptor keeps its bytes.
  return BackupFile{std::move(fd), static_cast<uint64_t>(st.st_size), hs.head};
}

Result<BackupCheck> verify_backup_file(const std::filesystem::path& db_path, const Head& head,
                                       const PublicKey& log_id) {
  if (auto s = head.verify(log_id); !s.ok())
    return make_error(Errc::bad_signature, "the backup's head (size {}) is not signed by this public key: {}",
                      head.size, s.error().message);
  std::error_code ec;
  const uint64_t bytes = std::filesystem::file_size(db_path, ec);
  if (ec) return make_error(Errc::io_error, "{}: {}", db_path.string(), ec.message());
  SWL_ASSIGN(StateTree tree, StateTree::from_file(db_path));
  if (tree.root() != head.state_root || tree.page_count() != head.page_count)
    return make_error(Errc::root_mismatch,
                      "{}: state root {} over {} pages, but the signed head at size {} says {} over {} pages "
                      "(the file is not the state the head signs)",
                      db_path.string(), to_hex(tree.root()), tree.page_count(), head.size,
                      to_hex(head.state_root), head.page_count);
  return BackupCheck{tree.root(), tree.page_count(), bytes};
}

}  // namespace swarmlite
