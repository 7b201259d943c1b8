//! What the engines, and the checks of a package's files, share about records and about each
//! other: a record's shape, a type's full name and its owner, and each engine's plugin id and
//! service name. It imports no other module of the crate, so every one may use it.

use serde_json::{Map, Value};

/// The records engine's plugin id ([`crate::data`]).
pub const OBJECTS_ID: &str = "com.objectos.objects";
/// The records engine's service name.
pub const DATA_SERVICE: &str = "data";
/// The workflows engine's plugin id ([`crate::workflow`]).
pub const WORKFLOW_ID: &str = "com.objectos.workflow";
/// The workflows engine's service name.
pub const WORKFLOW_SERVICE: &str = "workflow";
/// The automations engine's plugin id ([`crate::automation`]).
pub const AUTOMATION_ID: &str = "com.objectos.automation";
/// The automations engine's service name.
pub const AUTOMATION_SERVICE: &str = "automation";

/// A record as stored: `id`, the fields, `created_at`, `updated_at` (ms).
pub type Record = Map<String, Value>;

/// The package that owns the full type name `full` (`<owner>/<type>`).
pub fn owner_of(full: &str) -> &str {
    full.split_once('/').map_or(full, |(o, _)| o)
}

/// The full name of the type `object` names in a package owned by `owner`: a short name is one
/// of the package's own (`account`), a full one (`com.acme.contacts/contact`) is itself.
pub fn full_type(owner: &str, object: &str) -> String {
    if object.contains('/') { object.to_string() } else { format!("{owner}/{object}") }
}
