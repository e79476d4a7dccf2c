//! Every processor against an oracle made by another tool (see fixtures/README.md).

mod common;

use std::collections::BTreeMap;

use common::*;
use sqlx::Row;

/// Runs `files sample -p PROCS` on the committed fixture tree and returns
/// path (relative to sample/) -> row.
fn run_on_sample(procs: &str, extra: &[&str]) -> BTreeMap<String, sqlx::sqlite::SqliteRow> {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("out.db");
    batchproc(&fixtures())
        .args(["files", "sample", "-p", procs, "--sink"])
        .arg(format!("sqlite:{}", db.display()))
        .args(extra)
        .assert()
        .success();
    query(&db, "SELECT * FROM files")
        .into_iter()
        .map(|row| {
            let path: String = row.get("path");
            (path.strip_prefix("sample/").unwrap().to_owned(), row)
        })
        .collect()
}

#[test]
fn sha256_and_lines_match_sha256sum_and_wc() {
    let rows = run_on_sample("sha256,lines", &[]);
    let sums = oracle("sample.sha256");
    let lines = oracle("sample.wc");
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        sums.keys().collect::<Vec<_>>()
    );
    for (path, row) in &rows {
        assert_eq!(&row.get::<String, _>("sha256"), &sums[path], "{path}");
        assert_eq!(
            row.get::<i64, _>("lines").to_string(),
            lines[path],
            "{path}"
        );
        assert!(row.get::<Option<String>, _>("error").is_none());
    }
}

/// Files large enough to be read in blocks on rayon's pool while a CPU has
/// no busy worker (one worker on this two-core machine): the digests are
/// those of one plain read. The content is Python's seeded generator; the
/// BLAKE3 digests are b3sum 1.2.0's of it, sha256 and lines are computed
/// here by sha256sum and wc.
#[test]
fn large_files_read_in_blocks_hash_like_the_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let files = [
        (
            "a.bin",
            11,
            40 << 20,
            "e33184787de7fcec8b94250226e1c6b276d59ebb22f29a46e30f11c6577da696",
        ),
        (
            "b.bin",
            12,
            (33 << 20) + 12345,
            "b263ed94a9d9a46d3b1d7c67e7248fc99f0379af4d8c339b5b7cf891787cbfb4",
        ),
    ];
    for (name, seed, size, _) in files {
        let made = std::process::Command::new("python3")
            .args(["-c", "import random, sys; sys.stdout.buffer.write(random.Random(int(sys.argv[1])).randbytes(int(sys.argv[2])))"])
            .arg(seed.to_string())
            .arg(size.to_string())
            .stdout(std::fs::File::create(d.join(name)).unwrap())
            .status()
            .unwrap();
        assert!(made.success());
    }
    batchproc(tmp.path())
        .args(["files", "d", "-q", "-w", "1", "-p", "sha256,blake3,lines"])
        .assert()
        .success();
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT path, sha256, blake3, lines FROM files ORDER BY path",
    );
    assert_eq!(rows.len(), 2);
    for (row, (name, _, _, b3)) in rows.iter().zip(files) {
        let path = d.join(name);
        assert_eq!(row.get::<String, _>(0), format!("d/{name}"));
        assert_eq!(row.get::<String, _>(1), sha256sum(&path), "{name}");
        assert_eq!(row.get::<String, _>(2), b3, "{name}");
        let wc = std::process::Command::new("wc")
            .arg("-l")
            .stdin(std::fs::File::open(&path).unwrap())
            .output()
            .unwrap();
        let lines: i64 = String::from_utf8(wc.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(row.get::<i64, _>(3), lines, "{name}");
    }
}

#[test]
fn blake3_matches_b3sum() {
    let rows = run_on_sample("blake3", &["--workers", "3"]);
    let sums = oracle("sample.b3");
    assert_eq!(rows.len(), sums.len());
    for (path, row) in &rows {
        assert_eq!(&row.get::<String, _>("blake3"), &sums[path], "{path}");
    }
}

#[test]
fn size_and_mtime_match_the_file_system() {
    let rows = run_on_sample("lines", &[]);
    for (path, row) in &rows {
        let meta = std::fs::metadata(fixtures().join("sample").join(path)).unwrap();
        assert_eq!(row.get::<i64, _>("size") as u64, meta.len(), "{path}");
        let mtime: String = row.get("mtime");
        let secs = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let parsed = chrono::DateTime::parse_from_rfc3339(&mtime).unwrap();
        assert_eq!(parsed.timestamp(), secs, "{path}: {mtime}");
    }
}

/// `file --mime-type` names text subtypes (csv, json, ndjson) that magic
/// numbers cannot tell apart; batchproc reports all of those as text/plain.
#[test]
fn mime_matches_file_for_binary_types_and_says_text_for_text() {
    let rows = run_on_sample("mime", &[]);
    let text = std::fs::read_to_string(fixtures().join("sample.mime")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let (path, mime) = line.split_once(':').unwrap();
        let (path, mime) = (path.trim_start_matches("./"), mime.trim());
        let expected = match mime {
            m if m.starts_with("text/") => "text/plain",
            "application/json" | "application/x-ndjson" => "text/plain",
            m => m,
        };
        assert_eq!(rows[path].get::<String, _>("mime"), expected, "{path}");
        checked += 1;
    }
    assert_eq!(checked, rows.len());
}

#[test]
fn csv_and_json_match_python() {
    let csv_rows = run_on_sample("csv", &["--include", "*.csv"]);
    let json_rows = run_on_sample("json", &["--include", "*.json", "--include", "*.jsonl"]);
    let text = std::fs::read_to_string(fixtures().join("sample.parsed")).unwrap();
    let (mut csv_seen, mut json_seen) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let path = f[1].trim_start_matches("./");
        if f[0] == "csv" {
            let row = &csv_rows[path];
            assert_eq!(row.get::<i64, _>("csv_rows").to_string(), f[2], "{path}");
            assert_eq!(row.get::<i64, _>("csv_columns").to_string(), f[3], "{path}");
            csv_seen += 1;
        } else {
            assert_eq!(
                json_rows[path].get::<i64, _>("json_values").to_string(),
                f[2]
            );
            json_seen += 1;
        }
    }
    assert_eq!((csv_seen, json_seen), (csv_rows.len(), json_rows.len()));
}

#[test]
fn malformed_csv_and_json_are_item_failures_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("ragged.csv"), "a,b,c\n1,2,3\n4,5\n").unwrap();
    std::fs::write(d.join("open_quote.csv"), "a,b\n1,\"2\n3,4\n").unwrap();
    // The open quote swallows the rest into one field: the record is short.
    std::fs::write(d.join("open_first.csv"), "a,b\n1,2\n\"3,4\n5,6\n").unwrap();
    // A quote inside an unquoted field is a character, not an opening one.
    std::fs::write(d.join("short_last.csv"), "a,b\n1,2\nx\"y\n").unwrap();
    std::fs::write(d.join("good.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(d.join("bad.json"), "{\"a\": [1, 2}").unwrap();
    std::fs::write(d.join("empty.json"), "").unwrap();
    std::fs::write(d.join("good.json"), "[1, 2]").unwrap();
    std::fs::write(d.join("latin1.json"), b"{\"a\": \"caf\xe9\"}").unwrap();
    std::fs::write(d.join("bom.json"), b"\xef\xbb\xbf{\"a\": \"caf\xc3\xa9\"}").unwrap();
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "csv,json",
            "--on-error",
            "skip",
            "--include",
            "*.csv",
            "--include",
            "*.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let rows: BTreeMap<String, Option<String>> = query(
        &tmp.path().join("batchproc.db"),
        "SELECT path, error FROM files",
    )
    .into_iter()
    .map(|r| (r.get("path"), r.get("error")))
    .collect();
    let err = |name: &str| rows[&format!("d/{name}")].clone().unwrap_or_default();
    assert!(
        err("ragged.csv").contains("line 3") && err("ragged.csv").contains("2 fields, expected 3"),
        "{rows:?}"
    );
    assert!(
        err("open_quote.csv").contains("unterminated quoted field"),
        "{rows:?}"
    );
    assert_eq!(
        err("open_first.csv"),
        "csv: line 3: quoted field never closed (unterminated '\"')"
    );
    assert_eq!(
        err("short_last.csv"),
        "csv: line 3: record has 1 fields, expected 2"
    );
    assert!(
        err("bad.json").contains("json:") && err("bad.json").contains("line 1"),
        "{rows:?}"
    );
    assert!(err("empty.json").contains("no JSON value"), "{rows:?}");
    assert!(
        err("latin1.json").contains("invalid UTF-8 at byte offset 10"),
        "{rows:?}"
    );
    assert!(err("bom.json").is_empty(), "{rows:?}");
    // good.csv is valid CSV but not JSON, and the other way round.
    assert!(err("good.csv").starts_with("json:"), "{rows:?}");
    assert!(err("good.json").is_empty(), "{rows:?}");
}

/// One CSV record of 64 MiB is counted in constant memory: the process's
/// peak RSS (from wait4) stays below the size of the record itself.
#[test]
fn a_huge_csv_record_costs_no_memory() {
    const BIG: usize = 64 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("one.csv")).unwrap());
        f.write_all(b"a,b\n\"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..BIG >> 20 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\",2\n").unwrap();
    }
    let peak = peak_rss(batchproc_std(tmp.path()).args(["files", "d", "-p", "csv", "-q"]));
    assert!(peak < BIG, "peak RSS {} MiB", peak >> 20);
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT csv_rows, csv_columns FROM files",
    );
    assert_eq!((rows[0].get::<i64, _>(0), rows[0].get::<i64, _>(1)), (1, 2));
}
