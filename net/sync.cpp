// The sync rules (docs/protocol.md): handshake, duplicate sessions, head
// checks and equivocation, fetch scheduling, serving entries, relaying heads,
// address exchange, bans. See sync.h for the contract.
#include "net/sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace swarmlite::net {

namespace {

constexpr auto kNever = Clock::time_point::max();

std::string hex_id(uint64_t id) { return fmt::format("{:016x}", id); }

}  // namespace

std::vector<std::string> PeerState::ban_keys() const {
  std::vector<std::string> keys;
  if (node_id) keys.push_back("node:" + hex_id(node_id));
  if (!announced.empty()) keys.push_back(announced);
  if (!dialled.empty() && dialled != announced) keys.push_back(dialled);
  return keys;
}

std::string PeerState::name() const {
  return fmt::format("#{} {}", id, !announced.empty() ? announced : !dialled.empty() ? dialled : remote);
}

SyncEngine::SyncEngine(const NodeBackend& backend, const NodeOptions& options, uint64_t node_id,
                       std::function<bool()> apply_stopped, std::function<uint64_t()> features)
    : backend_(backend),
      opt_(options),
      node_id_(node_id),
      log_id_(backend.log_id()),
      apply_stopped_(std::move(apply_stopped)),
      features_(std::move(features)),
      book_(256, "", BackoffPolicy{opt_.backoff_initial, opt_.backoff_max}) {}

void SyncEngine::start(const std::string& announce, std::optional<Evidence> evidence) {
  announce_ = announce;
  book_ = AddressBook(256, announce_, BackoffPolicy{opt_.backoff_initial, opt_.backoff_max});
  for (const auto& s : opt_.seeds) book_.add(s, /*seed=*/true);
  evidence_ = std::move(evidence);
  const LogView view = backend_.log().view();  // not log_mutex() (core/log.h)
  if (view.head) relayed_size_ = view.head->size;
  relayed_first_ = first_servable_entry(view);
}

Hello SyncEngine::make_hello() const {
  Hello h;
  h.log_id = log_id_;
  h.node_id = node_id_;
  {
    LogView view = backend_.log().view();  // not log_mutex(): a store's fsync holds it
    h.head = std::move(view.head);
    h.first = first_servable_entry(view);
  }
  h.listen = announce_;
  h.features = features_ ? features_() : 0;
  return h;
}

PeerState* SyncEngine::find(uint64_t id) {
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : &it->second;
}

void SyncEngine::send(Actions& out, PeerState& p, Message m) {
  if (p.closing) return;  // the transport would drop it too
  out.push_back(SendAction{p.id, std::move(m)});
}

void SyncEngine::close(Actions& out, PeerState& p, const std::string& reason) {
  if (p.closing) return;
  p.closing = true;
  out.push_back(CloseAction{p.id, reason, /*flush=*/true});
}

// The session stops now: forget it (its closed() event finds nothing).
void SyncEngine::stop(Actions& out, uint64_t id, const std::string& reason, Clock::time_point now) {
  if (!find(id)) return;
  out.push_back(CloseAction{id, reason, /*flush=*/false});
  auto more = closed(id, reason, now);
  out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
}

void SyncEngine::misbehaved(Actions& out, PeerState& p, const std::string& reason, Clock::time_point now) {
  auto keys = p.ban_keys();
  for (const auto& k : keys) bans_.ban(k, reason, now, opt_.ban_time);
  spdlog::warn("banned peer {} ({}) for {} s: {}", p.name(),
               keys.empty() ? "no identity yet: connection only" : fmt::format("{}", fmt::join(keys, ", ")),
               std::chrono::duration_cast<std::chrono::seconds>(opt_.ban_time).count(), reason);
  out.push_back(BanAction{p.id, keys, reason, now + opt_.ban_time});
  stop(out, p.id, "banned: " + reason, now);
}

// --- sessions ----------------------------------------------------------------

Actions SyncEngine::opened(uint64_t id, bool outbound, const std::string& address,
                           const std::string& remote, const std::string& remote_ip,
                           Clock::time_point now) {
  Actions out;
  if (outbound) dialling_.erase(address);
  PeerState& p = peers_[id];
  p.id = id;
  p.outbound = outbound;
  p.dialled = outbound ? address : "";
  p.remote = remote;
  p.remote_ip = remote_ip;
  if (!outbound) p.range = address_range(remote_ip, opt_.inbound_range_v4_bits, opt_.inbound_range_v6_bits);
  p.connected_at = p.last_useful = now;
  if (!outbound && !make_room(out, p, now)) return out;
  Hello hello = make_hello();
  p.told_size = hello.head ? hello.head->size : 0;
  p.told_first = hello.first;
  send(out, p, std::move(hello));
  return out;
}

// A new inbound session fits if its address range and the node have a free
// slot, or one can be freed by closing the inbound session idle the longest
// (peer_set.h choose_eviction); otherwise it is refused. Sessions already
// closing do not count (docs/protocol.md "Connection slots").
bool SyncEngine::make_room(Actions& out, PeerState& newcomer, Clock::time_point now) {
  size_t live = 0, in_range = 0;
  std::vector<InboundInfo> inbound;
  for (auto& entry : peers_) {
    const PeerState& s = entry.second;
    if (&s == &newcomer || s.closing) continue;
    ++live;
    if (s.outbound) continue;
    if (s.range == newcomer.range) ++in_range;
    inbound.push_back({s.id, s.range, s.last_useful, s.request.has_value()});
  }
  auto evict_for = [&](const std::string& range, const std::string& why) {
    auto victim = choose_eviction(inbound, range, now, opt_.evict_idle_after);
    if (!victim) {
      send(out, newcomer, ErrorMsg{ErrorCode::too_many_peers, why});
      close(out, newcomer, why);
      return false;
    }
    PeerState& v = peers_.at(*victim);
    spdlog::info("closing idle peer {} to make room for {} ({})", v.name(), newcomer.name(), why);
    send(out, v, ErrorMsg{ErrorCode::too_many_peers, "closed to make room: idle while the node is full"});
    close(out, v, "evicted: idle while the node is full");
    std::erase_if(inbound, [&](const InboundInfo& i) { return i.id == *victim; });
    --live;
    return true;
  };
  if (opt_.max_inbound_per_range > 0 && in_range >= opt_.max_inbound_per_range &&
      !evict_for(newcomer.range, fmt::format("connection limit of {} reached for {}",
                                             opt_.max_inbound_per_range, newcomer.range))) {
    return false;
  }
  if (live >= opt_.max_connections && !evict_for("", "connection limit reached")) return false;
  return true;
}

Actions SyncEngine::closed(uint64_t id, const std::string& reason, Clock::time_point now) {
  Actions out;
  auto it = peers_.find(id);
  if (it == peers_.end()) return out;
  PeerState p = std::move(it->second);
  peers_.erase(it);
  if (p.request) request_out_ = false;
  if (p.outbound) book_.on_dial_failed(p.dialled, now);
  if (p.ready) {
    spdlog::info("peer {} disconnected: {}", p.name(), reason);
  } else {
    spdlog::debug("connection {} closed before handshake: {}", p.name(), reason);
  }
  schedule_fetch(out, now);
  return out;
}

Actions SyncEngine::dial_failed(const std::string& address, Clock::time_point now) {
  dialling_.erase(address);
  book_.on_dial_failed(address, now);
  return {};
}

Actions SyncEngine::undecodable(uint64_t id, bool frame, const Error& e, Clock::time_point now) {
  Actions out;
  PeerState* p = find(id);
  if (!p) return out;
  if (frame) {
    misbehaved(out, *p, "invalid frame: " + e.to_string(), now);
  } else if (e.code == Errc::bad_version) {
    send(out, *p, ErrorMsg{ErrorCode::bad_version, e.message});
    close(out, *p, "it speaks another protocol version");
  } else {
    misbehaved(out, *p, "invalid message: " + e.to_string(), now);
  }
  return out;
}

Actions SyncEngine::message(uint64_t id, Message&& m, Clock::time_point now) {
  Actions out;
  PeerState* found = find(id);
  if (!found || found->closing) return out;  // draining: ignore what it still says
  PeerState& s = *found;
  const MessageType type = message_type(m);
  if (!s.ready && !std::holds_alternative<Hello>(m) && !std::holds_alternative<ErrorMsg>(m)) {
    misbehaved(out, s, fmt::format("{} before Hello", message_type_name(message_type(m))), now);
    return out;
  }
  std::visit(
      [&](auto&& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Hello>) on_hello(out, s, std::move(x), now);
        else if constexpr (std::is_same_v<T, HeadMsg>) {
          // Its first servable entry may have moved (it compacted while
          // connected): choose_source and unserved_entries read it.
          s.first = x.first;
          on_head(out, s, x.head, now);
        }
        else if constexpr (std::is_same_v<T, GetEntries>) on_get_entries(out, s, x, now);
        else if constexpr (std::is_same_v<T, Entries>) on_entries(out, s, std::move(x), now);
        else if constexpr (std::is_same_v<T, GetPeers>) on_get_peers(out, s);
        else if constexpr (std::is_same_v<T, Peers>) on_peers(x);
        else if constexpr (std::is_same_v<T, EvidenceMsg>) on_evidence(out, s, x.evidence, now);
        else if constexpr (std::is_same_v<T, ErrorMsg>) on_error(out, s, x, now);
        else if constexpr (std::is_same_v<T, GetSnapshot> || std::is_same_v<T, GetSnapshotPages> ||
                           std::is_same_v<T, GetPages> || std::is_same_v<T, GetLeaves> ||
                           std::is_same_v<T, GetChanges>)
          on_snapshot_request(out, s, std::move(x), now);
        else if constexpr (std::is_same_v<T, GetFrontier>) on_get_frontier(out, s, x, now);
        else if constexpr (std::is_same_v<T, SnapshotManifestMsg> ||
                           std::is_same_v<T, SnapshotPages> || std::is_same_v<T, Frontier> ||
                           std::is_same_v<T, PagesMsg> || std::is_same_v<T, LeavesMsg> ||
                           std::is_same_v<T, HeadGoneMsg> || std::is_same_v<T, ChangesMsg>)
          // A node never asks for these (the fetcher, a bootstrapping node and a
          // light client use their own connections): unrequested, like
          // unrequested Entries.
          misbehaved(out, s, fmt::format("unrequested {}", message_type_name(type)), now);
      },
      std::move(m));
  return out;
}

// --- handshake -----------------------------------------------------------------

void SyncEngine::on_hello(Actions& out, PeerState& s, Hello&& h, Clock::time_point now) {
  if (s.ready) return misbehaved(out, s, "second Hello", now);
  if (h.log_id != log_id_) {
    send(out, s, ErrorMsg{ErrorCode::wrong_log, "this node follows log " + log_id_.hex()});
    close(out, s, "it follows another log: " + h.log_id.hex());
    spdlog::info("refused {}: it follows log {}", s.name(), h.log_id.hex());
    return;
  }
  if (h.node_id == node_id_) {
    if (!s.dialled.empty()) self_addresses_.insert(s.dialled);
    send(out, s, ErrorMsg{ErrorCode::duplicate, "this is you"});
    close(out, s, "connected to itself");
    return;
  }
  s.node_id = h.node_id;
  s.first = h.first;
  if (!h.listen.empty()) {
    auto hp = parse_host_port(h.listen);  // the codec checked it
    if (hp.ok() && (hp->host == "0.0.0.0" || hp->host == "::") && !s.remote_ip.empty()) {
      s.announced = (s.remote_ip.find(':') != std::string::npos)
                        ? fmt::format("[{}]:{}", s.remote_ip, hp->port)
                        : fmt::format("{}:{}", s.remote_ip, hp->port);
    } else {
      s.announced = h.listen;
    }
  }
  for (const auto& key : s.ban_keys()) {
    if (auto ban = bans_.find(key, now)) {
      send(out, s, ErrorMsg{ErrorCode::banned, "banned: " + ban->reason});
      close(out, s, "banned: " + ban->reason);
      return;
    }
  }
  // One session per pair of nodes: keep the one dialled by the smaller node id,
  // so both ends choose the same one (docs/protocol.md "Handshake").
  const uint64_t keeper = std::min(node_id_, h.node_id);
  auto initiator = [this, remote = h.node_id](const PeerState& x) { return x.outbound ? node_id_ : remote; };
  for (auto& entry : peers_) {
    PeerState& other = entry.second;
    if (&other == &s || !other.ready || other.node_id != h.node_id) continue;
    PeerState& loser = (initiator(s) == keeper && initiator(other) != keeper) ? other : s;
    send(out, loser, ErrorMsg{ErrorCode::duplicate, "already connected"});
    close(out, loser, "duplicate connection");
    if (&loser == &s) return;
    break;
  }
  s.ready = true;
  out.push_back(HandshakenAction{s.id});
  if (s.outbound) book_.on_connected(s.dialled);
  if (!s.announced.empty()) book_.add(s.announced);
  spdlog::info("peer {} connected ({}, node {}, head {}{})", s.name(), s.outbound ? "outbound" : "inbound",
               hex_id(h.node_id), h.head ? std::to_string(h.head->size) : "none",
               h.first ? fmt::format(", serves entries from {}", h.first) : "");
  s.last_peers_request = now;
  send(out, s, GetPeers{});
  if (evidence_) send(out, s, EvidenceMsg{*evidence_});
  // A head we relayed between our Hello and theirs skipped this session (it
  // was not ready) and will not be relayed again: tell it now.
  tell_head(out, s);
  if (h.head) on_head(out, s, *h.head, now);
}

// --- heads and equivocation ------------------------------------------------------

void SyncEngine::on_head(Actions& out, PeerState& s, const Head& h, Clock::time_point now) {
  if (auto st = h.verify(log_id_); !st.ok()) {
    return misbehaved(out, s, "invalid head at size " + std::to_string(h.size) + ": " + st.error().to_string(),
                      now);
  }
  if (h.size > s.head_size) s.last_useful = now;
  s.head_size = std::max(s.head_size, h.size);
  check_head(out, h, s.name());
  schedule_fetch(out, now);
}

// A verified head from anyone: compare it with what we hold; follow it if it is higher.
void SyncEngine::check_head(Actions& out, const Head& h, const std::string& from) {
  if (evidence_) return;
  std::optional<Evidence> ev;
  std::string how;
  bool adopt = false;
  const uint64_t applied = backend_.is_primary() ? 0 : backend_.applied_size();  // not under log_mutex
  {
    std::lock_guard lock(backend_.log_mutex());
    const Log& log = backend_.log();
    const auto& mine = log.head();
    // A head for entries we hold but newer than our stored one (our head file
    // was lost, or a batch ended short of its head): store it, if it covers
    // what we applied, so we can prove and report ready without waiting for
    // the next write.
    if (!backend_.is_primary() && (!mine || h.size > mine->size) && h.size > adopting_size_ &&
        h.size <= log.size() && h.size >= applied) {
      auto root = log.tree().root_at(h.size);
      adopt = root.ok() && root.value() == h.log_root;
    }
    if (mine && mine->size == h.size) {
      if (auto e = evidence_from_heads(*mine, h); e.ok()) {
        ev = std::move(e).value();
        how = fmt::format("two heads at size {} from {} and our log", h.size, from);
      }
    } else if (h.size > 0 && h.size <= log.size()) {
      auto root = log.tree().root_at(h.size);
      if (root.ok() && root.value() != h.log_root) {
        if (mine && mine->size > h.size) {
          auto path = evidence_path(log.tree(), h.size, mine->size);
          if (path.ok()) {
            if (auto e = evidence_from_proof(h, *mine, path.value()); e.ok()) {
              ev = std::move(e).value();
              how = fmt::format("head at size {} from {} is not a prefix of ours at {}", h.size,
                                from, mine->size);
            }
          }
        }
        if (!ev) {
          spdlog::warn("head at size {} from {} contradicts our unsigned-for entries; ignored",
                       h.size, from);
        }
      }
    }
  }
  if (ev) return equivocation(out, std::move(*ev), how);
  if (adopt) {
    adopting_size_ = h.size;
    out.push_back(StoreHeadAction{h, from});
  }
  if (best_head_ && best_head_->size == h.size) {
    if (auto e = evidence_from_heads(*best_head_, h); e.ok()) {
      return equivocation(out, std::move(e).value(),
                          fmt::format("two heads at size {} (latest from {})", h.size, from));
    }
  }
  if (!best_head_ || h.size > best_head_->size) best_head_ = h;
}

Actions SyncEngine::head_stored(uint64_t size, const std::string& from, const Status& st) {
  Actions out;
  if (st.ok()) {
    spdlog::info("stored the head at size {} from {} for entries we hold", size, from);
    relay_head(out);
  } else {
    spdlog::warn("head at size {} from {} not stored: {}", size, from, st.error().to_string());
    adopting_size_ = 0;
  }
  return out;
}

void SyncEngine::equivocation(Actions& out, Evidence e, const std::string& how) {
  if (evidence_) return;
  evidence_ = std::move(e);
  spdlog::critical("log {} EQUIVOCATED ({}): heads at sizes {} and {}; stopped following it",
                   log_id_.hex(), how, evidence_->a.size, evidence_->b.size);
  out.push_back(EquivocatedAction{*evidence_, how});
  for (auto& entry : peers_) {
    if (entry.second.ready) send(out, entry.second, EvidenceMsg{*evidence_});
  }
}

void SyncEngine::on_evidence(Actions& out, PeerState& s, const Evidence& e, Clock::time_point now) {
  if (auto st = e.verify(log_id_); !st.ok()) {
    return misbehaved(out, s, "invalid evidence: " + st.error().to_string(), now);
  }
  if (!evidence_) equivocation(out, e, "evidence received from " + s.name());
}

// --- fetching --------------------------------------------------------------------

void SyncEngine::schedule_fetch(Actions& out, Clock::time_point now) {
  if (stores_pending_ == 0) draining_ = false;
  if (evidence_ || request_out_ || stores_pending_ >= kMaxStoresPending || draining_ ||
      backend_.is_primary() || (apply_stopped_ && apply_stopped_())) {
    return;
  }
  if (!store_fault_.retry_due(now)) return;  // a local fault: the tick retries after its backoff
  uint64_t local;
  std::optional<Head> anchor;
  if (stores_pending_ > 0) {
    // Fetch the batch after the one being stored (not taking log_mutex, which
    // the store holds): it goes on from that batch's end, anchored on the
    // verified head that batch is proven against. Should that batch fail, the
    // store thread skips this one (store_skipped).
    local = pending_end_;
    anchor = pending_head_;
  } else {
    LogView view = backend_.log().view();  // not log_mutex(): a store's fsync holds it
    local = view.size;
    anchor = std::move(view.head);
  }
  if (!best_head_ || best_head_->size <= local) {
    unserved_.reset();  // nothing is needed
    return;
  }
  std::vector<SourceInfo> sources;
  for (auto& entry : peers_) {
    const PeerState& s = entry.second;
    if (s.ready && !s.closing) sources.push_back({s.id, s.head_size, s.last_used, s.request.has_value(), s.first});
  }
  // Peers that compacted the entries we need are not asked (choose_source);
  // when that is every peer ahead of us, say so once per range and wait: a
  // peer that holds them may connect, else only a snapshot helps.
  auto missing = unserved_entries(sources, local);
  if (missing != unserved_) {
    if (missing) {
      spdlog::warn("entries [{}, {}) are held by no connected peer (each peer ahead of us serves only later "
                   "entries); bootstrap from a snapshot (docs/operations.md \"Getting a verified copy\")",
                   missing->from, missing->to);
    } else {
      spdlog::info("entries [{}, {}) are no longer missing (a peer holds them, or none is ahead of us)",
                   unserved_->from, unserved_->to);
    }
    unserved_ = missing;
  }
  auto chosen = choose_source(sources, local);
  if (!chosen) return;
  PeerState& s = peers_.at(*chosen);
  auto plan =
      plan_batch(local, s.head_size,
                 std::min<uint32_t>(opt_.batch_entries, static_cast<uint32_t>(kMaxBatchEntries)));
  if (!plan) return;
  // A prefetch is anchored on the pending batch's head, so only a source at or
  // past it is asked (as for proven_head_ below); else fetching waits for the store.
  if (stores_pending_ > 0 && anchor && anchor->size > s.head_size) return;
  // Mid catch-up the stored head lags the log: anchor on the head the last
  // batch was proven against instead (when the source is at or past it), so the
  // anchor stays near the top and a source that compacted its log meanwhile
  // (--retain) can still prove a path from it (docs/protocol.md "Following the log").
  if (proven_head_ && (!anchor || proven_head_->size > anchor->size) &&
      proven_head_->size <= s.head_size) {
    anchor = proven_head_;
  }
  GetEntries g{plan->from, plan->count, anchor ? anchor->size : 0};
  s.request = g;
  s.request_anchor = anchor;
  s.last_used = ++fetch_counter_;
  out.push_back(RequestDeadlineAction{s.id, now + opt_.request_timeout});
  request_out_ = true;
  send(out, s, g);
  spdlog::debug("asked {} for entries [{}, {})", s.name(), g.from, g.from + g.count);
}

void SyncEngine::on_entries(Actions& out, PeerState& s, Entries&& e, Clock::time_point now) {
  if (!s.request || e.from != s.request->from || e.entries.size() > s.request->count) {
    return misbehaved(out, s, fmt::format("unrequested entries from {} (x{})", e.from, e.entries.size()), now);
  }
  auto anchor = s.request_anchor;
  request_out_ = false;
  s.request.reset();
  s.request_anchor.reset();
  out.push_back(RequestDeadlineAction{s.id, kNever});
  const Head& h = e.head;
  if (auto st = h.verify(log_id_); !st.ok()) {
    return misbehaved(out, s, "Entries with an invalid head: " + st.error().to_string(), now);
  }
  s.head_size = std::max(s.head_size, h.size);
  // An anchor at the served head's own size (the head a catch-up's last batch
  // was proven against): the same head, or two at one size — a fork.
  if (anchor && anchor->size == h.size && anchor->log_root != h.log_root) {
    if (auto ev = evidence_from_heads(*anchor, h); ev.ok()) {
      return equivocation(out, std::move(ev).value(),
                          fmt::format("head at size {} from {} differs from ours", h.size, s.name()));
    }
  }
  // Does the head it proves against extend the newest head we hold? Either the
  // anchor path links them, or it is proof that the primary forked.
  if (anchor && anchor->size > 0 && anchor->size < h.size) {
    auto roots = roots_from_complete_path(anchor->size, h.size, e.anchor_path);
    if (!roots.ok() || roots->new_root != h.log_root) {
      return misbehaved(out, s,
                        fmt::format("anchor path {}→{} does not lead to its head", anchor->size, h.size), now);
    }
    if (roots->old_root != anchor->log_root) {
      auto ev = evidence_from_proof(*anchor, h, e.anchor_path);
      if (ev.ok()) {
        return equivocation(out, std::move(ev).value(),
                            fmt::format("head at size {} from {} does not extend ours at {}", h.size,
                                        s.name(), anchor->size));
      }
      return misbehaved(out, s, "anchor path: " + ev.error().to_string(), now);
    }
  }
  // Verify (signature, entry codec, seq continuity, proof) and store off the io
  // thread; meanwhile, fetch the next batch.
  ++stores_pending_;
  pending_end_ = e.from + e.entries.size();
  pending_head_ = h;
  out.push_back(StoreAction{s.id, s.ban_keys(), s.name(), std::move(e)});
  schedule_fetch(out, now);
}

Actions SyncEngine::stored(uint64_t id, const std::vector<std::string>& ban_keys, const std::string& who,
                           uint64_t n, const Head& head, const Status& st, Clock::time_point now) {
  Actions out;
  if (stores_pending_ > 0) --stores_pending_;
  if (!st.ok()) draining_ = true;  // a batch fetched after this one does not follow our log
  PeerState* s = find(id);
  if (!st.ok() && is_local_fault(st.error())) {
    // Our disk, not their data: nobody is banned; retried after a backoff.
    store_fault_.failed(st.error(), now);
    auto f = store_fault_.get();
    spdlog::error("storing entries from {} failed on this node ({}. attempt), retrying in {} ms: {}",
                  who, f ? f->retries : 0, store_fault_.wait(now).count(), st.error().to_string());
    return out;
  }
  if (!st.ok()) {
    std::string reason = "invalid entries: " + st.error().to_string();
    if (s) {
      misbehaved(out, *s, reason, now);
    } else {
      for (const auto& k : ban_keys) bans_.ban(k, reason, now, opt_.ban_time);
      out.push_back(BanAction{0, ban_keys, reason, now + opt_.ban_time});
      spdlog::warn("banned peer {} (gone) : {}", who, reason);
    }
    schedule_fetch(out, now);
    return out;
  }
  if (store_fault_.get()) {
    store_fault_.cleared();
    spdlog::info("storing works again");
  }
  entries_stored_ += n;
  // Log::append_proven checked the batch against `head`: it extends our log.
  if (!proven_head_ || head.size > proven_head_->size) proven_head_ = head;
  if (s) {
    s->entries_received += n;
    s->last_useful = now;
  }
  const uint64_t size = backend_.log().view().size;  // not log_mutex(): the next store may hold it
  spdlog::debug("stored {} entries from {}; log size {}", n, who, size);
  out.push_back(ApplyAction{size});
  check_head(out, head, who);
  relay_head(out);
  schedule_fetch(out, now);
  return out;
}

Actions SyncEngine::store_skipped(Clock::time_point now) {
  Actions out;
  if (stores_pending_ > 0) --stores_pending_;
  schedule_fetch(out, now);
  return out;
}

void SyncEngine::on_error(Actions& out, PeerState& s, const ErrorMsg& e, Clock::time_point now) {
  if (e.code == ErrorCode::not_available && s.request) {
    // It announced more than it serves (e.g. it restarted): ask elsewhere. A
    // refusal below its first servable entry is not that: it compacted those
    // entries (its Head push saying so crossed our request); what it holds
    // stays as announced (docs/protocol.md "First servable entry").
    if (s.request->from >= s.first) s.head_size = std::min(s.head_size, s.request->from);
    s.request.reset();
    s.request_anchor.reset();
    out.push_back(RequestDeadlineAction{s.id, kNever});
    request_out_ = false;
    schedule_fetch(out, now);
    return;
  }
  spdlog::info("peer {} says {}: {}", s.name(), static_cast<int>(e.code), e.message);
  stop(out, s.id, fmt::format("it sent error {}: {}", static_cast<int>(e.code), e.message), now);
}

// --- serving -----------------------------------------------------------------------

namespace {
// Why entry `seq` cannot be served from `log` (log mutex held): not under its
// signed head, or compacted away (docs/protocol.md "First servable entry");
// nullopt when it can.
std::optional<std::string> unservable(const Log& log, uint64_t seq) {
  const auto& head = log.head();
  if (!head || seq >= head->size) {
    return fmt::format("have {} entries under a signed head", head ? head->size : 0);
  }
  if (const uint64_t first = first_servable_entry(log); seq < first) {
    return fmt::format("entries before {} were compacted away", first);
  }
  return std::nullopt;
}
}  // namespace

void SyncEngine::on_get_entries(Actions& out, PeerState& s, const GetEntries& g, Clock::time_point now) {
  s.last_useful = now;
  Entries reply;
  reply.from = g.from;
  std::string failure;
  {
    std::lock_guard lock(backend_.log_mutex());
    const Log& log = backend_.log();
    const auto& head = log.head();
    if (auto why = unservable(log, g.from)) {
      failure = std::move(*why);
    } else {
      reply.head = *head;
      uint64_t end = std::min<uint64_t>(g.from + g.count, head->size);
      size_t bytes = 0;
      const size_t max_frame = opt_.max_frame ? opt_.max_frame : kMaxFrameBytes;
      // Each entry costs its bytes + a 4-byte length; leave 64 KiB for head and proofs.
      auto fits = [&](const Bytes& e) {
        return reply.entries.empty() ||
               (bytes + e.size() <= opt_.batch_bytes && bytes + e.size() + 4 <= max_frame - (64u << 10));
      };
      // Read runs of entries at once (one read of the store each); a run that
      // fails to read is read entry by entry, to serve what precedes the bad one.
      constexpr uint64_t kRun = 256;
      bool full = false;
      for (uint64_t i = g.from; i < end && !full;) {
        auto run = log.entry_bytes_range(i, std::min(end - i, kRun),
                                         opt_.batch_bytes > bytes ? opt_.batch_bytes - bytes : 1);
        if (!run.ok()) {
          auto e = log.entry_bytes(i);
          if (!e.ok()) {
            spdlog::error("serving entry {}: {}", i, e.error().to_string());
            break;
          }
          run = std::vector<Bytes>{};
          run->push_back(std::move(e).value());
        }
        for (Bytes& e : *run) {
          if (!fits(e)) {
            full = true;
            break;
          }
          bytes += e.size() + 4;
          reply.entries.push_back(std::move(e));
          ++i;
        }
      }
      if (reply.entries.empty()) {
        failure = "could not read the log";
      } else {
        uint64_t upto = g.from + reply.entries.size();
        if (upto < head->size) {
          auto p = log.consistency_proof(upto, head->size);
          if (p.ok()) reply.proof = std::move(p).value();
          else failure = p.error().to_string();
        }
        if (g.anchor > 0 && g.anchor < head->size) {
          auto p = evidence_path(log.tree(), g.anchor, head->size);
          if (p.ok()) reply.anchor_path = std::move(p).value();
          else failure = p.error().to_string();
        }
      }
    }
  }
  if (!failure.empty()) {
    send(out, s, ErrorMsg{ErrorCode::not_available, fmt::format("entries from {}: {}", g.from, failure)});
    return;
  }
  entries_served_ += reply.entries.size();
  send(out, s, std::move(reply));
}

// A peer asks for a snapshot, pages, leaves or changes: answered off the io thread by
// the node, this session's requests in order; more than
// kMaxSnapshotRequestsPerSession at once is a bad request (the answers of earlier ones may then not
// arrive: the session closes). A session that downloads is useful: not evicted as idle.
void SyncEngine::on_snapshot_request(Actions& out, PeerState& s, ServedRequest r, Clock::time_point now) {
  s.last_useful = now;
  if (s.snapshot_requests >= kMaxSnapshotRequestsPerSession) {
    const std::string why =
        fmt::format("more than {} snapshot or page requests at once", kMaxSnapshotRequestsPerSession);
    spdlog::info("closing {}: {}", s.name(), why);
    send(out, s, ErrorMsg{ErrorCode::bad_request, why});
    close(out, s, why);
    return;
  }
  ++s.snapshot_requests;
  out.push_back(SnapshotAction{s.id, std::move(r)});
}

void SyncEngine::snapshot_answered(uint64_t id) {
  if (PeerState* s = find(id); s && s->snapshot_requests > 0) --s->snapshot_requests;
}

// Entry N-1 and its inclusion path in the tree of size N (docs/protocol.md
// "Frontier"), for a signed head N we hold and an entry we still hold.
void SyncEngine::on_get_frontier(Actions& out, PeerState& s, const GetFrontier& g, Clock::time_point now) {
  s.last_useful = now;
  Frontier reply;
  reply.size = g.size;
  std::string failure;
  {
    std::lock_guard lock(backend_.log_mutex());
    const Log& log = backend_.log();
    if (g.size == 0) {
      failure = "an empty log has no frontier";
    } else if (auto why = unservable(log, g.size - 1)) {
      failure = std::move(*why);
    } else if (auto e = log.entry_bytes(g.size - 1); !e.ok()) {
      failure = e.error().to_string();
    } else if (auto path = log.tree().inclusion_proof(g.size - 1, g.size); !path.ok()) {
      failure = path.error().to_string();
    } else {
      reply.last_entry = std::move(e).value();
      reply.path = std::move(path).value();
    }
  }
  if (!failure.empty()) {
    send(out, s, ErrorMsg{ErrorCode::not_available, fmt::format("frontier at {}: {}", g.size, failure)});
    return;
  }
  send(out, s, std::move(reply));
}

// Pushes our newest head (we hold all its entries) to peers that lack it.
void SyncEngine::relay_head(Actions& out) {
  LogView view = backend_.log().view();  // not log_mutex(): a store's fsync holds it
  const std::optional<Head> head = std::move(view.head);
  const uint64_t first = first_servable_entry(view);
  // A new head, or the same head with a new first entry (the log was compacted).
  if (!head || (head->size <= relayed_size_ && first == relayed_first_)) return;
  relayed_size_ = std::max(relayed_size_, head->size);
  relayed_first_ = first;
  size_t pushed = 0;
  // To every peer we have not told yet, even one whose own head is higher
  // (the primary): that is how a node learns how far its peers got (/status).
  for (auto& entry : peers_) pushed += tell_head(out, entry.second, *head, first) ? 1 : 0;
  spdlog::debug("head {} pushed to {} peer(s)", head->size, pushed);
}

bool SyncEngine::tell_head(Actions& out, PeerState& s, const Head& head, uint64_t first) {
  if (!s.ready || (s.told_size >= head.size && s.told_first == first)) return false;
  send(out, s, HeadMsg{head, first});
  s.told_size = std::max(s.told_size, head.size);
  s.told_first = first;
  return true;
}

void SyncEngine::tell_head(Actions& out, PeerState& s) {
  LogView view = backend_.log().view();
  if (view.head) (void)tell_head(out, s, *view.head, first_servable_entry(view));
}

Actions SyncEngine::new_local_head() {
  Actions out;
  relay_head(out);
  return out;
}

// --- addresses and dialling ----------------------------------------------------------

void SyncEngine::on_get_peers(Actions& out, PeerState& s) {
  std::set<std::string> exclude{s.announced, announce_};
  Peers p;
  std::set<std::string> seen;
  for (auto& entry : peers_) {
    if (p.addresses.size() >= kMaxAddresses) break;
    const PeerState& other = entry.second;
    const auto& a = other.announced;
    if (other.ready && !a.empty() && !exclude.count(a) && seen.insert(a).second) p.addresses.push_back(a);
  }
  for (auto& a : book_.sample(kMaxAddresses, exclude)) {
    if (p.addresses.size() >= kMaxAddresses) break;
    if (seen.insert(a).second) p.addresses.push_back(a);
  }
  send(out, s, std::move(p));
}

void SyncEngine::on_peers(const Peers& p) {
  size_t added = 0;
  for (const auto& a : p.addresses) {
    if (a != announce_ && !self_addresses_.count(a) && book_.add(a)) ++added;
  }
  if (added) spdlog::debug("learnt {} new address(es); {} known", added, book_.size());
}

std::set<std::string> SyncEngine::session_addresses() const {
  std::set<std::string> out;
  for (auto& entry : peers_) {
    if (!entry.second.announced.empty()) out.insert(entry.second.announced);
    if (!entry.second.dialled.empty()) out.insert(entry.second.dialled);
  }
  return out;
}

Actions SyncEngine::tick(Clock::time_point now) {
  Actions out;
  // Keep up to max_outbound dialled sessions.
  size_t outbound = dialling_.size();
  for (auto& entry : peers_) outbound += entry.second.outbound ? 1 : 0;
  // Seeds (--from) that are not connected are redialled (with their backoff)
  // even when learnt addresses hold every outbound slot: otherwise peers that
  // lose their seed can settle into a group with no path to the primary.
  // So a node dials at most max_outbound + (number of seeds).
  const bool slots_free = outbound < opt_.max_outbound;
  if (peers_.size() < opt_.max_connections && (slots_free || opt_.max_outbound > 0)) {
    auto exclude = session_addresses();
    exclude.insert(dialling_.begin(), dialling_.end());
    exclude.insert(self_addresses_.begin(), self_addresses_.end());
    for (auto& b : bans_.active(now)) exclude.insert(b.key);
    auto picked = slots_free ? book_.pick_to_dial(opt_.max_outbound - outbound, exclude, now)
                             : book_.pick_to_dial(opt_.seeds.size(), exclude, now, /*seeds_only=*/true);
    for (auto& a : picked) {
      dialling_.insert(a);
      out.push_back(DialAction{a});
    }
  }
  // Ask each peer for addresses now and then (also keeps idle connections alive).
  for (auto& entry : peers_) {
    PeerState& s = entry.second;
    if (s.ready && now - s.last_peers_request >= opt_.peers_interval) {
      s.last_peers_request = now;
      send(out, s, GetPeers{});
    }
  }
  relay_head(out);  // the primary's new heads, if nobody called notify_new_head()
  schedule_fetch(out, now);
  return out;
}

}  // namespace swarmlite::net
