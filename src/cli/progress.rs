//! Progress of a long run on stderr: bars with rate and ETA on a terminal, a log line every ten
//! seconds otherwise (cron, log collectors).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::execute::Progress;

/// Chooses bars or log lines by whether stderr is a terminal (and takes text: under
/// `--log-format json`, progress is log lines too).
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(crate::execute::Silent)
    } else if std::io::stderr().is_terminal() && !super::output::is_json() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines::new(Duration::from_secs(10)))
    }
}

#[derive(Default)]
struct Bars {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress for Bars {
    fn phase(&self, name: &'static str, calls: u64) {
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        // Left where it is: a bar shows the calls made, never more (after a stop, less).
        if let Some(old) = slot.take() {
            old.abandon();
        }
        if calls == 0 {
            return;
        }
        let bar = indicatif::ProgressBar::new(calls).with_prefix(name);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>13} [{bar:30}] {pos}/{len} calls  {rate}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1} calls/s", s.per_sec());
                })
                .progress_chars("=> "),
        );
        *slot = Some(bar);
    }

    fn advance(&self, calls: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc(calls);
        }
    }

    fn more(&self, calls: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc_length(calls);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.abandon();
        }
    }
}

struct Lines {
    every: Duration,
    state: Mutex<LineState>,
}

struct LineState {
    name: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Lines {
    fn new(every: Duration) -> Lines {
        let now = Instant::now();
        Lines { every, state: Mutex::new(LineState { name: "", total: 0, done: 0, started: now, last: now }) }
    }

    /// The last word on a phase: the calls it made of those it was to make (after a stop,
    /// fewer).
    fn ended(s: &LineState) {
        if s.total > 0 {
            tracing::info!(phase = s.name, done = s.done, total = s.total, "phase ended");
        }
    }
}

impl Progress for Lines {
    fn phase(&self, name: &'static str, calls: u64) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Lines::ended(&s);
        *s = LineState { name, total: calls, done: 0, started: now, last: now };
        if calls > 0 {
            tracing::info!(phase = name, calls, "phase started");
        }
    }

    fn advance(&self, calls: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.done += calls;
        if s.last.elapsed() >= self.every {
            s.last = Instant::now();
            let secs = s.started.elapsed().as_secs_f64();
            let rate = s.done as f64 / secs.max(1e-9);
            let eta = (s.total.saturating_sub(s.done)) as f64 / rate.max(1e-9);
            tracing::info!(
                phase = s.name,
                done = s.done,
                total = s.total,
                calls_per_second = (rate * 10.0).round() / 10.0,
                eta_seconds = eta.round() as u64,
                "progress"
            );
        }
    }

    fn more(&self, calls: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total += calls;
    }

    fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Lines::ended(&s);
        s.total = 0;
    }
}
