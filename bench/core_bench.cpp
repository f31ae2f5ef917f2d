// Core benchmarks (issue "Foundation"): Merkle appends/s, inclusion proof size
// and verify time at 1M entries, heads signed/s and verified/s, and BLAKE2b over
// a 4 KiB page as the baseline the other figures are read against.
#include <benchmark/benchmark.h>

#include <random>
#include <set>
#include <utility>
#include <vector>

#include "core/blake2b.h"
#include "core/hash.h"
#include "core/head.h"
#include "core/keys.h"
#include "core/log_tree.h"
#include "core/merkle.h"

namespace swarmlite {
namespace {

Hash32 leaf_for(uint64_t i) {
  uint8_t b[8];
  for (int k = 0; k < 8; ++k) b[k] = static_cast<uint8_t>(i >> (8 * k));
  return hash_leaf(ByteView(b, 8));
}

// Baseline: one BLAKE2b-256 of a 4 KiB page (a state-tree leaf).
void BM_Blake2bPage(benchmark::State& state) {
  Bytes page(4096, 0x5a);
  for (auto _ : state) benchmark::DoNotOptimize(hash_leaf(page));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Blake2bPage);

// A commit's new pages hashed together (core/blake2b.h hash_lanes): leaf
// prefix (5 bytes) || 4 KiB page for `pages` different pages, with their
// midstates as the state tree keeps them, `width` lanes at a time (1: the
// scalar code, page by page; 0: the process's own choice, as the state tree
// hashes, with short groups in 4 lanes where that was timed faster).
// us_per_page is microseconds per page (the library prints an inverted rate
// with an "s" suffix; docs/performance.md "Multi-lane BLAKE2b for a commit's
// pages").
void BM_Blake2bPages(benchmark::State& state) {
  const size_t width = static_cast<size_t>(state.range(0));
  const size_t pages = static_cast<size_t>(state.range(1));
  constexpr size_t kPrefix = 5, kPage = 4096;
  std::mt19937_64 rng(7);
  std::vector<Bytes> data(pages, Bytes(kPrefix + kPage));
  for (auto& d : data)
    for (auto& b : d) b = static_cast<uint8_t>(rng());
  const size_t mids = blake2b256::resumable_blocks(kPrefix + kPage) + 1;
  std::vector<std::vector<blake2b256::Midstate>> mid(pages,
                                                     std::vector<blake2b256::Midstate>(mids));
  std::vector<Hash32> out(pages);
  std::vector<blake2b256::LaneInput> in(pages);
  for (size_t i = 0; i < pages; ++i)
    in[i] = {data[i].data(), data[i].data() + kPrefix, mid[i].data(), out[i].data()};
  for (auto _ : state) {
    if (width == 0) {
      blake2b256::hash_lanes(in, kPrefix, kPage);
    } else {
      blake2b256::hash_lanes(width, in, kPrefix, kPage);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * pages));
  state.counters["us_per_page"] =
      benchmark::Counter(static_cast<double>(state.iterations() * pages) / 1e6,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Blake2bPages)
    ->ArgNames({"width", "pages"})
    ->ArgsProduct({{0, 1, 4, 8}, {1, 2, 3, 4, 5, 8, 12, 16}});

// A catch-up batch's leaves (core/hash.h hash_leaves): 4,096 entries of
// `len` bytes (0: lengths 100..400, shuffled, as a mixed workload's entries),
// `width` lanes (1: hash_leaf one by one). ns_per_leaf is nanoseconds per
// entry (docs/performance.md "Leaf hashes in lanes").
void BM_HashLeaves(benchmark::State& state) {
  const size_t width = static_cast<size_t>(state.range(0));
  const size_t len = static_cast<size_t>(state.range(1));
  constexpr size_t kCount = 4096;
  std::mt19937_64 rng(11);
  std::vector<Bytes> msgs(kCount);
  for (auto& m : msgs) {
    m.resize(len != 0 ? len : 100 + rng() % 301);
    for (auto& b : m) b = static_cast<uint8_t>(rng());
  }
  std::vector<Hash32> out(kCount);
  const size_t was = blake2b256::force_lane_width(width);
  for (auto _ : state) {
    hash_leaves(std::span<const Bytes>(msgs), out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  blake2b256::force_lane_width(was);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kCount));
  state.counters["ns_per_leaf"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kCount) / 1e9,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_HashLeaves)->ArgNames({"width", "len"})->ArgsProduct({{1, 4, 8}, {166, 0}});

// The log tree grown by a catch-up batch's 4,096 leaves at once
// (LogTree::append_many: a block's nodes level by level, in lanes) or one
// leaf at a time (`many` 0). ns_per_leaf is nanoseconds per leaf.
void BM_LogTreeAppend(benchmark::State& state) {
  const bool many = state.range(0) != 0;
  constexpr size_t kBatch = 4096;
  std::vector<Hash32> leaves(kBatch);
  for (size_t i = 0; i < kBatch; ++i) leaves[i] = leaf_for(i);
  LogTree tree([](uint64_t, std::span<Hash32>) -> Status {
    return make_error(Errc::internal, "not read by appends");
  });
  for (auto _ : state) {
    if (many) {
      tree.append_many(leaves);
    } else {
      for (const Hash32& leaf : leaves) tree.append(leaf);
    }
  }
  benchmark::DoNotOptimize(tree.root());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.counters["ns_per_leaf"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kBatch) / 1e9,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_LogTreeAppend)->ArgName("many")->Arg(0)->Arg(1);

void BM_MerkleAppend(benchmark::State& state) {
  MerkleTree tree;
  uint64_t i = 0;
  for (auto _ : state) tree.append(leaf_for(i++));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MerkleAppend);

// A commit's page updates to a state tree of 2^16 pages (256 MiB of 4 KiB
// pages): `pages` leaves, half a run at the end (a B-tree appending: its
// last leaf and new pages) and half spread over the file (interior pages,
// other tables' pages). batched:0 calls set() per leaf, batched:1 set_many()
// (docs/performance.md "Batched state tree updates").
void BM_MerkleCommitUpdate(benchmark::State& state) {
  const bool batched = state.range(0) != 0;
  const uint64_t pages = static_cast<uint64_t>(state.range(1));
  constexpr uint64_t kSize = 1u << 16;
  MerkleTree tree;
  for (uint64_t i = 0; i < kSize; ++i) tree.append(leaf_for(i));
  // 256 commits made up front, replayed in turn (no timing pauses), each in
  // two versions with different leaves so that every pass changes the tree.
  std::mt19937_64 rng(7);
  std::vector<std::vector<std::pair<uint64_t, Hash32>>> commits(512);
  uint64_t salt = kSize;
  for (size_t c = 0; c < commits.size(); c += 2) {
    std::set<uint64_t> at;
    for (uint64_t i = 0; i < pages - pages / 2; ++i) at.insert(kSize - 1 - i);
    while (at.size() < pages) at.insert(rng() % kSize);
    for (uint64_t i : at) commits[c].emplace_back(i, leaf_for(salt++));
    for (uint64_t i : at) commits[c + 1].emplace_back(i, leaf_for(salt++));
  }
  uint64_t pass = 0;
  for (auto _ : state) {
    const size_t c = pass % 256;
    const auto& updates = commits[2 * c + (pass / 256) % 2];
    ++pass;
    if (batched) {
      tree.set_many(updates);
    } else {
      for (const auto& [i, leaf] : updates) tree.set(i, leaf);
    }
    benchmark::DoNotOptimize(tree.leaf(kSize - 1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MerkleCommitUpdate)
    ->ArgNames({"batched", "pages"})
    ->ArgsProduct({{0, 1}, {1, 3, 8, 32}});

const MerkleTree& million_tree() {
  static MerkleTree tree = [] {
    MerkleTree t;
    for (uint64_t i = 0; i < 1'000'000; ++i) t.append(leaf_for(i));
    return t;
  }();
  return tree;
}

void BM_InclusionProofVerify1M(benchmark::State& state) {
  const MerkleTree& tree = million_tree();
  Hash32 root = tree.root();
  std::mt19937_64 rng(42);
  uint64_t n = tree.size();
  size_t proof_bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    uint64_t index = rng() % n;
    auto proof = tree.inclusion_proof(index, n);
    proof_bytes = proof->size() * 32;
    Hash32 leaf = tree.leaf(index);
    state.ResumeTiming();
    auto ok = verify_inclusion(leaf, index, n, *proof, root);
    if (!ok.ok()) state.SkipWithError("proof did not verify");
  }
  state.counters["proof_bytes"] = static_cast<double>(proof_bytes);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InclusionProofVerify1M);

void BM_ConsistencyProofVerify1M(benchmark::State& state) {
  const MerkleTree& tree = million_tree();
  uint64_t n = tree.size();
  uint64_t m = n - 1234;
  Hash32 root_n = tree.root();
  Hash32 root_m = *tree.root_at(m);
  auto proof = tree.consistency_proof(m, n);
  for (auto _ : state) {
    auto ok = verify_consistency(m, n, root_m, root_n, *proof);
    if (!ok.ok()) state.SkipWithError("proof did not verify");
  }
  state.counters["proof_bytes"] = static_cast<double>(proof->size() * 32);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ConsistencyProofVerify1M);

Head sample_head(const KeyPair& keys) {
  Head h;
  h.log_id = keys.pub;
  h.size = 1'000'000;
  h.log_root = leaf_for(1);
  h.state_root = leaf_for(2);
  h.page_count = 12345;
  h.time_ms = 1'764'000'000'000;
  return h;
}

void BM_HeadSign(benchmark::State& state) {
  KeyPair keys = KeyPair::generate();
  Head h = sample_head(keys);
  for (auto _ : state) {
    h.size++;
    h.sign_with(keys.secret);
    benchmark::DoNotOptimize(h.signature);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HeadSign);

// Arg 0: distinct heads in turn, more than Head::verify remembers (each one
// a full Ed25519 verify). Arg 1: the same head again (the remembered-head scan).
void BM_HeadVerify(benchmark::State& state) {
  KeyPair keys = KeyPair::generate();
  std::vector<Head> heads(state.range(0) == 0 ? 256 : 1);
  for (size_t i = 0; i < heads.size(); ++i) {
    heads[i] = sample_head(keys);
    heads[i].size += i;
    heads[i].sign_with(keys.secret);
  }
  size_t i = 0;
  for (auto _ : state) {
    if (!heads[i].verify(keys.pub).ok()) state.SkipWithError("head did not verify");
    i = (i + 1) % heads.size();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) == 0 ? "distinct heads" : "same head");
}
BENCHMARK(BM_HeadVerify)->Arg(0)->Arg(1);

}  // namespace
}  // namespace swarmlite

BENCHMARK_MAIN();
