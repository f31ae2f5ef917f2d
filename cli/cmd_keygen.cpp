// swarmlite keygen --out DIR: a new Ed25519 key pair for a primary.
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/keys.h"

namespace swarmlite::cli {

void add_keygen_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("keygen", "Create a primary's key pair: DIR/primary.key (0600) and DIR/primary.pub");
  auto out = std::make_shared<std::string>();
  cmd->add_option("--out", *out, "Directory for the key files (created if missing)")->required();
  cmd->callback([out] {
    KeyPair keys = KeyPair::generate();
    must(write_key_files(*out, keys), "keygen");
    fmt::print("wrote {}/{} (secret, mode 0600) and {}/{}\nlog id (public key): {}\n", *out,
               kSecretKeyFile, *out, kPublicKeyFile, keys.pub.hex());
  });
}

}  // namespace swarmlite::cli
