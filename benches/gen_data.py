#!/usr/bin/env python3
"""Generate the input trees for benches/run.sh (`make bench`) in one process.

    python3 benches/gen_data.py OUT_DIR SCALE [TREE...]

makes, under OUT_DIR (only the TREEs named, when some are):

    big/        2000/SCALE files of 256 KiB of seeded pseudo-random bytes, in 20 dirs
                (500 MiB at SCALE=1): the hashing benchmarks
    small100k/  100 dirs x 1000/SCALE files of 4..400 bytes of text (100,000 files at
                SCALE=1): the stat-into-SQLite and peak-memory benchmarks
    small10k/   10 dirs of the same shape (10,000 files at SCALE=1): peak memory
    huge/       max(1, 3//SCALE) files of 2 GiB in one dir (6 GiB at SCALE=1): hashing
                a few multi-GiB files. Each file is 2048 rotations of one seeded 1 MiB
                block of pseudo-random bytes, a different rotation for every 1 MiB of
                every file, so no two 1 MiB pieces are equal and no fresh random bytes
                are drawn per piece

Each tree has a stamp file beside it (OUT_DIR/NAME.params) holding the parameters it
was made with; a tree whose stamp and file count match is reused as it is, any other
is removed and made again. A tree is built under NAME.tmp and renamed when complete,
so an interrupted run never leaves a half-made tree that looks finished. The content
is seeded, so every machine benchmarks the same bytes.

Prints one line per tree: NAME PATH FILES BYTES.
"""

import json
import os
import random
import shutil
import sys

FORMAT_VERSION = 1
BIG_FILE_SIZE = 256 * 1024
HUGE_FILE_SIZE = 2 << 30
HUGE_BLOCK = 1 << 20
# Odd, so (piece number * HUGE_STEP) mod HUGE_BLOCK differs for every piece number below
# HUGE_BLOCK (a power of two): each 1 MiB piece of the tree is its own rotation of the
# block.
HUGE_STEP = 0x9E3779B1
SMALL_MIN, SMALL_MAX = 4, 400


def tree_specs(scale):
    per_dir = max(1, 1000 // scale)
    big_files = max(1, 2000 // scale)
    return {
        "big": {
            "kind": "random",
            "files": big_files,
            "dirs": min(20, big_files),
            "size": BIG_FILE_SIZE,
            "seed": 1,
        },
        "small100k": {
            "kind": "text",
            "files": 100 * per_dir,
            "dirs": 100,
            "size": [SMALL_MIN, SMALL_MAX],
            "seed": 2,
        },
        "small10k": {
            "kind": "text",
            "files": 10 * per_dir,
            "dirs": 10,
            "size": [SMALL_MIN, SMALL_MAX],
            "seed": 3,
        },
        "huge": {
            "kind": "rotated",
            "files": max(1, 3 // scale),
            "size": HUGE_FILE_SIZE,
            "block": HUGE_BLOCK,
            "step": HUGE_STEP,
            "seed": 5,
        },
    }


def count_tree(root):
    """(files, bytes) of the regular files under root."""
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            files += 1
            total += st.st_size
    return files, total


def make_random(root, spec):
    rng = random.Random(spec["seed"])
    n, dirs, size = spec["files"], spec["dirs"], spec["size"]
    for d in range(dirs):
        os.mkdir(os.path.join(root, f"d{d:03d}"))
    for i in range(n):
        path = os.path.join(root, f"d{i % dirs:03d}", f"f{i:05d}.bin")
        with open(path, "wb") as f:
            f.write(rng.randbytes(size))


def make_rotated(root, spec):
    # One seeded block; piece j of file i is the block rotated left by k bytes, k a
    # different value for every piece of the tree. Written as two slices of one
    # memoryview, so no piece is copied in Python.
    bsize, step = spec["block"], spec["step"]
    block = memoryview(random.Random(spec["seed"]).randbytes(bsize))
    pieces = spec["size"] // bsize
    assert pieces * bsize == spec["size"] and spec["files"] * pieces <= bsize and step % 2
    for i in range(spec["files"]):
        with open(os.path.join(root, f"h{i:02d}.bin"), "wb") as f:
            for j in range(pieces):
                k = (i * pieces + j) * step % bsize
                f.write(block[k:])
                f.write(block[:k])


def make_text(root, spec):
    rng = random.Random(spec["seed"])
    # One pool of text lines; each file is a random slice of it, so making 100k
    # files costs one write each and no per-file random generation.
    words = [
        "alpha", "beta", "gamma", "delta", "batch", "proc", "file", "row", "queue",
        "worker", "sink", "hash", "lorem", "ipsum", "dolor", "sit", "amet", "42",
        "2024-01-01", "x", "yy", "zzz",
    ]
    lines = []
    length = 0
    while length < 1 << 20:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) + "\n"
        lines.append(line)
        length += len(line)
    pool = "".join(lines).encode()
    lo, hi = spec["size"]
    n, dirs = spec["files"], spec["dirs"]
    per_dir = n // dirs
    i = 0
    for d in range(dirs):
        dpath = os.path.join(root, f"d{d:03d}")
        os.mkdir(dpath)
        for _ in range(per_dir):
            size = rng.randint(lo, hi)
            start = rng.randrange(0, len(pool) - size)
            with open(os.path.join(dpath, f"f{i:06d}.txt"), "wb") as f:
                f.write(pool[start:start + size])
            i += 1


def ensure_tree(out_dir, name, spec):
    root = os.path.join(out_dir, name)
    stamp = os.path.join(out_dir, name + ".params")
    wanted = dict(spec, format=FORMAT_VERSION)
    try:
        with open(stamp) as f:
            have = json.load(f)
    except (OSError, ValueError):
        have = None
    if have == wanted and os.path.isdir(root):
        files, total = count_tree(root)
        if files == spec["files"]:
            return root, files, total, False
    # Stale, partial or missing: make it again from scratch.
    for p in (root, root + ".tmp"):
        shutil.rmtree(p, ignore_errors=True)
    if os.path.exists(stamp):
        os.remove(stamp)
    tmp = root + ".tmp"
    os.makedirs(tmp)
    if spec["kind"] == "random":
        make_random(tmp, spec)
    elif spec["kind"] == "rotated":
        make_rotated(tmp, spec)
    else:
        make_text(tmp, spec)
    os.rename(tmp, root)
    with open(stamp, "w") as f:
        json.dump(wanted, f, sort_keys=True)
        f.write("\n")
    files, total = count_tree(root)
    return root, files, total, True


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: gen_data.py OUT_DIR SCALE [TREE...]")
    out_dir, scale, only = sys.argv[1], sys.argv[2], sys.argv[3:]
    if not scale.isdigit() or int(scale) < 1:
        sys.exit(f"gen_data.py: SCALE must be a positive integer, got {scale!r}")
    specs = tree_specs(int(scale))
    unknown = [name for name in only if name not in specs]
    if unknown:
        sys.exit(f"gen_data.py: no tree named {', '.join(unknown)} (trees: {', '.join(specs)})")
    os.makedirs(out_dir, exist_ok=True)
    for name, spec in specs.items():
        if only and name not in only:
            continue
        root, files, total, made = ensure_tree(out_dir, name, spec)
        how = "generated" if made else "reused"
        print(f"gen_data: {how} {root}: {files} files, {total} bytes", file=sys.stderr)
        print(name, root, files, total)


if __name__ == "__main__":
    main()
