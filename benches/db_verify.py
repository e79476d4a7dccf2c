#!/usr/bin/env python3
"""Check that a database benchmark really copied the rows (benches/run.sh, BENCH_DB=1).

    python3 benches/db_verify.py --source rows.db --rows N --target sqlite:PATH
    python3 benches/db_verify.py --source rows.db --rows N --target postgres://... [--runs]

Reads every row of the target's table `files` (--table) ordered by id and compares it,
value and type, with the same row of the source SQLite table `files`: id, path, size,
mtime (as a double: a target that kept fewer digits fails), sha256 and count. The
target must hold exactly --rows rows, and so must the source. --float-ulps N accepts an
mtime up to N units in the last place from the source's (for `sqlite3 .import`, whose
text-to-double conversion is not always correctly rounded); such rows are counted. With --runs, the latest
row of the target's `batchproc_runs` must say status 'succeeded', ok = --rows, failed = 0.

Postgres is read with `psql` (COPY ... TO STDOUT, CSV), so no driver is needed. Exits 1
with a message on the first difference; on success prints one line of JSON:
{"target": ..., "rows": N, "types": {column: declared type}, "run": {...} or null,
"float_ulps": N, "mtime_off_by_ulps": rows accepted by --float-ulps but not equal}.
"""

import argparse
import csv
import io
import json
import math
import sqlite3
import subprocess
import sys

COLS = ("id", "path", "size", "mtime", "sha256", "count")
SELECT = "SELECT id, path, size, mtime, sha256, count FROM {t} ORDER BY id"


def fail(msg):
    print(f"db_verify: {msg}", file=sys.stderr)
    sys.exit(1)


def sqlite_rows(path, table):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    types = {r[1]: r[2] for r in con.execute(f'PRAGMA table_info("{table}")')}
    return con, types, con.execute(SELECT.format(t=f'"{table}"'))


def psql(url, sql):
    out = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"psql {url}: {out.stderr.strip()}")
    return out.stdout


def pg_rows(url, table):
    types = {}
    for line in psql(url, "SELECT column_name, data_type FROM information_schema.columns "
                          f"WHERE table_name = '{table}' AND table_schema = current_schema() "
                          "ORDER BY ordinal_position").splitlines():
        name, _, ty = line.partition("|")
        types[name] = ty
    proc = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
         f"COPY ({SELECT.format(t=chr(34) + table + chr(34))}) TO STDOUT WITH (FORMAT csv)"],
        stdout=subprocess.PIPE)

    def rows():
        for r in csv.reader(io.TextIOWrapper(proc.stdout, encoding="utf-8", newline="")):
            yield (int(r[0]), r[1], int(r[2]), float(r[3]), r[4], int(r[5]))
        if proc.wait() != 0:
            fail(f"psql COPY from {url} failed (exit {proc.returncode})")
    return proc, types, rows()


def run_row(target, is_pg):
    sql = ("SELECT status, ok, failed FROM batchproc_runs ORDER BY id DESC LIMIT 1")
    if is_pg:
        line = psql(target, sql).strip()
        if not line:
            fail(f"{target}: batchproc_runs is empty")
        status, ok, failed = line.split("|")
    else:
        con = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        row = con.execute(sql).fetchone()
        con.close()
        if row is None:
            fail(f"{target}: batchproc_runs is empty")
        status, ok, failed = row
    return {"status": status, "ok": int(ok), "failed": int(failed)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--target", required=True, help="sqlite:PATH or postgres://...")
    ap.add_argument("--table", default="files")
    ap.add_argument("--runs", action="store_true")
    ap.add_argument("--float-ulps", type=int, default=0,
                    help="accept an mtime this many units in the last place from the "
                         "source's (default 0: equal)")
    args = ap.parse_args()

    is_pg = args.target.startswith(("postgres://", "postgresql://"))
    if not is_pg and not args.target.startswith("sqlite:"):
        fail(f"unknown target {args.target}")
    target = args.target if is_pg else args.target[len("sqlite:"):]

    src_con, _, src = sqlite_rows(args.source, "files")
    if is_pg:
        _, types, dst = pg_rows(target, args.table)
    else:
        _, types, dst = sqlite_rows(target, args.table)
    if not types:
        fail(f"{args.target}: no table {args.table!r}")
    missing = [c for c in COLS if c not in types]
    if missing:
        fail(f"{args.target}: table {args.table!r} lacks columns {missing}")

    n = 0
    near = 0  # rows whose mtime is within --float-ulps of the source's, not equal
    sentinel = object()
    for a, b in zip(src, dst):
        n += 1
        if a != b and args.float_ulps and a[:3] == b[:3] and a[4:] == b[4:] \
                and isinstance(a[3], float) and isinstance(b[3], float) \
                and abs(a[3] - b[3]) <= args.float_ulps * math.ulp(a[3]):
            near += 1
            continue
        if a != b or [type(x) for x in a] != [type(x) for x in b]:
            fail(f"{args.target}: row {n} differs from the source:\n  source {a!r}\n  "
                 f"target {b!r}")
    extra_src = next(src, sentinel)
    extra_dst = next(dst, sentinel)
    if extra_src is not sentinel:
        n_src = n + 1 + sum(1 for _ in src)
        fail(f"{args.target}: {n} rows, the source has {n_src}")
    if extra_dst is not sentinel:
        n_dst = n + 1 + sum(1 for _ in dst)
        fail(f"{args.target}: {n_dst} rows, the source has {n}")
    src_con.close()
    if n != args.rows:
        fail(f"{args.target}: {n} rows (equal to the source), expected {args.rows}")

    run = None
    if args.runs:
        run = run_row(target, is_pg)
        if run != {"status": "succeeded", "ok": args.rows, "failed": 0}:
            fail(f"{args.target}: latest batchproc_runs row is {run}, expected status "
                 f"'succeeded', ok = {args.rows}, failed = 0")
    print(json.dumps({"target": args.target, "rows": n,
                      "types": {c: types[c] for c in COLS}, "run": run,
                      "float_ulps": args.float_ulps, "mtime_off_by_ulps": near}))


if __name__ == "__main__":
    main()
