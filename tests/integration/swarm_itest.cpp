// Process-level swarm tests (issue 4): real `swarmlite primary` / `swarmlite peer`
// processes on 127.0.0.1, driven over their HTTP API and killed with SIGKILL.
//
//  - "chain"/"tree": 1 primary + 5 relaying peers; a writer thread sends writes
//    (single statements and ?transaction batches, unique ids) while the test kills
//    peers (-9) and restarts them on their files, and kills the primary (-9) once.
//    Then every peer must reach the primary's size and state root, and hold every
//    acknowledged id.
//  - hostile nodes (served by this test process, speaking the wire protocol from
//    net/protocol.h): flipped entry bytes, a forged head, an oversized frame, a
//    garbage frame. Honest peers ban each, store none of their data, and still
//    converge through the primary.
//  - a forked primary: two primaries with one key and a common prefix diverge; a
//    peer that meets both stores verifiable evidence, stops following, and passes
//    the evidence to a peer that talks only to it.
//
// Ports: every node starts on port 0; a restarted node binds the port it printed
// the first time, so the --from lists of the others stay valid. The port can be
// taken in between by another process's outgoing connection: the restart is
// retried (the node then refuses to start with "port taken").
//
// Randomised: the seed is printed; SWARMLITE_SEED=N repeats a run.
// Scale: SWARMLITE_SWARM_WRITES=N (default 2000) spread over at least
// SWARMLITE_SWARM_SECONDS=S (default 20) of kills; SWARMLITE_LONG=1 multiplies both by 5.
// SWARMLITE_KEEP=1 keeps the data directories and logs (paths are printed).
// Waits are liveness deadlines (generous), never speed assertions.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/proc/child_process.h"
#include "core/evidence.h"
#include "core/head.h"
#include "core/keys.h"
#include "net/http_client.h"
#include "net/protocol.h"

using namespace swarmlite;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path kBin = SWARMLITE_BIN;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 10);
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

// A scratch directory, removed at the end unless SWARMLITE_KEEP=1.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& tag) {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / fmt::format("swl-swarm-{}-{}-{}", tag, ::getpid(), n++);
    fs::remove_all(path);
    fs::create_directories(path);
    MESSAGE("data and logs in ", path.string());
  }
  ~ScratchDir() {
    if (env_flag("SWARMLITE_KEEP")) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return cond();
}

// --- HTTP --------------------------------------------------------------------

struct Reply {
  unsigned status = 0;  // 0: no HTTP answer (see error)
  json body;
  std::string error;
  bool ok() const { return error.empty() && status == 200; }
  std::string describe() const {
    return error.empty() ? fmt::format("HTTP {}: {}", status, body.dump()) : error;
  }
};

Reply http(const std::string& base, const std::string& method, const std::string& target,
           const std::string& body = {}, std::chrono::milliseconds timeout = 10s) {
  Reply out;
  auto url = net::parse_http_url(base);
  if (!url.ok()) {
    out.error = url.error().to_string();
    return out;
  }
  net::HttpRequest rq;
  rq.method = method;
  rq.target = target;
  rq.body = body;
  net::HttpClientOptions o;
  o.timeout = timeout;
  auto r = net::http_call(url.value(), rq, o);
  if (!r.ok()) {
    out.error = r.error().to_string();
    return out;
  }
  out.status = r->status;
  out.body = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (out.body.is_discarded()) out.error = "not JSON: " + r->body.substr(0, 200);
  return out;
}

// --- processes -----------------------------------------------------------------

// One swarmlite server process that can be killed and restarted on its files and
// on the peer port it was given the first time.
class Server {
 public:
  Server(std::string name, fs::path dir, std::vector<std::string> args)
      : name_(std::move(name)), dir_(std::move(dir)), args_(std::move(args)) {}

  const std::string& name() const { return name_; }
  std::string listen() const { return listen_; }  // "127.0.0.1:PORT" (stable after the first start)
  std::string http() const {
    std::lock_guard lock(mu_);
    return http_;
  }
  fs::path log_path() const { return dir_ / (name_ + ".log"); }
  int starts() const { return starts_; }
  bool running() const { return proc_ && proc_->running(); }

  // (Re)starts; the first time on ephemeral ports, then on the same peer port.
  void start(const std::vector<std::string>& extra = {}) {
    std::string listen = listen_.empty() ? "127.0.0.1:0" : listen_;
    for (int attempt = 1;; ++attempt) {
      auto args = args_;
      args.insert(args.end(), extra.begin(), extra.end());
      args.insert(args.end(), {"--listen", listen, "--http", "127.0.0.1:0"});
      proc_.reset();
      proc_ = std::make_unique<proc::ChildProcess>(name_, kBin, args, log_path());
      try {
        proc_->wait_ready(60s);
        break;
      } catch (const std::exception& e) {
        // Only "the port is taken right now" is worth another try.
        if (listen_.empty() || attempt >= 40) throw;
        if (attempt == 1) MESSAGE(name_, ": restart on ", listen_, " failed, retrying: ", e.what());
        std::this_thread::sleep_for(250ms);
      }
    }
    ++starts_;
    listen_ = proc_->listen();
    std::lock_guard lock(mu_);
    http_ = proc_->http();
  }
  void kill_hard() {
    if (proc_) proc_->kill_hard();
  }
  void stop() {
    if (proc_) proc_->stop();
  }
  std::string log_tail() const { return proc_ ? proc_->log_tail(20) : ""; }

  json status() const {
    auto r = ::http(http_, "GET", "/status");
    if (!r.ok()) throw std::runtime_error(name_ + ": GET /status: " + r.describe());
    return r.body;
  }

 private:
  std::string name_;
  fs::path dir_;
  std::vector<std::string> args_;
  std::unique_ptr<proc::ChildProcess> proc_;
  std::string listen_;
  mutable std::mutex mu_;
  std::string http_;  // guarded by mu_ (the writer thread reads the primary's)
  int starts_ = 0;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count_lines_with(const fs::path& log, const std::vector<std::string>& needles) {
  std::istringstream in(read_file(log));
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    bool all = true;
    for (const auto& s : needles) all = all && line.find(s) != std::string::npos;
    n += all ? 1 : 0;
  }
  return n;
}

struct Keys {
  fs::path dir;
  PublicKey pub;
  fs::path key_file() const { return dir / "primary.key"; }
  fs::path pub_file() const { return dir / "primary.pub"; }
};

Keys make_keys(const fs::path& root) {
  Keys k;
  k.dir = root / "keys";
  proc::run_to_end("keygen", kBin, {"keygen", "--out", k.dir.string()}, root / "keygen.log");
  auto pub = load_public_key(k.pub_file().string());
  REQUIRE_MESSAGE(pub.ok(), pub.error_text());
  k.pub = pub.value();
  return k;
}

std::unique_ptr<Server> make_primary(const fs::path& root, const Keys& keys, const std::string& name) {
  // --max-outbound 0: a primary only serves; it dials nobody it learns of.
  return std::make_unique<Server>(
      name, root, std::vector<std::string>{"primary", "--db", (root / (name + ".db")).string(), "--key",
                                           keys.key_file().string(), "--max-outbound", "0"});
}

std::unique_ptr<Server> make_peer(const fs::path& root, const Keys& keys, const std::string& name,
                                  const std::vector<std::string>& from, size_t max_outbound) {
  std::string list;
  for (const auto& f : from) list += (list.empty() ? "" : ",") + f;
  return std::make_unique<Server>(
      name, root, std::vector<std::string>{"peer", "--db", (root / (name + ".db")).string(), "--pub",
                                           keys.pub_file().string(), "--from", list, "--max-outbound",
                                           std::to_string(max_outbound)});
}

// Sends `sql` statements to the primary's /db/execute; requires success.
void execute_all(const Server& primary, const json& statements, bool transaction = false) {
  auto r = http(primary.http(), "POST", transaction ? "/db/execute?transaction" : "/db/execute",
                statements.dump());
  REQUIRE_MESSAGE(r.ok(), r.describe());
  for (const auto& res : r.body["results"]) REQUIRE_MESSAGE(!res.contains("error"), res.dump());
}

std::set<int64_t> ids_on(const Server& node) {
  auto r = http(node.http(), "POST", "/db/query", json::array({json::array({"SELECT id FROM t"})}).dump(),
                30s);
  if (!r.ok()) throw std::runtime_error(node.name() + ": /db/query: " + r.describe());
  std::set<int64_t> out;
  const auto& res = r.body["results"].at(0);
  if (res.contains("error")) throw std::runtime_error(node.name() + ": " + res.dump());
  if (res.contains("values")) {
    for (const auto& row : res["values"]) out.insert(row.at(0).get<int64_t>());
  }
  return out;
}

// The state every replica must reach: the primary's size, state root and head.
struct Target {
  uint64_t size = 0;
  std::string state_root, log_root;
};

Target target_of(const Server& primary) {
  // The primary signs heads in the background: a moment after a write its
  // head covers it. The target is a size with its head.
  auto st = primary.status();
  for (int i = 0; i < 1000; ++i) {
    if (st["head"].is_object() && st["head"]["size"] == st["size"]) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    st = primary.status();
  }
  Target t;
  t.size = st["size"].get<uint64_t>();
  t.state_root = st["state_root"].get<std::string>();
  if (st["head"].is_object()) t.log_root = st["head"]["log_root"].get<std::string>();
  return t;
}

// Empty when `peer` is at `t`; otherwise what differs.
std::string lag_of(const Server& peer, const Target& t) {
  json st;
  try {
    st = peer.status();
  } catch (const std::exception& e) {
    return e.what();
  }
  uint64_t head_size = st["head"].is_object() ? st["head"]["size"].get<uint64_t>() : 0;
  if (st["size"].get<uint64_t>() == t.size && st["state_root"] == t.state_root && head_size == t.size &&
      st["head"]["log_root"] == t.log_root) {
    return "";
  }
  return fmt::format("{}: applied {} / log {} / head {} (want {}), state root {}, apply_error {}, diverged {}",
                     peer.name(), st["size"].get<uint64_t>(), st["log_size"].get<uint64_t>(), head_size,
                     t.size, st["state_root"].get<std::string>().substr(0, 16), st["apply_error"].dump(),
                     st["diverged"].dump());
}

// Waits until every peer is at the primary's state; fails with who lags how.
void require_converged(const Server& primary, const std::vector<Server*>& peers,
                       std::chrono::milliseconds limit) {
  Target t = target_of(primary);
  std::string why;
  bool ok = eventually(
      [&] {
        why.clear();
        for (auto* p : peers) {
          auto lag = lag_of(*p, t);
          if (!lag.empty()) why += lag + "\n";
        }
        return why.empty();
      },
      limit);
  if (!ok) {
    for (auto* p : peers) MESSAGE(p->name(), " log tail:\n", p->log_tail());
  }
  REQUIRE_MESSAGE(ok, "not converged to size ", t.size, ":\n", why);
}

// --- writer --------------------------------------------------------------------

// Sends writes to the primary (whose HTTP address changes when it restarts)
// until `target` were acknowledged: half single-statement requests (each
// statement its own transaction and entry), half ?transaction batches of 2–8.
// Each id is used once; a failed request's ids are never retried (they may or
// may not be in the log: only acknowledged ids are checked). Paced to spread the
// writes over at least `spread` (a fast primary would otherwise finish before
// the kills begin).
class Writer {
 public:
  Writer(const Server& primary, uint64_t target, std::chrono::milliseconds spread, uint64_t seed)
      : primary_(primary), target_(target), spread_(spread), rng_(seed) {}
  ~Writer() { join(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  void stop() { stop_ = true; }
  bool done() const { return done_; }
  uint64_t acked_count() const { return acked_n_; }
  std::vector<int64_t> acked() const {
    std::lock_guard lock(mu_);
    return acked_;
  }
  uint64_t requests() const { return requests_; }
  uint64_t failed_requests() const { return failed_; }

 private:
  void run() {
    int64_t next_id = 1;
    auto start = std::chrono::steady_clock::now();
    while (!stop_ && acked_n_ < target_) {
      std::this_thread::sleep_until(start + spread_ * acked_n_.load() / target_);
      bool transaction = rng_() % 2 == 0;
      int n = transaction ? 2 + static_cast<int>(rng_() % 7) : 1 + static_cast<int>(rng_() % 3);
      n = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(n), target_ - acked_n_));
      json body = json::array();
      std::vector<int64_t> ids;
      for (int i = 0; i < n; ++i) {
        ids.push_back(next_id);
        body.push_back(json::array({"INSERT INTO t(id, v) VALUES(?, ?)", next_id, fmt::format("v{}", next_id)}));
        ++next_id;
      }
      ++requests_;
      auto r = http(primary_.http(), "POST", transaction ? "/db/execute?transaction" : "/db/execute",
                    body.dump(), 10s);
      std::vector<int64_t> ok;
      if (r.ok() && r.body.contains("results") && r.body["results"].size() == ids.size()) {
        bool all = true;
        for (size_t i = 0; i < ids.size(); ++i) {
          if (r.body["results"][i].contains("error")) {
            all = false;
          } else if (!transaction) {
            ok.push_back(ids[i]);
          }
        }
        if (transaction && all) ok = ids;
        if (!all) ++failed_;
      } else {
        ++failed_;
        std::this_thread::sleep_for(50ms);  // the primary is down: do not spin
      }
      std::lock_guard lock(mu_);
      acked_.insert(acked_.end(), ok.begin(), ok.end());
      acked_n_ = acked_.size();
    }
    done_ = true;
  }

  const Server& primary_;
  uint64_t target_;
  std::chrono::milliseconds spread_;
  std::mt19937_64 rng_;
  std::thread thread_;
  std::atomic<bool> stop_{false}, done_{false};
  std::atomic<uint64_t> acked_n_{0}, requests_{0}, failed_{0};
  mutable std::mutex mu_;
  std::vector<int64_t> acked_;  // guarded by mu_
};

// --- the swarm under kills -------------------------------------------------------

// parents[i] = index of peer i's upstream: -1 = the primary.
void run_swarm_under_kills(const std::string& tag, const std::vector<int>& parents) {
  uint64_t seed = env_u64("SWARMLITE_SEED", std::random_device{}());
  uint64_t writes = env_u64("SWARMLITE_SWARM_WRITES", 2000) * (env_flag("SWARMLITE_LONG") ? 5 : 1);
  MESSAGE(tag, ": seed ", seed, " (SWARMLITE_SEED=", seed, " repeats it), ", writes, " writes");
  std::mt19937_64 rng(seed);
  auto t0 = std::chrono::steady_clock::now();

  ScratchDir dir(tag);
  Keys keys = make_keys(dir.path);
  auto primary = make_primary(dir.path, keys, "primary");
  primary->start();
  execute_all(*primary, json::array({"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"}));

  // Each peer dials only its upstream (--max-outbound 1), so the swarm starts as
  // the given topology. While an upstream is down a peer may dial an address it
  // learnt by peer exchange instead; it goes back to its --from seed when that
  // is up again (seeds are always redialled).
  std::vector<std::unique_ptr<Server>> peers;
  for (size_t i = 0; i < parents.size(); ++i) {
    int up = parents[i];
    std::string from = up < 0 ? primary->listen() : peers.at(static_cast<size_t>(up))->listen();
    peers.push_back(make_peer(dir.path, keys, fmt::format("p{}", i + 1), {from}, 1));
    peers.back()->start();
  }
  std::vector<Server*> all;
  for (auto& p : peers) all.push_back(p.get());
  require_converged(*primary, all, 60s);
  // The topology is what we asked for: the primary uploads to its direct children only.
  size_t direct = static_cast<size_t>(std::count(parents.begin(), parents.end(), -1));
  CHECK(primary->status()["peers"].size() == direct);

  auto spread = std::chrono::seconds(env_u64("SWARMLITE_SWARM_SECONDS", 20) * (env_flag("SWARMLITE_LONG") ? 5 : 1));
  Writer writer(*primary, writes, spread, rng());
  writer.start();
  // At least kMinPeerKills peers die, however fast the writer runs: under a
  // sanitizer or a loaded machine a restart is slow, so the loop may outlast the
  // writes (kills after the last write still test that the swarm converges).
  constexpr int kMinPeerKills = 10;
  int peer_kills = 0, double_kills = 0;
  bool primary_killed = false;
  while (!writer.done() || peer_kills < kMinPeerKills) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 500));
    if (writer.done() && peer_kills >= kMinPeerKills) break;
    if (!primary_killed && writer.acked_count() >= writes / 2) {
      primary_killed = true;
      MESSAGE(tag, ": kill -9 primary after ", writer.acked_count(), " acknowledged writes");
      primary->kill_hard();
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 900));
      primary->start();
      continue;
    }
    // Kill one peer, sometimes two at once (a chain then breaks in two places).
    std::vector<size_t> victims{rng() % peers.size()};
    if (rng() % 4 == 0) {
      size_t second = rng() % peers.size();
      if (second != victims[0]) {
        victims.push_back(second);
        ++double_kills;
      }
    }
    for (auto v : victims) {
      peers[v]->kill_hard();
      ++peer_kills;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 800));
    for (auto v : victims) peers[v]->start();
  }
  writer.join();
  auto t_writes = std::chrono::steady_clock::now();
  MESSAGE(tag, ": ", writer.acked_count(), " writes acknowledged in ", writer.requests(), " requests (",
          writer.failed_requests(), " failed) over ",
          std::chrono::duration_cast<std::chrono::milliseconds>(t_writes - t0).count(), " ms; ", peer_kills,
          " peer kills (", double_kills, " double), primary killed: ", primary_killed);
  CHECK(primary_killed);
  CHECK(peer_kills >= kMinPeerKills);
  REQUIRE(writer.acked_count() == writes);

  require_converged(*primary, all, 120s);
  auto t_conv = std::chrono::steady_clock::now();
  MESSAGE(tag, ": converged ", std::chrono::duration_cast<std::chrono::milliseconds>(t_conv - t_writes).count(),
          " ms after the last write; size ", target_of(*primary).size);

  // No acknowledged write is missing anywhere; nothing unacknowledged was invented.
  auto acked = writer.acked();
  std::set<int64_t> want(acked.begin(), acked.end());
  REQUIRE(want.size() == acked.size());
  auto on_primary = ids_on(*primary);
  {
    std::vector<int64_t> missing;
    std::set_difference(want.begin(), want.end(), on_primary.begin(), on_primary.end(), std::back_inserter(missing));
    CHECK_MESSAGE(missing.empty(), "the primary lacks ", missing.size(), " acknowledged ids");
  }
  for (auto* p : all) {
    auto have = ids_on(*p);
    std::vector<int64_t> missing;
    std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(missing));
    CHECK_MESSAGE(missing.empty(), p->name(), " lacks ", missing.size(), " acknowledged ids, e.g. ",
                  missing.empty() ? 0 : missing.front());
    CHECK(have == on_primary);
  }
  // Honest nodes never ban each other, whatever the kills cut mid-frame.
  auto nodes = all;
  nodes.push_back(primary.get());
  for (auto* node : nodes) {
    auto st = node->status();
    CHECK_MESSAGE(st["bans"].empty(), node->name(), " banned: ", st["bans"].dump());
    CHECK(st["evidence"].is_null());
    CHECK(st["apply_error"].is_null());
  }
  for (auto& p : peers) p->stop();
  primary->stop();
}

// --- hostile nodes -------------------------------------------------------------

// A connected raw protocol socket (blocking, with a receive timeout).
class Wire {
 public:
  explicit Wire(int fd) : fd_(fd) {
    timeval tv{0, 200 * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  static Wire dial(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return Wire(fd);
  }
  Wire(Wire&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ~Wire() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool send(ByteView b) {
    size_t off = 0;
    while (off < b.size()) {
      ssize_t n = ::send(fd_, b.data() + off, b.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  bool send(const net::Message& m) { return send(encode_frame(m)); }
  // The next message; nullopt on EOF, error, undecodable input or when `stop` is set.
  std::optional<net::Message> receive(const std::atomic<bool>& stop, std::chrono::milliseconds limit = 30s) {
    auto end = std::chrono::steady_clock::now() + limit;
    Bytes header(4);
    if (!read_exact(header, stop, end)) return std::nullopt;
    auto len = net::decode_frame_length(header);
    if (!len.ok()) return std::nullopt;
    Bytes body(len.value());
    if (!read_exact(body, stop, end)) return std::nullopt;
    auto m = net::decode_message(body);
    if (!m.ok()) return std::nullopt;
    return std::move(m).value();
  }
  void shutdown() { ::shutdown(fd_, SHUT_RDWR); }

 private:
  bool read_exact(Bytes& buf, const std::atomic<bool>& stop, std::chrono::steady_clock::time_point end) {
    size_t off = 0;
    while (off < buf.size()) {
      if (stop || std::chrono::steady_clock::now() > end) return false;
      ssize_t n = ::recv(fd_, buf.data() + off, buf.size() - off, 0);
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }
  int fd_;
};

// The primary's whole log as a client sees it: its head and every entry.
struct LogCopy {
  Head head;
  std::vector<Bytes> entries;
};

LogCopy fetch_log(const std::string& listen, const PublicKey& log_id) {
  auto port = static_cast<uint16_t>(std::stoi(listen.substr(listen.rfind(':') + 1)));
  Wire w = Wire::dial(port);
  net::Hello h;
  h.log_id = log_id;
  randombytes_buf(&h.node_id, sizeof h.node_id);
  REQUIRE(w.send(h));
  std::atomic<bool> never{false};
  LogCopy out;
  bool asked = false;
  for (;;) {
    auto m = w.receive(never);
    REQUIRE_MESSAGE(m, "the primary hung up before serving its log");
    if (auto* hello = std::get_if<net::Hello>(&*m)) {
      REQUIRE(hello->head);
      out.head = *hello->head;
      REQUIRE(w.send(net::GetEntries{0, static_cast<uint32_t>(out.head.size), 0}));
      asked = true;
    } else if (auto* e = std::get_if<net::Entries>(&*m); e && asked) {
      REQUIRE(e->from == 0);
      REQUIRE(e->entries.size() == out.head.size);  // small log: one batch
      REQUIRE(e->head == out.head);
      out.entries = e->entries;
      return out;
    }
  }
}

enum class Misbehaviour { flip_entry, forge_head, oversized_frame, garbage_frame };

std::string_view misbehaviour_name(Misbehaviour m) {
  switch (m) {
    case Misbehaviour::flip_entry: return "flip-entry";
    case Misbehaviour::forge_head: return "forge-head";
    case Misbehaviour::oversized_frame: return "oversized-frame";
    case Misbehaviour::garbage_frame: return "garbage-frame";
  }
  return "?";
}

// A node that speaks the protocol well enough to be dialled, then lies in one way:
//  flip-entry:      announces the primary's real head and serves its entries with
//                   one byte flipped (the batch cannot match the signed root);
//  forge-head:      its Hello carries a head of a larger size signed by another key;
//  oversized-frame: after Hello, a frame header announcing 4 GiB;
//  garbage-frame:   after Hello, an Entries frame whose payload is random bytes.
// One thread per connection; everything stops in the destructor.
class HostileNode {
 public:
  HostileNode(Misbehaviour m, const PublicKey& log_id, LogCopy log) : mode_(m), log_id_(log_id), log_(std::move(log)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    address_ = fmt::format("127.0.0.1:{}", ntohs(a.sin_port));
    randombytes_buf(&node_id_, sizeof node_id_);
    accepter_ = std::thread([this] { accept_loop(); });
  }
  ~HostileNode() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    accepter_.join();
    for (auto& t : connections_) t.join();
    ::close(listen_fd_);
  }
  const std::string& address() const { return address_; }
  Misbehaviour mode() const { return mode_; }
  int accepted() const { return accepted_; }
  int lies_told() const { return lies_; }  // misbehaving frames sent
  std::string node_id_hex() const { return fmt::format("{:016x}", node_id_); }

 private:
  void accept_loop() {
    for (;;) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (stop_) return;
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) {
        if (stop_) return;
        continue;
      }
      ++accepted_;
      connections_.emplace_back([this, fd] { serve(Wire(fd)); });
    }
  }

  void serve(Wire w) {
    net::Hello hello;
    hello.log_id = log_id_;
    hello.node_id = node_id_;
    hello.listen = address_;
    if (mode_ == Misbehaviour::flip_entry) hello.head = log_.head;
    if (mode_ == Misbehaviour::forge_head) {
      KeyPair forger = KeyPair::generate();
      Head forged = log_.head;
      forged.size += 1000;
      forged.log_id = forger.pub;
      forged.sign_with(forger.secret);
      forged.log_id = log_id_;  // claims the log; the signature is another key's
      hello.head = forged;
    }
    if (!w.send(hello)) return;
    if (mode_ == Misbehaviour::forge_head) ++lies_;
    if (mode_ == Misbehaviour::oversized_frame) {
      if (w.send(Bytes{0xff, 0xff, 0xff, 0xff, 0x04, 0x00})) ++lies_;
    }
    if (mode_ == Misbehaviour::garbage_frame) {
      Bytes frame{0, 0, 0, 65, static_cast<uint8_t>(net::MessageType::entries)};
      Bytes junk(64);
      randombytes_buf(junk.data(), junk.size());
      frame.insert(frame.end(), junk.begin(), junk.end());
      if (w.send(frame)) ++lies_;
    }
    // Answer what it asks until it hangs up (or bans us).
    while (!stop_) {
      auto m = w.receive(stop_, 60s);
      if (!m) return;
      if (auto* g = std::get_if<net::GetEntries>(&*m); g && mode_ == Misbehaviour::flip_entry) {
        uint64_t n = log_.entries.size();
        if (g->from >= n || g->from + g->count < n) {  // a request reaching past our head gets the tail
          w.send(net::ErrorMsg{net::ErrorCode::not_available, "only whole tails here"});
          continue;
        }
        net::Entries e;
        e.from = g->from;
        e.entries.assign(log_.entries.begin() + static_cast<ptrdiff_t>(g->from), log_.entries.end());
        Bytes& victim = e.entries[e.entries.size() / 2];
        victim[victim.size() / 2] ^= 0x01;
        e.head = log_.head;
        if (w.send(e)) ++lies_;
      } else if (std::holds_alternative<net::GetPeers>(*m)) {
        w.send(net::Peers{});
      }
    }
  }

  Misbehaviour mode_;
  PublicKey log_id_;
  LogCopy log_;
  int listen_fd_ = -1;
  std::string address_;
  uint64_t node_id_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0}, lies_{0};
  std::thread accepter_;
  std::vector<std::thread> connections_;  // touched by the accept thread, then joined
};

json ban_of(const json& status, const std::string& key) {
  for (const auto& b : status["bans"]) {
    if (b["key"] == key) return b;
  }
  return nullptr;
}

Evidence evidence_file_of(const fs::path& data_dir) {
  auto bytes = read_file(data_dir / "evidence.bin");
  REQUIRE_MESSAGE(!bytes.empty(), "no evidence file in ", data_dir.string());
  auto ev = decode_evidence(ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE_MESSAGE(ev.ok(), ev.error_text());
  return ev.value();
}

// The heads /status shows as evidence, rebuilt and checked by us.
Head head_from_json(const json& j, const PublicKey& log_id) {
  Head h;
  h.log_id = log_id;
  h.size = j["size"].get<uint64_t>();
  h.log_root = hash_from_hex(j["log_root"].get<std::string>()).value();
  h.state_root = hash_from_hex(j["state_root"].get<std::string>()).value();
  h.page_count = j["page_count"].get<uint32_t>();
  h.time_ms = j["time_ms"].get<int64_t>();
  auto sig = from_hex(j["signature"].get<std::string>()).value();
  REQUIRE(sig.size() == h.signature.size());
  std::copy(sig.begin(), sig.end(), h.signature.begin());
  return h;
}

}  // namespace

TEST_CASE("chain of 5 peers: 2,000 writes converge while peers are killed -9 and the primary once") {
  run_swarm_under_kills("chain", {-1, 0, 1, 2, 3});
}

TEST_CASE("tree of 5 peers: 2,000 writes converge while peers are killed -9 and the primary once") {
  run_swarm_under_kills("tree", {-1, -1, 0, 0, 1});
}

TEST_CASE("hostile nodes (flipped entry, forged head, oversized and garbage frames) are banned; honest data flows past") {
  ScratchDir dir("hostile");
  Keys keys = make_keys(dir.path);
  auto primary = make_primary(dir.path, keys, "primary");
  primary->start();
  execute_all(*primary, json::array({"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"}));
  for (int i = 1; i <= 40; ++i) {
    execute_all(*primary, json::array({json::array({"INSERT INTO t(id, v) VALUES(?, ?)", i, "honest"})}));
  }
  const uint64_t size = target_of(*primary).size;  // once a head covers the writes
  LogCopy log = fetch_log(primary->listen(), keys.pub);
  REQUIRE(log.entries.size() == size);

  std::vector<std::unique_ptr<HostileNode>> hostiles;
  for (auto m : {Misbehaviour::flip_entry, Misbehaviour::forge_head, Misbehaviour::oversized_frame,
                 Misbehaviour::garbage_frame}) {
    hostiles.push_back(std::make_unique<HostileNode>(m, keys.pub, log));
  }
  // The primary is away while the honest peers meet the hostile nodes, so the
  // flip-entry node is the only one offering entries: it is asked, for sure.
  primary->stop();
  std::vector<std::string> from;
  for (auto& h : hostiles) from.push_back(h->address());
  auto honest1 = make_peer(dir.path, keys, "honest1", [&] {
    auto f = from;
    f.push_back(primary->listen());
    return f;
  }(), 8);
  honest1->start();
  auto honest2 = make_peer(dir.path, keys, "honest2", [&] {
    auto f = from;
    f.push_back(honest1->listen());  // it reaches the primary's data only through honest1
    return f;
  }(), 8);
  honest2->start();

  const std::map<Misbehaviour, std::string> reason{{Misbehaviour::flip_entry, "invalid entries"},
                                                   {Misbehaviour::forge_head, "invalid head"},
                                                   {Misbehaviour::oversized_frame, "invalid frame"},
                                                   {Misbehaviour::garbage_frame, "invalid message"}};
  for (auto* peer : {honest1.get(), honest2.get()}) {
    std::string why;
    bool all_banned = eventually(
        [&] {
          why.clear();
          auto st = peer->status();
          for (auto& h : hostiles) {
            auto b = ban_of(st, h->address());
            if (b.is_null() || b["reason"].get<std::string>().find(reason.at(h->mode())) == std::string::npos) {
              why += fmt::format("{} not banned for '{}': {}\n", misbehaviour_name(h->mode()), reason.at(h->mode()),
                                 b.dump());
            }
          }
          return why.empty();
        },
        30s);
    CHECK_MESSAGE(all_banned, peer->name(), ":\n", why, peer->log_tail());
    // Logged once per ban with the reason; nothing of the hostile data stored.
    for (auto& h : hostiles) {
      CHECK_MESSAGE(count_lines_with(peer->log_path(), {"banned peer", h->address(), reason.at(h->mode())}) >= 1,
                    peer->name(), " did not log the ban of ", misbehaviour_name(h->mode()));
    }
    auto st = peer->status();
    CHECK(st["log_size"] == 0);
    CHECK(st["size"] == 0);
    CHECK(st["head"].is_null());
  }
  for (auto& h : hostiles) {
    CHECK_MESSAGE(h->lies_told() >= 2, misbehaviour_name(h->mode()), " lied only ", h->lies_told(), " times");
  }

  // The primary returns (same port): both honest peers converge past the hostile nodes,
  // the data stays the primary's, and they follow live writes.
  primary->start();
  for (int i = 41; i <= 60; ++i) {
    execute_all(*primary, json::array({json::array({"INSERT INTO t(id, v) VALUES(?, ?)", i, "honest"})}));
  }
  require_converged(*primary, {honest1.get(), honest2.get()}, 60s);
  for (auto* peer : {honest1.get(), honest2.get()}) {
    CHECK(ids_on(*peer).size() == 60);
    auto st = peer->status();
    CHECK(st["evidence"].is_null());
    for (const auto& b : st["bans"]) {  // only hostile nodes were banned
      bool hostile = false;
      for (auto& h : hostiles) hostile |= b["key"] == h->address() || b["key"] == "node:" + h->node_id_hex();
      CHECK_MESSAGE(hostile, peer->name(), " banned an honest node: ", b.dump());
    }
  }
  // Banned nodes are not dialled again: one connection from each honest peer's
  // node, plus the one Hello each empty peer exchanges before it starts to
  // choose how to bootstrap (--bootstrap, docs/operations.md "Starting a peer
  // from a snapshot").
  for (auto& h : hostiles) {
    CHECK_MESSAGE(h->accepted() == 4, misbehaviour_name(h->mode()), " was dialled ", h->accepted(), " times");
  }
  honest2->stop();
  honest1->stop();
  primary->stop();
}

TEST_CASE("a forked primary: the peer that meets both stores verifiable evidence, stops, and tells its peers") {
  ScratchDir dir("fork");
  Keys keys = make_keys(dir.path);
  // A common prefix, then two primaries with the same key on copies of it.
  auto a = make_primary(dir.path, keys, "a");
  a->start();
  execute_all(*a, json::array({"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"}));
  for (int i = 1; i <= 4; ++i) {
    execute_all(*a, json::array({json::array({"INSERT INTO t(id, v) VALUES(?, ?)", i, "common"})}));
  }
  uint64_t common = target_of(*a).size;  // the genesis entry + 5 writes
  a->stop();
  for (const auto& e : fs::directory_iterator(dir.path)) {
    auto name = e.path().filename().string();
    if (name.rfind("a.db", 0) == 0) {  // a.db, a.db.log/, a.db-wal …  ->  b.db, b.db.log/ …
      name[0] = 'b';
      fs::copy(e.path(), dir.path / name, fs::copy_options::recursive);
    }
  }
  // b runs once on the copy to fix its port, then waits (down) until r1 and r2 follow a.
  auto b = make_primary(dir.path, keys, "b");
  b->start();
  b->stop();
  a->start();
  for (int i = 5; i <= 7; ++i) {
    execute_all(*a, json::array({json::array({"INSERT INTO t(id, v) VALUES(?, ?)", i, "branch a"})}));
  }
  uint64_t size_a = target_of(*a).size;
  REQUIRE(size_a == common + 3);

  // r1 knows a and b; r2 follows only r1 (one outbound connection, to its seed). r1 is
  // never restarted, so r2 has no reason to dial anyone else.
  auto r1 = make_peer(dir.path, keys, "r1", {a->listen(), b->listen()}, 8);
  r1->start();
  auto r2 = make_peer(dir.path, keys, "r2", {r1->listen()}, 1);
  r2->start();
  require_converged(*a, {r1.get(), r2.get()}, 60s);

  // b comes up and writes its own branch; r1 (redialling its seed b) meets it.
  b->start();
  for (int i = 5; i <= 10; ++i) {
    execute_all(*b, json::array({json::array({"INSERT INTO t(id, v) VALUES(?, ?)", i, "branch b"})}));
  }
  REQUIRE(target_of(*b).size == common + 6);
  REQUIRE(eventually([&] { return !r1->status()["evidence"].is_null(); }, 60s));

  auto st1 = r1->status();
  MESSAGE("evidence at r1: ", st1["evidence"].dump());
  CHECK(st1["log_size"] == size_a);  // nothing of b's branch was stored
  CHECK(st1["size"] == size_a);
  CHECK(http(r1->http(), "GET", "/readyz").status == 503);
  CHECK(count_lines_with(r1->log_path(), {"EQUIVOCATED"}) >= 1);

  // Anyone holding the log id can check it: the stored file, and the heads /status shows.
  Evidence ev = evidence_file_of(dir.path / "r1.db.data");
  CHECK(ev.verify(keys.pub).ok());
  CHECK(ev.a == head_from_json(st1["evidence"]["a"], keys.pub));
  CHECK(ev.b == head_from_json(st1["evidence"]["b"], keys.pub));
  CHECK(ev.a.verify(keys.pub).ok());
  CHECK(ev.b.verify(keys.pub).ok());
  CHECK_FALSE(ev.verify(KeyPair::generate().pub).ok());  // not evidence against another log
  Evidence forged = ev;
  forged.b.state_root[0] ^= 1;  // a head the key never signed
  CHECK_FALSE(forged.verify(keys.pub).ok());

  // r2, which only ever talked to r1, gets it too.
  REQUIRE(eventually([&] { return !r2->status()["evidence"].is_null(); }, 30s));
  auto st2 = r2->status();
  Evidence ev2 = evidence_file_of(dir.path / "r2.db.data");
  CHECK(ev2.verify(keys.pub).ok());
  CHECK(ev2 == ev);
  for (const auto& p : st2["peers"]) CHECK(p["address"].get<std::string>() == r1->listen());
  CHECK(count_lines_with(r2->log_path(), {"connected", a->listen()}) == 0);
  CHECK(count_lines_with(r2->log_path(), {"connected", b->listen()}) == 0);

  // Both stopped following: a's new writes do not reach them.
  for (int i = 8; i <= 9; ++i) {
    execute_all(*a, json::array({json::array({"INSERT INTO t(id, v) VALUES(?, ?)", i, "after"})}));
  }
  std::this_thread::sleep_for(1500ms);
  CHECK(r1->status()["log_size"] == size_a);
  CHECK(r2->status()["log_size"] == size_a);
  CHECK(http(r2->http(), "GET", "/readyz").status == 503);
  r2->stop();
  r1->stop();
  b->stop();
  a->stop();
}
