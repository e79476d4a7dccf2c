//! Processors: what a run computes for each item. Each declares its output
//! columns before the run starts. Content processors read a file (or a
//! column's value): streaming ones are fed from a single read shared by all
//! of them, parsing ones pull from a fresh reader of their own (parsers
//! such as csv and serde_json pull their input). Item processors (`exec:`,
//! `http:`) work on the item itself, not on its content: a run with only
//! those never opens the files.
//!
//! Every processor is one file with its [`Kind`], listed once in
//! [`registry::KINDS`]: parsing `-p`, `--help` and the error that lists
//! the known processors all come from that table.

mod blake3;
mod csv;
mod cx;
mod exec;
mod http;
mod json;
mod lines;
mod mime;
pub(crate) mod registry;
mod sha256;
mod template;
mod work;

use std::io::Read;

use anyhow::Result;

pub(crate) use cx::{Cx, Deadline, Retry};
pub(crate) use registry::{Kind, Reads};
pub(crate) use template::{Fields, Subject};
pub(crate) use work::{Buffer, Outcome, SpareCores, Work};

use crate::record::{Column, Value};

/// A processor, ready to run (its argument parsed, placeholders bound).
pub(crate) trait Processor: Send + Sync {
    /// The registry's entry for this kind of processor.
    fn kind(&self) -> &'static Kind;
    /// How this processor consumes an item.
    fn begin(&self) -> Pass<'_>;
    /// The name used on the command line (`-p NAME`, `-p NAME:…`).
    fn name(&self) -> &'static str {
        self.kind().name
    }
    /// The columns this processor adds, in the order of the values it returns.
    fn columns(&self) -> Vec<Column> {
        (self.kind().columns)()
    }
    /// The processor as given (`exec:…` in full), for the run's fingerprint.
    fn spec(&self) -> String {
        self.name().to_owned()
    }
    /// Resolves placeholders against what the items offer, before the run:
    /// an unknown one is a configuration error.
    fn bind(&mut self, _fields: &Fields) -> Result<()> {
        Ok(())
    }
}

/// How a processor reads content.
pub(crate) enum Pass<'a> {
    /// Fed every chunk of the content, in order, in one read shared with the
    /// other streaming processors.
    Stream(Box<dyn Accumulator>),
    /// Reads the content itself from the start.
    Read(&'a dyn ReadProcessor),
    /// Works on the item (its path, its row), never on file content.
    Item(&'a dyn ItemProcessor),
}

/// The state of a streaming processor over one item.
pub(crate) trait Accumulator: Send {
    fn update(&mut self, chunk: &[u8]) -> Result<()>;
    /// The same for a large chunk of a large file, on rayon's pool: a
    /// processor that can split its work (blake3's tree) does so here.
    fn update_large(&mut self, chunk: &[u8]) -> Result<()> {
        self.update(chunk)
    }
    fn finish(self: Box<Self>) -> Result<Vec<Value>>;
}

/// A processor that pulls its input from a reader.
pub(crate) trait ReadProcessor: Sync {
    fn read(&self, input: &mut dyn Read) -> Result<Vec<Value>>;
}

/// A processor of whole items, such as running a command per item.
pub(crate) trait ItemProcessor: Sync {
    fn run(&self, subject: &Subject, cx: &Cx) -> Result<Vec<Value>, ItemFailure>;
}

/// An item processor's failure.
#[derive(Debug)]
pub(crate) struct ItemFailure {
    /// One line for the `error` column.
    pub(crate) message: String,
    /// The processor's columns all the same (the exit code and output of a
    /// command that failed, the status and body of a 404), or None for NULLs.
    pub(crate) values: Option<Vec<Value>>,
    pub(crate) retry: Option<Retry>,
}

impl ItemFailure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ItemFailure {
            message: message.into(),
            values: None,
            retry: None,
        }
    }
}

/// An OS error without Rust's ` (os error N)` suffix, for item messages.
fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
