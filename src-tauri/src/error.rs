//! The typed error every command returns, so the UI can render what to do, not a string.

use objectos_kernel::KernelError;
use objectos_kernel::model::manifest::Problem;
use serde::Serialize;

/// A command's failure.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CommandError {
    /// Enabled plugins depend on this one; the UI offers a cascade.
    #[serde(rename_all = "camelCase")]
    DependentsEnabled { message: String, plugin: String, dependents: Vec<String> },
    /// Required permissions wait for approval; the UI leads to the review.
    #[serde(rename_all = "camelCase")]
    PermissionsPending { message: String, plugin: String, pending: Vec<String> },
    /// A manifest or package is invalid; every problem with its JSON path.
    #[serde(rename_all = "camelCase")]
    Manifest { message: String, file: String, problems: Vec<Problem> },
    /// A hook failed, panicked or timed out.
    #[serde(rename_all = "camelCase")]
    Hook { message: String, plugin: String, hook: String },
    /// Any other refusal or failure; `code` is the kernel's stable error kind.
    #[serde(rename_all = "camelCase")]
    Other { message: String, code: String },
}

impl From<KernelError> for CommandError {
    fn from(e: KernelError) -> Self {
        let message = e.to_string();
        match e {
            KernelError::DependentsEnabled { plugin, dependents } => CommandError::DependentsEnabled { message, plugin, dependents },
            KernelError::PermissionsPending { plugin, pending } => CommandError::PermissionsPending { message, plugin, pending },
            KernelError::Manifest(m) => CommandError::Manifest { message, file: m.file, problems: m.problems },
            KernelError::Hook { plugin, hook, .. } => CommandError::Hook { message, plugin, hook },
            other => CommandError::Other { code: other.kind().to_string(), message },
        }
    }
}

impl From<objectos_admin::AdminError> for CommandError {
    fn from(e: objectos_admin::AdminError) -> Self {
        match e {
            objectos_admin::AdminError::Kernel(k) => CommandError::from(k),
            objectos_admin::AdminError::Refused { code, message } => CommandError::Other { code: code.into(), message },
        }
    }
}

impl CommandError {
    pub(crate) fn other(code: &str, message: impl Into<String>) -> Self {
        CommandError::Other { code: code.into(), message: message.into() }
    }
}

pub(crate) type CmdResult<T> = Result<T, CommandError>;
