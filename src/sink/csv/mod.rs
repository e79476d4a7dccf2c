//! The CSV sink: a header row, then one row per record in completion order.
//! Paths that are not UTF-8 are written as their raw bytes.
//!
//! A CSV file cannot share a transaction with a database, so its checkpoint
//! lives in a small SQLite state file beside it (`PATH.state.db`) and records
//! the CSV's committed length: each batch is written, flushed and fsynced
//! before the checkpoint commits, and a resume first truncates the CSV back
//! to that length. Without `--resume` a run rewrites the file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::sqlite::StateDb;
use super::{open_state, Sink};
use crate::checkpoint::{runs, CheckpointUpdate, RunEnd, RunSpec, RunStart};
use crate::db::Conn;
use crate::pool::Cancel;
use crate::record::{Record, Schema, Value};

/// Where the state file of a CSV sink at `path` lives; none for a device or
/// FIFO (`csv:/dev/null`), which cannot be truncated back.
pub(crate) fn state_path(path: &Path) -> Option<PathBuf> {
    let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
    (!special).then(|| {
        let mut name = path.as_os_str().to_owned();
        name.push(".state.db");
        PathBuf::from(name)
    })
}

pub(crate) struct CsvSink {
    writer: csv::Writer<Box<dyn Write + Send>>,
    /// The CSV file (none for stdout): synced per batch and truncated on resume.
    file: Option<File>,
    state: Option<State>,
    header: Vec<String>,
    started: bool,
    row: Vec<Vec<u8>>,
}

struct State {
    db: StateDb,
    run_id: Option<i64>,
}

impl CsvSink {
    pub(crate) fn create(path: &Path, cancel: Cancel) -> Result<Self> {
        // The state file first: it holds the sink for the run, and a second
        // run is refused before it touches the CSV.
        let state = match state_path(path) {
            Some(state_path) => {
                crate::db::check_file_path(path, "CSV")?;
                let mut db = open_state(&state_path, cancel)?;
                db.set_up()?;
                Some(State { db, run_id: None })
            }
            None => None,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let out = BufWriter::with_capacity(256 * 1024, file.try_clone().context("dup")?);
        Ok(Self::with_writer(Box::new(out), Some(file), state))
    }

    pub(crate) fn stdout() -> Self {
        Self::with_writer(Box::new(BufWriter::new(std::io::stdout())), None, None)
    }

    fn with_writer(out: Box<dyn Write + Send>, file: Option<File>, state: Option<State>) -> Self {
        CsvSink {
            writer: csv::WriterBuilder::new().from_writer(out),
            file,
            state,
            header: Vec::new(),
            started: false,
            row: Vec::new(),
        }
    }

    /// Starts a fresh file: truncated, with the header.
    fn start_fresh(&mut self) -> Result<()> {
        if let Some(file) = &self.file {
            if file.metadata().is_ok_and(|m| m.is_file()) {
                file.set_len(0).context("truncate csv")?;
            }
        }
        self.writer.write_record(&self.header)?;
        self.writer.flush().context("write csv")?;
        self.started = true;
        Ok(())
    }

    /// Flushes, syncs and returns the committed length of the file.
    fn sync(&mut self) -> Result<Option<u64>> {
        self.writer.flush().context("write csv")?;
        match &mut self.file {
            Some(file) if file.metadata().is_ok_and(|m| m.is_file()) => {
                file.sync_data().context("fsync csv")?;
                Ok(Some(file.stream_position().context("csv position")?))
            }
            _ => Ok(None),
        }
    }
}

impl Sink for CsvSink {
    fn prepare(&mut self, schema: &Schema) -> Result<()> {
        self.header = schema.columns.iter().map(|c| c.name.clone()).collect();
        Ok(())
    }

    fn start_run(&mut self, spec: &RunSpec) -> Result<Option<RunStart>> {
        let Some(state) = &mut self.state else {
            return Ok(None);
        };
        let mut start = state
            .db
            .write(async |conn| runs::start_run(Conn::Sqlite(conn), spec).await)?;
        state.run_id = Some(start.run_id);
        // A CSV is only appended to: a retried item would get a second row.
        let failed = std::mem::take(&mut start.point.retry).len();
        if failed > 0 {
            if let Some(notice) = &mut start.notice {
                *notice = notice.replace(
                    &format!(", retrying the {failed} that failed"),
                    &format!("; the {failed} that failed are not retried into a CSV (run again without --resume to redo all)"),
                );
            }
        }
        match (start.resumed, start.csv_length, &mut self.file) {
            (true, Some(len), Some(file)) => {
                // Whatever an attempt wrote after its last checkpoint goes.
                file.set_len(len)
                    .context("truncate csv to its checkpoint")?;
                file.seek(SeekFrom::Start(len))?;
                self.started = true;
            }
            _ => {
                self.start_fresh()?;
                if let Some(len) = self.sync()? {
                    let db = &mut self.state.as_mut().expect("checked above").db;
                    let update = CheckpointUpdate::default();
                    db.rt.block_on(runs::record(
                        Conn::Sqlite(&mut db.conn),
                        start.run_id,
                        &update,
                        Some(len),
                    ))?;
                }
            }
        }
        Ok(Some(start))
    }

    fn write(
        &mut self,
        batch: &[Record],
        _encoded: Option<&[u8]>,
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()> {
        if !self.started {
            self.start_fresh()?;
        }
        for record in batch {
            self.row.clear();
            self.row.extend(record.values.iter().map(field));
            self.writer.write_record(&self.row)?;
        }
        let Some(update) = checkpoint else {
            self.writer.flush().context("write csv")?;
            return Ok(());
        };
        let len = self.sync()?;
        if let Some(State {
            db,
            run_id: Some(run_id),
        }) = &mut self.state
        {
            let run_id = *run_id;
            db.write(async |conn| runs::record(Conn::Sqlite(conn), run_id, update, len).await)
                .context("committing the CSV checkpoint")?;
        }
        Ok(())
    }

    fn set_cursor(&mut self, upto: &str) -> Result<()> {
        let Some(State {
            db,
            run_id: Some(run_id),
        }) = &mut self.state
        else {
            bail!("no run started");
        };
        let run_id = *run_id;
        db.write(async |conn| runs::set_cursor(Conn::Sqlite(conn), run_id, upto).await)
    }

    fn end_run(&mut self, end: &RunEnd) -> Result<()> {
        if let Some(State {
            db,
            run_id: Some(run_id),
        }) = &mut self.state
        {
            let run_id = *run_id;
            db.write(async |conn| runs::end_run(Conn::Sqlite(conn), run_id, end).await)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if !self.started {
            self.start_fresh()?;
        }
        self.sync()?;
        // Closed, SQLite folds the state file's log back into it and
        // removes it, as the SQLite sink's close does: a dry run later
        // reads the file alone, touching nothing.
        if let Some(State { db, .. }) = self.state.take() {
            use sqlx::Connection;
            db.rt
                .block_on(db.conn.close())
                .context("closing the CSV state file")?;
        }
        Ok(())
    }
}

fn field(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Text(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.clone(),
        Value::Time(t) => Value::format_time(t).into_bytes(),
        Value::Bool(b) => b.to_string().into_bytes(),
    }
}
