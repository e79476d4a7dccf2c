//! What a worker does with one file: open it once (never blocking on a FIFO
//! swapped in after the walk), read it once for every streaming processor,
//! hand a rewound reader to each parsing processor, and build the record.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context, Result};

use super::{Buffer, Outcome, Work};
use crate::pool::Cancel;
use crate::processor::{Accumulator, Pass, Processor};
use crate::record::{Column, ColumnType, Record, Schema, Value};
use crate::source::files::FileItem;

/// The processors of a run, and the schema of the records they produce.
pub struct FileWork {
    processors: Vec<Box<dyn Processor>>,
    /// Without `--follow`, a symlink swapped in after the walk is not opened.
    follow: bool,
    schema: Schema,
}

impl FileWork {
    pub fn new(processors: Vec<Box<dyn Processor>>, follow: bool) -> Self {
        let mut columns = vec![
            Column::new("path", ColumnType::Text),
            Column::new("size", ColumnType::Int),
            Column::new("mtime", ColumnType::Time),
        ];
        columns.extend(processors.iter().flat_map(|p| p.columns()));
        columns.push(Column::new("error", ColumnType::Text));
        FileWork {
            processors,
            follow,
            schema: Schema { columns, key: 0 },
        }
    }
}

impl Work for FileWork {
    type Item = FileItem;

    fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Processes one item. Never panics on bad input: every failure ends up
    /// in `Outcome::error` with the record's processor columns left NULL.
    fn process(&self, buf: &mut Buffer, item: FileItem, cancel: &Cancel) -> Outcome {
        let path = item.path().to_path_buf();
        let FileItem {
            meta: walk_meta,
            walk_error,
            ..
        } = item;
        let path = &path;
        let mut values = Vec::with_capacity(self.schema.columns.len());
        values.push(Value::from_path(path));
        let result = match walk_error {
            Some(e) => Err(anyhow::anyhow!(e)),
            None if self.processors.is_empty() => Ok((walk_meta.clone(), Vec::new())),
            None => self.read_file(buf, path, cancel),
        };
        // A read cut short by cancellation is not the item's fault.
        let cancelled = result.is_err() && cancel.is_cancelled();
        let vanished = matches!(&result, Err(e) if e.is::<Vanished>());
        let (meta, error) = match result {
            Ok((meta, mut produced)) => {
                push_meta(&mut values, meta.as_ref());
                values.append(&mut produced);
                (meta, None)
            }
            Err(e) => {
                push_meta(&mut values, walk_meta.as_ref());
                let nulls = self.schema.columns.len() - 1 - values.len();
                values.extend(std::iter::repeat_n(Value::Null, nulls));
                (walk_meta, Some(crate::record::error_line(&e)))
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
            retry: None,
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
    fn read_file(
        &self,
        buf: &mut Buffer,
        path: &std::path::Path,
        cancel: &Cancel,
    ) -> Result<(Option<Metadata>, Vec<Value>)> {
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
        let mut file = CancellableRead { file, cancel };
        let mut passes: Vec<Pass> = self.processors.iter().map(|p| p.begin()).collect();
        let streams: Vec<&mut Box<dyn Accumulator>> = passes
            .iter_mut()
            .filter_map(|p| match p {
                Pass::Stream(acc) => Some(acc),
                Pass::Read(_) => None,
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
            });
        }
        Ok((Some(meta), values))
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

/// A file that stops yielding bytes once the run is cancelled, so a huge
/// file in flight does not hold up a Ctrl-C or a fail-fast abort.
struct CancellableRead<'a> {
    file: File,
    cancel: &'a Cancel,
}

impl Read for CancellableRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other("run cancelled"));
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
