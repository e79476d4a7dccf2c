//! What a worker does with one query row: run each `NAME:COLUMN` processor
//! on that column's value (text as its UTF-8 bytes, bytes as they are,
//! numbers as their decimal text; NULL gives NULL), and build the record:
//! the query's columns, the processors' columns, `error`.

use anyhow::{bail, Result};

use super::{Buffer, Outcome, Work};
use crate::pool::Cancel;
use crate::processor::{Pass, Processor};
use crate::record::{Column, ColumnType, Record, Schema, Value};
use crate::source::query::{RowItem, Shape};

pub struct RowWork {
    /// Each processor with the index of the column it reads.
    processors: Vec<(Box<dyn Processor>, usize)>,
    key_name: String,
    schema: Schema,
}

impl RowWork {
    /// Checks the processors' columns against the query's (exit 2 before any
    /// work when one is missing or an output name clashes).
    pub fn new(shape: &Shape, processors: Vec<(Box<dyn Processor>, String)>) -> Result<Self> {
        let mut columns = shape.columns.clone();
        let mut bound = Vec::new();
        for (p, column) in processors {
            let Some(index) = shape.columns.iter().position(|c| c.name == column) else {
                bail!(
                    "processor {}:{column}: the query has no column {column:?}",
                    p.name()
                );
            };
            for out in p.columns() {
                columns.push(Column::new(format!("{column}_{}", out.name), out.ty));
            }
            bound.push((p, index));
        }
        columns.push(Column::new("error", ColumnType::Text));
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|d| d.name == c.name) {
                bail!(
                    "the output would have two columns named {:?}; rename one in --sql",
                    c.name
                );
            }
        }
        Ok(RowWork {
            processors: bound,
            key_name: shape.columns[shape.key].name.clone(),
            schema: Schema {
                columns,
                key: shape.key,
            },
        })
    }
}

impl Work for RowWork {
    type Item = RowItem;

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn process(&self, _buf: &mut Buffer, item: RowItem, _cancel: &Cancel) -> Outcome {
        let RowItem { mut values, .. } = item;
        let width = self.schema.columns.len() - 1 - values.len();
        let mut produced = Vec::with_capacity(width);
        let mut error = None;
        for (p, index) in &self.processors {
            match run_on_value(p.as_ref(), &values[*index]) {
                Ok(mut v) => produced.append(&mut v),
                Err(e) => {
                    let column = &self.schema.columns[*index].name;
                    error = Some(format!("{column}: {}", crate::record::error_line(&e)));
                    break;
                }
            }
        }
        if error.is_some() {
            produced = vec![Value::Null; width];
        }
        let bytes = values.iter().map(value_len).sum();
        values.append(&mut produced);
        values.push(error.clone().map_or(Value::Null, Value::Text));
        Outcome {
            cancelled: false,
            vanished: false,
            record: Record {
                values,
                failed: error.is_some(),
            },
            error,
            bytes,
            retry: None,
        }
    }

    fn label(&self, record: &Record) -> String {
        match &record.values[self.schema.key] {
            Value::Int(i) => format!("{}={i}", self.key_name),
            Value::Text(s) => format!("{}={s:?}", self.key_name),
            other => format!("{}={other:?}", self.key_name),
        }
    }
}

fn value_len(v: &Value) -> u64 {
    match v {
        Value::Text(s) => s.len() as u64,
        Value::Bytes(b) => b.len() as u64,
        _ => 8,
    }
}

/// Runs one file processor over a value held in memory.
fn run_on_value(p: &dyn Processor, value: &Value) -> Result<Vec<Value>> {
    let text;
    let bytes: &[u8] = match value {
        Value::Null => return Ok(vec![Value::Null; p.columns().len()]),
        Value::Text(s) => s.as_bytes(),
        Value::Bytes(b) => b,
        Value::Int(i) => {
            text = i.to_string();
            text.as_bytes()
        }
        Value::Float(f) => {
            text = f.to_string();
            text.as_bytes()
        }
        Value::Bool(b) => {
            text = b.to_string();
            text.as_bytes()
        }
        Value::Time(t) => {
            text = Value::format_time(t);
            text.as_bytes()
        }
    };
    match p.begin() {
        Pass::Stream(mut acc) => {
            acc.update(bytes)?;
            acc.finish()
        }
        Pass::Read(parser) => {
            let mut reader: &[u8] = bytes;
            parser.read(&mut reader)
        }
    }
}
