//! Crash coverage: every source (a files walk, a query on SQLite, a query on
//! Postgres) into every sink (SQLite, CSV, Postgres), SIGKILLed at
//! pseudo-random points spread over a whole run, then resumed to the end.
//!
//! Each cell first makes an uninterrupted reference run (checked against
//! sha256sum for the files source) and times it. It then plays rounds, each
//! on a fresh sink: a fresh attempt and `--resume` attempts, each killed
//! after a delay drawn from [0, reference duration], until one finishes or
//! the sink records the run as ended; then a last `--resume` to the end.
//! Rounds go on until `BATCHPROC_CRASH_KILLS` kills (default 6; `make
//! test-crash` asks for 50) landed on an unfinished run.
//!
//! After every kill: `PRAGMA integrity_check` is ok (the SQLite sink, the
//! CSV sink's state file) and what the sink holds is exactly what its runs
//! counted (the rows, or the CSV records up to the committed length, equal
//! `ok + failed`: the count is bumped in the same transaction). At the end
//! of every round: one run, succeeded, `ok` equal to the item count, no
//! checkpoint rows left, every item exactly once, and every value equal to
//! the reference run's.
//!
//! The delays come from a seeded PRNG: `BATCHPROC_CRASH_SEED` (printed in
//! every failure) replays a failed sequence of delays. Where a kill lands in
//! the run still depends on the machine's speed, so nothing here asserts a
//! timing: each check holds whatever point a kill hits.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

use common::pg::{fresh_db, PgDb};
use common::*;
use sqlx::Row;

/// Files the files source walks, and its `--batch-size`.
const FILES: usize = 600;
const FILES_BATCH: usize = 15;
/// Rows of the query sources' `docs` table, and their `--batch-size`.
const ROWS: usize = 2000;
const ROWS_BATCH: usize = 10;
/// Items that take long: a few sparse files of 64 MiB, every 100th row a
/// text of 256 KiB to hash. Items after them finish first and, once 16
/// batches' worth are waiting, are committed ahead of the watermark, so
/// kills also land while checkpoint rows beyond it are in use.
const SLOW_FILES: usize = 4;
const SLOW_FILE_BYTES: u64 = 64 << 20;
const SLOW_ROWS_EVERY: usize = 100;
const SLOW_ROW_BYTES: usize = 1 << 18;
/// How long each checkpoint transaction is held open, so kills land inside commits.
const COMMIT_DELAY_MS: &str = "10";

/// Kill points per cell: `BATCHPROC_CRASH_KILLS`, default 6.
fn kills_wanted() -> usize {
    std::env::var("BATCHPROC_CRASH_KILLS")
        .ok()
        .map(|k| k.parse().expect("BATCHPROC_CRASH_KILLS is a number"))
        .unwrap_or(6)
}

/// `BATCHPROC_CRASH_SEED` (decimal or 0x-hex), or one from the clock.
fn base_seed() -> u64 {
    match std::env::var("BATCHPROC_CRASH_SEED") {
        Ok(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .expect("BATCHPROC_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// SplitMix64: small, seeded, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    /// A stream of its own for each cell, from the base seed and the cell's name.
    fn for_cell(seed: u64, cell: &str) -> Self {
        let mut rng = Rng(seed);
        for b in cell.bytes() {
            rng.0 ^= rng.next() ^ u64::from(b);
        }
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max].
    fn up_to(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

#[derive(Clone, Copy, Debug)]
enum SourceKind {
    Files,
    SqliteQuery,
    PostgresQuery,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SinkKind {
    Sqlite,
    Csv,
    Postgres,
}

/// The `docs` columns both query sources read: NULLs, unicode, quotes,
/// newlines, bytes and floats.
const DOCS_SQL: &str = "SELECT id, name, body, data, score FROM docs";

/// A source made in `dir`: its arguments, key column and sink table, the
/// keys it yields, and (files) the sha256sum of each.
struct Source {
    args: Vec<String>,
    key: &'static str,
    table: &'static str,
    keys: Vec<String>,
    batch_size: String,
    sha256sum: BTreeMap<String, String>,
    /// The Postgres source's database, dropped with the source.
    _db: Option<PgDb>,
}

impl Source {
    fn make(kind: SourceKind, dir: &Path) -> Option<Source> {
        let query_args = |from: &str| -> Vec<String> {
            [
                "query",
                "--from",
                from,
                "--sql",
                DOCS_SQL,
                "--key",
                "id",
                "-p",
                "sha256:body",
                "--page-size",
                "64",
            ]
            .map(String::from)
            .to_vec()
        };
        let ids: Vec<String> = (1..=ROWS).map(|i| i.to_string()).collect();
        Some(match kind {
            SourceKind::Files => {
                let mut sha256sum = hashed_tree(dir, FILES - SLOW_FILES);
                for i in 0..SLOW_FILES {
                    // Sparse: long to hash, no room on disk.
                    let path = format!("d/s{}/slow{i:02}.bin", i % 8);
                    let file = std::fs::File::create(dir.join(&path)).unwrap();
                    file.set_len(SLOW_FILE_BYTES + i as u64).unwrap();
                    sha256sum.insert(path.clone(), common::sha256sum(&dir.join(&path)));
                }
                Source {
                    args: ["files", "d", "-p", "sha256"].map(String::from).to_vec(),
                    key: "path",
                    table: "files",
                    keys: sha256sum.keys().cloned().collect(),
                    batch_size: FILES_BATCH.to_string(),
                    sha256sum,
                    _db: None,
                }
            }
            SourceKind::SqliteQuery => {
                execute(
                    &dir.join("src.db"),
                    &format!(
                        "CREATE TABLE docs (id INTEGER PRIMARY KEY, name TEXT, body TEXT, data BLOB, score REAL); \
                         INSERT INTO docs WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
                         SELECT i, CASE WHEN i % 13 = 0 THEN NULL ELSE 'name-' || i END, \
                         CASE WHEN i % {SLOW_ROWS_EVERY} = 50 THEN printf('%.*c', {SLOW_ROW_BYTES}, 'x') \
                         WHEN i % 10 = 0 THEN NULL ELSE 'body ' || i || ' ünïcödé ✓' || char(10) || 'line \"two\", with comma' END, \
                         unhex(printf('%02x00ff', i % 256)), i / 7.0 FROM n;"
                    ),
                );
                Source {
                    args: query_args("sqlite:src.db"),
                    key: "id",
                    table: "rows",
                    keys: ids.clone(),
                    batch_size: ROWS_BATCH.to_string(),
                    sha256sum: BTreeMap::new(),
                    _db: None,
                }
            }
            SourceKind::PostgresQuery => {
                let db = fresh_db()?;
                db.execute(&format!(
                    "CREATE TABLE docs (id BIGINT PRIMARY KEY, name TEXT, body TEXT, data BYTEA, score DOUBLE PRECISION); \
                     INSERT INTO docs SELECT g, CASE WHEN g % 13 = 0 THEN NULL ELSE 'name-' || g END, \
                     CASE WHEN g % {SLOW_ROWS_EVERY} = 50 THEN repeat('x', {SLOW_ROW_BYTES}) \
                     WHEN g % 10 = 0 THEN NULL ELSE 'body ' || g || ' ünïcödé ✓' || chr(10) || 'line \"two\", with comma' END, \
                     decode(lpad(to_hex(g % 256), 2, '0') || '00ff', 'hex'), g / 7.0 FROM generate_series(1, {ROWS}) g;"
                ));
                Source {
                    args: query_args(&db.url),
                    key: "id",
                    table: "rows",
                    keys: ids.clone(),
                    batch_size: ROWS_BATCH.to_string(),
                    sha256sum: BTreeMap::new(),
                    _db: Some(db),
                }
            }
        })
    }
}

/// A run's bookkeeping row.
struct RunRow {
    status: String,
    ok: i64,
    failed: i64,
    csv_length: Option<i64>,
}

/// One sink the runs write to: `NAME.db`, `NAME.csv` (with
/// `NAME.csv.state.db`) in `dir`, or a fresh Postgres database.
struct Sink {
    kind: SinkKind,
    path: PathBuf,
    pg: Option<PgDb>,
    table: &'static str,
    key: &'static str,
}

impl Sink {
    /// None when Postgres is unreachable (and the test skipped, as `fresh_db` says).
    fn new(kind: SinkKind, dir: &Path, name: &str, source: &Source) -> Option<Sink> {
        let (path, pg) = match kind {
            SinkKind::Sqlite => (dir.join(format!("{name}.db")), None),
            SinkKind::Csv => (dir.join(format!("{name}.csv")), None),
            SinkKind::Postgres => (PathBuf::new(), Some(fresh_db()?)),
        };
        Some(Sink {
            kind,
            path,
            pg,
            table: source.table,
            key: source.key,
        })
    }

    fn spec(&self) -> String {
        match (&self.pg, self.kind) {
            (Some(pg), _) => pg.url.clone(),
            (None, SinkKind::Csv) => format!("csv:{}", self.path.display()),
            (None, _) => format!("sqlite:{}", self.path.display()),
        }
    }

    /// The SQLite file holding the runs: the sink's database or the CSV's state file.
    fn state_db(&self) -> Option<PathBuf> {
        match self.kind {
            SinkKind::Sqlite => Some(self.path.clone()),
            SinkKind::Csv => {
                let mut name = self.path.clone().into_os_string();
                name.push(".state.db");
                Some(name.into())
            }
            SinkKind::Postgres => None,
        }
    }

    /// Waits until a killed run's Postgres session is gone: until then the
    /// server may still commit what the client sent before it died.
    fn settle(&self) {
        if let Some(pg) = &self.pg {
            pg.wait_for_other_sessions_to_end();
        }
    }

    fn integrity_ok(&self, ctx: &str) {
        if let Some(db) = self.state_db().filter(|db| db.exists()) {
            integrity_ok(&db, ctx);
        }
    }

    /// Whether the sink has a table called `name` (none before a run made it).
    fn has_table(&self, name: &str) -> bool {
        match (&self.pg, self.state_db()) {
            (Some(pg), _) => pg.query(&format!("SELECT to_regclass('\"{name}\"') IS NOT NULL"))[0]
                .get::<bool, _>(0),
            (None, Some(db)) => {
                db.exists()
                    && !query(
                        &db,
                        &format!("SELECT 1 FROM sqlite_master WHERE name = '{name}'"),
                    )
                    .is_empty()
            }
            (None, None) => unreachable!("a sink without runs"),
        }
    }

    /// Every run recorded, oldest first.
    fn runs(&self) -> Vec<RunRow> {
        if !self.has_table("batchproc_runs") {
            return Vec::new();
        }
        let sql = "SELECT status, ok, failed, csv_length FROM batchproc_runs ORDER BY id";
        let row = |status, ok, failed, csv_length| RunRow {
            status,
            ok,
            failed,
            csv_length,
        };
        match (&self.pg, self.state_db()) {
            (Some(pg), _) => pg
                .query(sql)
                .iter()
                .map(|r| row(r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
            (None, Some(db)) => query(&db, sql)
                .iter()
                .map(|r| row(r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
            (None, None) => unreachable!("a sink without runs"),
        }
    }

    fn checkpoint_rows(&self) -> i64 {
        let sql = "SELECT count(*) FROM batchproc_checkpoints";
        match (&self.pg, self.state_db()) {
            (Some(pg), _) => pg.query(sql)[0].get(0),
            (None, Some(db)) => query(&db, sql)[0].get(0),
            (None, None) => unreachable!("a sink without runs"),
        }
    }

    /// The committed records, key -> every value as text; a key met twice fails.
    fn committed(&self, ctx: &str) -> BTreeMap<String, String> {
        match self.kind {
            SinkKind::Csv => {
                // Only what the last checkpoint covers: bytes past it are
                // an attempt's uncommitted tail, which a resume truncates.
                let length = self.runs().last().and_then(|r| r.csv_length);
                let Some(length) = length else {
                    return BTreeMap::new();
                };
                let bytes = std::fs::read(&self.path).unwrap();
                assert!(
                    bytes.len() as i64 >= length,
                    "{ctx}: the CSV has {} bytes, its checkpoint says {length}",
                    bytes.len()
                );
                csv_records(&bytes[..length as usize], self.key, ctx)
            }
            _ if !self.has_table(self.table) => BTreeMap::new(),
            SinkKind::Sqlite => sqlite_records(&self.path, self.table, self.key),
            SinkKind::Postgres => {
                let sql = format!(
                    "SELECT \"{key}\"::text, t::text FROM \"{table}\" t",
                    key = self.key,
                    table = self.table
                );
                let rows = self.pg.as_ref().unwrap().query(&sql);
                rows.iter().map(|r| (r.get(0), r.get(1))).collect()
            }
        }
    }

    /// After a kill: the files are sound and the sink holds exactly what
    /// its runs counted. Returns whether the run is recorded as succeeded.
    fn check_after_kill(&self, ctx: &str) -> bool {
        self.settle();
        self.integrity_ok(ctx);
        let runs = self.runs();
        let counted: i64 = runs.iter().map(|r| r.ok + r.failed).sum();
        let held = self.committed(ctx).len() as i64;
        assert_eq!(
            held, counted,
            "{ctx}: after a kill the sink holds {held} records but its runs counted {counted}"
        );
        runs.last().is_some_and(|r| r.status == "succeeded")
    }

    /// A finished run: one run, every item exactly once. Returns the records.
    fn check_finished(&self, items: usize, ctx: &str) -> BTreeMap<String, String> {
        self.settle();
        self.integrity_ok(ctx);
        let runs = self.runs();
        let summary: Vec<_> = runs.iter().map(|r| (&r.status, r.ok, r.failed)).collect();
        assert_eq!(runs.len(), 1, "{ctx}: runs {summary:?}");
        assert_eq!(
            (runs[0].status.as_str(), runs[0].ok, runs[0].failed),
            ("succeeded", items as i64, 0),
            "{ctx}: the run's ok count is not the item count (items committed twice or lost)"
        );
        assert_eq!(self.checkpoint_rows(), 0, "{ctx}: checkpoint rows left");
        if self.kind == SinkKind::Csv {
            // The whole file is committed: nothing past the last checkpoint.
            let length = std::fs::metadata(&self.path).unwrap().len() as i64;
            assert_eq!(Some(length), runs[0].csv_length, "{ctx}: CSV length");
        }
        let records = self.committed(ctx);
        assert_eq!(records.len(), items, "{ctx}: records in the sink");
        records
    }
}

/// SQLite `table`: key -> every column by `quote()`, in column order.
fn sqlite_records(db: &Path, table: &str, key: &str) -> BTreeMap<String, String> {
    let columns: Vec<String> = query(
        db,
        &format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
    )
    .iter()
    .map(|r| format!("quote(\"{}\")", r.get::<String, _>(0)))
    .collect();
    let sql = format!(
        "SELECT CAST(\"{key}\" AS TEXT), {} FROM \"{table}\"",
        columns.join(" || '|' || ")
    );
    query(db, &sql)
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A CSV file's records after its header: key -> every field (bytes
/// escaped); each key must appear once.
fn csv_records(bytes: &[u8], key: &str, ctx: &str) -> BTreeMap<String, String> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.byte_headers().unwrap().clone();
    let at = headers
        .iter()
        .position(|h| h == key.as_bytes())
        .unwrap_or_else(|| panic!("{ctx}: no column {key} in the CSV header"));
    let mut records = BTreeMap::new();
    for record in reader.byte_records() {
        let record = record.unwrap_or_else(|e| panic!("{ctx}: a broken CSV record: {e}"));
        let fields: Vec<String> = record
            .iter()
            .map(|f| f.escape_ascii().to_string())
            .collect();
        let previous = records.insert(fields[at].clone(), fields.join("|"));
        assert!(previous.is_none(), "{ctx}: {} written twice", fields[at]);
    }
    records
}

/// Asserts `found` equals `expected`, naming the first keys that differ.
fn assert_same_records(
    found: &BTreeMap<String, String>,
    expected: &BTreeMap<String, String>,
    ctx: &str,
) {
    if found == expected {
        return;
    }
    let lost: Vec<_> = expected
        .keys()
        .filter(|k| !found.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = found
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    let changed: Vec<_> = found
        .iter()
        .filter(|(k, v)| expected.get(*k).is_some_and(|e| e != *v))
        .take(3)
        .map(|(k, v)| format!("{k}: {v} (reference: {})", expected[k]))
        .collect();
    panic!("{ctx}: records differ from the reference run: lost {lost:?}, extra {extra:?}, changed {changed:?}");
}

/// One source into one sink, killed and resumed as the file's doc says.
fn crash_cell(source_kind: SourceKind, sink_kind: SinkKind) {
    let cell = format!("{source_kind:?} -> {sink_kind:?}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(source) = Source::make(source_kind, dir) else {
        return;
    };
    let items = source.keys.len();
    let log_path = |name: &str| dir.join(format!("{name}.log"));
    let spawn = |sink: &Sink, log: &Path, resume: bool| -> Child {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(log, "--- attempt{}", if resume { " --resume" } else { "" }).unwrap();
        let mut cmd = batchproc_std(dir);
        cmd.args(&source.args)
            .args([
                "-w",
                "4",
                "--batch-size",
                &source.batch_size,
                "-q",
                "--sink",
            ])
            .arg(sink.spec());
        if resume {
            cmd.arg("--resume");
        }
        cmd.env("BATCHPROC_TEST_COMMIT_DELAY_MS", COMMIT_DELAY_MS)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let read_log = |log: &Path| std::fs::read_to_string(log).unwrap_or_default();

    // The reference: uninterrupted, timed, checked against the oracles.
    let Some(reference_sink) = Sink::new(sink_kind, dir, "reference", &source) else {
        return;
    };
    let log = log_path("reference");
    let start = Instant::now();
    let status = spawn(&reference_sink, &log, false).wait().unwrap();
    let duration_ms = start.elapsed().as_millis() as u64;
    let ctx = format!("{cell}, reference run");
    assert!(status.success(), "{}{ctx}: failed", read_log(&log));
    let reference = reference_sink.check_finished(items, &ctx);
    drop(reference_sink);
    let keys: Vec<&String> = reference.keys().collect();
    let mut expected_keys: Vec<&String> = source.keys.iter().collect();
    expected_keys.sort();
    assert_eq!(keys, expected_keys, "{ctx}: keys");
    for (path, sum) in &source.sha256sum {
        assert!(
            reference[path].contains(sum),
            "{ctx}: {path} is not sha256sum's {sum}: {}",
            reference[path]
        );
    }

    let wanted = kills_wanted();
    let seed = base_seed();
    let mut rng = Rng::for_cell(seed, &cell);
    let mut kills = 0;
    let mut round = 0;
    while kills < wanted {
        round += 1;
        assert!(
            round <= 4 * wanted + 4,
            "{cell}: BATCHPROC_CRASH_SEED={seed:#x}: only {kills} kills landed mid-run in {round} rounds"
        );
        let name = format!("r{round}");
        let sink = Sink::new(sink_kind, dir, &name, &source).unwrap();
        let log = log_path(&name);
        let delays: Vec<u64> = (kills..wanted).map(|_| rng.up_to(duration_ms)).collect();
        let ctx = format!(
            "{cell}: BATCHPROC_CRASH_SEED={seed:#x} BATCHPROC_CRASH_KILLS={wanted} replays; \
             round {round}, kills after {delays:?} ms (a run takes {duration_ms} ms)"
        );
        let mut attempt = 0;
        let (landed, finished) = kill_repeatedly(
            |resume| spawn(&sink, &log, resume),
            &delays,
            || {
                attempt += 1;
                let ctx = format!("{}{ctx}, after attempt {attempt}", read_log(&log));
                sink.check_after_kill(&ctx)
            },
        );
        kills += landed;
        let ctx = format!("{ctx}, {landed} kills landed mid-run");
        if finished {
            // An attempt ended by itself or was killed after its end was committed.
            assert!(
                sink.runs().last().is_some_and(|r| r.status == "succeeded"),
                "{}{ctx}: an attempt ended without finishing its run",
                read_log(&log)
            );
        } else {
            let status = spawn(&sink, &log, true).wait().unwrap();
            assert!(
                status.success(),
                "{}{ctx}: the last --resume failed",
                read_log(&log)
            );
        }
        let log_text = read_log(&log);
        assert!(!log_text.contains("panicked"), "{log_text}{ctx}: a panic");
        let ctx = format!("{log_text}{ctx}");
        let records = sink.check_finished(items, &ctx);
        assert_same_records(&records, &reference, &ctx);
        // This round's files are done with; keep the temporary dir small.
        if let Some(db) = sink.state_db() {
            for suffix in ["", "-wal", "-shm"] {
                let mut name = db.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
        if sink.kind == SinkKind::Csv {
            std::fs::remove_file(&sink.path).unwrap();
        }
    }
    eprintln!(
        "{cell}: {kills} kills in {round} rounds of a {duration_ms} ms run, BATCHPROC_CRASH_SEED={seed:#x}"
    );
}

/// One test per cell of the matrix: source -> sink.
macro_rules! cells {
    ($($name:ident: $source:ident -> $sink:ident,)*) => {$(
        #[test]
        fn $name() {
            crash_cell(SourceKind::$source, SinkKind::$sink);
        }
    )*};
}

cells! {
    files_into_sqlite_survive_random_kills: Files -> Sqlite,
    files_into_csv_survive_random_kills: Files -> Csv,
    files_into_postgres_survive_random_kills: Files -> Postgres,
    sqlite_query_into_sqlite_survives_random_kills: SqliteQuery -> Sqlite,
    sqlite_query_into_csv_survives_random_kills: SqliteQuery -> Csv,
    sqlite_query_into_postgres_survives_random_kills: SqliteQuery -> Postgres,
    postgres_query_into_sqlite_survives_random_kills: PostgresQuery -> Sqlite,
    postgres_query_into_csv_survives_random_kills: PostgresQuery -> Csv,
    postgres_query_into_postgres_survives_random_kills: PostgresQuery -> Postgres,
}
