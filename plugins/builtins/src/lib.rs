//! The built-in plugins every ObjectOS host registers, in one place so the `objectos`
//! command and the console always offer the same set, and the [`host`] bootstrap both use to
//! open and start the kernel.

use std::sync::Arc;

use objectos_kernel::{Kernel, KernelConfig, Result};

pub mod host;

use objectos_cache as cache;
use objectos_declarative as declarative;
use objectos_i18n as i18n;
use objectos_jobs as jobs;
use objectos_metrics as metrics;
use objectos_notification as notification;
use objectos_sandbox as sandbox;

/// What a host program calls first in `main`: when this process was started to turn a
/// package's JavaScript into a component (see [`with_host_runtime`]), it does that and returns
/// the exit code; otherwise `None`, and the program goes on.
pub fn componentize_child_main() -> Option<std::process::ExitCode> {
    sandbox::componentize_child_main()
}

/// Register every built-in plugin with `kernel` (before `start`). They are recorded as
/// installed on first start; an admin enables the ones wanted.
pub fn register_all(kernel: &Kernel) -> Result<()> {
    metrics::register(kernel)?;
    cache::register(kernel)?;
    jobs::register(kernel)?;
    notification::register(kernel)?;
    i18n::register(kernel)?;
    declarative::register(kernel)?;
    Ok(())
}

/// `config` with the runtime that gives packages' record types, workflows and automations
/// meaning (and checks those files at install), and runs their code in the sandbox, with
/// compiled code cached in `<data dir>/cache/sandbox`.
pub fn with_runtime(config: KernelConfig) -> KernelConfig {
    let cache = sandbox_cache(config.data_dir.as_deref());
    config.runtime(Arc::new(sandbox::Runtime::new(cache)))
}

/// Where a host caches packages' compiled code: `<data dir>/cache/sandbox`. Host programs
/// (which call [`componentize_child_main`] first in `main`) turn JavaScript into
/// components in a child process of themselves.
pub fn sandbox_cache(data_dir: Option<&std::path::Path>) -> sandbox::Cache {
    match data_dir {
        Some(dir) => sandbox::Cache::at(dir.join("cache").join("sandbox")),
        None => sandbox::Cache::none(),
    }
}

/// Like [`with_runtime`], for a host program: componentizing runs in a child process of the
/// program, killed when it runs too long.
pub fn with_host_runtime(config: KernelConfig) -> KernelConfig {
    let runtime = host_sandbox_runtime(config.data_dir.as_deref());
    config.runtime(Arc::new(runtime))
}

/// The package runtime of a host program on `data_dir`: compiled code cached there, and
/// JavaScript componentized in a child process of the program (which calls
/// [`componentize_child_main`] first in `main`).
pub fn host_sandbox_runtime(data_dir: Option<&std::path::Path>) -> sandbox::Runtime {
    let mut cache = sandbox_cache(data_dir);
    if let Ok(program) = std::env::current_exe() {
        cache = cache.componentize_in(program);
    }
    sandbox::Runtime::new(cache)
}
