//! The `exec:` processor through the real binary: hostile file names reach
//! the command as bytes and are never interpreted, placeholders, exit
//! statuses, timeouts and cancellation that leave no process behind.
//! Expected values are the names the tests made, not batchproc's output.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// `path -> (exit_code, output, error)` from the SQLite sink, values as raw
/// bytes (a non-UTF-8 path or output is stored as a BLOB).
type Rows = std::collections::BTreeMap<Vec<u8>, (Option<i64>, Option<Vec<u8>>, Option<String>)>;

fn rows(db: &Path, key: &str) -> Rows {
    let conn = rusqlite::Connection::open(db).unwrap();
    let table = if key == "path" { "files" } else { "rows" };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {key}, exit_code, output, error FROM {table}"
        ))
        .unwrap();
    let bytes = |v: rusqlite::types::ValueRef| match v {
        rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => Some(b.to_vec()),
        rusqlite::types::ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        rusqlite::types::ValueRef::Null => None,
        other => panic!("unexpected {other:?}"),
    };
    stmt.query_map([], |r| {
        Ok((
            bytes(r.get_ref(0)?).unwrap(),
            (
                r.get(1)?,
                bytes(r.get_ref(2)?),
                r.get::<_, Option<String>>(3)?,
            ),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Names a shell would expand, split or choke on, and one that is not UTF-8.
fn nasty_names() -> Vec<Vec<u8>> {
    [
        &b"with space"[..],
        b"quote's \"double\"",
        b"$(touch pwned)",
        b"`touch pwned`",
        b"-leading-dash",
        b"new\nline",
        b"semi;touch pwned",
        b"star*?[a]",
        b"back\\slash",
        b"{}",
        b"latin1-\xe9\xff",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect()
}

fn nasty_tree(root: &Path) -> Vec<Vec<u8>> {
    let d = root.join("d");
    std::fs::create_dir(&d).unwrap();
    let names = nasty_names();
    for name in &names {
        std::fs::write(d.join(OsStr::from_bytes(name)), b"x").unwrap();
    }
    names
}

/// No file named `pwned` anywhere under `root`: nothing was run by a shell.
fn assert_nothing_ran(root: &Path) {
    let out = std::process::Command::new("find")
        .arg(root)
        .args(["-name", "pwned"])
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn hostile_names_reach_the_command_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let names = nasty_tree(tmp.path());
    batchproc(tmp.path())
        .args(["files", "d", "-q", "-w", "2", "-p", "exec:printf %s {}"])
        .assert()
        .success();
    let got = rows(&tmp.path().join("batchproc.db"), "path");
    assert_eq!(got.len(), names.len());
    for name in &names {
        let path = [&b"d/"[..], name].concat();
        let (code, output, error) = &got[&path];
        assert_eq!(*code, Some(0), "{}", String::from_utf8_lossy(&path));
        assert_eq!(
            output.as_deref(),
            Some(&path[..]),
            "{}",
            String::from_utf8_lossy(&path)
        );
        assert_eq!(*error, None);
    }
    assert_nothing_ran(tmp.path());
}

#[test]
fn name_and_dir_placeholders_also_inside_an_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let names = nasty_tree(tmp.path());
    batchproc(tmp.path())
        .args(["files", "d", "-q", "-p", "exec:printf %s {name} <{dir}>"])
        .assert()
        .success();
    let got = rows(&tmp.path().join("batchproc.db"), "path");
    for name in &names {
        let path = [&b"d/"[..], name].concat();
        // printf reuses its format: the name, then "<d>" glued on.
        let expected = [&name[..], b"<d>"].concat();
        assert_eq!(
            got[&path].1.as_deref(),
            Some(&expected[..]),
            "{}",
            String::from_utf8_lossy(&path)
        );
    }
    assert_nothing_ran(tmp.path());
}

#[test]
fn a_failing_command_fails_the_item_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a"), "").unwrap();
    std::fs::write(tmp.path().join("d/b"), "").unwrap();
    let script =
        "exec:sh -c 'echo \"out of $1\"; echo \"bad thing: $1\" >&2; echo more >&2; exit 3' sh {}";

    // Fail-fast: exit 1, the error names the item and quotes stderr's first line.
    let out = batchproc(tmp.path())
        .args(["files", "d", "-q", "-w", "1", "-p", script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("d/a: exit status 3: bad thing: d/a"), "{err}");

    // Skip: every row keeps the exit code and output next to the error.
    let out = batchproc(tmp.path())
        .args(["files", "d", "-q", "--on-error", "skip", "-p", script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let got = rows(&tmp.path().join("batchproc.db"), "path");
    for path in ["d/a", "d/b"] {
        let (code, output, error) = &got[path.as_bytes()];
        assert_eq!(*code, Some(3));
        assert_eq!(output.as_deref(), Some(format!("out of {path}").as_bytes()));
        assert_eq!(
            error.as_deref(),
            Some(format!("exit status 3: bad thing: {path}").as_str())
        );
    }
}

#[test]
fn a_command_killed_by_a_signal_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a"), "").unwrap();
    batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-q",
            "--on-error",
            "skip",
            "-p",
            "exec:sh -c 'kill -9 $$'",
        ])
        .assert()
        .code(1);
    let got = rows(&tmp.path().join("batchproc.db"), "path");
    let (code, _, error) = &got[&b"d/a"[..]];
    assert_eq!(*code, None);
    assert_eq!(error.as_deref(), Some("killed by signal 9"));
}

#[test]
fn bad_commands_are_configuration_errors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a"), "").unwrap();
    for (spec, says) in [
        ("exec:no-such-program-xyz {}", "no-such-program-xyz"),
        ("exec:echo 'unbalanced", "quotes"),
        ("exec:echo {foo}", "{foo}"),
        ("exec:", "needs a command"),
    ] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-q", "-p", spec])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains(says), "{spec}: {err}");
        assert_eq!(err.lines().count(), 1, "{spec}: {err}");
    }
    // Two exec processors would write the same columns.
    let out = batchproc(tmp.path())
        .args(["files", "d", "-q", "-p", "exec:true", "-p", "exec:false"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(!tmp.path().join("batchproc.db").exists());
}

#[test]
fn a_program_that_vanishes_fails_the_item_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a"), "").unwrap();
    // The program comes from the item, so only the run can find it missing.
    let out = batchproc(tmp.path())
        .args(["files", "d", "-q", "-p", "exec:{dir}/nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("d/a: cannot run \"d/nope\": No such file or directory"),
        "{err}"
    );
}

#[test]
fn long_output_is_capped_and_the_command_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a"), "").unwrap();
    // About 575 KB: far beyond a pipe buffer and the cap.
    batchproc(tmp.path())
        .args(["files", "d", "-q", "-p", "exec:seq 100000"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let got = rows(&tmp.path().join("batchproc.db"), "path");
    let output = String::from_utf8(got[&b"d/a"[..]].1.clone().unwrap()).unwrap();
    assert!(output.starts_with("1\n2\n3\n"), "{}", &output[..20]);
    assert!(output.len() < 70_000, "{}", output.len());
    let expected_total = (1..=100000)
        .map(|i: u32| i.to_string().len() + 1)
        .sum::<usize>();
    assert!(
        output.ends_with(&format!("of {expected_total} bytes]")),
        "{}",
        &output[output.len() - 80..]
    );
}

/// Processes whose command line has `marker` as an argument.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == marker.as_bytes()) {
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

#[test]
fn a_timeout_kills_the_command_and_what_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(tmp.path().join("d").join(name), "").unwrap();
    }
    let started = Instant::now();
    // A background sleep in the command's process group, and a foreground one.
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-q",
            "-w",
            "3",
            "--on-error",
            "skip",
            "--timeout",
            "1s",
            "-p",
            "exec:sh -c 'sleep 30.101 & sleep 30.102'",
        ])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(took < Duration::from_secs(15), "{took:?}");
    let got = rows(&tmp.path().join("batchproc.db"), "path");
    assert_eq!(got.len(), 3);
    for (_, (code, _, error)) in got {
        assert_eq!(code, None);
        assert_eq!(error.as_deref(), Some("timed out after 1s"));
    }
    for marker in ["30.101", "30.102"] {
        assert_eq!(processes_with(marker), Vec::<String>::new());
    }
}

#[test]
fn a_timeout_also_stops_a_long_read() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    // Sparse: hashing it takes far longer than the timeout.
    let big = std::fs::File::create(tmp.path().join("d/big.bin")).unwrap();
    big.set_len(64 << 30).unwrap();
    let started = Instant::now();
    let out = batchproc(tmp.path())
        .args(["files", "d", "-q", "--timeout", "500ms", "-p", "sha256"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(started.elapsed() < Duration::from_secs(15));
    let err = stderr_of(&out);
    assert!(err.contains("d/big.bin: timed out after 500ms"), "{err}");
}

#[test]
fn bad_timeouts_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    for bad in ["0s", "soon", "-1s"] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-p", "exec:true", "--timeout", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr_of(&out));
    }
}

#[test]
fn sigint_kills_running_commands() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    for name in ["a", "b", "c", "d"] {
        std::fs::write(tmp.path().join("d").join(name), "").unwrap();
    }
    let mut child = batchproc_std(tmp.path())
        .args(["files", "d", "-q", "-w", "2", "-p", "exec:sleep 30.103"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while processes_with("30.103").len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "commands never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("still running 15 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(processes_with("30.103"), Vec::<String>::new());
    // Abandoned items leave no rows: a resume runs them.
    assert_eq!(count(&tmp.path().join("batchproc.db"), "files"), 0);
}

#[test]
fn query_rows_fill_column_placeholders() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.db");
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n REAL)')\n\
             c.executemany('INSERT INTO t VALUES (?, ?, ?)', [(1, 'one $(touch pwned)', 1.5), (2, None, 2.0), (3, 'three', None)])\n\
             c.commit()",
        )
        .arg(&src)
        .status()
        .unwrap();
    assert!(made.success());
    batchproc(tmp.path())
        .args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            "SELECT id, name, n FROM t",
            "--key",
            "id",
            "-q",
            "-p",
            "exec:printf [%s] {} {name} id={id},n={n}",
        ])
        .assert()
        .success();
    let got = rows(&tmp.path().join("batchproc.db"), "id");
    let output = |id: &str| String::from_utf8(got[id.as_bytes()].1.clone().unwrap()).unwrap();
    assert_eq!(output("1"), "[1][one $(touch pwned)][id=1,n=1.5]");
    assert_eq!(output("2"), "[2][][id=2,n=2]");
    assert_eq!(output("3"), "[3][three][id=3,n=]");
    assert_nothing_ran(tmp.path());

    // A placeholder naming no column is refused before any work.
    let out = batchproc(tmp.path())
        .args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            "SELECT id FROM t",
            "--key",
            "id",
            "-o",
            "sqlite:other.db",
            "-p",
            "exec:echo {name}",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("{name}"), "{}", stderr_of(&out));
}

#[test]
fn what_a_command_leaves_running_ends_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a"), "").unwrap();
    let started = Instant::now();
    // The background sleep inherits stdout: without the group kill the
    // run would wait for it.
    batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-q",
            "-p",
            "exec:sh -c 'sleep 30.105 & echo started'",
        ])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let got = rows(&tmp.path().join("batchproc.db"), "path");
    assert_eq!(got[&b"d/a"[..]].1.as_deref(), Some(&b"started"[..]));
    assert_eq!(processes_with("30.105"), Vec::<String>::new());
}

#[test]
fn commands_die_with_batchproc_even_when_it_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(tmp.path().join("d").join(name), "").unwrap();
    }
    // Each command leaves a process of its own in the background, too.
    let child = batchproc_std(tmp.path())
        .args(["files", "d", "-q", "-w", "2"])
        .args(["-p", "exec:sh -c 'sleep 30.108 & sleep 30.107'"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while processes_with("30.107").len() < 2 || processes_with("30.108").len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "commands never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL cannot be caught: batchproc does nothing more, its watchdog
    // must end the commands and what they started.
    assert!(
        !sigkill_after(child, Duration::ZERO),
        "batchproc ended first"
    );
    let killed = Instant::now();
    let left = || [processes_with("30.107"), processes_with("30.108")].concat();
    while !left().is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "outlived batchproc: {:?}",
            left()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
