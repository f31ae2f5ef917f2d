// Fuzz target for the snapshot transfer decoders (docs/formats/snapshot.md):
// the first byte picks decode_snapshot_request (even) or decode_snapshot_chunk
// (odd) for the rest. Never crash; an accepted input re-encodes to itself; a
// decoded chunk goes through verify_snapshot_chunk against its own head.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "sqlbridge/engine/snapshot_chunk.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  if (size == 0) return 0;
  ByteView in(data + 1, size - 1);
  Bytes again;
  if (data[0] % 2 == 0) {
    auto r = decode_snapshot_request(in);
    if (!r.ok()) return 0;
    again = encode_snapshot_request(*r);
  } else {
    auto c = decode_snapshot_chunk(in);
    if (!c.ok()) return 0;
    (void)verify_snapshot_chunk(*c, c->head);
    again = encode_snapshot_chunk(*c);
  }
  if (again.size() != in.size() || !std::equal(again.begin(), again.end(), in.begin())) {
    std::fprintf(stderr, "snapshot_chunk_fuzz: accepted input does not re-encode to itself\n");
    std::abort();
  }
  return 0;
}
