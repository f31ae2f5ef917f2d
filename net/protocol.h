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

// 2: Hello carries `first`; the snapshot and frontier messages (ids 9..14).
// 3: HeadMsg carries `first` too (a node that compacts while connected says so),
//    and the page service messages (ids 15..19, docs/light-client.md "Page service").
// 4: Hello carries `features` (capability bits, below), and GetChanges /
//    Changes (ids 20, 21), sent only to a node whose Hello has kFeatureChanges.
// Versions 1..3 are not spoken any more: a node of another version is
// refused in the handshake (docs/formats/protocol.md "Versions").
inline constexpr uint16_t kProtocolVersion = 4;
// Hello `features` bits (docs/formats/protocol.md "Features"): what optional
// requests the sender answers. A message gated by a bit is sent only to a node
// that announced it; unknown bits are kept and ignored, so a later build can
// add a bit (and its messages) without a version bump.
inline constexpr uint64_t kFeatureChanges = 1;  // answers GetChanges (ids 20, 21)
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
// Snapshot transfer (docs/formats/snapshot.md): a chunk carries at most 8 MiB of
// pages (kMaxChunkPageBytes in sqlbridge/engine/snapshot_chunk.h, which this
// codec does not link) plus its head and a multiproof of at most 128 hashes:
// 64 KiB covers those with room to spare, and the frame stays under kMaxFrameBytes.
inline constexpr size_t kMaxSnapshotChunkBytes = (8u << 20) + (64u << 10);
// Pages per GetSnapshotPages: what 8 MiB of the smallest (512-byte) pages holds,
// as decode_snapshot_request allows.
inline constexpr uint32_t kMaxSnapshotPagesPerRequest = (8u << 20) / 512;
// Page service (docs/formats/pages.md): page numbers per GetPages / GetLeaves
// (kMaxPagesPerRequest / kMaxLeavesPerRequest of sqlbridge/engine/page_set.h,
// which this codec does not link; net/node.cpp checks they agree), and the
// largest encoded PageSet (256 pages of 64 KiB, head, numbers, a proof of at
// most 6,654 hashes: 16 MiB + 256 KiB holds it) and LeafSet a frame carries
// (what is left of a frame; a node whose answer is larger says so instead).
inline constexpr size_t kMaxGetPagesPgnos = 256;
inline constexpr size_t kMaxGetLeavesPgnos = 1u << 16;
inline constexpr size_t kMaxPagesMsgBytes = (16u << 20) + (256u << 10);
inline constexpr size_t kMaxLeavesMsgBytes = kMaxFrameBytes - 64;
// The largest encoded ChangeSet a Changes message carries: kMaxChangeSetBytes
// of sqlbridge/engine/page_set.h (about 3.2 MB, which this codec does not link;
// net/node.cpp checks it fits) with room to spare.
inline constexpr size_t kMaxChangesMsgBytes = 4u << 20;
// An entry in a Frontier message: EntryLimits::max_entry_bytes (16 MiB).
inline constexpr size_t kMaxFrontierEntryBytes = 16u << 20;

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
  get_snapshot = 9,
  snapshot_manifest = 10,
  get_snapshot_pages = 11,
  snapshot_pages = 12,
  get_frontier = 13,
  frontier = 14,
  get_pages = 15,
  pages = 16,
  get_leaves = 17,
  leaves = 18,
  head_gone = 19,
  get_changes = 20,
  changes = 21,
};
std::string_view message_type_name(MessageType t);

// First message on every connection, both directions.
struct Hello {
  uint16_t version = kProtocolVersion;
  PublicKey log_id;
  uint64_t node_id = 0;            // random per process: detects self- and duplicate connections
  std::optional<Head> head;        // sender's newest verified head it holds entries for
  std::string listen;              // "host:port" others may dial, or "" (does not accept)
  // The first entry seq the sender can serve (0: all of them). Entries below it
  // were compacted away; a peer that needs them asks someone else or
  // bootstraps from a snapshot (docs/protocol.md "First servable entry").
  uint64_t first = 0;
  // Capability bits (kFeatureChanges, …): optional requests the sender answers.
  uint64_t features = 0;
  friend bool operator==(const Hello&, const Hello&) = default;
};

// Push: the sender holds this head and every entry it covers, and serves the
// entries from `first` on (as Hello's `first`). Sent on every new head and
// again, with the same head, when the sender's log was compacted
// (docs/protocol.md "First servable entry").
struct HeadMsg {
  Head head;
  uint64_t first = 0;
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
  not_available = 6,   // the sender cannot serve it (entries it lacks, no pages, no change history)
  duplicate = 7,       // already connected to this node (or it is ourselves) (then close)
  shutting_down = 8,   // then close
  // Answer to GetSnapshotPages: the snapshot at that size is no longer held;
  // the message says the newest held size ("gone: ...; newest held is M").
  snapshot_gone = 9,
};

struct ErrorMsg {
  ErrorCode code = ErrorCode::bad_request;
  std::string message;  // at most kMaxErrorMessageBytes, informational
  friend bool operator==(const ErrorMsg&, const ErrorMsg&) = default;
};

// Snapshot transfer (docs/protocol.md "Snapshots", docs/formats/snapshot.md).
// Pins (or reuses) a snapshot at the receiver's newest signed head.
struct GetSnapshot {
  friend bool operator==(const GetSnapshot&, const GetSnapshot&) = default;
};

// Answer to GetSnapshot (unverified: the requester checks the head's signature).
struct SnapshotManifestMsg {
  Head head;
  uint32_t page_size = 0;    // a power of two in 512..65536
  uint32_t chunk_pages = 0;  // suggested pages per request, 1..kMaxSnapshotPagesPerRequest
  friend bool operator==(const SnapshotManifestMsg&, const SnapshotManifestMsg&) = default;
};

// Pages first_page .. first_page+count-1 (1-based) of the snapshot at log size `size`.
struct GetSnapshotPages {
  uint64_t size = 0;        // >= 1
  uint32_t first_page = 0;  // >= 1
  uint32_t count = 0;       // 1..kMaxSnapshotPagesPerRequest
  friend bool operator==(const GetSnapshotPages&, const GetSnapshotPages&) = default;
};

// Answer to GetSnapshotPages: the encoded chunk of sqlbridge/engine/snapshot_chunk.h,
// opaque here (the fetcher decodes and verifies it), at most kMaxSnapshotChunkBytes.
struct SnapshotPages {
  Bytes chunk;
  friend bool operator==(const SnapshotPages&, const SnapshotPages&) = default;
};

// The Merkle frontier of the log at size N, for a node that starts from a
// snapshot at head N: entry N-1 and its inclusion path in the tree of size N.
struct GetFrontier {
  uint64_t size = 0;  // N >= 1
  friend bool operator==(const GetFrontier&, const GetFrontier&) = default;
};

// Answer to GetFrontier: `path` = inclusion proof of entry size-1 in the tree
// of `size` leaves (exactly inclusion_proof_size(size-1, size) hashes: checked
// by the decoder). The requester checks it against head N's log_root
// (net/frontier.h frontier_from_last_leaf_path).
struct Frontier {
  uint64_t size = 0;
  Bytes last_entry;  // encoded entry size-1 (docs/formats/entry.md)
  std::vector<Hash32> path;
  friend bool operator==(const Frontier&, const Frontier&) = default;
};

// Page service (docs/protocol.md "Page service", docs/formats/pages.md): pages
// or leaf hashes `pgnos` (strictly increasing, from 1) of the head of log size
// `size` (0: the receiver's newest pinned head), answered off the io thread.
struct GetPages {
  uint64_t size = 0;
  std::vector<uint32_t> pgnos;  // 1..kMaxGetPagesPgnos numbers
  friend bool operator==(const GetPages&, const GetPages&) = default;
};
struct GetLeaves {
  uint64_t size = 0;
  std::vector<uint32_t> pgnos;  // 1..kMaxGetLeavesPgnos numbers
  friend bool operator==(const GetLeaves&, const GetLeaves&) = default;
};
// Answers: the encoded PageSet / LeafSet of docs/formats/pages.md, opaque here
// (the requester decodes and verifies it).
struct PagesMsg {
  Bytes set;  // at most kMaxPagesMsgBytes
  friend bool operator==(const PagesMsg&, const PagesMsg&) = default;
};
struct LeavesMsg {
  Bytes set;  // at most kMaxLeavesMsgBytes
  friend bool operator==(const LeavesMsg&, const LeavesMsg&) = default;
};
// Answer to GetPages / GetLeaves / GetChanges: the receiver does not (or no
// longer) hold head `size` (GetChanges: `to_size`) pinned; `newest` is the
// one it serves, to ask again at.
struct HeadGoneMsg {
  uint64_t size = 0;
  uint64_t newest = 0;  // >= 1
  friend bool operator==(const HeadGoneMsg&, const HeadGoneMsg&) = default;
};

// The pages changed from the head of log size `from_size` to the pinned head
// of `to_size` (0: the newest pinned head; else at least from_size), as an
// encoded ChangeSet (docs/formats/pages.md "Change set"). Sent only to a node
// whose Hello has kFeatureChanges; answered off the io thread like GetLeaves,
// with Changes, HeadGone{to_size, newest}, or an Error (no change history,
// too many changes: the requester asks GetLeaves instead).
struct GetChanges {
  uint64_t from_size = 0;
  uint64_t to_size = 0;
  friend bool operator==(const GetChanges&, const GetChanges&) = default;
};
struct ChangesMsg {
  Bytes set;  // at most kMaxChangesMsgBytes; opaque here (the requester decodes and verifies it)
  friend bool operator==(const ChangesMsg&, const ChangesMsg&) = default;
};

using Message = std::variant<Hello, HeadMsg, GetEntries, Entries, GetPeers, Peers, EvidenceMsg,
                             ErrorMsg, GetSnapshot, SnapshotManifestMsg, GetSnapshotPages,
                             SnapshotPages, GetFrontier, Frontier, GetPages, PagesMsg, GetLeaves,
                             LeavesMsg, HeadGoneMsg, GetChanges, ChangesMsg>;

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
