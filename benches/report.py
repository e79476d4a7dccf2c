#!/usr/bin/env python3
"""Turn the measurements of benches/run.sh into the final table.

Reads OUT/hf-{sha256,blake3,stat,ckpt-small100k,ckpt-big,resume-full}.json (hyperfine
--export-json), OUT/mem-*.txt (peak RSS in KiB, one run per line), OUT/resume.json
(benches/resume_bench.py) and OUT/trees.txt (gen_data.py's output); prints a plain
table to stdout and writes the same table, with a description of the machine, to
OUT/results.md for pasting into BENCHMARKS.md.

Time ratios against the peers are speedups: peer time / batchproc time (> 1 means
batchproc is faster), from hyperfine's mean times. The memory ratio is peak RSS at 100k
files / at 10k files. The checkpoint rows give the overhead of the bookkeeping,
time with / time without - 1, as a percentage; the resume row gives the time of the
resume after the kill as a percentage of a full run's time.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys


def load_hf(out, name):
    with open(os.path.join(out, f"hf-{name}.json")) as f:
        return json.load(f)["results"]


def fmt_time(r):
    mean, sd = r["mean"], r.get("stddev") or 0.0
    if mean >= 1:
        return f"{mean:.3f} s ± {sd:.3f}"
    return f"{mean * 1e3:.1f} ms ± {sd * 1e3:.1f}"


def fmt_secs(mean, sd):
    return fmt_time({"mean": mean, "stddev": sd})


def rel_se(r):
    """Relative standard error of a hyperfine mean."""
    times = r.get("times") or []
    if len(times) < 2 or not r["mean"]:
        return 0.0
    return statistics.stdev(times) / math.sqrt(len(times)) / r["mean"]


def fmt_kib(kib):
    return f"{kib / 1024:.1f} MiB"


def sh(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def fstype(path):
    out = subprocess.run(["df", "--output=fstype", path], capture_output=True, text=True)
    words = out.stdout.split()  # header line, then the type
    return words[-1] if len(words) >= 2 else "?"


def binary(path):
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError:
        return path
    built = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
    return f"`{path}`, modified {built.strftime('%Y-%m-%d %H:%M UTC')}, sha256 {digest}…"


def machine(args):
    cpu = "?"
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and cpu == "?":
                    cpu = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    commit = sh(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    if dirty:
        commit += " (with uncommitted changes in src/ or Cargo.*)"
    simd = ", ".join(f for f in ("sha_ni", "avx2", "avx512f") if f in flags) or "none of sha_ni/avx2/avx512f"
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("batchproc commit", commit),
        ("batchproc binary", binary(args.bin)),
        ("CPU", f"{cpu} ({simd})"),
        ("nproc", str(args.nproc)),
        ("memory", mem),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("filesystem of bench-data", fstype(args.data)),
        ("hyperfine", sh(["hyperfine", "--version"])),
        ("sha256sum", sh(["sha256sum", "--version"])),
        ("b3sum", sh(["b3sum", "--version"])),
        ("GNU parallel", sh(["parallel", "--will-cite", "--version"])),
        ("find", sh(["find", "--version"])),
        ("load average (1, 5, 15 min)", f"{args.load_start} at the start, {args.load_end} at the end"),
    ]


def rows(args):
    """Each row: (benchmark, batchproc, peer, ratio, target, result)."""
    out = []
    n = args.nproc

    def speed_rows(name, label, peers):
        results = load_hf(args.out, name)
        bp = results[0]
        for (peer_label, target), r in zip(peers, results[1:]):
            ratio = r["mean"] / bp["mean"]
            if target is None:
                verdict, tgt = "info", "-"
            else:
                verdict = "PASS" if ratio >= target else "FAIL"
                tgt = f"≥ {target:.2f}×"
            out.append((f"{label} vs {peer_label}", fmt_time(bp), fmt_time(r),
                        f"{ratio:.2f}×", tgt, verdict))
        return results

    hf = {}
    hf["sha256"] = speed_rows("sha256", "sha256", [
        (f"sha256sum (xargs -n64 -P{n})", 3.0),
        (f"sha256sum (xargs -P{n}, one process)", None),
    ])
    hf["blake3"] = speed_rows("blake3", "blake3", [
        ("b3sum (xargs)", 0.9),
        (f"b3sum (xargs -n64 -P{n})", None),
    ])
    hf["stat"] = speed_rows("stat", "stat→SQLite", [("find -printf", 0.25)])
    # make the stat target readable: 0.25× speedup == within 4× of find's time
    b, bp, peer, ratio, _, verdict = out[-1]
    out[-1] = (b, bp, peer, ratio, "≥ 0.25× (≤ 4× find's time)", verdict)

    mem = {}
    for name in ("small10k", "small100k"):
        with open(os.path.join(args.out, f"mem-{name}.txt")) as f:
            runs = [int(x) for x in f.read().split()]
        with open(os.path.join(args.out, f"mem-{name}.cmd")) as f:
            cmd = f.read().strip()
        mem[name] = (statistics.median(runs), runs, cmd)
    files = trees(args.out)
    m10, m100 = mem["small10k"][0], mem["small100k"][0]
    ratio = m100 / m10
    out.append((
        f"peak RSS, sha256→SQLite, {files['small100k'][0]:,} vs {files['small10k'][0]:,} files",
        f"{fmt_kib(m100)} ({files['small100k'][0]:,} files)",
        f"{fmt_kib(m10)} ({files['small10k'][0]:,} files)",
        f"{ratio:.2f}",
        "≤ 1.20",
        "PASS" if ratio <= 1.2 else "FAIL",
    ))

    # Cost of checkpointing: the same command with and without --no-checkpoint.
    files = trees(args.out)
    for tree, target in (("small100k", 0.05), ("big", None)):
        with_, without = load_hf(args.out, f"ckpt-{tree}")
        hf[f"ckpt-{tree}"] = [with_, without]
        over = with_["mean"] / without["mean"] - 1
        se = (1 + over) * math.hypot(rel_se(with_), rel_se(without))
        nfiles, nbytes, _ = files[tree]
        what = (f"{nfiles:,} files" if tree == "small100k"
                else f"{nfiles:,} files, {nbytes / 1048576:.0f} MiB")
        if target is None:
            verdict, tgt = "info", "-"
        else:
            verdict = "PASS" if over < target else "FAIL"
            tgt = f"< +{target:.0%}"
        out.append((
            f"checkpoint cost, sha256→SQLite, {what} (vs --no-checkpoint)",
            fmt_time(with_), fmt_time(without),
            f"{over:+.1%} ± {se:.1%}", tgt, verdict,
        ))

    # Resume after SIGKILL at >= 90% vs a full run.
    full = load_hf(args.out, "resume-full")[0]
    hf["resume-full"] = [full]
    with open(os.path.join(args.out, "resume.json")) as f:
        resume = json.load(f)
    rt = resume["resume"]
    frac = rt["mean"] / full["mean"]
    out.append((
        f"resume after SIGKILL at ≥{resume['kill_at']:.0%} vs full run, "
        f"{resume['files']:,} files, sha256→SQLite",
        f"{fmt_secs(rt['mean'], rt['stddev'])} ({len(rt['times'])} resumes)",
        fmt_time(full),
        f"{frac:.1%}",
        "< 20% of full",
        "PASS" if frac < 0.20 else "FAIL",
    ))
    return out, hf, mem, resume


def trees(out):
    res = {}
    with open(os.path.join(out, "trees.txt")) as f:
        for line in f:
            name, path, nfiles, nbytes = line.split()
            res[name] = (int(nfiles), int(nbytes), path)
    return res


HEADER = ("benchmark", "batchproc", "peer", "ratio", "target", "result")


def plain_table(table):
    widths = [max(len(r[i]) for r in [HEADER] + table) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(HEADER, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def md_table(table):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in table:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--nproc", type=int, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--min-runs", type=int, required=True)
    ap.add_argument("--mem-runs", type=int, required=True)
    ap.add_argument("--ckpt-runs", type=int, required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--load-start", default="?")
    ap.add_argument("--load-end", default="?")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()

    table, hf, mem, resume = rows(args)
    files = trees(args.out)
    legend = ("ratio: time rows against a peer = peer time / batchproc time (mean of "
              "hyperfine runs; >1 = batchproc faster); memory row = median peak RSS at 100k / "
              "at 10k files; checkpoint rows = time with checkpoints / time with "
              "--no-checkpoint - 1 (± one standard error of that ratio); resume row = mean "
              "time of the resume / mean time of a full run (the peer column).")
    fracs = [it["killed_fraction"] for it in resume["iterations"]]
    times = resume["resume"]["times"]
    resume_note = (
        f"resume row: {len(times)} runs killed with SIGKILL once ≥{resume['kill_at']:.0%} of "
        f"{resume['files']:,} files were committed (batch size "
        f"{resume['batch_size'] or 'default'}; polled every {resume['poll_s'] * 1000:g} ms); "
        f"committed at the kill: {min(fracs):.1%}–{max(fracs):.1%} (median "
        f"{statistics.median(fracs):.1%}); resume times {min(times):.3f}–{max(times):.3f} s "
        f"(median {statistics.median(times):.3f} s). Each resume was verified: exit 0, the "
        f"same run row continued, status 'succeeded', ok = {resume['files']:,}, one row per "
        f"file with the tree's paths, no committed row rewritten.")

    print()
    print(f"batchproc benchmarks (BENCH_SCALE={args.scale}, nproc={args.nproc})")
    print(plain_table(table))
    print(legend)
    print(resume_note)
    for note in args.note:
        print("note: " + note.replace("`", ""))
    if args.scale != 1:
        print(f"note: BENCH_SCALE={args.scale} is a quick check; compare with the targets "
              "only at BENCH_SCALE=1.")

    md = []
    md.append(f"### Results ({'full run' if args.scale == 1 else f'quick check, BENCH_SCALE={args.scale}'})")
    md.append("")
    md.append("| machine | |")
    md.append("|---|---|")
    for k, v in machine(args):
        md.append(f"| {k} | {v} |")
    md.append("")
    md.append("Data (generated by `benches/gen_data.py`, page cache warm):")
    md.append("")
    for name, (nfiles, nbytes, path) in files.items():
        md.append(f"- `{path}`: {nfiles:,} files, {nbytes / 1048576:.1f} MiB")
    md.append("")
    md.append(f"hyperfine: {args.warmup} warmup + at least {args.min_runs} timed runs per "
              f"command ({args.ckpt_runs} in the checkpoint-cost rows); peak memory: median of "
              f"{args.mem_runs} runs of `/usr/bin/time -v`; resume: "
              f"{len(resume['resume']['times'])} kill-and-resume runs of "
              "`benches/resume_bench.py`.")
    md.append("")
    md.append(md_table(table))
    md.append("")
    md.append(legend)
    md.append("")
    md.append(resume_note[0].upper() + resume_note[1:])
    md.append("")
    for note in args.note:
        md.append(f"Note: {note}")
        md.append("")
    if args.scale != 1:
        md.append(f"Note: BENCH_SCALE={args.scale} is a quick check on reduced data; its "
                  "numbers are not comparable with the targets.")
        md.append("")
    md.append("Commands timed:")
    md.append("")
    md.append("```")
    for name in ("sha256", "blake3", "stat"):
        if name == "stat":
            md.append(f"# hyperfine --prepare, before every run: rm -f {args.out}/out.db*")
        for r in hf[name]:
            md.append(r["command"])
    for name in ("small10k", "small100k"):
        md.append("/usr/bin/time -v " + mem[name][2])
    md.append(f"# hyperfine --prepare, before every run: rm -f {args.out}/out.db*")
    for name in ("ckpt-small100k", "ckpt-big"):
        for r in hf[name]:
            md.append(r["command"])
    md.append(f"# hyperfine --prepare, before every run: rm -f {resume['command'].split('sqlite:')[1].split()[0]}*")
    md.append(hf["resume-full"][0]["command"])
    md.append(f"# benches/resume_bench.py, {len(resume['resume']['times'])} times: run the "
              "command above, SIGKILL it once the run row's ok reaches "
              f"{resume['kill_at']:.0%} of the files, then time:")
    md.append(resume["resume_command"])
    md.append("```")
    md.append("")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(md))
    print(f"\nMarkdown table and machine description: {os.path.join(args.out, 'results.md')}")

    if args.strict and any(r[5] == "FAIL" for r in table):
        sys.exit(1)


if __name__ == "__main__":
    main()
