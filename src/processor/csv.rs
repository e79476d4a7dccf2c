//! `csv`: data rows (after the header) and columns of a CSV file, read with
//! the csv crate. Rows of unequal length are an item failure, and so is a
//! quoted field left open at the end of the file: the crate reads that as one
//! long last field, so it is caught by counting quote characters, which RFC
//! 4180 CSV always has in pairs.

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
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(&mut counting);
        let columns = reader.byte_headers().map_err(describe)?.len();
        let mut rows = 0i64;
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).map_err(describe)? {
            rows += 1;
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

/// Passes bytes through, counting `"` characters on the way.
struct QuoteCounter<'a> {
    inner: &'a mut dyn Read,
    quotes: u64,
}

impl Read for QuoteCounter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.quotes += memchr::memchr_iter(b'"', &buf[..n]).count() as u64;
        Ok(n)
    }
}
