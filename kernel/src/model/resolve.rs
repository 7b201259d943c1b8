//! Dependency resolution with real semver: load order, and errors that name the whole chain.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use semver::Version;

use super::range::VersionRange;
use serde::Serialize;

use crate::model::manifest::Manifest;

/// The installed plugins, by id.
pub type ManifestSet = BTreeMap<String, Arc<Manifest>>;

/// One "X requires Y <range>" step of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Link {
    /// The requiring plugin.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// The required plugin.
    pub requires: String,
    /// The required range.
    pub range: String,
}

/// Why a plugin's dependencies cannot be satisfied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "camelCase")]
#[non_exhaustive]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ResolveError {
    /// The last link's dependency is not installed.
    Missing {
        /// From the plugin asked about to the missing one.
        chain: Vec<Link>,
    },
    /// The last link's dependency is installed in a version outside the range.
    Mismatch {
        /// From the plugin asked about to the mismatching one.
        chain: Vec<Link>,
        /// The installed version.
        installed: String,
    },
    /// Plugins depend on each other in a circle; the first id is repeated at the end.
    Cycle {
        /// The cycle, e.g. `[a, b, c, a]`.
        cycle: Vec<String>,
    },
    /// A plugin lists itself as a dependency.
    SelfDependency {
        /// The plugin.
        plugin: String,
    },
    /// A plugin needs another kernel version.
    Engine {
        /// How the plugin asked about reaches the one with the engine range (empty when it is itself).
        chain: Vec<Link>,
        /// The plugin with the engine range.
        plugin: String,
        /// Its version.
        version: String,
        /// The range it needs.
        range: String,
        /// This kernel's version.
        kernel: String,
    },
}

fn write_chain(f: &mut fmt::Formatter<'_>, chain: &[Link]) -> fmt::Result {
    for (i, l) in chain.iter().enumerate() {
        if i == 0 {
            write!(f, "{} {} requires {} {}", l.plugin, l.version, l.requires, l.range)?;
        } else {
            write!(f, ", which requires {} {}", l.requires, l.range)?;
        }
    }
    Ok(())
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Missing { chain } => {
                write_chain(f, chain)?;
                let missing = chain.last().map(|l| l.requires.as_str()).unwrap_or("?");
                write!(f, ", but {missing} is not installed")
            }
            ResolveError::Mismatch { chain, installed } => {
                write_chain(f, chain)?;
                let dep = chain.last().map(|l| l.requires.as_str()).unwrap_or("?");
                write!(f, ", but the installed {dep} is {installed}")
            }
            ResolveError::Cycle { cycle } => write!(f, "dependency cycle: {}", cycle.join(" -> ")),
            ResolveError::SelfDependency { plugin } => write!(f, "{plugin} depends on itself"),
            ResolveError::Engine { chain, plugin, version, range, kernel } => {
                if !chain.is_empty() {
                    write_chain(f, chain)?;
                    write!(f, ", and ")?;
                }
                write!(f, "{plugin} {version} needs ObjectOS {range}, but this kernel is {kernel}")
            }
        }
    }
}

/// The kernel's own version, checked against `engines.objectos`.
pub fn kernel_version() -> Version {
    Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(Version::new(0, 0, 0))
}

struct Walk<'a> {
    set: &'a ManifestSet,
    kernel: &'a Version,
    /// 0 = unvisited, 1 = on the stack, 2 = done.
    mark: BTreeMap<&'a str, u8>,
    stack: Vec<&'a str>,
    /// The path walked, as borrowed steps; turned into [`Link`]s only for an error.
    links: Vec<(&'a Manifest, &'a str, &'a VersionRange)>,
    order: Vec<String>,
}

fn link(m: &Manifest, dep: &str, req: &VersionRange) -> Link {
    Link { plugin: m.id.clone(), version: m.version.to_string(), requires: dep.to_string(), range: req.to_string() }
}

impl<'a> Walk<'a> {
    fn chain(&self) -> Vec<Link> {
        self.links.iter().map(|(m, dep, req)| link(m, dep, req)).collect()
    }

    fn visit(&mut self, id: &'a str) -> Result<(), ResolveError> {
        match self.mark.get(id) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = self.stack.iter().position(|s| *s == id).unwrap_or(0);
                let mut cycle: Vec<String> = self.stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(id.to_string());
                return Err(ResolveError::Cycle { cycle });
            }
            _ => {}
        }
        let Some(m) = self.set.get(id) else {
            // Callers only visit installed ids; a missing one is reported by the parent.
            return Ok(());
        };
        if let Some(range) = &m.engines.objectos {
            if !range.matches(self.kernel) {
                return Err(ResolveError::Engine {
                    chain: self.chain(),
                    plugin: m.id.clone(),
                    version: m.version.to_string(),
                    range: range.to_string(),
                    kernel: self.kernel.to_string(),
                });
            }
        }
        self.mark.insert(id, 1);
        self.stack.push(id);
        for (dep, req, optional) in m.all_dependencies() {
            if dep == id {
                return Err(ResolveError::SelfDependency { plugin: id.to_string() });
            }
            self.links.push((m, dep.as_str(), req));
            match self.set.get_key_value(dep.as_str()) {
                None if optional => {}
                None => return Err(ResolveError::Missing { chain: self.chain() }),
                Some((key, d)) => {
                    if !req.matches(&d.version) {
                        return Err(ResolveError::Mismatch { chain: self.chain(), installed: d.version.to_string() });
                    }
                    self.visit(key.as_str())?;
                }
            }
            self.links.pop();
        }
        self.stack.pop();
        self.mark.insert(id, 2);
        self.order.push(id.to_string());
        Ok(())
    }
}

/// The plugins `root` needs (required, and optional ones that are installed), in load order,
/// ending with `root` itself.
pub fn resolve(set: &ManifestSet, root: &str) -> Result<Vec<String>, ResolveError> {
    let kernel = kernel_version();
    let mut walk = Walk { set, kernel: &kernel, mark: BTreeMap::new(), stack: Vec::new(), links: Vec::new(), order: Vec::new() };
    let Some((key, _)) = set.get_key_value(root) else {
        return Err(ResolveError::Missing { chain: Vec::new() });
    };
    walk.visit(key.as_str())?;
    Ok(walk.order)
}

/// A load order for every plugin that resolves, and the error of each that does not.
/// One walk shares its marks across roots, so the cost is linear in plugins plus edges.
pub fn resolve_all(set: &ManifestSet) -> (Vec<String>, BTreeMap<String, ResolveError>) {
    let kernel = kernel_version();
    let mut errors = BTreeMap::new();
    let mut walk = Walk { set, kernel: &kernel, mark: BTreeMap::new(), stack: Vec::new(), links: Vec::new(), order: Vec::new() };
    for id in set.keys() {
        if let Err(e) = walk.visit(id) {
            // Plugins left half-visited go back to unvisited; those finished stay finished.
            for on_stack in walk.stack.drain(..) {
                walk.mark.remove(on_stack);
            }
            walk.links.clear();
            errors.insert(id.clone(), e);
        }
    }
    (walk.order, errors)
}

/// Installed plugins that depend on `id` (required dependencies only), transitively,
/// nearest first.
pub fn dependents(set: &ManifestSet, id: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut frontier = vec![id.to_string()];
    while let Some(cur) = frontier.pop() {
        for (other, m) in set {
            if m.dependencies.contains_key(&cur) && other != id && !out.contains(other) {
                out.push(other.clone());
                frontier.insert(0, other.clone());
            }
        }
    }
    out
}
