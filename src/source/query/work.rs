//! What a worker does with one query row: run each `NAME:COLUMN` processor
//! on that column's value (text as its UTF-8 bytes, bytes as they are,
//! numbers as their decimal text; NULL gives NULL), run the item processors
//! (`exec:`, `http:`) on the whole row, and build the record: the query's
//! columns, the processors' columns, `error`.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{RowItem, Shape};
use crate::pool::Cancel;
use crate::processor::registry::Spec;
use crate::processor::{Buffer, Cx, Deadline, Fields, Outcome, Pass, Processor, Subject, Work};
use crate::record::{error_line, Column, ColumnType, Quoted, Record, Schema, Value};

pub(crate) struct RowWork {
    /// Each processor with the index of the column it reads (None: an item
    /// processor, which sees the whole row), and where its output columns
    /// start among the processors' columns.
    processors: Vec<(Box<dyn Processor>, Option<usize>, usize)>,
    specs: Vec<String>,
    timeout: Option<Duration>,
    schema: Schema,
}

impl RowWork {
    /// Checks the processors' columns and placeholders against the query's
    /// (exit 2 before any work when one is missing or an output name clashes).
    pub(crate) fn new(shape: &Shape, specs: Vec<Spec>, timeout: Option<Duration>) -> Result<Self> {
        let mut columns = shape.columns.clone();
        let mut bound = Vec::new();
        let fields = Fields::Row {
            columns: &shape.columns,
            key: shape.key,
        };
        let texts = specs.iter().map(Spec::text).collect();
        for Spec {
            processor: mut p,
            column,
        } in specs
        {
            let start = columns.len() - shape.columns.len();
            let Some(column) = column else {
                p.bind(&fields)
                    .with_context(|| format!("-p {}", Quoted(&crate::redact::redact(&p.spec()))))?;
                columns.extend(p.columns());
                bound.push((p, None, start));
                continue;
            };
            let Some(index) = shape.columns.iter().position(|c| c.name == column) else {
                let names: Vec<&str> = shape.columns.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "processor {}:{column}: there is no column {} (the columns are {})",
                    p.name(),
                    Quoted(&column),
                    names.join(", ")
                );
            };
            for out in p.columns() {
                columns.push(Column::new(format!("{column}_{}", out.name), out.ty));
            }
            bound.push((p, Some(index), start));
        }
        columns.push(Column::new("error", ColumnType::Text));
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|d| d.name == c.name) {
                bail!(
                    "the output would have two columns named {}; rename one in --sql",
                    Quoted(&c.name)
                );
            }
        }
        Ok(RowWork {
            processors: bound,
            specs: texts,
            timeout,
            schema: Schema {
                columns,
                key: shape.key,
                stale: None,
            },
        })
    }
}

impl Work for RowWork {
    type Item = RowItem;

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn specs(&self) -> Vec<String> {
        self.specs.clone()
    }

    fn process(&self, _buf: &mut Buffer, mut values: RowItem, cancel: &Cancel) -> Outcome {
        let cx = Cx {
            cancel,
            deadline: Deadline::start(self.timeout),
        };
        let width = self.schema.columns.len() - 1 - values.len();
        let mut produced = Vec::with_capacity(width);
        let mut error = None;
        let mut retry = None;
        let mut cancelled = false;
        for (p, index, start) in &self.processors {
            let Some(index) = index else {
                let Pass::Item(item) = p.begin() else {
                    continue;
                };
                let subject = Subject::Row {
                    columns: &self.schema.columns[..values.len()],
                    values: &values,
                };
                match item.run(&subject, &cx) {
                    Ok(mut v) => produced.append(&mut v),
                    Err(failure) => {
                        cancelled = cancel.is_cancelled();
                        let mut all = vec![Value::Null; width];
                        if let Some(v) = failure.values {
                            all.splice(*start..*start + v.len(), v);
                        }
                        produced = all;
                        error = Some(failure.message);
                        retry = failure.retry;
                        break;
                    }
                }
                continue;
            };
            match run_on_value(p.as_ref(), &values[*index]) {
                Ok(mut v) => produced.append(&mut v),
                Err(e) => {
                    let column = &self.schema.columns[*index].name;
                    error = Some(format!("{column}: {}", error_line(&e)));
                    produced = vec![Value::Null; width];
                    break;
                }
            }
        }
        let bytes = values.iter().map(Value::size).sum();
        values.append(&mut produced);
        if cancelled {
            return Outcome::Abandoned;
        }
        match error {
            None => {
                values.push(Value::Null);
                Outcome::Done {
                    record: Record { values },
                    bytes,
                }
            }
            Some(error) => {
                values.push(Value::Text(error.clone()));
                Outcome::Failed {
                    record: Record { values },
                    error,
                    retry,
                    bytes,
                }
            }
        }
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
        // Item processors are bound to no column (see RowWork::new).
        Pass::Item(_) => bail!("not a column processor"),
    }
}
