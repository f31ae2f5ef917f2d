// Test helper shared by snapshot_chunk_test.cpp and page_set_test.cpp: a
// database as a list of random pages (the lock-byte page zeros), its state
// tree, and a head signed over it.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "core/bytes.h"
#include "core/hash.h"
#include "core/head.h"
#include "core/keys.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite::testing {

struct SignedPages {
  KeyPair keys = KeyPair::generate();
  std::vector<Bytes> pages;
  StateTree tree;
  Head head;
};

// `n` random pages of `page_size` bytes (seeded), and a head at log size `size`.
inline SignedPages make_signed_pages(uint32_t page_size, uint32_t n, uint64_t size,
                                     uint32_t seed = 1) {
  SignedPages db;
  std::mt19937 rng(seed);
  const uint32_t lock = lock_byte_page(page_size);
  for (uint32_t p = 1; p <= n; ++p) {
    Bytes page(page_size, 0);
    if (p != lock)
      for (auto& b : page) b = static_cast<uint8_t>(rng());
    db.pages.push_back(std::move(page));
  }
  db.tree = StateTree::from_pages(db.pages);
  db.head.log_id = db.keys.pub;
  db.head.size = size;
  db.head.log_root = blake2b(as_bytes("log"));
  db.head.state_root = db.tree.root();
  db.head.page_count = n;
  db.head.time_ms = 1700000000000;
  db.head.sign_with(db.keys.secret);
  return db;
}

}  // namespace swarmlite::testing
