#!/usr/bin/env python3
"""Kill-and-resume benchmark for benches/run.sh (`make bench`), in one process.

    python3 benches/resume_bench.py --bin BIN --tree DIR --db PATH --runs K \
        [--warmup 1] [--kill-at 0.9] [--poll 0.02] [--batch-size N] --out OUT.json

The command is `BIN files DIR -q -p sha256 --sink sqlite:PATH [--batch-size N]`.
After --warmup untimed full runs, each of K iterations:

1. times a full uninterrupted run of the command (PATH deleted first) and checks
   its result (below); the full runs and the resumes alternate, so a change in the
   machine's load weighs on both alike;
2. deletes PATH (and its -wal/-shm/-journal) and starts the command again; every
   --poll seconds reads the committed count (`SELECT ok FROM batchproc_runs ORDER BY
   id DESC LIMIT 1`, through a read-only connection) until at least --kill-at of the
   files are committed, then SIGKILLs it;
3. checks what the killed run left: one run row, status 'running', and exactly as
   many rows in the table as the run row says are committed (records and bookkeeping
   commit in one transaction);
4. times the same command plus `--resume` to completion;
5. checks the result: exit code 0; still one run row (the same run, continued),
   status 'succeeded', ok == number of files, failed == 0; exactly one row per file
   in the table, with exactly the paths of the tree; and no committed row rewritten
   (the rows committed before the kill keep their rowids, and no rowid beyond the
   file count was used).

Any failed check ends the benchmark at once with exit 1 and no JSON. An iteration
where the run finishes before the poll sees the kill point (or the kill lands after
everything was committed) is not a measurement; it is retried, and the benchmark
fails after 5 such tries in a row.

Both kinds of run are timed with time.perf_counter around the child process. Writes
the times and what each iteration saw to OUT.json for benches/report.py.
"""

import argparse
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

RUN_TIMEOUT = 600  # seconds; a run or resume that takes longer is a hang
MAX_TRIES = 5


def fail(msg):
    print(f"resume_bench: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def remove_db(db):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(db + suffix)
        except FileNotFoundError:
            pass


def connect_ro(db):
    # Read-only, autocommit: each SELECT is its own short read transaction, so the
    # poller never holds a snapshot that would stop the writer's WAL checkpoints.
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, timeout=5)


def poll_ok(db):
    """Committed count of the newest run, or None if there is no run row yet."""
    try:
        conn = connect_ro(db)
    except sqlite3.Error:
        return None  # not created yet
    try:
        row = conn.execute("SELECT ok FROM batchproc_runs ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None  # schema not there yet, or busy for a moment
    finally:
        conn.close()


def state(db, table):
    conn = connect_ro(db)
    try:
        runs = conn.execute(
            "SELECT id, status, ok, failed, attempts FROM batchproc_runs ORDER BY id"
        ).fetchall()
        rows, max_rowid = conn.execute(f'SELECT count(*), max(rowid) FROM "{table}"').fetchone()
        ckpt = conn.execute("SELECT count(*) FROM batchproc_checkpoints").fetchone()[0]
        return {
            "runs": [
                dict(zip(("id", "status", "ok", "failed", "attempts"), r)) for r in runs
            ],
            "rows": rows,
            "max_rowid": max_rowid or 0,
            "checkpoint_rows": ckpt,
        }
    finally:
        conn.close()


def expected_paths(tree):
    # batchproc stores paths as walked, starting with DIR as given.
    out = set()
    for dirpath, _dirs, names in os.walk(tree):
        for name in names:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                out.add(p)
    return out


def kill_at_fraction(cmd, db, n_files, kill_at, poll):
    """Start cmd, SIGKILL it once >= kill_at of n_files are committed.

    Returns (seconds from start to kill, ok seen by the poll), or None if the run
    ended (or committed everything) before it could be killed.
    """
    threshold = math.ceil(kill_at * n_files)
    remove_db(db)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                return None
            if time.perf_counter() - t0 > RUN_TIMEOUT:
                fail(f"no kill point after {RUN_TIMEOUT} s: {' '.join(cmd)}")
            ok = poll_ok(db)
            if ok is not None and ok >= threshold:
                proc.send_signal(signal.SIGKILL)
                t_kill = time.perf_counter() - t0
                rc = proc.wait()
                if rc != -signal.SIGKILL:
                    return None  # it exited by itself just before the signal
                return t_kill, ok
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_timed(cmd, what):
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        fail(f"{what} did not finish in {RUN_TIMEOUT} s: {' '.join(cmd)}")
    secs = time.perf_counter() - t0
    if res.returncode != 0:
        fail(f"{what} exited {res.returncode}: {' '.join(cmd)}: {res.stderr.strip()}")
    return secs, res.stderr.strip()


def check_complete(db, table, paths, run_id=None, before=None):
    """Problems with a finished run's database (an empty list if it is right)."""
    n = len(paths)
    after = state(db, table)
    problems = []
    if len(after["runs"]) != 1 or (run_id is not None and after["runs"][0]["id"] != run_id):
        want = f"run {run_id} continued as the only run" if run_id is not None else "one run"
        problems.append(f"expected {want}, found {after['runs']}")
    r = after["runs"][-1] if after["runs"] else {}
    if r.get("status") != "succeeded":
        problems.append(f"status {r.get('status')!r}, expected 'succeeded'")
    if r.get("ok") != n:
        problems.append(f"ok = {r.get('ok')}, expected {n} (the number of files)")
    if r.get("failed") != 0:
        problems.append(f"failed = {r.get('failed')}, expected 0")
    if after["rows"] != n:
        problems.append(f"table {table} has {after['rows']} rows, expected {n}")
    conn = connect_ro(db)
    try:
        stored = {p for (p,) in conn.execute(f'SELECT path FROM "{table}"')}
        kept = None
        if before is not None:
            kept = conn.execute(f'SELECT count(*) FROM "{table}" WHERE rowid <= ?',
                                (before["max_rowid"],)).fetchone()[0]
    finally:
        conn.close()
    if stored != paths:
        missing, extra = sorted(paths - stored), sorted(stored - paths)
        problems.append(f"paths differ from the tree: {len(missing)} missing "
                        f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
    if after["max_rowid"] != n or (before is not None and kept != before["rows"]):
        how = (f"{before['rows']} rows (max rowid {before['max_rowid']}) before the resume, "
               f"{kept} of them left with their rowids after it, " if before else "")
        problems.append(f"committed rows were rewritten: {how}max rowid "
                        f"{after['max_rowid']} for {n} rows")
    return problems, after, r


def summary(times):
    return {
        "mean": statistics.mean(times),
        "stddev": statistics.stdev(times) if len(times) > 1 else 0.0,
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "times": times,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tree", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--table", default="files")
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed full runs before the first iteration")
    ap.add_argument("--kill-at", type=float, default=0.9)
    ap.add_argument("--poll", type=float, default=0.02)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    paths = expected_paths(args.tree)
    n = len(paths)
    if n == 0:
        fail(f"no files under {args.tree}")
    cmd = [args.bin, "files", args.tree, "-q", "-p", "sha256", "--sink", f"sqlite:{args.db}"]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    resume_cmd = cmd + ["--resume"]

    for _ in range(args.warmup):
        remove_db(args.db)
        run_timed(cmd, "warmup run")

    iterations = []
    full_times = []
    for i in range(1, args.runs + 1):
        # A full uninterrupted run, timed the same way as the resume and right next to
        # it, so a change in the machine's load hits both alike.
        remove_db(args.db)
        t_full, _ = run_timed(cmd, f"run {i}: full run")
        problems, _, _ = check_complete(args.db, args.table, paths)
        if problems:
            fail(f"run {i}: after the full run `{' '.join(cmd)}`: " + "; ".join(problems))
        full_times.append(t_full)

        for attempt in range(1, MAX_TRIES + 1):
            killed = kill_at_fraction(cmd, args.db, n, args.kill_at, args.poll)
            if killed is None:
                print(f"resume_bench: run {i}: finished before the kill point, trying again",
                      file=sys.stderr)
                continue
            t_kill, ok_polled = killed
            before = state(args.db, args.table)
            if len(before["runs"]) != 1:
                fail(f"run {i}: after the kill, expected 1 run row, found {before['runs']}")
            run = before["runs"][0]
            if run["ok"] >= n:
                print(f"resume_bench: run {i}: killed after everything was committed, "
                      "trying again", file=sys.stderr)
                continue
            break
        else:
            fail(f"run {i}: could not kill a run between {args.kill_at:.0%} and 100% "
                 f"in {MAX_TRIES} tries (too few batches? try a smaller --batch-size)")

        if run["status"] != "running":
            fail(f"run {i}: a killed run should say 'running', found {run}")
        if before["rows"] != run["ok"] + run["failed"]:
            fail(f"run {i}: after the kill the table has {before['rows']} rows but the run row "
                 f"says {run['ok']} ok + {run['failed']} failed are committed")

        t_resume, stderr = run_timed(resume_cmd, f"run {i}: resume")
        problems, after, r = check_complete(args.db, args.table, paths, run["id"], before)
        if problems:
            fail(f"run {i}: after `{' '.join(resume_cmd)}`: " + "; ".join(problems))

        iterations.append({
            "run": i,
            "full_s": t_full,
            "tries": attempt,
            "kill_after_s": t_kill,
            "ok_polled": ok_polled,
            "ok_at_kill": run["ok"],
            "killed_fraction": run["ok"] / n,
            "checkpoint_rows_at_kill": before["checkpoint_rows"],
            "resume_s": t_resume,
            "attempts_after": r.get("attempts"),
            "checkpoint_rows_after": after["checkpoint_rows"],
            "resume_stderr": stderr,
        })
        print(f"resume_bench: run {i}: full run {t_full:.3f} s; killed at {run['ok']}/{n} "
              f"committed ({run['ok'] / n:.1%}) after {t_kill:.3f} s; resume {t_resume:.3f} s "
              f"({t_resume / t_full:.1%}); verified {n} rows, run {run['id']} succeeded",
              file=sys.stderr)
    remove_db(args.db)

    out = {
        "files": n,
        "kill_at": args.kill_at,
        "poll_s": args.poll,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "command": " ".join(cmd),
        "resume_command": " ".join(resume_cmd),
        "full": summary(full_times),
        "resume": summary([it["resume_s"] for it in iterations]),
        "iterations": iterations,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
