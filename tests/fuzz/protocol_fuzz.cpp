// Fuzz target for the peer protocol codec (net/protocol.h): any bytes either
// fail to decode with an error, or decode to a message whose encoding is
// exactly the input (one canonical frame per message). Never a crash, never an
// allocation beyond the caps.
#include <cstdint>
#include <cstdlib>

#include "net/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  ByteView in(data, size);
  auto m = net::decode_frame(in);
  if (m.ok()) {
    Bytes again = net::encode_frame(m.value());
    if (again.size() != size || !std::equal(again.begin(), again.end(), in.begin())) std::abort();
  }
  // The body alone, as the node reads it after the header.
  (void)net::decode_message(in);
  return 0;
}
