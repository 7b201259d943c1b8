//! The bounds a plugin's code runs under: what its manifest asks for (`"sandbox"`), the
//! defaults for what it does not, and the host's ceilings above which an install is refused.

use std::time::Duration;

use objectos_kernel::model::manifest::{Problem, SandboxLimits};
use serde::Serialize;

/// The most any plugin may ask for. A host may lower them ([`crate::Runtime::with_ceilings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ceilings {
    /// Linear memory, MiB.
    pub memory_mib: u64,
    /// A lifecycle hook, ms.
    pub hook_ms: u64,
    /// An event handler or service call, ms.
    pub call_ms: u64,
    /// Table elements.
    pub table_elements: u64,
    /// Core instances.
    pub instances: u64,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings { memory_mib: 512, hook_ms: 10_000, call_ms: 5_000, table_elements: 200_000, instances: 64 }
    }
}

/// The bounds a plugin gets when its manifest names none.
pub const DEFAULTS: SandboxLimits = SandboxLimits { memory_mib: Some(64), hook_ms: Some(1_000), call_ms: Some(250), table_elements: Some(20_000), instances: Some(32) };

/// The bounds one plugin runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Linear memory, bytes (all memories together).
    pub memory_bytes: usize,
    /// The budget of a lifecycle hook.
    pub hook: Duration,
    /// The budget of an event handler or a service call.
    pub call: Duration,
    /// Table elements (per table).
    pub table_elements: usize,
    /// Core instances.
    pub instances: usize,
}

impl Bounds {
    /// The bounds for `asked`, or a problem (with its `sandbox.<key>` path) for each value over
    /// a ceiling.
    pub fn resolve(asked: &SandboxLimits, ceilings: &Ceilings) -> Result<Bounds, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut pick = |key: &str, asked: Option<u64>, default: Option<u64>, ceiling: u64, unit: &str| -> u64 {
            let value = asked.or(default).unwrap_or(ceiling).min(u64::MAX / 2);
            if value > ceiling {
                problems.push(Problem { path: format!("sandbox.{key}"), message: format!("asks for {value}{unit}; this host allows at most {ceiling}{unit}") });
            }
            value.min(ceiling)
        };
        let bounds = Bounds {
            memory_bytes: (pick("memoryMiB", asked.memory_mib, DEFAULTS.memory_mib, ceilings.memory_mib, " MiB") as usize).saturating_mul(1 << 20),
            hook: Duration::from_millis(pick("hookMs", asked.hook_ms, DEFAULTS.hook_ms, ceilings.hook_ms, " ms")),
            call: Duration::from_millis(pick("callMs", asked.call_ms, DEFAULTS.call_ms, ceilings.call_ms, " ms")),
            table_elements: pick("tableElements", asked.table_elements, DEFAULTS.table_elements, ceilings.table_elements, "") as usize,
            instances: pick("instances", asked.instances, DEFAULTS.instances, ceilings.instances, "") as usize,
        };
        if problems.is_empty() {
            Ok(bounds)
        } else {
            Err(problems)
        }
    }

    /// The bounds as the manifest's keys, for the permission review.
    pub fn summary(&self) -> SandboxLimits {
        SandboxLimits {
            memory_mib: Some((self.memory_bytes >> 20) as u64),
            hook_ms: Some(self.hook.as_millis() as u64),
            call_ms: Some(self.call.as_millis() as u64),
            table_elements: Some(self.table_elements as u64),
            instances: Some(self.instances as u64),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_ceilings_refuse() {
        let b = Bounds::resolve(&SandboxLimits { call_ms: Some(100), ..Default::default() }, &Ceilings::default()).unwrap();
        assert_eq!((b.memory_bytes, b.call, b.hook), (64 << 20, Duration::from_millis(100), Duration::from_millis(1_000)));
        let e = Bounds::resolve(&SandboxLimits { memory_mib: Some(4096), hook_ms: Some(60_000), ..Default::default() }, &Ceilings::default()).unwrap_err();
        let paths: Vec<&str> = e.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["sandbox.memoryMiB", "sandbox.hookMs"]);
        assert!(e[0].message.contains("at most 512 MiB"), "{}", e[0].message);
    }
}
