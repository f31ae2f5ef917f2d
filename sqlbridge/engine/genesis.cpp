#include "sqlbridge/engine/genesis.h"

#include <sqlite3.h>

#include "sqlbridge/engine/determinism.h"
#include "sqlbridge/engine/state_tree.h"

namespace swarmlite {

namespace {
constexpr std::string_view kInsertMeta =
    "INSERT INTO sqlite_swarmlite(k, v) VALUES ('format_version', ?1), ('sqlite_version', ?2), "
    "('page_size', ?3), ('settings', ?4), ('applied_seq', 0)";

std::string text_param(const Statement& st, size_t i) {
  if (i >= st.params.size()) return "<missing>";
  if (auto* s = std::get_if<std::string>(&st.params[i].v)) return *s;
  if (auto* n = std::get_if<int64_t>(&st.params[i].v)) return std::to_string(*n);
  return "<not text>";
}
}  // namespace

std::vector<Statement> genesis_statements(std::string_view sqlite_version, int64_t format_version) {
  return {
      Statement{std::string(kCreateMetaSql), {}},
      Statement{std::string(kInsertMeta),
                {Value{format_version}, Value{std::string(sqlite_version)},
                 Value{static_cast<int64_t>(kPageSize)}, Value{std::string(kFixedSettings)}}},
  };
}

std::vector<Statement> genesis_statements() { return genesis_statements(sqlite3_libversion()); }

Status check_genesis(const Entry& entry) {
  if (entry.seq != 0) {
    return make_error(Errc::bad_value, "genesis: entry has seq {}, expected 0", entry.seq);
  }
  for (int64_t format = kOldestFormatVersion; format < kFormatVersion; ++format) {
    if (entry.statements == genesis_statements(sqlite3_libversion(), format)) return ok_status();
  }
  const std::vector<Statement> expected = genesis_statements();
  if (entry.statements == expected) return ok_status();
  // Same shape, different recorded values: name what differs. The format
  // version first: another format may differ in its SQL too (format 1 created
  // _swarmlite instead of sqlite_swarmlite).
  if (entry.statements.size() == expected.size() &&
      entry.statements[1].params.size() == expected[1].params.size()) {
    const Statement& got = entry.statements[1];
    const auto* got_format = std::get_if<int64_t>(&got.params[0].v);
    const bool readable_format = got_format != nullptr && *got_format >= kOldestFormatVersion &&
                                 *got_format <= kFormatVersion;
    if (!readable_format) {
      const bool format1 = got.params[0] == Value{int64_t{1}} &&
                           entry.statements[0].sql == kLegacyCreateMetaSql;
      return make_error(Errc::bad_version,
                        "genesis: log has swarmlite format version {}, this build reads versions "
                        "{} to {}{}",
                        text_param(got, 0), kOldestFormatVersion, kFormatVersion,
                        format1 ? " (format 1 kept its metadata in a _swarmlite table that ORMs "
                                  "list as a user table; see docs/operations.md \"Upgrading from "
                                  "format 1\")"
                                : "");
    }
  }
  if (entry.statements.size() == expected.size() && entry.statements[0] == expected[0] &&
      entry.statements[1].sql == expected[1].sql &&
      entry.statements[1].params.size() == expected[1].params.size()) {
    const Statement& got = entry.statements[1];
    // A readable format (checked above): what else differs is named below.
    if (got.params[1] != expected[1].params[1]) {
      return make_error(Errc::bad_version,
                        "genesis: the log was written with SQLite {} but this replica runs SQLite "
                        "{}; replaying with another SQLite version could produce different pages, "
                        "refusing",
                        text_param(got, 1), sqlite3_libversion());
    }
    if (got.params[2] != expected[1].params[2]) {
      return make_error(Errc::bad_version, "genesis: log uses page size {}, this build uses {}",
                        text_param(got, 2), kPageSize);
    }
    return make_error(Errc::bad_version, "genesis: log uses settings \"{}\", this build uses \"{}\"",
                      text_param(got, 3), kFixedSettings);
  }
  return make_error(Errc::bad_value,
                    "genesis: entry 0 is not a swarmlite genesis entry ({} statements, first: {:.80})",
                    entry.statements.size(),
                    entry.statements.empty() ? std::string("<none>") : entry.statements[0].sql);
}

}  // namespace swarmlite
