// Primitive binary encoding shared by every format (docs/formats/encoding.md):
// fixed-width big-endian integers, length-prefixed byte strings (u32 length).
// Fixed widths make canonical form automatic: every value has exactly one
// encoding, so "non-canonical" errors come only from domain rules (e.g. a bool
// byte that is neither 0 nor 1, a NaN with a payload).
//
// Reader never reads past its span; every error names the field and the offset.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace swarmlite {

class Writer {
 public:
  Writer() = default;
  // Writes into `reuse`, cleared: its capacity is kept (a buffer recycled
  // from an earlier encoding).
  explicit Writer(Bytes reuse) : out_(std::move(reuse)) { out_.clear(); }
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put_be(v, 2); }
  void u32(uint32_t v) { put_be(v, 4); }
  void u64(uint64_t v) { put_be(v, 8); }
  void i64(int64_t v) { put_be(static_cast<uint64_t>(v), 8); }
  void f64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    put_be(bits, 8);
  }
  void raw(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void hash(const Hash32& h) { raw(h); }
  // u32 length then the bytes.
  void blob(ByteView b) {
    u32(static_cast<uint32_t>(b.size()));
    raw(b);
  }
  void str(std::string_view s) { blob(as_bytes(s)); }

  void reserve(size_t n) { out_.reserve(n); }
  Bytes& bytes() { return out_; }
  Bytes take() { return std::move(out_); }
  size_t size() const { return out_.size(); }

 private:
  void put_be(uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(v >> (8 * (n - 1 - i)));
    out_.insert(out_.end(), b, b + n);
  }
  Bytes out_;
};

class Reader {
 public:
  // `what` names the whole object in error messages ("entry", "head", ...).
  explicit Reader(ByteView in, std::string_view what = "input") : in_(in), what_(what) {}

  std::string_view what() const { return what_; }
  size_t offset() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }
  bool at_end() const { return pos_ == in_.size(); }

  Result<uint8_t> u8(std::string_view field) {
    SWL_TRY(need(1, field));
    return in_[pos_++];
  }
  Result<uint16_t> u16(std::string_view field) { return get_be<uint16_t>(2, field); }
  Result<uint32_t> u32(std::string_view field) { return get_be<uint32_t>(4, field); }
  Result<uint64_t> u64(std::string_view field) { return get_be<uint64_t>(8, field); }
  Result<int64_t> i64(std::string_view field) {
    SWL_ASSIGN(uint64_t v, get_be<uint64_t>(8, field));
    return static_cast<int64_t>(v);
  }
  Result<double> f64(std::string_view field) {
    SWL_ASSIGN(uint64_t bits, get_be<uint64_t>(8, field));
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  Result<Hash32> hash(std::string_view field) {
    SWL_TRY(need(32, field));
    Hash32 h;
    std::memcpy(h.data(), in_.data() + pos_, 32);
    pos_ += 32;
    return h;
  }
  // Exactly n bytes, as a view into the input.
  Result<ByteView> raw(size_t n, std::string_view field) {
    SWL_TRY(need(n, field));
    ByteView v = in_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  // u32 length (checked against max_len before anything is allocated) then bytes.
  Result<ByteView> blob(std::string_view field, size_t max_len) {
    size_t at = pos_;
    SWL_ASSIGN(uint32_t n, u32(field));
    if (n > max_len) {
      return make_error(Errc::too_large, "{}: {} at offset {} has length {}, over the cap of {}",
                        what_, field, at, n, max_len);
    }
    return raw(n, field);
  }
  Result<std::string> str(std::string_view field, size_t max_len) {
    SWL_ASSIGN(ByteView b, blob(field, max_len));
    return std::string(as_chars(b));
  }
  // The preamble of every versioned format (docs/formats/encoding.md): the
  // whole input is at most max_bytes (too_large, checked before anything is
  // read), then a version byte that must be `expected` (bad_version). Errors
  // name this reader's object: "entry: version at offset 0: 2 is not a known
  // entry version (expected 1)".
  Status preamble(uint8_t expected, size_t max_bytes = std::numeric_limits<size_t>::max());
  // A u32 item count. Over `cap`: too_large. With min_item_bytes > 0, also
  // truncated when that many items of at least min_item_bytes each cannot fit
  // in the bytes left, less reserved_after bytes that must follow the items —
  // so a hostile count is refused before anything is allocated for it.
  Result<size_t> count(std::string_view field, size_t cap, size_t min_item_bytes = 0,
                       size_t reserved_after = 0);
  // Fails with trailing_bytes unless every byte was consumed.
  Status expect_end() const {
    if (!at_end()) {
      return make_error(Errc::trailing_bytes, "{}: {} trailing byte(s) at offset {}", what_,
                        remaining(), pos_);
    }
    return {};
  }
  // An error that names this reader's object and the current offset.
  Error fail(Errc code, std::string_view field, std::string_view why) const {
    return make_error(code, "{}: {} at offset {}: {}", what_, field, pos_, why);
  }
  Error fail_at(Errc code, size_t at, std::string_view field, std::string_view why) const {
    return make_error(code, "{}: {} at offset {}: {}", what_, field, at, why);
  }

 private:
  Status need(size_t n, std::string_view field) const {
    if (remaining() < n) {
      return make_error(Errc::truncated, "{}: {} at offset {} needs {} byte(s), {} left", what_,
                        field, pos_, n, remaining());
    }
    return {};
  }
  template <class T>
  Result<T> get_be(int n, std::string_view field) {
    SWL_TRY(need(static_cast<size_t>(n), field));
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | in_[pos_ + static_cast<size_t>(i)];
    pos_ += static_cast<size_t>(n);
    return static_cast<T>(v);
  }

  ByteView in_;
  std::string_view what_;
  size_t pos_ = 0;
};

// A bare list of hashes: u32 count, then count x 32 bytes (no version byte; for
// embedding in other formats, e.g. a query proof's multiproof hashes).
void write_hash_list(Writer& w, std::span<const Hash32> hashes);
// Reads a hash list with at most `max` hashes; too_large over the cap, truncated
// when the input is shorter than count x 32 (checked before allocating).
Result<std::vector<Hash32>> read_hash_list(Reader& r, std::string_view field, size_t max);
// Reads exactly `count` hashes after checking the input holds them.
Result<std::vector<Hash32>> read_hashes(Reader& r, std::string_view field, size_t count);

}  // namespace swarmlite
