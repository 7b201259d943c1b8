//! What the console shows, built from the kernel's and the plugins' data: the structs the UI
//! renders, and the words in them (field bounds, triggers, actions, update messages). Plain
//! functions of their inputs, so they are tested here without a window or a kernel; the
//! commands fetch the data and hand it over.

use std::fmt::Display;
use std::path::Path;

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
