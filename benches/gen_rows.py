#!/usr/bin/env python3
"""Generate the table for the database benchmarks of benches/run.sh, in one process.

    python3 benches/gen_rows.py OUT_DIR SCALE

makes, under OUT_DIR:

    rows.db     a SQLite database with one table of 1,000,000/SCALE rows:
                    CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT, size INTEGER,
                                        mtime REAL, sha256 TEXT, count INTEGER)
                (ids 1..N; seeded pseudo-random paths, sizes, mtimes with microseconds,
                64 hex digits, counts)
    rows.csv    the same rows in the same order, as CSV without a header line (what
                `psql \\copy ... WITH (FORMAT csv)` and `sqlite3 .import` into an existing
                table read). Reals are written with Python's repr, the shortest text that
                reads back as the same double.

Like gen_data.py, the pair has a stamp (OUT_DIR/rows.params) holding its parameters; a
pair whose stamp and row count match is reused, anything else is made again, under
*.tmp names that are renamed when complete. The content is seeded, so every machine
loads the same rows.

Prints one line: rows DB_PATH CSV_PATH ROWS DB_BYTES CSV_BYTES.
"""

import csv
import json
import os
import random
import sqlite3
import sys

FORMAT_VERSION = 1
ROWS = 1_000_000
CHUNK = 50_000
SCHEMA = ("CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT, size INTEGER, "
          "mtime REAL, sha256 TEXT, count INTEGER)")
WORDS = ["alpha", "beta", "gamma", "delta", "batch", "proc", "file", "row", "queue",
         "worker", "sink", "hash", "lorem", "ipsum", "dolor", "report", "img", "src"]
EXTS = ["txt", "bin", "jpg", "csv", "json", "log", "rs", "py"]


def spec(scale):
    return {"rows": max(1, ROWS // scale), "seed": 4, "format": FORMAT_VERSION}


def generate(rows, seed):
    """Yield the rows in chunks of tuples (id, path, size, mtime, sha256, count)."""
    rng = random.Random(seed)
    chunk = []
    for i in range(1, rows + 1):
        path = (f"/srv/data/{rng.choice(WORDS)}/{rng.choice(WORDS)}-{i:07d}/"
                f"{rng.choice(WORDS)}_{rng.randrange(1000):03d}.{rng.choice(EXTS)}")
        size = rng.randrange(0, 1 << 32)
        mtime = round(1_600_000_000 + rng.random() * 100_000_000, 6)
        digest = rng.randbytes(32).hex()
        count = rng.randrange(0, 100_000)
        chunk.append((i, path, size, mtime, digest, count))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count_rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM files").fetchone()[0]
    finally:
        con.close()


def ensure(out_dir, scale):
    db = os.path.join(out_dir, "rows.db")
    csv_path = os.path.join(out_dir, "rows.csv")
    stamp = os.path.join(out_dir, "rows.params")
    wanted = spec(scale)
    try:
        with open(stamp) as f:
            have = json.load(f)
    except (OSError, ValueError):
        have = None
    if have == wanted and os.path.isfile(db) and os.path.isfile(csv_path):
        try:
            if count_rows(db) == wanted["rows"]:
                return db, csv_path, wanted["rows"], False
        except sqlite3.Error:
            pass
    for p in (stamp, db, csv_path, db + ".tmp", csv_path + ".tmp", db + "-journal",
              db + "-wal", db + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    tmp_db, tmp_csv = db + ".tmp", csv_path + ".tmp"
    con = sqlite3.connect(tmp_db)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute(SCHEMA)
    with open(tmp_csv, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        for chunk in generate(wanted["rows"], wanted["seed"]):
            con.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)", chunk)
            out.writerows(chunk)
    con.commit()
    con.close()
    os.rename(tmp_csv, csv_path)
    os.rename(tmp_db, db)
    with open(stamp, "w") as f:
        json.dump(wanted, f, sort_keys=True)
        f.write("\n")
    return db, csv_path, wanted["rows"], True


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_rows.py OUT_DIR SCALE")
    out_dir, scale = sys.argv[1], sys.argv[2]
    if not scale.isdigit() or int(scale) < 1:
        sys.exit(f"gen_rows.py: SCALE must be a positive integer, got {scale!r}")
    os.makedirs(out_dir, exist_ok=True)
    db, csv_path, rows, made = ensure(out_dir, int(scale))
    how = "generated" if made else "reused"
    print(f"gen_rows: {how} {db} and {csv_path}: {rows} rows", file=sys.stderr)
    print("rows", db, csv_path, rows, os.path.getsize(db), os.path.getsize(csv_path))


if __name__ == "__main__":
    main()
