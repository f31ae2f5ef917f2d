// Fuzz target for decode_entry (docs/formats/entry.md). Beyond "never crash",
// it checks the canonical property: every accepted input re-encodes to exactly
// the same bytes and decodes again to an equal entry; and check_entry (the
// decoder's checks without building the entry) accepts exactly what
// decode_entry accepts, with the same error; and decode_entry_into, decoding
// into the entry the previous inputs left (as a replica reuses the entries it
// replayed), gives the same verdict and an equal entry. A mismatch aborts.
#include <cstdio>
#include <algorithm>
#include <cstdlib>

#include "core/entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  ByteView in(data, size);
  // Small caps so the fuzzer reaches the limit checks with small inputs.
  EntryLimits small;
  small.max_statements = 8;
  small.max_sql_bytes = 64;
  small.max_params = 8;
  small.max_value_bytes = 64;
  small.max_total_params = 16;
  for (const EntryLimits& limits : {EntryLimits{}, small}) {
    auto e = decode_entry(in, limits);
    Status checked = check_entry(in, limits);
    if (e.ok() != checked.ok() ||
        (!e.ok() && (e.error().code != checked.error().code ||
                     e.error().message != checked.error().message))) {
      std::fprintf(stderr, "entry_fuzz: check_entry and decode_entry disagree\n");
      std::abort();
    }
    static Entry reused;  // whatever the inputs before this one left in it
    Status into = decode_entry_into(in, reused, limits);
    if (into.ok() != e.ok() || (e.ok() && !(reused == *e)) ||
        (!e.ok() && into.error().message != e.error().message)) {
      std::fprintf(stderr, "entry_fuzz: decode_entry_into and decode_entry disagree\n");
      std::abort();
    }
    if (!e.ok()) continue;
    Bytes again = encode_entry(*e);
    if (again.size() != size || !std::equal(again.begin(), again.end(), in.begin())) {
      std::fprintf(stderr, "entry_fuzz: accepted input does not re-encode to itself\n");
      std::abort();
    }
    auto e2 = decode_entry(again, limits);
    if (!e2.ok() || !(*e2 == *e)) {
      std::fprintf(stderr, "entry_fuzz: re-encoded entry does not decode to an equal entry\n");
      std::abort();
    }
  }
  return 0;
}
