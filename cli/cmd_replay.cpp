// swarmlite replay --log DIR --pub KEY --db replica.db: brings a replica up to
// the newest signed head of a log directory, verifying every entry's state
// root, and prints the replica's head. Non-zero exit on any failure.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/print_head.h"
#include "core/keys.h"
#include "sqlbridge/engine/replica.h"

namespace swarmlite::cli {

void add_replay_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("replay", "Apply a log directory to a replica database, verifying everything");
  struct Args {
    std::string log, pub, db;
    uint64_t batch = ReplicaOptions{}.max_batch_entries;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--log", args->log, "Log directory (e.g. P.db.log)")->required();
  cmd->add_option("--pub", args->pub, "The primary's public key: 64 hex digits or a .pub file")->required();
  cmd->add_option("--db", args->db, "Replica database file (created if missing)")->required();
  cmd->add_option("--batch", args->batch,
                  "Entries per SQLite transaction, root checked at each batch's end (1: one "
                  "transaction and root check per entry; docs/determinism.md \"Batched replay\")")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([args] {
    PublicKey pub = must(load_public_key(args->pub), "replay: loading the public key");
    ReplicaOptions options;
    options.max_batch_entries = args->batch;
    auto replica = must(Replica::open(args->db, args->log, pub, options), "replay: opening the replica");
    std::optional<Head> head = replica->log().head();
    if (!head) throw CliError(1, "replay: the log in " + args->log + " has no signed head");
    uint64_t before = replica->size();
    uint64_t applied = must(replica->apply_available(head->size), "replay");
    if (replica->size() != head->size) {
      throw CliError(1, fmt::format("replay: replica is at {} entries but the head covers {}",
                                    replica->size(), head->size));
    }
    fmt::print("applied {} entries ({} already applied)\n", applied, before);
    if (replica->log().size() > head->size) {
      fmt::print("note: {} entries beyond the newest signed head were not applied\n",
                 replica->log().size() - head->size);
    }
    fmt::print("replica: size={} state_root={} page_count={}\n", replica->size(),
               to_hex(replica->state_root()), replica->page_count());
    print_head(*head);
  });
}

}  // namespace swarmlite::cli
