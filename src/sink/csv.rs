//! The CSV sink: a header row, then one row per record in completion order.
//! Paths that are not UTF-8 are written as their raw bytes. Each batch is
//! flushed; the file is fsynced at the end. Re-running rewrites the file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::Sink;
use crate::record::{Record, Schema, Value};

pub struct CsvSink {
    writer: csv::Writer<Box<dyn Write + Send>>,
    file: Option<File>,
    row: Vec<Vec<u8>>,
}

impl CsvSink {
    pub fn create(path: &Path) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let out: Box<dyn Write + Send> = Box::new(BufWriter::with_capacity(
            256 * 1024,
            file.try_clone().context("dup")?,
        ));
        Ok(Self::with_writer(out, Some(file)))
    }

    pub fn stdout() -> Self {
        Self::with_writer(Box::new(BufWriter::new(std::io::stdout())), None)
    }

    fn with_writer(out: Box<dyn Write + Send>, file: Option<File>) -> Self {
        CsvSink {
            writer: csv::WriterBuilder::new().from_writer(out),
            file,
            row: Vec::new(),
        }
    }
}

impl Sink for CsvSink {
    fn prepare(&mut self, schema: &Schema) -> Result<()> {
        self.writer
            .write_record(schema.columns.iter().map(|c| c.name.as_bytes()))?;
        self.writer.flush()?;
        Ok(())
    }

    fn write(&mut self, batch: &[Record]) -> Result<()> {
        for record in batch {
            self.row.clear();
            self.row.extend(record.values.iter().map(field));
            self.writer.write_record(&self.row)?;
        }
        self.writer.flush().context("write csv")?;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.writer.flush().context("write csv")?;
        // Only a regular file can be synced (csv:/dev/null is a fine sink).
        if let Some(file) = &self.file {
            if file.metadata().is_ok_and(|m| m.is_file()) {
                file.sync_all().context("fsync csv")?;
            }
        }
        Ok(())
    }
}

fn field(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Text(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.clone(),
        Value::Time(t) => Value::format_time(t).into_bytes(),
    }
}
