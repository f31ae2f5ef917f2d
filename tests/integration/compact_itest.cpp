// Log compaction through real processes (docs/operations.md "Compacting a
// log"): a primary with small log segments writes; `swarmlite fetch` takes a
// verified snapshot at head A; the primary stops and `swarmlite compact` drops
// the segments before A; `swarmlite audit` of the compacted log fails without a
// snapshot (naming the log's first entry) and checks [A, end) from the
// snapshot; the primary restarts on the compacted log and keeps writing; a
// replica (`swarmlite replay`) that restarts on the compacted log follows the
// new entries, and the audit compares it.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>

#include "cli/proc/child_process.h"
#include "tests/integration/http_test_util.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using swarmlite::proc::ChildProcess;
const fs::path kBin = SWARMLITE_BIN;

using swarmlite::testing::sh;
using swarmlite::testing::slurp;
struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("compact") {}
};

using swarmlite::testing::execute_ok;
using swarmlite::testing::write_pad_rows;

std::unique_ptr<ChildProcess> start_primary(const Dir& dir, const std::string& name) {
  auto p = std::make_unique<ChildProcess>(
      name, kBin,
      std::vector<std::string>{"primary", "--db", (dir / "p.db").string(), "--key",
                               (dir / "k/primary.key").string(), "--max-outbound", "0", "--listen",
                               "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-segment-mib",
                               "0.0625"},
      dir / (name + ".log"));
  p->wait_ready(60s);
  return p;
}

uint64_t number_after(const std::string& text, const std::string& re) {
  std::smatch m;
  REQUIRE_MESSAGE(std::regex_search(text, m, std::regex(re)), re << " not in: " << text);
  return std::stoull(m[1].str());
}

}  // namespace

TEST_CASE("compact a primary's log; audit from a fetched snapshot; primary and replica go on") {
  Dir dir;
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  const std::string pub = (dir / "k/primary.pub").string();
  const std::string log = (dir / "p.db.log").string();
  auto primary = start_primary(dir, "primary1");
  execute_ok(primary->http(), R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)"])J");
  write_pad_rows(primary->http(), 0, 40);  // ~330 KB of entries: 5+ segments of 64 KiB

  // A verified snapshot at head A (what a bootstrapping peer or an auditor gets).
  REQUIRE(sh(kBin.string() + " fetch --from " + primary->http() + " --pub " + pub + " --out " +
                 (dir / "snap.db").string(),
             dir / "fetch.out") == 0);
  INFO(slurp(dir / "fetch.out"));
  const std::string head_json = slurp(dir / "snap.db.head.json");
  const uint64_t a = number_after(head_json, R"re("size":\s*(\d+))re");
  REQUIRE(a >= 40);
  write_pad_rows(primary->http(), 40, 10);
  primary->stop();

  // A replica of the whole log so far, before compaction.
  REQUIRE(sh(kBin.string() + " replay --log " + log + " --pub " + pub + " --db " +
                 (dir / "r.db").string(),
             dir / "replay1.out") == 0);

  // Compaction: past the head refused; then up to the snapshot's head.
  CHECK(sh(kBin.string() + " compact --log " + log + " --keep-from 100000", dir / "c0.out") != 0);
  CHECK(slurp(dir / "c0.out").find("past the stored head") != std::string::npos);
  const int crc = sh(kBin.string() + " compact --log " + log + " --keep-from " + std::to_string(a),
                     dir / "compact.out");
  const std::string compact_out = slurp(dir / "compact.out");
  INFO(compact_out);
  REQUIRE(crc == 0);
  const uint64_t first = number_after(compact_out, R"re(log now starts at entry (\d+))re");
  CHECK(first > 0);
  CHECK(first <= a);
  CHECK(number_after(compact_out, R"re(dropped (\d+) entries)re") == first);
  CHECK_FALSE(fs::exists(dir / "p.db.log/seg-0000000000000000.log"));
  CHECK(fs::exists(dir / "p.db.log/checkpoint"));

  // Audit: from genesis is impossible now, and says what to pass.
  CHECK(sh(kBin.string() + " audit --log " + log + " --pub " + pub, dir / "audit0.out") != 0);
  const std::string audit0 = slurp(dir / "audit0.out");
  CHECK(audit0.find("starts at entry " + std::to_string(first)) != std::string::npos);
  CHECK(audit0.find("--from-snapshot") != std::string::npos);
  const auto audit = [&](const std::string& out, const std::string& extra) {
    return sh(kBin.string() + " audit --log " + log + " --pub " + pub + " --from-snapshot " +
                  (dir / "snap.db").string() + extra,
              dir / out);
  };
  REQUIRE(audit("audit1.out", "") == 0);
  const std::string audit1 = slurp(dir / "audit1.out");
  INFO(audit1);
  CHECK(audit1.find("checked entries [" + std::to_string(a) + ", " + std::to_string(a + 10) +
                    ") from a snapshot at head " + std::to_string(a)) != std::string::npos);
  CHECK(audit1.find("audit: OK") != std::string::npos);

  // The primary restarts on the compacted log and keeps writing.
  primary = start_primary(dir, "primary2");
  write_pad_rows(primary->http(), 50, 5);
  // Its status says where its log starts now.
  REQUIRE(sh(kBin.string() + " status --node " + primary->http(), dir / "status.out") == 0);
  CHECK(number_after(slurp(dir / "status.out"), R"re("first_entry":\s*(\d+))re") == first);
  primary->stop();
  INFO(slurp(dir / "primary2.log"));

  // The replica restarts on the compacted log and follows the new entries.
  REQUIRE(sh(kBin.string() + " replay --log " + log + " --pub " + pub + " --db " +
                 (dir / "r.db").string(),
             dir / "replay2.out") == 0);
  const std::string replay2 = slurp(dir / "replay2.out");
  INFO(replay2);
  CHECK(replay2.find("applied 5 entries") != std::string::npos);

  // The audit covers the new entries and compares the replica.
  REQUIRE(audit("audit2.out", " --db " + (dir / "r.db").string()) == 0);
  const std::string audit2 = slurp(dir / "audit2.out");
  INFO(audit2);
  CHECK(audit2.find("checked entries [" + std::to_string(a) + ", " + std::to_string(a + 15) +
                    ")") != std::string::npos);
  CHECK(audit2.find("matches the log") != std::string::npos);

  // A snapshot file that is not the state its head signs is refused.
  fs::copy_file(dir / "snap.db", dir / "bad.db");
  fs::copy_file(dir / "snap.db.head.json", dir / "bad.db.head.json");
  REQUIRE(sh("sqlite3 " + (dir / "bad.db").string() + " \"UPDATE t SET pad = 1 WHERE id = 3\"",
             dir / "tamper.out") == 0);
  CHECK(sh(kBin.string() + " audit --log " + log + " --pub " + pub + " --from-snapshot " +
               (dir / "bad.db").string(),
           dir / "audit3.out") != 0);
  CHECK(slurp(dir / "audit3.out").find("snapshot") != std::string::npos);
}
