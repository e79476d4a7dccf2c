//! `csv`: data rows (after the header) and columns of a CSV file, read with
//! the csv crate. Rows of unequal length are an item failure, and so is a
//! quoted field left open at the end of the file: the crate reads that as one
//! long last field (or a last record too short), so it is caught by counting
//! quote characters, which RFC 4180 CSV always has in pairs.

use std::io::Read;

use anyhow::{bail, Result};

use super::{Kind, Pass, Processor, ReadProcessor, Reads};
use crate::record::{Column, ColumnType, Value};

pub(super) static KIND: Kind = Kind {
    name: "csv",
    reads: Reads::Content,
    argument: "",
    help: "data rows and columns of CSV; bad CSV fails",
    columns: || {
        vec![
            Column::new("csv_rows", ColumnType::Int),
            Column::new("csv_columns", ColumnType::Int),
        ]
    },
    parse: |_| Ok(Box::new(Csv)),
};

pub(super) struct Csv;

impl Processor for Csv {
    fn kind(&self) -> &'static Kind {
        &KIND
    }
    fn begin(&self) -> Pass<'_> {
        Pass::Read(self)
    }
}

impl ReadProcessor for Csv {
    fn read(&self, input: &mut dyn Read) -> Result<Vec<Value>> {
        let mut counting = QuoteCounter {
            inner: input,
            quotes: 0,
            read: 0,
            previous: None,
            last_opening: None,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(&mut counting);
        let columns = reader.byte_headers().map_err(describe)?.len();
        let mut rows = 0i64;
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => rows += 1,
                Ok(false) => break,
                Err(e) => {
                    // A quote left open swallows the rest of the file into
                    // one short last record: name that, not the field count.
                    let last = matches!(reader.read_byte_record(&mut record), Ok(false));
                    drop(reader);
                    let start = e.position().map_or(0, |p| p.byte());
                    let opened = counting.last_opening.is_some_and(|at| at >= start);
                    if last && opened && counting.quotes % 2 == 1 {
                        let line = e.position().map_or(0, |p| p.line());
                        bail!("csv: line {line}: quoted field never closed (unterminated '\"')");
                    }
                    return Err(describe(e));
                }
            }
        }
        drop(reader);
        if counting.quotes % 2 == 1 {
            bail!("csv: unterminated quoted field (odd number of '\"' characters)");
        }
        Ok(vec![Value::Int(rows), Value::Int(columns as i64)])
    }
}

fn describe(e: csv::Error) -> anyhow::Error {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let line = pos.as_ref().map_or(0, |p| p.line());
            anyhow::anyhow!("csv: line {line}: record has {len} fields, expected {expected_len}")
        }
        _ => anyhow::anyhow!("csv: {e}"),
    }
}

/// Passes bytes through, counting `"` characters on the way and noting
/// where the last one that can open a quoted field (at the start of a
/// field) was.
struct QuoteCounter<'a> {
    inner: &'a mut dyn Read,
    quotes: u64,
    read: u64,
    previous: Option<u8>,
    last_opening: Option<u64>,
}

impl Read for QuoteCounter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for i in memchr::memchr_iter(b'"', &buf[..n]) {
            self.quotes += 1;
            let before = if i == 0 {
                self.previous
            } else {
                Some(buf[i - 1])
            };
            if matches!(before, None | Some(b',' | b'\n' | b'\r')) {
                self.last_opening = Some(self.read + i as u64);
            }
        }
        if n > 0 {
            self.previous = Some(buf[n - 1]);
        }
        self.read += n as u64;
        Ok(n)
    }
}
