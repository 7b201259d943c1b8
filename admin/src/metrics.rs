//! Every plugin's counters, and what metric sources add, as Prometheus text.

use objectos_kernel::Kernel;

use crate::{AdminError, Result};

/// The plugin that renders the figures.
pub const PLUGIN: &str = objectos_metrics::ID;

/// The Prometheus text exposition (version 0.0.4) of every plugin's counters and every
/// metric source's families; refused while the metrics plugin is not enabled.
pub fn text(kernel: &Kernel) -> Result<String> {
    let metrics = kernel
        .service::<objectos_metrics::Metrics>(objectos_metrics::SERVICE)
        .map_err(|_| AdminError::refused("unavailable", format!("the Metrics plugin ({PLUGIN}) is not enabled")))?;
    Ok(metrics.render()?)
}
