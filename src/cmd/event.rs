//! `event`: apply one change right away — a registration, a transfer, a release, a customer's
//! details — through the engine every writing run uses (the journal, the recorder, the rate
//! limit and retries of `apply`), so that the nightly run finds nothing left to do, and a call
//! whose answer never came is read back by the next event or `apply`. `event --stdin` takes a
//! stream of JSON lines (for a registration system to pipe into) and answers one JSON line per
//! event; a bad line gets an error result and the stream goes on. An event holds the snapshot's
//! lock, as `apply` does; a stream takes it for each event and lets it go, waiting while another
//! run holds it, so a nightly `apply` and a stream that never ends can take turns.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use serde_json::{Value, json};

use crate::cli::exit::{Ended, Figures, How};
use crate::cli::settings::Settings;
use crate::cli::{EventArgs, EventCommand};
use crate::client::Client;
use crate::error::Error;
use crate::execute::Options;
use crate::snapshot::{Lock, Store};
use crate::sync::{self, Event};

impl From<&EventCommand> for Event {
    fn from(c: &EventCommand) -> Event {
        match c.clone() {
            EventCommand::Register { device, customer, device_type, properties } => {
                Event::Register { device, customer, device_type, properties }
            }
            EventCommand::Transfer { device, from, to } => Event::Transfer { device, from, to },
            EventCommand::Release { device, customer } => Event::Release { device, customer },
            EventCommand::Customer { fields: crate::cli::CustomerFields { email, name, phone, address } } => {
                Event::Customer { email: email.as_str().to_string(), name, phone, address }
            }
        }
    }
}

/// What every event of a command shares.
struct Events<'a> {
    state: &'a std::path::Path,
    client: Client,
    opts: Options,
    keep_runs: u32,
}

pub fn run(args: &EventArgs, s: &Settings) -> Result<Ended, Error> {
    let events =
        Events { state: &s.state, client: s.api()?.client()?, opts: s.event_options(), keep_runs: s.keep_runs };

    if let Some(event) = &args.event {
        let _lock = Lock::acquire(events.state)?;
        let (result, ended) = events.one(&event.into())?;
        super::stdout_write(|out| {
            serde_json::to_writer_pretty(&mut *out, &result).map_err(std::io::Error::from)?;
            writeln!(out)
        })?;
        // One event that failed is an error of the command (exit 1), as any refused call is.
        return Ok(match (result["ok"] == true, ended.how) {
            (false, How::Done | How::Partial) => {
                let why = result["error"].as_str().unwrap_or("the event failed").to_string();
                Ended::with(How::Stopped(why), ended.figures)
            }
            (_, how) => Ended::with(how, ended.figures),
        });
    }

    // Each event's run listens for signals while it sends; between events, a signal ends the
    // stream here (once any listener exists, the process no longer dies of SIGTERM by itself).
    let signalled = Arc::new(AtomicBool::new(false));
    {
        let signalled = signalled.clone();
        let rt = sync::runtime()?;
        std::thread::spawn(move || {
            rt.block_on(sync::shutdown_signal());
            signalled.store(true, Ordering::Relaxed);
        });
    }
    let lines = stdin_lines();
    let mut failed = 0u64;
    let stopped = |failed| {
        let figures = Figures { failed_operations: failed, ..Figures::default() };
        Ok(Ended::with(How::Stopped("interrupted by a signal; the stream ended between events".into()), figures))
    };
    let mut n = 0usize;
    loop {
        let line = match lines.recv_timeout(std::time::Duration::from_millis(100)) {
            _ if signalled.load(Ordering::Relaxed) => return stopped(failed),
            Ok(line) => line?,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let (mut result, ended) = match serde_json::from_str::<Event>(&line) {
            Ok(event) => {
                let _lock = wait_for_lock(events.state)?;
                events.one(&event)?
            }
            Err(e) => (json!({"ok": false, "error": format!("not an event: {e}")}), Ended::done()),
        };
        result["line"] = n.into();
        if result["ok"] != true {
            failed += 1;
        }
        // One line per event, flushed at once: a registration system reads the answers as
        // they come. A closed stdout does not stop the stream.
        let _ = super::stdout_write(|out| writeln!(out, "{result}"));
        if let How::Stopped(why) = ended.how {
            return Ok(Ended::with(How::Stopped(why), Figures { failed_operations: failed, ..Figures::default() }));
        }
    }
    Ok(Ended::counted(Figures { failed_operations: failed, ..Figures::default() }))
}

/// Standard input's lines, read on a thread of their own so that waiting for the next one
/// does not keep a signal from being seen.
fn stdin_lines() -> mpsc::Receiver<Result<String, Error>> {
    let (tx, rx) = mpsc::sync_channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let line = read_line(&mut stdin);
            let end = !matches!(line, Ok(Some(_)));
            let Some(line) = line.transpose() else { return };
            if tx.send(line).is_err() || end {
                return;
            }
        }
    });
    rx
}

/// The longest event line read (an event is one JSON object of a few hundred bytes).
pub const MAX_EVENT_LINE: usize = 64 << 10;

/// The next line of `input` without its line break, `None` at its end; a line longer than
/// [`MAX_EVENT_LINE`] is an error, not read on.
fn read_line(input: &mut impl std::io::BufRead) -> Result<Option<String>, Error> {
    use std::io::Read;
    let mut buf = Vec::new();
    let read = |e| Error::Io { what: "read", path: "stdin".into(), source: e };
    let n = input.by_ref().take(MAX_EVENT_LINE as u64 + 1).read_until(b'\n', &mut buf).map_err(read)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > MAX_EVENT_LINE {
        return Err(Error::BadFile {
            path: "stdin".into(),
            message: format!(
                "an event line is over {} KiB; an event is one JSON object on one line of a few hundred bytes. The stream stops here",
                MAX_EVENT_LINE >> 10
            ),
        });
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| Error::BadFile { path: "stdin".into(), message: "an event line is not UTF-8".into() })
}

impl Events<'_> {
    /// Runs one event as a writing run of its own (kind `event`, its result as the run's
    /// summary, so that `history` shows what events changed between nightly runs). The caller
    /// holds the lock. API failures are results; only a snapshot failure is an error.
    fn one(&self, event: &Event) -> Result<(Value, Ended), Error> {
        let name = event.name();
        let checked = match event.check() {
            Ok(c) => c,
            Err(why) => {
                let result = json!({"ok": false, "event": name, "error": why});
                let figures = Figures { failed_operations: 1, ..Figures::default() };
                return Ok((result, Ended::with(How::Partial, figures)));
            }
        };
        let mut result = Value::Null;
        let ended = sync::writing_run(self.state, "event", &self.client, &self.opts, |run_id, _| {
            let calls = checked.calls(&Store::open(self.state)?)?;
            let spec = sync::Spec {
                kind: "event",
                run_id,
                state: self.state,
                batching: crate::plan::Batching::default(),
                opts: self.opts.clone(),
                client: self.client.clone(),
                guard: None,
                deadline: None,
                keep_undo: None,
                undoes: None,
                plan_file: None,
                rejected: 0,
                quarantined: 0,
                progress: &crate::execute::Silent,
            };
            let ran = sync::run(&spec, sync::Work::Calls(calls))?;
            super::log_outcomes(self.state, run_id, &ran.outcome.failures, &[], self.keep_runs);
            // The event's result replaces the engine's summary as the run's, in its history.
            let mut store = Store::open(self.state)?;
            result = sync::event_result(name, &checked, &ran, &store)?;
            result["run"] = run_id.into();
            store.finish_run(run_id, ran.word, &result)?;
            Ok(ran.ended(0))
        });
        match ended {
            Ok(ended) => Ok((result, ended)),
            // The journal could not be read back (Telemetron did not answer): this event is
            // not sent, and the stream goes on; a snapshot that cannot be written stops it.
            Err(e @ Error::Setup(_)) => {
                let figures = Figures { failed_operations: 1, ..Figures::default() };
                Ok((json!({"ok": false, "event": name, "error": e.to_string()}), Ended::with(How::Partial, figures)))
            }
            Err(e) => Err(e),
        }
    }
}

/// Takes the snapshot's lock, waiting (and saying so once) while another run holds it.
fn wait_for_lock(state: &std::path::Path) -> Result<Lock, Error> {
    let mut said = false;
    loop {
        match Lock::try_acquire(state)? {
            Ok(lock) => return Ok(lock),
            Err(who) => {
                if !said {
                    tracing::info!(snapshot = %state.display(), "the snapshot is in use by {who}; the event waits for it");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
}
