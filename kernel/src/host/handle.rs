//! What a plugin reaches of the kernel itself: a `kernel.manage` handle that acts as the
//! plugin in the audit trail, and the `kernel.inspect` reads. These are methods of
//! [`PluginContext`], written here so that the context does not depend on the host.

use std::sync::Arc;

use super::{Kernel, KernelInner};
use crate::context::PluginContext;
use crate::error::{KernelError, Result};
use crate::model::views::PluginInfo;
use crate::runtime::telemetry::PluginActivity;

impl PluginContext {
    /// The kernel, for managing other plugins. Needs `kernel.manage`. Everything done
    /// through it is audited with this plugin (`plugin:<id>`) as the actor.
    pub fn kernel(&self) -> Result<Kernel> {
        if !self.grants().kernel_manage() {
            return Err(self.deny("kernel.manage".into(), "kernel"));
        }
        Ok(self.host()?.acting_as(self.actor().clone()))
    }

    /// Every installed plugin: manifest, state, grants, dependencies. Needs `kernel.inspect`.
    pub fn plugins(&self) -> Result<Vec<PluginInfo>> {
        self.inspector("plugins")?.plugins()
    }

    /// A file another plugin's manifest declares (see [`Kernel::declared_file`]). Needs
    /// `kernel.inspect`.
    pub fn declared_file(&self, plugin: &str, path: &str) -> Result<Option<String>> {
        self.inspector("declared_file")?.declared_file(plugin, path)
    }

    /// Every plugin's activity counters and state. Needs `kernel.inspect`.
    pub fn inspect(&self) -> Result<Vec<PluginActivity>> {
        Ok(self.inspector("inspect")?.activity())
    }

    /// Stop this plugin because its code keeps failing (a sandbox runtime counting traps and
    /// overruns calls this): the kernel disables and unloads it and holds it in ERROR with
    /// `reason`, for an admin to see and re-enable (see `plugin.quarantined`). No grant is
    /// needed: a plugin may always stop itself.
    pub async fn quarantine(&self, reason: String) -> Result<()> {
        let id = self.id().to_string();
        self.host()?.quarantine(&id, reason).await
    }

    pub(super) fn inspector(&self, call: &str) -> Result<Kernel> {
        if !self.grants().kernel_inspect() {
            return Err(self.deny("kernel.inspect".into(), call));
        }
        self.host()
    }

    /// The kernel this context belongs to, while it is alive.
    pub(super) fn host(&self) -> Result<Kernel> {
        let inner = self.0.kernel.upgrade().ok_or(KernelError::ShutDown)?;
        let inner: Arc<KernelInner> = inner.downcast().map_err(|_| KernelError::ShutDown)?;
        Ok(Kernel::from_inner(inner))
    }
}
