//! Notifications as the admin: the in-app inbox (list, unread count, mark read, a watch for
//! changes) and sending a notice of the admin's own.

use std::sync::Arc;

use objectos_kernel::Kernel;
use objectos_notification::{Inbox, InboxItem, Notice, Notifications};
use serde::Serialize;

pub use objectos_notification::{Delivery, DeliveryStatus, Level, SendReport, INBOX as INBOX_SERVICE};

use crate::{AdminError, Result};

/// The plugin that keeps the inbox and sends notices.
pub const PLUGIN: &str = objectos_notification::ID;

/// One in-app notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct InboxEntry {
    pub id: String,
    pub plugin: String,
    pub title: String,
    pub body: String,
    /// info, success, warning or error.
    pub level: String,
    pub created_at: f64,
    pub read: bool,
}

/// The notification centre: whether the notification plugin is enabled, the unread count,
/// and the newest items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct InboxView {
    pub available: bool,
    pub unread: u32,
    pub items: Vec<InboxEntry>,
}

impl InboxView {
    /// The notification plugin is not enabled.
    pub fn unavailable() -> Self {
        InboxView { available: false, unread: 0, items: Vec::new() }
    }

    /// The inbox's `items` (newest first, as listed) and its `unread` count.
    fn of(items: Vec<InboxItem>, unread: usize) -> InboxView {
        let items = items
            .into_iter()
            .map(|i| InboxEntry {
                level: level_word(i.message.level).into(),
                id: i.message.id,
                plugin: i.message.plugin,
                title: i.message.title,
                body: i.message.body,
                created_at: i.message.created_at as f64,
                read: i.read,
            })
            .collect();
        InboxView { available: true, unread: unread.try_into().unwrap_or(u32::MAX), items }
    }
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Info => "info",
        Level::Success => "success",
        Level::Warning => "warning",
        Level::Error => "error",
    }
}

/// A level by its word (info, success, warning, error).
pub fn level(word: &str) -> Result<Level> {
    [Level::Info, Level::Success, Level::Warning, Level::Error]
        .into_iter()
        .find(|l| level_word(*l) == word)
        .ok_or_else(|| AdminError::refused("level", format!("`{word}` is not a level: use info, success, warning or error")))
}

fn inbox_service(kernel: &Kernel) -> Option<Arc<Inbox>> {
    kernel.service::<Inbox>(INBOX_SERVICE).ok()
}

fn unavailable() -> AdminError {
    AdminError::refused("unavailable", format!("the Notifications plugin ({PLUGIN}) is not enabled"))
}

/// The newest `limit` in-app notifications (only unread ones when asked); unavailable while
/// the notification plugin is not enabled.
pub fn list(kernel: &Kernel, limit: usize, unread_only: bool) -> Result<InboxView> {
    let Some(inbox) = inbox_service(kernel) else { return Ok(InboxView::unavailable()) };
    Ok(InboxView::of(inbox.list(limit, unread_only)?, inbox.unread()?))
}

/// Mark one notification (or, with no id, all of them) read; how many changed.
pub fn mark_read(kernel: &Kernel, id: Option<&str>) -> Result<u32> {
    let inbox = inbox_service(kernel).ok_or_else(unavailable)?;
    Ok(inbox.mark_read(id)?.try_into().unwrap_or(u32::MAX))
}

/// A receiver that changes whenever the inbox does, while the notification plugin stays
/// enabled (its sender goes with it); `None` while it is not enabled. It holds only the
/// receiver, never the service, so it does not keep a disabled plugin's service alive.
pub fn watch(kernel: &Kernel) -> Option<tokio::sync::watch::Receiver<u64>> {
    inbox_service(kernel).map(|inbox| inbox.watch())
}

/// Send a notice of the admin's own (as the notification plugin) through `channels` (the
/// inbox when empty); what each channel did with it.
pub async fn notify(kernel: &Kernel, title: &str, body: &str, level: Level, channels: &[String]) -> Result<SendReport> {
    let service = kernel.service::<Notifications>(objectos_notification::SERVICE).map_err(|_| unavailable())?;
    let notice = Notice { channels: channels.to_vec(), level, ..Notice::new(title, body) };
    Ok(service.send(&kernel.context(PLUGIN)?, notice).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use objectos_notification::Message;

    #[test]
    fn inbox_items_keep_their_order_and_show_their_level_as_a_word() {
        let item = |id: &str, level: Level, read: bool| InboxItem {
            message: Message {
                id: id.into(),
                plugin: "com.acme.backup".into(),
                title: "Backup finished".into(),
                body: "All good".into(),
                level,
                recipient: None,
                data: serde_json::Value::Null,
                created_at: 1_700_000_000_000,
                from_package: false,
            },
            read,
        };
        let view = InboxView::of(vec![item("2", Level::Warning, false), item("1", Level::Success, true)], 1);
        assert!(view.available);
        assert_eq!(view.unread, 1);
        assert_eq!(view.items.iter().map(|i| (i.id.as_str(), i.level.as_str(), i.read)).collect::<Vec<_>>(), [("2", "warning", false), ("1", "success", true)]);
        assert_eq!(view.items[0].created_at, 1_700_000_000_000.0);
        assert!(!InboxView::unavailable().available);
    }

    #[test]
    fn a_level_is_named_by_its_word_and_serializes_as_it() {
        for word in ["info", "success", "warning", "error"] {
            assert_eq!(serde_json::to_value(level(word).unwrap()).unwrap(), word);
        }
        let e = level("urgent").unwrap_err();
        assert_eq!(e.code(), "level");
        assert!(e.to_string().contains("`urgent`"), "{e}");
    }
}
