//! Checkpoints: what makes a killed run resumable with each item's record
//! committed exactly once.
//!
//! Items have a key in the source's deterministic order ([`key`]). The
//! [`ledger`] follows them: dispatched, committed. The run's *watermark* is
//! the last key of the contiguous committed prefix; items committed beyond
//! it are kept as checkpoint rows. Every sink batch writes its records,
//! those rows and the new watermark in one transaction ([`CheckpointUpdate`],
//! written by [`runs::record`]). On resume the source starts after the
//! watermark and the ledger skips the few checkpointed keys beyond it.
//!
//! The ledger also bounds the window: the source may run at most `window`
//! items ahead of the watermark, so a resume never loads more than that and
//! one stuck item cannot grow memory without bound. Which run a resume
//! continues is decided by the pipeline's [`fingerprint`].

pub(crate) mod fingerprint;
pub(crate) mod key;
pub(crate) mod ledger;
pub(crate) mod runs;

use std::collections::HashSet;

pub(crate) use fingerprint::{Fingerprint, Part};
pub(crate) use key::ItemKey;
pub(crate) use ledger::{Dispatch, Ledger, Seq};
pub(crate) use runs::{Ending, RunEnd};

/// How far an earlier attempt of this run got.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResumePoint {
    /// Every item up to and including this key (source order) is committed.
    pub(crate) watermark: Option<ItemKey>,
    /// Keys committed beyond the watermark.
    pub(crate) done: HashSet<ItemKey>,
    /// Items committed with an error (under `--on-error skip`), which this
    /// attempt tries again before it goes on.
    pub(crate) retry: Vec<ItemKey>,
}

/// What a run asks of the bookkeeping when it starts.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    pub(crate) fingerprint: String,
    /// The fingerprint an older batchproc gave the same pipeline.
    pub(crate) legacy_fingerprint: String,
    pub(crate) command: String,
    pub(crate) table: Option<String>,
    pub(crate) resume: bool,
    /// An incremental run (`query --cursor`): it starts from the cursor of
    /// the pipeline's last succeeded run.
    pub(crate) cursor: bool,
    /// A queue run: never resumed, and several may work at once (consumers
    /// of one queue share its messages), so no lock keeps them apart.
    pub(crate) queue: bool,
    /// `--shard`: which shard (`2/3`), shown by `batchproc runs`. Its
    /// identity is in the fingerprint already.
    pub(crate) shard: Option<String>,
}

/// The range of cursor values a run reads, in the stored form the source
/// made of them (`runs` only moves them around).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CursorRange {
    /// Where the last succeeded run's range ended (exclusive); None: no such run.
    pub(crate) after: Option<String>,
    /// Where this run's range ends (inclusive); None: not read yet.
    pub(crate) upto: Option<String>,
}

/// The run a sink opened: a new one, or an unfinished one continued.
#[derive(Debug, Clone)]
pub(crate) struct RunStart {
    pub(crate) run_id: i64,
    pub(crate) resumed: bool,
    pub(crate) point: ResumePoint,
    /// CSV sink: committed length of the CSV file.
    pub(crate) csv_length: Option<u64>,
    /// An incremental run's range (see [`RunSpec::cursor`]).
    pub(crate) cursor: Option<CursorRange>,
    /// A line for the user (resuming, nothing to resume, resumable run exists).
    pub(crate) notice: Option<String>,
}

/// The bookkeeping that commits with one batch of records.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckpointUpdate {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) watermark: Option<ItemKey>,
    /// Checkpoint rows to add: committed keys beyond the new watermark.
    pub(crate) insert: Vec<ItemKey>,
    /// Checkpoint rows the new watermark made redundant.
    pub(crate) delete: Vec<ItemKey>,
    /// The batch's items that commit beyond the new watermark (those of
    /// `insert`), by sequence number.
    pub(crate) beyond: Vec<Seq>,
    /// Items that failed in this batch, to be retried by a resume.
    pub(crate) failures: Vec<ItemKey>,
    /// Earlier failures done with: retried and passed, or gone from the
    /// source. Each was counted as failed, and no longer is.
    pub(crate) cleared: Vec<ItemKey>,
    /// Items unchanged since an earlier run that the new watermark passed.
    pub(crate) unchanged: u64,
    /// Rows of items gone from the source, deleted in this transaction (`--prune`).
    pub(crate) removed: u64,
    /// Queue messages this batch is done with (records committed, or
    /// skipped), to be settled with the queue once it commits — or in its
    /// transaction, by a sink in the queue's database.
    pub(crate) acks: Vec<ItemKey>,
    /// Poison queue messages this batch records: set aside (terminated,
    /// archived) once it commits, never acked.
    pub(crate) poison: Vec<ItemKey>,
    /// The ledger's own: the sequence number after the planned prefix.
    pub(crate) upto: Seq,
}

/// One run recorded in a sink, as `batchproc runs` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    /// `running`, `succeeded`, `failed`, `interrupted` or `paused`.
    pub status: String,
    /// Items committed without error, and with one.
    pub ok: i64,
    pub failed: i64,
    /// Items met but not processed (not regular files, vanished).
    pub skipped: i64,
    /// Items unchanged since an earlier run (`--incremental`): not processed.
    pub unchanged: i64,
    /// Rows deleted because their items were gone (`--prune`).
    pub removed: i64,
    /// How many times the run was started (1, plus one per `--resume`).
    pub attempts: i64,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub table: Option<String>,
    /// The command line, passwords redacted.
    pub command: String,
    /// Who works (or last worked) the run.
    pub pid: Option<i64>,
    pub host: Option<String>,
    /// The most workers busy at one moment (over every attempt), and the
    /// average over the last attempt; None for runs recorded before 0.2.
    pub peak_busy: Option<i64>,
    pub average_busy: Option<f64>,
    /// `--shard`: which shard of its pipeline the run handled (`2/3`);
    /// None for a run of the whole source.
    pub shard: Option<String>,
}

/// The command line as the user typed it, shell-quoted where needed, with
/// passwords redacted. Each argument is redacted on its own, before quoting
/// and joining: a space inside one (`'postgres://u:pa ss@h/d'`) must not
/// split its URL in two.
pub(crate) fn command_line() -> String {
    let mut args = std::env::args_os();
    let program = args.next().map(|p| {
        let p = std::path::PathBuf::from(p);
        p.file_name()
            .map_or(p.clone().into_os_string(), |n| n.to_owned())
    });
    let words: Vec<String> = program
        .into_iter()
        .chain(args)
        .map(|a| quote(&crate::redact::redact(&a.to_string_lossy())))
        .collect();
    words.join(" ")
}

/// `word` as a shell reads it back: as it is when plain, else in single quotes.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
