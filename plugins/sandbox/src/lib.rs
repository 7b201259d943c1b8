//! Plugins with code: a package's WebAssembly component (or JavaScript, which the host turns
//! into one at install) runs in a wasmtime sandbox.
//!
//! - **The contract** is the WIT world `objectos:plugin@0.1.0` (`wit/plugin.wit`): imports
//!   mirror [`PluginContext`](objectos_kernel::PluginContext) (storage, events, services, log,
//!   config), exports are the lifecycle hooks, an event handler and a service entry.
//! - **Every import is a context call**, so a sandboxed plugin gets the checks a built-in's
//!   calls get: grants (a refusal is a typed error to the guest and a `permission.denied`
//!   audit record), owned topics and services, value bounds and quotas. WASI 0.2 is linked
//!   with a context that holds no capability: clocks and random, and no folder, no network use,
//!   no environment, no arguments.
//! - **Bounds per plugin** ([`limits`]): memory, tables and instances through the store's
//!   limiter, time per call through epoch interruption. A call over a bound fails with a
//!   reason a person reads; in a hook it puts the plugin in ERROR; the kernel and other
//!   plugins go on. Repeated failures quarantine the plugin ([`QUARANTINE_FAILURES`]).
//! - **Compiled once**: at install, into the host's cache folder, keyed by the hash of the
//!   component and of the engine; a restart deserializes it.
//! - **One thread per running plugin**, calls serialized through a bounded queue; the async
//!   runtime never runs guest code.

use std::path::Path;
use std::sync::{Arc, Mutex};

use objectos_kernel::model::manifest::{Manifest, Problem};
use objectos_kernel::plugin::PackageRuntime;
use objectos_kernel::{KernelError, Plugin};

mod engine;
mod guest;
mod host;
mod js;
pub mod limits;
mod plugin;
mod runner;

pub use engine::{componentize_child_main, Cache, COMPONENTIZE_FLAG, COMPONENTIZE_TIMEOUT, MAX_COMPONENT_BYTES, MAX_WASM_STACK, WIT};
pub use guest::QUEUE;
pub use host::{MAX_SERVICES, MAX_SUBSCRIPTIONS, MAX_TEXT_BYTES};
pub use limits::{Bounds, Ceilings};
pub use plugin::{QUARANTINE_FAILURES, QUARANTINE_WINDOW};

/// The package runtime for hosts that run packages' code: declarative files as the
/// declarative runtime gives them meaning, and `main` in the sandbox.
#[derive(Clone)]
pub struct Runtime {
    cache: Cache,
    ceilings: Ceilings,
}

impl Runtime {
    /// A runtime that caches compiled code in `cache`.
    pub fn new(cache: Cache) -> Runtime {
        Runtime { cache, ceilings: Ceilings::default() }
    }

    /// Lower (or raise) the most a plugin may ask for.
    pub fn with_ceilings(mut self, ceilings: Ceilings) -> Runtime {
        self.ceilings = ceilings;
        self
    }

    /// The bounds `manifest`'s code runs under here, or why the host refuses them.
    pub fn bounds(&self, manifest: &Manifest) -> Result<Bounds, Vec<Problem>> {
        Bounds::resolve(&manifest.sandbox, &self.ceilings)
    }
}

impl PackageRuntime for Runtime {
    fn instantiate(&self, manifest: &Manifest, dir: &Path) -> objectos_kernel::Result<Arc<dyn Plugin>> {
        let declarative = objectos_declarative::Runtime.instantiate(manifest, dir)?;
        let Some(main) = &manifest.main else { return Ok(declarative) };
        let bounds = self.bounds(manifest).map_err(|ps| KernelError::Package {
            path: dir.to_path_buf(),
            message: ps.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "),
        })?;
        Ok(Arc::new(plugin::SandboxPlugin {
            dir: dir.to_path_buf(),
            main: main.clone(),
            bounds,
            cache: self.cache.clone(),
            declarative,
            prepared: Mutex::new(None),
            guest: Mutex::new(None),
        }))
    }

    fn own_folders(&self) -> Vec<std::path::PathBuf> {
        self.cache.folder().map(Path::to_path_buf).into_iter().collect()
    }

    fn code(&self, manifest: &Manifest) -> Option<objectos_kernel::model::views::CodeInfo> {
        let main = manifest.main.clone()?;
        let language = match engine::kind(&main) {
            engine::Kind::Component => "WebAssembly component",
            engine::Kind::JavaScript => "JavaScript",
        };
        let bounds = Bounds::resolve(&manifest.sandbox, &self.ceilings).map(|b| b.summary()).unwrap_or(manifest.sandbox);
        Some(objectos_kernel::model::views::CodeInfo { main, language: language.into(), bounds, stack_kib: (MAX_WASM_STACK >> 10) as u64 })
    }

    /// The declarative files' checks, and for code: the bounds, and that the code becomes a
    /// component of the world that imports nothing else (JavaScript is componentized and
    /// everything compiled here, into the cache, so an enable later starts at once).
    fn check(&self, manifest: &Manifest, dir: &Path, installed: &[Manifest]) -> Vec<Problem> {
        let mut problems = objectos_declarative::runtime::check_files(manifest, dir, installed);
        let Some(main) = &manifest.main else { return problems };
        if let Err(ps) = self.bounds(manifest) {
            problems.extend(ps);
        }
        if !dir.join(main).is_file() {
            problems.push(Problem { path: "main".into(), message: format!("the package has no {main}") });
            return problems;
        }
        let ledger = engine::NoLedger;
        let checked = self.cache.component_bytes(dir, main, &ledger).and_then(|bytes| self.cache.compile(&bytes, &ledger)).and_then(|c| runner::Prepared::new(&c, main).map(drop));
        if let Err(message) = checked {
            problems.push(Problem { path: "main".into(), message });
        }
        problems
    }
}
