//! Reading a file once for every content processor: opened without ever
//! blocking (a FIFO swapped in after the walk fails the item instead of
//! hanging the run), read in chunks that feed every streaming processor,
//! then rewound for each parsing one. Reads stop at the next chunk once
//! the run is cancelled or the item's deadline passes.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::fs::OFlags;

use crate::processor::{Accumulator, Buffer, Cx, Deadline, Pass, Processor};
use crate::record::Value;

/// The file disappeared between the walk and its read.
#[derive(Debug)]
pub(super) struct Vanished;

impl std::fmt::Display for Vanished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("vanished before it was read")
    }
}

impl std::error::Error for Vanished {}

/// Reads the file at `path` once for the content processors among
/// `processors`; returns its metadata and their values, in order.
pub(super) fn read(
    processors: &[Box<dyn Processor>],
    buf: &mut Buffer,
    path: &Path,
    follow: bool,
    cx: &Cx,
) -> Result<(Metadata, Vec<Value>)> {
    // Without --follow, a symlink swapped in after the walk is not opened.
    let nofollow = if follow {
        OFlags::empty()
    } else {
        OFlags::NOFOLLOW
    };
    let flags = OFlags::NONBLOCK | OFlags::NOCTTY | nofollow;
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
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
    let mut file = CancellableRead { file, cx: *cx };
    let mut passes: Vec<Pass> = processors
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
        stream(&mut file, &mut buf.0, streams)?;
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

/// Feeds every chunk of the file to every streaming processor.
fn stream(
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

/// A file that stops yielding bytes once the run is cancelled or the item's
/// deadline passes, so a huge file in flight does not hold up a Ctrl-C, a
/// fail-fast abort or `--timeout`.
struct CancellableRead<'a> {
    file: File,
    cx: Cx<'a>,
}

impl Read for CancellableRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cx.cancel.is_cancelled() {
            return Err(std::io::Error::other("run cancelled"));
        }
        if let Some(d) = self.cx.deadline.filter(Deadline::passed) {
            return Err(std::io::Error::new(ErrorKind::TimedOut, d.message()));
        }
        self.file.read(buf)
    }
}
