// Background signing (PrimaryOptions::sign_in_background, docs/performance.md
// "Signing off the write path"): writes return before their head is signed; a
// thread of the Primary's own signs every new log size, at most one head per
// sign_gap; each head verifies, signs the log's root at its size and the state
// after its last entry; a head that cannot be stored is a local fault retried
// until stored; destruction signs what is left; sign_head() beside it is fine.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "core/fault_injection.h"
#include "core/log.h"
#include "sqlbridge/engine/engine_test_util.h"

using namespace swarmlite;
using namespace swarmlite::testing;
using namespace std::chrono_literals;

namespace {

PrimaryOptions background(std::chrono::microseconds gap) {
  PrimaryOptions o = fast_primary();
  o.sign_in_background = true;
  o.sign_gap = gap;
  return o;
}

// The heads the listener heard of, in order.
struct Heard {
  std::mutex mu;
  std::vector<Head> heads;
  void listen(Primary& p) {
    p.set_head_listener([this](const Head& h) {
      std::lock_guard lock(mu);
      heads.push_back(h);
    });
  }
  std::vector<Head> copy() {
    std::lock_guard lock(mu);
    return heads;
  }
};

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::unique_ptr<Primary> open_primary(const std::filesystem::path& db, const SecretKey& key,
                                      PrimaryOptions o) {
  auto p = Primary::open(db, key, std::move(o));
  REQUIRE_MESSAGE(p.ok(), p.error_text());
  return std::move(p).value();
}

void insert(Primary& p, int64_t i) {
  auto r = p.execute({sql("INSERT INTO t VALUES (?)", {Value{i}})});
  REQUIRE_MESSAGE(r.ok(), r.error_text());
}

// `h` is a head this primary may sign: its signature, the log's root at its
// size, the state root and page count its last entry records.
void check_head(const Primary& p, const Head& h, const PublicKey& id) {
  CHECK(h.verify(id).ok());
  std::lock_guard lock(p.log_mutex());
  auto root = p.log().tree().root_at(h.size);
  REQUIRE_MESSAGE(root.ok(), root.error_text());
  CHECK(*root == h.log_root);
  auto last = p.log().entry(h.size - 1);
  REQUIRE_MESSAGE(last.ok(), last.error_text());
  CHECK(last->state_root == h.state_root);
  CHECK(last->page_count == h.page_count);
}

// A background-signing primary with table t, its listener recording heads.
struct Signing {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  std::unique_ptr<Primary> p;
  Heard heard;
  explicit Signing(std::chrono::microseconds gap)
      : p(open_primary(dir / "p.db", keys.secret, background(gap))) {
    heard.listen(*p);
    REQUIRE(p->execute({sql("CREATE TABLE t(a)")}).ok());
  }
};

}  // namespace

TEST_CASE("background signing: writes return unsigned, the signer signs every new size") {
  Signing s(0us);
  auto& [dir, keys, p, heard] = s;
  for (int64_t i = 0; i < 200; ++i) {
    auto r = p->execute({sql("INSERT INTO t VALUES (?)", {Value{i}})});
    REQUIRE_MESSAGE(r.ok(), r.error_text());
    CHECK_FALSE(r->head);  // no write waits for a signature
  }
  const uint64_t size = p->size();
  REQUIRE(wait_until([&] { return p->head() && p->head()->size == size; }));
  CHECK(p->head()->state_root == p->state_root());
  const std::vector<Head> heads = heard.copy();
  REQUIRE_FALSE(heads.empty());
  CHECK(heads.back() == *p->head());
  uint64_t previous_size = 0;
  int64_t previous_time = 0;
  for (const Head& h : heads) {
    check_head(*p, h, keys.pub);
    CHECK(h.size > previous_size);  // each one newer, never the same twice
    CHECK(h.time_ms >= previous_time);
    previous_size = h.size;
    previous_time = h.time_ms;
  }
}

TEST_CASE("background signing: a quiet log is signed at once, then one head per sign_gap") {
  // A gap far longer than the test: only the first head after open comes from the signer.
  Signing s(std::chrono::seconds(600));
  auto& [dir, keys, p, heard] = s;
  const uint64_t first = p->size();
  // At once, not after the gap: 30 s is the machine's worst case, not a speed assert.
  REQUIRE(wait_until([&] { return p->head() && p->head()->size == first; }));
  for (int64_t i = 0; i < 20; ++i) insert(*p, i);
  std::this_thread::sleep_for(50ms);
  CHECK(heard.copy().size() == 1);        // within the gap: no second head yet
  CHECK(p->head()->size == first);
  // Forced heads still work beside the signer; the signer never goes back.
  auto forced = p->sign_head();
  REQUIRE_MESSAGE(forced.ok(), forced.error_text());
  CHECK(forced->size == p->size());
  check_head(*p, *forced, keys.pub);
}

TEST_CASE("background signing: destruction signs the last writes; the stored head covers the log") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  uint64_t size = 0;
  Hash32 state{};
  {
    auto p = open_primary(dir / "p.db", keys.secret, background(std::chrono::seconds(600)));
    REQUIRE(p->execute({sql("CREATE TABLE t(a)")}).ok());
    for (int64_t i = 0; i < 30; ++i) insert(*p, i);
    size = p->size();
    state = p->state_root();
  }
  // The log as the primary left it, before any reopen re-signs anything.
  auto log = Log::open(default_log_dir(dir / "p.db"), keys.pub, fast_log());
  REQUIRE_MESSAGE(log.ok(), log.error_text());
  REQUIRE((*log)->head());
  CHECK((*log)->head()->size == size);
  CHECK((*log)->head()->state_root == state);
  CHECK((*log)->head()->verify(keys.pub).ok());
}

TEST_CASE("background signing: a head that cannot be stored is a local fault, retried until stored") {
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  PrimaryOptions o = background(0us);
  o.log_options.head_write_interval_ms = 0;  // every head reaches the head file
  auto p = open_primary(dir / "p.db", keys.secret, std::move(o));
  REQUIRE(p->execute({sql("CREATE TABLE t(a)")}).ok());
  REQUIRE(wait_until([&] { return p->head()->size == p->size(); }));
  // The write reaches the log; then its disk is full for the head file.
  insert(*p, 1);
  const uint64_t size = p->size();
  fault_injection::fail_writes_under(p->log_dir() / "head.tmp");  // atomic_replace's file
  insert(*p, 2);
  const bool faulted = wait_until([&] { return p->local_fault().has_value(); });
  const auto fault = p->local_fault();
  fault_injection::clear();
  REQUIRE(faulted);
  CHECK_MESSAGE(fault->what.find("storing the signed head") != std::string::npos, fault->what);
  // Space returns: the retry stores it and the fault clears.
  REQUIRE(wait_until([&] { return p->head()->size == size + 1 && !p->local_fault(); }));
  check_head(*p, *p->head(), keys.pub);
}

TEST_CASE("background signing: concurrent writers and forced heads, every head consistent") {
  Signing s(200us);
  auto& [dir, keys, p, heard] = s;
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int64_t i = 0; i < 100; ++i) {
        if (!p->execute({sql("INSERT INTO t VALUES (?)", {Value{w * 1000 + i}})}).ok()) failed = true;
      }
    });
  }
  std::vector<Head> forced;
  for (int i = 0; i < 20; ++i) {
    auto h = p->sign_head();
    if (!h.ok()) failed = true;
    else forced.push_back(*h);
    std::this_thread::sleep_for(1ms);
  }
  for (auto& t : threads) t.join();
  CHECK_FALSE(failed.load());
  const uint64_t size = p->size();
  REQUIRE(wait_until([&] { return p->head()->size == size; }));
  p->set_head_listener({});
  for (const Head& h : heard.copy()) check_head(*p, h, keys.pub);
  for (const Head& h : forced) check_head(*p, h, keys.pub);
  CHECK(p->head()->state_root == p->state_root());
}

TEST_CASE("background signing: heads keep coming while every write is slow to confirm") {
  // Each write spends ~2 ms between its log append and its confirmation (the
  // hook sleeps there, as a slow fdatasync would), so the signer's look at the
  // end of a gap nearly always finds a group in flight and nothing to sign yet.
  // It must still sign about once per gap, not wait for a quiet moment: a
  // signer that only looked again a gap later (instead of being woken when the
  // group confirmed) signed 3 heads in ~200 ms here (docs/performance.md
  // "A signer that is not woken, measured and not kept").
  PrimaryOptions o = background(std::chrono::milliseconds(5));
  o.test_hook = [](PrimaryHookPoint point) {
    if (point == PrimaryHookPoint::after_log_append) std::this_thread::sleep_for(2ms);
    return ok_status();
  };
  TempDir dir;
  KeyPair keys = KeyPair::generate();
  auto p = open_primary(dir / "p.db", keys.secret, std::move(o));
  Heard heard;
  heard.listen(*p);
  REQUIRE(p->execute({sql("CREATE TABLE t(a)")}).ok());
  constexpr int64_t kWrites = 100;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < kWrites; ++i) insert(*p, i);
  const auto took = std::chrono::steady_clock::now() - start;
  const uint64_t size = p->size();
  REQUIRE(wait_until([&] { return p->head() && p->head()->size == size; }));
  p->set_head_listener({});
  const std::vector<Head> heads = heard.copy();
  for (const Head& h : heads) check_head(*p, h, keys.pub);
  // At least one head per 4 gaps of writing, or per 4 writes where a write
  // takes longer than a gap (a sanitizer build): one per gap, or per write,
  // is the design; the slack is for a loaded machine.
  const int64_t gaps = std::chrono::duration_cast<std::chrono::milliseconds>(took).count() / 5;
  MESSAGE("heads: " << heads.size() << " over " << gaps << " gaps of writes");
  CHECK(static_cast<int64_t>(heads.size()) >= std::min(gaps, kWrites) / 4);
}
