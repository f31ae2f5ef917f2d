// Fuzz target: the query proof decoder and the verifier behind it. Inputs that
// decode are verified against a fixed test key (the seed corpus is signed with
// it, so mutations of SQL and pages get past the signature into the multiproof
// and the guarded re-run). Must never crash, allocate without bound, or run
// long: the decoder caps sizes, the guard caps each re-run at 50 ms.
#include <cstddef>
#include <cstdint>

#include "sqlbridge/proof/proof_test_util.h"
#include "sqlbridge/proof/verifier.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace swarmlite;
  static const KeyPair key = proof_testing::fixed_test_key();
  static const VerifyOptions options = [] {
    VerifyOptions o;
    o.limits.max_proof_bytes = 1 << 20;
    o.guard.time_limit = std::chrono::milliseconds(50);
    o.guard.max_vm_steps = 5'000'000;
    o.guard.max_rows = 1000;
    o.guard.max_result_bytes = 1 << 20;
    o.guard.max_value_length = 1 << 20;
    return o;
  }();
  auto decoded = decode_query_proof(ByteView(data, size), options.limits);
  if (!decoded.ok()) return 0;
  // Canonical: what decodes re-encodes to the same bytes.
  if (encode_query_proof(*decoded) != Bytes(data, data + size)) __builtin_trap();
  (void)Verifier::verify(key.pub, *decoded, options);
  return 0;
}
