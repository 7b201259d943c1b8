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

use std::future::{Future, IntoFuture};
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
    // An `objectos` command that runs the plugins for the moment it lasts is waited for (a
    // minute at most); another runner is waited for only as a standby.
    let command_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let lease = loop {
        match kernel.take_runner("objectos serve") {
            Ok(lease) => break lease,
            Err(KernelError::RunnerHeld { ref holder, .. })
                if options.standby || (holder.is_command() && tokio::time::Instant::now() < command_deadline) =>
            {
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
    lease.set_address(&format!("http://{addr}"))?;
    announce(addr);
    tracing::info!(%addr, "serving");
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(loopback_host))
        .with_state(kernel.clone());
    // Another process's changes (a plugin disabled or a grant revoked with `objectos`, quotas)
    // apply here, as in the console.
    let follower = tokio::spawn(follow_external(kernel.clone()));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut closed = closed;
        let _ = closed.wait_for(|c| *c).await;
    }).into_future());
    tokio::select! {
        () = stop => {}
        () = lease.lost() => tracing::error!("stopping: the runner lease is lost"),
    }
    // Plugins stop first, and the lease goes with them; no client holds that up.
    follower.abort();
    kernel.shutdown().await;
    drop(lease);
    let _ = closing.send(true);
    match tokio::time::timeout(DRAIN, server).await {
        Ok(Ok(served)) => served.map_err(|e| ServeError::Listen(e.to_string())),
        Ok(Err(e)) => Err(ServeError::Listen(e.to_string())),
        // A client that does not finish its request is not waited for.
        Err(_) => Ok(()),
    }
}

/// How long stopping waits for requests in progress.
const DRAIN: Duration = Duration::from_secs(5);

/// Apply what other processes change in the data directory, as the console does.
async fn follow_external(kernel: Kernel) {
    let mut tick = tokio::time::interval(Duration::from_millis(750));
    loop {
        tick.tick().await;
        if kernel.changed_externally() {
            if let Err(e) = kernel.sync_external().await {
                tracing::warn!("could not apply changes made by another process: {e}");
            }
        }
    }
}

/// Refuse a request whose `Host` is not a loopback name, so a web page cannot reach this
/// listener through a name it controls (DNS rebinding).
async fn loopback_host(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    if matches!(name, "localhost" | "127.0.0.1" | "::1") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()) {
        next.run(request).await
    } else {
        (StatusCode::MISDIRECTED_REQUEST, "this listener answers requests for localhost only\n").into_response()
    }
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
