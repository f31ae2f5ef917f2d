// Subcommand registration. Each add_*_command adds one subcommand to `app`;
// its callback throws CliError (exit code + message) on failure — exceptions
// stop here in cli/ (docs/hacking.md "Style").
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/entry.h"
#include "core/result.h"

namespace swarmlite::cli {

struct CliError : std::runtime_error {
  CliError(int code, const std::string& what) : std::runtime_error(what), exit_code(code) {}
  int exit_code;
};

// Unwraps a Result or throws CliError(1, "<context>: <error>").
template <class T>
T must(Result<T> r, const std::string& context) {
  if (!r.ok()) throw CliError(1, context + ": " + r.error().to_string());
  return std::move(r).value();
}
inline void must(Status s, const std::string& context) {
  if (!s.ok()) throw CliError(1, context + ": " + s.error().to_string());
}

// A --param value: a JSON scalar (42, 1.5, null, "text") or, failing that, text.
Value param_value(const std::string& text);
// --max-age: "30s", "5m", "1h", "250ms" or plain seconds ("" : none). Throws CliError.
std::optional<std::chrono::milliseconds> max_age_of(const std::string& text);

void add_keygen_command(CLI::App& app);
void add_import_command(CLI::App& app);  // cmd_import.cpp
void add_audit_command(CLI::App& app);   // cmd_audit.cpp
void add_exec_command(CLI::App& app);    // cmd_exec.cpp
void add_replay_command(CLI::App& app);  // cmd_replay.cpp
void add_compact_command(CLI::App& app);  // cmd_compact.cpp
void add_query_command(CLI::App& app);   // cmd_query.cpp
void add_verify_command(CLI::App& app);  // cmd_query.cpp
void add_status_command(CLI::App& app);  // cmd_status.cpp (SWARMLITE_HAVE_NET only)
void add_primary_command(CLI::App& app);  // cmd_primary.cpp (SWARMLITE_HAVE_NET only)
void add_peer_command(CLI::App& app);     // cmd_peer.cpp (SWARMLITE_HAVE_NET only)
void add_demo_command(CLI::App& app);     // cmd_demo.cpp (SWARMLITE_HAVE_NET only)
void add_shell_command(CLI::App& app);    // cmd_shell.cpp (SWARMLITE_HAVE_NET only)
void add_backup_command(CLI::App& app);   // cmd_backup.cpp (SWARMLITE_HAVE_NET only)
void add_fetch_command(CLI::App& app);    // cmd_fetch.cpp (SWARMLITE_HAVE_NET only)

}  // namespace swarmlite::cli
