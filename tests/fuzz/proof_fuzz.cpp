// Fuzz target for core/merkle.h: every input is decoded as an inclusion proof,
// a consistency proof, a hash list and a multiproof, and whatever decodes is
// run through the verifiers (against roots that will not match, so the whole
// fold runs). Inputs starting with 'T' additionally drive a small MerkleTree
// through append/set/truncate and check it against merkle_root() and its own
// proofs; a disagreement aborts.
// Invariants: never crash, never allocate beyond a small multiple of the input.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/hash.h"
#include "core/merkle.h"

using namespace swarmlite;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

Hash32 leaf_for(uint64_t i) {
  Writer w;
  w.u64(i);
  return hash_leaf(w.bytes());
}

// 'T', then up to 32 ops of two bytes (op, arg) on a tree of at most 64 leaves.
void run_tree_script(ByteView in) {
  MerkleTree t;
  std::vector<Hash32> mirror;
  uint64_t next = 0;
  for (size_t i = 1; i + 1 < in.size() && i < 1 + 2 * 32; i += 2) {
    uint8_t op = in[i] % 4, arg = in[i + 1];
    if (op == 0 || op == 1) {
      for (int k = 0; k <= arg % 16 && mirror.size() < 64; ++k) {
        mirror.push_back(leaf_for(next++));
        t.append(mirror.back());
      }
    } else if (op == 2 && !mirror.empty()) {
      uint64_t at = arg % mirror.size();
      mirror[at] = leaf_for(next++);
      t.set(at, mirror[at]);
    } else if (op == 3) {
      uint64_t n = mirror.empty() ? 0 : arg % (mirror.size() + 1);
      mirror.resize(n);
      t.truncate(n);
    }
    require(t.size() == mirror.size());
    require(t.root() == merkle_root(mirror));
    if (mirror.empty()) continue;
    uint64_t n = mirror.size(), idx = arg % n, m = (arg / 2) % (n + 1);
    require(verify_inclusion(mirror[idx], idx, n, *t.inclusion_proof(idx, n), t.root()).ok());
    require(verify_consistency(m, n, *t.root_at(m), t.root(), *t.consistency_proof(m, n)).ok());
    std::vector<uint64_t> some;
    std::vector<Hash32> leaves;
    for (uint64_t j = idx; j < n; j += 1 + arg % 7) {
      some.push_back(j);
      leaves.push_back(mirror[j]);
    }
    require(verify_multiproof(some, leaves, n, *t.multiproof(some), t.root()).ok());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView in(data, size);
  const Hash32 some_root = blake2b(in);
  const Hash32 some_leaf = hash_leaf(in);

  if (auto p = decode_inclusion_proof(in); p.ok()) {
    require(encode_inclusion_proof(*p) == Bytes(in.begin(), in.end()));
    require(!verify_inclusion(some_leaf, p->index, p->size, p->path, some_root).ok());
  }
  if (auto p = decode_consistency_proof(in); p.ok()) {
    require(encode_consistency_proof(*p) == Bytes(in.begin(), in.end()));
    (void)verify_consistency(p->old_size, p->new_size, some_leaf, some_root, p->path);
    if (p->old_size != 0 && p->old_size < p->new_size) {
      (void)roots_from_consistency_proof(p->old_size, p->new_size, some_leaf, p->path);
    }
  }
  if (auto hashes = decode_hash_list(in, kMaxProofHashes); hashes.ok()) {
    require(encode_hash_list(*hashes) == Bytes(in.begin(), in.end()));
  }
  if (auto p = decode_multiproof(in); p.ok()) {
    require(encode_multiproof(*p) == Bytes(in.begin(), in.end()));
    std::vector<Hash32> leaves(p->indices.size(), some_leaf);
    require(!verify_multiproof(p->indices, leaves, p->size, p->hashes, some_root).ok());
  }
  if (size > 0 && data[0] == 'T') run_tree_script(in);
  return 0;
}
