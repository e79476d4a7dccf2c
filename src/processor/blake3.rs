//! `blake3`: hex BLAKE3 of the content (SIMD picked at run time by the crate).

use anyhow::Result;

use super::{Accumulator, Kind, Pass, Processor, Reads};
use crate::record::{Column, ColumnType, Value};

pub(super) static KIND: Kind = Kind {
    name: "blake3",
    reads: Reads::Content,
    argument: "",
    help: "hex BLAKE3 of the content",
    columns: || vec![Column::new("blake3", ColumnType::Text)],
    parse: |_| Ok(Box::new(Blake3)),
};

pub(super) struct Blake3;

impl Processor for Blake3 {
    fn kind(&self) -> &'static Kind {
        &KIND
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
    /// BLAKE3 is a tree: the chunk's subtrees are hashed in parallel, as
    /// b3sum does with its threads.
    fn update_large(&mut self, chunk: &[u8]) -> Result<()> {
        self.0.update_rayon(chunk);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<Value>> {
        Ok(vec![Value::Text(self.0.finalize().to_hex().to_string())])
    }
}
