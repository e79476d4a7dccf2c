//! `lines`: the number of newline bytes, as `wc -l` counts them (a last line
//! without a newline is not counted).

use anyhow::Result;

use super::{Accumulator, Kind, Pass, Processor, Reads};
use crate::record::{Column, ColumnType, Value};

pub(super) static KIND: Kind = Kind {
    name: "lines",
    reads: Reads::Content,
    argument: "",
    help: "newline count, as wc -l counts",
    columns: || vec![Column::new("lines", ColumnType::Int)],
    parse: |_| Ok(Box::new(Lines)),
};

pub(super) struct Lines;

impl Processor for Lines {
    fn kind(&self) -> &'static Kind {
        &KIND
    }
    fn begin(&self) -> Pass<'_> {
        Pass::Stream(Box::new(State(0)))
    }
}

struct State(u64);

impl Accumulator for State {
    fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.0 += memchr::memchr_iter(b'\n', chunk).count() as u64;
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<Value>> {
        Ok(vec![Value::Int(self.0 as i64)])
    }
}
