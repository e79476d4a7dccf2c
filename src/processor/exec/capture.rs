//! Capturing a command's output: the first part of stdout (for `output`)
//! and of stderr (for the error message), the excess read and dropped so
//! the command never blocks on a full pipe.

use std::io::Read;

use crate::record::Value;

/// Bytes of stdout kept in `output`.
pub(super) const OUTPUT_CAP: usize = 64 * 1024;
/// Bytes of stderr kept for the error message.
pub(super) const STDERR_CAP: usize = 16 * 1024;

/// The first part of a stream, and how much more there was.
pub(super) struct Capture {
    pub(super) kept: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl Capture {
    pub(super) fn new(cap: usize) -> Self {
        Capture {
            kept: Vec::new(),
            cap,
            dropped: 0,
        }
    }

    /// Reads what is there; false at the end of the stream (or on an error,
    /// which ends it too).
    pub(super) fn fill(&mut self, pipe: &mut impl Read, buf: &mut [u8]) -> bool {
        match pipe.read(buf) {
            Ok(0) => false,
            Ok(n) => {
                let room = self.cap - self.kept.len();
                let keep = n.min(room);
                self.kept.extend_from_slice(&buf[..keep]);
                self.dropped += (n - keep) as u64;
                true
            }
            Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
        }
    }

    /// stdout without trailing whitespace, as text when it is UTF-8. A
    /// truncated output is cut at a character boundary and says so at its end.
    pub(super) fn into_output(self) -> Value {
        let Capture {
            mut kept, dropped, ..
        } = self;
        if dropped > 0 {
            let total = kept.len() as u64 + dropped;
            if let Err(e) = std::str::from_utf8(&kept) {
                if e.error_len().is_none() {
                    kept.truncate(e.valid_up_to());
                }
            }
            let kept_len = kept.len();
            kept.extend_from_slice(
                format!("\n[batchproc: output truncated: kept {kept_len} of {total} bytes]")
                    .as_bytes(),
            );
        } else {
            let end = kept
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            kept.truncate(end);
        }
        match String::from_utf8(kept) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        }
    }

    /// The first non-blank line, trimmed and cut at 300 characters, for an
    /// error message.
    pub(super) fn first_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.kept);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        const MAX: usize = 300;
        Some(match line.char_indices().nth(MAX) {
            Some((i, _)) => format!("{}…", &line[..i]),
            None => line.to_owned(),
        })
    }
}
