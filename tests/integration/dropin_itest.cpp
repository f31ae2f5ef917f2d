// Issue 12 items 1 and 2 through the real CLI: `swarmlite import` of an app
// database whose schema declares children before parents (it used to stop
// with "FOREIGN KEY constraint failed" and leave half a primary behind), an
// import that fails leaving nothing, and `sqlite3 app.db .dump | swarmlite
// exec -` for a dump larger than the OS argument limit allows as arguments.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "tests/integration/shell_test_util.h"

namespace {

namespace fs = std::filesystem;
const fs::path kBin = SWARMLITE_BIN;

using swarmlite::testing::sh;
using swarmlite::testing::slurp;
struct Dir : swarmlite::testing::ScratchShellDir {
  Dir() : ScratchShellDir("dropin") {}
};

using swarmlite::testing::make_db;

// An app whose generated schema declares children first.
const char* kApp = R"sql(
  CREATE TABLE comments(id INTEGER PRIMARY KEY AUTOINCREMENT, post INTEGER NOT NULL REFERENCES posts(id),
                        reply_to INTEGER REFERENCES comments(id), body TEXT);
  CREATE TABLE posts(id INTEGER PRIMARY KEY, author INTEGER NOT NULL REFERENCES users(id), title TEXT, body TEXT);
  CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, avatar BLOB);
  CREATE INDEX comments_by_post ON comments(post) WHERE body IS NOT NULL;
  CREATE TRIGGER posts_count AFTER INSERT ON comments BEGIN UPDATE posts SET title = title WHERE id = NEW.post; END;
  BEGIN;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
    INSERT INTO users SELECT i, 'user ' || i, CASE WHEN i % 10 = 0 THEN randomblob(6000) WHEN i % 10 = 5 THEN x'' END FROM n;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
    INSERT INTO posts SELECT i, i % 50 + 1, 'post ' || i, hex(randomblob(600)) FROM n;
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
    INSERT INTO comments(post, reply_to, body) SELECT i % 400 + 1, CASE WHEN i > 1 AND i % 3 = 0 THEN i - 1 END,
      'comment ' || i || ' ' || hex(randomblob(20)) FROM n;
  UPDATE comments SET reply_to = 3000 WHERE id = 1;
  COMMIT;
)sql";

const char* kQuery =
    "SELECT count(*), sum(length(body)), sum(reply_to), max(id) FROM comments; "
    "SELECT id, author, title, body FROM posts ORDER BY id; "
    "SELECT id, name, hex(avatar), typeof(avatar) FROM users ORDER BY id; "
    "SELECT * FROM comments ORDER BY id; SELECT * FROM sqlite_sequence;";

std::string query(const Dir& dir, const fs::path& db, const std::string& name) {
  REQUIRE(sh("sqlite3 " + db.string() + " \"" + kQuery + "\"", dir / name) == 0);
  return slurp(dir / name);
}

TEST_CASE("swarmlite import: children declared before parents, then checked and printed") {
  Dir dir;
  make_db(dir / "app.db", kApp);
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  const std::string import = kBin.string() + " import --from " + (dir / "app.db").string() + " --db " +
                             (dir / "p.db").string() + " --key " + (dir / "k/primary.key").string() +
                             " --max-rows 500";
  int rc = sh(import, dir / "import.out");
  const std::string out = slurp(dir / "import.out");
  REQUIRE_MESSAGE(rc == 0, out);
  CHECK(out.find("integrity_check=ok") != std::string::npos);
  CHECK(out.find("foreign_key_check=0") != std::string::npos);
  CHECK(out.find("table comments: 3000 rows in the source, 3000 imported") != std::string::npos);
  CHECK(out.find("table posts: 400 rows in the source, 400 imported") != std::string::npos);
  CHECK(query(dir, dir / "p.db", "q1") == query(dir, dir / "app.db", "q0"));

  // The imported log audits clean against the database.
  CHECK(sh(kBin.string() + " audit --log " + (dir / "p.db.log").string() + " --db " + (dir / "p.db").string() +
               " --pub " + (dir / "k/primary.pub").string(),
           dir / "audit.out") == 0);
  INFO(slurp(dir / "audit.out"));
}

TEST_CASE("swarmlite import: a failed import leaves nothing a second run or a primary would take for a database") {
  Dir dir;
  make_db(dir / "app.db", kApp);
  make_db(dir / "app.db", "CREATE VIRTUAL TABLE places USING rtree(id, x0, x1); INSERT INTO places VALUES (1, 0, 1);");
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  const std::string import = kBin.string() + " import --from " + (dir / "app.db").string() + " --db " +
                             (dir / "p.db").string() + " --key " + (dir / "k/primary.key").string();
  CHECK(sh(import, dir / "import1.out") != 0);
  CHECK(slurp(dir / "import1.out").find("rtree") != std::string::npos);
  for (const auto& e : fs::directory_iterator(dir.path)) {
    const std::string name = e.path().filename().string();
    CHECK_MESSAGE(name.rfind("p.db", 0) != 0, "left behind: " << name);
  }
  make_db(dir / "app.db", "DROP TABLE places;");
  int rc = sh(import, dir / "import2.out");
  REQUIRE_MESSAGE(rc == 0, slurp(dir / "import2.out"));
  CHECK(query(dir, dir / "p.db", "q1") == query(dir, dir / "app.db", "q0"));
}

TEST_CASE("swarmlite exec -: a sqlite3 .dump piped in (larger than an argument may be) gives the same answers") {
  Dir dir;
  make_db(dir / "app.db", kApp);
  REQUIRE(sh("sqlite3 " + (dir / "app.db").string() + " .dump", dir / "dump.sql") == 0);
  REQUIRE(fs::file_size(dir / "dump.sql") > 600 * 1024);
  REQUIRE(sh(kBin.string() + " keygen --out " + (dir / "k").string(), dir / "keygen.out") == 0);
  const std::string key = (dir / "k/primary.key").string();

  int rc = sh("sqlite3 " + (dir / "app.db").string() + " .dump | " + kBin.string() + " exec --db " +
                  (dir / "d.db").string() + " --key " + key + " --batch-statements 300 -",
              dir / "exec.out");
  std::string out = slurp(dir / "exec.out");
  REQUIRE_MESSAGE(rc == 0, out);
  CHECK(out.find("3 skipped") != std::string::npos);
  CHECK(query(dir, dir / "d.db", "q1") == query(dir, dir / "app.db", "q0"));

  // -f FILE, one transaction.
  rc = sh(kBin.string() + " exec --db " + (dir / "e.db").string() + " --key " + key + " --single-transaction -f " +
              (dir / "dump.sql").string(),
          dir / "exec2.out");
  REQUIRE_MESSAGE(rc == 0, slurp(dir / "exec2.out"));
  CHECK(slurp(dir / "exec2.out").find("in 1 transactions") != std::string::npos);
  CHECK(query(dir, dir / "e.db", "q2") == query(dir, dir / "app.db", "q0"));

  // An error names the line and the statement.
  {
    std::ofstream bad(dir / "bad.sql");
    bad << "CREATE TABLE t(a PRIMARY KEY);\n-- comment\nINSERT INTO t VALUES (1);\nINSERT INTO t VALUES (1);\n";
  }
  rc = sh(kBin.string() + " exec --db " + (dir / "f.db").string() + " --key " + key + " -f " + (dir / "bad.sql").string(),
          dir / "exec3.out");
  CHECK(rc != 0);
  CHECK_MESSAGE(slurp(dir / "exec3.out").find("line 4: INSERT INTO t VALUES (1);") != std::string::npos,
                slurp(dir / "exec3.out"));
}

}  // namespace
