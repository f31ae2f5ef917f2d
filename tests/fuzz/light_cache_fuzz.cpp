// Fuzz target for the light client's page cache files (client/light_cache.h,
// docs/light-client.md "Cache files"): whatever the index and slot files hold,
// never a crash, an index either decoded or refused with a reason (the cache
// then starts empty), and never a page returned whose leaf hash does not match
// the key asked for. 512-byte pages; the files live in one directory per
// process under /dev/shm (else the temp directory).
//
// Byte 0 picks the mode (low two bits) and the cache cap (high bits); then:
//   0: the rest is an index file, fed to decode_light_cache_index alone.
//   1: u16 index length L, L bytes of index, the rest the slot file; the
//      index's last 32 bytes are replaced by its checksum when byte 0 bit 2 is
//      set (so the entries are reached); the cache is opened on those files.
//   2: a real cache first: byte 1 = pages put (page i filled from the input),
//      flushed; then the rest is edits (u16 offset, u8 xor) over index||slots,
//      the checksum fixed again when bit 2 is set; then reopened.
// In modes 1 and 2 every entry the index names is asked for (get), a page is
// put and the cache flushed and reopened once more.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "client/light_cache.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "sqlbridge/engine/state_tree.h"

namespace {

using namespace swarmlite;
using client::LightCache;
constexpr uint32_t kFuzzPageSize = 512;

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "light_cache_fuzz: %s\n", why.c_str());
  std::abort();
}

const std::filesystem::path& dir() {
  static const std::filesystem::path d = [] {
    std::filesystem::path base =
        std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    std::string tmpl = (base / "swl-light-cache-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp failed");
    return std::filesystem::path(tmpl);
  }();
  // Registered once d exists, so it runs before d is destroyed (at exit).
  static const bool cleanup = (std::atexit([] {
                                 std::error_code ec;
                                 std::filesystem::remove_all(dir(), ec);
                               }),
                               true);
  (void)cleanup;
  return d;
}

Hash32 leaf_of(uint32_t pgno, ByteView page) {
  return pgno == lock_byte_page(kFuzzPageSize) ? lock_byte_leaf(kFuzzPageSize)
                                               : page_leaf_hash(pgno, page);
}

void check_decoded(ByteView index) {
  auto entries = client::decode_light_cache_index(index, kFuzzPageSize);
  if (!entries.ok()) {
    if (entries.error().code != Errc::corrupt || entries.error().message.empty())
      fail("an index was refused without a clear corrupt error: " + entries.error().to_string());
    return;
  }
  if (index.size() != 17 + 48 * entries->size() + 32)
    fail("an accepted index's size does not match its entry count");
  for (const auto& e : *entries)
    if (e.pgno == 0) fail("an accepted index names page 0");
}

void write_file(const std::filesystem::path& p, ByteView bytes) {
  if (!file_io::atomic_replace(p, bytes, /*durable=*/false).ok())
    fail("cannot write " + p.string());
}

void fix_checksum(Bytes& index) {
  if (index.size() < 32) return;
  const size_t body = index.size() - 32;
  Hash32 sum = blake2b(ByteView(index.data(), body));
  std::copy(sum.begin(), sum.end(), index.begin() + static_cast<ptrdiff_t>(body));
}

// Opens the cache on whatever the files hold, asks for every entry its index
// names, then puts a page and reopens once more.
void open_and_read(uint64_t max_slots) {
  client::LightCacheOptions o;
  o.max_bytes = max_slots * kFuzzPageSize;
  Bytes index;
  if (auto b = file_io::read_file(dir() / "pages-512.index", 1u << 24); b.ok()) index = *b;
  for (int round = 0; round < 2; ++round) {
    auto c = LightCache::open(dir(), kFuzzPageSize, o);
    if (!c.ok()) fail("open failed: " + c.error().to_string());
    LightCache& cache = **c;
    if (cache.stats().index_dropped && cache.stats().index_problem.empty())
      fail("an index was dropped without a reason");
    if (cache.stats().index_dropped && cache.stats().entries != 0)
      fail("an index was dropped but the cache is not empty");
    auto entries = client::decode_light_cache_index(index, kFuzzPageSize);
    if (entries.ok()) {
      for (const auto& e : *entries) {
        auto page = cache.get(e.pgno, e.leaf);
        if (!page.ok()) fail("get failed: " + page.error().to_string());
        if (*page && ((*page)->size() != kFuzzPageSize || leaf_of(e.pgno, **page) != e.leaf))
          fail("a page was returned whose leaf hash does not match its key");
      }
    }
    for (uint32_t pg : cache.pgnos())
      if (pg == 0) fail("pgnos() names page 0");
    Bytes page(kFuzzPageSize, static_cast<uint8_t>(round + 1));
    if (!cache.put(3, leaf_of(3, page), page).ok()) fail("put failed");
    if (!cache.flush().ok()) fail("flush failed");
    if (cache.stats().entries > max_slots) fail("more entries than the cap");
    if (auto b = file_io::read_file(dir() / "pages-512.index", 1u << 24); b.ok()) index = *b;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] & 3;
  const bool fix = data[0] & 4;
  const uint64_t max_slots = 1 + (data[0] >> 3);  // 1..32
  ByteView in(data + 1, size - 1);
  check_decoded(in);
  if (mode == 0 || mode == 3) return 0;
  std::error_code ec;
  std::filesystem::remove(dir() / "pages-512.index", ec);
  std::filesystem::remove(dir() / "pages-512.slots", ec);
  if (mode == 1) {
    if (in.size() < 2) return 0;
    const size_t len = std::min<size_t>(in.size() - 2, size_t{in[0]} | size_t{in[1]} << 8);
    Bytes index(in.begin() + 2, in.begin() + 2 + static_cast<ptrdiff_t>(len));
    if (fix) fix_checksum(index);
    write_file(dir() / "pages-512.index", index);
    write_file(dir() / "pages-512.slots", in.subspan(2 + len));
  } else {
    if (in.empty()) return 0;
    const uint32_t n = in[0] % 40;
    ByteView rest = in.subspan(1);
    {
      client::LightCacheOptions o;
      o.max_bytes = max_slots * kFuzzPageSize;
      auto c = LightCache::open(dir(), kFuzzPageSize, o);
      if (!c.ok()) fail("open of an empty cache failed: " + c.error().to_string());
      for (uint32_t i = 0; i < n; ++i) {
        Bytes page(kFuzzPageSize);
        for (uint32_t b = 0; b < kFuzzPageSize; ++b)
          page[b] = rest.empty() ? static_cast<uint8_t>(i) : rest[(i * 7 + b) % rest.size()] ^ i;
        const uint32_t pgno = 2 + (i * 5) % 17;  // some page numbers twice, other contents
        if (!(*c)->put(pgno, leaf_of(pgno, page), page).ok()) fail("put failed");
      }
      if (!(*c)->flush().ok()) fail("flush failed");
    }
    // No page put: no index is written (nothing to flush), the slot file is empty.
    auto index = file_io::read_file(dir() / "pages-512.index", 1u << 24);
    auto slots = file_io::read_file(dir() / "pages-512.slots", 1u << 24);
    if (n == 0 && !index.ok() && index.error().code == Errc::not_found) index = Bytes{};
    if (!index.ok() || !slots.ok()) fail("the cache files were not written");
    for (size_t i = 0; i + 3 <= rest.size(); i += 3) {
      const size_t at = size_t{rest[i]} | size_t{rest[i + 1]} << 8;
      const size_t total = index->size() + slots->size();
      if (total == 0) break;
      const size_t pos = at % total;
      if (pos < index->size())
        (*index)[pos] ^= rest[i + 2];
      else
        (*slots)[pos - index->size()] ^= rest[i + 2];
    }
    if (fix) fix_checksum(*index);
    write_file(dir() / "pages-512.index", *index);
    write_file(dir() / "pages-512.slots", *slots);
  }
  open_and_read(max_slots);
  return 0;
}
