//! A plugin's own key/value storage, checked against its grants and charged to its budget.

use super::*;

/// Storage facade (see [`PluginContext::storage`]): this plugin's keys only.
pub struct Storage<'a>(pub(super) &'a PluginContext);

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(KernelError::InvalidName { name: key.chars().take(64).collect(), reason: format!("storage keys are 1 to {MAX_KEY_LEN} bytes without control characters") });
    }
    Ok(())
}

impl Storage<'_> {
    /// This plugin's own write: charged to it, and for a package within its storage quota.
    fn own_charge(&self) -> Charge<'_> {
        Charge { owner: self.0.id(), limit: self.0.meter().limit(crate::runtime::meter::Held::StorageBytes) }
    }

    /// What a write did, as this facade answers: refused past the owner's limit (audited as
    /// the writing plugin's `limit.exceeded`).
    fn outcome(&self, key: &str, charge: Charge<'_>, written: Written) -> Result<bool> {
        match written {
            Written::Done => Ok(true),
            Written::Stale => Ok(false),
            Written::OverLimit { used } => {
                let limit = charge.limit.unwrap_or(0);
                if charge.owner == self.0.id() {
                    return Err(self.0.over_limit(format!("storage value `{key}`"), crate::model::quota::budget_reason("the package", used, limit)));
                }
                // An engine's write for a package: the engine refuses its caller (and the
                // caller's refusal is the one audited).
                Err(KernelError::OverLimit { plugin: charge.owner.to_string(), what: format!("storage value `{key}`"), reason: crate::model::quota::budget_reason(charge.owner, used, limit) })
            }
        }
    }

    fn read(&self, call: &str) -> Result<&PluginContext> {
        let ctx = self.0;
        if !ctx.grants().storage_read() {
            return Err(ctx.deny("storage.read".into(), call));
        }
        ctx.0.shared.counters.storage_reads.fetch_add(1, Relaxed);
        Ok(ctx)
    }

    fn write(&self, call: &str, action: AuditAction, key: Option<&str>) -> Result<&PluginContext> {
        let ctx = self.0;
        if !ctx.grants().storage_write() {
            return Err(ctx.deny("storage.write".into(), call));
        }
        ctx.0.shared.counters.storage_writes.fetch_add(1, Relaxed);
        if ctx.0.core.writer.full() {
            ctx.0.core.writer.audit(ctx.actor(), Some(ctx.id()), action, serde_json::json!({ "key": key }));
        }
        Ok(ctx)
    }

    /// Read a value. Needs `storage.read`.
    pub fn get(&self, key: &str) -> Result<Option<Value>> {
        let ctx = self.read("storage.get")?;
        ctx.0.core.storage.get(ctx.id(), key)
    }
    /// Does the key exist? Needs `storage.read`.
    pub fn has(&self, key: &str) -> Result<bool> {
        let ctx = self.read("storage.has")?;
        ctx.0.core.storage.has(ctx.id(), key)
    }
    /// Every key, sorted. Needs `storage.read`.
    pub fn keys(&self) -> Result<Vec<String>> {
        let ctx = self.read("storage.keys")?;
        ctx.0.core.storage.keys(ctx.id())
    }
    /// Write a value. Needs `storage.write`.
    pub fn set(&self, key: &str, value: Value) -> Result<()> {
        check_key(key)?;
        self.0.check_value(|| format!("storage value `{key}`"), &value, MAX_VALUE_BYTES)?;
        let ctx = self.write("storage.set", AuditAction::StorageSet, Some(key))?;
        let charge = self.own_charge();
        let written = ctx.0.core.storage.set(ctx.id(), key, value, charge)?;
        self.outcome(key, charge, written).map(drop)
    }
    /// Delete a key; true when it existed. Needs `storage.write`.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let ctx = self.write("storage.delete", AuditAction::StorageDelete, Some(key))?;
        ctx.0.core.storage.delete(ctx.id(), key)
    }
    /// Every key starting with `prefix`, with its value, sorted by key. Needs `storage.read`.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, Value)>> {
        let ctx = self.read("storage.scan")?;
        ctx.0.core.storage.scan(ctx.id(), prefix)
    }
    /// Replace `key`'s value with `new` (None deletes it) only if it is now `expected` (None:
    /// absent), atomically, also against other processes on the data directory; true when it
    /// did. The building block for claims and counters. Needs `storage.read` and `storage.write`.
    pub fn swap(&self, key: &str, expected: Option<&Value>, new: Option<Value>) -> Result<bool> {
        check_key(key)?;
        if let Some(v) = &new {
            self.0.check_value(|| format!("storage value `{key}`"), v, MAX_VALUE_BYTES)?;
        }
        self.swap_charged(key, expected, new, self.own_charge())
    }

    /// [`Storage::swap`] for an engine that keeps data for a package (a package's records):
    /// the bytes are charged to `charge.owner`, within `charge.limit`, so the package has one
    /// budget for its own keys and what engines keep for it. A package's own call is charged
    /// to itself, within its quota, whatever it names.
    pub fn swap_charged(&self, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>) -> Result<bool> {
        self.swap_with(key, expected, new, charge, None)
    }

    /// [`Storage::swap_charged`] for a change that announces itself: when the swap is done,
    /// `event` (prepared by this plugin's [`Events::prepare`]) is queued for the durable
    /// subscriptions it matches in the same transaction, so the change and its event are
    /// stored together or not at all. Publish the event after (see [`Events::publish`]).
    pub fn swap_announcing(&self, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>, event: &super::Prepared) -> Result<bool> {
        self.swap_with(key, expected, new, charge, Some(event))
    }

    /// The checked, charged swap, with its announcement queued in its transaction when some
    /// durable subscription may want it.
    fn swap_with(&self, key: &str, expected: Option<&Value>, new: Option<Value>, charge: Charge<'_>, event: Option<&super::Prepared>) -> Result<bool> {
        check_key(key)?;
        if let Some(v) = &new {
            self.0.check_value(|| format!("storage value `{key}`"), v, MAX_VALUE_BYTES)?;
        }
        self.read("storage.swap")?;
        let ctx = self.write("storage.swap", AuditAction::StorageSwap, Some(key))?;
        let charge = if ctx.0.shared.meter.metered() { self.own_charge() } else { charge };
        let core = &ctx.0.core;
        let Some(event) = event.filter(|e| core.outbox.wanted(&e.topic)) else {
            let written = core.storage.swap(ctx.id(), key, expected, new, charge)?;
            return self.outcome(key, charge, written);
        };
        let payload = event.payload.to_string();
        let announcement = crate::model::outbox::Announcement { topic: &event.topic, payload: &payload, source: ctx.id(), depth: event.depth, now: crate::util::now_ms() };
        let (written, queued) = core.storage.swap_announcing(ctx.id(), key, expected, new, charge, &announcement)?;
        if written == Written::Done {
            match queued {
                Some(q) => core.outbox.queued(&event.topic, &q),
                None => core.outbox.queue(&announcement)?,
            }
        }
        self.outcome(key, charge, written)
    }

    /// The bytes of storage charged to `owner` (its own keys and what engines keep for it).
    pub fn usage_of(&self, owner: &str) -> Result<u64> {
        self.0 .0.core.storage.usage(owner)
    }

    /// Charge this plugin's rows under `prefix` that are still charged to itself to the owner
    /// `owner_of` names (rows an engine kept before charges existed); returns how many moved.
    pub fn recharge(&self, prefix: &str, owner_of: &dyn Fn(&str) -> Option<String>) -> Result<usize> {
        let ctx = self.write("storage.recharge", AuditAction::StorageSwap, None)?;
        if ctx.0.shared.meter.metered() {
            return Ok(0);
        }
        ctx.0.core.storage.recharge(ctx.id(), prefix, owner_of)
    }
    /// Delete every key; returns how many. Needs `storage.write`.
    pub fn clear(&self) -> Result<usize> {
        let ctx = self.write("storage.clear", AuditAction::StorageClear, None)?;
        ctx.0.core.storage.clear(ctx.id())
    }
}
