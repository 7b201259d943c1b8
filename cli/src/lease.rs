//! Opening the data directory as a command needs it: running the plugins (with the runner
//! lease) only when no other process does.

use super::*;

/// The runner lease this command holds while it runs plugins, given up before it exits.
static LEASE: std::sync::Mutex<Option<objectos_kernel::host::RunnerLease>> = std::sync::Mutex::new(None);

/// What this command is, as the runner lease names it.
fn command_line() -> String {
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--data-dir" {
            args.next();
        } else if !a.starts_with('-') {
            words.push(a);
            if words.len() == 2 {
                break;
            }
        }
    }
    format!("objectos {}", words.join(" "))
}

/// Open the kernel with the built-ins registered. `start` asks to run plugins (for commands
/// that change lifecycle state or records): when no process runs them on the data directory,
/// this one takes the runner lease until it exits and starts them, warning on stderr about
/// any that could not be restored; when one does (`objectos serve`, the console), nothing runs
/// here, and that runner does what the change asks ([`runner_elsewhere`] says so). Otherwise
/// only new built-ins are recorded, and nothing runs.
pub(crate) async fn open(cli: &Cli, start: bool) -> Result<Kernel, Failure> {
    let kernel = host::open(data_dir(cli))?;
    if start {
        match kernel.take_runner(&command_line()) {
            Ok(lease) => {
                *LEASE.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
                host::start(&kernel).await?.print_warnings("objectos");
                return Ok(kernel);
            }
            Err(objectos_kernel::KernelError::RunnerHeld { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Read-only commands stay quiet about built-ins that could not be recorded.
    host::sync(&kernel).await?;
    Ok(kernel)
}

/// Whether another process runs plugins on this data directory while this command does not
/// (it did not take the lease): changes made here are carried out there.
pub(crate) fn runner_elsewhere(kernel: &Kernel) -> Option<RunnerInfo> {
    if LEASE.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        return None;
    }
    kernel.runner().ok().flatten()
}

/// Give up the runner lease this command holds, if it does.
pub(crate) fn release_lease() {
    LEASE.lock().unwrap_or_else(|p| p.into_inner()).take();
}
