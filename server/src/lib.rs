//! `objectos serve`: the kernel as a long-running runner on a data directory.
//!
//! It takes the data directory's runner lease (one process at a time runs plugins there; a
//! second `serve` is refused with the holder's pid, or waits with `--standby` and takes over
//! when the holder stops or dies), starts the plugins, and keeps their schedules, jobs,
//! automations and subscriptions running until SIGTERM or SIGINT: then every plugin is
//! stopped (its disable hook within the kernel's hook timeout), the audit trail flushed, the
//! lease given up, and the process exits 0. Its first line on stdout is
//! `listening on http://ADDR:PORT`; it serves `/health` and Prometheus `/metrics` there, on a
//! loopback address only, until the API brings authentication.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use objectos_builtins::host;
use objectos_kernel::{Kernel, KernelError};
use serde_json::json;

/// What `serve` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen (a loopback address; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Wait for the runner lease rather than refuse while another process holds it.
    pub standby: bool,
}

/// Why `serve` stopped before serving, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The kernel refused or failed (another runner holds the lease, a busy database...).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The address cannot be listened on, or is not allowed.
    #[error("{0}")]
    Listen(String),
}

/// How long `serve` waits between tries for the lease as a standby.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// Run the kernel on `data_dir` until `stop` completes (a signal, for the command), writing the
/// `listening on` line to `announce` once it listens. Returns when everything has stopped.
pub async fn serve(data_dir: std::path::PathBuf, options: Options, announce: impl FnOnce(SocketAddr), stop: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    if !options.listen.ip().is_loopback() {
        return Err(ServeError::Listen(format!(
            "{} is not a loopback address: until the HTTP API has its accounts and tokens, serve listens on this machine only (127.0.0.1 or [::1])",
            options.listen
        )));
    }
    let kernel = host::open(&data_dir)?;
    let mut stop = Box::pin(stop);
    let lease = loop {
        match kernel.take_runner("objectos serve") {
            Ok(lease) => break lease,
            Err(KernelError::RunnerHeld { .. }) if options.standby => {
                tokio::select! {
                    () = tokio::time::sleep(STANDBY_POLL) => {}
                    () = &mut stop => return Ok(()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|e| ServeError::Listen(format!("cannot listen on {}: {e}", options.listen)))?;
    let addr = listener.local_addr().map_err(|e| ServeError::Listen(e.to_string()))?;
    let started = host::start(&kernel).await?;
    started.print_warnings("objectos serve");
    announce(addr);
    tracing::info!(%addr, "serving");
    let app = Router::new().route("/health", get(health)).route("/metrics", get(metrics)).with_state(kernel.clone());
    let lost = lease.lost();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        tokio::select! {
            () = stop => {}
            () = lost => tracing::error!("stopping: another process took the runner lease"),
        }
    });
    let served = server.await;
    kernel.shutdown().await;
    drop(lease);
    served.map_err(|e| ServeError::Listen(e.to_string()))
}

/// `GET /health`: 200 with what runs here while the kernel runs.
async fn health(State(kernel): State<Kernel>) -> Response {
    match kernel.plugins() {
        Ok(plugins) => {
            let enabled = plugins.iter().filter(|p| p.state == objectos_kernel::model::lifecycle::State::Enabled).count();
            let failed = plugins.iter().filter(|p| p.state == objectos_kernel::model::lifecycle::State::Error).count();
            Json(json!({ "status": "ok", "pid": std::process::id(), "plugins": plugins.len(), "enabled": enabled, "failed": failed })).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "error": e.kind(), "message": e.to_string() }))).into_response(),
    }
}

/// `GET /metrics`: the Prometheus text exposition, while the metrics plugin is enabled.
async fn metrics(State(kernel): State<Kernel>) -> Response {
    match objectos_admin::metrics::text(&kernel) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}; enable it with `objectos plugins enable {}`\n", objectos_admin::metrics::PLUGIN)).into_response(),
    }
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this
/// is called (within the runtime), before anything is announced, so a signal sent as soon as
/// `serve` says it listens is never taken by the default action.
pub fn terminated() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
