//! `sha256`: hex SHA-256 of the content (the sha2 crate picks the CPU's SHA
//! instructions at run time where they exist).

use anyhow::Result;
use sha2::Digest;

use super::{Accumulator, Kind, Pass, Processor, Reads};
use crate::record::{Column, ColumnType, Value};

pub(super) static KIND: Kind = Kind {
    name: "sha256",
    reads: Reads::Content,
    argument: "",
    help: "hex SHA-256 of the content",
    columns: || vec![Column::new("sha256", ColumnType::Text)],
    parse: |_| Ok(Box::new(Sha256)),
};

pub(super) struct Sha256;

impl Processor for Sha256 {
    fn kind(&self) -> &'static Kind {
        &KIND
    }
    fn begin(&self) -> Pass<'_> {
        Pass::Stream(Box::new(State(sha2::Sha256::new())))
    }
}

struct State(sha2::Sha256);

impl Accumulator for State {
    fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.0.update(chunk);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<Value>> {
        // The digest's own LowerHex: one allocation, not one per byte
        // (that was a tenth of a queue drain's CPU).
        Ok(vec![Value::Text(format!("{:x}", self.0.finalize()))])
    }
}
