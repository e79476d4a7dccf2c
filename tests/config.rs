//! Named pipelines in `batchproc.toml`: `batchproc run NAME` and `list`,
//! `${VAR}` interpolation, the order command line > environment > file, and
//! config errors naming the file, the line and the key. The README's
//! `batchproc.toml`, crontab line and Makefile target are run as written.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use sqlx::Row;

/// The fenced block of `README.md` whose info string is `lang` and whose
/// text contains `needle`.
fn readme_block(lang: &str, needle: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let fence = format!("```{lang}\n");
    readme
        .split(&fence)
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_string())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("README has no {lang} block with {needle}"))
}

/// `root/srv/batch` holding the README's `batchproc.toml`, and
/// `root/srv/data/incoming` holding files whose sha256sum digests are
/// returned by the path a run stores for them.
fn srv(root: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let batch = root.join("srv/batch");
    let data = root.join("srv/data");
    std::fs::create_dir_all(&batch).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        batch.join("batchproc.toml"),
        readme_block("toml", "[pipelines.nightly-hashes]"),
    )
    .unwrap();
    let oracle = hashed_tree(&data, 40);
    std::fs::rename(data.join("d"), data.join("incoming")).unwrap();
    let expected = oracle
        .into_iter()
        .map(|(path, sum)| {
            let rest = path.strip_prefix("d/").unwrap();
            (format!("{}/incoming/{rest}", data.display()), sum)
        })
        .collect();
    (batch, expected)
}

/// `sh -c line` with the little environment cron gives a job: a short
/// PATH (plus the directory of the binary under test) and HOME.
fn as_cron_would(line: &str, root: &Path) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("batchproc");
    let path = format!("{}:/usr/bin:/bin", bin.parent().unwrap().display());
    std::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .env_clear()
        .env("PATH", path)
        .env("HOME", root)
        .env("SHELL", "/bin/sh")
        .output()
        .unwrap()
}

fn digests(db: &Path, table: &str) -> BTreeMap<String, String> {
    query(
        db,
        &format!("SELECT path, sha256 FROM {table} WHERE error IS NULL"),
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[test]
fn the_readme_crontab_line_runs_its_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let (batch, expected) = srv(tmp.path());
    let block = readme_block("crontab", "batchproc run");
    let entry = block
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    // Five time fields, then the command, with /srv/ moved under the scratch dir.
    let command = entry
        .split_whitespace()
        .skip(5)
        .collect::<Vec<_>>()
        .join(" ");
    let command = command.replace("/srv/", &format!("{}/srv/", tmp.path().display()));
    let out = as_cron_would(&command, tmp.path());
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "", "--quiet prints nothing on success");
    assert_eq!(digests(&batch.join("hashes.db"), "files"), expected);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(batch.join("last-run.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["ok"], expected.len());
    // The next night: the pipeline is incremental, nothing changed.
    let out = as_cron_would(&command, tmp.path());
    assert!(out.status.success(), "{}", stderr_of(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(batch.join("last-run.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["ok"], 0, "{summary}");
    assert_eq!(summary["unchanged"], expected.len(), "{summary}");
    assert_eq!(digests(&batch.join("hashes.db"), "files"), expected);
}

#[test]
fn the_readme_makefile_target_runs_its_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let (batch, expected) = srv(tmp.path());
    std::fs::write(
        batch.join("Makefile"),
        readme_block("make", "batchproc run"),
    )
    .unwrap();
    let data = tmp.path().join("srv/data");
    let line = format!(
        "cd {} && DATA_DIR={} make -s hashes",
        batch.display(),
        data.display()
    );
    let out = as_cron_would(&line, tmp.path());
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(digests(&batch.join("hashes.db"), "files"), expected);
    // A failing run stops make: a pipeline whose directory is missing.
    let line = format!(
        "cd {} && DATA_DIR=/nonexistent make -s hashes",
        batch.display()
    );
    let out = as_cron_would(&line, tmp.path());
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("/nonexistent/incoming"),
        "{}",
        stderr_of(&out)
    );
}

/// A scratch dir with `d/` (5 CSV files) and a `batchproc.toml` of `toml`.
fn scratch(toml: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 5);
    std::fs::write(tmp.path().join("batchproc.toml"), toml).unwrap();
    tmp
}

fn tables(db: &Path) -> Vec<String> {
    query(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'from%' OR name = 'after_name' ORDER BY name")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const TABLED: &str = r#"
[pipelines.p]
command = "files"
dirs = ["d"]
processor = ["lines"]
table = "from_file"
quiet = true
"#;

#[test]
fn the_command_line_beats_the_environment_which_beats_the_file() {
    let tmp = scratch(TABLED);
    let db = tmp.path().join("batchproc.db");
    batchproc(tmp.path())
        .args(["run", "p"])
        .assert()
        .success()
        .stderr("");
    assert_eq!(tables(&db), ["from_file"]);
    batchproc(tmp.path())
        .args(["run", "p"])
        .env("BATCHPROC_TABLE", "from_env")
        .assert()
        .success();
    assert_eq!(tables(&db), ["from_env", "from_file"]);
    batchproc(tmp.path())
        .args(["run", "p", "--table", "from_cli"])
        .env("BATCHPROC_TABLE", "from_env")
        .assert()
        .success();
    assert_eq!(tables(&db), ["from_cli", "from_env", "from_file"]);
    assert_eq!(count(&db, "from_cli"), 5);
}

#[test]
fn directories_on_the_command_line_replace_the_files() {
    let tmp = scratch(TABLED);
    many_csv_files(&tmp.path().join("other"), 2);
    batchproc(tmp.path())
        .args(["run", "p", "other"])
        .assert()
        .success();
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT path FROM from_file ORDER BY path",
    );
    let paths: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(paths, ["other/f00000.csv", "other/f00001.csv"]);
}

#[test]
fn a_flag_given_sets_aside_the_file_keys_it_excludes() {
    let tmp = scratch(&format!("{TABLED}workers = 2\n"));
    batchproc(tmp.path())
        .args(["run", "p", "--max-workers", "2"])
        .assert()
        .success();
    batchproc(tmp.path())
        .args(["run", "p"])
        .env("BATCHPROC_MIN_WORKERS", "1")
        .assert()
        .success();
    assert_eq!(count(&tmp.path().join("batchproc.db"), "from_file"), 5);
}

#[test]
fn variables_are_filled_from_the_environment() {
    let tmp = scratch(
        r#"
[pipelines.p]
command = "files"
dirs = ["${SRC}"]
processor = ["sha256"]
sink = "sqlite:${OUT_DIR:-.}/out.db"
table = "${TABLE:-hashed}"
"#,
    );
    std::fs::create_dir(tmp.path().join("state")).unwrap();
    batchproc(tmp.path())
        .args(["run", "p"])
        .env("SRC", "d")
        .env("OUT_DIR", "state")
        .assert()
        .success();
    let db = tmp.path().join("state/out.db");
    let got = digests(&db, "hashed");
    assert_eq!(got.len(), 5);
    for (path, sum) in got {
        assert_eq!(sum, sha256sum(&tmp.path().join(path)));
    }
    let out = batchproc(tmp.path())
        .args(["run", "p"])
        .env_remove("SRC")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out).trim_end(),
        "error: batchproc.toml:4: pipelines.p.dirs: environment variable SRC is not set"
    );
}

#[test]
fn a_query_pipeline_runs_with_its_processors() {
    let tmp = scratch(
        r#"
[pipelines.docs]
command = "query"
from = "sqlite:src.db"
sql = "SELECT id, body FROM docs"
key = "id"
processor = ["sha256:body"]
sink = "out.db"
page-size = 2
"#,
    );
    execute(
        &tmp.path().join("src.db"),
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT); \
         INSERT INTO docs VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma');",
    );
    batchproc(tmp.path())
        .args(["run", "docs"])
        .assert()
        .success();
    let rows = query(
        &tmp.path().join("out.db"),
        "SELECT body, body_sha256 FROM rows ORDER BY id",
    );
    assert_eq!(rows.len(), 3);
    for row in rows {
        let body: String = row.get(0);
        let file = tmp.path().join("body");
        std::fs::write(&file, &body).unwrap();
        assert_eq!(row.get::<String, _>(1), sha256sum(&file), "{body}");
    }
}

#[test]
fn the_file_is_found_by_flag_variable_or_name() {
    let tmp = scratch("");
    std::fs::create_dir(tmp.path().join("etc")).unwrap();
    std::fs::write(tmp.path().join("etc/jobs.toml"), TABLED).unwrap();
    let db = tmp.path().join("batchproc.db");
    batchproc(tmp.path())
        .args(["run", "--config", "etc/jobs.toml", "p"])
        .assert()
        .success();
    batchproc(tmp.path())
        .args([
            "run",
            "p",
            "--config",
            "etc/jobs.toml",
            "--table",
            "after_name",
        ])
        .assert()
        .success();
    batchproc(tmp.path())
        .args(["run", "p", "--table", "from_variable"])
        .env("BATCHPROC_CONFIG", "etc/jobs.toml")
        .assert()
        .success();
    assert_eq!(tables(&db), ["after_name", "from_file", "from_variable"]);
    // ./batchproc.toml is empty: no pipelines at all.
    let out = batchproc(tmp.path()).args(["run", "p"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out).trim_end(),
        "error: batchproc.toml: no pipeline 'p' (there are: none)"
    );
}

#[test]
fn list_shows_one_line_per_pipeline_without_passwords() {
    let tmp = scratch(&format!(
        "{TABLED}\n[pipelines.warehouse]\ncommand = \"query\"\nfrom = \"postgres://etl:hunter2@db/app\"\n\
         sql = \"SELECT 1 AS id\"\nkey = \"id\"\nsink = \"postgres://etl:${{PW}}@db/wh\"\n\
         [pipelines.z]\ncommand = \"files\"\ndirs = [\"${{DATA}}/in\"]\n"
    ));
    let out = batchproc(tmp.path()).arg("list").output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "p          files  d -> sqlite:batchproc.db (lines)\n\
         warehouse  query  postgres://etl:***@db/app -> postgres://etl:***@db/wh\n\
         z          files  ${DATA}/in -> sqlite:batchproc.db\n"
    );
}

/// `batchproc run p` with `toml` as the config: exit 2 and this one line,
/// and nothing written.
fn config_error(toml: &str, message: &str) {
    let tmp = scratch(toml);
    let out = batchproc(tmp.path()).args(["run", "p"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    // A prefix: the list of keys grows with every flag added.
    assert!(err.starts_with(&format!("error: {message}")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!tmp.path().join("batchproc.db").exists());
}

#[test]
fn config_errors_name_the_file_the_line_and_the_key() {
    let head = "[pipelines.p]\ncommand = \"files\"\ndirs = [\"d\"]\n";
    config_error(
        &format!("{head}wokers = 2\n"),
        "batchproc.toml:4: pipelines.p.wokers: unknown key for a files pipeline (keys: command, dirs, processor, include,",
    );
    config_error(
        &format!("{head}workers = \"two\"\n"),
        "batchproc.toml:4: pipelines.p.workers: invalid value 'two' for '--workers <N>': invalid digit found in string",
    );
    config_error(
        &format!("{head}\nworkers = [1, 2]\n"),
        "batchproc.toml:5: pipelines.p.workers: expected one value, not a list, found array",
    );
    config_error(
        &format!("{head}follow = \"yes\"\n"),
        "batchproc.toml:4: pipelines.p.follow: expected true or false, found string",
    );
    config_error(
        &format!("{head}on-error = \"ignore\"\n"),
        "batchproc.toml:4: pipelines.p.on-error: invalid value 'ignore' for '--on-error <POLICY>' [possible values: abort, skip]",
    );
    config_error(
        "[pipelines.p]\ncommand = \"walk\"\n",
        "batchproc.toml:2: pipelines.p.command: expected one of files, query, queue, found \"walk\"",
    );
    config_error(
        "[pipelines.p]\ndirs = [\"d\"]\n",
        "batchproc.toml:1: pipelines.p.command: missing; one of: files, query",
    );
    config_error(
        "[pipeline.p]\ncommand = \"files\"\n",
        "batchproc.toml:1: unknown field `pipeline`, expected `pipelines`",
    );
    config_error(
        &format!("{head}workers = \n"),
        "batchproc.toml:4: invalid string; expected `\"`, `'`",
    );
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = batchproc(tmp.path()).args(["run", "p"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.starts_with("error: config batchproc.toml: No such file"),
        "{err}"
    );
    assert!(err.contains("--config PATH or BATCHPROC_CONFIG"), "{err}");
}

#[test]
fn a_directory_may_start_with_a_dash() {
    let tmp = scratch(
        "[pipelines.p]\ncommand = \"files\"\ndirs = [\"-data\"]\nprocessor = [\"sha256\"]\n",
    );
    many_csv_files(&tmp.path().join("-data"), 2);
    batchproc(tmp.path())
        .args(["run", "p", "-q"])
        .assert()
        .success();
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT path FROM files ORDER BY path",
    );
    let paths: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // Stored as the same directory typed on the command line would be.
    assert_eq!(paths, ["-data/f00000.csv", "-data/f00001.csv"]);
}

#[test]
fn config_without_a_path_is_a_usage_error() {
    let tmp = scratch(TABLED);
    // Right after NAME clap reads --config itself; after another flag it
    // is among the pipeline's flags, and taken out of them.
    for args in [
        &["run", "p", "--config"][..],
        &["run", "p", "-q", "--config"],
    ] {
        let out = batchproc(tmp.path())
            .args(args)
            .env("BATCHPROC_CONFIG", "elsewhere.toml")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr_of(&out);
        assert_eq!(
            err.lines().next(),
            Some("error: a value is required for '--config <PATH>' but none was supplied"),
            "{args:?}: {err}"
        );
    }
}
