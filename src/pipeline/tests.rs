//! The pipeline with a processor whose failures are transient, into a real
//! SQLite sink: what `--retries` does end to end with a processor that
//! fails on a schedule (the binary's tests do it with a real HTTP server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use backon::ExponentialBuilder;
use sqlx::Row;

use super::config::RunConfig;
use super::retry::RetryPolicy;
use super::{run, OnError, Report, RunStatus};
use crate::checkpoint::{Fingerprint, ItemKey};
use crate::events::Silent;
use crate::pool::Cancel;
use crate::processor::{Buffer, Outcome, Retry, Work};
use crate::record::{Column, ColumnType, Record, Schema, Value};
use crate::sink::SinkSpec;
use crate::source::{Found, Items, Source};

/// Item `id` fails transiently `id - 1` times, then succeeds; item 9 fails
/// for good on its first try.
struct Flaky {
    schema: Schema,
    tries: Arc<Mutex<HashMap<i64, u32>>>,
}

impl Work for Flaky {
    type Item = i64;

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn specs(&self) -> Vec<String> {
        vec!["flaky".into()]
    }

    fn process(&self, _: &mut Buffer, id: i64, _: &Cancel) -> Outcome {
        let mut tries = self.tries.lock().unwrap();
        let n = tries.entry(id).or_default();
        *n += 1;
        let (error, retry) = match id {
            9 => (Some("bad input".to_owned()), None),
            _ if i64::from(*n) < id => (Some(format!("busy ({n})")), Some(Retry::default())),
            _ => (None, None),
        };
        let record = Record {
            values: vec![
                Value::Int(id),
                error.clone().map_or(Value::Null, Value::Text),
            ],
        };
        match error {
            Some(error) => Outcome::Failed {
                record,
                error,
                retry,
                bytes: 0,
            },
            None => Outcome::Done { record, bytes: 0 },
        }
    }
}

/// The ids given, in that order.
struct Ids(Vec<i64>);

impl Source for Ids {
    type Item = i64;

    fn items(&self, _after: Option<&ItemKey>) -> Result<Items<'_, i64>> {
        Ok(Box::new(
            self.0
                .iter()
                .map(|&id| Ok(Found::Item(ItemKey::Int(id), id))),
        ))
    }

    fn again(
        &self,
        keys: Vec<ItemKey>,
        _after: Option<&ItemKey>,
    ) -> Result<Vec<crate::source::Again<i64>>> {
        Ok(crate::source::Again::each(keys, |key| match key {
            ItemKey::Int(id) => self.0.contains(id).then_some(*id),
            _ => None,
        }))
    }

    fn label(&self, key: &ItemKey) -> String {
        format!("id={key}")
    }

    fn fingerprint(&self, _: &mut Fingerprint) {}
}

type Stored = (i64, i64, Option<String>);

/// Runs `ids` through `Flaky` with three retries into SQLite; returns the
/// report, the rows (id, attempts, error) and the tries each item got.
fn run_flaky(ids: Vec<i64>, on_error: OnError) -> (Report, Vec<Stored>, HashMap<i64, u32>) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("out.db");
    let quick = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(5));
    let cfg = RunConfig {
        quarantine_at: None,
        sink: SinkSpec::parse(&format!("sqlite:{}", db.display())).unwrap(),
        table: "flaky".into(),
        min_workers: 2,
        max_workers: 3,
        queue: 2,
        retry: RetryPolicy::new(3).with_backoff(quick),
        rate: None,
        timeout: None,
        max_runtime: None,
        batch_size: 100,
        flush_interval: Duration::from_secs(1),
        on_error,
        resume: false,
        checkpoint: true,
        incremental: false,
        prune: false,
        window: 1000,
        shard: None,
    };
    let work = Flaky {
        schema: Schema {
            columns: vec![
                Column::new("id", ColumnType::Int),
                Column::new("error", ColumnType::Text),
            ],
            key: 0,
            stale: None,
        },
        tries: Arc::default(),
    };
    let tries = work.tries.clone();
    let report = run::run(
        cfg,
        "test",
        Ids(ids),
        work,
        Arc::new(Silent),
        &Cancel::new(),
    )
    .unwrap();
    let rows = crate::db::runtime()
        .unwrap()
        .block_on(async {
            let mut conn = crate::db::sqlite(&db).await?;
            anyhow::Ok(
                sqlx::query("SELECT id, attempts, error FROM flaky ORDER BY id")
                    .fetch_all(&mut conn)
                    .await?,
            )
        })
        .unwrap()
        .iter()
        .map(|r| (r.get("id"), r.get("attempts"), r.get("error")))
        .collect();
    let tries = tries.lock().unwrap().clone();
    (report, rows, tries)
}

#[test]
fn retried_items_record_their_attempts_and_the_last_error() {
    let (report, rows, tries) = run_flaky(vec![1, 2, 3, 4, 5, 9], OnError::Skip);
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!((report.summary.ok, report.summary.failed), (4, 2));
    let expected = [
        (1, 1, None),
        (2, 2, None),
        (3, 3, None),
        (4, 4, None),
        // Three retries are four tries: the fifth would have succeeded.
        (5, 4, Some("busy (4)".to_owned())),
        (9, 1, Some("bad input".to_owned())),
    ];
    assert_eq!(rows, expected);
    // Each try ran once: attempts counts them all.
    for (id, attempts, _) in expected {
        assert_eq!(tries[&id], attempts as u32, "id {id}");
    }
}

#[test]
fn fail_fast_waits_for_the_last_try() {
    let (report, rows, _) = run_flaky(vec![4, 3, 2, 1], OnError::Abort);
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!((report.summary.ok, report.summary.failed), (4, 0));
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn fail_fast_names_the_failed_item_by_its_key() {
    let (report, _, _) = run_flaky(vec![1, 9], OnError::Abort);
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.failure.as_deref(), Some("id=9: bad input"));
}

/// `n` files under the fixture tree, found independently of batchproc.
fn sample_files() -> u64 {
    walkdir::WalkDir::new("fixtures/sample")
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count() as u64
}

#[test]
fn a_token_cancelled_before_the_run_stops_it_before_it_starts() {
    use crate::pool::CancelReason;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("out.db");
    let cancel = Cancel::new();
    cancel.cancel_with(CancelReason::Failed);
    let run = super::Pipeline::files(["fixtures/sample"])
        .sink(format!("sqlite:{}", db.display()))
        .cancel(cancel)
        .run();
    assert!(matches!(run, Err(super::Error::Interrupted)), "{run:?}");
    assert!(!db.exists(), "the run touched its sink");
}

#[test]
fn one_token_serves_many_runs_and_a_failure_stops_only_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = Cancel::new();
    let run = |processor: &str, db: &str| {
        super::Pipeline::files(["fixtures/sample"])
            .processor(processor)
            .sink(format!("sqlite:{}", tmp.path().join(db).display()))
            .cancel(signals.clone())
            .run()
            .unwrap()
    };
    let failed = run("exec:false", "a.db");
    assert_eq!(failed.status, RunStatus::Failed);
    let next = run("sha256", "b.db");
    assert_eq!(next.status, RunStatus::Succeeded);
    assert_eq!(next.summary.ok, sample_files());
    assert!(!signals.is_cancelled());
}

#[test]
fn a_shard_out_of_range_or_of_a_queue_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("out.db");
    let sink = format!("sqlite:{}", db.display());
    let refusal = |pipeline: super::Pipeline| match pipeline.sink(&sink).run() {
        Err(super::Error::Config(e)) => e.to_string(),
        other => panic!("not refused as misconfigured: {other:?}"),
    };
    let files = || super::Pipeline::files(["fixtures/sample"]);
    assert!(refusal(files().shard(4, 3)).contains("numbered 1 to 3"));
    assert!(refusal(files().shard(1, 0)).contains("at least one shard"));
    // Refused before it connects: nothing listens on port 1.
    let queue = super::Pipeline::queue_of("nats://127.0.0.1:1", "jobs").shard(2, 3);
    assert!(refusal(queue).contains("already shared by its consumers"));
    assert!(!db.exists(), "the run touched its sink");
}
