//! Named pipelines in `batchproc.toml`: `batchproc run NAME` and
//! `batchproc list`.
//!
//! A pipeline is the long flags of `files` or `query` written as keys. It is
//! run by turning it back into a command line and parsing that with the
//! same clap model, so a pipeline means exactly what its flags mean, and
//! every flag added later works in the file without a line here. A key goes
//! onto that command line only when neither the command line nor the
//! environment (`BATCHPROC_<FLAG>`) gave its flag, which is what makes the
//! order command line > environment > file > default.

mod interpolate;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory};
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{Cli, EXCLUSIVE};
use interpolate::interpolate;

/// Where a pipeline's file is looked for when neither `--config` nor
/// `BATCHPROC_CONFIG` names one.
const DEFAULT_PATH: &str = "batchproc.toml";

/// The commands a pipeline may run.
const COMMANDS: [&str; 3] = ["files", "query", "queue"];

type Keys = BTreeMap<Spanned<String>, Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    pipelines: BTreeMap<Spanned<String>, Spanned<Keys>>,
}

/// A config file, read and parsed (not yet interpolated: that happens per
/// pipeline, when it runs, so one pipeline's unset variable does not stop
/// another).
pub struct Config {
    path: PathBuf,
    text: String,
    pipelines: BTreeMap<Spanned<String>, Spanned<Keys>>,
}

/// A config problem, as one line naming the file and, where there is one,
/// the line and the key. Exit 2, like any other usage error.
fn error(message: impl std::fmt::Display) -> clap::Error {
    clap::Error::raw(ErrorKind::InvalidValue, format!("{message}\n"))
}

impl Config {
    /// The file `--config` names, else `BATCHPROC_CONFIG`'s (clap reads it
    /// into `explicit` too), else `./batchproc.toml`.
    pub fn load(explicit: Option<&Path>) -> Result<Config, clap::Error> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_PATH)).to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let hint = if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound {
                " (name another with --config PATH or BATCHPROC_CONFIG)"
            } else {
                ""
            };
            error(format!("config {}: {e}{hint}", path.display()))
        })?;
        let raw: Raw = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            let message = e.message().trim_end().replace('\n', "; ");
            error(Self::place(&path, &text, at, &message))
        })?;
        Ok(Config {
            path,
            text,
            pipelines: raw.pipelines,
        })
    }

    /// `FILE:LINE: message`, the way compilers name a place.
    fn place(path: &Path, text: &str, offset: Option<usize>, message: &str) -> String {
        match offset {
            Some(at) => {
                let line = 1 + text[..at.min(text.len())].matches('\n').count();
                format!("{}:{line}: {message}", path.display())
            }
            None => format!("{}: {message}", path.display()),
        }
    }

    fn at<T>(&self, spanned: &Spanned<T>, message: &str) -> clap::Error {
        error(Self::place(
            &self.path,
            &self.text,
            Some(spanned.span().start),
            message,
        ))
    }

    /// The command line pipeline `name` stands for, with `given` (the flags
    /// after `run NAME`) last: what `batchproc` then parses as if typed.
    pub fn command_line(
        &self,
        name: &str,
        given: &[OsString],
    ) -> Result<Vec<OsString>, clap::Error> {
        let Some((name, keys)) = self.pipelines.get_key_value(name) else {
            let known: Vec<&str> = self
                .pipelines
                .keys()
                .map(|k| k.get_ref().as_str())
                .collect();
            return Err(error(format!(
                "{}: no pipeline '{name}' (there {}: {})",
                self.path.display(),
                if known.len() == 1 { "is" } else { "are" },
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        let keys = keys.get_ref();
        let label = |key: &str| format!("pipelines.{}.{key}", name.get_ref());
        let Some((_, command)) = keys.iter().find(|(k, _)| k.get_ref() == "command") else {
            return Err(self.at(
                name,
                &format!(
                    "{}: missing; one of: {}",
                    label("command"),
                    COMMANDS.join(", ")
                ),
            ));
        };
        let command = match command.get_ref() {
            Value::String(c) if COMMANDS.contains(&c.as_str()) => c.clone(),
            other => {
                let message = format!(
                    "{}: expected one of {}, found {other}",
                    label("command"),
                    COMMANDS.join(", ")
                );
                return Err(self.at(command, &message));
            }
        };
        let mut cli = Cli::command();
        let given_by_user = user_sources(&mut cli, &command, given)?;
        let sub = cli
            .find_subcommand(&command)
            .expect("COMMANDS are subcommands");
        let (mut positional, mut flags) = (Vec::new(), Vec::new());
        for (key, value) in keys {
            let key_name = key.get_ref().as_str();
            if key_name == "command" {
                continue;
            }
            let Some(arg) = find_arg(sub, key_name) else {
                let known: Vec<String> = sub.get_arguments().filter_map(key_of).collect();
                let message = format!(
                    "{}: unknown key for a {command} pipeline (keys: command, {})",
                    label(key_name),
                    known.join(", ")
                );
                return Err(self.at(key, &message));
            };
            if given_by_user(arg.get_id().as_str()) {
                continue;
            }
            let texts = self.values(arg, value, &label(key_name))?;
            for text in texts.iter().filter(|_| arg.get_action().takes_values()) {
                if let Err(e) = check(arg, text) {
                    let message = format!("{}: {}", label(key_name), clap_message(&e));
                    return Err(self.at(value, &message));
                }
            }
            if arg.is_positional() {
                positional.extend(texts.into_iter().map(OsString::from));
            } else if !arg.get_action().takes_values() {
                flags.extend(
                    texts
                        .iter()
                        .map(|_| OsString::from(format!("--{key_name}"))),
                );
            } else {
                flags.extend(
                    texts
                        .iter()
                        .map(|t| OsString::from(format!("--{key_name}={t}"))),
                );
            }
        }
        let mut line = vec![OsString::from("batchproc"), OsString::from(command)];
        line.extend(flags);
        line.extend(given.iter().cloned());
        // Last and after `--`, so that a directory may start with `-`. The
        // file's directories are only here when the flags given hold none,
        // though they may end in a bare `--`.
        if !positional.is_empty() && !given.iter().any(|g| g == "--") {
            line.push(OsString::from("--"));
        }
        line.extend(positional);
        Ok(line)
    }

    /// A key's value as the texts its flag takes: one per value of a list
    /// for a repeatable flag, one per count for a counted one (`verbose =
    /// 2`), none for a switch set false. Strings are interpolated.
    fn values(
        &self,
        arg: &Arg,
        value: &Spanned<Value>,
        label: &str,
    ) -> Result<Vec<String>, clap::Error> {
        let wrong = |expected: &str| {
            let found = value.get_ref().type_str();
            self.at(
                value,
                &format!("{label}: expected {expected}, found {found}"),
            )
        };
        let scalar = |v: &Value| -> Result<String, clap::Error> {
            match v {
                Value::String(s) => interpolate(s, |n| std::env::var(n).ok())
                    .map_err(|m| self.at(value, &format!("{label}: {m}"))),
                Value::Integer(i) => Ok(i.to_string()),
                _ => Err(wrong("a string or an integer")),
            }
        };
        let repeatable = arg.is_positional() || matches!(arg.get_action(), ArgAction::Append);
        match (arg.get_action(), value.get_ref()) {
            (ArgAction::SetTrue, Value::Boolean(on)) => {
                Ok(if *on { vec![String::new()] } else { vec![] })
            }
            (ArgAction::SetTrue, _) => Err(wrong("true or false")),
            (ArgAction::Count, Value::Integer(n)) if (0..=8).contains(n) => {
                Ok(vec![String::new(); *n as usize])
            }
            (ArgAction::Count, _) => Err(wrong("a count from 0 to 8")),
            (_, Value::Array(items)) if repeatable => items.iter().map(scalar).collect(),
            (_, Value::Array(_)) => Err(wrong("one value, not a list")),
            (_, v) => Ok(vec![scalar(v)?]),
        }
    }

    /// One line per pipeline for `batchproc list`: its name, command, what
    /// it reads and where it writes, as written (variables not filled in,
    /// so listing needs no environment; passwords redacted).
    pub fn list(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .pipelines
            .iter()
            .map(|(name, keys)| {
                let get = |key: &str| {
                    keys.get_ref()
                        .iter()
                        .find(|(k, _)| k.get_ref() == key)
                        .map(|(_, v)| text_of(v.get_ref()))
                };
                let command = get("command").unwrap_or_default();
                let from = match command.as_str() {
                    "query" => get("from").unwrap_or_default(),
                    "queue" => format!(
                        "{} {}",
                        get("from").unwrap_or_default(),
                        get("queue").unwrap_or_default()
                    ),
                    _ => get("dirs").unwrap_or_default(),
                };
                let sink = get("sink").unwrap_or_else(|| "sqlite:batchproc.db".into());
                let mut what = format!("{from} -> {sink}");
                if let Some(processors) = get("processor") {
                    what.push_str(&format!(" ({processors})"));
                }
                [name.get_ref().clone(), command, batchproc::redact(&what)]
            })
            .collect();
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let (name_width, command_width) = (width(0), width(1));
        rows.iter()
            .map(|[name, command, what]| {
                format!("{name:name_width$}  {command:command_width$}  {what}\n")
            })
            .collect()
    }
}

/// Which flags the command line or the environment already gave, by arg
/// id, with each flag that excludes one of them counted as given too: a
/// file's `workers` must not clash with `--max-workers` on the command line.
fn user_sources(
    cli: &mut clap::Command,
    command: &str,
    given: &[OsString],
) -> Result<impl Fn(&str) -> bool, clap::Error> {
    // Required flags may come from the file: the probe only asks where each
    // given flag came from.
    let mut probe = cli
        .clone()
        .mut_subcommand(command, |sub| sub.mut_args(|a| a.required(false)));
    let line = [OsString::from("batchproc"), OsString::from(command)]
        .into_iter()
        .chain(given.iter().cloned());
    let matches: ArgMatches = probe.try_get_matches_from_mut(line)?;
    let sub = matches
        .subcommand_matches(command)
        .expect("parsed as this command");
    let by_user = |id: &str| {
        matches!(
            sub.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut given_ids: Vec<String> = cli
        .find_subcommand(command)
        .expect("COMMANDS are subcommands")
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| by_user(id))
        .collect();
    for (one, other) in EXCLUSIVE {
        if one.iter().any(|id| by_user(id)) {
            given_ids.extend(other.iter().map(|id| id.to_string()));
        }
        if other.iter().any(|id| by_user(id)) {
            given_ids.extend(one.iter().map(|id| id.to_string()));
        }
    }
    Ok(move |id: &str| given_ids.iter().any(|g| g == id))
}

/// Whether clap takes `text` as a value of `arg`: the same check, and the
/// same message, as on the command line.
fn check(arg: &Arg, text: &str) -> Result<(), clap::Error> {
    let given = match arg.is_positional() {
        true => vec![OsString::from("--"), OsString::from(text)],
        false => vec![OsString::from(format!(
            "--{}={text}",
            arg.get_long().unwrap_or_default()
        ))],
    };
    clap::Command::new("batchproc")
        .no_binary_name(true)
        .arg(arg.clone().required(false))
        .try_get_matches_from(given)
        .map(drop)
}

/// The flag a key names: its long name, or `dirs` for the directories.
fn find_arg<'c>(sub: &'c clap::Command, key: &str) -> Option<&'c Arg> {
    sub.get_arguments()
        .find(|a| key_of(a).as_deref() == Some(key))
}

/// The key that stands for `arg` in a pipeline, if one does.
fn key_of(arg: &Arg) -> Option<String> {
    if arg.is_positional() {
        return Some(arg.get_id().to_string());
    }
    match arg.get_long() {
        Some("help" | "version") | None => None,
        Some(long) => Some(long.to_string()),
    }
}

/// clap's own reason on one line: its `error: ` and usage lines left out,
/// the possible values and a suggestion kept.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect();
    let line = kept.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

/// A value as `batchproc list` shows it: a list's items joined by commas.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}
