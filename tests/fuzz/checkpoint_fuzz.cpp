// Fuzz target for decode_checkpoint (docs/formats/log-store.md "Checkpoint
// record"): never crash; an accepted record re-encodes to the same bytes.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "core/log_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  ByteView in(data, size);
  auto cp = decode_checkpoint(in);
  if (!cp.ok()) return 0;
  Bytes again = encode_checkpoint(*cp);
  if (again.size() != size || !std::equal(again.begin(), again.end(), in.begin())) {
    std::fprintf(stderr, "checkpoint_fuzz: accepted input does not re-encode to itself\n");
    std::abort();
  }
  return 0;
}
