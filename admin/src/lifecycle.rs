//! Lifecycle changes asked of the process that runs the plugins (the runner), from one that
//! runs none: an `objectos` command or a console beside `objectos serve`.

use std::time::Duration;

use objectos_kernel::host::Requested;
use objectos_kernel::model::lifecycle::State;
use objectos_kernel::Kernel;

use crate::{AdminError, Result};

/// How long a host waits for the runner to carry out a lifecycle change it asked for.
pub const RUNNER_WAIT: Duration = Duration::from_secs(15);

/// Ask the runner to bring `id` to `desired` (with the related plugins: dependencies for an
/// enable, enabled dependents otherwise) and wait until it has: each plugin asked for, with
/// the state the runner recorded (none when `id` was there already). Refused `runnerFailed`
/// when the runner could not (with its reason), `runnerBusy` when it has not within
/// [`RUNNER_WAIT`]. This kernel then shows what the runner recorded.
pub async fn ask_runner(kernel: &Kernel, id: &str, desired: State, related: bool) -> Result<Vec<Requested>> {
    let request = kernel.request(id, desired, related)?;
    let outcome = kernel.await_requested(&request, RUNNER_WAIT).await?;
    kernel.sync_external().await?;
    let by = || kernel.runner().ok().flatten().map_or_else(|| "the process that runs the plugins".to_string(), |r| format!("{} (process {})", r.what, r.pid));
    if let Some(failed) = outcome.iter().find(|r| r.error.is_some()) {
        return Err(AdminError::refused("runnerFailed", format!("{} could not bring {} to {desired}: {}", by(), failed.plugin, failed.error.as_deref().unwrap_or_default())));
    }
    if let Some(waiting) = outcome.iter().find(|r| !r.done) {
        return Err(AdminError::refused(
            "runnerBusy",
            format!("{} runs the plugins here and has not carried this out within {} s ({} is still {}); it will when it can", by(), RUNNER_WAIT.as_secs(), waiting.plugin, waiting.state),
        ));
    }
    Ok(outcome)
}
