//! Helpers shared by the integration tests: running the real binary, reading
//! the SQLite file it wrote, and oracles computed by other tools.
#![allow(dead_code)]

pub mod http;
pub mod nats;
pub mod pg;
pub mod pgmq;
pub mod queue;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::process::Command as StdCommand;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, SqliteConnection};

/// The batchproc binary, run in `dir` (so a default `batchproc.db` lands
/// there). Without the caller's `RUST_LOG`, which would add log lines to
/// the stderr tests compare.
pub fn batchproc(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("batchproc").unwrap();
    cmd.current_dir(dir).env_remove("RUST_LOG");
    cmd
}

/// The binary as an ordinary user meets file permissions. As root, it runs
/// without the capabilities that bypass them (CAP_DAC_OVERRIDE and
/// CAP_DAC_READ_SEARCH, dropped with util-linux's `setpriv`), so a mode-000
/// file is unreadable to it too and a permission test means the same as
/// root as it does for anyone else.
pub fn batchproc_unprivileged(dir: &Path) -> assert_cmd::Command {
    let bin = assert_cmd::cargo::cargo_bin("batchproc");
    let mut cmd = if rustix::process::geteuid().is_root() {
        let caps = "-dac_override,-dac_read_search";
        let mut cmd = assert_cmd::Command::new("setpriv");
        cmd.arg(format!("--bounding-set={caps}"))
            .arg(format!("--inh-caps={caps}"))
            .arg(bin);
        cmd
    } else {
        assert_cmd::Command::new(bin)
    };
    cmd.current_dir(dir);
    cmd
}

/// Another program's SQLite session on `db`: runs `statements` (say, one
/// that takes a lock), then holds on until [`release`]d.
pub fn hold_sqlite(db: &Path, statements: &[&str]) -> Child {
    use std::process::Stdio;
    let mut holder = StdCommand::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)\n\
             for s in sys.argv[2:]: c.execute(s)\n\
             print('held', flush=True); sys.stdin.read()",
        )
        .arg(db)
        .args(statements)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    holder
}

/// Ends a [`hold_sqlite`] session.
/// Another program holding `db` (made if missing) with an exclusive lock,
/// a write in flight: a run against it must be refused with exit 75.
pub fn hold_sqlite_exclusively(db: &Path) -> Child {
    hold_sqlite(
        db,
        &[
            "CREATE TABLE t (x)",
            "BEGIN EXCLUSIVE",
            "INSERT INTO t VALUES (1)",
        ],
    )
}

pub fn release(mut holder: Child) {
    drop(holder.stdin.take());
    holder.wait().unwrap();
}

/// Runs `cmd` (batchproc, say) to its end and returns its peak resident
/// memory in bytes, from wait4; it must exit 0.
pub fn peak_rss(cmd: &mut StdCommand) -> usize {
    // Reaped by wait4 below, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    usage.ru_maxrss as usize * 1024
}

/// `query` over the table `t` of `src.db` (in the run's directory), keyed
/// by `id`: the start of many tests' command lines.
pub const QUERY_T: [&str; 7] = [
    "query",
    "--from",
    "sqlite:src.db",
    "--sql",
    "SELECT * FROM t",
    "--key",
    "id",
];

/// `files d` with a 50 ms sleep per file on two workers: over the 40
/// files of a [`hashed_tree`], at least a second however fast the machine
/// (for runs that must outlast a `--max-runtime`).
pub const SLOW_FILES: [&str; 8] = [
    "files",
    "d",
    "-p",
    "sha256",
    "-p",
    "exec:sleep 0.05",
    "-w",
    "2",
];

/// The same binary as a std Command, for tests that signal the process.
pub fn batchproc_std(dir: &Path) -> StdCommand {
    let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("batchproc"));
    cmd.current_dir(dir).env_remove("RUST_LOG");
    cmd
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Runs `sql` on the SQLite file at `db` and returns all rows.
pub fn query(db: &Path, sql: &str) -> Vec<SqliteRow> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Not read-only: after a SIGKILL the first reader must recover the
        // WAL, which SQLite refuses on a read-only connection.
        let opts = SqliteConnectOptions::new().filename(db);
        let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        rows
    })
}

/// Runs statements (separated by `;`) on the SQLite file at `db`, creating it.
pub fn execute(db: &Path, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = SqliteConnectOptions::new()
            .filename(db)
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    })
}

/// `batchproc runs --json` of `sink`, newest first.
pub fn runs_json(dir: &Path, sink: &str) -> Vec<serde_json::Value> {
    let out = batchproc(dir)
        .args(["runs", "--json", "-o", sink])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `SELECT count(*)` of a table.
pub fn count(db: &Path, table: &str) -> i64 {
    use sqlx::Row;
    query(db, &format!("SELECT count(*) AS n FROM \"{table}\""))[0].get("n")
}

/// Parses an oracle file of `VALUE  ./path` or `VALUE ./path` lines (the
/// output of sha256sum, b3sum, `wc -l`) into path -> value, with the leading
/// `./` removed.
pub fn oracle(file: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
    text.lines()
        .map(|line| {
            let (value, path) = line.split_once(' ').unwrap();
            let path = path.trim_start_matches(['*', ' ']);
            (path.trim_start_matches("./").to_owned(), value.to_owned())
        })
        .collect()
}

/// SHA-256 of a file's content by coreutils' `sha256sum` (read from stdin,
/// so odd file names never reach its output).
pub fn sha256sum(path: &Path) -> String {
    let out = StdCommand::new("sha256sum")
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// Writes `n` small CSV files named `f00000.csv`… under `dir`; returns their paths.
pub fn many_csv_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let path = dir.join(format!("f{i:05}.csv"));
            std::fs::write(&path, format!("a,b\n{i},x\n")).unwrap();
            path
        })
        .collect()
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `files` files of varied sizes over 8 directories under `root/d`, and
/// their digests by sha256sum (path as walked -> digest).
pub fn hashed_tree(root: &Path, files: usize) -> BTreeMap<String, String> {
    let d = root.join("d");
    let mut oracle = BTreeMap::new();
    for i in 0..files {
        let sub = d.join(format!("s{}", i % 8));
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join(format!("f{i:05}.txt"));
        std::fs::write(&path, format!("file {i}\n").repeat(i % 97)).unwrap();
        oracle.insert(format!("d/s{}/f{i:05}.txt", i % 8), String::new());
    }
    let out = std::process::Command::new("sh")
        .current_dir(root)
        .arg("-c")
        .arg("find d -type f -print0 | xargs -0 sha256sum")
        .output()
        .unwrap();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (sum, path) = line.split_once("  ").unwrap();
        oracle.insert(path.to_owned(), sum.to_owned());
    }
    assert_eq!(oracle.len(), files);
    oracle
}

/// Waits `delay`, then SIGKILLs the child and reaps it; true if it had ended
/// by itself first. The exit status tells: a check made before the kill
/// would miss a run that ends between that check and the kill.
pub fn sigkill_after(mut child: Child, delay: Duration) -> bool {
    use std::os::unix::process::ExitStatusExt;
    std::thread::sleep(delay);
    // The child is not reaped before the wait below, so its pid is still its own.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap().signal() != Some(libc::SIGKILL)
}

/// `PRAGMA integrity_check` of the SQLite file `db` says ok (`ctx` tells
/// where, when it does not).
pub fn integrity_ok(db: &Path, ctx: &str) {
    use sqlx::Row;
    let integrity: String = query(db, "PRAGMA integrity_check")[0].get(0);
    assert_eq!(integrity, "ok", "{ctx}: {}", db.display());
}

/// Whether the newest run recorded in the SQLite file `db` succeeded.
pub fn last_run_succeeded(db: &Path) -> bool {
    use sqlx::Row;
    // Killed early, a run may not have created its bookkeeping yet.
    let has_runs = || {
        !query(
            db,
            "SELECT 1 FROM sqlite_master WHERE name = 'batchproc_runs'",
        )
        .is_empty()
    };
    db.exists()
        && has_runs()
        && query(
            db,
            "SELECT status FROM batchproc_runs ORDER BY id DESC LIMIT 1",
        )
        .first()
        .is_some_and(|r| r.get::<String, _>(0) == "succeeded")
}

/// Starts `spawn(resume)` once per delay (fresh the first time, resuming
/// after) and SIGKILLs it after that many milliseconds; stops early when an
/// attempt finished. `after_kill` runs after each attempt and says whether
/// the sink records the run as succeeded: a kill can land after the run
/// committed its end but before the process exited, and a `--resume` then
/// rightly starts a new run. Returns how many kills landed mid-run and
/// whether an attempt finished.
pub fn kill_repeatedly(
    spawn: impl Fn(bool) -> Child,
    delays_ms: &[u64],
    mut after_kill: impl FnMut() -> bool,
) -> (usize, bool) {
    let mut kills = 0;
    for (i, ms) in delays_ms.iter().enumerate() {
        let ended = sigkill_after(spawn(i > 0), Duration::from_millis(*ms));
        if after_kill() || ended {
            return (kills, true);
        }
        kills += 1;
    }
    (kills, false)
}

/// Runs batchproc in a scratch dir holding `d/a.txt` and checks a usage
/// error: exit 2, `needle` in the message, no panic, nothing written.
pub fn assert_usage_error(args: &[&str], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a.txt"), "x").unwrap();
    let out = batchproc(tmp.path()).args(args).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(!tmp.path().join("batchproc.db").exists(), "{args:?} ran");
}

/// Runs the shell `command` on a terminal (a pseudo-terminal from
/// util-linux's `script`) in `dir`, with `env` set and `RUST_LOG` and
/// `NO_COLOR` unset unless given there; whether it succeeded, and what the
/// terminal showed. None, said loudly, where there is no `script`.
pub fn on_terminal(dir: &Path, command: &str, env: &[(&str, &str)]) -> Option<(bool, String)> {
    if StdCommand::new("script").arg("--version").output().is_err() {
        eprintln!("\n*** SKIPPED: no `script` to run batchproc on a terminal ***\n");
        return None;
    }
    let mut cmd = StdCommand::new("script");
    cmd.args(["-qec", command, "/dev/null"])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    Some((out.status.success(), screen))
}

/// The paths an `exec:` logger script appended to `log.txt` in `dir` since
/// the last call, sorted; the log starts over.
pub fn logged_paths(dir: &Path) -> Vec<String> {
    let log = dir.join("log.txt");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let mut paths: Vec<String> = text.lines().map(String::from).collect();
    paths.sort();
    paths
}
