// swarmlite — verifiable SQLite read replicas. Entry point: parses the command
// line (CLI11) and dispatches to the subcommands in cmd_*.cpp.
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"swarmlite: SQLite read replicas that untrusted peers serve and clients verify"};
  app.set_version_flag("--version", std::string("swarmlite ") + SWARMLITE_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  swarmlite::cli::add_keygen_command(app);
  swarmlite::cli::add_import_command(app);
  swarmlite::cli::add_audit_command(app);
  swarmlite::cli::add_exec_command(app);
  swarmlite::cli::add_replay_command(app);
  swarmlite::cli::add_compact_command(app);
  swarmlite::cli::add_query_command(app);
  swarmlite::cli::add_verify_command(app);
#ifdef SWARMLITE_HAVE_NET
  swarmlite::cli::add_status_command(app);
  swarmlite::cli::add_backup_command(app);
  swarmlite::cli::add_fetch_command(app);
  swarmlite::cli::add_primary_command(app);
  swarmlite::cli::add_peer_command(app);
  swarmlite::cli::add_demo_command(app);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const swarmlite::cli::CliError& e) {
    std::fprintf(stderr, "swarmlite: %s\n", e.what());
    return e.exit_code;
  }
  return 0;
}
