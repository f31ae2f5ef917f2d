// The peer protocol's messages and framing (docs/formats/protocol.md).
// Pure: no sockets. Every decoder checks each length and count against a cap
// before allocating, rejects trailing bytes and non-canonical values, and says
// which field at which offset failed.
//
//   frame   = length:u32 · type:u8 · payload       (big-endian; length counts type + payload)
//   1 <= length <= max_frame (default kMaxFrameBytes) — checked from the 4-byte
//   header alone, before the body is read or allocated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/bytes.h"
#include "core/evidence.h"
#include "core/head.h"
#include "core/result.h"

namespace swarmlite::net {

inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 4;
// An entry may be up to EntryLimits::max_entry_bytes (16 MiB); the frame must
// carry one such entry plus its head and proofs, hence 16 MiB + 1 MiB.
inline constexpr size_t kMaxFrameBytes = (16u << 20) + (1u << 20);
inline constexpr size_t kMaxBatchEntries = 4096;     // entries in one Entries message
inline constexpr size_t kMaxAddresses = 64;          // addresses in one Peers message
inline constexpr size_t kMaxAddressBytes = 255;      // one "host:port"
inline constexpr size_t kMaxErrorMessageBytes = 1024;
inline constexpr size_t kMaxEvidenceBytes = 4096;    // two heads + a 64-hash path fits easily
inline constexpr size_t kMaxWireProofHashes = 64;    // any consistency proof / path

// Wire ids: fixed forever; never reuse a retired id.
enum class MessageType : uint8_t {
  hello = 1,
  head = 2,
  get_entries = 3,
  entries = 4,
  get_peers = 5,
  peers = 6,
  evidence = 7,
  error = 8,
};
std::string_view message_type_name(MessageType t);

// First message on every connection, both directions.
struct Hello {
  uint16_t version = kProtocolVersion;
  PublicKey log_id;
  uint64_t node_id = 0;            // random per process: detects self- and duplicate connections
  std::optional<Head> head;        // sender's newest verified head it holds entries for
  std::string listen;              // "host:port" others may dial, or "" (does not accept)
  friend bool operator==(const Hello&, const Hello&) = default;
};

// Push: the sender holds this head and every entry it covers.
struct HeadMsg {
  Head head;
  friend bool operator==(const HeadMsg&, const HeadMsg&) = default;
};

// Request entries [from, from+count). `anchor` = size of the requester's newest
// signed head (0: none); the answer proves the served head extends it.
struct GetEntries {
  uint64_t from = 0;
  uint32_t count = 0;
  uint64_t anchor = 0;
  friend bool operator==(const GetEntries&, const GetEntries&) = default;
};

// Answer to GetEntries: entries [from, from+entries.size()) (encoded core
// entries), the sender's head H (H.size >= from + entries.size()),
// `proof` = consistency proof from from+entries.size() to H.size (empty when
// equal), `anchor_path` = complete consistency path (core/evidence.h) from the
// request's anchor to H.size (empty when anchor is 0 or >= H.size).
struct Entries {
  uint64_t from = 0;
  std::vector<Bytes> entries;
  Head head;
  std::vector<Hash32> proof;
  std::vector<Hash32> anchor_path;
  friend bool operator==(const Entries&, const Entries&) = default;
};

struct GetPeers {
  friend bool operator==(const GetPeers&, const GetPeers&) = default;
};

struct Peers {
  std::vector<std::string> addresses;  // "host:port", at most kMaxAddresses
  friend bool operator==(const Peers&, const Peers&) = default;
};

struct EvidenceMsg {
  Evidence evidence;
  friend bool operator==(const EvidenceMsg&, const EvidenceMsg&) = default;
};

enum class ErrorCode : uint16_t {
  bad_version = 1,     // protocol version not spoken here (then close)
  wrong_log = 2,       // another log id (then close)
  banned = 3,          // the receiver banned the sender (then close)
  too_many_peers = 4,  // connection cap reached (then close)
  bad_request = 5,     // malformed or out-of-range request
  not_available = 6,   // answer to GetEntries: the sender has none of those entries
  duplicate = 7,       // already connected to this node (or it is ourselves) (then close)
  shutting_down = 8,   // then close
};

struct ErrorMsg {
  ErrorCode code = ErrorCode::bad_request;
  std::string message;  // at most kMaxErrorMessageBytes, informational
  friend bool operator==(const ErrorMsg&, const ErrorMsg&) = default;
};

using Message =
    std::variant<Hello, HeadMsg, GetEntries, Entries, GetPeers, Peers, EvidenceMsg, ErrorMsg>;

MessageType message_type(const Message& m);

// The whole frame: header + type + payload. Precondition: fits kMaxFrameBytes
// (encoders of Entries batches keep under it; see batch caps in the node).
Bytes encode_frame(const Message& m);
// Payload only (no header, no type byte).
Bytes encode_payload(const Message& m);

// From the 4 header bytes: the length of what follows (type + payload).
// too_large over max_frame, bad_value when 0.
Result<uint32_t> decode_frame_length(ByteView header4, size_t max_frame = kMaxFrameBytes);
// `body` = type byte + payload (the `length` bytes after the header).
Result<Message> decode_message(ByteView body);
// A whole frame (header + body), e.g. from a fuzzer or a test.
Result<Message> decode_frame(ByteView frame, size_t max_frame = kMaxFrameBytes);

// "host:port" syntax check shared by the codec and the address book: host is a
// name, IPv4 or "[IPv6]", port 1..65535, printable ASCII, no spaces.
struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
};
// `allow_port_zero`: for a listen address ("bind an ephemeral port").
Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero = false);

}  // namespace swarmlite::net
