// Fuzz target for the page service decoders (docs/formats/pages.md): the first
// byte picks decode_pages_request (0), decode_leaves_request (1),
// decode_page_set (2) or decode_leaf_set (3) (modulo 4) for the rest. Never
// crash; an accepted input re-encodes to itself; a decoded set goes through
// verify_page_set / verify_leaf_set against its own head.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "sqlbridge/engine/page_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  if (size == 0) return 0;
  ByteView in(data + 1, size - 1);
  Bytes again;
  switch (data[0] % 4) {
    case 0: {
      auto r = decode_pages_request(in);
      if (!r.ok()) return 0;
      again = encode_pages_request(*r);
      break;
    }
    case 1: {
      auto r = decode_leaves_request(in);
      if (!r.ok()) return 0;
      again = encode_leaves_request(*r);
      break;
    }
    case 2: {
      auto s = decode_page_set(in);
      if (!s.ok()) return 0;
      (void)verify_page_set(*s, s->head);
      again = encode_page_set(*s);
      break;
    }
    default: {
      auto s = decode_leaf_set(in);
      if (!s.ok()) return 0;
      (void)verify_leaf_set(*s, s->head);
      again = encode_leaf_set(*s);
      break;
    }
  }
  if (again.size() != in.size() || !std::equal(again.begin(), again.end(), in.begin())) {
    std::fprintf(stderr, "page_set_fuzz: accepted input does not re-encode to itself\n");
    std::abort();
  }
  return 0;
}
