//! `com.objectos.i18n`: translations, offered as the `i18n` service.
//!
//! - **Sources**: every plugin and package that declares `provides.translations` (locale
//!   tags) carries `translations/<locale>.json`; the plugin reads them through the kernel
//!   (`kernel.inspect`) when enabled and again when a plugin is installed, upgraded or
//!   removed. A native plugin can also [`I18n::contribute`] a bundle. Each plugin's keys live
//!   in its own namespace (its id).
//! - **Files**: a JSON object of keys to texts, or to plural forms
//!   (`{"one": "{{count}} invoice", "other": "{{count}} invoices"}`), chosen by the CLDR
//!   plural rules of the locale that answered, from the `count` variable.
//! - **Lookup**: `{{name}}` placeholders are filled from the variables (dotted paths). A
//!   locale falls back by dropping subtags, then to the default locale (`defaultLocale`,
//!   `en`): `zh-Hant-TW` -> `zh-Hant` -> `zh` -> `en`. A key found nowhere returns the key
//!   itself, is logged once, and is listed by [`I18n::missing`].
//! - The keys `plugin.name` and `plugin.description` translate a plugin's manifest; the
//!   console shows them in the admin's chosen locale.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use intl_pluralrules::{PluralCategory, PluralRuleType, PluralRules};
use objectos_kernel::serde_json::{Map, Value};
use objectos_kernel::{HookResult, Kernel, KernelError, Plugin, PluginContext, Result, async_trait};
use objectos_kernel::model::manifest::validate_locale;
use objectos_kernel::package::check_translations;
use unic_langid::LanguageIdentifier;

/// The plugin's id.
pub const ID: &str = "com.objectos.i18n";
/// The service name.
pub const SERVICE: &str = "i18n";
/// The embedded manifest.
pub const MANIFEST: &str = include_str!("../plugin.json");
/// This plugin's own translations.
pub const TRANSLATIONS: &[(&str, &str)] = &[("translations/en.json", include_str!("../translations/en.json")), ("translations/zh-CN.json", include_str!("../translations/zh-CN.json"))];
/// The most missing keys remembered.
const MAX_MISSING: usize = 10_000;

/// Register the plugin with a kernel (before `start`).
pub fn register(kernel: &Kernel) -> Result<()> {
    kernel.register_builtin_with_files(MANIFEST, Arc::new(I18nPlugin), TRANSLATIONS)
}

/// Normalize a tag's case: `zh-hant-tw` -> `zh-Hant-TW`.
pub fn normalize(tag: &str) -> String {
    tag.split('-')
        .enumerate()
        .map(|(i, p)| match (i, p.len()) {
            (0, _) => p.to_ascii_lowercase(),
            (_, 4) if p.chars().all(|c| c.is_ascii_alphabetic()) => {
                let mut s = p[..1].to_ascii_uppercase();
                s.push_str(&p[1..].to_ascii_lowercase());
                s
            }
            (_, 2) if p.chars().all(|c| c.is_ascii_alphabetic()) => p.to_ascii_uppercase(),
            _ => p.to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The locales tried for `locale`, most specific first, ending with `default`.
pub fn fallback_chain(locale: &str, default: &str) -> Vec<String> {
    let mut chain = Vec::new();
    let mut tag = normalize(locale);
    loop {
        if !tag.is_empty() && !chain.contains(&tag) {
            chain.push(tag.clone());
        }
        match tag.rfind('-') {
            Some(i) => tag.truncate(i),
            None => break,
        }
    }
    let default = normalize(default);
    if !chain.contains(&default) {
        chain.push(default);
    }
    chain
}

/// The plugin's code.
#[derive(Default)]
pub struct I18nPlugin;

#[async_trait]
impl Plugin for I18nPlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let default_locale = match ctx.config().get("defaultLocale") {
            None | Some(Value::Null) => "en".to_string(),
            Some(Value::String(s)) if validate_locale(s).is_ok() => normalize(s),
            Some(v) => return Err(format!("configuration of {ID}: `defaultLocale` must be a locale tag such as \"en\", not {v}").into()),
        };
        let inner = Arc::new(Inner { ctx: ctx.clone(), default_locale, catalog: RwLock::default(), missing: Mutex::default() });
        for info in ctx.plugins()? {
            inner.load(&info.manifest.id, &info.manifest.provides.translations);
        }
        let weak = Arc::downgrade(&inner);
        ctx.events().on("plugin.*", move |e| {
            let (Some(inner), Some(id)) = (weak.upgrade(), e.payload.get("plugin").and_then(Value::as_str)) else { return Ok(()) };
            match e.topic.as_ref() {
                "plugin.installed" | "plugin.upgraded" => {
                    let locales = inner.ctx.plugins()?.into_iter().find(|p| p.manifest.id == id).map(|p| p.manifest.provides.translations).unwrap_or_default();
                    inner.load(id, &locales);
                }
                "plugin.uninstalled" => {
                    inner.write().remove(id);
                }
                _ => {}
            }
            Ok(())
        })?;
        let i18n = Arc::new(I18n { inner });
        ctx.services().register_arc(SERVICE, i18n.clone())?;
        ctx.services().expose(SERVICE, i18n)?;
        Ok(())
    }
}

/// namespace -> locale -> key -> text or plural forms.
type Catalog = HashMap<String, HashMap<String, Map<String, Value>>>;

struct Inner {
    ctx: PluginContext,
    default_locale: String,
    catalog: RwLock<Catalog>,
    missing: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl Inner {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    /// (Re)load a plugin's declared translation files; a bad file is logged and skipped.
    fn load(&self, id: &str, locales: &[String]) {
        let mut bundles = HashMap::new();
        for locale in locales {
            let path = format!("translations/{locale}.json");
            match self.ctx.declared_file(id, &path) {
                Ok(Some(text)) => match check_translations(text.as_bytes()) {
                    Ok(map) => {
                        bundles.insert(normalize(locale), map);
                    }
                    Err(e) => self.ctx.logger().error(format!("{id}: {path}: {e}")),
                },
                Ok(None) => self.ctx.logger().error(format!("{id}: {path} is declared but missing")),
                Err(e) => self.ctx.logger().error(format!("{id}: {path}: {e}")),
            }
        }
        let mut catalog = self.write();
        if bundles.is_empty() {
            catalog.remove(id);
        } else {
            catalog.insert(id.to_string(), bundles);
        }
    }

    fn note_missing(&self, ns: &str, locale: &str, key: &str) {
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        let k = (ns.to_string(), locale.to_string(), key.to_string());
        if let Some(n) = missing.get_mut(&k) {
            *n += 1;
        } else if missing.len() < MAX_MISSING {
            missing.insert(k, 1);
            drop(missing);
            self.ctx.logger().warn(format!("no translation of `{key}` for {ns} in {locale} or its fallbacks"));
        }
    }
}

/// A lookup's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The text (the key itself when missing).
    pub text: String,
    /// The locale that answered, if any.
    pub locale: Option<String>,
}

impl Lookup {
    /// Was the key found?
    pub fn found(&self) -> bool {
        self.locale.is_some()
    }
}

/// A key looked up and found in no locale of its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    /// The namespace (plugin id).
    pub namespace: String,
    /// The locale asked for.
    pub locale: String,
    /// The key.
    pub key: String,
    /// Times asked.
    pub count: u64,
}

/// The `i18n` service.
pub struct I18n {
    inner: Arc<Inner>,
}

fn plural(forms: &Map<String, Value>, locale: &str, vars: &Value) -> Option<String> {
    let count = vars.get("count");
    let category = count.and_then(|c| {
        let lang: LanguageIdentifier = locale.parse().ok()?;
        let rules = PluralRules::create(lang, PluralRuleType::CARDINAL).ok()?;
        let text = match c {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return None,
        };
        rules.select(text.as_str()).ok()
    });
    let name = match category {
        Some(PluralCategory::ZERO) => "zero",
        Some(PluralCategory::ONE) => "one",
        Some(PluralCategory::TWO) => "two",
        Some(PluralCategory::FEW) => "few",
        Some(PluralCategory::MANY) => "many",
        Some(PluralCategory::OTHER) | None => "other",
    };
    forms.get(name).or_else(|| forms.get("other")).and_then(Value::as_str).map(String::from)
}

impl I18n {
    /// The default locale.
    pub fn default_locale(&self) -> &str {
        &self.inner.default_locale
    }

    /// Translate `key` of the caller's namespace into the default locale.
    pub fn t(&self, caller: &PluginContext, key: &str, vars: &Value) -> String {
        self.translate(caller.id(), &self.inner.default_locale, key, vars).text
    }

    /// Translate `key` of the caller's namespace into `locale` (with fallbacks).
    pub fn t_in(&self, caller: &PluginContext, locale: &str, key: &str, vars: &Value) -> String {
        self.translate(caller.id(), locale, key, vars).text
    }

    /// Translate `key` of any namespace (translations are not secret): the first locale of
    /// [`fallback_chain`] that has it answers; placeholders are filled from `vars` (one that
    /// is not given stays as written).
    pub fn translate(&self, namespace: &str, locale: &str, key: &str, vars: &Value) -> Lookup {
        let found = {
            let catalog = self.inner.read();
            catalog.get(namespace).and_then(|bundles| {
                fallback_chain(locale, &self.inner.default_locale).into_iter().find_map(|l| {
                    let text = match bundles.get(&l)?.get(key)? {
                        Value::String(s) => s.clone(),
                        Value::Object(forms) => plural(forms, &l, vars)?,
                        _ => return None,
                    };
                    Some((text, l))
                })
            })
        };
        match found {
            Some((text, l)) => {
                let text = objectos_kernel::model::text::render_placeholders(&text, |name| Ok(objectos_kernel::model::text::lookup_path(vars, name).unwrap_or_else(|| format!("{{{{{name}}}}}")))).unwrap_or(text);
                Lookup { text, locale: Some(l) }
            }
            None => {
                self.inner.note_missing(namespace, &normalize(locale), key);
                Lookup { text: key.to_string(), locale: None }
            }
        }
    }

    /// Add or replace the caller's translations for `locale` (a bundle as in a file).
    pub fn contribute(&self, caller: &PluginContext, locale: &str, bundle: Value) -> Result<()> {
        validate_locale(locale).map_err(|m| KernelError::service(SERVICE, m))?;
        let bytes = objectos_kernel::serde_json::to_vec(&bundle).unwrap_or_default();
        let map = check_translations(&bytes).map_err(|m| KernelError::service(SERVICE, format!("translations of {} for {locale}: {m}", caller.id())))?;
        self.inner.write().entry(caller.id().to_string()).or_default().insert(normalize(locale), map);
        Ok(())
    }

    /// Every locale some plugin is translated into, sorted.
    pub fn locales(&self) -> Vec<String> {
        let catalog = self.inner.read();
        let set: BTreeSet<String> = catalog.values().flat_map(|b| b.keys().cloned()).collect();
        set.into_iter().collect()
    }

    /// Keys looked up and found nowhere, with how often.
    pub fn missing(&self) -> Vec<MissingKey> {
        let missing = self.inner.missing.lock().unwrap_or_else(|p| p.into_inner());
        missing.iter().map(|((namespace, locale, key), count)| MissingKey { namespace: namespace.clone(), locale: locale.clone(), key: key.clone(), count: *count }).collect()
    }
}

/// `i18n` for code in the sandbox: `t {key, vars?, locale?}`, the caller's text for `key` in
/// `locale` (default: the default locale, with fallbacks); `locales`.
impl objectos_kernel::plugin::JsonService for I18n {
    fn call(&self, caller: &PluginContext, method: &str, args: Value) -> Result<Value> {
        match method {
            "t" => {
                let key = objectos_kernel::plugin::str_arg(SERVICE, method, &args, "key")?;
                let vars = args.get("vars").cloned().unwrap_or(Value::Null);
                let locale = args.get("locale").and_then(Value::as_str).unwrap_or(self.default_locale());
                Ok(Value::String(self.t_in(caller, locale, key, &vars)))
            }
            "locales" => Ok(Value::Array(self.locales().into_iter().map(Value::String).collect())),
            _ => Err(objectos_kernel::plugin::no_method(SERVICE, method, &["t", "locales"])),
        }
    }
}
