#include "core/result.h"

namespace swarmlite {

std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::invalid_argument: return "invalid argument";
    case Errc::truncated: return "truncated";
    case Errc::trailing_bytes: return "trailing bytes";
    case Errc::bad_version: return "bad version";
    case Errc::non_canonical: return "non-canonical encoding";
    case Errc::too_large: return "too large";
    case Errc::bad_value: return "bad value";
    case Errc::bad_signature: return "bad signature";
    case Errc::proof_failed: return "proof failed";
    case Errc::root_mismatch: return "root mismatch";
    case Errc::equivocation: return "equivocation";
    case Errc::io_error: return "I/O error";
    case Errc::corrupt: return "corrupt";
    case Errc::not_found: return "not found";
    case Errc::sqlite_error: return "SQLite error";
    case Errc::refused: return "refused";
    case Errc::diverged: return "diverged";
    case Errc::unavailable: return "unavailable";
    case Errc::internal: return "internal error";
  }
  return "unknown error";
}

}  // namespace swarmlite
