//! Reading a file once for every content processor: opened without ever
//! blocking (a FIFO swapped in after the walk fails the item instead of
//! hanging the run), read in chunks that feed every streaming processor,
//! then rewound for each parsing one. Reads stop at the next chunk once
//! the run is cancelled or the item's deadline passes.
//!
//! A large file read while some CPU has no busy worker on it (the tail of
//! a run, or fewer files than workers) is read in blocks on rayon's pool:
//! the next block is read while the last is hashed, and BLAKE3 hashes a
//! block on several threads. While every CPU has a worker, plain chunks
//! are faster (they stay in the core's cache; measured), so the choice is
//! made again for every block.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustix::fs::OFlags;

use crate::processor::{Accumulator, Buffer, Cx, Deadline, Pass, Processor};

/// Files from this size on are read in large blocks.
const LARGE_FILE: u64 = 32 << 20;
/// The size of a large block.
const BLOCK: usize = 1 << 20;
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
        stream(&mut file, buf, meta.len() >= LARGE_FILE, streams)?;
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

/// Feeds the file to every streaming processor: in chunks, or for a large
/// file in large blocks while there are spare cores.
fn stream(
    file: &mut CancellableRead,
    buf: &mut Buffer,
    large: bool,
    mut streams: Vec<&mut Box<dyn Accumulator>>,
) -> Result<()> {
    loop {
        if large && buf.spare_cores() {
            let spare = buf.spare_cores.clone();
            let blocks = buf
                .blocks
                .get_or_insert_with(|| Box::new([vec![0; BLOCK], vec![0; BLOCK]]));
            let spare = || spare.as_ref().is_some_and(|spare| spare());
            if stream_blocks(file, blocks, &mut streams, spare)? {
                return Ok(());
            }
        }
        let n = fill(file, &mut buf.chunk)?;
        if n == 0 {
            return Ok(());
        }
        for acc in streams.iter_mut() {
            acc.update(&buf.chunk[..n])?;
        }
    }
}

/// Feeds blocks, reading the next while the processors take the last, as
/// long as `spare` holds; true at the end of the file.
fn stream_blocks(
    file: &mut CancellableRead,
    blocks: &mut [Vec<u8>; 2],
    streams: &mut [&mut Box<dyn Accumulator>],
    spare: impl Fn() -> bool,
) -> Result<bool> {
    let [last, next] = blocks;
    let mut filled = fill(file, last)?;
    while filled > 0 {
        let block = &last[..filled];
        if !spare() {
            // Back to plain chunks after this block.
            for acc in streams.iter_mut() {
                acc.update(block)?;
            }
            return Ok(false);
        }
        let (read, fed) = rayon::join(
            || fill(file, next),
            || {
                streams
                    .iter_mut()
                    .try_for_each(|acc| acc.update_large(block))
            },
        );
        fed?;
        filled = read?;
        std::mem::swap(last, next);
    }
    Ok(true)
}

/// Reads until `block` is full or the file ends; the bytes read.
fn fill(file: &mut CancellableRead, block: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < block.len() {
        match file.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read"),
        }
    }
    Ok(filled)
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
