//! `json`: validates a JSON document, or a JSON Lines file (whitespace-separated
//! values), streaming with serde_json. `json_values` is the number of
//! top-level values; invalid JSON, or a file with no value at all, is an item
//! failure naming the line and column.

use std::io::{BufReader, Read};

use anyhow::{bail, Result};
use serde::de::IgnoredAny;

use super::{Pass, Processor, ReadProcessor};
use crate::record::{Column, ColumnType, Value};

pub struct Json;

impl Processor for Json {
    fn name(&self) -> &'static str {
        "json"
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("json_values", ColumnType::Int)]
    }
    fn begin(&self) -> Pass<'_> {
        Pass::Read(self)
    }
}

impl ReadProcessor for Json {
    fn read(&self, input: &mut dyn Read) -> Result<Vec<Value>> {
        let values =
            serde_json::Deserializer::from_reader(BufReader::new(input)).into_iter::<IgnoredAny>();
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
