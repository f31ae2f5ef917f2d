// Fuzz target for decode_evidence (docs/formats/evidence.md): never crash; an
// accepted object re-encodes to the same bytes; Evidence::verify (signatures
// and the consistency-path walk) runs on whatever decodes.
#include <cstdio>
#include <algorithm>
#include <cstdlib>

#include "core/evidence.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  ByteView in(data, size);
  auto e = decode_evidence(in);
  if (!e.ok()) return 0;
  Bytes again = encode_evidence(*e);
  if (again.size() != size || !std::equal(again.begin(), again.end(), in.begin())) {
    std::fprintf(stderr, "evidence_fuzz: accepted input does not re-encode to itself\n");
    std::abort();
  }
  (void)e->verify(e->a.log_id);
  // The path walk alone, without the signature gate in front of it.
  if (e->a.size > 0 && e->a.size < e->b.size) {
    (void)roots_from_complete_path(e->a.size, e->b.size, e->proof);
  }
  return 0;
}
