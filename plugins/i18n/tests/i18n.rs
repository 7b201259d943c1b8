//! The i18n plugin through the kernel: translations from packages and built-ins, used by a
//! second plugin with the grant it needs, refused without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use objectos_i18n::{fallback_chain, I18n, ID};
use objectos_kernel::serde_json::json;
use objectos_kernel::{Kernel, KernelError};
use objectos_kernel::model::views::GrantRequest;
use objectos_tests::{manifest, memory_kernel, package_dir, Probe};

const EN: &str = r#"{"plugin.name": "Invoicing", "greeting": "Hello {{name}}", "invoices": {"one": "{{count}} invoice", "other": "{{count}} invoices"}, "only.en": "English only"}"#;
const ZH_CN: &str = r#"{"plugin.name": "开票", "greeting": "你好，{{name}}", "invoices": {"other": "{{count}} 张发票"}}"#;
const ZH_HANT: &str = r#"{"plugin.name": "開票"}"#;

fn pkg_manifest(id: &str, locales: &[&str]) -> String {
    json!({"id": id, "name": "Invoicing", "version": "1.0.0", "provides": {"translations": locales}}).to_string()
}

async fn kernel(root: &std::path::Path) -> Kernel {
    let k = memory_kernel();
    objectos_i18n::register(&k).unwrap();
    k.register_builtin(&manifest("t.user", "1.0.0", &[(ID, "^0.1")], &["services.use:i18n"]), Arc::new(Probe::default())).unwrap();
    k.register_builtin(&manifest("t.stranger", "1.0.0", &[], &[]), Arc::new(Probe::default())).unwrap();
    k.start().await.unwrap();
    let dir = package_dir(root, "inv", &pkg_manifest("t.invoicing", &["en", "zh-CN", "zh-Hant"]), &[("translations/en.json", EN), ("translations/zh-CN.json", ZH_CN), ("translations/zh-Hant.json", ZH_HANT)]);
    k.install_package(&dir, false).await.unwrap();
    k.enable("t.user", true).await.unwrap();
    k
}

#[tokio::test]
async fn package_translations_fall_back_interpolate_and_pluralize() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let i18n = k.context("t.user").unwrap().services().get::<I18n>("i18n").unwrap();
    let t = |locale: &str, key: &str, vars| i18n.translate("t.invoicing", locale, key, &vars);
    assert_eq!(t("zh-Hant-TW", "plugin.name", json!({})).text, "開票");
    assert_eq!(t("zh-Hant-TW", "plugin.name", json!({})).locale.as_deref(), Some("zh-Hant"));
    assert_eq!(t("zh-hant-tw", "greeting", json!({"name": "Ada"})).text, "Hello Ada", "zh-Hant lacks it, zh too: English");
    assert_eq!(t("zh-CN", "greeting", json!({"name": "Ada"})).text, "你好，Ada");
    assert_eq!(t("fr-CA", "only.en", json!({})).text, "English only");
    assert_eq!(t("en", "invoices", json!({"count": 1})).text, "1 invoice");
    assert_eq!(t("en-GB", "invoices", json!({"count": 5})).text, "5 invoices");
    assert_eq!(t("zh-CN", "invoices", json!({"count": 1})).text, "1 张发票");
    assert_eq!(t("en", "greeting", json!({})).text, "Hello {{name}}", "a variable not given stays visible");
    let missing = t("zh-CN", "no.such.key", json!({}));
    assert_eq!((missing.text.as_str(), missing.found()), ("no.such.key", false));
    t("zh-CN", "no.such.key", json!({}));
    let m = i18n.missing();
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].namespace.as_str(), m[0].locale.as_str(), m[0].key.as_str(), m[0].count), ("t.invoicing", "zh-CN", "no.such.key", 2));
    assert_eq!(fallback_chain("zh-Hant-TW", "en"), ["zh-Hant-TW", "zh-Hant", "zh", "en"]);
    for l in ["en", "zh-CN", "zh-Hant"] {
        assert!(i18n.locales().contains(&l.to_string()), "{l} in {:?}", i18n.locales());
    }
}

#[tokio::test]
async fn built_ins_are_translated_and_plugins_contribute_their_own() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let ctx = k.context("t.user").unwrap();
    let i18n = ctx.services().get::<I18n>("i18n").unwrap();
    assert_eq!(i18n.translate(ID, "zh-CN", "plugin.name", &json!({})).text, "翻译");
    assert_eq!(i18n.translate(ID, "en", "missing.count", &json!({"count": 2})).text, "2 texts have no translation");
    i18n.contribute(&ctx, "de", json!({"hi": "Hallo {{who}}"})).unwrap();
    assert_eq!(i18n.t_in(&ctx, "de-AT", "hi", &json!({"who": "Welt"})), "Hallo Welt");
    let e = i18n.contribute(&ctx, "de", json!({"hi": {"one": "x"}})).unwrap_err();
    assert!(e.to_string().contains("$[\"hi\"]: plural forms need `other`"), "{e}");
    let e = i18n.contribute(&ctx, "german", json!({})).unwrap_err();
    assert!(e.to_string().contains("is not a locale tag"), "{e}");
    // Without the grant, refused.
    let e = k.context("t.stranger").unwrap().services().get::<I18n>("i18n").err().unwrap();
    assert!(matches!(&e, KernelError::PermissionDenied { permission, .. } if permission == "services.use:i18n"), "{e}");
}

#[tokio::test]
async fn packages_installed_later_are_picked_up_and_removed_ones_dropped() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    let i18n = k.service::<I18n>("i18n").unwrap();
    let dir = package_dir(root.path(), "late", &pkg_manifest("t.late", &["en"]), &[("translations/en.json", r#"{"plugin.name": "Late"}"#)]);
    k.install_package(&dir, false).await.unwrap();
    k.grant("t.late", GrantRequest::All).unwrap();
    assert_eq!(i18n.translate("t.late", "en", "plugin.name", &json!({})).text, "Late");
    k.uninstall("t.late").await.unwrap();
    assert!(!i18n.translate("t.late", "en", "plugin.name", &json!({})).found());
}

#[tokio::test]
async fn malformed_translation_files_are_refused_with_file_and_path() {
    let root = tempfile::tempdir().unwrap();
    let k = kernel(root.path()).await;
    type Files<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Files, &str); 4] = [
        ("nofile", &[], "provides.translations[0]: the package has no translations/en.json"),
        ("badjson", &[("translations/en.json", "{oops")], "translations/en.json: not valid JSON"),
        ("list", &[("translations/en.json", r#"{"a": [1]}"#)], "translations/en.json: $[\"a\"]: must be a string or plural forms, not a list"),
        ("forms", &[("translations/en.json", r#"{"a": {"several": "x", "other": "y"}}"#)], "$[\"a\"].several: plural forms are zero, one, two, few, many, other"),
    ];
    for (name, files, want) in cases {
        let dir = package_dir(root.path(), name, &pkg_manifest(&format!("t.{name}"), &["en"]), files);
        let e = k.install_package(&dir, false).await.unwrap_err();
        assert!(e.to_string().contains(want), "{name}: {e}");
        assert!(e.to_string().contains("plugin.json"), "{name}: the error names the manifest: {e}");
    }
    let bad = pkg_manifest("t.badtag", &["english"]);
    let e = k.install_package(&package_dir(root.path(), "badtag", &bad, &[]), false).await.unwrap_err();
    assert!(e.to_string().contains("provides.translations[0]"), "{e}");
    assert!(k.plugin("t.invoicing").is_ok(), "what was installed is untouched");
}
