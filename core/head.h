// Signed head (docs/formats/head.md): the primary's statement
// "after `size` entries the log root is X and the database state root is Y".
// signature = Ed25519 over "swarmlite/head/v1" ‖ fields (every field but the signature).
#pragma once

#include <cstdint>

#include "core/bytes.h"
#include "core/codec.h"
#include "core/keys.h"
#include "core/result.h"

namespace swarmlite {

inline constexpr uint8_t kHeadVersion = 1;
inline constexpr std::string_view kHeadContext = "swarmlite/head/v1";

struct Head {
  PublicKey log_id;      // the primary's public key
  uint64_t size = 0;     // number of entries covered
  Hash32 log_root{};     // log tree root at `size`
  Hash32 state_root{};   // state after entry size-1 (empty_root() when size == 0)
  uint32_t page_count = 0;
  int64_t time_ms = 0;   // when the primary signed it
  Signature signature{};

  // The exact bytes the signature covers.
  Bytes signing_bytes() const;
  // Fills `signature`. Precondition: key.public_key() == log_id.
  void sign_with(const SecretKey& key);
  // bad_signature unless log_id == expected and the signature verifies.
  // Thread-safe. Remembers the last few heads that verified (byte-equal heads
  // then cost a scan instead of an Ed25519 verify; see head.cpp).
  Status verify(const PublicKey& expected_log_id) const;
  friend bool operator==(const Head&, const Head&) = default;
};

// How many Head::verify calls the remembered heads answered (process-wide).
uint64_t head_verify_cache_hits();

Bytes encode_head(const Head& head);
Result<Head> decode_head(ByteView bytes);
inline constexpr size_t kEncodedHeadSize = 1 + 32 + 8 + 32 + 32 + 4 + 8 + 64;
// A head embedded in another format: exactly kEncodedHeadSize bytes decoded
// once; an error names the outer object, the field and its offset, then the
// head's own error ("evidence: head b at offset 196: head: version at ...").
Result<Head> read_head(Reader& r, std::string_view field);

}  // namespace swarmlite
