//! The in-app inbox the console shows: newest first, read or not, bounded per package.

use super::*;
/// The `notification.inbox` service: the in-app notifications, for the console.
pub struct Inbox {
    pub(crate) inner: Arc<Inner>,
}

impl Inbox {
    /// The newest `limit` items, newest first (only unread ones when asked).
    pub fn list(&self, limit: usize, unread_only: bool) -> Result<Vec<InboxItem>> {
        let mut items: Vec<InboxItem> = self.inner.ctx.storage().scan(INAPP)?.into_iter().filter_map(|(_, v)| serde_json::from_value(v).ok()).collect();
        items.retain(|i: &InboxItem| !unread_only || !i.read);
        items.reverse();
        items.truncate(limit);
        Ok(items)
    }

    /// How many are unread.
    pub fn unread(&self) -> Result<usize> {
        Ok(self.inner.ctx.storage().scan(INAPP)?.iter().filter(|(_, v)| v.get("read") == Some(&Value::Bool(false))).count())
    }

    /// Mark one item read (`Some(id)`) or all of them (`None`); returns how many changed.
    pub fn mark_read(&self, id: Option<&str>) -> Result<usize> {
        let storage = self.inner.ctx.storage();
        let rows = match id {
            Some(id) => {
                let key = format!("{INAPP}{id}");
                let v = storage.get(&key)?.ok_or_else(|| err(format!("no notification {id:?} in the inbox")))?;
                vec![(key, v)]
            }
            None => storage.scan(INAPP)?,
        };
        let mut changed = 0;
        for (key, old) in rows {
            if old.get("read") == Some(&Value::Bool(false)) {
                let mut new = old.clone();
                new["read"] = Value::Bool(true);
                if storage.swap(&key, Some(&old), Some(new))? {
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            self.inner.changed();
            let _ = self.inner.ctx.events().emit("notification.read", json!({ "id": id, "count": changed }));
        }
        Ok(changed)
    }

    /// A receiver that changes whenever the inbox does (a new item, an item read).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}
