//! The package runtime: a declarative package's "code" is the interpretation of its files.
//! When the package is enabled, its record types, workflows and automations are declared to
//! the engines with the package's own context, so everything they later do for it is checked
//! against the package's grants. The install check reads the same files and refuses a package
//! whose files are wrong, naming the file and the place in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use objectos_kernel::{HookResult, Plugin, PluginContext, async_trait};
use objectos_kernel::model::manifest::{Manifest, Problem};
use objectos_kernel::plugin::PackageRuntime;
use serde_json::json;

use crate::automation::Automations;
use crate::data::Data;
use crate::defs::{check_package_in, Definitions, Mode};
use crate::workflow::Workflow;

/// The runtime hosts give the kernel (`KernelConfig::runtime`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Runtime;

/// The problems of a package folder's declared files, and what they need from the manifest
/// (engines as dependencies, the permissions the engines use for it), as install checks them,
/// with `installed` installed (a reference to a dependency's record type is checked against
/// the dependency's manifest).
pub fn check_files(manifest: &Manifest, dir: &Path, installed: &[Manifest]) -> Vec<Problem> {
    match read_definitions_in(manifest, dir, &declared_by(manifest, installed)) {
        Ok(defs) => crate::needs::missing(manifest, &defs),
        Err(problems) => problems,
    }
}

/// Read and check a package folder's declared files, as the engines take them (a workflow's
/// initial state is the default of its field).
/// This reads an installed package (at enable, and for the console), so what a later, stricter
/// check refuses but the engines ignore is let through ([`Mode::Load`]).
pub fn read_definitions(manifest: &Manifest, dir: &Path) -> Result<Definitions, Vec<Problem>> {
    read(manifest, dir, &|_| None, Mode::Load).map(with_workflow_defaults)
}

/// An installed package's declared files, read with `read` (a declared path to its text), as
/// the engines take them; see [`read_definitions`].
pub fn read_installed(manifest: &Manifest, read: impl Fn(&str) -> Option<String>) -> Result<Definitions, Vec<Problem>> {
    check_package_in(manifest, read, &|_| None, Mode::Load).map(with_workflow_defaults)
}

/// A workflow's initial state is the default of its field, which the engine keeps.
fn with_workflow_defaults(mut defs: Definitions) -> Definitions {
    for w in &defs.workflows {
        if let Some(f) = defs.objects.iter_mut().find(|o| o.name == w.object).and_then(|o| o.fields.iter_mut().find(|f| f.name == w.field)) {
            f.default.get_or_insert_with(|| json!(w.initial));
            f.workflow = true;
        }
    }
    defs
}

/// The record types each of `manifest`'s dependencies declares, where it is installed at a
/// version the dependency's range accepts (otherwise not known).
pub fn declared_by<'a>(manifest: &'a Manifest, installed: &'a [Manifest]) -> impl Fn(&str) -> Option<Vec<String>> + 'a {
    move |id: &str| {
        let range = manifest.dependencies.get(id)?;
        installed.iter().find(|m| m.id == id && range.matches(&m.version)).map(|m| m.provides.objects.clone())
    }
}

/// Check a package folder's declared files as install does, where other packages' record
/// types are known (see [`crate::defs::check_package_in`]).
pub fn read_definitions_in(manifest: &Manifest, dir: &Path, declared: &dyn Fn(&str) -> Option<Vec<String>>) -> Result<Definitions, Vec<Problem>> {
    read(manifest, dir, declared, Mode::Check)
}

fn read(manifest: &Manifest, dir: &Path, declared: &dyn Fn(&str) -> Option<Vec<String>>, mode: Mode) -> Result<Definitions, Vec<Problem>> {
    check_package_in(
        manifest,
        |path| {
            let file = dir.join(path);
            file.is_file().then(|| std::fs::read_to_string(&file).ok()).flatten()
        },
        declared,
        mode,
    )
}

impl PackageRuntime for Runtime {
    fn instantiate(&self, manifest: &Manifest, dir: &Path) -> objectos_kernel::Result<Arc<dyn Plugin>> {
        Ok(Arc::new(PackagePlugin { manifest: manifest.clone(), dir: dir.to_path_buf() }))
    }

    fn check(&self, manifest: &Manifest, dir: &Path, installed: &[Manifest]) -> Vec<Problem> {
        let mut problems: Vec<Problem> = objectos_kernel::plugin::refuse_code(manifest).into_iter().collect();
        problems.extend(check_files(manifest, dir, installed));
        problems
    }
}

struct PackagePlugin {
    manifest: Manifest,
    dir: PathBuf,
}

fn need(what: &str, plugin: &str, service: &str, e: objectos_kernel::KernelError) -> String {
    format!("this package declares {what}, which need {plugin} enabled and `services.use:{service}` granted ({e})")
}

#[async_trait]
impl Plugin for PackagePlugin {
    async fn on_enable(&self, ctx: &PluginContext) -> HookResult {
        let p = &self.manifest.provides;
        if p.objects.is_empty() && p.workflows.is_empty() && p.automations.is_empty() {
            return Ok(());
        }
        // Parsing runs off the async runtime, so the hook's timeout bounds it.
        let (manifest, dir) = (self.manifest.clone(), self.dir.clone());
        let read = tokio::task::spawn_blocking(move || read_definitions(&manifest, &dir)).await.map_err(|e| format!("reading the definitions failed: {e}"))?;
        let defs = read.map_err(|ps| ps.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))?;
        if !defs.objects.is_empty() {
            let data = ctx.services().get::<Data>(crate::data::SERVICE).map_err(|e| need("record types", crate::data::ID, crate::data::SERVICE, e))?;
            for o in defs.objects {
                data.define(ctx, o)?;
            }
        }
        if !defs.workflows.is_empty() {
            let wf = ctx.services().get::<Workflow>(crate::workflow::SERVICE).map_err(|e| need("workflows", crate::workflow::ID, crate::workflow::SERVICE, e))?;
            for w in defs.workflows {
                wf.define(ctx, w)?;
            }
        }
        if !defs.automations.is_empty() {
            let au = ctx.services().get::<Automations>(crate::automation::SERVICE).map_err(|e| need("automations", crate::automation::ID, crate::automation::SERVICE, e))?;
            for a in defs.automations {
                au.define(ctx, a)?;
            }
        }
        ctx.logger().info("record types, workflows and automations declared");
        let _ = ctx.audit("definitions.declared", json!({ "objects": p.objects, "workflows": p.workflows, "automations": p.automations }));
        Ok(())
    }

    async fn on_disable(&self, ctx: &PluginContext) -> HookResult {
        // Only the engines this package declares things with: looking up another as the package
        // would be a lookup it never asked for, audited as its refusal.
        let p = &self.manifest.provides;
        if !p.automations.is_empty() {
            if let Ok(a) = ctx.services().get::<Automations>(crate::automation::SERVICE) {
                a.undefine_all(ctx);
            }
        }
        if !p.workflows.is_empty() {
            if let Ok(w) = ctx.services().get::<Workflow>(crate::workflow::SERVICE) {
                w.undefine_all(ctx);
            }
        }
        if !p.objects.is_empty() {
            if let Ok(d) = ctx.services().get::<Data>(crate::data::SERVICE) {
                d.undefine_all(ctx);
            }
        }
        Ok(())
    }
}
