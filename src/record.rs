//! The data that flows through a run: items from a source, values and typed
//! columns produced by processors, and the records a sink writes.

use std::fmt;
use std::path::Path;

/// The type of a column, as declared before the run starts so a sink can
/// create or check its table up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Int,
    Float,
    Text,
    Bytes,
    /// A point in time; SQLite and CSV store RFC 3339 UTC text with nanoseconds.
    Time,
    /// SQLite stores 0/1, CSV `true`/`false`, Postgres BOOLEAN.
    Bool,
}

impl ColumnType {
    /// The type as messages name it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "integer",
            ColumnType::Float => "real",
            ColumnType::Text => "text",
            ColumnType::Bytes => "bytes",
            ColumnType::Time => "timestamp",
            ColumnType::Bool => "boolean",
        }
    }
}

/// A named, typed output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: ColumnType,
}

impl Column {
    pub(crate) fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Column {
            name: name.into(),
            ty,
        }
    }
}

/// One value of a record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    /// Raw bytes. A `Text` column may hold `Bytes` when the source had no
    /// valid UTF-8 for it (a file name that is not UTF-8): stored without loss.
    Bytes(Vec<u8>),
    Time(chrono::DateTime<chrono::Utc>),
    Bool(bool),
}

impl Value {
    /// A path as text when it is valid UTF-8, else its raw bytes.
    pub(crate) fn from_path(path: &Path) -> Value {
        use std::os::unix::ffi::OsStrExt;
        match path.to_str() {
            Some(s) => Value::Text(s.to_owned()),
            None => Value::Bytes(path.as_os_str().as_bytes().to_vec()),
        }
    }

    /// RFC 3339 UTC with nine fractional digits: fixed width, so text order is time order.
    pub(crate) fn format_time(t: &chrono::DateTime<chrono::Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }
}

/// One output row: values in the order of the run's [`Schema`] columns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) values: Vec<Value>,
}

impl Value {
    /// Bytes of data the value holds (8 for a number, a time or NULL).
    pub(crate) fn size(&self) -> u64 {
        match self {
            Value::Text(s) => s.len() as u64,
            Value::Bytes(b) => b.len() as u64,
            _ => 8,
        }
    }
}

impl Record {
    /// Bytes of data the record holds, about.
    pub(crate) fn size(&self) -> u64 {
        self.values.iter().map(Value::size).sum()
    }
}

/// The columns of a run's output, `error` last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schema {
    pub(crate) columns: Vec<Column>,
    /// Index of the key column (unique; rows are upserted on it).
    pub(crate) key: usize,
    /// Columns an earlier run may have filled that go stale when the item
    /// changes (None: nothing of the kind).
    pub(crate) stale: Option<Stale>,
}

/// Columns written by processors (any of them, in any run), and the columns
/// that tell whether the item changed since: a later run with other
/// processors keeps such a column only while the item is unchanged, so an
/// old digest never sits next to a new size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stale {
    pub(crate) unless_changed: Vec<String>,
    pub(crate) columns: Vec<String>,
}

impl Schema {
    pub(crate) fn key_column(&self) -> &Column {
        &self.columns[self.key]
    }
}

/// A path printed for people: lossy UTF-8 with control characters escaped, so
/// a name with a newline still makes one readable line.
pub(crate) struct DisplayPath<'a>(pub(crate) &'a Path);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.to_string_lossy().chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A text for messages: in double quotes, with quotes, backslashes and
/// control characters escaped, so it reads as one unambiguous line.
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// A point in time as UTC, or `None` when chrono cannot represent it (a
/// corrupt mtime far in the past or future must not crash a run).
pub(crate) fn utc(t: std::time::SystemTime) -> Option<chrono::DateTime<chrono::Utc>> {
    let (secs, nanos) = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = -i64::try_from(d.as_secs()).ok()?;
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    chrono::DateTime::from_timestamp(secs, nanos)
}

/// An OS error's text without Rust's ` (os error N)` suffix.
fn without_os_error(text: String) -> String {
    match text.find(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// An error and its causes on one line, without repeating a cause whose
/// text the previous part already says (sqlx errors quote their source).
pub(crate) fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = without_os_error(cause.to_string());
        if last.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        last = text;
    }
    line
}
