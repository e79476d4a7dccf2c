//! `--shard I/N` and `--shard-from-env`: N runs, one per shard, together
//! write exactly the rows of one unsharded run, each shard holding the
//! items Python's hashlib assigns it by the rule docs/DESIGN.md writes down
//! (never the code under test); shards run at once into one Postgres
//! database, each resumes its own run, and every mistake is exit 2 with
//! one line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::pg::fresh_db;
use common::*;
use serde_json::Value;
use sqlx::Row;

/// What the environment may say about a shard, removed from every run so
/// the machine's own (a CI job on Kubernetes, say) cannot leak in.
const SHARD_VARS: [&str; 9] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
    "BATCHPROC_SHARD",
    "BATCHPROC_SHARD_FROM_ENV",
    "BATCHPROC_SHARDS",
    "BATCHPROC_CONFIG",
];

/// Variables a run is given.
type Env<'a> = &'a [(&'a str, &'a str)];

/// The binary in `dir`, with no shard from the environment.
fn bp(dir: &Path) -> assert_cmd::Command {
    let mut cmd = batchproc(dir);
    for var in SHARD_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// The shard (from 1) of `count` each key belongs to, by Python's hashlib
/// from the rule as docs/DESIGN.md writes it down.
fn python_shards(keys: &BTreeSet<Vec<u8>>, count: u32) -> BTreeMap<Vec<u8>, u32> {
    let script = "import hashlib, sys\n\
        n = int(sys.argv[1])\n\
        for line in sys.stdin.read().split():\n    \
            b = bytes.fromhex(line)\n    \
            print(int.from_bytes(hashlib.sha256(b).digest()[:8], 'big') % n + 1)\n";
    let input: String = keys.iter().map(|k| hex(k) + "\n").collect();
    let out = std::process::Command::new("python3")
        .args(["-c", script, &count.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let shards: Vec<u32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(shards.len(), keys.len());
    keys.iter().cloned().zip(shards).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys Python puts in shard `index`.
fn in_shard(shards: &BTreeMap<Vec<u8>, u32>, index: u32) -> BTreeSet<Vec<u8>> {
    shards
        .iter()
        .filter(|(_, s)| **s == index)
        .map(|(k, _)| k.clone())
        .collect()
}

/// 200 files under `dir/d` (names with spaces, one that is not UTF-8, in
/// nested directories) and a FIFO, which every run skips.
fn tree(dir: &Path) {
    let d = dir.join("d");
    for i in 0..199 {
        let sub = d.join(format!("s{}", i % 7)).join(format!("t {}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("file {i}.txt")),
            format!("{i}\n").repeat(i),
        )
        .unwrap();
    }
    std::fs::write(d.join(OsStr::from_bytes(b"bad\xffname")), "x").unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(d.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
}

/// Path (bytes as stored) -> sha256 of a files table in a SQLite file.
fn file_rows(db: &Path, table: &str) -> BTreeMap<Vec<u8>, String> {
    query(
        db,
        &format!("SELECT CAST(path AS BLOB), sha256 FROM {table}"),
    )
    .iter()
    .map(|r| (r.get::<Vec<u8>, _>(0), r.get::<String, _>(1)))
    .collect()
}

/// Runs `args` with `--summary-json -` and returns the summary; exit 0.
fn summary(dir: &Path, args: &[&str]) -> Value {
    let out = bp(dir)
        .args(args)
        .args(["-q", "--summary-json", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn three_shards_one_after_another_write_exactly_the_unsharded_rows() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let files = ["files", "d", "-p", "sha256", "-w", "2"];
    let all = summary(tmp.path(), &[&files[..], &["-o", "all.db"]].concat());
    let expected = file_rows(&tmp.path().join("all.db"), "files");
    assert_eq!(expected.len(), 200);
    assert_eq!(
        (all["ok"].as_u64(), all["skipped"].as_u64()),
        (Some(200), Some(1))
    );

    let mut keys: BTreeSet<Vec<u8>> = expected.keys().cloned().collect();
    keys.insert(b"d/pipe".to_vec());
    let python = python_shards(&keys, 3);
    let db = tmp.path().join("shards.db");
    let mut seen = BTreeMap::new();
    let mut skipped = 0;
    for index in 1..=3 {
        let shard = format!("{index}/3");
        let args = [&files[..], &["-o", "shards.db", "--shard", &shard]].concat();
        let ran = summary(tmp.path(), &args);
        assert_eq!(ran["shard"], shard.as_str());
        // What this shard added to the table is exactly what Python
        // assigns it; nothing another shard wrote was written again.
        let now = file_rows(&db, "files");
        let added: BTreeSet<Vec<u8>> = now
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        let mut mine = in_shard(&python, index);
        let fifo = mine.remove(&b"d/pipe"[..]);
        assert_eq!(added, mine, "shard {shard}");
        assert_eq!(ran["ok"].as_u64(), Some(mine.len() as u64), "shard {shard}");
        // The FIFO is skipped by its own shard only.
        assert_eq!(ran["skipped"].as_u64(), Some(fifo as u64), "shard {shard}");
        skipped += ran["skipped"].as_u64().unwrap();
        seen = now;
    }
    assert_eq!(
        seen, expected,
        "the shards' rows differ from the unsharded run's"
    );
    assert_eq!(skipped, 1);

    // Each run shows its shard: in the JSON and in the table.
    let listed = runs_json(tmp.path(), "sqlite:shards.db");
    let shards: Vec<&Value> = listed.iter().map(|r| &r["shard"]).collect();
    assert_eq!(shards, ["3/3", "2/3", "1/3"]);
    let ok: u64 = listed.iter().map(|r| r["ok"].as_u64().unwrap()).sum();
    assert_eq!(ok, 200, "an item was processed twice or never");
    let out = bp(tmp.path())
        .args(["runs", "-o", "shards.db"])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("  SHARD  "), "{table}");
    for (line, shard) in lines[1..].iter().zip(["3/3", "2/3", "1/3"]) {
        assert!(line.contains(&format!("  {shard}  ")), "{table}");
    }
    let listed = runs_json(tmp.path(), "sqlite:all.db");
    assert_eq!(listed[0]["shard"], Value::Null);
}

#[test]
fn incremental_shards_pass_and_prune_only_their_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let files = [
        "files",
        "d",
        "-p",
        "sha256",
        "-o",
        "out.db",
        "--incremental",
    ];
    let shard = |index: u32, extra: &[&str]| {
        let shard = format!("{index}/3");
        summary(
            tmp.path(),
            &[&files[..], &["--shard", &shard], extra].concat(),
        )
    };
    let db = tmp.path().join("out.db");
    for index in 1..=3 {
        shard(index, &[]);
    }
    let keys: BTreeSet<Vec<u8>> = file_rows(&db, "files").into_keys().collect();
    assert_eq!(keys.len(), 200);
    let python = python_shards(&keys, 3);
    // Again: every shard passes its own files, and only those.
    for index in 1..=3 {
        let again = shard(index, &[]);
        let mine = in_shard(&python, index).len() as u64;
        assert_eq!(
            (again["ok"].as_u64(), again["unchanged"].as_u64()),
            (Some(0), Some(mine))
        );
    }
    // One file changed and one gone: their shards alone see it.
    let changed = b"d/s3/t 1/file 10.txt".to_vec();
    let gone = b"d/s5/t 2/file 5.txt".to_vec();
    assert!(keys.contains(&changed) && keys.contains(&gone));
    std::fs::write(tmp.path().join(OsStr::from_bytes(&changed)), "new").unwrap();
    std::fs::remove_file(tmp.path().join(OsStr::from_bytes(&gone))).unwrap();
    for index in 1..=3 {
        let again = shard(index, &["--prune"]);
        let ok = (python[&changed] == index) as u64;
        let removed = (python[&gone] == index) as u64;
        assert_eq!(again["ok"].as_u64(), Some(ok), "shard {index}");
        assert_eq!(again["removed"].as_u64(), Some(removed), "shard {index}");
    }
    let rows = file_rows(&db, "files");
    assert_eq!(rows.len(), 199);
    assert!(!rows.contains_key(&gone));
    assert_eq!(
        rows[&changed],
        sha256sum(&tmp.path().join(OsStr::from_bytes(&changed)))
    );
}

/// A directory the walk cannot read may hold files of any shard: every
/// shard fails on it, and every shard's resume, once it can be read, does
/// that shard's files in it.
#[test]
fn an_unreadable_directory_fails_every_shard_and_each_resume_does_its_own_files() {
    unreadable_directory("locked", 0o000, "d/locked: Permission denied");
}

/// A parent that can be listed but not searched (r--): the walk sees its
/// subdirectory but can neither open it nor read its type, and it may
/// hold any shard's files all the same.
#[test]
fn a_directory_whose_type_cannot_be_read_fails_every_shard_too() {
    unreadable_directory("locked/inner", 0o444, "d/locked/inner: Permission denied");
}

/// `d/open` and `d/DIR` with 30 files each, `d/locked` (the parent of
/// DIR, or DIR itself) set to `mode` for the sharded runs: every shard
/// fails naming `error`, and each shard's resume does its own files.
fn unreadable_directory(dir: &str, mode: u32, error: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    for dir in ["open", dir] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
        for i in 0..30 {
            std::fs::write(d.join(dir).join(format!("{i}.txt")), format!("{dir} {i}")).unwrap();
        }
    }
    let locked = mode;
    let files = ["files", "d", "-p", "sha256", "-q", "--on-error", "skip"];
    let shard_run = |index: u32, resume: bool| {
        let mut cmd = batchproc_unprivileged(tmp.path());
        for var in SHARD_VARS {
            cmd.env_remove(var);
        }
        cmd.args(files)
            .args(["-o", "out.db", "--shard", &format!("{index}/3")]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.output().unwrap()
    };
    let mode = |m: u32| {
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(locked);
    for index in 1..=3 {
        let out = shard_run(index, false);
        let err = stderr_of(&out);
        mode(0o755);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(error), "shard {index}: {err}");
        mode(locked);
    }
    mode(0o755);
    for index in 1..=3 {
        let out = shard_run(index, true);
        assert!(out.status.success(), "shard {index}: {}", stderr_of(&out));
    }
    let whole = bp(tmp.path())
        .args(files)
        .args(["-o", "whole.db"])
        .output()
        .unwrap();
    assert!(whole.status.success(), "{}", stderr_of(&whole));
    let done = |db: &str| -> BTreeMap<Vec<u8>, String> {
        let sql = "SELECT CAST(path AS BLOB), sha256 FROM files WHERE error IS NULL";
        query(&tmp.path().join(db), sql)
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let expected = done("whole.db");
    assert_eq!(expected.len(), 60);
    assert_eq!(done("out.db"), expected);
    let python = python_shards(&expected.keys().cloned().collect(), 3);
    for run in runs_json(tmp.path(), "sqlite:out.db") {
        let index: u32 = run["shard"].as_str().unwrap()[..1].parse().unwrap();
        let mine = in_shard(&python, index).len() as u64;
        assert_eq!(
            (run["ok"].as_u64(), run["failed"].as_u64()),
            (Some(mine), Some(0)),
            "{run}"
        );
    }
}

/// `src.db`, a table `t` of `n` rows (id, body) for `query` runs.
fn bodies_db(dir: &Path, n: usize) {
    execute(
        &dir.join("src.db"),
        &format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO t SELECT i, printf('body %d', i) FROM n"
        ),
    );
}

#[test]
fn three_shards_at_once_into_one_postgres_database_write_the_unsharded_rows() {
    let (Some(sharded), Some(whole)) = (fresh_db(), fresh_db()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    bodies_db(tmp.path(), 1500);
    let args = [
        &QUERY_T[..],
        &["-p", "sha256:body", "-q", "--batch-size", "25"],
    ]
    .concat();
    bp(tmp.path())
        .args(&args)
        .args(["-o", &whole.url])
        .assert()
        .success();
    // Each shard holds its commits open a while, so that the three work
    // together for seconds, longer than a run waits for another's lock.
    let children: Vec<_> = (1..=3)
        .map(|index| {
            let mut cmd = batchproc_std(tmp.path());
            for var in SHARD_VARS {
                cmd.env_remove(var);
            }
            cmd.args(&args)
                .args(["-o", &sharded.url, "--shard", &format!("{index}/3")])
                .env("BATCHPROC_TEST_COMMIT_DELAY_MS", "200")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            stderr_of(&out)
        );
    }
    let rows = |db: &common::pg::PgDb| -> Vec<(i64, String)> {
        db.query("SELECT id, body_sha256 FROM rows ORDER BY id")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let expected = rows(&whole);
    assert_eq!(expected.len(), 1500);
    assert_eq!(rows(&sharded), expected);
    // Every row committed once: the runs' counts add up to the rows, and
    // each shard's count is what Python assigns it.
    let ids: BTreeSet<Vec<u8>> = (1..=1500)
        .map(|i: i64| i.to_string().into_bytes())
        .collect();
    let python = python_shards(&ids, 3);
    let listed = runs_json(tmp.path(), &sharded.url);
    assert_eq!(listed.len(), 3);
    for run in &listed {
        assert_eq!(run["status"], "succeeded", "{run}");
        let shard = run["shard"].as_str().unwrap();
        let index: u32 = shard.strip_suffix("/3").unwrap().parse().unwrap();
        let mine = in_shard(&python, index).len() as u64;
        assert_eq!(run["ok"].as_u64(), Some(mine), "{run}");
    }
}

#[test]
fn a_shard_resumes_its_own_run_and_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 120);
    let keys: BTreeSet<Vec<u8>> = oracle.keys().map(|k| k.clone().into_bytes()).collect();
    let python = python_shards(&keys, 3);
    let (first, second) = (in_shard(&python, 1), in_shard(&python, 2));
    // 50 ms per file on two workers: shard 2 takes far longer than 300 ms.
    assert!(second.len() >= 20, "{}", second.len());
    let run = |args: &[&str]| {
        bp(tmp.path())
            .args(SLOW_FILES)
            .args(["-o", "out.db"])
            .args(args)
            .output()
            .unwrap()
    };
    let db = tmp.path().join("out.db");
    let paused = run(&["--shard", "2/3", "--max-runtime", "300ms"]);
    assert_eq!(paused.status.code(), Some(3), "{}", stderr_of(&paused));
    let written: BTreeSet<Vec<u8>> = file_rows(&db, "files").into_keys().collect();
    assert!(
        written.is_subset(&second),
        "another shard's files were written"
    );

    // Shard 1's --resume finds nothing of its own to resume.
    let other = run(&["--shard", "1/3", "--resume"]);
    let err = stderr_of(&other);
    assert!(other.status.success(), "{err}");
    assert!(
        err.contains("nothing to resume for this pipeline; starting run 2"),
        "{err}"
    );
    // Shard 2's resumes its paused run.
    let resumed = run(&["--shard", "2/3", "--resume"]);
    let err = stderr_of(&resumed);
    assert!(resumed.status.success(), "{err}");
    assert!(err.contains("resuming run 1"), "{err}");

    let rows = file_rows(&db, "files");
    let expected: BTreeMap<Vec<u8>, String> = oracle
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), v.clone()))
        .filter(|(k, _)| first.contains(k) || second.contains(k))
        .collect();
    assert_eq!(rows, expected);
    let listed = runs_json(tmp.path(), "sqlite:out.db");
    let by_id = |id: u64| listed.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(by_id(1)["shard"], "2/3");
    assert_eq!(by_id(1)["attempts"], 2);
    assert_eq!(by_id(1)["ok"].as_u64(), Some(second.len() as u64));
    assert_eq!(by_id(2)["shard"], "1/3");
    assert_eq!(by_id(2)["ok"].as_u64(), Some(first.len() as u64));
    assert_eq!(count(&db, "batchproc_checkpoints"), 0);
}

#[test]
fn the_shard_from_kubernetes_slurm_or_a_named_pipeline_is_the_same_shard() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    std::fs::write(
        tmp.path().join("batchproc.toml"),
        "[pipelines.p]\ncommand = \"files\"\ndirs = [\"d\"]\nprocessor = [\"sha256\"]\n\
         shard = \"2/3\"\n",
    )
    .unwrap();
    let files = ["files", "d", "-p", "sha256"];
    let ways: [(&str, Vec<&str>, Env); 5] = [
        ("flag", [&files[..], &["--shard", "2/3"]].concat(), &[]),
        (
            "kubernetes",
            [&files[..], &["--shard-from-env", "--shards", "3"]].concat(),
            &[("JOB_COMPLETION_INDEX", "1")],
        ),
        (
            "slurm",
            [&files[..], &["--shard-from-env"]].concat(),
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
        ),
        ("file", vec!["run", "p"], &[]),
        // The command line's --shard-from-env wins over the file's shard.
        (
            "file-env",
            vec!["run", "p", "--shard-from-env", "--shards", "3"],
            &[("JOB_COMPLETION_INDEX", "1")],
        ),
    ];
    let mut sets = Vec::new();
    for (name, args, env) in ways {
        let sink = format!("{name}.db");
        let out = bp(tmp.path())
            .args(&args)
            .args(["-q", "-o", &sink])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        let rows = file_rows(&tmp.path().join(&sink), "files");
        assert_eq!(runs_json(tmp.path(), &sink)[0]["shard"], "2/3", "{name}");
        sets.push((name, rows.into_keys().collect::<BTreeSet<_>>()));
    }
    let whole = bp(tmp.path())
        .args(files)
        .args(["-q", "-o", "whole.db"])
        .output()
        .unwrap();
    assert!(whole.status.success());
    let all: BTreeSet<Vec<u8>> = file_rows(&tmp.path().join("whole.db"), "files")
        .into_keys()
        .collect();
    let expected = in_shard(&python_shards(&all, 3), 2);
    assert!(!expected.is_empty());
    for (name, set) in sets {
        assert_eq!(set, expected, "{name}");
    }
}

/// `args` in a scratch directory holding `d/a.txt`, with `env`: exit 2,
/// one line on stderr holding `needle`, no panic, nothing written.
fn refused(args: &[&str], env: Env, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a.txt"), "x").unwrap();
    let out = bp(tmp.path())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?} {env:?}: {err}");
    assert!(err.contains(needle), "{args:?} {env:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!tmp.path().join("batchproc.db").exists(), "{args:?} ran");
}

#[test]
fn every_mistake_is_exit_2_with_one_line_naming_it() {
    let files = ["files", "d"];
    let with = |extra: &[&'static str]| [&files[..], extra].concat();
    for (shard, needle) in [
        ("0/3", "--shard '0/3': shards are numbered 1 to 3"),
        ("4/3", "--shard '4/3': shards are numbered 1 to 3"),
        ("a/b", "--shard 'a/b': expected I/N"),
        ("3", "--shard '3': expected I/N"),
        ("1/0", "--shard '1/0': there must be at least one shard"),
    ] {
        refused(&with(&["--shard", shard]), &[], needle);
    }
    refused(
        &files,
        &[("BATCHPROC_SHARD", "a/b")],
        "BATCHPROC_SHARD 'a/b'",
    );
    refused(
        &with(&["--shard", "1/3", "--shard-from-env"]),
        &[("JOB_COMPLETION_INDEX", "0")],
        "--shard and --shard-from-env exclude each other",
    );
    refused(
        &with(&["--shards", "3"]),
        &[],
        "--shards needs --shard-from-env",
    );
    // Given by a variable, the variable is named.
    refused(
        &files,
        &[("BATCHPROC_SHARDS", "3")],
        "BATCHPROC_SHARDS needs --shard-from-env",
    );
    let from_env = with(&["--shard-from-env"]);
    let from_env_of_3 = with(&["--shard-from-env", "--shards", "3"]);
    let shards_0 = with(&["--shard-from-env", "--shards", "0"]);
    let cases: [(&Vec<&str>, Env, &str); 9] = [
        (&from_env, &[][..], "neither JOB_COMPLETION_INDEX"),
        (
            &from_env,
            &[("JOB_COMPLETION_INDEX", "1")],
            "give the number of shards with --shards N",
        ),
        (
            &from_env_of_3,
            &[("JOB_COMPLETION_INDEX", "x")],
            "JOB_COMPLETION_INDEX='x' is not a whole number",
        ),
        (
            &from_env_of_3,
            &[("JOB_COMPLETION_INDEX", "3")],
            "JOB_COMPLETION_INDEX=3 is out of range for --shards 3",
        ),
        (
            &from_env_of_3,
            &[("JOB_COMPLETION_INDEX", "-1")],
            "JOB_COMPLETION_INDEX='-1'",
        ),
        (
            &from_env,
            &[("SLURM_ARRAY_TASK_ID", "2")],
            "SLURM_ARRAY_TASK_COUNT is not set",
        ),
        (
            &from_env,
            &[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            "SLURM_ARRAY_TASK_ID=3 is task 3 (from 0) of an array of 3: out of range",
        ),
        (
            &from_env,
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "many"),
            ],
            "SLURM_ARRAY_TASK_COUNT='many'",
        ),
        (&shards_0, &[("JOB_COMPLETION_INDEX", "0")], "--shards '0'"),
    ];
    for (args, env, needle) in cases {
        refused(args, env, needle);
    }
    let query = [&QUERY_T[..], &["--shard", "4/3"]].concat();
    refused(&query, &[], "--shard '4/3'");
    // A queue refuses before it connects (nothing need listen there).
    let queue = ["queue", "--from", "nats://127.0.0.1:1", "--queue", "jobs"];
    let shared = "a queue is already shared by its consumers";
    refused(&[&queue[..], &["--shard", "1/2"]].concat(), &[], shared);
    refused(
        &queue,
        &[("BATCHPROC_SHARD", "1/2")],
        &format!("BATCHPROC_SHARD: {shared}"),
    );
    let env = [("JOB_COMPLETION_INDEX", "0")];
    refused(
        &[&queue[..], &["--shard-from-env", "--shards", "2"]].concat(),
        &env,
        shared,
    );
}

#[test]
fn the_run_started_log_line_names_the_shard() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let out = bp(tmp.path())
        .args([
            "files", "d", "-p", "sha256", "-o", "log.db", "--shard", "2/3",
        ])
        .args(["-v", "--log-format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let started = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "run started")
        .unwrap_or_else(|| panic!("no run started line in {stderr}"));
    assert_eq!(started["shard"], "2/3");
}
