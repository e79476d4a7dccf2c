//! What a worker does with one file: open it once (never blocking on a FIFO
//! swapped in after the walk), read it once for every streaming processor,
//! hand a rewound reader to each parsing processor, run the item processors
//! (`exec:`, `http:`) on its path, and build the record. With only item
//! processors the file is never opened: its size and mtime come from the walk.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Buffer, Cx, Deadline, Outcome, Retry, Work};
use crate::pool::Cancel;
use crate::processor::{Accumulator, Pass, Processor, Subject};
use crate::record::{Column, ColumnType, Record, Schema, Value};
use crate::source::files::FileItem;

/// The processors of a run, and the schema of the records they produce.
pub struct FileWork {
    processors: Vec<Box<dyn Processor>>,
    /// Each processor's first column among the processor columns, and its width.
    slots: Vec<(usize, usize)>,
    /// Whether any processor reads the file's content.
    reads: bool,
    /// Without `--follow`, a symlink swapped in after the walk is not opened.
    follow: bool,
    timeout: Option<Duration>,
    schema: Schema,
}

impl FileWork {
    pub fn new(
        processors: Vec<Box<dyn Processor>>,
        follow: bool,
        timeout: Option<Duration>,
    ) -> Self {
        let mut columns = vec![
            Column::new("path", ColumnType::Text),
            Column::new("size", ColumnType::Int),
            Column::new("mtime", ColumnType::Time),
        ];
        let mut slots = Vec::with_capacity(processors.len());
        for p in &processors {
            let produced = p.columns();
            slots.push((columns.len() - 3, produced.len()));
            columns.extend(produced);
        }
        columns.push(Column::new("error", ColumnType::Text));
        FileWork {
            reads: processors
                .iter()
                .any(|p| !matches!(p.begin(), Pass::Item(_))),
            processors,
            slots,
            follow,
            timeout,
            schema: Schema { columns, key: 0 },
        }
    }

    /// Columns written by processors.
    fn width(&self) -> usize {
        self.schema.columns.len() - 4
    }
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

impl Work for FileWork {
    type Item = FileItem;

    fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Processes one item. Never panics on bad input: every failure ends up
    /// in `Outcome::error` with the record's processor columns left NULL
    /// (or, for an item processor, holding what it reported).
    fn process(&self, buf: &mut Buffer, item: FileItem, cancel: &Cancel) -> Outcome {
        let cx = Cx {
            cancel,
            deadline: Deadline::start(self.timeout),
        };
        let path = item.path();
        let walk_meta = item.meta.as_ref();
        let mut values = Vec::with_capacity(self.schema.columns.len());
        values.push(Value::from_path(path));
        let result = match &item.walk_error {
            Some(e) => Err(anyhow::anyhow!(e.clone()).into()),
            None if self.processors.is_empty() => Ok((walk_meta.cloned(), Vec::new())),
            None => self.run(buf, path, walk_meta, &cx),
        };
        // A read or a command cut short by cancellation is not the item's fault.
        let cancelled = result.is_err() && cancel.is_cancelled();
        let vanished = matches!(&result, Err(f) if f.error.is::<Vanished>());
        let (meta, error, retry) = match result {
            Ok((meta, mut produced)) => {
                push_meta(&mut values, meta.as_ref());
                values.append(&mut produced);
                (meta, None, None)
            }
            Err(failure) => {
                push_meta(&mut values, walk_meta);
                match failure.values {
                    Some(mut produced) => values.append(&mut produced),
                    None => values.extend(std::iter::repeat_n(Value::Null, self.width())),
                }
                let error = crate::record::error_line(&failure.error);
                (walk_meta.cloned(), Some(error), failure.retry)
            }
        };
        values.push(error.clone().map_or(Value::Null, Value::Text));
        Outcome {
            cancelled,
            vanished,
            record: Record {
                values,
                failed: error.is_some(),
            },
            error,
            bytes: meta.map_or(0, |m| m.len()),
            retry,
        }
    }

    fn label(&self, record: &Record) -> String {
        use std::os::unix::ffi::OsStrExt;
        let path = match &record.values[0] {
            Value::Text(s) => std::path::Path::new(s.as_str()),
            Value::Bytes(b) => std::path::Path::new(std::ffi::OsStr::from_bytes(b)),
            _ => std::path::Path::new(""),
        };
        crate::record::DisplayPath(path).to_string()
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
            match self.read_file(buf, path, cx) {
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
                        error: anyhow::anyhow!(failure.message),
                        values,
                        retry: failure.retry,
                    });
                }
            }
        }
        Ok((meta, values))
    }

    /// Reads the file once for the content processors; their values in order.
    fn read_file(&self, buf: &mut Buffer, path: &Path, cx: &Cx) -> Result<(Metadata, Vec<Value>)> {
        let nofollow = if self.follow { 0 } else { libc::O_NOFOLLOW };
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | nofollow)
            .open(path)
        {
            Ok(file) => file,
            // Gone between the walk and the read (a live tree: logs, spools).
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Vanished.into()),
            Err(e) => return Err(e).context("open"),
        };
        let meta = file.metadata().context("stat")?;
        if !meta.is_file() {
            bail!("not a regular file");
        }
        let mut file = CancellableRead {
            file,
            cancel: cx.cancel,
            deadline: cx.deadline,
        };
        let mut passes: Vec<Pass> = self
            .processors
            .iter()
            .map(|p| p.begin())
            .filter(|p| !matches!(p, Pass::Item(_)))
            .collect();
        let streams: Vec<&mut Box<dyn Accumulator>> = passes
            .iter_mut()
            .filter_map(|p| match p {
                Pass::Stream(acc) => Some(acc),
                _ => None,
            })
            .collect();
        if !streams.is_empty() {
            stream_pass(&mut file, &mut buf.0, streams)?;
        }
        let mut values = Vec::new();
        for pass in passes {
            values.extend(match pass {
                Pass::Stream(acc) => acc.finish()?,
                Pass::Read(parser) => {
                    file.file.seek(SeekFrom::Start(0)).context("seek")?;
                    parser.read(&mut file)?
                }
                Pass::Item(_) => Vec::new(),
            });
        }
        Ok((meta, values))
    }
}

/// A content processor's error; past the deadline it is a timeout, whatever
/// the reader or parser made of the read that was refused.
fn content_failure(error: anyhow::Error, cx: &Cx) -> Failure {
    match cx.deadline {
        Some(d) if d.passed() && !cx.cancel.is_cancelled() => Failure {
            error: anyhow::anyhow!(d.message()),
            values: None,
            retry: Some(Retry::default()),
        },
        _ => error.into(),
    }
}

fn stream_pass(
    file: &mut CancellableRead,
    buf: &mut [u8],
    mut streams: Vec<&mut Box<dyn Accumulator>>,
) -> Result<()> {
    loop {
        let n = match file.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read"),
        };
        for acc in streams.iter_mut() {
            acc.update(&buf[..n])?;
        }
    }
}

/// The file disappeared between the walk and its read.
#[derive(Debug)]
struct Vanished;

impl std::fmt::Display for Vanished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("vanished before it was read")
    }
}

impl std::error::Error for Vanished {}

/// A file that stops yielding bytes once the run is cancelled or the item's
/// deadline passes, so a huge file in flight does not hold up a Ctrl-C, a
/// fail-fast abort or `--timeout`.
struct CancellableRead<'a> {
    file: File,
    cancel: &'a Cancel,
    deadline: Option<Deadline>,
}

impl Read for CancellableRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("run cancelled"));
        }
        if let Some(d) = self.deadline.filter(Deadline::passed) {
            return Err(std::io::Error::new(ErrorKind::TimedOut, d.message()));
        }
        self.file.read(buf)
    }
}

fn push_meta(values: &mut Vec<Value>, meta: Option<&Metadata>) {
    match meta {
        Some(m) => {
            values.push(Value::Int(m.len() as i64));
            let mtime = m.modified().ok().and_then(crate::record::utc);
            values.push(mtime.map_or(Value::Null, Value::Time));
        }
        None => values.extend([Value::Null, Value::Null]),
    }
}
