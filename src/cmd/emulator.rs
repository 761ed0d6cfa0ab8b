//! `emulator`: run the local ext-v1 emulator until Ctrl-C or SIGTERM.

use crate::emulator::{self, Emulator};
use crate::error::Error;

pub fn run(listen: std::net::SocketAddr, config: emulator::Config) -> Result<crate::cli::exit::Ended, Error> {
    let rt = crate::sync::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Setup(format!("cannot listen on {}: {e}", listen)))?;
        let addr = listener.local_addr().map_err(|e| Error::Setup(e.to_string()))?;
        let orgs = config.api_keys.len();
        // Said before the address is printed: whoever waits for that line has seen it.
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "the emulator listens where other machines can reach it: it is for tests and rehearsals, holds its data in memory, and speaks plain HTTP (keys travel in clear). Listen on 127.0.0.1 unless that is what you want"
            );
        }
        super::stdout_write(|out| {
            writeln!(out, "emulator listening on http://{addr}{} ({orgs} organization(s))", emulator::API_PREFIX)?;
            writeln!(out, "admin: http://{addr}/_emulator/state  http://{addr}/_emulator/requests (with the key in x-api-key)")
        })?;
        tracing::info!(%addr, ?config, "emulator started");
        emulator::serve(listener, Emulator::new(config), super::shutdown_signal())
            .await
            .map_err(|e| Error::Setup(format!("emulator stopped: {e}")))
    })?;
    Ok(crate::cli::exit::Ended::done())
}
