//! `blake3`: hex BLAKE3 of the content (SIMD picked at run time by the crate).

use anyhow::Result;

use super::{Accumulator, Pass, Processor};
use crate::record::{Column, ColumnType, Value};

pub struct Blake3;

impl Processor for Blake3 {
    fn name(&self) -> &'static str {
        "blake3"
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("blake3", ColumnType::Text)]
    }
    fn begin(&self) -> Pass<'_> {
        Pass::Stream(Box::new(State(blake3::Hasher::new())))
    }
}

struct State(blake3::Hasher);

impl Accumulator for State {
    fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.0.update(chunk);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<Value>> {
        Ok(vec![Value::Text(self.0.finalize().to_hex().to_string())])
    }
}
