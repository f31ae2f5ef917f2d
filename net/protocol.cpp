// Peer protocol codec: see protocol.h and docs/formats/protocol.md.
#include "net/protocol.h"

#include <bit>

#include "core/codec.h"
#include "core/merkle.h"

namespace swarmlite::net {
namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

void write_head(Writer& w, const Head& h) { w.raw(encode_head(h)); }

Result<std::string> read_address(Reader& r, std::string_view field, bool allow_empty) {
  size_t at = r.offset();
  SWL_ASSIGN(std::string s, r.str(field, kMaxAddressBytes));
  if (s.empty() && allow_empty) return s;
  if (auto hp = parse_host_port(s); !hp.ok()) {
    return r.fail_at(Errc::bad_value, at, field, hp.error().message);
  }
  return s;
}

// GetPages / GetLeaves: u64 size · u32 count · count × u32 pgno.
void write_pgnos(Writer& w, uint64_t size, const std::vector<uint32_t>& pgnos) {
  w.u64(size);
  w.u32(static_cast<uint32_t>(pgnos.size()));
  for (uint32_t p : pgnos) w.u32(p);
}

// The count (1..cap, each number 4 bytes: checked against what is left before
// allocating) and the numbers, strictly increasing from 1.
Result<std::vector<uint32_t>> read_pgnos(Reader& r, size_t cap) {
  const size_t at = r.offset();
  SWL_ASSIGN(size_t n, r.count("count", cap, 4));
  if (n == 0) return r.fail_at(Errc::bad_value, at, "count", "0 (a request names at least one page)");
  std::vector<uint32_t> pgnos(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t pat = r.offset();
    SWL_ASSIGN(pgnos[i], r.u32("pgno"));
    if (pgnos[i] == 0) return r.fail_at(Errc::bad_value, pat, "pgno", "0 (pages are numbered from 1)");
    if (i > 0 && pgnos[i] <= pgnos[i - 1]) {
      return r.fail_at(Errc::bad_value, pat, "pgno",
                       fmt::format("{} does not follow {}: page numbers must be strictly increasing", pgnos[i],
                                   pgnos[i - 1]));
    }
  }
  return pgnos;
}

void encode_into(Writer& w, const Message& m) {
  std::visit(
      Overloaded{
          [&](const Hello& x) {
            w.u16(x.version);
            w.raw(x.log_id.bytes);
            w.u64(x.node_id);
            w.u8(x.head ? 1 : 0);
            if (x.head) write_head(w, *x.head);
            w.str(x.listen);
            w.u64(x.first);
            w.u64(x.features);
          },
          [&](const HeadMsg& x) {
            write_head(w, x.head);
            w.u64(x.first);
          },
          [&](const GetEntries& x) {
            w.u64(x.from);
            w.u32(x.count);
            w.u64(x.anchor);
          },
          [&](const Entries& x) {
            w.u64(x.from);
            write_head(w, x.head);
            w.u32(static_cast<uint32_t>(x.entries.size()));
            for (const Bytes& e : x.entries) w.blob(e);
            write_hash_list(w, x.proof);
            write_hash_list(w, x.anchor_path);
          },
          [&](const GetPeers&) {},
          [&](const Peers& x) {
            w.u32(static_cast<uint32_t>(x.addresses.size()));
            for (const auto& a : x.addresses) w.str(a);
          },
          [&](const EvidenceMsg& x) { w.blob(encode_evidence(x.evidence)); },
          [&](const ErrorMsg& x) {
            w.u16(static_cast<uint16_t>(x.code));
            w.str(x.message);
          },
          [&](const GetSnapshot&) {},
          [&](const SnapshotManifestMsg& x) {
            write_head(w, x.head);
            w.u32(x.page_size);
            w.u32(x.chunk_pages);
          },
          [&](const GetSnapshotPages& x) {
            w.u64(x.size);
            w.u32(x.first_page);
            w.u32(x.count);
          },
          [&](const SnapshotPages& x) { w.blob(x.chunk); },
          [&](const GetFrontier& x) { w.u64(x.size); },
          [&](const Frontier& x) {
            w.u64(x.size);
            w.blob(x.last_entry);
            write_hash_list(w, x.path);
          },
          [&](const GetPages& x) { write_pgnos(w, x.size, x.pgnos); },
          [&](const PagesMsg& x) { w.blob(x.set); },
          [&](const GetLeaves& x) { write_pgnos(w, x.size, x.pgnos); },
          [&](const LeavesMsg& x) { w.blob(x.set); },
          [&](const HeadGoneMsg& x) {
            w.u64(x.size);
            w.u64(x.newest);
          },
          [&](const GetChanges& x) {
            w.u64(x.from_size);
            w.u64(x.to_size);
          },
          [&](const ChangesMsg& x) { w.blob(x.set); },
      },
      m);
}

Result<Message> decode_payload(MessageType type, Reader& r) {
  switch (type) {
    case MessageType::hello: {
      Hello h;
      SWL_ASSIGN(h.version, r.u16("version"));
      // Everything after the version may change with it: refuse before reading on.
      if (h.version != kProtocolVersion) {
        return make_error(Errc::bad_version, "message: hello has protocol version {}, expected {}",
                          h.version, kProtocolVersion);
      }
      SWL_ASSIGN(ByteView id, r.raw(32, "log_id"));
      std::copy(id.begin(), id.end(), h.log_id.bytes.begin());
      SWL_ASSIGN(h.node_id, r.u64("node_id"));
      size_t at = r.offset();
      SWL_ASSIGN(uint8_t has_head, r.u8("has_head"));
      if (has_head > 1) return r.fail_at(Errc::non_canonical, at, "has_head", "not 0 or 1");
      if (has_head) {
        SWL_ASSIGN(Head head, read_head(r, "head"));
        h.head = head;
      }
      SWL_ASSIGN(h.listen, read_address(r, "listen", /*allow_empty=*/true));
      SWL_ASSIGN(h.first, r.u64("first"));
      // Any bits: those this build does not know are kept and ignored.
      SWL_ASSIGN(h.features, r.u64("features"));
      return Message{std::move(h)};
    }
    case MessageType::head: {
      HeadMsg m;
      SWL_ASSIGN(m.head, read_head(r, "head"));
      SWL_ASSIGN(m.first, r.u64("first"));
      return Message{std::move(m)};
    }
    case MessageType::get_entries: {
      GetEntries g;
      SWL_ASSIGN(g.from, r.u64("from"));
      size_t at = r.offset();
      SWL_ASSIGN(g.count, r.u32("count"));
      if (g.count == 0 || g.count > kMaxBatchEntries) {
        return r.fail_at(Errc::bad_value, at, "count",
                         fmt::format("{} is not in 1..{}", g.count, kMaxBatchEntries));
      }
      SWL_ASSIGN(g.anchor, r.u64("anchor"));
      return Message{g};
    }
    case MessageType::entries: {
      Entries e;
      SWL_ASSIGN(e.from, r.u64("from"));
      SWL_ASSIGN(e.head, read_head(r, "head"));
      size_t at = r.offset();
      // Each entry needs at least its 4-byte length: n is bounded by the input first.
      SWL_ASSIGN(size_t n, r.count("entry count", kMaxBatchEntries, 4));
      if (n == 0) return r.fail_at(Errc::bad_value, at, "entry count", "a batch holds 1 or more");
      e.entries.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        SWL_ASSIGN(ByteView b, r.blob("entry", kMaxFrameBytes));
        e.entries.emplace_back(b.begin(), b.end());
      }
      if (e.from + n < e.from || e.head.size < e.from + n) {
        return r.fail_at(Errc::bad_value, at, "entry count",
                         fmt::format("entries [{}, {}+{}) are not covered by the head of size {}",
                                     e.from, e.from, n, e.head.size));
      }
      SWL_ASSIGN(e.proof, read_hash_list(r, "proof", kMaxWireProofHashes));
      SWL_ASSIGN(e.anchor_path, read_hash_list(r, "anchor_path", kMaxWireProofHashes));
      return Message{std::move(e)};
    }
    case MessageType::get_peers:
      return Message{GetPeers{}};
    case MessageType::peers: {
      Peers p;
      SWL_ASSIGN(size_t n, r.count("address count", kMaxAddresses, 4));
      for (size_t i = 0; i < n; ++i) {
        SWL_ASSIGN(std::string a, read_address(r, "address", /*allow_empty=*/false));
        p.addresses.push_back(std::move(a));
      }
      return Message{std::move(p)};
    }
    case MessageType::evidence: {
      SWL_ASSIGN(ByteView b, r.blob("evidence", kMaxEvidenceBytes));
      auto ev = decode_evidence(b);
      if (!ev.ok()) {
        return make_error(ev.error().code, "message: evidence: {}", ev.error().message);
      }
      return Message{EvidenceMsg{std::move(ev).value()}};
    }
    case MessageType::error: {
      ErrorMsg e;
      size_t at = r.offset();
      SWL_ASSIGN(uint16_t code, r.u16("code"));
      if (code < 1 || code > static_cast<uint16_t>(ErrorCode::snapshot_gone)) {
        return r.fail_at(Errc::bad_value, at, "code", fmt::format("unknown error code {}", code));
      }
      e.code = static_cast<ErrorCode>(code);
      SWL_ASSIGN(e.message, r.str("message", kMaxErrorMessageBytes));
      return Message{std::move(e)};
    }
    case MessageType::get_snapshot:
      return Message{GetSnapshot{}};
    case MessageType::snapshot_manifest: {
      SnapshotManifestMsg m;
      SWL_ASSIGN(m.head, read_head(r, "head"));
      size_t at = r.offset();
      SWL_ASSIGN(m.page_size, r.u32("page_size"));
      if (m.page_size < 512 || m.page_size > 65536 || !std::has_single_bit(m.page_size)) {
        return r.fail_at(Errc::bad_value, at, "page_size",
                         fmt::format("{} is not a power of two in 512..65536", m.page_size));
      }
      at = r.offset();
      SWL_ASSIGN(m.chunk_pages, r.u32("chunk_pages"));
      if (m.chunk_pages == 0 || m.chunk_pages > kMaxSnapshotPagesPerRequest) {
        return r.fail_at(Errc::bad_value, at, "chunk_pages",
                         fmt::format("{} is not in 1..{}", m.chunk_pages, kMaxSnapshotPagesPerRequest));
      }
      return Message{m};
    }
    case MessageType::get_snapshot_pages: {
      GetSnapshotPages g;
      size_t at = r.offset();
      SWL_ASSIGN(g.size, r.u64("size"));
      if (g.size == 0) return r.fail_at(Errc::bad_value, at, "size", "0 (no snapshot is at size 0)");
      at = r.offset();
      SWL_ASSIGN(g.first_page, r.u32("first_page"));
      if (g.first_page == 0) return r.fail_at(Errc::bad_value, at, "first_page", "0 (pages are 1-based)");
      at = r.offset();
      SWL_ASSIGN(g.count, r.u32("count"));
      if (g.count == 0 || g.count > kMaxSnapshotPagesPerRequest) {
        return r.fail_at(Errc::bad_value, at, "count",
                         fmt::format("{} is not in 1..{}", g.count, kMaxSnapshotPagesPerRequest));
      }
      return Message{g};
    }
    case MessageType::snapshot_pages: {
      SWL_ASSIGN(ByteView b, r.blob("chunk", kMaxSnapshotChunkBytes));
      return Message{SnapshotPages{Bytes(b.begin(), b.end())}};
    }
    case MessageType::get_frontier: {
      size_t at = r.offset();
      SWL_ASSIGN(uint64_t n, r.u64("size"));
      if (n == 0) return r.fail_at(Errc::bad_value, at, "size", "0 (an empty log has no frontier to send)");
      return Message{GetFrontier{n}};
    }
    case MessageType::frontier: {
      Frontier f;
      size_t at = r.offset();
      SWL_ASSIGN(f.size, r.u64("size"));
      if (f.size == 0) return r.fail_at(Errc::bad_value, at, "size", "0 (an empty log has no frontier)");
      SWL_ASSIGN(ByteView b, r.blob("last_entry", kMaxFrontierEntryBytes));
      f.last_entry.assign(b.begin(), b.end());
      at = r.offset();
      SWL_ASSIGN(f.path, read_hash_list(r, "path", kMaxWireProofHashes));
      if (size_t want = inclusion_proof_size(f.size - 1, f.size); f.path.size() != want) {
        return r.fail_at(Errc::bad_value, at, "path",
                         fmt::format("{} hashes; the last entry of a tree of {} has a path of {}",
                                     f.path.size(), f.size, want));
      }
      return Message{std::move(f)};
    }
    case MessageType::get_pages: {
      GetPages g;
      SWL_ASSIGN(g.size, r.u64("size"));
      SWL_ASSIGN(g.pgnos, read_pgnos(r, kMaxGetPagesPgnos));
      return Message{std::move(g)};
    }
    case MessageType::get_leaves: {
      GetLeaves g;
      SWL_ASSIGN(g.size, r.u64("size"));
      SWL_ASSIGN(g.pgnos, read_pgnos(r, kMaxGetLeavesPgnos));
      return Message{std::move(g)};
    }
    case MessageType::pages: {
      SWL_ASSIGN(ByteView b, r.blob("set", kMaxPagesMsgBytes));
      return Message{PagesMsg{Bytes(b.begin(), b.end())}};
    }
    case MessageType::leaves: {
      SWL_ASSIGN(ByteView b, r.blob("set", kMaxLeavesMsgBytes));
      return Message{LeavesMsg{Bytes(b.begin(), b.end())}};
    }
    case MessageType::head_gone: {
      HeadGoneMsg g;
      SWL_ASSIGN(g.size, r.u64("size"));
      const size_t at = r.offset();
      SWL_ASSIGN(g.newest, r.u64("newest"));
      if (g.newest == 0) return r.fail_at(Errc::bad_value, at, "newest", "0 (a node serving pages holds a head)");
      return Message{g};
    }
    case MessageType::get_changes: {
      GetChanges g;
      SWL_ASSIGN(g.from_size, r.u64("from_size"));
      const size_t at = r.offset();
      SWL_ASSIGN(g.to_size, r.u64("to_size"));
      if (g.to_size != 0 && g.to_size < g.from_size) {
        return r.fail_at(Errc::bad_value, at, "to_size",
                         fmt::format("{} is below from_size {} (changes go forward; 0: the newest)", g.to_size,
                                     g.from_size));
      }
      return Message{g};
    }
    case MessageType::changes: {
      SWL_ASSIGN(ByteView b, r.blob("set", kMaxChangesMsgBytes));
      return Message{ChangesMsg{Bytes(b.begin(), b.end())}};
    }
  }
  return make_error(Errc::bad_value, "message: unknown type {}", static_cast<int>(type));
}

}  // namespace

std::string_view message_type_name(MessageType t) {
  switch (t) {
    case MessageType::hello: return "Hello";
    case MessageType::head: return "Head";
    case MessageType::get_entries: return "GetEntries";
    case MessageType::entries: return "Entries";
    case MessageType::get_peers: return "GetPeers";
    case MessageType::peers: return "Peers";
    case MessageType::evidence: return "Evidence";
    case MessageType::error: return "Error";
    case MessageType::get_snapshot: return "GetSnapshot";
    case MessageType::snapshot_manifest: return "SnapshotManifest";
    case MessageType::get_snapshot_pages: return "GetSnapshotPages";
    case MessageType::get_pages: return "GetPages";
    case MessageType::pages: return "Pages";
    case MessageType::get_leaves: return "GetLeaves";
    case MessageType::leaves: return "Leaves";
    case MessageType::head_gone: return "HeadGone";
    case MessageType::get_changes: return "GetChanges";
    case MessageType::changes: return "Changes";
    case MessageType::snapshot_pages: return "SnapshotPages";
    case MessageType::get_frontier: return "GetFrontier";
    case MessageType::frontier: return "Frontier";
  }
  return "unknown";
}

MessageType message_type(const Message& m) {
  // The variant's alternatives are in wire-id order, starting at 1.
  static_assert(std::variant_size_v<Message> == 21);
  static_assert(std::is_same_v<std::variant_alternative_t<0, Message>, Hello>);
  static_assert(std::is_same_v<std::variant_alternative_t<7, Message>, ErrorMsg>);
  static_assert(std::is_same_v<std::variant_alternative_t<8, Message>, GetSnapshot>);
  static_assert(std::is_same_v<std::variant_alternative_t<13, Message>, Frontier>);
  static_assert(std::is_same_v<std::variant_alternative_t<14, Message>, GetPages>);
  static_assert(std::is_same_v<std::variant_alternative_t<18, Message>, HeadGoneMsg>);
  static_assert(std::is_same_v<std::variant_alternative_t<19, Message>, GetChanges>);
  static_assert(std::is_same_v<std::variant_alternative_t<20, Message>, ChangesMsg>);
  return static_cast<MessageType>(m.index() + 1);
}

Bytes encode_payload(const Message& m) {
  Writer w;
  encode_into(w, m);
  return w.take();
}

Bytes encode_frame(const Message& m) {
  Writer w;
  w.u32(0);  // patched below
  w.u8(static_cast<uint8_t>(message_type(m)));
  encode_into(w, m);
  Bytes out = w.take();
  uint32_t len = static_cast<uint32_t>(out.size() - kFrameHeaderBytes);
  for (int i = 0; i < 4; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(len >> (24 - 8 * i));
  return out;
}

Result<uint32_t> decode_frame_length(ByteView header4, size_t max_frame) {
  Reader r(header4, "frame");
  SWL_ASSIGN(uint32_t len, r.u32("length"));
  if (len == 0) return r.fail_at(Errc::bad_value, 0, "length", "0 (a frame has at least its type)");
  if (len > max_frame) {
    return make_error(Errc::too_large, "frame: length {} at offset 0 is over the cap of {}", len,
                      max_frame);
  }
  return len;
}

Result<Message> decode_message(ByteView body) {
  Reader r(body, "message");
  SWL_ASSIGN(uint8_t type, r.u8("type"));
  if (type < 1 || type > static_cast<uint8_t>(MessageType::changes)) {
    return r.fail_at(Errc::bad_value, 0, "type", fmt::format("unknown message type {}", type));
  }
  SWL_ASSIGN(Message m, decode_payload(static_cast<MessageType>(type), r));
  SWL_TRY(r.expect_end());
  return m;
}

Result<Message> decode_frame(ByteView frame, size_t max_frame) {
  if (frame.size() < kFrameHeaderBytes) {
    return make_error(Errc::truncated, "frame: {} byte(s), the header needs {}", frame.size(),
                      kFrameHeaderBytes);
  }
  SWL_ASSIGN(uint32_t len, decode_frame_length(frame.first(kFrameHeaderBytes), max_frame));
  ByteView body = frame.subspan(kFrameHeaderBytes);
  if (body.size() != len) {
    return make_error(body.size() < len ? Errc::truncated : Errc::trailing_bytes,
                      "frame: length field says {} byte(s), {} follow", len, body.size());
  }
  return decode_message(body);
}

Result<HostPort> parse_host_port(std::string_view text, bool allow_port_zero) {
  if (text.empty() || text.size() > kMaxAddressBytes) {
    return make_error(Errc::bad_value, "address '{}': length {} is not in 1..{}", text,
                      text.size(), kMaxAddressBytes);
  }
  for (char c : text) {
    if (c <= ' ' || c > '~') {
      return make_error(Errc::bad_value, "address: holds a byte {:#04x} that is not printable ASCII",
                        static_cast<unsigned char>(c));
    }
  }
  HostPort hp;
  std::string_view port;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return make_error(Errc::bad_value, "address '{}': expected [IPv6]:port", text);
    }
    hp.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return make_error(Errc::bad_value, "address '{}': expected host:port", text);
    }
    hp.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (hp.host.find(':') != std::string::npos) {
      return make_error(Errc::bad_value, "address '{}': an IPv6 host needs [brackets]", text);
    }
  }
  if (hp.host.empty()) return make_error(Errc::bad_value, "address '{}': empty host", text);
  if (port.empty() || port.size() > 5 || (port.size() > 1 && port[0] == '0') ||
      (port == "0" && !allow_port_zero)) {
    return make_error(Errc::bad_value, "address '{}': bad port '{}'", text, port);
  }
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return make_error(Errc::bad_value, "address '{}': bad port '{}'", text, port);
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  if (p > 65535) return make_error(Errc::bad_value, "address '{}': port {} out of range", text, p);
  hp.port = static_cast<uint16_t>(p);
  return hp;
}

}  // namespace swarmlite::net
