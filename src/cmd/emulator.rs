//! `emulator`: run the local ext-v1 emulator until Ctrl-C or SIGTERM.

use std::time::Duration;

use crate::cli::EmulatorArgs;
use crate::emulator::{self, Emulator};
use crate::error::Error;

pub fn run(args: &EmulatorArgs) -> Result<crate::cli::exit::Ended, Error> {
    let mut keys = args.api_keys.clone();
    if keys.is_empty() {
        match std::env::var(crate::cli::env::API_KEY) {
            Ok(k) if !k.trim().is_empty() => keys.push(k.trim().to_string()),
            _ => {
                return Err(Error::Usage(
                    "the emulator needs a key to accept: --api-key KEY (or TELEMETRON_API_KEY)".into(),
                ));
            }
        }
    }
    if !(0.0..=1.0).contains(&args.fail_rate) {
        return Err(Error::Usage(format!("--fail-rate must be between 0 and 1, not {}", args.fail_rate)));
    }
    if args.rate_limit == Some(0) {
        return Err(Error::Usage("--rate-limit must be at least 1".into()));
    }
    let config = emulator::Config {
        api_keys: keys,
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        fail_rate: args.fail_rate,
        rate_limit: args.rate_limit,
        seed: args.seed,
        properties_on_update: args.device_properties,
        all_unknown_assign: args.all_unknown_assign,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Setup(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| Error::Setup(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr().map_err(|e| Error::Setup(e.to_string()))?;
        let orgs = config.api_keys.len();
        super::stdout_write(|out| {
            writeln!(out, "emulator listening on http://{addr}{} ({orgs} organization(s))", emulator::API_PREFIX)?;
            writeln!(out, "admin: http://{addr}/_emulator/state  http://{addr}/_emulator/requests")
        })?;
        tracing::info!(%addr, ?config, "emulator started");
        emulator::serve(listener, Emulator::new(config), super::shutdown_signal())
            .await
            .map_err(|e| Error::Setup(format!("emulator stopped: {e}")))
    })?;
    Ok(crate::cli::exit::Ended::done())
}
