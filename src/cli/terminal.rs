//! What a person sees while a run goes: warnings and notices on stderr as
//! `batchproc: …` lines, and a progress bar when stderr is a terminal
//! (indicatif; none otherwise, so cron mail and CI logs stay plain).

use std::io::IsTerminal;
use std::time::Duration;

use batchproc::Events;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The run's events, for a person at a terminal (or reading a log).
pub struct Terminal {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Terminal {
    /// A bar on stderr when it is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Terminal { bar: None, quiet };
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
        super::log::bar_shown(&bar);
        Terminal {
            bar: Some(bar),
            quiet,
        }
    }

    /// Prints a line above the bar without tearing it.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| say(line)),
            None => say(line),
        }
    }

    /// Clears the bar, before the summary line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            super::log::bar_gone();
            bar.finish_and_clear();
        }
    }
}

impl Events for Terminal {
    fn notice(&self, line: &str) {
        if !self.quiet {
            self.println(&format!("batchproc: {line}"));
        }
    }

    fn warning(&self, line: &str) {
        self.println(&format!("batchproc: warning: {line}"));
    }

    fn wants_total(&self) -> bool {
        self.bar.is_some()
    }

    fn total(&self, items: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(items);
        }
    }

    fn progress(&self, items: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(items);
        }
    }
}

/// Writes one line to stderr, redacted (every message names its URLs
/// redacted already; this is the net under them), as a JSON object with
/// `--log-format json`. A closed or full stderr is ignored: losing a
/// message must not crash a run that is committing data.
pub fn say(line: &str) {
    use std::io::Write;
    let line = batchproc::redact(line);
    let line = super::log::json_line(&line).unwrap_or(line);
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
