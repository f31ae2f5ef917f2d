#!/usr/bin/env python3
"""Minimise a failing sql_diff_fuzz run (docs/determinism.md, "Differential fuzzing").

  sql_diff_fuzz --seed N --txns K --record /tmp/fail          # writes /tmp/fail.tx
  tests/sqlfuzz/minimize.py build/tests/sql_diff_fuzz /tmp/fail.tx 'DIVERGENCE' > min.tx
  build/tests/sql_diff_fuzz --replay min.tx --keep-going

Delta debugging: drops transactions (whole blocks of the .tx file), then single
statements, while the replay's output still matches the regular expression
(e.g. 'DIVERGENCE' or 'escape.*total_changes'). Failed and refused transactions
are kept as candidates like committed ones: they can matter (a rolled-back
transaction leaves connection state behind on the primary only).
"""
import re
import subprocess
import sys
import tempfile


def parse(path):
    txs = []
    for line in open(path, encoding="utf-8", errors="surrogateescape"):
        line = line.rstrip("\n")
        if line == "T":
            txs.append([])
        elif line.startswith("S "):
            txs[-1].append([line])
        elif line.startswith("P "):
            txs[-1][-1].append(line)
    return txs


def render(txs):
    out = []
    for tx in txs:
        if not tx:
            continue
        out.append("T")
        for st in tx:
            out.extend(st)
    return "\n".join(out) + "\n"


def fails(binary, txs, pattern, extra):
    with tempfile.NamedTemporaryFile("w", suffix=".tx", delete=False, encoding="utf-8",
                                     errors="surrogateescape") as f:
        f.write(render(txs))
        name = f.name
    r = subprocess.run([binary, "--replay", name, "--keep-going"] + extra, capture_output=True, text=True,
                       errors="replace")
    return re.search(pattern, r.stdout + r.stderr) is not None


def ddmin(items, test):
    n = 2
    while len(items) >= 2:
        chunk = max(1, len(items) // n)
        removed = False
        for start in range(0, len(items), chunk):
            candidate = items[:start] + items[start + chunk:]
            if candidate and test(candidate):
                items = candidate
                n = max(n - 1, 2)
                removed = True
                break
        if not removed:
            if chunk == 1:
                break
            n = min(n * 2, len(items))
        print(f"  {len(items)} left", file=sys.stderr)
    return items


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary, path, pattern = sys.argv[1:4]
    extra = sys.argv[4:] or ["--no-taint"]
    txs = parse(path)
    if not fails(binary, txs, pattern, extra):
        sys.exit("the input does not fail as described")
    print(f"transactions: {len(txs)}", file=sys.stderr)
    txs = ddmin(txs, lambda c: fails(binary, c, pattern, extra))
    print(f"transactions left: {len(txs)}; now statements", file=sys.stderr)
    for i in range(len(txs)):
        def test(stmts, i=i):
            return fails(binary, txs[:i] + [stmts] + txs[i + 1:], pattern, extra)
        if len(txs[i]) > 1:
            txs[i] = ddmin(txs[i], test)
    sys.stdout.write(render(txs))


if __name__ == "__main__":
    main()
