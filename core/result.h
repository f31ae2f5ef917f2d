// Errors as values (docs/hacking.md "Style"). A Result<T> holds either a T or an Error
// whose code says what kind of failure and whose message says what and where
// (offset, seq, page, file). "Proof does not verify" is an ordinary Error with a
// verification code, distinct from misuse (Errc::invalid_argument).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace swarmlite {

enum class Errc {
  invalid_argument,   // caller misuse or bad user input (flags, SQL given to the wrong API)
  truncated,          // decoder ran out of bytes
  trailing_bytes,     // decoder finished with bytes left over
  bad_version,        // unknown format/protocol version
  non_canonical,      // a value has more than one encoding and this is not the canonical one
  too_large,          // a length or count is over its cap
  bad_value,          // a field holds a value outside its domain (bad type tag, bad flag)
  bad_signature,      // Ed25519 signature does not verify
  proof_failed,       // a Merkle proof / query proof does not verify
  root_mismatch,      // recomputed root differs from the claimed one
  equivocation,       // two heads that cannot both be honest
  io_error,           // the OS said no (open, read, write, fsync)
  corrupt,            // stored data fails its checksum or framing
  not_found,          // asked for something that is not there (seq beyond end, missing file)
  sqlite_error,       // SQLite reported an error
  refused,            // a statement or request is not allowed (non-deterministic, writes on a peer)
  diverged,           // replay produced a different state than the primary signed
  unavailable,        // try again later (timeouts, no peer has it)
  internal,           // a bug: an invariant did not hold
};

std::string_view errc_name(Errc c);

struct Error {
  Errc code;
  std::string message;

  // "<code>: <message>", for logs and CLI output.
  std::string to_string() const { return fmt::format("{}: {}", errc_name(code), message); }
};

template <class... Args>
Error make_error(Errc code, fmt::format_string<Args...> f, Args&&... args) {
  return Error{code, fmt::format(f, std::forward<Args>(args)...)};
}

// E: the error type; Error everywhere but where a caller needs a richer one
// (client/client_error.h ClientResult). Result<void> exists for Error only.
template <class T, class E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(E error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const E& error() const { assert(!ok()); return std::get<1>(v_); }
  E&& take_error() { assert(!ok()); return std::get<1>(std::move(v_)); }
  // error().to_string(), or "" when ok: for messages evaluated whether or not a
  // check fails (doctest -s evaluates them on passing checks too).
  std::string error_text() const { return ok() ? std::string() : error().to_string(); }

 private:
  std::variant<T, E> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), failed_(true) {}  // NOLINT

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { assert(failed_); return err_; }
  Error&& take_error() { assert(failed_); return std::move(err_); }
  // As Result<T>::error_text(): "" when ok, for check messages (doctest -s).
  std::string error_text() const { return ok() ? std::string() : err_.to_string(); }

 private:
  Error err_{Errc::internal, {}};
  bool failed_ = false;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace swarmlite

// Propagate an error from an expression returning Result<...>/Status.
#define SWL_TRY(expr)                                   \
  do {                                                  \
    auto&& swl_try_r_ = (expr);                         \
    if (!swl_try_r_.ok()) return swl_try_r_.take_error(); \
  } while (0)

#define SWL_CONCAT_INNER(a, b) a##b
#define SWL_CONCAT(a, b) SWL_CONCAT_INNER(a, b)
// SWL_ASSIGN(auto x, expr): x = value of expr, or return its error.
#define SWL_ASSIGN(decl, expr) SWL_ASSIGN_IMPL(SWL_CONCAT(swl_assign_r_, __LINE__), decl, expr)
#define SWL_ASSIGN_IMPL(tmp, decl, expr)       \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.take_error();      \
  decl = std::move(tmp).value()
