// Fuzz target for decode_head (docs/formats/head.md): never crash; an accepted
// head re-encodes to the same bytes; verify() runs on whatever decodes.
#include <cstdio>
#include <algorithm>
#include <cstdlib>

#include "core/head.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  ByteView in(data, size);
  auto h = decode_head(in);
  if (!h.ok()) return 0;
  Bytes again = encode_head(*h);
  if (again.size() != size || !std::equal(again.begin(), again.end(), in.begin())) {
    std::fprintf(stderr, "head_fuzz: accepted input does not re-encode to itself\n");
    std::abort();
  }
  (void)h->verify(h->log_id);
  return 0;
}
