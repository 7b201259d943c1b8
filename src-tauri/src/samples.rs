//! Sample packages shipped inside the app, unpacked into `<data dir>/samples/` so an evaluator
//! can try install -> review -> approve -> enable without writing anything.

use std::path::{Path, PathBuf};

macro_rules! sample_files {
    ($($path:literal),* $(,)?) => { &[$(($path, include_str!(concat!("../../plugins/packages/", $path)))),*] };
}

const FILES: &[(&str, &str)] = sample_files![
    "contacts/plugin.json",
    "contacts/objects/contact.json",
    "crm/plugin.json",
    "crm/objects/lead.json",
    "crm/objects/opportunity.json",
    "crm/workflows/opportunity.json",
    "invoicing/plugin.json",
    "invoicing/objects/invoice.json",
];

/// Write the samples (refreshing them) and return their folders.
pub(crate) fn unpack(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let root = data_dir.join("samples");
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
