//! The one output path: results to stdout ([`stdout_write`], which the commands render into),
//! and to stderr the log lines (text or JSON), the final error and the `run_finished` event;
//! progress bars are in [`super::progress`]. With `--log-format json` every stderr line is one
//! JSON object.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::args::{GlobalArgs, LogFormat};
use super::env;
use super::exit::{self, Ended};
use crate::error::Error;

pub use crate::load::ROWS;

static JSON: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);
static STARTED: OnceLock<std::time::Instant> = OnceLock::new();

/// Whether stderr takes JSON lines (no progress bars then).
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

fn run_id() -> Option<i64> {
    crate::sync::current_run()
}

/// `chatty`: the command reports progress in log lines (`apply`), so its default level is info.
pub fn init(args: &GlobalArgs, chatty: bool) {
    let _ = STARTED.set(std::time::Instant::now());
    JSON.store(args.log_format == LogFormat::Json, Ordering::Relaxed);
    QUIET.store(args.quiet, Ordering::Relaxed);
    crate::pii::set_allowed(args.log_pii.unwrap_or(true));
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) if chatty => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter =
        EnvFilter::try_from_env(env::LOG).unwrap_or_else(|_| EnvFilter::new(format!("telemetron_sync={level},warn")));
    let format = Format { json: is_json(), ansi: !is_json() && std::io::stderr().is_terminal() };
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).event_format(format).try_init();
}

/// Whether `--log-format json` is on a command line that did not parse (so that its usage
/// error is JSON too).
pub fn json_requested(argv: &[std::ffi::OsString]) -> bool {
    argv.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json") || argv.iter().any(|a| a == "--log-format=json")
}

/// The end of a command on stderr: the final error line, if any, then (JSON only, unless
/// `-q`) the `run_finished` event with the outcome, exit code and figures.
pub fn finished(command: &str, result: &Result<Ended, Error>) -> i32 {
    let code = exit::code(result);
    let error = exit::final_error(result);
    if !is_json() {
        if let Some(e) = &error {
            let _ = writeln!(std::io::stderr().lock(), "error: {}", crate::text::inert(&crate::pii::scrub(e)));
        }
        return code;
    }
    if let Some(e) = &error {
        error_line(e, code);
    }
    if QUIET.load(Ordering::Relaxed) {
        return code;
    }
    let mut line = run_finished(exit::outcome_word(result), code);
    line.insert("command".into(), command.into());
    if let Some(e) = error {
        line.insert("error".into(), crate::text::inert(&crate::pii::scrub(&e)).into());
    }
    let figures = result.as_ref().map(|e| e.figures.clone()).unwrap_or_default();
    if let Ok(Value::Object(f)) = serde_json::to_value(&figures) {
        for (k, v) in f {
            line.entry(k).or_insert(v);
        }
    }
    let elapsed = STARTED.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    line.insert("elapsed_seconds".into(), ((elapsed * 1000.0).round() / 1000.0).into());
    if let Some(peak) = crate::mem::peak_rss_mib() {
        line.insert("peak_rss_mib".into(), peak.into());
    }
    let _ = writeln!(std::io::stderr().lock(), "{}", Value::Object(line));
    code
}

/// A usage error before the command line parsed, as a JSON line and `run_finished`.
pub fn usage_error_json(message: &str) {
    error_line(message.trim_end(), exit::USAGE);
    let _ = writeln!(std::io::stderr().lock(), "{}", Value::Object(run_finished("usage", exit::USAGE)));
}

/// The final error as a JSON line.
fn error_line(message: &str, code: i32) {
    let mut line = base_object("ERROR");
    line.insert("message".into(), crate::text::inert(&crate::pii::scrub(message)).into());
    line.insert("exit_code".into(), code.into());
    let _ = writeln!(std::io::stderr().lock(), "{}", Value::Object(line));
}

/// The `run_finished` event's common fields.
fn run_finished(outcome: &str, code: i32) -> Map<String, Value> {
    let mut line = base_object("INFO");
    line.insert("message".into(), "run_finished".into());
    line.insert("event".into(), "run_finished".into());
    line.insert("outcome".into(), outcome.into());
    line.insert("exit_code".into(), code.into());
    line
}

fn base_object(level: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("timestamp".into(), crate::time::now_rfc3339().into());
    m.insert("level".into(), level.into());
    if let Some(id) = run_id() {
        m.insert("run_id".into(), id.into());
    }
    m
}

/// The one event format, text or JSON.
struct Format {
    json: bool,
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &tracing::Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.json {
            let mut line = base_object(meta.level().as_str());
            line.insert("message".into(), fields.message.unwrap_or_default().into());
            for (k, v) in fields.values {
                line.entry(k).or_insert(v);
            }
            return writeln!(w, "{}", Value::Object(line));
        }
        let level = meta.level();
        if self.ansi {
            let color = match *level {
                tracing::Level::ERROR => "31",
                tracing::Level::WARN => "33",
                tracing::Level::INFO => "32",
                _ => "2",
            };
            write!(w, "\x1b[{color}m{level:>5}\x1b[0m ")?;
        } else {
            write!(w, "{level:>5} ")?;
        }
        write!(w, "{}", fields.message.unwrap_or_default())?;
        if meta.target() != ROWS {
            for (k, v) in &fields.values {
                match v {
                    Value::String(s) => write!(w, " {k}={s}")?,
                    other => write!(w, " {k}={other}")?,
                }
            }
        }
        writeln!(w)
    }
}

/// An event's message and fields, as JSON values.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    values: Vec<(String, Value)>,
}

impl Fields {
    /// Every string that reaches a log line passes [`crate::pii::scrub`] here, and has its
    /// control characters escaped ([`crate::text::inert`]): a server's message or an export's
    /// cell cannot drive the terminal.
    fn put(&mut self, field: &Field, v: Value) {
        let v = match v {
            Value::String(s) if !crate::pii::allowed() => {
                Value::String(crate::text::inert(&crate::pii::scrub(&s)).into_owned())
            }
            Value::String(s) => match crate::text::inert(&s) {
                std::borrow::Cow::Borrowed(_) => Value::String(s),
                std::borrow::Cow::Owned(o) => Value::String(o),
            },
            v => v,
        };
        if field.name() == "message" {
            self.message = Some(match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.values.push((field.name().to_string(), v));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn stdout_write(f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), Error> {
    let stdout = std::io::stdout();
    // Nothing printed carries a control character but line feeds and tabs (`crate::text`).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, crate::text::Inert::new(stdout.lock()));
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Io { what: "write to", path: "stdout".into(), source: e })
        }
        _ => Ok(()),
    }
}
