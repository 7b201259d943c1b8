//! What the console shows, built from the kernel's and the plugins' data: the structs the UI
//! renders, and the words in them (field bounds, triggers, actions, update messages). Plain
//! functions of their inputs, so they are tested here without a window or a kernel; the
//! commands fetch the data and hand it over.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

use objectos_builtins::notification::InboxItem;
use objectos_kernel::model::manifest::Manifest;
use serde::Serialize;

// ---- samples ---------------------------------------------------------------------------------

/// A sample package shipped with the app.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub path: String,
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub installed: bool,
}

/// The samples found (each folder with its checked manifest), marked installed where
/// `installed` (plugin ids) has theirs.
pub fn samples<'a>(found: impl IntoIterator<Item = (&'a Path, Manifest)>, installed: &[String]) -> Vec<Sample> {
    found
        .into_iter()
        .map(|(dir, m)| Sample {
            path: dir.display().to_string(),
            installed: installed.contains(&m.id),
            id: m.id,
            name: m.name,
            version: m.version.to_string(),
            description: m.description,
        })
        .collect()
}

// ---- the notification centre -----------------------------------------------------------------

/// One in-app notification.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
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
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
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
}

/// The inbox's `items` (newest first, as listed) and its `unread` count.
pub fn inbox(items: Vec<InboxItem>, unread: usize) -> InboxView {
    let items = items
        .into_iter()
        .map(|i| InboxEntry {
            level: serde_json::to_value(i.message.level).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
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

// ---- translated plugin names -----------------------------------------------------------------

/// A plugin's name and description in a locale, where a translation exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PluginText {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Translated plugin names and descriptions.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct PluginTexts {
    /// Whether the translations plugin is enabled.
    pub available: bool,
    /// Locales some plugin is translated into.
    pub locales: Vec<String>,
    /// By plugin id; plugins without a translation are absent.
    pub texts: BTreeMap<String, PluginText>,
}

impl PluginTexts {
    /// The translations plugin is not enabled.
    pub fn unavailable() -> Self {
        PluginTexts { available: false, locales: Vec::new(), texts: BTreeMap::new() }
    }
}

/// The keys a plugin's translations name it and describe it by.
pub const NAME_KEY: &str = "plugin.name";
/// See [`NAME_KEY`].
pub const DESCRIPTION_KEY: &str = "plugin.description";

/// The translated name and description of each plugin in `ids`: `translate(plugin id, key)`
/// is the text where one was found. Plugins with neither are left out.
pub fn plugin_texts(ids: impl IntoIterator<Item = String>, locales: Vec<String>, translate: impl Fn(&str, &str) -> Option<String>) -> PluginTexts {
    let texts = ids
        .into_iter()
        .filter_map(|id| {
            let t = PluginText { name: translate(&id, NAME_KEY), description: translate(&id, DESCRIPTION_KEY) };
            (t.name.is_some() || t.description.is_some()).then_some((id, t))
        })
        .collect();
    PluginTexts { available: true, locales, texts }
}

// ---- updates ---------------------------------------------------------------------------------

/// What the update check found.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum UpdateStatus {
    UpToDate { current: String },
    Available { current: String, version: String, notes: Option<String> },
    Unreachable { message: String },
}

/// The update check as it went for the app at version `current`: `Ok(Some((version,
/// notes)))` when a newer version is offered, `Ok(None)` when none is, `Err` when the update
/// server could not be asked.
pub fn update_status(current: &str, checked: Result<Option<(String, Option<String>)>, impl Display>) -> UpdateStatus {
    let current = current.to_string();
    match checked {
        Ok(Some((version, notes))) => UpdateStatus::Available { current, version, notes },
        Ok(None) => UpdateStatus::UpToDate { current },
        Err(e) => UpdateStatus::Unreachable {
            message: format!("Could not reach the update server ({e}). You may be offline; ObjectOS works fully offline, so check again later."),
        },
    }
}

/// The updater itself could not be set up (its configuration is wrong).
pub fn updater_unconfigured(e: impl Display) -> UpdateStatus {
    UpdateStatus::Unreachable { message: format!("the updater is not configured: {e}") }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use objectos_builtins::notification::{Level, Message};
    use std::path::PathBuf;

    fn crm_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/packages/crm")
    }

    fn crm_manifest() -> Manifest {
        let dir = crm_dir();
        Manifest::parse(&std::fs::read(dir.join("plugin.json")).unwrap(), "crm/plugin.json").unwrap()
    }

    #[test]
    fn a_sample_is_installed_when_a_plugin_of_its_id_is() {
        let dir = crm_dir();
        let fresh = samples([(dir.as_path(), crm_manifest())], &["com.acme.contacts".into()]);
        assert_eq!(fresh.len(), 1);
        assert_eq!((fresh[0].id.as_str(), fresh[0].version.as_str()), ("com.acme.crm", crm_manifest().version.to_string().as_str()));
        assert_eq!(fresh[0].path, dir.display().to_string());
        assert!(!fresh[0].installed);
        assert!(samples([(dir.as_path(), crm_manifest())], &["com.acme.crm".into()])[0].installed);
    }

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
        let view = inbox(vec![item("2", Level::Warning, false), item("1", Level::Success, true)], 1);
        assert!(view.available);
        assert_eq!(view.unread, 1);
        assert_eq!(view.items.iter().map(|i| (i.id.as_str(), i.level.as_str(), i.read)).collect::<Vec<_>>(), [("2", "warning", false), ("1", "success", true)]);
        assert_eq!(view.items[0].created_at, 1_700_000_000_000.0);
        assert!(!InboxView::unavailable().available);
    }

    #[test]
    fn plugin_texts_leave_out_plugins_without_a_translation() {
        let ids = ["com.objectos.cache", "com.acme.crm", "com.objectos.jobs"].map(String::from);
        let texts = plugin_texts(ids, vec!["zh-CN".into()], |id, key| match (id, key) {
            ("com.objectos.cache", NAME_KEY) => Some("缓存".into()),
            ("com.objectos.jobs", DESCRIPTION_KEY) => Some("后台任务".into()),
            _ => None,
        });
        assert!(texts.available);
        assert_eq!(texts.locales, ["zh-CN"]);
        assert_eq!(texts.texts.keys().collect::<Vec<_>>(), ["com.objectos.cache", "com.objectos.jobs"], "the untranslated crm is left out");
        assert_eq!(texts.texts["com.objectos.cache"], PluginText { name: Some("缓存".into()), description: None });
        assert_eq!(texts.texts["com.objectos.jobs"], PluginText { name: None, description: Some("后台任务".into()) });
        assert!(!PluginTexts::unavailable().available);
    }

    #[test]
    fn the_update_check_says_what_it_found_or_why_not() {
        assert_eq!(update_status("0.1.0", Ok::<_, String>(None)), UpdateStatus::UpToDate { current: "0.1.0".into() });
        assert_eq!(
            update_status("0.1.0", Ok::<_, String>(Some(("0.2.0".into(), Some("Faster".into()))))),
            UpdateStatus::Available { current: "0.1.0".into(), version: "0.2.0".into(), notes: Some("Faster".into()) }
        );
        let UpdateStatus::Unreachable { message } = update_status("0.1.0", Err("dns error")) else { panic!("unreachable expected") };
        assert!(message.starts_with("Could not reach the update server (dns error). You may be offline"), "{message}");
        assert_eq!(updater_unconfigured("no pubkey"), UpdateStatus::Unreachable { message: "the updater is not configured: no pubkey".into() });
    }
}
