#!/usr/bin/env python3
"""SQLAlchemy's own reflection on a copy of a swarmlite peer's database file: it must list
exactly the app's tables (swarmlite's metadata table, sqlite_swarmlite, is in SQLite's
reserved namespace), and dropping every reflected table through the primary's HTTP API
(POST /db/execute, the way an app runs "drop_all" through an rqlite dialect) must work and
reach the peer (docs/determinism.md "Genesis", docs/http-api.md "Table lists").

usage: sqlalchemy_reflect_test.py PATH/TO/swarmlite
Exits 77 (skipped) when SQLAlchemy is not installed (Debian: python3-sqlalchemy).
"""
import os
import shutil
import sys
import tempfile

try:
    import sqlalchemy
except ImportError:
    # A pyenv or venv python3 may come first in PATH; Debian's package is for /usr/bin/python3.
    system = "/usr/bin/python3"
    if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
            and not os.environ.get("SWL_SQLALCHEMY_REEXEC"):
        os.environ["SWL_SQLALCHEMY_REEXEC"] = "1"
        os.execv(system, [system] + sys.argv)
    print("SQLAlchemy is not installed (apt-get install python3-sqlalchemy): skipped")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rqlite_client_test as rq  # noqa: E402  (Node, Client, wait_size, check)

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/cli/swarmlite"
rq.BIN = BIN

APP_TABLES = ["_swarmlite", "posts", "tags", "users"]


def copy_db(src, dst):
    # A consistent copy of a live WAL database: SQLite's backup API.
    import sqlite3
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    d = sqlite3.connect(dst)
    s.backup(d)
    s.close()
    d.close()


def is_internal(name):
    # SQLite's reserved namespace: what SQLAlchemy 2.x leaves out unless
    # sqlite_include_internal=True. 1.4 (Debian 12's) lists every row of sqlite_master,
    # sqlite_sequence too, so a 1.4 app that drops what it reflects must filter the same
    # way even on plain SQLite (DROP TABLE sqlite_sequence is refused by SQLite).
    return name.startswith("sqlite_")


def reflect(path):
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        insp = sqlalchemy.inspect(engine)
        if int(sqlalchemy.__version__.split(".")[0]) >= 2:
            names = sorted(insp.get_table_names())
        else:
            names = sorted(n for n in insp.get_table_names() if not is_internal(n))
        md = sqlalchemy.MetaData()
        md.reflect(bind=engine, only=lambda name, _md: not is_internal(name))
        # drop_all's order: dependants first.
        order = [t.name for t in reversed(md.sorted_tables)]
        return names, sorted(md.tables), order
    finally:
        engine.dispose()


def main():
    work = tempfile.mkdtemp(prefix="swl-sqlalchemy-")
    nodes = []
    try:
        import subprocess
        subprocess.run([BIN, "keygen", "--out", f"{work}/keys"], check=True, stdout=subprocess.DEVNULL)
        token = "t0ken"
        with open(f"{work}/token", "w") as f:
            f.write(token + "\n")
        primary = rq.Node(["primary", "--db", f"{work}/p.db", "--key", f"{work}/keys/primary.key",
                           "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                           "--write-token", f"{work}/token"], f"{work}/primary.log")
        nodes.append(primary)
        peer = rq.Node(["peer", "--db", f"{work}/r.db", "--pub", f"{work}/keys/primary.pub",
                        "--from", primary.listen, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                        "--primary-url", primary.http], f"{work}/peer.log")
        nodes.append(peer)
        w = rq.Client(primary.http, "app", token)
        code, doc = w.execute([
            "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)",
            "CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), body TEXT)",
            "CREATE TABLE tags(post_id INTEGER REFERENCES posts(id), tag TEXT, PRIMARY KEY (post_id, tag)) WITHOUT ROWID",
            "CREATE INDEX posts_by_user ON posts(user_id)",
            "CREATE TABLE _swarmlite(a, b)",
            "INSERT INTO users(name) VALUES ('ann'), ('bob')",
            "INSERT INTO posts VALUES (1, 1, 'hi'), (2, 2, 'yo')",
            "INSERT INTO tags VALUES (1, 'x'), (2, 'y')",
        ], transaction="")
        rq.check(code == 200 and all("error" not in r for r in doc.get("results", [])),
                 f"schema and rows written: {code} {doc}")
        size = None
        code, status = w.request("GET", "/status")
        if code == 200:
            size = status.get("size") or status.get("log_size") or status.get("applied_size")
        peer_client = rq.Client(peer.http)
        rq.check(size is not None and rq.wait_size(peer_client, size), f"peer caught up to {size}")

        copy_db(f"{work}/r.db", f"{work}/copy.db")
        names, reflected, order = reflect(f"{work}/copy.db")
        rq.check(names == APP_TABLES, f"inspect().get_table_names() lists the app's tables: {names}")
        rq.check(reflected == APP_TABLES, f"MetaData.reflect() reflects the app's tables: {reflected}")

        # drop_all through the HTTP API, one transaction.
        code, doc = w.execute([f'DROP TABLE "{t}"' for t in order], transaction="")
        rq.check(code == 200 and all("error" not in r for r in doc.get("results", [])),
                 f"DROP TABLE of every reflected table ({order}): {code} {doc}")
        code, status = w.request("GET", "/status")
        size = status.get("size") or status.get("log_size") or status.get("applied_size")
        rq.check(rq.wait_size(peer_client, size), f"peer caught up to {size} after drop_all")
        copy_db(f"{work}/r.db", f"{work}/copy2.db")
        names, reflected, _ = reflect(f"{work}/copy2.db")
        rq.check(names == [] and reflected == [], f"nothing left to reflect: {names} {reflected}")
        # The metadata is still there, readable, and moves on.
        code, doc = peer_client.query(["SELECT v FROM sqlite_swarmlite WHERE k = 'applied_seq'"])
        rq.check(code == 200 and doc["results"][0].get("values") == [[size - 1]],
                 f"peer's applied_seq readable: {code} {doc}")
    finally:
        for n in reversed(nodes):
            n.stop()
        if rq.failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"files kept in {work}", file=sys.stderr)
    print(f"{rq.passed} passed, {rq.failed} failed")
    return 1 if rq.failed else 0


if __name__ == "__main__":
    sys.exit(main())
