// swarmlite — verifiable SQLite read replicas. Entry point: parses the command
// line (CLI11) and dispatches to the subcommands in cmd_*.cpp.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

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
  swarmlite::cli::add_shell_command(app);
#endif

  // `swarmlite shell` takes sqlite3's single-dash spellings too (-json,
  // -header, -cmd, -stats): CLI11 reads a single dash as short options only.
  const bool shell = argc > 1 && std::string(argv[1]) == "shell";
  try {
    if (!shell) {
      app.parse(argc, argv);
    } else {
      app.name(argv[0]);
      std::vector<std::string> args(argv + 1, argv + argc);
      for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "-json" || args[i] == "-header" || args[i] == "-cmd" || args[i] == "-stats")
          args[i] = "-" + args[i];
      }
      std::reverse(args.begin(), args.end());  // CLI11's vector form: last argument first
      app.parse(args);
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const swarmlite::cli::CliError& e) {
    std::fprintf(stderr, "swarmlite: %s\n", e.what());
    return e.exit_code;
  }
  return 0;
}
