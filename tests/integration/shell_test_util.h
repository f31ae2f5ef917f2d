// Helpers of the process tests that drive the `swarmlite` CLI through a shell
// (dropin_itest, backup_itest, load_itest, consistency_itest): a scratch directory, reading a file whole, and
// running a command line with its output in a file, making an app's database.
#pragma once

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace swarmlite::testing {

// A fresh directory under the temp dir ("swl-<tag>-<random>"), removed at the
// end unless SWARMLITE_KEEP is set (to read the processes' logs afterwards).
struct ScratchShellDir {
  std::filesystem::path path;
  explicit ScratchShellDir(const std::string& tag) {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / ("swl-" + tag + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~ScratchShellDir() {
    if (std::getenv("SWARMLITE_KEEP") != nullptr) return;
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path operator/(const std::string& n) const { return path / n; }
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a shell command line (bash, pipefail) with stdout and stderr in `out`;
// returns its exit status (-1 when it did not exit normally).
inline int sh(const std::string& command, const std::filesystem::path& out) {
  std::string line = "bash -o pipefail -c '" + command + "' >'" + out.string() + "' 2>&1";
  int rc = std::system(line.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Creates (or adds to) the SQLite database at `path` by running `sql` with the
// sqlite3 library, as an app would have made it.
inline void make_db(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.string().c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, msg);
}

// `swarmlite keygen` into dir/k: dir/k/primary.key and dir/k/primary.pub.
inline void keygen(const std::filesystem::path& bin, const std::filesystem::path& dir) {
  REQUIRE(sh(bin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
}

// The arguments of the usual test primary: dir/p.db, dir/k's key (keygen),
// the peer and HTTP listeners on ephemeral loopback ports, no outbound dials;
// then `extra`.
inline std::vector<std::string> primary_args(const std::filesystem::path& dir,
                                             const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a{"primary", "--db", (dir / "p.db").string(), "--key",
                             (dir / "k/primary.key").string(), "--max-outbound", "0",
                             "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace swarmlite::testing
