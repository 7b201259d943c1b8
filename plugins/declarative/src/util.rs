//! Small helpers shared by the engines.

use objectos_kernel::KernelError;

pub(crate) use objectos_kernel::util::now_ms;

pub(crate) fn service_err(service: &str, message: impl Into<String>) -> KernelError {
    KernelError::service(service, message)
}
