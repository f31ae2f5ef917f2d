// Head codec and signature (docs/formats/head.md).
#include "core/head.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>

#include "core/codec.h"

namespace swarmlite {

namespace {

// Every field but the version byte and the signature, in wire order: the part
// of the encoding the signature covers.
void write_signed_fields(Writer& w, const Head& h) {
  w.raw(h.log_id.bytes);
  w.u64(h.size);
  w.hash(h.log_root);
  w.hash(h.state_root);
  w.u32(h.page_count);
  w.i64(h.time_ms);
}

constexpr size_t kSignedFieldsSize = kEncodedHeadSize - 1 - 64;

// Heads that verified, remembered (docs/performance.md "Verifying a head
// once"). A node meets the same signed head several times: a peer's push,
// then the Entries answer that carries it, then Log::append_proven; a client
// checks the same head in every proof answered against it. An Ed25519 verify
// costs several hundred times the scan below. Only heads whose signature
// verified are kept, and a hit needs every field, the signature included, to
// be equal (Head's ==), so a head differing in any bit is verified afresh.
class VerifiedHeads {
 public:
  bool contains(const Head& h) {
    std::lock_guard lock(mu_);
    for (const Head& s : slots_) {
      if (s.signature == h.signature && s == h) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
    return false;
  }
  void add(const Head& h) {
    std::lock_guard lock(mu_);
    slots_[next_] = h;
    next_ = (next_ + 1) % slots_.size();
  }
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;
  // Round-robin replacement. 32 covers the heads in flight on a busy node
  // (one per recent entry batch, per peer pushing the same one); an all-zero
  // slot never matches, since a zero signature never verifies.
  std::array<Head, 32> slots_{};
  size_t next_ = 0;
  std::atomic<uint64_t> hits_{0};
};

VerifiedHeads& verified_heads() {
  static VerifiedHeads cache;
  return cache;
}

}  // namespace

uint64_t head_verify_cache_hits() { return verified_heads().hits(); }

Bytes Head::signing_bytes() const {
  Writer w;
  w.raw(as_bytes(kHeadContext));
  write_signed_fields(w, *this);
  assert(w.size() == kHeadContext.size() + kSignedFieldsSize);
  return w.take();
}

void Head::sign_with(const SecretKey& key) {
  assert(key.public_key() == log_id);
  signature = sign(key, signing_bytes());
}

Status Head::verify(const PublicKey& expected_log_id) const {
  if (log_id != expected_log_id) {
    return make_error(Errc::bad_signature, "head is signed by {}, expected log {}", log_id.hex(),
                      expected_log_id.hex());
  }
  if (verified_heads().contains(*this)) return {};
  if (!verify_signature(log_id, signing_bytes(), signature)) {
    return make_error(Errc::bad_signature,
                      "head (size {}, log root {}) has a signature that does not verify under "
                      "log {}",
                      size, to_hex(log_root), log_id.hex());
  }
  verified_heads().add(*this);
  return {};
}

Bytes encode_head(const Head& head) {
  Writer w;
  w.u8(kHeadVersion);
  write_signed_fields(w, head);
  w.raw(head.signature);
  assert(w.size() == kEncodedHeadSize);
  return w.take();
}

Result<Head> decode_head(ByteView bytes) {
  Reader r(bytes, "head");
  SWL_TRY(r.preamble(kHeadVersion));
  Head h;
  SWL_ASSIGN(h.log_id.bytes, r.hash("log_id"));
  SWL_ASSIGN(h.size, r.u64("size"));
  SWL_ASSIGN(h.log_root, r.hash("log_root"));
  SWL_ASSIGN(h.state_root, r.hash("state_root"));
  SWL_ASSIGN(h.page_count, r.u32("page_count"));
  SWL_ASSIGN(h.time_ms, r.i64("time_ms"));
  SWL_ASSIGN(ByteView sig, r.raw(h.signature.size(), "signature"));
  std::copy(sig.begin(), sig.end(), h.signature.begin());
  SWL_TRY(r.expect_end());
  return h;
}

Result<Head> read_head(Reader& r, std::string_view field) {
  const size_t at = r.offset();
  SWL_ASSIGN(ByteView raw, r.raw(kEncodedHeadSize, field));
  auto head = decode_head(raw);
  if (!head.ok()) return r.fail_at(head.error().code, at, field, head.error().message);
  return std::move(head).value();
}

}  // namespace swarmlite
