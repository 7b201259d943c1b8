//! Who a call of the data or workflow service acts for: a plugin (its context, its grants) or
//! the admin (through `objectos records` or the console), who is bound by the types' rules but
//! not by grants, and is audited as the admin.

use objectos_kernel::model::quota::Quotas;
use objectos_kernel::{Kernel, KernelError, PluginContext, Result};
use serde_json::Value;

/// The side of a data or workflow call that the services check and audit.
pub trait Caller {
    /// Who, as the audit trail and data events name it (`by`).
    fn who(&self) -> &str;
    /// The full name of record type `object` as this caller names it.
    fn record_type(&self, object: &str) -> Result<String>;
    /// Refuse (and audit) a call this caller's grants do not cover.
    fn require_data(&self, object: &str, write: bool, call: &str) -> Result<()>;
    /// Whether this caller may see a type's fields (no refusal recorded).
    fn holds_data(&self, object: &str, write: bool) -> bool;
    /// Audit something this caller did.
    fn audit(&self, action: &str, details: Value) -> Result<()>;
    /// The quotas it runs under, if metered.
    fn quotas(&self) -> Option<Quotas>;
    /// A refusal over a bound, audited as this caller's.
    fn over_limit(&self, what: String, reason: String) -> KernelError;
    /// Count an event an engine emits because of this caller against its quota.
    fn charge_event(&self, topic: &str) -> Result<()>;
    /// May set a workflow's state field directly (the admin, correcting or importing); a
    /// plugin fires the workflow's events instead.
    fn sets_workflow_state(&self) -> bool {
        false
    }
}

impl Caller for PluginContext {
    fn who(&self) -> &str {
        self.id()
    }
    fn record_type(&self, object: &str) -> Result<String> {
        Ok(PluginContext::record_type(self, object))
    }
    fn require_data(&self, object: &str, write: bool, call: &str) -> Result<()> {
        PluginContext::require_data(self, object, write, call)
    }
    fn holds_data(&self, object: &str, write: bool) -> bool {
        PluginContext::holds_data(self, object, write)
    }
    fn audit(&self, action: &str, details: Value) -> Result<()> {
        PluginContext::audit(self, action, details)
    }
    fn quotas(&self) -> Option<Quotas> {
        PluginContext::quotas(self)
    }
    fn over_limit(&self, what: String, reason: String) -> KernelError {
        PluginContext::over_limit(self, what, reason)
    }
    fn charge_event(&self, topic: &str) -> Result<()> {
        self.events().charge(topic)
    }
}

/// The admin, acting through a kernel handle: the types' field rules apply, and transitions
/// their guards; grants do not, and the admin may set a workflow's state directly (imports,
/// corrections). Each write is audited as the admin, naming the type's owner.
pub struct Admin(pub Kernel);

impl Caller for Admin {
    fn who(&self) -> &str {
        "admin"
    }
    fn record_type(&self, object: &str) -> Result<String> {
        if object.contains('/') {
            Ok(object.to_string())
        } else {
            Err(crate::util::service_err(crate::names::DATA_SERVICE, format!("`{object}`: the admin names a record type by its full name, `<package id>/{object}`")))
        }
    }
    fn require_data(&self, _: &str, _: bool, _: &str) -> Result<()> {
        Ok(())
    }
    fn holds_data(&self, _: &str, _: bool) -> bool {
        true
    }
    fn audit(&self, action: &str, details: Value) -> Result<()> {
        let owner = details.get("object").and_then(Value::as_str).filter(|o| o.contains('/')).map(|o| crate::names::owner_of(o).to_string());
        self.0.record_action(action, owner.as_deref(), details)
    }
    fn quotas(&self) -> Option<Quotas> {
        None
    }
    fn over_limit(&self, what: String, reason: String) -> KernelError {
        KernelError::OverLimit { plugin: "admin".into(), what, reason }
    }
    fn charge_event(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn sets_workflow_state(&self) -> bool {
        true
    }
}
