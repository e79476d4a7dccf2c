//! What a worker does with one file: read it once for the content
//! processors ([`content`](super::content)), run the item processors
//! (`exec:`, `http:`) on its path, and build the record: `path`, `size`,
//! `mtime`, the processors' columns, with `--incremental` the poison
//! ledger's `failures` and `failed_run`, then `error`. With only item
//! processors the file is never opened: its size and mtime come from the
//! walk.

use std::fs::Metadata;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;

use super::content::{self, Vanished};
use super::walk::WalkError;
use super::FileItem;
use crate::pool::Cancel;
use crate::processor::registry::{self, Spec};
use crate::processor::{Buffer, Cx, Deadline, Outcome, Pass, Processor, Retry, Subject, Work};
use crate::record::{error_line, utc, Column, ColumnType, Record, Schema, Stale, Value};

/// The processors of a run, and the schema of the records they produce.
pub(crate) struct FileWork {
    processors: Vec<Box<dyn Processor>>,
    specs: Vec<String>,
    /// Each processor's first column among the processor columns, and its width.
    slots: Vec<(usize, usize)>,
    /// Whether any processor reads the file's content.
    reads: bool,
    follow: bool,
    timeout: Option<Duration>,
    /// `--incremental`: the `failures` and `failed_run` columns.
    ledger: bool,
    schema: Schema,
}

/// Why an item failed.
struct Failure {
    error: anyhow::Error,
    /// The processor columns, when the failing processor still had values.
    values: Option<Vec<Value>>,
    retry: Option<Retry>,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            error,
            values: None,
            retry: None,
        }
    }
}

impl FileWork {
    pub(super) fn new(
        specs: Vec<Spec>,
        follow: bool,
        timeout: Option<Duration>,
        ledger: bool,
    ) -> Self {
        let mut columns = vec![
            Column::new("path", ColumnType::Text),
            Column::new("size", ColumnType::Int),
            Column::new("mtime", ColumnType::Time),
        ];
        let texts = specs.iter().map(Spec::text).collect();
        let processors: Vec<Box<dyn Processor>> = specs.into_iter().map(|s| s.processor).collect();
        let mut slots = Vec::with_capacity(processors.len());
        for p in &processors {
            let produced = p.columns();
            slots.push((columns.len() - 3, produced.len()));
            columns.extend(produced);
        }
        if ledger {
            for name in crate::sink::sql::LEDGER_COLUMNS {
                columns.push(Column::new(name, ColumnType::Int));
            }
        }
        columns.push(Column::new("error", ColumnType::Text));
        FileWork {
            reads: processors
                .iter()
                .any(|p| !matches!(p.begin(), Pass::Item(_))),
            processors,
            specs: texts,
            slots,
            follow,
            timeout,
            ledger,
            schema: Schema {
                columns,
                key: 0,
                // A digest an earlier run wrote is only good while the
                // file's size and mtime are what they were.
                stale: Some(Stale {
                    unless_changed: vec!["size".into(), "mtime".into()],
                    columns: registry::output_columns(),
                }),
            },
        }
    }

    /// Columns written by processors.
    fn width(&self) -> usize {
        self.schema.columns.len() - 4 - self.ledger_width()
    }

    fn ledger_width(&self) -> usize {
        match self.ledger {
            true => crate::sink::sql::LEDGER_COLUMNS.len(),
            false => 0,
        }
    }
}

impl Work for FileWork {
    type Item = FileItem;

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn specs(&self) -> Vec<String> {
        self.specs.clone()
    }

    fn process(&self, buf: &mut Buffer, item: FileItem, cancel: &Cancel) -> Outcome {
        let cx = Cx {
            cancel,
            deadline: Deadline::start(self.timeout),
        };
        let walk_meta = item.meta.as_ref();
        let result = match &item.walk_error {
            Some(WalkError::Skip(reason)) => return Outcome::Skipped(reason.clone()),
            Some(WalkError::Failed(e)) => Err(anyhow!(e.clone()).into()),
            None if self.processors.is_empty() => Ok((walk_meta.cloned(), Vec::new())),
            None => self.run(buf, &item.path, walk_meta, &cx),
        };
        let mut values = Vec::with_capacity(self.schema.columns.len());
        values.push(Value::from_path(&item.path));
        match result {
            Ok((meta, mut produced)) => {
                push_meta(&mut values, meta.as_ref());
                values.append(&mut produced);
                // A success ends the run of failures, and the error.
                let cleared = 1 + self.ledger_width();
                values.extend(std::iter::repeat_n(Value::Null, cleared));
                Outcome::Done {
                    record: Record { values },
                    bytes: meta.map_or(0, |m| m.len()),
                }
            }
            // A read or a command cut short by cancellation is not the item's fault.
            Err(_) if cancel.is_cancelled() => Outcome::Abandoned,
            Err(f) if f.error.is::<Vanished>() => Outcome::Skipped(Vanished.to_string()),
            Err(failure) => {
                push_meta(&mut values, walk_meta);
                match failure.values {
                    Some(mut produced) => values.append(&mut produced),
                    None => values.extend(std::iter::repeat_n(Value::Null, self.width())),
                }
                if self.ledger {
                    // One more consecutive failed run, counted by this run.
                    values.push(Value::Int(item.tally.before + 1));
                    values.push(item.tally.run.map_or(Value::Null, Value::Int));
                }
                let error = error_line(&failure.error);
                values.push(Value::Text(error.clone()));
                Outcome::Failed {
                    record: Record { values },
                    error,
                    retry: failure.retry,
                    bytes: walk_meta.map_or(0, |m| m.len()),
                }
            }
        }
    }
}

impl FileWork {
    /// Runs every processor: the content ones over one read of the file,
    /// then the item ones, each value landing in its processor's columns.
    fn run(
        &self,
        buf: &mut Buffer,
        path: &Path,
        walk_meta: Option<&Metadata>,
        cx: &Cx,
    ) -> Result<(Option<Metadata>, Vec<Value>), Failure> {
        let (meta, content) = if self.reads {
            match content::read(&self.processors, buf, path, self.follow, cx) {
                Ok((meta, content)) => (Some(meta), content),
                Err(e) => return Err(content_failure(e, cx)),
            }
        } else {
            (walk_meta.cloned(), Vec::new())
        };
        if content.len() == self.width() {
            return Ok((meta, content));
        }
        let subject = Subject::File {
            path,
            size: meta.as_ref().map(|m| m.len()),
        };
        let mut content = content.into_iter();
        let mut values = Vec::with_capacity(self.width());
        for (p, &(start, width)) in self.processors.iter().zip(&self.slots) {
            let Pass::Item(item) = p.begin() else {
                values.extend(content.by_ref().take(width));
                continue;
            };
            match item.run(&subject, cx) {
                Ok(produced) => values.extend(produced),
                Err(failure) => {
                    let values = failure.values.map(|produced| {
                        let mut all = vec![Value::Null; self.width()];
                        all.splice(start..start + width, produced);
                        all
                    });
                    return Err(Failure {
                        error: anyhow!(failure.message),
                        values,
                        retry: failure.retry,
                    });
                }
            }
        }
        Ok((meta, values))
    }
}

/// A content processor's error; past the deadline it is a timeout, whatever
/// the reader or parser made of the read that was refused.
fn content_failure(error: anyhow::Error, cx: &Cx) -> Failure {
    match cx.deadline {
        Some(d) if d.passed() && !cx.cancel.is_cancelled() => Failure {
            error: anyhow!(d.message()),
            values: None,
            retry: Some(Retry::default()),
        },
        _ => error.into(),
    }
}

fn push_meta(values: &mut Vec<Value>, meta: Option<&Metadata>) {
    match meta {
        Some(m) => {
            values.push(Value::Int(m.len() as i64));
            let mtime = m.modified().ok().and_then(utc);
            values.push(mtime.map_or(Value::Null, Value::Time));
        }
        None => values.extend([Value::Null, Value::Null]),
    }
}
