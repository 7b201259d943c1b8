//! Plugins' names and descriptions in the admin's language, from the Translations plugin.

use std::collections::BTreeMap;

use objectos_i18n::I18n;
use objectos_kernel::Kernel;
use serde::Serialize;

use crate::Result;

/// The plugin that serves translations.
pub const PLUGIN: &str = objectos_i18n::ID;

/// A plugin's name and description in a locale, where a translation exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct PluginText {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Translated plugin names and descriptions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
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

    /// The translated name and description of each plugin in `ids`: `translate(plugin id,
    /// key)` is the text where one was found. Plugins with neither are left out.
    fn of(ids: impl IntoIterator<Item = String>, locales: Vec<String>, translate: impl Fn(&str, &str) -> Option<String>) -> PluginTexts {
        let texts = ids
            .into_iter()
            .filter_map(|id| {
                let t = PluginText { name: translate(&id, NAME_KEY), description: translate(&id, DESCRIPTION_KEY) };
                (t.name.is_some() || t.description.is_some()).then_some((id, t))
            })
            .collect();
        PluginTexts { available: true, locales, texts }
    }
}

/// The keys a plugin's translations name it and describe it by.
pub const NAME_KEY: &str = "plugin.name";
/// See [`NAME_KEY`].
pub const DESCRIPTION_KEY: &str = "plugin.description";

/// Every installed plugin's name and description in `locale` (with the Translations plugin's
/// fallbacks); unavailable while that plugin is not enabled.
pub fn plugin_texts(kernel: &Kernel, locale: &str) -> Result<PluginTexts> {
    let Ok(i18n) = kernel.service::<I18n>(objectos_i18n::SERVICE) else { return Ok(PluginTexts::unavailable()) };
    let ids = kernel.plugins()?.into_iter().map(|p| p.manifest.id);
    let none = serde_json::Value::Null;
    Ok(PluginTexts::of(ids, i18n.locales(), |id, key| Some(i18n.translate(id, locale, key, &none)).filter(|l| l.found()).map(|l| l.text)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plugin_texts_leave_out_plugins_without_a_translation() {
        let ids = ["com.objectos.cache", "com.acme.crm", "com.objectos.jobs"].map(String::from);
        let texts = PluginTexts::of(ids, vec!["zh-CN".into()], |id, key| match (id, key) {
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
}
