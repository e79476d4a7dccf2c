//! Logging for `files` and `query`: the subscriber for the `tracing` events
//! the library emits (`pipeline/log.rs`: run start and end, batch commits,
//! retries, skipped items), on stderr.
//!
//! - **Levels.** By default only warnings and errors of batchproc's own
//!   events show (there are none today: a run's warnings and errors are the
//!   `batchproc: …` lines, printed as before), so the default output is
//!   exactly what it was without logging. `-v` adds `info`, `-vv` `debug`,
//!   `-vvv` `trace`. `RUST_LOG`, when set and not empty, replaces that
//!   filter whole (`RUST_LOG=debug` also shows sqlx's statements): the
//!   usual override of whoever debugs, at the price of `-v` being ignored.
//!   Other crates' events show only through `RUST_LOG`: sqlx's slow-statement
//!   warnings would otherwise appear in a plain run on a loaded machine.
//! - **Where.** stderr, never stdout (which carries CSV with `-o -`). While
//!   the progress bar is drawn, each line goes out through
//!   `ProgressBar::suspend`, as `Terminal::println`'s lines do, so the bar
//!   is cleared, the line written and the bar redrawn below it.
//!   (tracing-indicatif was looked at: it makes a bar per span and owns the
//!   bars; ours is one bar fed by `Events`, and suspending it is all that
//!   is needed.)
//! - **Formats.** `text`: tracing-subscriber's default line, in colour only
//!   when stderr is a terminal and `NO_COLOR` is unset or empty. `json`: one
//!   object per line, `timestamp`, `level`, `target`, `message`, then the
//!   event's fields, never coloured; the `batchproc: …` lines are then JSON
//!   objects too (see [`json_line`]), so a log shipper reading stderr sees
//!   nothing else.
//! - **Secrets.** Text lines are redacted whole as they are written, as
//!   `say` does. JSON lines are redacted field by field (redacting the
//!   whole line could run a secret parameter's value past a `"` and break
//!   the object).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use clap::ValueEnum;
use indicatif::ProgressBar;
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, message, fields.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// What the command line asked of logging.
#[derive(Debug, Clone, Copy)]
pub struct Logging {
    /// How many `-v`.
    pub verbose: u8,
    pub format: LogFormat,
}

/// The bar being drawn, if any: log lines are written through it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Whether the run's stderr is JSON lines (`--log-format json`).
static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the subscriber for this process. Called once, before the run.
pub fn init(logging: Logging) {
    let json = logging.format == LogFormat::Json;
    JSON.store(json, Ordering::Relaxed);
    let filter = filter(logging.verbose);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Lines { redact: !json });
    // Only fails if a subscriber is set already, which nothing else does.
    let _ = if json {
        tracing::subscriber::set_global_default(builder.event_format(JsonLines).finish())
    } else {
        let colour = std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        tracing::subscriber::set_global_default(builder.with_ansi(colour).finish())
    };
}

/// `RUST_LOG` if set (a bad one is warned about and ignored), else the
/// level `-v` asks for, of batchproc's events only.
fn filter(verbose: u8) -> EnvFilter {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let ours = || EnvFilter::new(format!("{}={level}", batchproc::LOG_TARGET));
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            super::say(&format!(
                "batchproc: warning: RUST_LOG is not a valid filter ({e}); using {level}"
            ));
            ours()
        }),
        _ => ours(),
    }
}

/// Log lines are written through `bar` (`ProgressBar::suspend`) from now
/// on, until [`bar_gone`].
pub fn bar_shown(bar: &ProgressBar) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
}

/// The bar is cleared: log lines go straight to stderr again.
pub fn bar_gone() {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Writes `bytes` to stderr, above the bar if one is drawn. Errors are
/// ignored, as `say` ignores them: a lost log line must not stop a run.
pub fn write_stderr(bytes: &[u8]) {
    // Cloned out, so the lock is not held while the bar redraws.
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let write = || {
        let _ = std::io::stderr().lock().write_all(bytes);
    };
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// With `--log-format json`, one of the `batchproc: …` lines (already
/// redacted) as a JSON object like the log events' (level from its
/// `error:`/`warning:` prefix, else `INFO`); `None` in text mode.
pub fn json_line(line: &str) -> Option<String> {
    if !JSON.load(Ordering::Relaxed) {
        return None;
    }
    let text = line.strip_prefix("batchproc: ").unwrap_or(line);
    let (level, message) = match (text.strip_prefix("error: "), text.strip_prefix("warning: ")) {
        (Some(message), _) => ("ERROR", message),
        (_, Some(message)) => ("WARN", message),
        _ => ("INFO", text),
    };
    let fields = [("message".to_owned(), Value::from(message))];
    Some(object(level, batchproc::LOG_TARGET, fields))
}

/// `{"timestamp":…,"level":…,"target":…,` then `fields` in their order.
fn object(level: &str, target: &str, fields: impl IntoIterator<Item = (String, Value)>) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut line = format!(
        "{{\"timestamp\":{},\"level\":{},\"target\":{}",
        Value::from(now),
        Value::from(level),
        Value::from(target)
    );
    for (name, value) in fields {
        if matches!(name.as_str(), "timestamp" | "level" | "target") {
            continue;
        }
        line.push_str(&format!(",{}:{value}", Value::from(name)));
    }
    line.push('}');
    line
}

/// Where the subscriber writes: a buffer per event, written whole on drop
/// (one `write` per line, through the bar).
struct Lines {
    /// Redact the whole line (text); JSON lines are redacted per field.
    redact: bool,
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::new(),
            redact: self.redact,
        }
    }
}

struct Line {
    buf: Vec<u8>,
    redact: bool,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.redact {
            let text = batchproc::redact(&String::from_utf8_lossy(&self.buf));
            write_stderr(text.as_bytes());
        } else {
            write_stderr(&self.buf);
        }
    }
}

/// `--log-format json`: each event as one object, its fields in the order
/// given, numbers and booleans as such, texts redacted.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        // The message first, whatever order the event gave it in.
        fields.0.sort_by_key(|(name, _)| name != "message");
        let meta = event.metadata();
        writeln!(
            writer,
            "{}",
            object(meta.level().as_str(), meta.target(), fields.0)
        )
    }
}

/// An event's fields as JSON values.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        self.0.push((field.name().to_owned(), value));
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::from(batchproc::redact(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, Value::from(batchproc::redact(&format!("{value:?}"))));
    }
}
