//! The command line: clap's commands, and parsing them — with every long
//! flag also read from the environment, and `run NAME` turned into the
//! command its pipeline stands for. The flags of the commands that run a
//! pipeline, and how they become a `Pipeline`, are in [`args`] (which
//! checks everything; a bad value is exit 2 from there).

mod args;
mod config;
mod failures;
mod generate;
pub mod log;
mod queue;
mod runs;
mod shard;
pub mod summary;
mod terminal;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use args::EXCLUSIVE;
pub use args::{FilesArgs, Invocation, QueryArgs};
pub use failures::print_failures;
pub use generate::{completions, man, man_pages};
pub use queue::QueueArgs;
pub use runs::print_runs;
pub use terminal::{say, Terminal};

/// The exit codes, under `--help` of every command that runs a pipeline.
const EXIT_CODES: &str = "Exit codes: 0 every item succeeded; 1 an item failed; 2 usage or \
    configuration error; 3 paused at --max-runtime (what finished is committed; --resume \
    continues); 75 another run of this pipeline is live (try again later); 130 interrupted (what \
    finished is committed; --resume continues); 141 stdout closed.";

#[derive(Debug, Parser)]
#[command(
    name = "batchproc",
    version,
    about = "Batch jobs over many files or database rows: a bounded worker pool, fail-fast, \
             exactly-once results in SQLite, Postgres or CSV",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process every regular file under one or more directories.
    #[command(after_help = EXIT_CODES)]
    Files(FilesArgs),
    /// Process every row of a database query, read page by page.
    #[command(after_help = EXIT_CODES)]
    Query(QueryArgs),
    /// Drain a queue (NATS JetStream, pgmq): each message's record exactly once, acked after it commits.
    #[command(after_help = EXIT_CODES)]
    Queue(QueueArgs),
    /// List the runs recorded in a sink, newest first.
    Runs(RunsArgs),
    /// List the files whose row holds an error, most consecutive failed runs first.
    Failures(FailuresArgs),
    /// Run a named pipeline from batchproc.toml; flags after NAME win over the file.
    #[command(after_help = EXIT_CODES)]
    Run(NamedArgs),
    /// List the pipelines in batchproc.toml, one line each.
    List {
        /// The config file [default: ./batchproc.toml].
        #[arg(long, value_name = "PATH", env = "BATCHPROC_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script (see the README for where it goes).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per command into a directory.
    Man {
        /// Write batchproc.1, batchproc-files.1, … into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct NamedArgs {
    /// The config file [default: ./batchproc.toml].
    #[arg(long, value_name = "PATH", env = "BATCHPROC_CONFIG")]
    pub config: Option<PathBuf>,

    /// The pipeline: a [pipelines.NAME] table of the config file.
    pub name: String,

    /// Flags of the pipeline's command (files or query), over the file's.
    #[arg(
        value_name = "FLAGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub flags: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The sink whose runs to list: sqlite:PATH, postgres://…, csv:PATH (its state file), or a .db/.csv path.
    #[arg(
        short = 'o',
        long,
        value_name = "URL",
        default_value = "sqlite:batchproc.db",
        env = "BATCHPROC_SINK",
        hide_env_values = true
    )]
    pub sink: String,

    /// Print JSON (one array of objects) for scripts.
    #[arg(long, env = "BATCHPROC_JSON", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FailuresArgs {
    /// The sink holding the files table: sqlite:PATH, postgres://…, or a .db path.
    #[arg(
        short = 'o',
        long,
        value_name = "URL",
        default_value = "sqlite:batchproc.db",
        env = "BATCHPROC_SINK",
        hide_env_values = true
    )]
    pub sink: String,

    /// The table the files runs wrote.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "files",
        env = "BATCHPROC_TABLE",
        hide_env_values = true
    )]
    pub table: String,

    /// Only files that failed in at least N consecutive runs (as --incremental counts them).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        env = "BATCHPROC_MIN",
        hide_env_values = true
    )]
    pub min: i64,

    /// Print JSON (one array of objects) for scripts.
    #[arg(long, env = "BATCHPROC_JSON", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
}

/// Parses the command line, with every long flag also read from the
/// environment as `BATCHPROC_<FLAG>`: the command line wins over it.
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os().collect())
}

fn parse_from(line: Vec<OsString>) -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(line)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    if let Command::Run(named) = cli.command {
        let (path, name, flags) = named.split()?;
        let config = config::Config::load(path.as_deref())?;
        // A pipeline's command is files or query, never run: one level deep.
        return parse_from(config.command_line(&name, &flags)?);
    }
    let run = match &mut cli.command {
        Command::Files(args) => Some((&mut args.run, false)),
        Command::Query(args) => Some((&mut args.run, false)),
        Command::Queue(args) => Some((&mut args.run, true)),
        _ => None,
    };
    if let (Some((run, queue)), Some((_, sub))) = (run, matches.subcommand()) {
        run.settle(sub)
            .map_err(|message| command.error(ErrorKind::ArgumentConflict, message))?;
        shard::resolve(run, sub, queue)?;
    }
    Ok(cli)
}

/// For a bad value that came from the environment, the variable it came
/// from: clap's message names only the flag.
pub fn env_hint(error: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let variable = format!("BATCHPROC_{}", long.to_uppercase().replace('-', "_"));
    std::env::var_os(&variable)?;
    let flag = format!("--{long}");
    let given = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    (!given).then(|| format!("(the value comes from {variable})"))
}

/// `batchproc list`'s lines, or what is wrong with the config file.
pub fn list(config: Option<&std::path::Path>) -> Result<String, clap::Error> {
    Ok(config::Config::load(config)?.list())
}

impl NamedArgs {
    /// The config file, with a `--config` among the flags after NAME taken
    /// out (clap hands everything after NAME over as the pipeline's flags).
    fn split(self) -> Result<(Option<PathBuf>, String, Vec<OsString>), clap::Error> {
        let (mut config, mut flags) = (self.config, Vec::new());
        let mut given = self.flags.into_iter();
        while let Some(flag) = given.next() {
            if flag == "--" {
                flags.push(flag);
                flags.extend(given.by_ref());
            } else if flag == "--config" {
                let Some(path) = given.next() else {
                    let message =
                        "a value is required for '--config <PATH>' but none was supplied\n";
                    return Err(clap::Error::raw(ErrorKind::InvalidValue, message));
                };
                config = Some(PathBuf::from(path));
            } else if let Some(path) = flag.to_str().and_then(|f| f.strip_prefix("--config=")) {
                config = Some(PathBuf::from(path));
            } else {
                flags.push(flag);
            }
        }
        Ok((config, self.name, flags))
    }
}
