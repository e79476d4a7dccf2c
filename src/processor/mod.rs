//! Processors: what a run computes for each item. Each declares its output
//! columns before the run starts; the worker reads a file once and feeds every
//! streaming processor from that single pass, then hands a fresh reader to
//! each parsing processor (parsers such as csv and serde_json pull their input).
//!
//! Adding a processor is one new file plus one line in [`parse_list`].

mod blake3;
mod csv;
mod json;
mod lines;
mod mime;
mod sha256;

use std::io::Read;

use anyhow::{bail, Result};

use crate::record::{Column, Value};

/// A processor of file contents.
pub trait Processor: Send + Sync {
    /// The name used on the command line (`-p NAME`).
    fn name(&self) -> &'static str;
    /// The columns this processor adds, in the order of the values it returns.
    fn columns(&self) -> Vec<Column>;
    /// How this processor consumes a file's content.
    fn begin(&self) -> Pass<'_>;
}

/// How a processor reads content.
pub enum Pass<'a> {
    /// Fed every chunk of the content, in order, in one read shared with the
    /// other streaming processors.
    Stream(Box<dyn Accumulator>),
    /// Reads the content itself from the start.
    Read(&'a dyn ReadProcessor),
}

/// The state of a streaming processor over one item.
pub trait Accumulator: Send {
    fn update(&mut self, chunk: &[u8]) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<Vec<Value>>;
}

/// A processor that pulls its input from a reader.
pub trait ReadProcessor: Sync {
    fn read(&self, input: &mut dyn Read) -> Result<Vec<Value>>;
}

/// The processor names `-p` accepts, for help and error messages.
pub const NAMES: &[&str] = &["sha256", "blake3", "lines", "mime", "csv", "json"];

fn by_name(name: &str) -> Result<Box<dyn Processor>> {
    Ok(match name {
        "sha256" => Box::new(sha256::Sha256),
        "blake3" => Box::new(blake3::Blake3),
        "lines" => Box::new(lines::Lines),
        "mime" => Box::new(mime::Mime),
        "csv" => Box::new(csv::Csv),
        "json" => Box::new(json::Json),
        other => bail!("unknown processor {other:?} (known: {})", NAMES.join(", ")),
    })
}

/// Every column any file processor can write (to recognise them in an
/// existing table).
pub fn output_columns() -> Vec<String> {
    NAMES
        .iter()
        .filter_map(|n| by_name(n).ok())
        .flat_map(|p| p.columns())
        .map(|c| c.name)
        .collect()
}

/// Parses `-p` values (each may be a comma-separated list) into processors,
/// refusing duplicates: two processors writing one column is a mistake.
pub fn parse_list(specs: &[String]) -> Result<Vec<Box<dyn Processor>>> {
    let mut out: Vec<Box<dyn Processor>> = Vec::new();
    for name in specs.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if name.is_empty() {
            continue;
        }
        if out.iter().any(|p| p.name() == name) {
            bail!("processor {name:?} is given twice");
        }
        out.push(by_name(name)?);
    }
    Ok(out)
}
