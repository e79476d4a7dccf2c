//! Placeholders for the item processors (`exec:`, `http:`): `{}` and
//! `{NAME}` in a command-line argument or a URL, replaced by a field of the
//! item. Files offer `{}` (the path as walked), `{name}` (its file name) and
//! `{dir}` (its parent, `.` when it has none); query rows offer `{}` (the
//! key) and `{COLUMN}` for each column of the query (as text, NULL empty).
//!
//! A placeholder is `{}` or `{` identifier `}`; any other brace text is
//! literal, so `awk '{print $1}'` or a JSON argument passes unchanged.
//! `{{NAME}}` writes a literal `{NAME}`. Placeholders are substituted
//! anywhere inside an argument (`--in={}`, `out/{name}.txt`), not only as a
//! whole argument: no shell ever sees the result and an argument is never
//! split again, so a value can only ever become (part of) the one argument
//! it stands in. Names are resolved against what the items offer before the
//! run starts; an unknown one is a configuration error.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Result};

use crate::record::{Column, Quoted, Value};

/// What the items of a run offer to placeholders.
pub(crate) enum Fields<'a> {
    File,
    Row { columns: &'a [Column], key: usize },
}

/// The item a processor works on.
pub(crate) enum Subject<'a> {
    File {
        path: &'a Path,
        /// From the walk or the read; None when the file could not be stat'ed.
        size: Option<u64>,
    },
    /// The query's own columns and values (not the processors' outputs).
    Row {
        columns: &'a [Column],
        values: &'a [Value],
    },
}

/// A placeholder resolved against [`Fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Path,
    Name,
    Dir,
    Column(usize),
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(Vec<u8>),
    /// The name between the braces (empty for `{}`), and what it resolved to.
    Slot(String, Option<Field>),
}

/// A string with placeholders.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    pub(crate) fn parse(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.extend_from_slice(&rest.as_bytes()[..open]);
            let after = &rest[open..];
            if let Some(name) = escaped(after) {
                literal.push(b'{');
                literal.extend_from_slice(name.as_bytes());
                literal.push(b'}');
                rest = &after[name.len() + 4..];
            } else if let Some(name) = placeholder(after) {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Slot(name.to_owned(), None));
                rest = &after[name.len() + 2..];
            } else {
                literal.push(b'{');
                rest = &after[1..];
            }
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Template { pieces }
    }

    /// Resolves every placeholder; an unknown name is an error that lists
    /// the names there are.
    pub(crate) fn bind(&mut self, fields: &Fields) -> Result<()> {
        for piece in &mut self.pieces {
            let Piece::Slot(name, field) = piece else {
                continue;
            };
            *field = Some(match fields {
                Fields::File => match name.as_str() {
                    "" => Field::Path,
                    "name" => Field::Name,
                    "dir" => Field::Dir,
                    _ => bail!(
                        "unknown placeholder {{{name}}}: files offer {{}}, {{name}} and {{dir}}"
                    ),
                },
                Fields::Row { key, .. } if name.is_empty() => Field::Column(*key),
                Fields::Row { columns, .. } => match columns.iter().position(|c| c.name == *name) {
                    Some(i) => Field::Column(i),
                    None => {
                        let names: Vec<String> =
                            columns.iter().map(|c| format!("{{{}}}", c.name)).collect();
                        bail!(
                            "unknown placeholder {{{name}}}: the query has no column {} (rows offer {{}} and {})",
                            Quoted(name),
                            names.join(", ")
                        )
                    }
                },
            });
        }
        Ok(())
    }

    /// The text when there is no placeholder at all.
    pub(crate) fn literal(&self) -> Option<&[u8]> {
        match self.pieces.as_slice() {
            [Piece::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// The template with a sample value for each placeholder, to check what
    /// can be checked before the run (a URL's scheme and host).
    pub(crate) fn sample(&self) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(&String::from_utf8_lossy(text)),
                Piece::Slot(..) => out.push('x'),
            }
        }
        out
    }

    /// The text for `subject`, each field appended by `encode` (None: as
    /// it is). A lone literal or a lone raw placeholder is borrowed, not
    /// copied: an `exec:` argument costs no allocation of its own.
    pub(crate) fn render<'s>(
        &'s self,
        subject: &'s Subject,
        encode: Option<Encode>,
    ) -> Cow<'s, [u8]> {
        match (self.pieces.as_slice(), encode) {
            ([Piece::Literal(text)], _) => Cow::Borrowed(text),
            ([Piece::Slot(_, Some(field))], None) => subject.field(*field),
            (pieces, _) => {
                let mut out = Vec::new();
                for piece in pieces {
                    match piece {
                        Piece::Literal(text) => out.extend_from_slice(text),
                        Piece::Slot(_, Some(field)) => match encode {
                            Some(encode) => encode(&subject.field(*field), &mut out),
                            None => out.extend_from_slice(&subject.field(*field)),
                        },
                        // Unreachable after bind; render the placeholder as written.
                        Piece::Slot(name, None) => {
                            out.extend_from_slice(format!("{{{name}}}").as_bytes())
                        }
                    }
                }
                Cow::Owned(out)
            }
        }
    }

    /// The text for `subject` as a command-line argument (raw bytes).
    pub(crate) fn render_os<'s>(&'s self, subject: &'s Subject) -> Cow<'s, OsStr> {
        match self.render(subject, None) {
            Cow::Borrowed(b) => Cow::Borrowed(OsStr::from_bytes(b)),
            Cow::Owned(b) => Cow::Owned(std::os::unix::ffi::OsStringExt::from_vec(b)),
        }
    }
}

/// Appends a field's bytes to the output, encoded (a URL percent-encodes).
pub(crate) type Encode = fn(&[u8], &mut Vec<u8>);

/// `{{NAME}}` at the start of `s`: NAME.
fn escaped(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?;
    let end = inner.find("}}")?;
    let name = &inner[..end];
    is_name(name).then_some(name)
}

/// `{NAME}` or `{}` at the start of `s`: NAME.
fn placeholder(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('{')?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    (name.is_empty() || is_name(name)).then_some(name)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Subject<'_> {
    fn field(&self, field: Field) -> Cow<'_, [u8]> {
        match (self, field) {
            (Subject::File { path, .. }, Field::Path) => Cow::Borrowed(path.as_os_str().as_bytes()),
            (Subject::File { path, .. }, Field::Name) => {
                Cow::Borrowed(path.file_name().map_or(&[][..], |n| n.as_bytes()))
            }
            (Subject::File { path, .. }, Field::Dir) => match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => Cow::Borrowed(p.as_os_str().as_bytes()),
                _ => Cow::Borrowed(b"."),
            },
            (Subject::Row { values, .. }, Field::Column(i)) => match values.get(i) {
                Some(value) => value_text(value),
                None => Cow::Borrowed(b""),
            },
            // Bound against the other kind of item: cannot happen, says nothing.
            _ => Cow::Borrowed(b""),
        }
    }
}

/// A value as text for a placeholder: NULL is empty, bytes pass as they are.
fn value_text(value: &Value) -> Cow<'_, [u8]> {
    match value {
        Value::Null => Cow::Borrowed(b""),
        Value::Text(s) => Cow::Borrowed(s.as_bytes()),
        Value::Bytes(b) => Cow::Borrowed(b),
        Value::Int(i) => Cow::Owned(i.to_string().into_bytes()),
        Value::Float(f) => Cow::Owned(f.to_string().into_bytes()),
        Value::Bool(b) => Cow::Owned(b.to_string().into_bytes()),
        Value::Time(t) => Cow::Owned(Value::format_time(t).into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ColumnType;

    fn file(t: &str, path: &str) -> String {
        let mut t = Template::parse(t);
        t.bind(&Fields::File).unwrap();
        let subject = Subject::File {
            path: Path::new(path),
            size: None,
        };
        String::from_utf8(t.render(&subject, None).into_owned()).unwrap()
    }

    #[test]
    fn placeholders_whole_and_inside_an_argument() {
        assert_eq!(file("{}", "d/a b.txt"), "d/a b.txt");
        assert_eq!(file("--in={}", "d/x"), "--in=d/x");
        assert_eq!(file("{dir}/out/{name}.sum", "d/e/x"), "d/e/out/x.sum");
        assert_eq!(file("{dir}", "x"), ".");
    }

    #[test]
    fn other_braces_are_literal() {
        assert_eq!(file("{print $1}", "x"), "{print $1}");
        assert_eq!(file("{\"a\":1}", "x"), "{\"a\":1}");
        assert_eq!(file("{{name}}={name}", "d/x"), "{name}=x");
        assert_eq!(file("{", "x"), "{");
        assert_eq!(file("", "x"), "");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let err = Template::parse("{foo}").bind(&Fields::File).unwrap_err();
        assert!(err.to_string().contains("{foo}"), "{err}");
        let columns = [
            Column::new("id", ColumnType::Int),
            Column::new("body", ColumnType::Text),
        ];
        let fields = Fields::Row {
            columns: &columns,
            key: 0,
        };
        let mut t = Template::parse("{}-{body}");
        t.bind(&fields).unwrap();
        let values = [Value::Int(7), Value::Null];
        let subject = Subject::Row {
            columns: &columns,
            values: &values,
        };
        assert_eq!(&*t.render(&subject, None), b"7-");
        assert!(Template::parse("{name}").bind(&fields).is_err());
    }
}
