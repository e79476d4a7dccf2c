//! `csv`: data rows (after the header) and columns of a CSV file, counted
//! with csv-core (the csv crate's parser) as the bytes stream by: field
//! contents are never kept, so one huge record costs no memory. Rows of
//! unequal length are an item failure, and so is a quoted field left open
//! at the end of the file: the parser reads that as one long last field (or
//! a last record too short), so it is caught by counting quote characters,
//! which RFC 4180 CSV always has in pairs.

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
        let mut shape = Shape::default();
        let mut parser = csv_core::Reader::new();
        // Field contents go here and are dropped: only the counts matter.
        let mut scratch = [0u8; 4096];
        let mut buf = vec![0u8; 64 * 1024];
        // A short record, held until it is known whether it was the last.
        let mut short: Option<(u64, usize, u64)> = None;
        'read: loop {
            let n = loop {
                match counting.read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    read => break read?,
                }
            };
            let mut data = &buf[..n];
            loop {
                let (result, nin, _) = parser.read_field(data, &mut scratch);
                shape.consumed(&data[..nin], counting.read - data.len() as u64);
                data = &data[nin..];
                match result {
                    csv_core::ReadFieldResult::InputEmpty => break,
                    csv_core::ReadFieldResult::OutputFull => {}
                    csv_core::ReadFieldResult::Field { record_end } => {
                        if let Some((line, len, _)) = short {
                            // More came after it: a plain ragged row.
                            bail!(ragged(line, len, shape.expected()));
                        }
                        shape.fields += 1;
                        if record_end {
                            short = shape.end_record(parser.line());
                        }
                    }
                    csv_core::ReadFieldResult::End => break 'read,
                }
            }
        }
        let open_quote = counting.quotes % 2 == 1;
        if let Some((line, len, start)) = short {
            if open_quote && counting.last_opening.is_some_and(|at| at >= start) {
                bail!("csv: line {line}: quoted field never closed (unterminated '\"')");
            }
            bail!(ragged(line, len, shape.expected()));
        }
        if open_quote {
            bail!("csv: unterminated quoted field (odd number of '\"' characters)");
        }
        Ok(vec![
            Value::Int(shape.rows),
            Value::Int(shape.expected() as i64),
        ])
    }
}

fn ragged(line: u64, len: usize, expected: usize) -> String {
    format!("csv: line {line}: record has {len} fields, expected {expected}")
}

/// Rows and fields counted so far, and where the current record began.
#[derive(Default)]
struct Shape {
    header: Option<usize>,
    rows: i64,
    /// Fields of the record being read.
    fields: usize,
    /// Between records: blank lines are skipped until a record begins.
    started: bool,
    /// Newlines before the current record (its line is one more).
    lines_before: u64,
    /// Byte offset where the current record began.
    start: u64,
}

impl Shape {
    fn expected(&self) -> usize {
        self.header.unwrap_or(0)
    }

    /// Notes the bytes the parser took, which began at byte `offset`.
    fn consumed(&mut self, bytes: &[u8], offset: u64) {
        if self.started {
            return;
        }
        let blank = bytes
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .count();
        self.lines_before += memchr::memchr_iter(b'\n', &bytes[..blank]).count() as u64;
        if blank < bytes.len() {
            self.started = true;
            self.start = offset + blank as u64;
        }
    }

    /// Ends a record; a data record with a field count other than the
    /// header's is returned as (line, fields, start byte).
    fn end_record(&mut self, parser_line: u64) -> Option<(u64, usize, u64)> {
        let fields = std::mem::take(&mut self.fields);
        let line = self.lines_before + 1;
        self.started = false;
        // The parser has counted the record's own newlines, its
        // terminator included.
        self.lines_before = parser_line - 1;
        match self.header {
            None => {
                self.header = Some(fields);
                None
            }
            Some(expected) if fields != expected => Some((line, fields, self.start)),
            Some(_) => {
                self.rows += 1;
                None
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(text: &[u8]) -> Result<(i64, i64)> {
        let values = Csv.read(&mut &text[..])?;
        match values[..] {
            [Value::Int(rows), Value::Int(columns)] => Ok((rows, columns)),
            _ => unreachable!(),
        }
    }

    fn error(text: &[u8]) -> String {
        counts(text).unwrap_err().to_string()
    }

    #[test]
    fn counts_rows_and_columns_as_the_csv_crate_does() {
        assert_eq!(counts(b"").unwrap(), (0, 0));
        assert_eq!(counts(b"a,b\n").unwrap(), (0, 2));
        assert_eq!(counts(b"a,b\n1,2\n3,4").unwrap(), (2, 2));
        // Blank lines are skipped; CRLF ends a record; a BOM is not data.
        assert_eq!(
            counts(b"\xef\xbb\xbfa,b\r\n\r\n1,2\r\n\n\n3,4\r\n").unwrap(),
            (2, 2)
        );
        // A quoted field holds separators, quotes and newlines.
        assert_eq!(counts(b"a,b\n\"x,\"\"y\"\"\nz\",2\n3,4\n").unwrap(), (2, 2));
    }

    #[test]
    fn a_ragged_row_is_named_by_the_line_it_starts_on() {
        assert_eq!(
            error(b"a,b\n1,2\n3\n4,5\n"),
            "csv: line 3: record has 1 fields, expected 2"
        );
        // After blank lines and a field spanning lines.
        assert_eq!(
            error(b"a,b\n\n\"1\n\n\",2\n\n3,4,5\n"),
            "csv: line 7: record has 3 fields, expected 2"
        );
        assert_eq!(
            error(b"a,b\n1,2\n3,4,5"),
            "csv: line 3: record has 3 fields, expected 2"
        );
    }

    #[test]
    fn a_quote_left_open_is_named() {
        assert_eq!(
            error(b"a,b\n1,2\n\"3,4\n5,6\n"),
            "csv: line 3: quoted field never closed (unterminated '\"')"
        );
        assert_eq!(
            error(b"a,b\n1,\"2\n3,4\n"),
            "csv: unterminated quoted field (odd number of '\"' characters)"
        );
    }

    #[test]
    fn records_longer_than_every_buffer_are_counted() {
        let mut text = b"a,b\n\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', 300_000));
        text.extend_from_slice(b"\",2\n");
        text.extend(std::iter::repeat_n(b'y', 200_000));
        text.extend_from_slice(b",3\n");
        assert_eq!(counts(&text).unwrap(), (2, 2));
    }
}
