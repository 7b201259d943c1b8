//! The `storage` import: the plugin's own keys, through its context.

use super::bindings::objectos::plugin::storage;
use super::bindings::objectos::plugin::types::HostError;
use super::{host_error, invalid, json, HostState};

/// Refuse a storage key longer than the kernel accepts before anything records it.
fn key_ok(key: &str) -> Result<(), HostError> {
    if key.len() > objectos_kernel::plugin::MAX_KEY_LEN {
        return Err(invalid(format!("a storage key is at most {} bytes; this one is {}", objectos_kernel::plugin::MAX_KEY_LEN, key.len())));
    }
    Ok(())
}

impl storage::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>, HostError> {
        key_ok(&key)?;
        Ok(self.ctx.storage().get(&key).map_err(host_error)?.map(|v| v.to_string()))
    }

    fn set(&mut self, key: String, value: String) -> Result<(), HostError> {
        key_ok(&key)?;
        let value = json(&format!("the value for `{key}`"), &value)?;
        self.ctx.storage().set(&key, value).map_err(host_error)
    }

    fn delete(&mut self, key: String) -> Result<bool, HostError> {
        key_ok(&key)?;
        self.ctx.storage().delete(&key).map_err(host_error)
    }

    fn scan(&mut self, prefix: String) -> Result<Vec<(String, String)>, HostError> {
        key_ok(&prefix)?;
        Ok(self.ctx.storage().scan(&prefix).map_err(host_error)?.into_iter().map(|(k, v)| (k, v.to_string())).collect())
    }

    fn swap(&mut self, key: String, expected: Option<String>, new: Option<String>) -> Result<bool, HostError> {
        key_ok(&key)?;
        let expected = expected.map(|t| json(&format!("the expected value of `{key}`"), &t)).transpose()?;
        let new = new.map(|t| json(&format!("the new value of `{key}`"), &t)).transpose()?;
        self.ctx.storage().swap(&key, expected.as_ref(), new).map_err(host_error)
    }
}
