#!/usr/bin/env python3
"""HTTP write throughput of a running primary against its own /readyz rate, same client.

Usage: scripts/http_write_bench.py http://127.0.0.1:PORT [--clients 1,16] [--seconds 5]
       [--token TOKEN]

For each client count: that many threads, each with one keep-alive connection, send
GET /readyz back to back for --seconds, then POST /db/execute with one INSERT each for
--seconds (a table bench_w is created first). Prints requests/s of both and their ratio
(docs/performance.md "HTTP writes"). The client is Python: its own ceiling caps both
rates, so read the ratio, not the absolute /readyz figure.
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def run(url, clients, seconds, method, path, body_fn, headers):
    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors = [0] * clients

    def worker(i):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        n = 0
        while time.monotonic() < stop:
            body = body_fn(i, n)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200 or (method == "POST" and b'"error"' in data):
                errors[i] += 1
            else:
                counts[i] += 1
            n += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    return sum(counts) / elapsed, sum(errors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--token", default="")
    args = ap.parse_args()
    url = urllib.parse.urlparse(args.url)
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = "Bearer " + args.token
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("POST", "/db/execute",
                 body=json.dumps(["CREATE TABLE IF NOT EXISTS bench_w(c INTEGER, n INTEGER, v TEXT)"]),
                 headers=headers)
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise SystemExit(f"creating bench_w: HTTP {resp.status}")
    conn.close()

    def insert(i, n):
        return json.dumps([["INSERT INTO bench_w VALUES (?, ?, ?)", i, n, "value %024d" % n]])

    for clients in [int(c) for c in args.clients.split(",")]:
        ready, ready_err = run(url, clients, args.seconds, "GET", "/readyz", lambda i, n: None, {})
        writes, write_err = run(url, clients, args.seconds, "POST", "/db/execute", insert, headers)
        print(f"clients={clients} readyz/s={ready:.0f} writes/s={writes:.0f} "
              f"ratio={writes / ready:.2f} errors={ready_err + write_err}")


if __name__ == "__main__":
    main()
