// swarmlite fetch --from URL|HOST:PORT[,...] --pub KEY --out FILE: a verified copy of
// a database from untrusted nodes (their HTTP APIs or their peer-protocol
// addresses, docs/protocol.md "Snapshots"), chunk by chunk, each checked against the
// newest head the key signed before it is written; resumable after a kill
// (client/snapshot_fetch.h, docs/operations.md "Getting a verified copy").
#ifdef SWARMLITE_HAVE_NET
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "client/snapshot_fetch.h"
#include "core/keys.h"
#include "net/protocol.h"

namespace swarmlite::cli {

void add_fetch_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "fetch",
      "Get a verified copy of the database from untrusted nodes, chunk by chunk (resumable)");
  struct Args {
    std::string from, pub, out;
    size_t parallel = 2;
    uint32_t chunk_pages = 0;
    double timeout_s = 60;
    int retries = 3;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--from", a->from,
                  "Nodes (primary or peers), comma-separated: their HTTP APIs http://HOST:PORT "
                  "or their peer addresses HOST:PORT (--listen), mixed as you like")
      ->required();
  cmd->add_option("--pub", a->pub, "The log's public key (64 hex digits or a .pub file)")
      ->required();
  cmd->add_option("--out", a->out,
                  "The database file to write (must not exist; FILE.part while fetching)")
      ->required();
  cmd->add_option("--parallel", a->parallel, "Requests in flight per node")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--chunk-pages", a->chunk_pages,
                  "Pages per request (default: the nodes' suggestion, 1024)")
      ->check(CLI::Range(1, 16384));
  cmd->add_option("--timeout", a->timeout_s, "Seconds one request may take")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--retries", a->retries,
                  "Failures in a row before a node is dropped for this run")
      ->check(CLI::Range(0, 100));
  cmd->callback([a] {
    auto pub = must(load_public_key(a->pub), "--pub");
    std::vector<std::unique_ptr<client::ChunkSource>> owned;
    std::vector<client::ChunkSource*> sources;
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(a->timeout_s * 1000));
    for (size_t i = 0; i <= a->from.size();) {
      size_t comma = std::min(a->from.find(',', i), a->from.size());
      std::string url = a->from.substr(i, comma - i);
      i = comma + 1;
      if (url.empty()) continue;
      if (client::is_http_source(url)) {
        owned.push_back(client::http_chunk_source(url, timeout));
      } else {
        if (auto hp = net::parse_host_port(url); !hp.ok()) {
          throw CliError(1, fmt::format("--from {}: neither an http:// URL nor a peer address: {}", url,
                                        hp.error().message));
        }
        owned.push_back(client::peer_chunk_source(url, pub, timeout));
      }
      sources.push_back(owned.back().get());
    }
    if (sources.empty()) throw CliError(1, "--from: no URL or peer address given");
    Progress progress("fetch", "pages");
    std::mutex mu;
    client::SnapshotFetchOptions o;
    o.log_id = pub;
    o.out = a->out;
    o.chunk_pages = a->chunk_pages;
    o.parallel = a->parallel;
    o.retries = a->retries;
    o.progress = [&](uint64_t done, uint64_t total) {
      std::lock_guard lock(mu);
      progress.update(done, total);
    };
    o.log = [&](const std::string& line) {
      std::lock_guard lock(mu);
      // On a terminal, over the progress line (redrawn at the next update).
      std::fprintf(stderr, "%sfetch: %s\n", ::isatty(STDERR_FILENO) == 1 ? "\r\033[K" : "",
                   line.c_str());
    };
    auto r = client::fetch_snapshot(sources, o);
    progress.finish();
    if (!r.ok()) {
      const bool kept = std::filesystem::exists(client::progress_path(o.out));
      throw CliError(
          2, fmt::format(
                 "fetch into {}: {}{}", a->out, r.error().to_string(),
                 kept ? fmt::format(" (progress kept in {}: run the same command again to resume)",
                                    client::progress_path(o.out).string())
                      : ""));
    }
    for (const auto& b : r->banned) std::fprintf(stderr, "fetch: banned %s\n", b.c_str());
    std::printf(
        "verified %s: %llu bytes, %u pages (%u fetched, %u kept from an earlier run), size %llu, "
        "state root %s\n",
        a->out.c_str(), static_cast<unsigned long long>(r->bytes), r->page_count, r->pages_fetched,
        r->pages_kept, static_cast<unsigned long long>(r->head.size),
        to_hex(r->head.state_root).c_str());
  });
}

}  // namespace swarmlite::cli
#endif
