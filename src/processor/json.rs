//! `json`: validates a JSON document, or a JSON Lines file (whitespace-separated
//! values), streaming with serde_json. `json_values` is the number of
//! top-level values; invalid JSON, or a file with no value at all, is an item
//! failure naming the line and column. JSON text must be UTF-8 (RFC 8259):
//! serde_json skips over strings it does not keep without checking them, so
//! the bytes are checked on the way in; a leading byte order mark is allowed.

use std::io::{BufReader, Read};

use anyhow::{bail, Result};
use serde::de::IgnoredAny;

use super::{Kind, Pass, Processor, ReadProcessor, Reads};
use crate::record::{Column, ColumnType, Value};

pub(super) static KIND: Kind = Kind {
    name: "json",
    reads: Reads::Content,
    argument: "",
    help: "top-level values of JSON or JSON Lines; bad JSON fails",
    columns: || vec![Column::new("json_values", ColumnType::Int)],
    parse: |_| Ok(Box::new(Json)),
};

pub(super) struct Json;

impl Processor for Json {
    fn kind(&self) -> &'static Kind {
        &KIND
    }
    fn begin(&self) -> Pass<'_> {
        Pass::Read(self)
    }
}

impl ReadProcessor for Json {
    fn read(&self, input: &mut dyn Read) -> Result<Vec<Value>> {
        let checked = Utf8Checked {
            inner: input,
            pending: Vec::new(),
            offset: 0,
        };
        let values = serde_json::Deserializer::from_reader(BufReader::new(checked))
            .into_iter::<IgnoredAny>();
        let mut count = 0i64;
        for value in values {
            if let Err(e) = value {
                bail!("json: {e}");
            }
            count += 1;
        }
        if count == 0 {
            bail!("json: no JSON value (empty file)");
        }
        Ok(vec![Value::Int(count)])
    }
}

/// Passes bytes through while checking they are UTF-8, across read
/// boundaries; drops a leading byte order mark.
struct Utf8Checked<R> {
    inner: R,
    /// The start of a character cut by the previous read.
    pending: Vec<u8>,
    /// Bytes passed so far, for the error message.
    offset: u64,
}

impl<R: Read> Read for Utf8Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = self.inner.read(buf)?;
        if self.offset == 0 && buf[..n].starts_with(b"\xef\xbb\xbf") {
            buf.copy_within(3..n, 0);
            n -= 3;
            self.offset = 3;
        }
        let mut check = std::mem::take(&mut self.pending);
        let check_start = self.offset - check.len() as u64;
        check.extend_from_slice(&buf[..n]);
        if let Err(e) = std::str::from_utf8(&check) {
            let bad_at_end = e.error_len().is_none() && n > 0;
            if !bad_at_end {
                let at = check_start + e.valid_up_to() as u64;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("invalid UTF-8 at byte offset {at}"),
                ));
            }
            self.pending = check[e.valid_up_to()..].to_vec();
        }
        self.offset += n as u64;
        Ok(n)
    }
}
