#!/usr/bin/env bash
# Side-by-side benchmarks of batchproc against the tools people would otherwise use
# (sha256sum/b3sum through find|xargs, find -printf; pgloader, psql \copy and sqlite3
# .import for the database rows; a plain consumer of the same pgmq queue or NATS JetStream
# stream for the queue rows), and of its pool library against rayon and futures'
# buffer_unordered (the examples/pool_* programs), run by `make bench`.
# See BENCHMARKS.md. Installs its peers with apt if missing, generates its data under
# bench-data/ (reused when unchanged), times with hyperfine and /usr/bin/time, prints a
# table and writes it as Markdown to bench-data/results.md.
#
# Environment:
#   BENCH_SCALE=N       divide file counts by N (default 1; e.g. 20 for a quick check)
#   BENCH_WARMUP=N      hyperfine warmup runs per command (default 2)
#   BENCH_MIN_RUNS=N    hyperfine minimum timed runs per command (default 10)
#   BENCH_HUGE_WARMUP=N hyperfine warmup runs per command in the multi-GiB blake3 row
#                       (default 1: each run hashes 6 GiB; one run also fills the page cache)
#   BENCH_HUGE_MIN_RUNS=N  hyperfine minimum timed runs per command there (default 5)
#   BENCH_MEM_RUNS=N    /usr/bin/time runs per tree for peak memory; median taken (default 3)
#   BENCH_CKPT_RUNS=N   timed runs per command in the checkpoint-cost rows (default 30, in 6
#                       hyperfine rounds of alternating order: the target is a few percent)
#   BENCH_RESUME_RUNS=N iterations of (full run, kill at 90% and resume) (default 10)
#   BENCH_DB=0          skip the three database rows (default 1: run them; they need a
#                       Postgres server, see BENCH_PG_*)
#   BENCH_DB_WARMUP=N   hyperfine warmup runs per command in the database rows (default 1)
#   BENCH_DB_MIN_RUNS=N hyperfine minimum timed runs per command there (default 3)
#   BENCH_PG_HOST, BENCH_PG_PORT, BENCH_PG_USER
#                       the Postgres server of the database rows (default 127.0.0.1, 5432,
#                       postgres; no password: trust auth, or a ~/.pgpass). The rows
#                       drop and create the databases bench_db_bp, bench_db_pgloader and
#                       bench_db_copy on it, and drop them at the end.
#   BENCH_POOL_RUNS=N   runs per row of examples/pool_vs_rayon (median taken; default 31;
#                       the slow-items rows take min(N, 5))
#   BENCH_POOL_CANCEL_TRIES=N  cancels per row of examples/pool_cancel (default 50)
#   BENCH_ONLY=pool     run only the pool library's rows (examples/pool_noop, pool_vs_rayon,
#                       pool_cancel, and pool_async if it is built or its source is in the
#                       tree; well under a minute) and the report: no data, nothing installed
#                       but /usr/bin/time and python3, no batchproc binary needed
#                       (default: all, every row)
#   BENCH_ONLY=incremental  run only the --incremental re-run row (an unchanged 100,000-file
#                       tree against find -printf) and its report; generates only small100k/
#   BENCH_ONLY=queue    run only the queue rows (batchproc queue from pgmq and from NATS
#                       JetStream, against a plain consumer; examples/queue_bench) and their
#                       report; no file data (a few minutes)
#   BENCH_QUEUE=0       skip the queue rows (default 1: run them; they need the Postgres
#                       server of BENCH_PG_* and the NATS server of BENCH_NATS_URL, with
#                       JetStream; the script installs and starts neither). The rows drop and
#                       create the database bench_queue (dropped at the end) and the stream
#                       bench_queue (deleted at the end)
#   BENCH_QUEUE_RUNS=N  runs per queue of the plain consumer and of batchproc, each on a
#                       queue loaded anew, in turn (median taken; default 3)
#   BENCH_NATS_URL=URL  the NATS server of the queue rows (default nats://127.0.0.1:4222)
#   BENCH_STRICT=1      exit 1 if any target is missed (default: report only, exit 0)
#   BIN=PATH            the batchproc binary to time (default target/release/batchproc);
#                       e.g. a copy, so a rebuild during the run cannot change it
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCALE=${BENCH_SCALE:-1}
WARMUP=${BENCH_WARMUP:-2}
MIN_RUNS=${BENCH_MIN_RUNS:-10}
HUGE_WARMUP=${BENCH_HUGE_WARMUP:-1}
HUGE_MIN_RUNS=${BENCH_HUGE_MIN_RUNS:-5}
MEM_RUNS=${BENCH_MEM_RUNS:-3}
CKPT_RUNS=${BENCH_CKPT_RUNS:-30}
RESUME_RUNS=${BENCH_RESUME_RUNS:-10}
STRICT=${BENCH_STRICT:-0}
DB=${BENCH_DB:-1}
DB_WARMUP=${BENCH_DB_WARMUP:-1}
DB_MIN_RUNS=${BENCH_DB_MIN_RUNS:-3}
POOL_RUNS=${BENCH_POOL_RUNS:-31}
POOL_CANCEL_TRIES=${BENCH_POOL_CANCEL_TRIES:-50}
QUEUE=${BENCH_QUEUE:-1}
QUEUE_RUNS=${BENCH_QUEUE_RUNS:-3}
NATS_URL=${BENCH_NATS_URL:-nats://127.0.0.1:4222}
ONLY=${BENCH_ONLY:-all}
PG_HOST=${BENCH_PG_HOST:-127.0.0.1}
PG_PORT=${BENCH_PG_PORT:-5432}
PG_USER=${BENCH_PG_USER:-postgres}
if [[ $ONLY != all && $ONLY != pool && $ONLY != incremental && $ONLY != queue ]]; then
    echo "bench: BENCH_ONLY must be all, pool, incremental or queue, got '$ONLY'" >&2
    exit 2
fi
for v in DB QUEUE; do
    if [[ ${!v} != 0 && ${!v} != 1 ]]; then
        echo "bench: BENCH_$v must be 0 or 1, got '${!v}'" >&2
        exit 2
    fi
done
[[ $ONLY == all || $ONLY == queue ]] || QUEUE=0 # the pool and incremental rows need no queue
[[ $ONLY != incremental && $ONLY != queue ]] || DB=0 # nor do they, or the queue rows, need the database rows
[[ $ONLY != queue ]] || QUEUE=1
if ! [[ $DB_WARMUP =~ ^[0-9]+$ ]]; then
    echo "bench: BENCH_DB_WARMUP must be a non-negative integer, got '$DB_WARMUP'" >&2
    exit 2
fi
for v in SCALE WARMUP MIN_RUNS HUGE_WARMUP HUGE_MIN_RUNS MEM_RUNS CKPT_RUNS RESUME_RUNS DB_MIN_RUNS \
    POOL_RUNS POOL_CANCEL_TRIES QUEUE_RUNS; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} < 1)); then
        echo "bench: BENCH_$v must be a positive integer, got '${!v}'" >&2
        exit 2
    fi
done

BIN=${BIN:-target/release/batchproc}
OUT=bench-data
DATA=$OUT/scale-$SCALE
NPROC=$(nproc)

say() { printf '\n== %s\n' "$*"; }
die() { echo "bench: error: $*" >&2; exit 1; }

# --- 1. peers -----------------------------------------------------------------------
install_peers() {
    local need=()
    [[ -x /usr/bin/time ]] || need+=(time)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    if [[ $ONLY != pool && $ONLY != queue ]]; then # the pool and queue rows need none of these
        command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
        command -v b3sum >/dev/null 2>&1 || need+=(b3sum)
        # moreutils also ships a `parallel`; we want GNU parallel.
        parallel --version 2>/dev/null | grep -q 'GNU parallel' || need+=(parallel)
        command -v sha256sum >/dev/null 2>&1 || need+=(coreutils)
        command -v find >/dev/null 2>&1 && command -v xargs >/dev/null 2>&1 || need+=(findutils)
    fi
    if [[ $ONLY != pool && $DB == 1 ]]; then
        command -v pgloader >/dev/null 2>&1 || need+=(pgloader)
        command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
        command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
    fi
    if [[ $QUEUE == 1 ]]; then # psql makes the queue rows' database; NATS needs no client
        command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
    fi
    if ((${#need[@]} == 0)); then
        return
    fi
    say "installing missing peers: ${need[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${need[@]}"
}
install_peers

# The pool rows time the examples/ programs next to BIN (built below if missing), not BIN.
if [[ $ONLY != pool && ! -x $BIN ]]; then
    [[ $BIN == target/release/batchproc ]] || die "BIN=$BIN is not an executable"
    say "$BIN missing: building it (make bench does this for you)"
    cargo build --release
fi
# The machine should be idle. To tell afterwards whether it was, record the load
# average and the CPU time of the whole machine and of this script at the start and the
# end of the timings: report.py turns the difference into "CPU used by other processes".
# The last lines are the CPU time of the Postgres server (every process named postgres:
# user + system of itself and of its reaped children, in clock ticks) and of the NATS
# server (nats-server). Their work during the database and queue rows is part of what
# those rows measure, so report.py does not count it as "other processes" there.
pg_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk '$2 == "(postgres)" { t += $14 + $15 + $16 + $17 }
             $2 == "(nats-server)" { n += $14 + $15 + $16 + $17 }
             END { printf "postgres %d\nnats %d\n", t, n }'
}
cpu_mark() { # file
    { date +%s.%N; head -1 /proc/stat; cut -d' ' -f1-3 /proc/loadavg; times; pg_ticks; } >"$1"
}
PSQL="psql -X -q -h $PG_HOST -p $PG_PORT -U $PG_USER"
PG_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT

# --- 2. data ------------------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT"/results.md "$OUT"/cpu-*.txt "$OUT"/commit.txt "$OUT"/noop-*.txt "$OUT"/mem-noop-*.txt \
    "$OUT"/time-noop-*.log "$OUT"/pool-*.jsonl "$OUT"/pool-commands.txt
# (BENCH_ONLY=pool leaves the other rows' files of an earlier run alone)
rm -f "$OUT"/hf-incremental.json
if [[ $ONLY == all || $ONLY == queue ]]; then
    rm -f "$OUT"/queue-* "$OUT"/cpu-queue-*.txt
fi
if [[ $ONLY == all ]]; then
    rm -f "$OUT"/hf-*.json "$OUT"/mem-*.txt "$OUT"/mem-*.cmd "$OUT"/time-*.log \
        "$OUT"/resume.json "$OUT"/rows.txt "$OUT"/db-verify-*.json \
        "$OUT"/db-commands.txt "$OUT"/db-*.log
fi
# The commit, and whether src/ or Cargo.* differed from it, when the run starts (report.py
# would otherwise read HEAD at the end, after any commit made meanwhile). This names the
# tree, not the binary: BIN may have been built from another one.
{
    git rev-parse --short=12 HEAD 2>/dev/null || echo '?'
    git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | head -1
} >"$OUT/commit.txt"

# --- the pool library's rows (3f3 below; BENCH_ONLY=pool runs only these) --------------------
# The examples/pool_* programs time batchproc::pool in-process. Each runs from the examples
# directory next to BIN, or is built with cargo if it is missing there. Each prints one JSON
# object per row and exits non-zero if its results were wrong. Every command is recorded in
# pool-commands.txt for the report.
example() { # name: print the path of the example's binary, building it if missing
    local path
    path=$(dirname "$BIN")/examples/$1
    if [[ ! -x $path ]]; then
        cargo build --release --example "$1" >&2 || return
        path=target/release/examples/$1
    fi
    echo "$path"
}
pool_rows() {
    local noop rayon cancel async n i
    # examples/pool_noop.rs runs N synthetic items through batchproc::pool::Pool with a
    # no-op worker (bounded channels both sides); it checks every item came back once.
    noop=$(example pool_noop)
    say "pool no-op: 1,000,000 and 100,000 items ($noop)"
    echo "# $MEM_RUNS runs each, items/s and peak RSS (/usr/bin/time -f %M)" >>"$OUT/pool-commands.txt"
    for n in 100000 1000000; do
        echo "$noop $n $NPROC" >>"$OUT/pool-commands.txt"
        for ((i = 1; i <= MEM_RUNS; i++)); do
            /usr/bin/time -f '%M' -o "$OUT/time-noop-$n.log" "$noop" "$n" "$NPROC" >>"$OUT/noop-$n.txt"
            cat "$OUT/time-noop-$n.log" >>"$OUT/mem-noop-$n.txt"
        done
    done

    # examples/pool_vs_rayon.rs: pool::map against rayon's par_iter on a pool of the same
    # size, 1,000,000 tiny items (target: within 5x of rayon) and 100 items of 1 ms per
    # thread (target: within 1.15x of the ideal, 100 ms); medians of POOL_RUNS runs.
    rayon=$(example pool_vs_rayon)
    say "pool vs rayon: tiny items and items of 1 ms, $NPROC threads, $POOL_RUNS runs ($rayon)"
    "$rayon" "$NPROC" "$POOL_RUNS" | tee "$OUT/pool-rayon.jsonl" ||
        die "$rayon failed (wrong results?), see above"
    printf '# one JSON object a row, saved as %s\n%s\n' "$OUT/pool-rayon.jsonl" \
        "$rayon $NPROC $POOL_RUNS" >>"$OUT/pool-commands.txt"

    # examples/pool_cancel.rs: time from cancel() until the pool returns, median and worst
    # of POOL_CANCEL_TRIES tries (target: at most 100 ms).
    cancel=$(example pool_cancel)
    say "pool cancel latency: $POOL_CANCEL_TRIES tries per row ($cancel)"
    "$cancel" "$POOL_CANCEL_TRIES" | tee "$OUT/pool-cancel.jsonl" ||
        die "$cancel failed, see above"
    printf '# one JSON object a row, saved as %s\n%s\n' "$OUT/pool-cancel.jsonl" \
        "$cancel $POOL_CANCEL_TRIES" >>"$OUT/pool-commands.txt"

    # examples/pool_async.rs: the pool's async map against futures' buffer_unordered and
    # buffered (target: at most ~10% slower). Run only if it exists: a tree without its
    # source skips the rows, and report.py leaves them out.
    async=$(dirname "$BIN")/examples/pool_async
    if [[ ! -x $async && -f examples/pool_async.rs ]]; then
        async=$(example pool_async)
    fi
    if [[ -x $async ]]; then
        say "pool async map vs buffer_unordered and buffered ($async)"
        "$async" | tee "$OUT/pool-async.jsonl" || die "$async failed, see above"
        printf '# one JSON object a row, saved as %s\n%s\n' "$OUT/pool-async.jsonl" \
            "$async" >>"$OUT/pool-commands.txt"
    else
        say "pool async: skipped, no $async (examples/pool_async.rs is not in this tree)"
    fi
}

# --- 3h. the queue source: 100,000 messages of 1 KiB from pgmq and from NATS JetStream ----------
# For each queue, in turn, QUEUE_RUNS times: the plain consumer of examples/queue_bench (fetch
# a batch, delete or ack it, nothing else: the queue's own ceiling), then `batchproc queue
# -p sha256:payload` into a new SQLite file, each on the queue loaded anew. batchproc runs with
# --max-messages N: it stops once it has taken the N messages, as the plain consumer stops at
# its first empty fetch (without it, a drain ends only after --idle, 1 s, without messages;
# one such run per queue is timed too, for information). Every batchproc run is checked: one
# row per message with the payload's SHA-256, a summary of ok = N and failed = 0, and the queue
# empty. Then peak RSS at N/10 messages (MEM_RUNS runs) against the timed runs' at N.
# Targets: batchproc's rate at least 0.5x the ceiling's; peak RSS at N at most 1.20x that at
# N/10 (report.py). Every command is recorded in queue-commands.txt for the report.
QUEUE_N=$((100000 / SCALE))
QUEUE_SMALL=$((QUEUE_N / 10))
QUEUE_SIZE=1024
QUEUE_NAME=bench_queue
# As many messages a fetch as batchproc takes into SQLite: its batch size, 5000 by default.
QUEUE_BATCH=5000
QUEUE_PG=$PG_URL/$QUEUE_NAME
queue_url() { # queue
    if [[ $1 == pgmq ]]; then echo "$QUEUE_PG"; else echo "$NATS_URL"; fi
}
queue_load() { # queue n: the queue made anew, holding n messages of QUEUE_SIZE bytes
    "$QB" "load-$1" "$(queue_url "$1")" "$QUEUE_NAME" "$2" "$QUEUE_SIZE" 2>>"$OUT/queue-load.log" ||
        die "loading $2 messages into $1 failed (see $OUT/queue-load.log)"
}
queue_left() { # queue: messages not yet consumed (batchproc's consumer, for NATS)
    if [[ $1 == pgmq ]]; then
        "$QB" left-pgmq "$QUEUE_PG" "$QUEUE_NAME"
    else
        "$QB" left-nats "$NATS_URL" "$QUEUE_NAME" batchproc
    fi
}
queue_cmd() { # queue [flags...]: queue_run's batchproc command, for the report
    local q=$1
    shift
    echo "$BIN queue --from $(queue_url "$q") --queue $QUEUE_NAME -p sha256:payload -o sqlite:$OUT/queue-$q.db${*:+ $*}"
}
queue_run() { # queue n name [flags...]: time batchproc draining n messages, check, append to queue-QUEUE-NAME.txt
    local q=$1 n=$2 name=$3 db=$OUT/queue-$1.db secs rss user sys left check
    shift 3
    local argv=("$BIN" queue --from "$(queue_url "$q")" --queue "$QUEUE_NAME" -p sha256:payload
        -o "sqlite:$db" "$@" --summary-json "$OUT/queue-summary.json")
    rm -f "$db" "$db"-wal "$db"-shm "$db"-journal "$OUT/queue-summary.json"
    /usr/bin/time -f '%e %M %U %S' -o "$OUT/queue-time.log" "${argv[@]}" 2>>"$OUT/queue-$q-$name.log" ||
        die "batchproc queue from $q failed (see $OUT/queue-$q-$name.log and $OUT/queue-time.log)"
    read -r secs rss user sys <"$OUT/queue-time.log"
    # The sink must hold each message once, with its payload's digest, and the queue be empty.
    check=$(python3 -c 'import hashlib, json, sqlite3, sys
db, summary, n = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
conn = sqlite3.connect(db)
# the results: the one table that is not bookkeeping (whatever the default calls it)
tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = ?", ("table",))
          if not t.startswith(("batchproc_", "_sqlx", "sqlite_"))]
if len(tables) != 1:
    sys.exit(f"want one table of results, found {tables}")
rows = conn.execute(f"SELECT id, payload, payload_sha256 FROM \"{tables[0]}\"").fetchall()
ids = len({r[0] for r in rows})
bad = sum(hashlib.sha256(r[1].encode()).hexdigest() != r[2] for r in rows)
ok, failed = summary["ok"], summary["failed"]
if len(rows) != n or ids != n or bad or ok != n or failed:
    sys.exit(f"{len(rows)} rows, {ids} ids, {bad} wrong digests, summary ok {ok} failed {failed}")
print(summary["elapsed_seconds"], summary["workers_average_busy"], summary["workers_peak_busy"])' \
        "$db" "$OUT/queue-summary.json" "$n") || die "batchproc queue from $q: wrong results in $db (want $n)"
    left=$(queue_left "$q") || die "cannot count the messages left in $q"
    [[ $left == 0 ]] || die "batchproc queue from $q left $left messages in the queue"
    echo "$n $secs $rss $user $sys $check" >>"$OUT/queue-$q-$name.txt"
    echo "bench: $q, batchproc: $n messages in $secs s ($(awk -v n="$n" -v s="$secs" \
        'BEGIN { printf "%.0f", n / (s > 0 ? s : 0.01) }') msg/s), peak RSS $rss KiB, user $user s," \
        "sys $sys s; its summary: elapsed s, workers busy (average, peak): $check" >&2
    rm -f "$db" "$db"-wal "$db"-shm "$db"-journal
}
queue_rows() {
    local q r
    QB=$(example queue_bench)
    $PSQL -d postgres -c 'SELECT 1' >/dev/null ||
        die "cannot reach Postgres at $PG_HOST:$PG_PORT as $PG_USER (set BENCH_PG_*, or BENCH_QUEUE=0 to skip the queue rows)"
    $PSQL -d postgres -c "DROP DATABASE IF EXISTS $QUEUE_NAME" -c "CREATE DATABASE $QUEUE_NAME" ||
        die "cannot create the database $QUEUE_NAME"
    "$QB" load-nats "$NATS_URL" "$QUEUE_NAME" 1 "$QUEUE_SIZE" 2>>"$OUT/queue-load.log" ||
        die "cannot reach NATS with JetStream at $NATS_URL (see $OUT/queue-load.log; set BENCH_NATS_URL, or BENCH_QUEUE=0 to skip the queue rows)"
    echo "$QUEUE_N $QUEUE_SMALL $QUEUE_SIZE $QUEUE_BATCH $QUEUE_RUNS" >"$OUT/queue-params.txt"
    for q in pgmq nats; do
        say "queue $q: $QUEUE_N messages of $QUEUE_SIZE bytes, plain consumer vs batchproc, $QUEUE_RUNS run(s) each ($QB)"
        for ((r = 1; r <= QUEUE_RUNS; r++)); do
            queue_load "$q" "$QUEUE_N"
            "$QB" "ceiling-$q" "$(queue_url "$q")" "$QUEUE_NAME" "$QUEUE_BATCH" \
                2>>"$OUT/queue-load.log" | tee -a "$OUT/queue-$q-ceiling.jsonl" ||
                die "the plain consumer of $q failed (see $OUT/queue-load.log)"
            queue_load "$q" "$QUEUE_N"
            queue_run "$q" "$QUEUE_N" timed --max-messages "$QUEUE_N"
        done
        say "queue $q: peak RSS at $QUEUE_SMALL messages, $MEM_RUNS run(s); one run ending by --idle"
        for ((r = 1; r <= MEM_RUNS; r++)); do
            queue_load "$q" "$QUEUE_SMALL"
            queue_run "$q" "$QUEUE_SMALL" small --max-messages "$QUEUE_SMALL"
        done
        queue_load "$q" "$QUEUE_N"
        queue_run "$q" "$QUEUE_N" idle
        {
            echo "# $q: before every run, the queue made anew holding N messages of $QUEUE_SIZE bytes (N = $QUEUE_N, or $QUEUE_SMALL for the memory runs):"
            echo "$QB load-$q $(queue_url "$q") $QUEUE_NAME N $QUEUE_SIZE"
            echo "# the plain consumer ($QUEUE_RUNS run(s)), each followed by a batchproc run into a new file (/usr/bin/time -f '%e %M %U %S'):"
            echo "$QB ceiling-$q $(queue_url "$q") $QUEUE_NAME $QUEUE_BATCH"
            echo "$(queue_cmd "$q" --max-messages "$QUEUE_N") --summary-json $OUT/queue-summary.json"
            echo "# peak RSS at $QUEUE_SMALL messages ($MEM_RUNS run(s)):"
            echo "$(queue_cmd "$q" --max-messages "$QUEUE_SMALL") --summary-json $OUT/queue-summary.json"
            echo "# one run ending by --idle (for information):"
            echo "$(queue_cmd "$q") --summary-json $OUT/queue-summary.json"
        } >>"$OUT/queue-commands.txt"
    done
    # The sink's floor: SQLite alone writing the rows of those messages (for information).
    say "queue: SQLite alone writing the rows of $QUEUE_N messages, $QUEUE_RUNS run(s)"
    for ((r = 1; r <= QUEUE_RUNS; r++)); do
        "$QB" floor-sqlite "$OUT/queue-floor.db" "$QUEUE_N" "$QUEUE_SIZE" "$QUEUE_BATCH" |
            tee -a "$OUT/queue-floor.jsonl" || die "the SQLite floor run failed"
    done
    rm -f "$OUT/queue-floor.db" "$OUT/queue-floor.db"-wal "$OUT/queue-floor.db"-shm
    {
        echo "# SQLite alone writing the rows of the messages (the sink's floor, $QUEUE_RUNS run(s)):"
        echo "$QB floor-sqlite $OUT/queue-floor.db $QUEUE_N $QUEUE_SIZE $QUEUE_BATCH"
    } >>"$OUT/queue-commands.txt"
    "$QB" delete-nats "$NATS_URL" "$QUEUE_NAME" || true
    $PSQL -d postgres -c "DROP DATABASE IF EXISTS $QUEUE_NAME" || true
}

# --- 4. table + bench-data/results.md: called last -------------------------------------------
report() {
    local report=(python3 benches/report.py --out "$OUT" --nproc "$NPROC" --mem-runs "$MEM_RUNS"
        --bin "$BIN" --pool-runs "$POOL_RUNS")
    if [[ $ONLY == pool ]]; then
        report+=(--only pool)
    elif [[ $ONLY == incremental ]]; then
        report+=(--only incremental --scale "$SCALE" --warmup "$WARMUP" --min-runs "$MIN_RUNS"
            --data "$DATA")
    elif [[ $ONLY == queue ]]; then
        report+=(--only queue --scale "$SCALE")
    else
        report+=(--scale "$SCALE" --warmup "$WARMUP" --min-runs "$MIN_RUNS" --data "$DATA"
            --huge-warmup "$HUGE_WARMUP" --huge-min-runs "$HUGE_MIN_RUNS"
            --ckpt-runs "$((CKPT_ROUNDS * CKPT_PER_ROUND))" --ckpt-rounds "$CKPT_ROUNDS")
        if [[ $DB == 1 ]]; then
            report+=(--db --db-warmup "$DB_WARMUP" --db-min-runs "$DB_MIN_RUNS")
        fi
        local n
        for n in ${NOTES[@]+"${NOTES[@]}"}; do report+=(--note "$n"); done
    fi
    if [[ $QUEUE == 1 ]]; then report+=(--queue); fi
    if [[ $STRICT == 1 ]]; then report+=(--strict); fi
    "${report[@]}"
}

if [[ $ONLY == pool ]]; then
    cpu_mark "$OUT/cpu-start.txt"
    pool_rows
    cpu_mark "$OUT/cpu-end.txt"
    report
    exit
fi
run_queue_rows() { # with the servers' CPU time around them (report.py leaves it out of "other")
    cpu_mark "$OUT/cpu-queue-start.txt"
    queue_rows
    cpu_mark "$OUT/cpu-queue-end.txt"
}
if [[ $ONLY == queue ]]; then
    ((SCALE == 1)) || echo "bench: BENCH_SCALE=$SCALE is a quick check; its numbers are not comparable with the targets" >&2
    cpu_mark "$OUT/cpu-start.txt"
    run_queue_rows
    cpu_mark "$OUT/cpu-end.txt"
    report
    exit
fi

say "data under $DATA (BENCH_SCALE=$SCALE)"
if [[ $ONLY == incremental ]]; then
    python3 benches/gen_data.py "$DATA" "$SCALE" small100k >"$OUT/trees.txt"
else
    python3 benches/gen_data.py "$DATA" "$SCALE" >"$OUT/trees.txt"
fi
BIG=$DATA/big
SMALL100K=$DATA/small100k
SMALL10K=$DATA/small10k
HUGE=$DATA/huge
if [[ $DB == 1 ]]; then
    python3 benches/gen_rows.py "$DATA" "$SCALE" >"$OUT/rows.txt"
    read -r _ ROWS_DB ROWS_CSV NROWS _ _ <"$OUT/rows.txt"
fi
((SCALE == 1)) || echo "bench: BENCH_SCALE=$SCALE is a quick check; its numbers are not comparable with the targets" >&2

HF=(hyperfine --warmup "$WARMUP" --min-runs "$MIN_RUNS")

# --- 3c2. an --incremental re-run over the unchanged small100k tree, vs the find floor --------
# A first run (untimed) hashes every file into a new database; each timed re-run compares
# every file's size and mtime with its row and passes it (none is opened or written). find
# -printf '%p %s %T@' walks and stats the same files and prints what the comparison needs.
# Target (issue 14): at most 1.5x find's time.
incremental_row() {
    local db=$OUT/incr.db check=$OUT/incr-check.json n
    local cmd="$BIN files $SMALL100K -q -p sha256 --incremental --sink sqlite:$db"
    say "incremental re-run of an unchanged tree: batchproc vs find -printf ($SMALL100K)"
    rm -f "$db" "$db"-wal "$db"-shm "$db"-journal
    "$BIN" files "$SMALL100K" -q -p sha256 --sink "sqlite:$db" || die "the first run into $db failed"
    # The re-run must pass every file and process none, or it measures something else.
    $cmd --summary-json "$check" || die "the incremental re-run failed"
    n=$(find "$SMALL100K" -type f | wc -l)
    python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); n = int(sys.argv[2])
sys.exit(0 if s["unchanged"] == n and s["ok"] == 0 else f"re-run: {s}, want {n} unchanged")' \
        "$check" "$n" || die "the incremental re-run did not pass every file unchanged"
    "${HF[@]}" --export-json "$OUT/hf-incremental.json" \
        "$cmd" "find $SMALL100K -type f -printf '%p %s %T@\\n' >/dev/null"
    rm -f "$db" "$db"-wal "$db"-shm "$db"-journal "$check"
}
if [[ $ONLY == incremental ]]; then
    cpu_mark "$OUT/cpu-start.txt"
    incremental_row
    cpu_mark "$OUT/cpu-end.txt"
    report
    exit
fi

# --- sanity: batchproc must agree with the peers it is timed against ------------------
# (a benchmark of a processor that computes the wrong thing, or nothing, means nothing)
check_digests() { # processor peer-command
    local proc=$1 peer=$2 dir=$BIG/d000
    if ! diff <("$BIN" files "$dir" -q -p "$proc" --sink - |
        awk -F, -v col="$proc" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
                                 { print $c "  " $1 }' | sort) \
        <(find "$dir" -type f -print0 | xargs -0 "$peer" | sort) >/dev/null; then
        die "batchproc -p $proc disagrees with $peer on $dir"
    fi
}
say "sanity check: batchproc digests == sha256sum / b3sum digests"
check_digests sha256 sha256sum
check_digests blake3 b3sum
# One file of the huge tree, alone: with a CPU left without a busy worker, batchproc
# hashes it in 1 MiB blocks on rayon's pool, the path the multi-GiB row times.
check_huge() {
    local files=("$HUGE"/*) file got want
    file=${files[0]}
    got=$("$BIN" files "$file" -q -p blake3 --sink - -w "$NPROC" |
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "blake3") c = i; next }
                 { print $c }')
    want=$(b3sum --no-names "$file")
    [[ -n $got && $got == "$want" ]] || die "batchproc -p blake3 disagrees with b3sum on $file ($got vs $want)"
}
check_huge

# The brief's hashing command writes CSV to /dev/null. Use it if this build accepts it;
# otherwise (e.g. a CSV sink that fsyncs and gets EINVAL from /dev/null) send CSV to
# stdout and drop it, which costs the same, and say so in the report.
HASH_SINK="--sink csv:/dev/null"
NOTES=()
if ! err=$("$BIN" files "$BIG/d000" -q -p sha256 --sink csv:/dev/null 2>&1 >/dev/null); then
    HASH_SINK="--sink - >/dev/null"
    NOTES+=("\`--sink csv:/dev/null\` failed (${err//$'\n'/ }); the hashing rows use \`--sink - >/dev/null\` instead.")
    echo "bench: warning: --sink csv:/dev/null failed: $err" >&2
    echo "bench: warning: timing the hashing rows with --sink - >/dev/null instead" >&2
fi

cpu_mark "$OUT/cpu-start.txt"

# --- 3a. hashing: sha256 ----------------------------------------------------------------
# The target row splits the list (-n64) so -P really uses every core: without -n,
# xargs fits all 2,000 paths in one command line and runs a single sha256sum.
say "sha256: batchproc vs sha256sum ($BIG)"
"${HF[@]}" --export-json "$OUT/hf-sha256.json" \
    "$BIN files $BIG -q -p sha256 $HASH_SINK -w $NPROC" \
    "find $BIG -type f -print0 | xargs -0 -n64 -P$NPROC sha256sum >/dev/null" \
    "find $BIG -type f -print0 | xargs -0 -P$NPROC sha256sum >/dev/null"

# --- 3b. hashing: blake3 ----------------------------------------------------------------
say "blake3: batchproc vs b3sum ($BIG)"
"${HF[@]}" --export-json "$OUT/hf-blake3.json" \
    "$BIN files $BIG -q -p blake3 $HASH_SINK -w $NPROC" \
    "find $BIG -type f -print0 | xargs -0 b3sum >/dev/null" \
    "find $BIG -type f -print0 | xargs -0 -n64 -P$NPROC b3sum >/dev/null"

# --- 3b2. hashing: blake3 over a few multi-GiB files ---------------------------------------
# One worker per CPU, and (at BENCH_SCALE=1) 3 files on 2 CPUs: for the last file a CPU
# has no busy worker, and batchproc hashes it on rayon's pool. b3sum hashes each file
# with mmap and threads; the info row runs one single-threaded b3sum per file, NPROC at
# a time. Each run hashes 6 GiB, so fewer runs (BENCH_HUGE_*); the warmup puts the tree
# in the page cache.
say "blake3: batchproc vs b3sum, a few 2 GiB files ($HUGE)"
hyperfine --warmup "$HUGE_WARMUP" --min-runs "$HUGE_MIN_RUNS" --export-json "$OUT/hf-huge.json" \
    "$BIN files $HUGE -q -p blake3 $HASH_SINK -w $NPROC" \
    "b3sum $HUGE/* >/dev/null" \
    "find $HUGE -type f -print0 | xargs -0 -n1 -P$NPROC b3sum --num-threads 1 >/dev/null"

# --- 3c. stat only, into SQLite, vs the find floor ---------------------------------------
say "stat into SQLite: batchproc vs find -printf ($SMALL100K)"
"${HF[@]}" --export-json "$OUT/hf-stat.json" \
    --prepare "rm -f $OUT/out.db*" \
    "$BIN files $SMALL100K -q --sink sqlite:$OUT/out.db" \
    "find $SMALL100K -type f -printf '%s %T@ %p\\n' >/dev/null"
incremental_row

# --- 3d. peak memory: 10k vs 100k files ---------------------------------------------------
MEM_DB=$OUT/mem.db
peak_rss() { # name tree
    local name=$1 tree=$2 i log
    for ((i = 1; i <= MEM_RUNS; i++)); do
        rm -f "$MEM_DB" "$MEM_DB"-wal "$MEM_DB"-shm "$MEM_DB"-journal
        log=$OUT/time-$name.log
        /usr/bin/time -v -o "$log" "$BIN" files "$tree" -q -p sha256 --sink "sqlite:$MEM_DB"
        awk -F': *' '/Maximum resident set size/ { print $2 }' "$log" >>"$OUT/mem-$name.txt"
    done
    echo "$BIN files $tree -q -p sha256 --sink sqlite:$MEM_DB" >"$OUT/mem-$name.cmd"
    echo "bench: $name peak RSS (KiB) over $MEM_RUNS runs: $(tr '\n' ' ' <"$OUT/mem-$name.txt")" >&2
}
say "peak memory: /usr/bin/time -v, $MEM_RUNS runs per tree"
peak_rss small10k "$SMALL10K"
peak_rss small100k "$SMALL100K"
rm -f "$MEM_DB" "$MEM_DB"-wal "$MEM_DB"-shm "$MEM_DB"-journal

# --- 3e. cost of checkpointing: the same run with and without the bookkeeping ---------------
# Every SQLite run writes a batchproc_runs row and checkpoint rows in each batch's
# transaction; --no-checkpoint leaves them out. 100k small files is where per-item
# bookkeeping weighs most (the target row); the big tree is for information.
# The target is a difference of a few percent, less than a drift in the machine's load
# over a minute, and hyperfine does all runs of one command before the other's. So
# the runs are split into CKPT_ROUNDS hyperfine invocations whose order alternates
# (with, without; without, with; ...), and report.py pools the rounds' times.
CKPT_ROUNDS=6
CKPT_PER_ROUND=$(((CKPT_RUNS + CKPT_ROUNDS - 1) / CKPT_ROUNDS))
((CKPT_PER_ROUND >= 2)) || CKPT_PER_ROUND=2
ckpt_cost() { # name tree
    local name=$1 tree=$2 r warm
    local with="$BIN files $tree -q -p sha256 --sink sqlite:$OUT/out.db"
    local without="$with --no-checkpoint"
    say "checkpoint cost: sha256 into SQLite, with vs without checkpoints ($tree)"
    for ((r = 1; r <= CKPT_ROUNDS; r++)); do
        warm=1
        ((r > 1)) || warm=$WARMUP
        local order=("$with" "$without")
        ((r % 2 == 1)) || order=("$without" "$with")
        hyperfine --warmup "$warm" --runs "$CKPT_PER_ROUND" --prepare "rm -f $OUT/out.db*" \
            --export-json "$OUT/hf-ckpt-$name.round$r.json" "${order[@]}"
    done
    rm -f "$OUT"/out.db*
}
ckpt_cost small100k "$SMALL100K"
ckpt_cost big "$BIG"

# --- 3f. resume after SIGKILL at ~90% vs a full run ---------------------------------------
# benches/resume_bench.py, RESUME_RUNS times: time a full run; start it again, SIGKILL it
# once >= 90% of the files are committed, time `... --resume`; verify both results.
# At BENCH_SCALE=1 the batch size is the default 1000 (100 commits over 100k files). A
# quick check has 1/SCALE of the files, so it scales the batch size down to keep about
# 100 commits per run, and polls faster: its runs are SCALE times shorter.
RESUME_BATCH=$((1000 / SCALE > 0 ? 1000 / SCALE : 1))
RESUME_POLL=$(python3 -c "print(max(0.001, 0.02 / $SCALE))")
RESUME_DB=$OUT/resume.db
say "resume: $RESUME_RUNS x (full run; run, SIGKILL at >= 90% committed, time --resume; verify)"
python3 benches/resume_bench.py --bin "$BIN" --tree "$SMALL100K" --db "$RESUME_DB" \
    --runs "$RESUME_RUNS" --warmup 1 --kill-at 0.9 --poll "$RESUME_POLL" \
    --batch-size "$RESUME_BATCH" --out "$OUT/resume.json" ||
    die "kill-and-resume benchmark failed (see above)"
rm -f "$RESUME_DB"*

# --- 3f2. per-item overhead: a process per file, exec:true vs xargs -n1 vs GNU parallel ------
# One `true` per file of the big tree (2,000 files): what is timed is starting processes,
# which is what the exec processor adds to a run. GNU parallel documents 3-10 ms of its
# own per job.
say "per-item overhead: exec:true vs xargs -n1 -P$NPROC true vs parallel -j$NPROC true ($BIG)"
"${HF[@]}" --export-json "$OUT/hf-exec.json" \
    "$BIN files $BIG -q -p exec:true $HASH_SINK -w $NPROC" \
    "find $BIG -type f -print0 | xargs -0 -n1 -P$NPROC true" \
    "find $BIG -type f -print0 | parallel -0 -j$NPROC true"

# --- 3f3. the pool library: its own overhead (1,000,000 no-op items, memory flat vs 100,000),
# against rayon, its cancel latency, its async map against buffer_unordered (pool_rows above)
pool_rows

# --- 3h. the queue source from pgmq and NATS JetStream, against a plain consumer (queue_rows above)
if [[ $QUEUE == 1 ]]; then run_queue_rows; fi

# --- 3g. database rows: 1,000,000/SCALE rows from SQLite into Postgres and SQLite -----------
# The same batchproc command (default batch size) against pgloader (SQLite -> Postgres),
# psql \copy of the rows as CSV (the floor of a Postgres load) and sqlite3 .import of the
# CSV (the floor of a SQLite load). Every target starts empty: hyperfine --prepare drops
# and creates the database (or deletes the file) before every run, and pre-creates the
# table for the CSV peers. Each target is checked once, row by row against the source
# (benches/db_verify.py), before it is timed.
if [[ $DB == 1 ]]; then
    cpu_mark "$OUT/cpu-db-start.txt"
    $PSQL -d postgres -c 'SELECT 1' >/dev/null ||
        die "cannot reach Postgres at $PG_HOST:$PG_PORT as $PG_USER (set BENCH_PG_*, or BENCH_DB=0 to skip the database rows)"
    PG_SCHEMA='CREATE TABLE files (id BIGINT PRIMARY KEY, path TEXT, size BIGINT, mtime DOUBLE PRECISION, sha256 TEXT, count BIGINT)'
    SQLITE_SCHEMA='CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT, size INTEGER, mtime REAL, sha256 TEXT, count INTEGER)'
    fresh_db() { # database: a command that drops and creates it
        echo "$PSQL -d postgres -c 'DROP DATABASE IF EXISTS $1' -c 'CREATE DATABASE $1'"
    }
    BP_QUERY="$BIN query --from sqlite:$ROWS_DB --sql 'SELECT * FROM files' --key id -q"
    BP_PG="$BP_QUERY --sink $PG_URL/bench_db_bp -t files"
    # pgloader's default casts map SQLite REAL to Postgres real (float4), which keeps
    # 6-7 digits: mtime 1609010024.418321 arrives as 1609010000. The cast rule keeps the
    # doubles (float = double precision), as the other targets do.
    PGLOADER="pgloader --cast 'type real to float using float-to-string' sqlite://$PWD/$ROWS_DB postgresql://$PG_USER@$PG_HOST:$PG_PORT/bench_db_pgloader"
    PSQL_COPY="$PSQL -d bench_db_copy -c \"\\copy files FROM '$ROWS_CSV' WITH (FORMAT csv)\""
    PREP_BP=$(fresh_db bench_db_bp)
    PREP_PGLOADER=$(fresh_db bench_db_pgloader)
    PREP_COPY="$(fresh_db bench_db_copy) && $PSQL -d bench_db_copy -c '$PG_SCHEMA'"
    BP_SQLITE="$BP_QUERY --sink sqlite:$OUT/db-out.db -t files"
    SQLITE_IMPORT="sqlite3 $OUT/db-import.db '.mode csv' '.import $ROWS_CSV files'"
    PREP_BP_SQLITE="rm -f $OUT/db-out.db*"
    PREP_IMPORT="rm -f $OUT/db-import.db* && sqlite3 $OUT/db-import.db '$SQLITE_SCHEMA'"

    verify() { # name prepare command target [db_verify options...]
        local name=$1 prep=$2 cmd=$3 target=$4
        shift 4
        echo "bench: checking $name: $cmd" >&2
        bash -c "$prep" >"$OUT/db-$name.log" 2>&1 || die "preparing $name failed (see $OUT/db-$name.log)"
        bash -c "$cmd" >>"$OUT/db-$name.log" 2>&1 || die "$name failed (see $OUT/db-$name.log)"
        python3 benches/db_verify.py --source "$ROWS_DB" --rows "$NROWS" --target "$target" "$@" \
            >"$OUT/db-verify-$name.json" || die "$name did not copy the $NROWS rows (see above)"
    }
    DB_HF=(hyperfine --warmup "$DB_WARMUP" --min-runs "$DB_MIN_RUNS")

    say "SQLite -> Postgres, $NROWS rows: batchproc vs pgloader vs psql \\copy"
    verify bp-pg "$PREP_BP" "$BP_PG" "$PG_URL/bench_db_bp" --runs
    verify pgloader "$PREP_PGLOADER" "$PGLOADER" "$PG_URL/bench_db_pgloader"
    verify psql-copy "$PREP_COPY" "$PSQL_COPY" "$PG_URL/bench_db_copy"
    "${DB_HF[@]}" --export-json "$OUT/hf-db-pg.json" \
        --prepare "$PREP_BP" --prepare "$PREP_PGLOADER" --prepare "$PREP_COPY" \
        "$BP_PG" "$PGLOADER" "$PSQL_COPY"

    say "SQLite sink, $NROWS rows: batchproc vs sqlite3 .import"
    verify bp-sqlite "$PREP_BP_SQLITE" "$BP_SQLITE" "sqlite:$OUT/db-out.db" --runs
    # sqlite3's text-to-double conversion is not always correctly rounded: a few mtimes
    # land one unit in the last place away from the source's (db_verify counts them).
    verify sqlite-import "$PREP_IMPORT" "$SQLITE_IMPORT" "sqlite:$OUT/db-import.db" --float-ulps 1
    "${DB_HF[@]}" --export-json "$OUT/hf-db-sqlite.json" \
        --prepare "$PREP_BP_SQLITE" --prepare "$PREP_IMPORT" \
        "$BP_SQLITE" "$SQLITE_IMPORT"

    {
        echo "# hyperfine --prepare, before every run of the next command: $PREP_BP"
        echo "$BP_PG"
        echo "# hyperfine --prepare: $PREP_PGLOADER"
        echo "$PGLOADER"
        echo "# hyperfine --prepare: $PREP_COPY"
        echo "$PSQL_COPY"
        echo "# hyperfine --prepare: $PREP_BP_SQLITE"
        echo "$BP_SQLITE"
        echo "# hyperfine --prepare: $PREP_IMPORT"
        echo "$SQLITE_IMPORT"
    } >"$OUT/db-commands.txt"
fi
cpu_mark "$OUT/cpu-end.txt"
if [[ $DB == 1 ]]; then
    for d in bench_db_bp bench_db_pgloader bench_db_copy; do
        $PSQL -d postgres -c "DROP DATABASE IF EXISTS $d" || true
    done
    rm -f "$OUT"/db-out.db* "$OUT"/db-import.db*
fi

# --- 4. table + bench-data/results.md (report, above) -----------------------------------------
report
