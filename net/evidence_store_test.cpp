#include "net/evidence_store.h"

#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "core/fault_injection.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "core/temp_dir_test_util.h"

using namespace swarmlite;
using namespace swarmlite::net;
namespace fs = std::filesystem;

namespace {

// Two signed heads of one size with different state roots: evidence.
struct Equivocation {
  KeyPair keys = KeyPair::generate();
  Evidence evidence;
  Equivocation() {
    Head a;
    a.log_id = keys.pub;
    a.size = 3;
    a.log_root = blake2b(as_bytes("log"));
    a.state_root = blake2b(as_bytes("state a"));
    a.page_count = 2;
    a.time_ms = 1000;
    Head b = a;
    b.state_root = blake2b(as_bytes("state b"));
    a.sign_with(keys.secret);
    b.sign_with(keys.secret);
    auto e = evidence_from_heads(a, b);
    REQUIRE(e.ok());
    evidence = *e;
  }
};

// Calls retry() until nothing is pending (the backoff starts at 100 ms).
bool retried_until_stored(EvidenceStore& s) {
  for (int i = 0; i < 300 && s.pending(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s.retry();
  }
  return !s.pending();
}

}  // namespace

TEST_CASE("evidence store: stored durably, loaded back, verified against the log") {
  TempDir d("evstore");
  Equivocation q;
  EvidenceStore s(d.path / "data");  // created on first store
  auto none = s.load(q.keys.pub);
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
  REQUIRE(s.store(q.evidence).ok());
  CHECK_FALSE(s.fault());
  CHECK(fs::exists(evidence_path_in(d.path / "data")));
  CHECK_FALSE(fs::exists(file_io::temp_path_for(s.path())));
  auto back = EvidenceStore(d.path / "data").load(q.keys.pub);
  REQUIRE(back.ok());
  REQUIRE(back->has_value());
  CHECK(**back == q.evidence);

  // Evidence against another log, garbage, and a huge file are refused with the file's name.
  KeyPair other = KeyPair::generate();
  auto wrong_log = s.load(other.pub);
  REQUIRE_FALSE(wrong_log.ok());
  CHECK(wrong_log.error().message.find(s.path().string()) != std::string::npos);
  {
    std::ofstream out(s.path(), std::ios::binary | std::ios::trunc);
    out << "not evidence";
  }
  auto garbage = s.load(q.keys.pub);
  REQUIRE_FALSE(garbage.ok());
  CHECK(garbage.error().message.find(s.path().string()) != std::string::npos);
  fs::resize_file(s.path(), kMaxEvidenceFileBytes + 1);
  auto huge = s.load(q.keys.pub);
  REQUIRE_FALSE(huge.ok());
  CHECK(huge.error().code == Errc::too_large);

  // No data directory: kept nowhere.
  EvidenceStore nowhere{fs::path()};
  CHECK(nowhere.store(q.evidence).ok());
  CHECK_FALSE(nowhere.pending());
}

TEST_CASE("evidence store: a failed store is reported, keeps the evidence and is retried") {
  TempDir d("evstore");
  Equivocation q;
  fs::create_directories(d.path);
  {
    std::ofstream out(d.path / "data");  // a file where the data directory should be
    out << "x";
  }
  EvidenceStore s(d.path / "data");
  auto st = s.store(q.evidence);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::io_error);
  REQUIRE(s.pending());
  auto fault = s.fault();
  REQUIRE(fault);
  CHECK(fault->what.find((d.path / "data").string()) != std::string::npos);
  CHECK(fault->retries == 1);
  s.retry();  // before its backoff: no attempt
  CHECK(s.fault()->retries == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  s.retry();  // still failing
  CHECK(s.fault()->retries == 2);

  // Space returns: the next retry stores it and clears the fault.
  fs::remove(d.path / "data");
  REQUIRE(retried_until_stored(s));
  CHECK_FALSE(s.fault());
  auto back = s.load(q.keys.pub);
  REQUIRE(back.ok());
  REQUIRE(back->has_value());
  CHECK(**back == q.evidence);
}

TEST_CASE("evidence store: a full disk keeps the old file intact and leaves no temporary file") {
  TempDir d("evstore");
  Equivocation q, q2;
  EvidenceStore s(d.path);
  REQUIRE(s.store(q.evidence).ok());
  const std::string before = [&] {
    std::ifstream in(s.path(), std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  fault_injection::fail_writes_under(d.path);
  auto st = s.store(q2.evidence);
  fault_injection::clear();
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("No space left on device") != std::string::npos);
  REQUIRE(s.fault());
  CHECK_FALSE(fs::exists(file_io::temp_path_for(s.path())));
  auto still = s.load(q.keys.pub);
  REQUIRE(still.ok());
  REQUIRE(still->has_value());
  CHECK(**still == q.evidence);
  CHECK(before.size() == fs::file_size(s.path()));
  REQUIRE(retried_until_stored(s));
  auto now = s.load(q2.keys.pub);
  REQUIRE(now.ok());
  REQUIRE(now->has_value());
  CHECK(**now == q2.evidence);
}
