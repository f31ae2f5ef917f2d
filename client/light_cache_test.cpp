// LightCache (light_cache.h): pages come back only when they hash to their
// key; a flipped byte on disk is a counted miss; a writer killed before its
// flush leaves a cache the next open uses (unindexed slots reclaimed); LRU
// eviction at the byte cap; a damaged index is dropped, never trusted.
#include "client/light_cache.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/temp_dir_test_util.h"
#include "sqlbridge/engine/state_tree.h"

using namespace swarmlite;
using namespace swarmlite::client;

namespace {

constexpr uint32_t kPs = 1024;

Bytes page_of(uint8_t fill) {
  Bytes p(kPs, fill);
  p[0] = 0x0d;
  return p;
}

std::unique_ptr<LightCache> open_cache(const std::filesystem::path& dir, uint64_t max_pages = 64) {
  auto c = LightCache::open(dir, kPs, {.max_bytes = max_pages * kPs});
  REQUIRE_MESSAGE(c.ok(), c.error_text());
  return std::move(c).value();
}

void put(LightCache& c, uint32_t pgno, const Bytes& page) {
  Status s = c.put(pgno, page_leaf_hash(pgno, page), page);
  REQUIRE_MESSAGE(s.ok(), s.error_text());
}

std::optional<Bytes> get(LightCache& c, uint32_t pgno, const Bytes& page) {
  auto r = c.get(pgno, page_leaf_hash(pgno, page));
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  return *r;
}

void flip_byte(const std::filesystem::path& file, uint64_t offset) {
  int fd = ::open(file.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  uint8_t b = 0;
  REQUIRE(::pread(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  b ^= 0x01;
  REQUIRE(::pwrite(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  ::close(fd);
}

}  // namespace

TEST_CASE("light cache: pages survive a reopen; a flipped byte on disk is a counted miss") {
  TempDir dir("lightcache");
  const Bytes a = page_of(1), b = page_of(2);
  {
    auto c = open_cache(dir.path);
    put(*c, 3, a);
    put(*c, 7, b);
    CHECK(get(*c, 3, a) == a);
    REQUIRE(c->flush().ok());
  }
  auto c = open_cache(dir.path);
  CHECK(c->stats().entries == 2);
  CHECK(c->stats().reclaimed == 0);
  CHECK(c->pgnos() == std::vector<uint32_t>{3, 7});
  CHECK(get(*c, 7, b) == b);
  // The key binds the page number: the same bytes asked as another page are not there.
  CHECK_FALSE(get(*c, 8, b).has_value());
  const uint32_t slot = *c->slot_of(page_leaf_hash(3, a));
  flip_byte(c->slots_path(), uint64_t{slot} * kPs + 100);
  CHECK_FALSE(get(*c, 3, a).has_value());
  CHECK(c->stats().corrupt == 1);
  CHECK_FALSE(c->contains(page_leaf_hash(3, a)));  // dropped: a refetch stores it again
  put(*c, 3, a);
  CHECK(get(*c, 3, a) == a);
}

TEST_CASE("light cache: a writer killed before its flush leaves a cache the next open uses") {
  TempDir dir("lightcache");
  const Bytes a = page_of(1);
  {
    auto c = open_cache(dir.path);
    put(*c, 1, a);
    REQUIRE(c->flush().ok());
  }
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Stores two pages, then dies before any flush: slots written, index not.
    auto c = LightCache::open(dir.path, kPs, {.max_bytes = 64 * kPs});
    if (!c.ok()) ::_exit(2);
    for (uint8_t i = 2; i < 4; ++i) {
      Bytes p = page_of(i);
      if (!(*c)->put(i, page_leaf_hash(i, p), p).ok()) ::_exit(3);
    }
    ::_exit(0);  // no destructor, no flush: as kill -9 after the writes
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(std::filesystem::file_size(dir.path / "pages-1024.slots") == 3 * kPs);
  auto c = open_cache(dir.path);
  CHECK(c->stats().reclaimed == 2);
  CHECK(c->stats().entries == 1);
  CHECK(get(*c, 1, a) == a);
  CHECK_FALSE(get(*c, 2, page_of(2)).has_value());
  // The reclaimed slots are reused and hold what is written now.
  put(*c, 5, page_of(5));
  REQUIRE(c->flush().ok());
  CHECK(get(*c, 5, page_of(5)) == page_of(5));
  CHECK(get(*c, 1, a) == a);
  CHECK(c->stats().corrupt == 0);
}

TEST_CASE("light cache: least recently used pages go at the byte cap") {
  TempDir dir("lightcache");
  auto c = open_cache(dir.path, 3);
  for (uint8_t i = 1; i <= 3; ++i) put(*c, i, page_of(i));
  CHECK(get(*c, 1, page_of(1)).has_value());  // 2 is now the least recently used
  put(*c, 4, page_of(4));
  CHECK(c->stats().evictions == 1);
  CHECK(c->stats().entries == 3);
  CHECK_FALSE(c->contains(page_leaf_hash(2, page_of(2))));
  CHECK(get(*c, 1, page_of(1)).has_value());
  CHECK(get(*c, 4, page_of(4)).has_value());
  REQUIRE(c->flush().ok());
  // Evicted slots are reused after the flush: the file stays at the cap plus the slack.
  for (uint8_t i = 10; i < 40; ++i) {
    put(*c, i, page_of(i));
    REQUIRE(c->flush().ok());
  }
  CHECK(std::filesystem::file_size(c->slots_path()) <= 4 * kPs);
  CHECK(get(*c, 39, page_of(39)) == page_of(39));
}

TEST_CASE("light cache: a damaged index is dropped; a second open of the directory is refused") {
  TempDir dir("lightcache");
  {
    auto c = open_cache(dir.path);
    put(*c, 1, page_of(1));
    REQUIRE(c->flush().ok());
    auto second = LightCache::open(dir.path, kPs);
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().code == Errc::unavailable);
    flip_byte(c->index_path(), 20);
  }
  auto c = open_cache(dir.path);
  CHECK(c->stats().index_dropped);
  CHECK(c->stats().index_problem.find("checksum") != std::string::npos);
  CHECK(c->stats().entries == 0);
  CHECK(c->stats().reclaimed == 1);
  CHECK_FALSE(get(*c, 1, page_of(1)).has_value());
}

TEST_CASE("light cache: a slot freed by eviction is not reused before the index stops naming it") {
  TempDir dir("lightcache");
  const Bytes a = page_of(1);
  {
    auto c = open_cache(dir.path, 1);
    put(*c, 1, a);
    REQUIRE(c->flush().ok());
  }
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // At the cap: storing page 2 evicts page 1, whose slot the index on disk
    // still names; then the writer dies before any flush.
    auto c = LightCache::open(dir.path, kPs, {.max_bytes = kPs});
    if (!c.ok()) ::_exit(2);
    Bytes p = page_of(2);
    if (!(*c)->put(2, page_leaf_hash(2, p), p).ok()) ::_exit(3);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  auto c = open_cache(dir.path, 1);
  CHECK(get(*c, 1, a) == a);  // its slot was not overwritten
  CHECK(c->stats().corrupt == 0);
  CHECK(c->stats().reclaimed == 1);
}
