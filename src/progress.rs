//! What a person sees while a run goes: a progress bar on a terminal
//! (indicatif; none when stderr is not a terminal, so cron mail and CI logs
//! stay plain) and the one-line summary at the end.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::pool::PoolStats;

/// The live view of a run. All methods are cheap no-ops without a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar on stderr when it is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        // No length until the counting walk reports one, so the bar does not
        // start out looking full.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {human_pos}/{human_len} items  {rate}  ETA {eta}  [{wide_bar}]",
            )
            .expect("valid template")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar) }
    }

    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }

    /// The total so far, from the counting walk that runs ahead.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Prints a line above the bar without tearing it.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| say(line)),
            None => say(line),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Counts of a finished run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub ok: u64,
    pub failed: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// How the worker pool was used: tells whether more (or fewer) workers
    /// would have helped.
    pub pool: PoolStats,
}

impl Summary {
    /// `1000 ok, 2 failed in 1.23s (813 items/s, 12.3 MB/s; workers busy: peak 4, avg 3.2)`
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let items = self.ok + self.failed;
        format!(
            "{} ok, {} failed in {:.2}s ({:.0} items/s, {:.1} MB/s; workers busy: peak {}, avg {:.1})",
            self.ok,
            self.failed,
            secs,
            items as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.pool.peak_busy,
            self.pool.average_busy,
        )
    }
}

/// Writes one line to stderr. A closed or full stderr is ignored: losing a
/// message must not crash a run that is committing data.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
