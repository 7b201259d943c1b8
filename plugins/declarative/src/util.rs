//! Small helpers shared by the engines.

use std::time::{SystemTime, UNIX_EPOCH};

use objectos_kernel::KernelError;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn service_err(service: &str, message: impl Into<String>) -> KernelError {
    KernelError::service(service, message)
}
