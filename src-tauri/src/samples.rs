//! Sample packages shipped inside the app, unpacked into `<data dir>/samples/` so an evaluator
//! can try install -> review -> approve -> enable without writing anything.

use std::path::{Path, PathBuf};

macro_rules! sample_files {
    ($($path:literal),* $(,)?) => { &[$(($path, include_str!(concat!("../../plugins/packages/", $path)))),*] };
}

const FILES: &[(&str, &str)] = sample_files![
    "contacts/plugin.json",
    "contacts/objects/person.yml",
    "crm/plugin.json",
    "crm/objects/account.yml",
    "crm/objects/contact.yml",
    "crm/objects/opportunity.yml",
    "crm/workflows/opportunity.yml",
    "crm/automations/notify-won.yml",
    "invoicing/plugin.json",
    "invoicing/objects/invoice.yml",
    "lead-scoring/plugin.json",
    "lead-scoring/index.js",
    "lead-scoring/objects/lead.yml",
    "github-issues/plugin.json",
    "github-issues/index.js",
    "github-issues/objects/issue.yml",
    "webhook-channel/plugin.json",
    "webhook-channel/index.js",
];

/// Write the samples (refreshing them) and return their folders.
pub(crate) fn unpack(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let root = data_dir.join("samples");
    // Start clean, so files an older version shipped do not linger.
    match std::fs::remove_dir_all(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (path, text) in FILES {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
        let top = root.join(path.split('/').next().unwrap_or_default());
        if !dirs.contains(&top) {
            dirs.push(top);
        }
    }
    Ok(dirs)
}
