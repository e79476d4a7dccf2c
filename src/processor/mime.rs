//! `mime`: the content type sniffed from the first bytes with the `infer`
//! crate's magic numbers. What it does not recognise is `text/plain` when the
//! sniffed bytes are UTF-8 without NUL bytes, `application/octet-stream`
//! otherwise; an empty file is `inode/x-empty`, as `file --mime-type` says.

use anyhow::Result;

use super::{Accumulator, Kind, Pass, Processor, Reads};
use crate::record::{Column, ColumnType, Value};

/// How much of the start of a file is sniffed.
const SNIFF: usize = 8192;

pub(super) static KIND: Kind = Kind {
    name: "mime",
    reads: Reads::Content,
    argument: "",
    help: "content type sniffed from the first 8 KiB",
    columns: || vec![Column::new("mime", ColumnType::Text)],
    parse: |_| Ok(Box::new(Mime)),
};

pub(super) struct Mime;

impl Processor for Mime {
    fn kind(&self) -> &'static Kind {
        &KIND
    }
    fn begin(&self) -> Pass<'_> {
        Pass::Stream(Box::new(State(Vec::new())))
    }
}

struct State(Vec<u8>);

impl Accumulator for State {
    fn update(&mut self, chunk: &[u8]) -> Result<()> {
        let room = SNIFF.saturating_sub(self.0.len());
        self.0.extend_from_slice(&chunk[..room.min(chunk.len())]);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<Value>> {
        Ok(vec![Value::Text(sniff(&self.0).to_owned())])
    }
}

fn sniff(head: &[u8]) -> &'static str {
    if head.is_empty() {
        return "inode/x-empty";
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    if looks_like_text(head) {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sniffed window is fine.
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}
