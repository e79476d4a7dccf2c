//! The processor registry: one [`Kind`] per processor, in one table. Parsing
//! `-p`, the `--help` listing, the columns an older run may have written and
//! the error that lists the known processors all come from it.

use anyhow::{bail, Context, Result};

use super::{blake3, csv, exec, http, json, lines, mime, sha256, Processor};
use crate::record::{Column, Quoted};

/// Every processor there is, in the order `--help` lists them.
pub(crate) static KINDS: &[&Kind] = &[
    &sha256::KIND,
    &blake3::KIND,
    &lines::KIND,
    &mime::KIND,
    &csv::KIND,
    &json::KIND,
    &exec::KIND,
    &http::KIND,
];

/// What a processor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// A file's content, or one column's value of a query row (`NAME:COLUMN`).
    Content,
    /// The whole item (`NAME:ARGUMENT`, the argument taking the rest of the
    /// `-p` value, commas included).
    Item,
}

/// Everything the rest of the program knows about one kind of processor.
pub(crate) struct Kind {
    pub(crate) name: &'static str,
    pub(crate) reads: Reads,
    /// How the argument of an item processor is written, for help.
    pub(crate) argument: &'static str,
    /// One line for `--help`.
    pub(crate) help: &'static str,
    pub(crate) columns: fn() -> Vec<Column>,
    /// Builds the processor from its argument (empty for content processors).
    pub(crate) parse: fn(&str) -> Result<Box<dyn Processor>>,
}

impl Kind {
    /// `sha256`, or `exec:CMD ARG…` for a processor that takes an argument.
    fn usage(&self) -> String {
        match self.reads {
            Reads::Content => self.name.to_owned(),
            Reads::Item => format!("{}:{}", self.name, self.argument),
        }
    }
}

/// What the run's items are, for parsing `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Files: content processors by name (`sha256`).
    Files,
    /// Query rows: content processors on a column (`sha256:body`).
    Rows,
}

/// A processor as `-p` gave it, with the column it reads (query rows).
pub(crate) struct Spec {
    pub(crate) processor: Box<dyn Processor>,
    pub(crate) column: Option<String>,
}

impl Spec {
    /// The spec as written (`sha256`, `sha256:body`, `exec:…` in full).
    pub(crate) fn text(&self) -> String {
        match &self.column {
            Some(column) => format!("{}:{column}", self.processor.name()),
            None => self.processor.spec(),
        }
    }
}

/// The item kind whose `NAME:` starts `spec`.
fn item_kind(spec: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| {
        k.reads == Reads::Item
            && spec
                .strip_prefix(k.name)
                .is_some_and(|rest| rest.starts_with(':'))
    })
}

fn content_kind(name: &str) -> Result<&'static Kind> {
    match KINDS
        .iter()
        .find(|k| k.reads == Reads::Content && k.name == name)
    {
        Some(kind) => Ok(kind),
        None => {
            let known: Vec<String> = KINDS.iter().map(|k| k.usage()).collect();
            bail!(
                "unknown processor {} (known: {})",
                Quoted(name),
                known.join(", ")
            )
        }
    }
}

/// Splits `-p` values into specs: comma-separated, except that an item
/// processor's spec takes the rest of its value whole (a command line or a
/// URL may hold commas).
pub(crate) fn split_specs(values: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    for value in values {
        let mut rest = value.as_str();
        loop {
            let trimmed = rest.trim_start();
            if item_kind(trimmed).is_some() {
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

/// Parses `-p` values, refusing what would write one column twice.
pub(crate) fn parse(values: &[String], target: Target) -> Result<Vec<Spec>> {
    let mut specs: Vec<Spec> = Vec::new();
    for text in split_specs(values) {
        let spec = parse_one(text, target)?;
        let clash = specs
            .iter()
            .find(|s| s.processor.name() == spec.processor.name() && s.column == spec.column);
        if let Some(other) = clash {
            let kind = other.processor.kind();
            match kind.reads {
                Reads::Item => bail!(
                    "only one {}: processor per run: two would both write the {} columns",
                    kind.name,
                    column_names(kind).join(" and ")
                ),
                Reads::Content => bail!("processor {} is given twice", Quoted(text)),
            }
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn parse_one(text: &str, target: Target) -> Result<Spec> {
    if let Some(kind) = item_kind(text) {
        let argument = &text[kind.name.len() + 1..];
        let processor = (kind.parse)(argument)
            .with_context(|| format!("-p {}", Quoted(&crate::redact::redact(text))))?;
        return Ok(Spec {
            processor,
            column: None,
        });
    }
    let (name, column) = match (target, text.split_once(':')) {
        (Target::Files, _) => (text, None),
        (Target::Rows, Some((name, column))) => (name, Some(column.to_owned())),
        (Target::Rows, None) => {
            content_kind(text)?;
            bail!("query processors take a column: {text}:COLUMN (e.g. {text}:body)")
        }
    };
    let processor = (content_kind(name)?.parse)("")?;
    Ok(Spec { processor, column })
}

fn column_names(kind: &Kind) -> Vec<String> {
    (kind.columns)().into_iter().map(|c| c.name).collect()
}

/// Every column any processor can write, to recognise them in a table
/// written by an earlier run.
pub(crate) fn output_columns() -> Vec<String> {
    KINDS.iter().flat_map(|k| column_names(k)).collect()
}

/// The processors, one per line, for `--help`: usage, what it does, the
/// columns it adds.
pub(crate) fn help() -> String {
    let rows: Vec<(String, &str, String)> = KINDS
        .iter()
        .map(|k| (k.usage(), k.help, column_names(k).join(", ")))
        .collect();
    let width = rows
        .iter()
        .map(|(u, ..)| u.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(usage, help, columns)| format!("  {usage:width$}  {help} ({columns})"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_unknown_name_lists_every_processor_there_is() {
        let err = parse(&["md5".into()], Target::Files).err().unwrap();
        let text = err.to_string();
        for kind in KINDS {
            assert!(text.contains(&kind.usage()), "{text}");
        }
        assert!(text.contains("exec:CMD"), "{text}");
    }

    #[test]
    fn rows_take_a_column_and_files_do_not() {
        let specs = parse(&["sha256:body,lines:body".into()], Target::Rows).unwrap();
        let texts: Vec<String> = specs.iter().map(Spec::text).collect();
        assert_eq!(texts, ["sha256:body", "lines:body"]);
        assert!(parse(&["sha256".into()], Target::Rows).is_err());
        assert!(parse(&["sha256:body".into()], Target::Files).is_err());
        assert!(parse(&["sha256:a,sha256:a".into()], Target::Rows).is_err());
        assert!(parse(&["sha256:a,sha256:b".into()], Target::Rows).is_ok());
    }

    #[test]
    fn help_has_a_line_per_processor() {
        assert_eq!(help().lines().count(), KINDS.len());
    }
}
