// What `swarmlite shell` and `swarmlite query --light` share (docs/light-client.md
// "Commands"): the flags that make a light client, and opening it.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "client/light_client.h"
#include "core/keys.h"

namespace swarmlite::cli {

struct LightFlags {
  std::vector<std::string> peers;  // --peer, repeatable, each may be a comma-separated list
  std::string pub;
  std::string cache;  // --cache DIR ("" : the default under the user's cache directory)
  uint64_t cache_mib = 256;
  uint64_t min_size = 0;
  std::string max_age;
  double timeout_s = 30;
  bool no_seed = false;  // --no-seed: a cold query goes page by page, not from one proof=1 answer
};

// --peer, --pub, --cache, --cache-mib, --min-size, --max-age, --timeout, --no-seed on `cmd`;
// `peer_required`: shell needs --peer, query --light checks it itself.
void add_light_flags(CLI::App& cmd, LightFlags& f, bool peer_required);

// $XDG_CACHE_HOME/swarmlite/<log key hex>, else ~/.cache/swarmlite/<log key hex>.
std::filesystem::path default_light_cache(const PublicKey& log_key);

// The light client the flags describe: one HTTP page source per peer URL, in
// order. Throws CliError (1) naming the flag or the cache directory at fault.
std::unique_ptr<client::LightClient> open_light_client(const LightFlags& f);

// One line about what the last answer cost and where the client stands
// (`.stats on` in the shell, the footer of `query --light`).
std::string light_stats_line(const client::LightClient& c, const client::LightAnswer& a);

}  // namespace swarmlite::cli
