//! Signals and the runtime of the commands that call Telemetron.

use crate::error::Error;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The runtime of the commands that call Telemetron: two workers, as the machine has two cores.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Setup(format!("cannot start the async runtime: {e}")))
}

/// Sets `stop` on Ctrl-C or SIGTERM, so that nothing new is sent and the calls in flight finish.
/// Call from inside the runtime; abort the handle when the work is done.
pub fn stop_on_signal(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<()> {
    stop_on_signals(stop, std::sync::Arc::new(tokio::sync::Notify::new()))
}

/// Like [`stop_on_signal`]; a second signal also notifies `now`: the caller abandons the calls
/// in flight (their intents stay in the journal for the next run to read back) and exits once
/// what was confirmed is committed.
pub fn stop_on_signals(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    now: std::sync::Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    // The listeners are made once, before any signal: a signal that comes while none is
    // registered is not seen, so making new ones for the second signal could miss it.
    #[cfg(unix)]
    let mut listeners = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        next_signal(&mut listeners).await;
        #[cfg(not(unix))]
        shutdown_signal().await;
        tracing::warn!(
            "signal received: sending nothing new, finishing the calls in flight (a second signal stops at once)"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        #[cfg(unix)]
        next_signal(&mut listeners).await;
        #[cfg(not(unix))]
        shutdown_signal().await;
        tracing::warn!("second signal: abandoning the calls in flight; committing what was confirmed");
        now.notify_one();
    })
}

/// The next SIGINT or SIGTERM on listeners made beforehand (a missing one never fires).
#[cfg(unix)]
async fn next_signal(listeners: &mut (Option<tokio::signal::unix::Signal>, Option<tokio::signal::unix::Signal>)) {
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let (int, term) = listeners;
    tokio::select! {
        () = recv(int) => {},
        () = recv(term) => {},
    }
}
