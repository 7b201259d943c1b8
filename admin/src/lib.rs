//! What every ObjectOS host does over the kernel and the engines, once: the `objectos`
//! command, the desktop console and the HTTP API parse and print, or invoke and serialize,
//! and call this crate for the rest. Calls take typed arguments and return typed views
//! (`specta::Type` behind the `specta` feature, for hosts that export TypeScript bindings);
//! a refusal is an [`AdminError`] with a stable code.
//!
//! - [`records`]: the records the packages' types hold, as the admin (types, list with a
//!   filter, a sort and a limit, get, save, delete, transition, history, CSV check then commit
//!   with a report per row, export).
//! - [`definitions`]: what a package declares, as a host shows it.
//! - [`inbox`]: the in-app notifications, and notices of the admin's own.
//! - [`translations`]: plugins' names and descriptions in the admin's language.
//! - [`metrics`]: every plugin's figures as Prometheus text.
//! - [`author`]: the schemas of a package's files, and a manifest completed with what they
//!   need.

pub mod author;
pub mod definitions;
pub mod inbox;
pub mod lifecycle;
pub mod metrics;
pub mod records;
pub mod translations;

use objectos_kernel::KernelError;

/// Why a use case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The kernel's refusal or failure (its `kind()` is the stable code).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A refusal of this layer's own: `code` is stable (`recordsOff`, `unknownType`,
    /// `ambiguousType`, `notFound`, `fields`, `workflow`, `csv`, `unavailable`, `level`,
    /// `runnerFailed`, `runnerBusy`), `message` says what is wrong
    /// and what to do.
    #[error("{message}")]
    Refused {
        /// The stable code.
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
}

impl AdminError {
    pub(crate) fn refused(code: &'static str, message: impl Into<String>) -> Self {
        AdminError::Refused { code, message: message.into() }
    }

    /// The stable code: the kernel's error kind, or this layer's own.
    pub fn code(&self) -> &str {
        match self {
            AdminError::Kernel(k) => k.kind(),
            AdminError::Refused { code, .. } => code,
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = AdminError> = std::result::Result<T, E>;
