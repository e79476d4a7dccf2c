//! Processors: what a run computes for each item. Each declares its output
//! columns before the run starts; the worker reads a file once and feeds every
//! streaming processor from that single pass, then hands a fresh reader to
//! each parsing processor (parsers such as csv and serde_json pull their input).
//! Item processors (`exec:`, `http:`) work on the item itself, not on its
//! content: a run with only those never opens the files.
//!
//! Adding a processor is one new file plus one line in [`by_name`] (or in
//! [`parse_one`] for one that takes an argument).

mod blake3;
mod csv;
mod exec;
mod http;
mod json;
mod lines;
mod mime;
mod sha256;
mod template;

use std::io::Read;

use anyhow::{bail, Context, Result};

pub use exec::kill_running as kill_running_commands;
pub use template::{Fields, Subject};

use crate::record::{Column, Value};
use crate::work::{Cx, Retry};

/// A processor of file contents.
pub trait Processor: Send + Sync {
    /// The name used on the command line (`-p NAME`).
    fn name(&self) -> &'static str;
    /// The columns this processor adds, in the order of the values it returns.
    fn columns(&self) -> Vec<Column>;
    /// How this processor consumes a file's content.
    fn begin(&self) -> Pass<'_>;
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
pub enum Pass<'a> {
    /// Fed every chunk of the content, in order, in one read shared with the
    /// other streaming processors.
    Stream(Box<dyn Accumulator>),
    /// Reads the content itself from the start.
    Read(&'a dyn ReadProcessor),
    /// Works on the item (its path, its row), never on file content.
    Item(&'a dyn ItemProcessor),
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

/// A processor of whole items, such as running a command per item.
pub trait ItemProcessor: Sync {
    fn run(&self, subject: &Subject, cx: &Cx) -> Result<Vec<Value>, ItemFailure>;
}

/// An item processor's failure.
#[derive(Debug)]
pub struct ItemFailure {
    /// One line for the `error` column.
    pub message: String,
    /// The processor's columns all the same (the exit code and output of a
    /// command that failed, the status and body of a 404), or None for NULLs.
    pub values: Option<Vec<Value>>,
    pub retry: Option<Retry>,
}

impl ItemFailure {
    pub fn new(message: impl Into<String>) -> Self {
        ItemFailure {
            message: message.into(),
            values: None,
            retry: None,
        }
    }
}

/// The processor names `-p` accepts, for help and error messages.
pub const NAMES: &[&str] = &["sha256", "blake3", "lines", "mime", "csv", "json"];

/// Item processors, which take the rest of their `-p` value as argument.
const ITEM_PREFIXES: &[&str] = &["exec:", "http:"];

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

/// Whether a processor spec is an item processor's (`exec:…`, `http:…`).
pub fn is_item_spec(spec: &str) -> bool {
    ITEM_PREFIXES.iter().any(|p| spec.starts_with(p))
}

/// Parses one processor spec: a name, or `exec:`/`http:` with its argument.
pub fn parse_one(spec: &str) -> Result<Box<dyn Processor>> {
    if let Some(command) = spec.strip_prefix("exec:") {
        let exec = exec::Exec::parse(command).with_context(|| format!("-p {spec:?}"))?;
        return Ok(Box::new(exec));
    }
    if let Some(request) = spec.strip_prefix("http:") {
        let http = http::Http::parse(request).with_context(|| format!("-p {spec:?}"))?;
        return Ok(Box::new(http));
    }
    by_name(spec)
}

/// Every column any file processor can write (to recognise them in an
/// existing table).
pub fn output_columns() -> Vec<String> {
    NAMES
        .iter()
        .filter_map(|n| by_name(n).ok())
        .flat_map(|p| p.columns())
        .chain(exec::columns())
        .chain(http::columns())
        .map(|c| c.name)
        .collect()
}

/// The processors' part of a run's fingerprint: names joined by commas as
/// before item processors existed (so older runs still resume), or quoted
/// when a spec holds a comma itself (`exec:a,b` is not `exec:a` + `b`).
pub fn fingerprint_part(specs: &[String]) -> String {
    match specs.iter().any(|s| s.contains(',')) {
        false => specs.join(","),
        true => format!("{specs:?}"),
    }
}

/// Splits `-p` values into specs: comma-separated, except that an `exec:` or
/// `http:` spec takes the rest of its value whole (a command line or a URL
/// may hold commas).
pub fn split_specs(values: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    for value in values {
        let mut rest = value.as_str();
        loop {
            let trimmed = rest.trim_start();
            if is_item_spec(trimmed) {
                out.push(trimmed);
                break;
            }
            match trimmed.split_once(',') {
                Some((name, tail)) => {
                    out.push(name.trim());
                    rest = tail;
                }
                None => {
                    out.push(trimmed.trim());
                    break;
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Parses `-p` values into processors, refusing duplicates: two processors
/// writing one column is a mistake.
pub fn parse_list(values: &[String]) -> Result<Vec<Box<dyn Processor>>> {
    let mut out: Vec<Box<dyn Processor>> = Vec::new();
    for spec in split_specs(values) {
        let p = parse_one(spec)?;
        refuse_twice(out.iter().map(|p| p.as_ref()), p.as_ref())?;
        out.push(p);
    }
    Ok(out)
}

/// Two processors of one kind would write the same columns.
pub fn refuse_twice<'a>(
    mut have: impl Iterator<Item = &'a dyn Processor>,
    new: &dyn Processor,
) -> Result<()> {
    if have.any(|p| p.name() == new.name()) {
        match matches!(new.begin(), Pass::Item(_)) {
            true => bail!(
                "only one {}: processor per run: two would both write the {} columns",
                new.name(),
                new.columns()
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            false => bail!("processor {:?} is given twice", new.name()),
        }
    }
    Ok(())
}

/// An OS error without Rust's ` (os error N)` suffix, for item messages.
fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_a_comma_in_a_spec_from_two_specs() {
        let one = ["exec:a,sha256".to_owned()];
        let two = ["exec:a".to_owned(), "sha256".to_owned()];
        assert_ne!(fingerprint_part(&one), fingerprint_part(&two));
        // Runs from before item processors keep their fingerprint.
        assert_eq!(
            fingerprint_part(&["sha256".to_owned(), "lines".to_owned()]),
            "sha256,lines"
        );
    }

    #[test]
    fn item_specs_are_taken_whole() {
        let values = [
            "sha256,lines".to_owned(),
            "exec:printf %s,%s {} x".to_owned(),
            " mime , http:GET http://h/?a=1,2".to_owned(),
        ];
        assert_eq!(
            split_specs(&values),
            [
                "sha256",
                "lines",
                "exec:printf %s,%s {} x",
                "mime",
                "http:GET http://h/?a=1,2"
            ]
        );
    }
}
