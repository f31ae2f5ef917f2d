// `swarmlite peer --bootstrap` through real processes (docs/operations.md
// "Starting a peer from a snapshot"): a primary with 2,000 small writes and
// two peers, one of which compacts its log (`swarmlite compact`, small
// segments). A new peer with --bootstrap auto (many entries per page: a
// snapshot) is killed with SIGKILL at random points of its bootstrap three
// times, each time leaving no database without its log, then restarted: it
// finishes from the three nodes, follows new writes, and its pages equal
// those of the peer that replayed the whole log; sqlite3 reads it. A peer
// that may only replay, from the compacted peer alone, exits with an error
// naming the first entry available and --bootstrap snapshot.
//
// Lying nodes (LyingProxy, in front of a real node) in the --from lists: with
// six nodes that never answer and one that holds entry 0 but serves only bad
// pages, an auto peer starts within one probe timeout, bans the liar and falls
// back to a replay (page-identical to the replaying peer); --bootstrap
// snapshot fails with a clear error instead, and so does its resumption under
// auto. The killed peer's list also holds a forged head (ignored), a liar's
// bad pages (banned) and a bad frontier (refused, the next node asked).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "cli/proc/child_process.h"
#include "core/keys.h"
#include "net/protocol.h"
#include "sqlbridge/engine/snapshot_chunk.h"
#include "sqlbridge/engine/state_tree.h"
#include "tests/integration/http_test_util.h"
#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using swarmlite::proc::ChildProcess;
using swarmlite::testing::sh;
using swarmlite::testing::slurp;
const fs::path kBin = SWARMLITE_BIN;

struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("bootstrap") {}
};

using swarmlite::testing::status_u64;
uint64_t status_field(const std::string& base, const std::string& field) { return status_u64(base, field); }
uint64_t status_size(const std::string& base) { return status_u64(base, "size"); }

// Until the node's log and (on a peer) its database are at `size`.
void wait_size(const std::string& base, uint64_t size, bool applied = true) {
  auto done = [&] {
    return status_size(base) == size && (!applied || status_field(base, "applied_size") == size);
  };
  for (int i = 0; i < 1200 && !done(); ++i) std::this_thread::sleep_for(100ms);
  REQUIRE(done());
}

using swarmlite::testing::execute_ok;

std::vector<swarmlite::Bytes> pages(const fs::path& db) {
  auto raw = swarmlite::read_logical_pages(db);
  REQUIRE_MESSAGE(raw.ok(), raw.error_text());
  std::vector<swarmlite::Bytes> out;
  for (size_t i = 0; i < raw->size(); ++i)
    out.push_back(swarmlite::normalize_page(static_cast<uint32_t>(i + 1), (*raw)[i]));
  return out;
}

std::unique_ptr<ChildProcess> start_peer(const Dir& dir, const std::string& name,
                                         const std::string& from,
                                         std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"peer", "--db", (dir / (name + ".db")).string(), "--pub",
                                (dir / "k/primary.pub").string(), "--from", from, "--listen",
                                "127.0.0.1:0", "--http", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<ChildProcess>(name, kBin, args, dir / (name + ".log"));
}

// --- lying nodes ------------------------------------------------------------

enum class Lie {
  silent,        // accepts connections and never sends a byte
  forge_head,    // its Hello carries a head 1,000 entries ahead, signed by another key
  bad_pages,     // every SnapshotPages answer has one page byte flipped
  bad_frontier,  // every Frontier answer has one byte of its entry flipped
};

// A node in front of a real one (`upstream`, host:port): every frame passes
// through both ways, except the one lie of its mode in what the upstream
// answers. Its Hello carries its own node id, so a ban of it is not a ban of
// the upstream. One thread per direction and connection; stops in the destructor.
class LyingProxy {
 public:
  LyingProxy(Lie lie, std::string upstream) : lie_(lie), upstream_(std::move(upstream)) {
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
  ~LyingProxy() {
    stop_ = true;
    accepter_.join();
    std::lock_guard lock(mu_);
    for (auto& t : threads_) t.join();
    ::close(listen_fd_);
  }
  const std::string& address() const { return address_; }
  int lies_told() const { return lies_; }

 private:
  static int dial(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  // Waits for input on fd (false: stopped or the peer went away).
  bool readable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      int rc = ::poll(&p, 1, 100);
      if (rc > 0) return true;
      if (rc < 0 && errno != EINTR) return false;
    }
    return false;
  }
  bool read_exact(int fd, uint8_t* out, size_t n) {
    size_t done = 0;
    while (done < n) {
      if (!readable(fd)) return false;
      ssize_t got = ::recv(fd, out + done, n - done, 0);
      if (got <= 0) return false;
      done += static_cast<size_t>(got);
    }
    return true;
  }
  static bool send_all(int fd, const uint8_t* b, size_t n) {
    size_t done = 0;
    while (done < n) {
      ssize_t sent = ::send(fd, b + done, n - done, MSG_NOSIGNAL);
      if (sent <= 0) return false;
      done += static_cast<size_t>(sent);
    }
    return true;
  }

  void accept_loop() {
    while (!stop_) {
      if (!readable(listen_fd_)) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int down) {
    if (lie_ == Lie::silent) {
      while (!stop_) std::this_thread::sleep_for(100ms);
      ::close(down);
      return;
    }
    int up = dial(upstream_);
    if (up < 0) {
      ::close(down);
      return;
    }
    // What the client sends goes up unchanged.
    std::thread client_to_upstream([this, down, up] {
      uint8_t buf[16384];
      while (readable(down)) {
        ssize_t got = ::recv(down, buf, sizeof buf, 0);
        if (got <= 0 || !send_all(up, buf, static_cast<size_t>(got))) break;
      }
      ::shutdown(up, SHUT_RDWR);
    });
    // What the upstream answers comes down frame by frame, with the lie.
    for (;;) {
      uint8_t header[swarmlite::net::kFrameHeaderBytes];
      if (!read_exact(up, header, sizeof header)) break;
      auto len = swarmlite::net::decode_frame_length(swarmlite::ByteView(header, sizeof header));
      if (!len.ok()) break;
      swarmlite::Bytes body(*len);
      if (!read_exact(up, body.data(), body.size())) break;
      swarmlite::Bytes frame(header, header + sizeof header);
      frame.insert(frame.end(), body.begin(), body.end());
      if (auto m = swarmlite::net::decode_message(body); m.ok()) {
        if (auto rewritten = lie_in(*m)) frame = std::move(*rewritten);
      }
      if (!send_all(down, frame.data(), frame.size())) break;
    }
    ::shutdown(down, SHUT_RDWR);
    client_to_upstream.join();
    ::close(up);
    ::close(down);
  }

  // The frame to send instead of `m`, or nullopt to pass it as it came.
  std::optional<swarmlite::Bytes> lie_in(swarmlite::net::Message& m) {
    namespace net = swarmlite::net;
    if (auto* h = std::get_if<net::Hello>(&m)) {
      h->node_id = node_id_;
      if (lie_ == Lie::forge_head && h->head) {
        const auto log_id = h->head->log_id;
        auto forger = swarmlite::KeyPair::generate();
        h->head->size += 1000;
        h->head->log_id = forger.pub;
        h->head->sign_with(forger.secret);
        h->head->log_id = log_id;  // claims the log; the signature is another key's
        ++lies_;
      }
      return net::encode_frame(m);
    }
    if (auto* p = std::get_if<net::SnapshotPages>(&m); p && lie_ == Lie::bad_pages) {
      auto chunk = swarmlite::decode_snapshot_chunk(p->chunk);
      if (!chunk.ok() || chunk->pages.empty()) return std::nullopt;
      chunk->pages[chunk->pages.size() / 2 + 100] ^= 0x40;
      p->chunk = swarmlite::encode_snapshot_chunk(*chunk);
      ++lies_;
      return net::encode_frame(m);
    }
    if (auto* f = std::get_if<net::Frontier>(&m); f && lie_ == Lie::bad_frontier) {
      if (f->last_entry.empty()) return std::nullopt;
      f->last_entry[f->last_entry.size() / 2] ^= 0x01;
      ++lies_;
      return net::encode_frame(m);
    }
    return std::nullopt;
  }

  Lie lie_;
  std::string upstream_;
  int listen_fd_ = -1;
  std::string address_;
  uint64_t node_id_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> lies_{0};
  std::thread accepter_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("a new peer bootstraps from a snapshot of three nodes, survives kills, then follows") {
  Dir dir;
  swarmlite::testing::keygen(kBin, dir.path);
  ChildProcess primary("primary", kBin, swarmlite::testing::primary_args(dir.path), dir / "primary.log");
  primary.wait_ready(60s);
  const std::string p = primary.http();
  execute_ok(p, R"J(["CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)"])J");
  // peer2 follows the writes as they come, in small batches, so its log
  // has many 64 KiB segments to compact below (a batch never spans two
  // segments, and one catch-up batch may hold all 2,000 entries).
  auto peer2 = start_peer(dir, "peer2", primary.listen(),
                          {"--bootstrap", "replay", "--log-segment-mib", "0.0625"});
  peer2->wait_ready(60s);
  for (int i = 0; i < 2000; ++i) execute_ok(p, R"J(["INSERT INTO t(b) VALUES (randomblob(700))"])J");
  uint64_t size = status_size(p);
  REQUIRE(size >= 2001);  // and the genesis entry

  // peer1 replays everything; peer2 has too, then compacts its log (offline).
  auto peer1 = start_peer(dir, "peer1", primary.listen(), {"--bootstrap", "replay"});
  peer1->wait_ready(60s);
  wait_size(peer1->http(), size);
  wait_size(peer2->http(), size);
  peer2->stop();
  REQUIRE(sh(kBin.string() + " compact --log " + (dir / "peer2.db.data/log").string() +
                 " --keep-from head",
             dir / "compact.out") == 0);
  INFO(slurp(dir / "compact.out"));
  REQUIRE(slurp(dir / "compact.out").find("log now starts at entry 0 ") == std::string::npos);
  peer2 = start_peer(dir, "peer2", primary.listen(), {"--log-segment-mib", "0.0625"});
  peer2->wait_ready(60s);

  // Replay only, from the compacted peer alone: a clear refusal.
  {
    ChildProcess replay("peer4", kBin,
                        {"peer", "--db", (dir / "peer4.db").string(), "--pub",
                         (dir / "k/primary.pub").string(), "--from", peer2->listen(), "--listen",
                         "127.0.0.1:0", "--bootstrap", "replay"},
                        dir / "peer4.log");
    REQUIRE(replay.wait_exit(60s));
    CHECK(replay.exit_code() == 1);
    const std::string out = slurp(dir / "peer4.log");
    CHECK_MESSAGE(out.find("the first entry available is") != std::string::npos, out);
    CHECK_MESSAGE(out.find("--bootstrap snapshot") != std::string::npos, out);
    CHECK_FALSE(fs::exists(dir / "peer4.db"));
  }

  // Nodes that never answer, a forger and liars (LyingProxy) for the --from lists below.
  std::vector<std::unique_ptr<LyingProxy>> silent;
  std::string silent_from;
  for (int i = 0; i < 6; ++i) {
    silent.push_back(std::make_unique<LyingProxy>(Lie::silent, ""));
    silent_from += silent.back()->address() + ",";
  }
  LyingProxy forger(Lie::forge_head, primary.listen());
  LyingProxy bad_pages(Lie::bad_pages, primary.listen());
  LyingProxy bad_pages1(Lie::bad_pages, peer1->listen());
  LyingProxy bad_frontier(Lie::bad_frontier, primary.listen());

  // --bootstrap auto (many entries per page: a snapshot), where the only node
  // reached serves bad pages (banned before a page verifies) but holds entry
  // 0, behind six nodes that never answer: the probe takes one Hello
  // timeout, not one per silent node, and the peer falls back to a replay.
  {
    const auto t0 = std::chrono::steady_clock::now();
    auto peer5 = start_peer(dir, "peer5", silent_from + bad_pages.address());
    peer5->wait_ready(60s);
    const auto took = std::chrono::steady_clock::now() - t0;
    // One 5 s probe timeout for the six silent nodes (in turn: 30 s).
    CHECK_MESSAGE(took < 15s, "peer5 took ",
                  std::chrono::duration_cast<std::chrono::seconds>(took).count(), " s to start");
    wait_size(peer5->http(), size);
    peer5->stop();
    const std::string out = slurp(dir / "peer5.log");
    CHECK_MESSAGE(out.find("banned for this run") != std::string::npos, out);
    CHECK_MESSAGE(out.find("replays the log from entry 0 instead") != std::string::npos, out);
    CHECK(bad_pages.lies_told() >= 1);
    CHECK_FALSE(fs::exists(dir / "peer5.db.data/bootstrap.db.part"));
    CHECK(pages(dir / "peer5.db") == pages(dir / "peer1.db"));
  }

  // --bootstrap snapshot from the same liar: no fallback, a clear error; and a
  // bootstrap so begun keeps being one (no fallback under auto either).
  for (const std::string mode : {"snapshot", "auto"}) {
    ChildProcess snap(
        "peer6", kBin,
        {"peer", "--db", (dir / "peer6.db").string(), "--pub", (dir / "k/primary.pub").string(),
         "--from", bad_pages.address(), "--listen", "127.0.0.1:0", "--bootstrap", mode},
        dir / "peer6.log");
    REQUIRE(snap.wait_exit(60s));
    CHECK(snap.exit_code() == 2);
    const std::string out = slurp(dir / "peer6.log");
    CHECK_MESSAGE(
        out.find("from a snapshot: unavailable: no source can serve the rest") != std::string::npos,
        out);
    CHECK_MESSAGE(out.find("instead") == std::string::npos, out);
    CHECK_FALSE(fs::exists(dir / "peer6.db"));
    CHECK(fs::exists(dir / "peer6.db.data/bootstrap.db.part.progress"));
  }
  CHECK(slurp(dir / "peer6.log").find("resuming the snapshot bootstrap") != std::string::npos);

  // peer3: killed three times during its bootstrap, at random points. Among its
  // nodes: a forged head (ignored), a node serving bad pages (banned), one
  // serving a bad frontier (asked first for it, refused).
  const std::string from = forger.address() + "," + bad_frontier.address() + "," +
                           bad_pages1.address() + "," + primary.listen() + "," + peer1->listen() +
                           "," + peer2->listen();
  const std::vector<std::string> small_chunks{"--bootstrap-chunk-pages", "2"};
  std::mt19937 rng(std::random_device{}());
  const fs::path part = dir / "peer3.db.data/bootstrap.db.part";
  int killed_mid_fetch = 0;
  for (int k = 0; k < 3; ++k) {
    auto peer3 = start_peer(dir, "peer3", from, small_chunks);
    // Once the fetch is under way (its .part exists), at a random point of it.
    for (int i = 0; i < 20000 && !fs::exists(part) && !fs::exists(dir / "peer3.db"); ++i)
      std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 30));
    peer3->kill_hard();
    if (fs::exists(part)) ++killed_mid_fetch;
    // The commit order: a database only once its log exists.
    if (fs::exists(dir / "peer3.db")) CHECK(fs::exists(dir / "peer3.db.data/log"));
    CHECK_FALSE(fs::exists(dir / "peer3.db.data/log.bootstrap/head"));
  }
  CHECK(killed_mid_fetch >= 1);
  auto peer3 = start_peer(dir, "peer3", from, small_chunks);
  peer3->wait_ready(120s);
  wait_size(peer3->http(), size);
  const std::string log3 = slurp(dir / "peer3.log");
  CHECK_MESSAGE(log3.find("starts at the snapshot of head") != std::string::npos, log3);
  CHECK_MESSAGE(log3.find("that is not signed by the log's key; ignored") != std::string::npos,
                log3);
  CHECK_MESSAGE(log3.find(bad_pages1.address() + ": banned for this run") != std::string::npos,
                log3);
  CHECK(bad_frontier.lies_told() >= 1);
  CHECK(log3.find("frontier from " + bad_frontier.address()) == std::string::npos);
  // Some restart resumed: kept verified chunks, or the staged verified file.
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = log3.find(what); at != std::string::npos; at = log3.find(what, at + 1)) ++n;
    return n;
  };
  CHECK_MESSAGE((count(" kept from an earlier run") > count("(0 kept from an earlier run") ||
                 count("resuming") > 0),
                log3);

  // It follows new writes.
  for (int i = 0; i < 20; ++i) execute_ok(p, R"J(["INSERT INTO t(b) VALUES (randomblob(700))"])J");
  size = status_size(p);
  wait_size(peer3->http(), size);
  wait_size(peer1->http(), size);
  peer3->stop();
  peer1->stop();
  CHECK(pages(dir / "peer3.db") == pages(dir / "peer1.db"));
  REQUIRE(sh("sqlite3 -readonly " + (dir / "peer3.db").string() + " \"SELECT count(*) FROM t\"",
             dir / "count") == 0);
  CHECK(slurp(dir / "count") == "2020\n");
}
