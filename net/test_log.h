// Test support for net/*_test.cpp (not part of any library): a temporary
// directory, and a Log with a LogOnlyBackend over it whose entries and heads
// the test writes — a "primary" log, or a replica's to sync into.
#pragma once

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/entry.h"
#include "core/keys.h"
#include "core/log.h"
#include "net/node.h"

namespace swarmlite::net::testing {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = std::filesystem::temp_directory_path() /
           fmt::format("swl-node-test-{}-{}", ::getpid(), n.fetch_add(1));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// A log plus a backend over it; `primary` logs are written by the test.
struct TestLog {
  TempDir dir;
  std::unique_ptr<Log> log;
  std::unique_ptr<LogOnlyBackend> backend;
  TestLog(const PublicKey& id, bool primary, LogStoreOptions options = {}) {
    auto l = Log::open(dir.path / "log", id, options);
    REQUIRE_MESSAGE(l.ok(), l.error_text());
    log = std::move(l).value();
    backend = std::make_unique<LogOnlyBackend>(*log, primary);
  }
  uint64_t size() {
    std::lock_guard lock(backend->log_mutex());
    return log->size();
  }
  // Appends n entries whose statements carry `tag` and signs a head over them
  // (deterministic: two logs given the same calls hold the same entries and heads).
  void append(const SecretKey& key, int n, const std::string& tag = "x") {
    std::lock_guard lock(backend->log_mutex());
    std::vector<Bytes> batch;
    Entry e;
    for (int i = 0; i < n; ++i) {
      e = Entry{};
      e.seq = log->size() + static_cast<uint64_t>(i);
      e.time_ms = 1700000000000 + static_cast<int64_t>(e.seq);
      e.statements.push_back(
          Statement{"INSERT INTO t VALUES (?)", {Value{fmt::format("{}-{}", tag, e.seq)}}});
      e.state_root.fill(static_cast<uint8_t>(e.seq));
      e.page_count = 2;
      batch.push_back(encode_entry(e));
    }
    REQUIRE(log->append(batch).ok());
    Head h;
    h.log_id = log->log_id();
    h.size = log->size();
    h.log_root = log->root();
    h.state_root = e.state_root;
    h.page_count = e.page_count;
    h.time_ms = 1700000000000;
    h.sign_with(key);
    auto st = log->set_head(h);
    REQUIRE_MESSAGE(st.ok(), st.error_text());
  }
  Head head() {
    std::lock_guard lock(backend->log_mutex());
    REQUIRE(log->head().has_value());
    return *log->head();
  }
};

// A primary key that forked: `common` entries both branches share, then `a`
// entries on one log and `b` on the other (docs/protocol.md "Equivocation").
struct ForkedPrimaries {
  KeyPair keys = KeyPair::generate();
  TestLog a{keys.pub, true}, b{keys.pub, true};
  ForkedPrimaries(int common, int on_a, int on_b) {
    a.append(keys.secret, common, "common");
    b.append(keys.secret, common, "common");
    a.append(keys.secret, on_a, "a");
    b.append(keys.secret, on_b, "b");
  }
};

}  // namespace swarmlite::net::testing
