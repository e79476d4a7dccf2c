//! What a person sees while a run goes: warnings and notices on stderr as
//! `batchproc: …` lines, and a progress bar when stderr is a terminal
//! (indicatif; none otherwise, so cron mail and CI logs stay plain).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use batchproc::Events;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The bar's line until a total is known, and for good when none can be
/// (a query shard: `count(*)` cannot tell shards apart): what is done and
/// the rate, no total, ETA or bar that would have to be made up.
const COUNTING: &str = "{spinner} {human_pos} items  {rate}";
/// The bar's line once the counting ahead reported a total.
const TOTAL: &str = "{spinner} {human_pos}/{human_len} items  {rate}  ETA {eta}  [{wide_bar}]";

/// The run's events, for a person at a terminal (or reading a log).
pub struct Terminal {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// Whether the bar shows a total yet.
    total: AtomicBool,
}

impl Terminal {
    /// A bar on stderr when it is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Self {
        let total = AtomicBool::new(false);
        if quiet || !std::io::stderr().is_terminal() {
            return Terminal {
                bar: None,
                quiet,
                total,
            };
        }
        // No length until the counting walk reports one, so the bar does not
        // start out looking full.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style(COUNTING));
        bar.enable_steady_tick(Duration::from_millis(200));
        super::log::bar_shown(&bar);
        Terminal {
            bar: Some(bar),
            quiet,
            total,
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
            if !self.total.swap(true, Ordering::Relaxed) {
                bar.set_style(style(TOTAL));
            }
        }
    }

    fn progress(&self, items: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(items);
        }
    }
}

/// The bar's style with `template`, which may show `{rate}` (items a second).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
        .progress_chars("=> ")
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
