// Fuzz target for the page service decoders (docs/formats/pages.md): the first
// byte picks decode_pages_request (0), decode_leaves_request (1),
// decode_page_set (2), decode_leaf_set (3), decode_changes_request (4) or
// decode_change_set (5) (modulo 6) for the rest. Never crash; an accepted
// input re-encodes to itself; a decoded set goes through verify_page_set /
// verify_leaf_set / verify_change_set against its own head(s).
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "sqlbridge/engine/page_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  if (size == 0) return 0;
  ByteView in(data + 1, size - 1);
  Bytes again;
  switch (data[0] % 6) {
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
    case 4: {
      auto r = decode_changes_request(in);
      if (!r.ok()) return 0;
      again = encode_changes_request(*r);
      break;
    }
    case 5: {
      auto s = decode_change_set(in);
      if (!s.ok()) return 0;
      // An old head of the same page count as the new one: the verifier's
      // bounds and both folds run on whatever the decoder accepted.
      Head old = s->to;
      old.size = s->from_size;
      (void)verify_change_set(*s, old, s->to);
      again = encode_change_set(*s);
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
