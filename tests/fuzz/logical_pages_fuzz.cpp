// Fuzz target for the logical-page reader (docs/formats/state-tree.md): a main
// database file and its -wal file, both hostile. Never crash, never allocate
// beyond what the files hold; read_logical_pages and StateTree::from_file agree;
// the lock-byte page reads as zeros and has its fixed leaf. The pending byte is
// moved to 64 KiB (as SQLite's tests do), so the lock-byte page is page 129 of
// a 512-byte-page database and small inputs cross it.
// Input: u32be main-file length, the main file, then the -wal file (rest).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "sqlbridge/engine/state_tree.h"

namespace {
void write_file(const std::filesystem::path& p, const uint8_t* data, size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  // One scratch directory per process, removed at exit (libFuzzer and the
  // corpus replay both end with exit(): static destructors run).
  struct ScratchDir {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("swl-logical-fuzz-" + std::to_string(::getpid()));
    ScratchDir() { std::filesystem::create_directories(path); }
    ~ScratchDir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const ScratchDir scratch;
  const std::filesystem::path& dir = scratch.path;
  static const bool moved = [] {
    if (!set_pending_byte_for_testing(0x10000).ok()) std::abort();
    return true;
  }();
  (void)moved;
  if (size < 4) return 0;
  size_t main_len = size_t(data[0]) << 24 | size_t(data[1]) << 16 | size_t(data[2]) << 8 | data[3];
  main_len = std::min(main_len, size - 4);
  const auto db = dir / "f.db";
  const auto wal = dir / "f.db-wal";
  write_file(db, data + 4, main_len);
  write_file(wal, data + 4 + main_len, size - 4 - main_len);

  auto pages = read_logical_pages(db);
  auto tree = StateTree::from_file(db);
  if (pages.ok() != tree.ok()) {
    std::fprintf(stderr, "logical_pages_fuzz: read_logical_pages and from_file disagree\n");
    std::abort();
  }
  if (pages.ok()) {
    if (pages->size() * 512 > size + 512 ||
        StateTree::from_pages(*pages).root() != tree->root()) {
      std::fprintf(stderr, "logical_pages_fuzz: inconsistent result\n");
      std::abort();
    }
    const uint32_t lock_page = lock_byte_page(tree->page_size());
    if (lock_page != 0 && lock_page <= pages->size()) {
      const Bytes& lp = (*pages)[lock_page - 1];
      if (std::any_of(lp.begin(), lp.end(), [](uint8_t b) { return b != 0; }) ||
          tree->tree().leaf(lock_page - 1) != lock_byte_leaf(tree->page_size())) {
        std::fprintf(stderr, "logical_pages_fuzz: lock-byte page %u is not the fixed one\n",
                     lock_page);
        std::abort();
      }
    }
  }
  return 0;
}
