//! Declarative packages: record types, workflows and automations.
//!
//! - [`expr`]: the guard and condition language.
//! - [`defs`]: the file formats, parsed and checked with a path for every problem.
//! - [`data`], [`workflow`], [`automation`]: the three built-in plugins that give them meaning
//!   (`com.objectos.objects`, `com.objectos.workflow`, `com.objectos.automation`).
//! - [`runtime`]: the package runtime that declares a package's files to them, with the
//!   package's own context and grants.

pub mod actions;
pub mod automation;
pub mod caller;
pub mod data;
pub mod defs;
pub mod expr;
pub mod grammar;
pub mod names;
pub mod needs;
pub mod runtime;
pub mod table;
mod util;
pub mod workflow;

use std::sync::Arc;

pub use defs::{check_package, check_package_in, load, Action, AutomationDef, Definitions, FieldDef, FieldKind, ObjectDef, StateDef, Transition, Trigger, WorkflowDef};
pub use expr::{Expr, ExprError};
pub use runtime::{read_definitions, Runtime};

/// Register the three plugins with a kernel (before `start`).
pub fn register(kernel: &objectos_kernel::Kernel) -> objectos_kernel::Result<()> {
    kernel.register_builtin_with_files(data::MANIFEST, Arc::new(data::ObjectsPlugin), data::TRANSLATIONS)?;
    kernel.register_builtin_with_files(workflow::MANIFEST, Arc::new(workflow::WorkflowPlugin), workflow::TRANSLATIONS)?;
    kernel.register_builtin_with_files(automation::MANIFEST, Arc::new(automation::AutomationPlugin), automation::TRANSLATIONS)?;
    Ok(())
}
