// Shared by `swarmlite primary` and `swarmlite peer`: the network flags and
// running a node until SIGINT/SIGTERM.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "net/node.h"

namespace swarmlite::cli {

struct NodeFlags {
  std::string listen;
  std::string announce;
  std::string http;
  std::string log_level = "info";
  size_t max_peers = 64;
  size_t max_outbound = 8;
  int ban_seconds = 600;
};

// Adds --listen (required), --announce, --http, --log-level, --max-peers, --max-outbound, --ban-time.
void add_node_flags(CLI::App& cmd, NodeFlags& flags);
// Sets the spdlog level; throws CliError on an unknown level.
void set_log_level(const std::string& level);
net::NodeOptions node_options(const NodeFlags& flags);
// Starts the node, says where it listens, blocks until a signal stops it, and
// reports the final state. Throws CliError when it cannot start.
void run_node(net::NodeBackend& backend, net::NodeOptions options, const NodeFlags& flags);

}  // namespace swarmlite::cli
