// Test helper for client/*_test.cpp (not part of the library): a signed log
// to take proofs from — a Primary with a small table in a temp dir.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "core/keys.h"
#include "core/temp_dir_test_util.h"
#include "sqlbridge/engine/primary.h"

namespace swarmlite::client::testing {

// A primary with notes(id, body) = (1,'one'), (2,'two'), (3,'three'), then
// `extra` more single-row writes of `flavour` (two primaries with the same key
// and other flavours have heads of the same size and other roots).
struct TestLog {
  TempDir dir;
  std::unique_ptr<Primary> primary;
  TestLog(const KeyPair& keys, const std::string& flavour = "a", int extra = 0) : dir("client-" + flavour) {
    std::filesystem::create_directories(dir.path);
    auto p = Primary::open(dir.path / "primary.db", keys.secret);
    REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().to_string()));
    primary = std::move(p).value();
    write("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)", {});
    for (const char* body : {"one", "two", "three"}) write("INSERT INTO notes(body) VALUES(?)", {Value{body}});
    for (int i = 0; i < extra; ++i) write("INSERT INTO notes(body) VALUES(?)", {Value{flavour + std::to_string(i)}});
  }
  void write(const std::string& sql, std::vector<Value> params) {
    auto r = primary->execute({Statement{sql, std::move(params)}});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().to_string()));
  }
  Bytes prove(const std::string& sql, const std::vector<Value>& params = {}) {
    auto p = primary->prove(sql, params);
    REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().to_string()));
    return p->encoded;
  }
};

}  // namespace swarmlite::client::testing
