// Peer protocol codec: every message round-trips; every malformed input is
// refused with its own error before anything large is allocated.
#include "net/protocol.h"

#include <doctest/doctest.h>

#include "core/codec.h"
#include "core/evidence.h"
#include "core/hash.h"
#include "core/keys.h"

using namespace swarmlite;
using namespace swarmlite::net;

namespace {

const KeyPair& test_keys() {
  static const KeyPair k = [] {
    // Fixed seed-free key is fine: these tests check shapes, not secrecy.
    return KeyPair::generate();
  }();
  return k;
}

Head signed_head(uint64_t size, uint8_t root_byte) {
  Head h;
  h.log_id = test_keys().pub;
  h.size = size;
  h.log_root.fill(root_byte);
  h.state_root.fill(0x22);
  h.page_count = 3;
  h.time_ms = 1700000000000;
  h.sign_with(test_keys().secret);
  return h;
}

Message round_trip(const Message& m) {
  Bytes frame = encode_frame(m);
  auto back = decode_frame(frame);
  REQUIRE_MESSAGE(back.ok(), back.error_text());
  return back.value();
}

Errc decode_error(ByteView frame) {
  auto r = decode_frame(frame);
  REQUIRE_FALSE(r.ok());
  return r.error().code;
}

// A frame with an arbitrary body (type byte + payload).
Bytes frame_of(MessageType type, ByteView payload) {
  Writer w;
  w.u32(static_cast<uint32_t>(payload.size() + 1));
  w.u8(static_cast<uint8_t>(type));
  w.raw(payload);
  return w.take();
}

}  // namespace

TEST_CASE("every message type round-trips through a frame") {
  Hello hello;
  hello.log_id = test_keys().pub;
  hello.node_id = 0x0102030405060708;
  hello.listen = "127.0.0.1:7001";
  CHECK(round_trip(hello) == Message{hello});
  hello.head = signed_head(5, 0x11);
  hello.listen = "";
  CHECK(round_trip(hello) == Message{hello});
  hello.first = 4000;  // a compacted log serves from entry 4000 on
  CHECK(round_trip(hello) == Message{hello});
  hello.features = kFeatureChanges;
  CHECK(round_trip(hello) == Message{hello});

  CHECK(round_trip(HeadMsg{signed_head(9, 0x33)}) == Message{HeadMsg{signed_head(9, 0x33)}});
  CHECK(round_trip(GetEntries{10, 100, 7}) == Message{GetEntries{10, 100, 7}});

  Entries e;
  e.from = 3;
  e.entries = {Bytes{1, 2, 3}, Bytes{}, Bytes(1000, 0xab)};
  e.head = signed_head(8, 0x44);
  e.proof = {Hash32{}, blake2b(as_bytes("x"))};
  e.anchor_path = {blake2b(as_bytes("y"))};
  CHECK(round_trip(e) == Message{e});

  CHECK(round_trip(GetPeers{}) == Message{GetPeers{}});
  Peers p{{"10.0.0.1:1", "[::1]:65535", "node.example:80"}};
  CHECK(round_trip(p) == Message{p});

  auto ev = evidence_from_heads(signed_head(4, 0x01), signed_head(4, 0x02));
  REQUIRE(ev.ok());
  CHECK(round_trip(EvidenceMsg{ev.value()}) == Message{EvidenceMsg{ev.value()}});
  CHECK(round_trip(ErrorMsg{ErrorCode::wrong_log, "other log"}) ==
        Message{ErrorMsg{ErrorCode::wrong_log, "other log"}});
  CHECK(round_trip(ErrorMsg{ErrorCode::snapshot_gone, "gone; newest held is 9"}) ==
        Message{ErrorMsg{ErrorCode::snapshot_gone, "gone; newest held is 9"}});

  CHECK(round_trip(GetSnapshot{}) == Message{GetSnapshot{}});
  SnapshotManifestMsg m{signed_head(12, 0x55), 4096, 1024};
  CHECK(round_trip(m) == Message{m});
  CHECK(round_trip(GetSnapshotPages{12, 1, 1024}) == Message{GetSnapshotPages{12, 1, 1024}});
  SnapshotPages pages{Bytes(5000, 0x5a)};
  CHECK(round_trip(pages) == Message{pages});
  CHECK(round_trip(GetFrontier{6}) == Message{GetFrontier{6}});
  CHECK(round_trip(GetPages{0, {1, 5, 9}}) == Message{GetPages{0, {1, 5, 9}}});
  std::vector<uint32_t> many(kMaxGetLeavesPgnos);
  for (uint32_t i = 0; i < many.size(); ++i) many[i] = 2 * i + 1;
  CHECK(round_trip(GetLeaves{7, many}) == Message{GetLeaves{7, many}});
  CHECK(round_trip(PagesMsg{Bytes(9000, 0x11)}) == Message{PagesMsg{Bytes(9000, 0x11)}});
  CHECK(round_trip(LeavesMsg{Bytes(300, 0x22)}) == Message{LeavesMsg{Bytes(300, 0x22)}});
  CHECK(round_trip(HeadGoneMsg{5, 9}) == Message{HeadGoneMsg{5, 9}});
  CHECK(round_trip(GetChanges{5, 0}) == Message{GetChanges{5, 0}});
  CHECK(round_trip(GetChanges{5, 9}) == Message{GetChanges{5, 9}});
  CHECK(round_trip(GetChanges{9, 9}) == Message{GetChanges{9, 9}});
  CHECK(round_trip(ChangesMsg{Bytes(600, 0x33)}) == Message{ChangesMsg{Bytes(600, 0x33)}});
  // Size 6 = 0b110: the last leaf's path has countr_zero(6) + popcount(6) - 1 = 2 hashes.
  Frontier f{6, Bytes{1, 2, 3}, {blake2b(as_bytes("a")), blake2b(as_bytes("b"))}};
  CHECK(round_trip(f) == Message{f});
  Frontier one{1, Bytes(70, 7), {}};  // a tree of one leaf: an empty path
  CHECK(round_trip(one) == Message{one});
}

TEST_CASE("snapshot messages: out-of-range fields are refused, naming the field") {
  auto refused = [](const Message& m, std::string_view field) {
    auto r = decode_frame(encode_frame(m));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::bad_value);
    CHECK_MESSAGE(r.error().message.find(field) != std::string::npos, r.error().message);
  };
  refused(GetPages{1, {}}, "count");
  refused(GetPages{1, {0}}, "pgno");
  refused(GetPages{1, {4, 4}}, "strictly increasing");
  refused(GetLeaves{1, {9, 3}}, "strictly increasing");
  refused(HeadGoneMsg{5, 0}, "newest");
  {
    std::vector<uint32_t> over(kMaxGetPagesPgnos + 1);
    for (uint32_t i = 0; i < over.size(); ++i) over[i] = i + 1;
    auto r = decode_frame(encode_frame(GetPages{1, over}));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::too_large);
    over.pop_back();
    CHECK(decode_frame(encode_frame(GetPages{1, over})).ok());
    // A count the bytes left cannot hold is refused before anything is allocated.
    Bytes lying = encode_frame(GetLeaves{1, {1}});
    lying[5 + 8 + 3] = 200;
    CHECK(decode_frame(lying).error().code == Errc::truncated);
  }
  refused(GetSnapshotPages{0, 1, 1}, "size");
  refused(GetSnapshotPages{5, 0, 1}, "first_page");
  refused(GetSnapshotPages{5, 1, 0}, "count");
  refused(GetSnapshotPages{5, 1, kMaxSnapshotPagesPerRequest + 1}, "count");
  CHECK(decode_frame(encode_frame(GetSnapshotPages{5, 1, kMaxSnapshotPagesPerRequest})).ok());
  refused(SnapshotManifestMsg{signed_head(3, 1), 1000, 16}, "page_size");
  refused(SnapshotManifestMsg{signed_head(3, 1), 256, 16}, "page_size");
  refused(SnapshotManifestMsg{signed_head(3, 1), 131072, 16}, "page_size");
  refused(SnapshotManifestMsg{signed_head(3, 1), 4096, 0}, "chunk_pages");
  refused(SnapshotManifestMsg{signed_head(3, 1), 4096, kMaxSnapshotPagesPerRequest + 1}, "chunk_pages");
  refused(GetFrontier{0}, "size");
  refused(Frontier{0, Bytes{1}, {}}, "size");
  refused(Frontier{6, Bytes{1}, {Hash32{}}}, "path");        // 6 needs 2 hashes
  refused(Frontier{6, Bytes{1}, {Hash32{}, Hash32{}, Hash32{}}}, "path");
  refused(Frontier{1, Bytes{1}, {Hash32{}}}, "path");        // 1 needs none
}

TEST_CASE("snapshot messages: lengths are checked before allocating") {
  // A chunk over the cap is refused from its length field alone.
  Writer big;
  big.u32(static_cast<uint32_t>(kMaxSnapshotChunkBytes + 1));
  auto r = decode_frame(frame_of(MessageType::snapshot_pages, big.bytes()));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  CHECK(r.error().message.find("chunk") != std::string::npos);
  // A chunk length claiming more than follows.
  Writer cut;
  cut.u32(1000);
  cut.u8(1);
  CHECK(decode_error(frame_of(MessageType::snapshot_pages, cut.bytes())) == Errc::truncated);
  // The largest chunk fits a frame.
  static_assert(kMaxSnapshotChunkBytes + 16 < kMaxFrameBytes);
  // A frontier entry over its cap, and a path list over the wire cap.
  Writer fe;
  fe.u64(4);
  fe.u32(static_cast<uint32_t>(kMaxFrontierEntryBytes + 1));
  CHECK(decode_error(frame_of(MessageType::frontier, fe.bytes())) == Errc::too_large);
  Writer fp;
  fp.u64(4);
  fp.blob(Bytes{1});
  fp.u32(kMaxWireProofHashes + 1);
  CHECK(decode_error(frame_of(MessageType::frontier, fp.bytes())) == Errc::too_large);
  // Truncated fixed fields.
  CHECK(decode_error(frame_of(MessageType::get_snapshot_pages, Bytes{0, 0, 0, 0, 0, 0, 0, 1})) ==
        Errc::truncated);
  CHECK(decode_error(frame_of(MessageType::get_frontier, Bytes{0, 0, 1})) == Errc::truncated);
  Bytes manifest = encode_payload(SnapshotManifestMsg{signed_head(3, 1), 4096, 16});
  manifest.pop_back();
  CHECK(decode_error(frame_of(MessageType::snapshot_manifest, manifest)) == Errc::truncated);
  // GetSnapshot has no payload: a byte more is trailing.
  CHECK(decode_error(frame_of(MessageType::get_snapshot, Bytes{0})) == Errc::trailing_bytes);
}

TEST_CASE("message type ids are fixed") {
  CHECK(message_type(Hello{}) == MessageType::hello);
  CHECK(static_cast<int>(MessageType::hello) == 1);
  CHECK(static_cast<int>(MessageType::entries) == 4);
  CHECK(static_cast<int>(MessageType::error) == 8);
  CHECK(static_cast<int>(MessageType::get_snapshot) == 9);
  CHECK(static_cast<int>(MessageType::snapshot_manifest) == 10);
  CHECK(static_cast<int>(MessageType::get_snapshot_pages) == 11);
  CHECK(static_cast<int>(MessageType::snapshot_pages) == 12);
  CHECK(static_cast<int>(MessageType::get_frontier) == 13);
  CHECK(static_cast<int>(MessageType::frontier) == 14);
  CHECK(static_cast<int>(MessageType::head_gone) == 19);
  CHECK(static_cast<int>(MessageType::get_changes) == 20);
  CHECK(static_cast<int>(MessageType::changes) == 21);
  CHECK(message_type(GetChanges{}) == MessageType::get_changes);
  CHECK(message_type(ChangesMsg{}) == MessageType::changes);
  CHECK(static_cast<int>(ErrorCode::snapshot_gone) == 9);
  CHECK(encode_frame(GetSnapshot{}) == Bytes{0, 0, 0, 1, 9});
  CHECK(encode_frame(GetPeers{}) == Bytes{0, 0, 0, 1, 5});
}

TEST_CASE("frame length is checked from the header alone") {
  Bytes zero{0, 0, 0, 0};
  CHECK(decode_frame_length(zero).error().code == Errc::bad_value);
  Bytes huge{0xff, 0xff, 0xff, 0xff};
  CHECK(decode_frame_length(huge).error().code == Errc::too_large);
  Bytes at_cap{0, 0, 0, 100};
  CHECK(decode_frame_length(at_cap, 100).value() == 100);
  CHECK(decode_frame_length(at_cap, 99).error().code == Errc::too_large);
  CHECK(decode_frame_length(Bytes{0, 0, 1}).error().code == Errc::truncated);
}

TEST_CASE("truncated and overlong frames are refused") {
  Bytes f = encode_frame(GetEntries{1, 2, 3});
  Bytes cut(f.begin(), f.end() - 1);
  CHECK(decode_error(cut) == Errc::truncated);
  Bytes longer = f;
  longer.push_back(0);
  CHECK(decode_error(longer) == Errc::trailing_bytes);
  // Length field agrees, but the payload has a byte too many.
  Bytes payload = encode_payload(GetEntries{1, 2, 3});
  payload.push_back(0);
  CHECK(decode_error(frame_of(MessageType::get_entries, payload)) == Errc::trailing_bytes);
  CHECK(decode_error(Bytes{0, 0}) == Errc::truncated);
}

TEST_CASE("unknown message types are refused") {
  CHECK(decode_error(Bytes{0, 0, 0, 1, 0}) == Errc::bad_value);
  CHECK(decode_error(Bytes{0, 0, 0, 1, 22}) == Errc::bad_value);  // past Changes (21)
  CHECK(decode_error(Bytes{0, 0, 0, 1, 0xff}) == Errc::bad_value);
}

TEST_CASE("hello of another protocol version is refused as bad_version") {
  Hello h;
  h.log_id = test_keys().pub;
  Bytes payload = encode_payload(h);
  payload[1] = 1;  // version 1 (never deployed; no `first`)
  CHECK(decode_error(frame_of(MessageType::hello, payload)) == Errc::bad_version);
  payload[1] = 2;  // version 2 (Head without `first`, no page service messages)
  CHECK(decode_error(frame_of(MessageType::hello, payload)) == Errc::bad_version);
  payload[1] = 3;  // version 3 (no `features`, no GetChanges)
  CHECK(decode_error(frame_of(MessageType::hello, payload)) == Errc::bad_version);
  payload[1] = 5;
  CHECK(decode_error(frame_of(MessageType::hello, payload)) == Errc::bad_version);
  // Only the version is read: a future Hello may look entirely different.
  CHECK(decode_error(frame_of(MessageType::hello, Bytes{0, 9, 1, 2, 3})) == Errc::bad_version);
}

TEST_CASE("hello with a non-canonical head flag or a bad listen address is refused") {
  Hello h;
  h.log_id = test_keys().pub;
  Bytes payload = encode_payload(h);
  payload[2 + 32 + 8] = 2;  // has_head
  CHECK(decode_error(frame_of(MessageType::hello, payload)) == Errc::non_canonical);
  h.listen = "no-port";
  CHECK(decode_error(encode_frame(h)) == Errc::bad_value);
  h.listen = "host:0";
  CHECK(decode_error(encode_frame(h)) == Errc::bad_value);
  h.listen = std::string(300, 'a') + ":1";
  CHECK(decode_error(encode_frame(h)) == Errc::too_large);
}

TEST_CASE("a head that does not decode is refused") {
  Bytes payload = encode_payload(HeadMsg{signed_head(1, 1)});
  payload[0] = 99;  // head version
  CHECK_FALSE(decode_frame(frame_of(MessageType::head, payload)).ok());
  payload[0] = static_cast<uint8_t>(encode_payload(HeadMsg{signed_head(1, 1)})[0]);
  // Cut inside the head (its last byte and the 8-byte `first` missing).
  Bytes shorter(payload.begin(), payload.end() - 9);
  CHECK(decode_error(frame_of(MessageType::head, shorter)) == Errc::truncated);
}

TEST_CASE("hello features: any bits round-trip; a version-3 Hello (no features) is short") {
  Hello h;
  h.log_id = test_keys().pub;
  h.features = ~uint64_t{0};  // bits this build does not know are kept, not refused
  CHECK(round_trip(h) == Message{h});
  Bytes payload = encode_payload(h);
  // The version-3 layout (everything up to `first`) under the version-4 number.
  Bytes v3_layout(payload.begin(), payload.end() - 8);
  CHECK(decode_error(frame_of(MessageType::hello, v3_layout)) == Errc::truncated);
  payload.push_back(0);
  CHECK(decode_error(frame_of(MessageType::hello, payload)) == Errc::trailing_bytes);
}

TEST_CASE("GetChanges / Changes: backwards, oversized and cut ones are refused") {
  // to_size below from_size: changes go forward (0 is "the newest").
  auto back = decode_frame(encode_frame(GetChanges{9, 5}));
  REQUIRE_FALSE(back.ok());
  CHECK(back.error().code == Errc::bad_value);
  CHECK_MESSAGE(back.error().message.find("to_size") != std::string::npos, back.error().message);
  // A set over the cap is refused from its length field alone.
  Writer big;
  big.u32(static_cast<uint32_t>(kMaxChangesMsgBytes + 1));
  auto over = decode_frame(frame_of(MessageType::changes, big.bytes()));
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().code == Errc::too_large);
  CHECK(over.error().message.find("set") != std::string::npos);
  static_assert(kMaxChangesMsgBytes + 16 < kMaxFrameBytes);
  Writer cut;
  cut.u32(1000);
  cut.u8(1);
  CHECK(decode_error(frame_of(MessageType::changes, cut.bytes())) == Errc::truncated);
  CHECK(decode_error(frame_of(MessageType::get_changes, Bytes{0, 0, 0, 0, 0, 0, 0, 1, 0, 0})) ==
        Errc::truncated);
  Bytes longer = encode_payload(GetChanges{1, 2});
  longer.push_back(0);
  CHECK(decode_error(frame_of(MessageType::get_changes, longer)) == Errc::trailing_bytes);
}

TEST_CASE("a Head push carries the sender's first servable entry (protocol 3)") {
  HeadMsg m{signed_head(9, 0x33), 7};
  CHECK(round_trip(m) == Message{m});
  Bytes payload = encode_payload(m);
  CHECK(payload.size() == kEncodedHeadSize + 8);
  // A version-2 Head (no `first`) is truncated; a longer one has trailing bytes.
  Bytes v2(payload.begin(), payload.end() - 8);
  CHECK(decode_error(frame_of(MessageType::head, v2)) == Errc::truncated);
  Bytes longer = payload;
  longer.push_back(0);
  CHECK_FALSE(decode_frame(frame_of(MessageType::head, longer)).ok());
}

TEST_CASE("get_entries count must be 1..kMaxBatchEntries") {
  CHECK(decode_error(encode_frame(GetEntries{0, 0, 0})) == Errc::bad_value);
  CHECK(decode_error(encode_frame(GetEntries{0, kMaxBatchEntries + 1, 0})) == Errc::bad_value);
  CHECK(decode_frame(encode_frame(GetEntries{0, kMaxBatchEntries, 0})).ok());
}

TEST_CASE("entries: empty batch, oversized count, uncovered range and long proofs are refused") {
  Entries e;
  e.from = 0;
  e.head = signed_head(2, 7);
  CHECK(decode_error(encode_frame(e)) == Errc::bad_value);  // no entries

  e.entries = {Bytes{1}, Bytes{2}, Bytes{3}};  // 3 entries, head covers 2
  CHECK(decode_error(encode_frame(e)) == Errc::bad_value);

  e.entries = {Bytes{1}};
  e.from = UINT64_MAX;  // from + n overflows
  CHECK(decode_error(encode_frame(e)) == Errc::bad_value);

  e.from = 0;
  e.proof.assign(kMaxWireProofHashes + 1, Hash32{});
  CHECK(decode_error(encode_frame(e)) == Errc::too_large);
  e.proof.clear();
  e.anchor_path.assign(kMaxWireProofHashes + 1, Hash32{});
  CHECK(decode_error(encode_frame(e)) == Errc::too_large);

  // A count the remaining bytes cannot hold is refused before reserving.
  Writer w;
  w.u64(0);
  w.raw(encode_head(signed_head(2, 7)));
  w.u32(kMaxBatchEntries);
  CHECK(decode_error(frame_of(MessageType::entries, w.bytes())) == Errc::truncated);
  Writer w2;
  w2.u64(0);
  w2.raw(encode_head(signed_head(2, 7)));
  w2.u32(kMaxBatchEntries + 1);
  CHECK(decode_error(frame_of(MessageType::entries, w2.bytes())) == Errc::too_large);
  // One entry whose length claims more than is there.
  Writer w3;
  w3.u64(0);
  w3.raw(encode_head(signed_head(2, 7)));
  w3.u32(1);
  w3.u32(1000);
  w3.u8(1);
  CHECK(decode_error(frame_of(MessageType::entries, w3.bytes())) == Errc::truncated);
}

TEST_CASE("peers: too many or malformed addresses are refused") {
  Peers p;
  p.addresses.assign(kMaxAddresses + 1, "h:1");
  CHECK(decode_error(encode_frame(p)) == Errc::too_large);
  p.addresses = {"h:1", ""};
  CHECK(decode_error(encode_frame(p)) == Errc::bad_value);
  p.addresses = {"has space:1"};
  CHECK(decode_error(encode_frame(p)) == Errc::bad_value);
}

TEST_CASE("evidence that does not decode, and unknown error codes, are refused") {
  Writer w;
  w.blob(Bytes{1, 2, 3});
  CHECK_FALSE(decode_frame(frame_of(MessageType::evidence, w.bytes())).ok());
  Writer big;
  big.u32(kMaxEvidenceBytes + 1);
  CHECK(decode_error(frame_of(MessageType::evidence, big.bytes())) == Errc::too_large);

  Writer e;
  e.u16(0);
  e.str("x");
  CHECK(decode_error(frame_of(MessageType::error, e.bytes())) == Errc::bad_value);
  Writer e2;
  e2.u16(10);  // one past snapshot_gone
  e2.str("x");
  CHECK(decode_error(frame_of(MessageType::error, e2.bytes())) == Errc::bad_value);
  Writer e3;
  e3.u16(1);
  e3.str(std::string(kMaxErrorMessageBytes + 1, 'x'));
  CHECK(decode_error(frame_of(MessageType::error, e3.bytes())) == Errc::too_large);
}

TEST_CASE("host:port parsing") {
  CHECK(parse_host_port("127.0.0.1:7000")->port == 7000);
  CHECK(parse_host_port("[::1]:80")->host == "::1");
  CHECK(parse_host_port("example.org:65535")->host == "example.org");
  for (const char* bad : {"", ":80", "h:", "h:0", "h:65536", "h:080", "h:8a", "::1:80", "[::1]80",
                          "[::1]", "h :1", "h:1\n"}) {
    INFO(bad);
    CHECK_FALSE(parse_host_port(bad).ok());
  }
}

// The worked examples of docs/formats/protocol.md.
TEST_CASE("docs/formats/protocol.md examples are what encode_frame makes") {
  CHECK(to_hex(encode_frame(GetSnapshotPages{12, 1, 1024})) == "000000110b000000000000000c0000000100000400");
  Hello h;
  h.log_id.bytes.fill(0xaa);
  h.node_id = 0x0102030405060708;
  h.listen = "127.0.0.1:7001";
  h.features = kFeatureChanges;
  CHECK(to_hex(encode_frame(h)) ==
        "0000004e01" "0004" + std::string(64, 'a') + "0102030405060708" "00" "0000000e3132372e302e302e313a37303031"
        "0000000000000000" "0000000000000001");
  CHECK(to_hex(encode_frame(GetChanges{10, 0})) == "0000001114" "000000000000000a" "0000000000000000");
  CHECK(to_hex(encode_frame(ChangesMsg{Bytes{0xab, 0xcd}})) == "0000000715" "00000002" "abcd");
}
