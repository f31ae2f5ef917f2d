// swarmlite compact --log DIR --keep-from N|head: drops the entries of a log
// directory before N, whole segments at a time, after writing a checkpoint
// record (docs/formats/log-store.md "Checkpoint and compaction";
// docs/operations.md "Compacting a log"). Offline: the directory's LOCK keeps
// a running primary or peer out (and this out of theirs).
#include <fmt/format.h>

#include <optional>

#include "cli/commands.h"
#include "core/keys.h"
#include "core/log.h"

namespace swarmlite::cli {

namespace {

// The log id the stored head names (a log to compact has one: the checkpoint
// records it). The store is closed again before the log opens it.
PublicKey log_id_of(const std::string& dir) {
  auto store = must(LogStore::open(dir), "compact: opening the log store " + dir);
  auto bytes = must(store->load_head(), "compact: reading the head of " + dir);
  if (!bytes) {
    throw CliError(1, fmt::format("compact: the log in {} has no signed head; a checkpoint "
                                  "records one, so there is nothing it may drop",
                                  dir));
  }
  return must(decode_head(*bytes), "compact: decoding the head of " + dir).log_id;
}

}  // namespace

void add_compact_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compact",
      "Drop a log directory's entries before N (offline; keeps a verifiable checkpoint)");
  struct Args {
    std::string log, pub, keep_from;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--log", args->log, "Log directory (e.g. P.db.log), not open elsewhere")
      ->required();
  cmd->add_option("--keep-from", args->keep_from,
                  "First entry to keep (at most the stored head's size), or \"head\" for the "
                  "stored head's size. Whole segments are dropped, so the log may start a little "
                  "earlier")
      ->required();
  cmd->add_option("--pub", args->pub,
                  "The primary's public key (64 hex digits or a .pub file); default: the one "
                  "the stored head names");
  cmd->callback([args] {
    PublicKey id = args->pub.empty()
                       ? log_id_of(args->log)
                       : must(load_public_key(args->pub), "compact: loading the public key");
    auto log = must(Log::open(args->log, id), "compact: opening the log " + args->log);
    if (!log->head()) {
      throw CliError(1, fmt::format("compact: the log in {} has no signed head", args->log));
    }
    const uint64_t head_size = log->head()->size;
    uint64_t keep_from = 0;
    if (args->keep_from == "head") {
      keep_from = head_size;
    } else {
      size_t used = 0;
      try {
        keep_from = std::stoull(args->keep_from, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != args->keep_from.size() || args->keep_from[0] == '-') {
        throw CliError(2, fmt::format("compact: --keep-from {}: expected an entry number or "
                                      "\"head\"",
                                      args->keep_from));
      }
    }
    if (keep_from > head_size) {
      throw CliError(1, fmt::format("compact: --keep-from {} is past the stored head, which "
                                    "covers {} entries: a checkpoint must lie under a signed head",
                                    keep_from, head_size));
    }
    const uint64_t before = log->first_entry();
    DropStats stats = must(log->compact(keep_from), "compact");
    if (stats.segments == 0) {
      fmt::print(
          "nothing dropped: the log already starts at entry {} and the segment holding "
          "entry {} starts at or before it (segments are dropped whole)\n",
          before, keep_from);
    } else {
      fmt::print("dropped {} entries [{}, {}) in {} segments, {} bytes\n", stats.entries, before,
                 log->first_entry(), stats.segments, stats.bytes);
    }
    fmt::print("log now starts at entry {} and ends at {} (checkpoint head at size {})\n",
               log->first_entry(), log->size(), head_size);
  });
}

}  // namespace swarmlite::cli
