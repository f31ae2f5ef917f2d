#!/usr/bin/env python3
"""An rqlite-style client written only with Python's standard library, talking to real
`swarmlite primary` and `swarmlite peer` processes the way rqlite clients (pyrqlite,
rqlite-js, gorqlite, SQLAlchemy's rqlite dialects) do: JSON arrays of statements, HTTP basic
auth with the write token as password, `?transaction`, `?associative`, `level=`, PRAGMAs an
ORM reads on connect, and DATETIME values parsed from rqlite's RFC 3339 form.

usage: rqlite_client_test.py PATH/TO/swarmlite
Prints 'N passed, N failed' last; exits non-zero on any failure.
"""
import base64
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/cli/swarmlite"
passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}", file=sys.stderr)


class Node:
    """A swarmlite process whose stdout is read until it prints its addresses."""

    def __init__(self, args, log):
        self.log = open(log, "w+")
        self.proc = subprocess.Popen([BIN] + args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.http = None
        self.listen = None
        deadline = time.time() + 60
        while time.time() < deadline and (self.http is None or self.listen is None):
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.write(line)
            if line.startswith("http: "):
                self.http = line.split()[1].strip()
            elif line.startswith("listen: "):
                self.listen = line.split()[1].strip()
        if self.http is None or self.listen is None:
            self.stop()
            self.log.seek(0)
            raise RuntimeError(f"{args[0]} did not start: {self.log.read()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Client:
    """What an rqlite client does: POST JSON arrays, basic auth, follow redirects."""

    def __init__(self, base, user=None, password=None):
        self.base = base
        self.auth = None
        if password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.auth = f"Basic {token}"

    def request(self, method, path, body=None, params=None):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True).replace("=&", "&").rstrip("=")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"raw": raw.decode(errors="replace")}

    def execute(self, statements, **params):
        return self.request("POST", "/db/execute", statements, params)

    def query(self, statements, **params):
        return self.request("POST", "/db/query", statements, params)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def parse_rfc3339(text):
    # rqlite clients parse Go's RFC3339Nano; Python 3.11's fromisoformat takes "Z" and
    # 1-6 fraction digits (3.7+ needs "+00:00").
    t = text.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(t)


def wait_size(client, n, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, doc = client.request("GET", "/status")
        if status == 200 and doc.get("applied_size", 0) >= n:
            return True
        code, _ = client.query(["SELECT 1"], min_size=n, timeout="1s")
        if code == 200:
            return True
        time.sleep(0.1)
    return False


def main():
    work = tempfile.mkdtemp(prefix="swl-rqlite-py-")
    nodes = []
    try:
        subprocess.run([BIN, "keygen", "--out", f"{work}/keys"], check=True, stdout=subprocess.DEVNULL)
        token = "s3cret-token"
        with open(f"{work}/token", "w") as f:
            f.write(token + "\n")
        primary = Node(["primary", "--db", f"{work}/p.db", "--key", f"{work}/keys/primary.key",
                        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--write-token", f"{work}/token"],
                       f"{work}/primary.log")
        nodes.append(primary)
        peer = Node(["peer", "--db", f"{work}/r.db", "--pub", f"{work}/keys/primary.pub",
                     "--from", primary.listen, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                     "--primary-url", primary.http], f"{work}/peer.log")
        nodes.append(peer)

        w = Client(primary.http, "app", token)
        code, doc = w.execute([
            "CREATE TABLE events(id INTEGER PRIMARY KEY, name TEXT NOT NULL, at DATETIME, day DATE, "
            "stamp TIMESTAMP, note TEXT)",
            ["INSERT INTO events(name, at, day, stamp, note) VALUES(?, ?, ?, ?, ?)",
             "launch", "2004-02-14 07:15:00", "2004-02-14", 1076742900, "2004-02-14 07:15:00"],
            ["INSERT INTO events(name, at) VALUES(:n, :a)", {"n": "frac", "a": "2004-02-14 07:15:00.500"}],
        ], transaction="")
        check(code == 200, f"transaction accepted ({code} {doc})")
        check(all("error" not in r for r in doc.get("results", [])), f"no errors in {doc}")
        check(doc["results"][1].get("last_insert_id") == 1, f"last_insert_id of the first insert: {doc}")

        # Without the token: 401, as rqlite with auth enabled.
        code, doc = Client(primary.http).execute(["INSERT INTO events(name) VALUES('x')"])
        check(code == 401, f"write without credentials refused with 401, got {code}")
        code, doc = Client(primary.http, "app", "wrong").execute(["INSERT INTO events(name) VALUES('x')"])
        check(code == 401, f"write with a wrong password refused with 401, got {code}")

        check(wait_size(Client(peer.http), 2), "the peer caught up (genesis + the transaction)")
        r = Client(peer.http)
        code, doc = r.query(["SELECT id, name, at, day, stamp, note FROM events ORDER BY id"])
        check(code == 200, f"query on the peer ({code} {doc})")
        res = doc["results"][0]
        check(res["types"] == ["integer", "text", "datetime", "date", "timestamp", "text"], f"types {res}")
        row = res["values"][0]
        check(parse_rfc3339(row[2]) == datetime.datetime(2004, 2, 14, 7, 15, tzinfo=datetime.timezone.utc),
              f"DATETIME parsed from RFC 3339: {row[2]}")
        check(row[2] == "2004-02-14T07:15:00Z", f"DATETIME text as rqlite: {row[2]}")
        check(row[3] == "2004-02-14T00:00:00Z", f"DATE as rqlite: {row[3]}")
        check(row[4] == "2004-02-14T07:15:00Z", f"TIMESTAMP from Unix seconds as rqlite: {row[4]}")
        check(row[5] == "2004-02-14 07:15:00", f"a TEXT column stays as stored: {row[5]}")
        check(res["values"][1][2] == "2004-02-14T07:15:00.5Z", f"fraction trimmed: {res['values'][1][2]}")

        code, doc = r.query([["SELECT name FROM events WHERE id = ?", 1]], associative="")
        check(code == 200 and doc["results"][0]["rows"] == [{"name": "launch"}], f"associative: {doc}")

        # What an ORM dialect reads on connect and on reflection.
        for sql in ["PRAGMA read_uncommitted", "PRAGMA foreign_keys", "PRAGMA journal_mode",
                    "PRAGMA busy_timeout", "PRAGMA table_info(events)", "PRAGMA index_list(events)",
                    "PRAGMA foreign_key_list(events)", "PRAGMA database_list",
                    "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"]:
            code, doc = r.query([sql])
            ok = code == 200 and "error" not in doc["results"][0]
            check(ok, f"{sql}: {code} {doc}")
        code, doc = r.query(["PRAGMA database_list"])
        check(all(v is None or work not in str(v) for row in doc["results"][0].get("values", []) for v in row),
              f"database_list hides the path: {doc}")
        code, doc = r.query(["PRAGMA foreign_keys = OFF"])
        check(code == 200 and "error" in doc["results"][0], f"a setting pragma is refused: {doc}")
        # What ORMs send on connect, as a write: writes always enforce foreign keys, so
        # restating it is a no-op that succeeds; turning them off is refused.
        code, doc = w.execute(["PRAGMA foreign_keys = ON"])
        check(code == 200 and "error" not in doc["results"][0], f"foreign_keys = ON as a write: {doc}")
        code, doc = w.execute(["PRAGMA foreign_keys = OFF"])
        check(code == 200 and "always enforced" in doc["results"][0].get("error", ""),
              f"foreign_keys = OFF as a write is refused: {doc}")

        # GET form with q=, and rqlite's read consistency levels accepted.
        for level in ["none", "weak", "strong"]:
            code, doc = r.request("GET", "/db/query", params={"q": "SELECT count(*) FROM events", "level": level})
            check(code == 200 and doc["results"][0]["values"] == [[2]], f"level={level}: {code} {doc}")

        # A failing statement inside ?transaction: its own slot says why, nothing committed.
        code, doc = w.execute([
            ["INSERT INTO events(name) VALUES(?)", "a"],
            "INSERT INTO nonsense VALUES(1)",
            ["INSERT INTO events(name) VALUES(?)", "b"],
        ], transaction="")
        results = doc.get("results", [])
        check(len(results) == 2 and "error" in results[1] and "nonsense" in results[1]["error"],
              f"the error is in the failing statement's slot and nothing follows it: {doc}")
        check("error" not in results[0] and results[0].get("rows_affected") == 1,
              f"the statement before it shows its (rolled back) result, as rqlite: {doc}")
        # A third statement the log cannot hold (a NUL byte): its own slot, not slot 0.
        code, doc = w.execute([["INSERT INTO events(name) VALUES(?)", "c"],
                               ["INSERT INTO events(name) VALUES(?)", "d"],
                               "INSERT INTO events(name) VALUES('e')\u0000 DROP TABLE events"], transaction="")
        results = doc.get("results", [])
        check(len(results) == 3 and "error" in results[2] and "NUL" in results[2]["error"]
              and all("error" not in x for x in results[:2]),
              f"a statement refused before running gets the error in its own slot: {code} {doc}")
        code, doc = w.query(["SELECT count(*) FROM events"])
        check(doc["results"][0]["values"] == [[2]], f"the failed transaction left nothing: {doc}")

        # --- writes sent to a peer are forwarded to the primary (rqlite followers do the same) ---
        pw = Client(peer.http, "app", token)
        code, doc = pw.execute([["INSERT INTO events(name) VALUES(?)", "via-peer"],
                                ["INSERT INTO events(name) VALUES(?)", "via-peer-2"]], transaction="")
        check(code == 200 and all("error" not in x for x in doc.get("results", [])),
              f"a ?transaction sent to the peer is forwarded and committed: {code} {doc}")
        check(doc.get("results", [{}])[-1].get("last_insert_id") == 4, f"the primary's answer relayed: {doc}")
        code, doc = Client(peer.http).execute(["INSERT INTO events(name) VALUES('no-token')"])
        check(code == 401, f"the primary's 401 is relayed to a client without the token: {code} {doc}")
        code, doc = w.query(["SELECT count(*) FROM events"])
        check(doc["results"][0]["values"] == [[4]], f"forwarded writes landed on the primary: {doc}")
        # ?redirect (rqlite's option): 301 with the primary's full URL, query string kept.
        req = urllib.request.Request(peer.http + "/db/execute?transaction&redirect", method="POST",
                                     data=json.dumps([["INSERT INTO events(name) VALUES(?)", "redirected"]]).encode())
        req.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(req, timeout=30)
            check(False, "?redirect answered without a redirect")
        except urllib.error.HTTPError as e:
            loc = e.headers.get("Location", "")
            check(e.code == 301 and loc == primary.http + "/db/execute?transaction&redirect",
                  f"301 to the primary's full URL: {e.code} {loc}")
            # What an rqlite client does with it: send the same request there.
            code, doc = Client(loc.split("/db/")[0], "app", token).request(
                "POST", "/db/execute?" + loc.split("?", 1)[1], [["INSERT INTO events(name) VALUES(?)", "redirected"]])
            check(code == 200 and "error" not in doc["results"][0], f"the redirected write lands: {code} {doc}")

        # --- the unified endpoint /db/request (rqlite's), on the peer: statements are classified
        # by preparing them (a table created earlier in the request counts), writes forwarded,
        # and the read after them sees them (read-your-writes) ---
        code, doc = Client(peer.http, "app", token).request("POST", "/db/request", [
            "CREATE TABLE unified(id INTEGER PRIMARY KEY, v TEXT)",
            ["INSERT INTO unified(v) VALUES(?)", "one"],
            "SELECT v FROM unified",
            "INSERT INTO no_such_table VALUES(1)",
            "SELEKT 1",
            ["INSERT INTO unified(v) VALUES(?)", "two"],
            "SELECT count(*) FROM unified"])
        check(code == 200, f"/db/request on the peer: {code} {doc}")
        res = doc["results"]
        check(len(res) == 7, f"one result per statement: {res}")
        check("rows_affected" in res[0] and res[1].get("last_insert_id") == 1, f"writes in the write form: {res}")
        check(res[2].get("values") == [["one"]] and res[2].get("columns") == ["v"],
              f"the read after the write sees it, in the read form: {res}")
        check("no such table" in res[3].get("error", ""), f"a failing write's error in its slot: {res}")
        check("syntax error" in res[4].get("error", ""), f"a statement that does not prepare: its error in its slot: {res}")
        check(res[6].get("values") == [[2]], f"the last read sees both inserts: {res}")
        code, doc = Client(peer.http).request("GET", "/db/request", params={"q": "SELECT count(*) FROM unified",
                                                                           "level": "strong"})
        check(code == 200 and doc["results"][0]["values"] == [[2]], f"GET /db/request?q=…&level=strong: {code} {doc}")
        code, doc = Client(peer.http).request("GET", "/db/query", params={"q": "SELECT 1", "level": "bogus"})
        check(code == 400 and "expected none, weak" in doc.get("error", ""), f"an unknown level is a 400: {code} {doc}")

        # POST /db/load as rqlite clients send it: a SQL dump as text with basic auth. A peer
        # answers 307 to the primary (urllib does not resend a POST body on 307, so follow
        # it by hand, as clients with redirect support do); without the token: 401.
        dump = "CREATE TABLE loaded(id INTEGER PRIMARY KEY, v TEXT);\n" + "".join(
            f"INSERT INTO loaded VALUES({i}, 'row {i}');\n" for i in range(1, 2001))

        def post_load(url, body, content_type, user_token=None):
            req = urllib.request.Request(url, data=body, method="POST")
            req.add_header("Content-Type", content_type)
            if user_token:
                req.add_header("Authorization", "Basic " + base64.b64encode(f"app:{user_token}".encode()).decode())
            try:
                with urllib.request.build_opener(NoRedirect).open(req, timeout=60) as r:
                    return r.status, r.headers, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    return e.code, e.headers, json.loads(raw)
                except ValueError:
                    return e.code, e.headers, {"raw": raw.decode(errors="replace")}

        code, _, doc = post_load(primary.http + "/db/load", dump.encode(), "text/plain")
        check(code == 401, f"/db/load without the token is a 401: {code} {doc}")
        code, headers, doc = post_load(peer.http + "/db/load", dump.encode(), "text/plain", token)
        location = headers.get("Location", "") if headers else ""
        check(code == 307 and location == primary.http + "/db/load", f"/db/load on a peer is a 307 to the primary: {code} {location}")
        code, headers, doc = post_load(location or primary.http + "/db/load", dump.encode(), "text/plain", token)
        check(code == 200 and doc.get("results") == [{}] and doc.get("load", {}).get("format") == "sql",
              f"/db/load of a dump: {code} {doc}")
        loaded_size = int(headers.get("X-Swarmlite-Size", "0")) if headers else 0
        code, doc = Client(peer.http).query(["SELECT count(*), max(v) FROM loaded"], min_size=loaded_size, timeout="30s")
        check(code == 200 and doc["results"][0].get("values") == [[2000, "row 999"]],
              f"the loaded rows read back from the peer: {code} {doc}")
        code, _, doc = post_load(primary.http + "/db/load", b"SQLite format 3\x00" + b"\x00" * 4080, "application/octet-stream", token)
        check(code == 403 and "empty primary" in doc.get("error", ""),
              f"a SQLite file into a primary holding data is refused: {code} {doc}")

        # A peer whose "primary" is another peer: one forward, then a clear 508, never a loop.
        peer2 = Node(["peer", "--db", f"{work}/r2.db", "--pub", f"{work}/keys/primary.pub",
                      "--from", primary.listen, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                      "--primary-url", peer.http], f"{work}/peer2.log")
        nodes.append(peer2)
        code, doc = Client(peer2.http, "app", token).execute(["INSERT INTO events(name) VALUES('loop')"])
        check(code == 508 and "forward loop" in json.dumps(doc), f"forward loop refused: {code} {doc}")

        # A primary that dies mid-forward (accepts, reads the request, closes): 502 naming it.
        import socket
        import threading
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        dead_url = f"http://127.0.0.1:{srv.getsockname()[1]}"

        def die_mid_request():
            for _ in range(2):
                try:
                    c, _ = srv.accept()
                    c.recv(65536)
                    c.close()
                except OSError:
                    return
        threading.Thread(target=die_mid_request, daemon=True).start()
        peer3 = Node(["peer", "--db", f"{work}/r3.db", "--pub", f"{work}/keys/primary.pub",
                      "--from", primary.listen, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                      "--primary-url", dead_url], f"{work}/peer3.log")
        nodes.append(peer3)
        code, doc = Client(peer3.http, "app", token).execute(["INSERT INTO events(name) VALUES('lost')"])
        check(code == 502 and "could not forward" in json.dumps(doc), f"a primary dying mid-forward gives 502: {code} {doc}")
        srv.close()
        code, doc = Client(peer3.http, "app", token).execute(["INSERT INTO events(name) VALUES('down')"])
        check(code == 502 and "could not forward" in json.dumps(doc), f"an unreachable primary gives 502: {code} {doc}")
    finally:
        for n in reversed(nodes):
            n.stop()
        if failed == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"files kept in {work}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
