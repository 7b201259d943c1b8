//! Lifecycle states and actions, and which action is legal in which state.
//!
//! ```text
//! install -> INSTALLED --load--> LOADED --enable--> ENABLED <--enable/disable--> DISABLED
//!               ^                  |                                              |
//!               +------unload------+----------------------unload------------------+
//! any hook failure or panic -> ERROR (load again to retry, or unload / uninstall)
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::audit::AuditAction;

/// Where a plugin is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum State {
    /// Known to the kernel, not loaded.
    Installed,
    /// `onLoad` ran; not active.
    Loaded,
    /// Active: its services and subscriptions are live.
    Enabled,
    /// Was enabled, now switched off; can be enabled again.
    Disabled,
    /// A hook failed or panicked; the error is kept.
    Error,
}

impl State {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Installed => "installed",
            State::Loaded => "loaded",
            State::Enabled => "enabled",
            State::Disabled => "disabled",
            State::Error => "error",
        }
    }

    /// The actions an admin is offered from this state: those legal as one step, and
    /// `enable` from INSTALLED and ERROR too (it loads first). A built-in is never uninstalled.
    pub fn offered(self, builtin: bool) -> Vec<Action> {
        Action::ALL.into_iter().filter(|a| a.offered_from(self) && !(builtin && *a == Action::Uninstall)).collect()
    }

    /// Is `action` legal from this state, as one step?
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        use State::*;
        matches!(
            (self, action),
            (Installed | Error, Load)
                | (Loaded | Disabled, Enable)
                | (Enabled, Disable)
                | (Loaded | Disabled | Error, Unload)
                | (Installed | Loaded | Disabled | Error, Uninstall)
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "installed" => State::Installed,
            "loaded" => State::Loaded,
            "enabled" => State::Enabled,
            "disabled" => State::Disabled,
            "error" => State::Error,
            other => return Err(format!("unknown state `{other}`")),
        })
    }
}

/// A lifecycle action an admin (or a `kernel.manage` plugin) can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Action {
    /// Run `onLoad`.
    Load,
    /// Run `onEnable` (loads first when needed).
    Enable,
    /// Run `onDisable`.
    Disable,
    /// Run `onUnload`, back to installed.
    Unload,
    /// Run `onUninstall` and remove.
    Uninstall,
}

impl Action {
    /// Every action, in lifecycle order.
    pub const ALL: [Action; 5] = [Action::Load, Action::Enable, Action::Disable, Action::Unload, Action::Uninstall];

    /// The hook the action runs.
    pub fn hook(self) -> Hook {
        match self {
            Action::Load => Hook::Load,
            Action::Enable => Hook::Enable,
            Action::Disable => Hook::Disable,
            Action::Unload => Hook::Unload,
            Action::Uninstall => Hook::Uninstall,
        }
    }

    /// The state the action leaves the plugin in (`None`: removed).
    pub fn target(self) -> Option<State> {
        match self {
            Action::Load => Some(State::Loaded),
            Action::Enable => Some(State::Enabled),
            Action::Disable => Some(State::Disabled),
            Action::Unload => Some(State::Installed),
            Action::Uninstall => None,
        }
    }

    /// What the audit trail calls it once done.
    pub fn audit_action(self) -> AuditAction {
        match self {
            Action::Load => AuditAction::PluginLoaded,
            Action::Enable => AuditAction::PluginEnabled,
            Action::Disable => AuditAction::PluginDisabled,
            Action::Unload => AuditAction::PluginUnloaded,
            Action::Uninstall => AuditAction::PluginUninstalled,
        }
    }

    /// Whether an admin is offered this action from `state`: legal as one step, or `enable`
    /// from INSTALLED or ERROR, which loads first.
    pub fn offered_from(self, state: State) -> bool {
        state.allows(self) || (self == Action::Enable && matches!(state, State::Installed | State::Error))
    }

    /// Lowercase verb.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Load => "load",
            Action::Enable => "enable",
            Action::Disable => "disable",
            Action::Unload => "unload",
            Action::Uninstall => "uninstall",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lifecycle hooks, by their manifest-style names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Hook {
    /// After the plugin is first recorded.
    #[serde(rename = "onInstall")]
    Install,
    /// Load.
    #[serde(rename = "onLoad")]
    Load,
    /// Enable.
    #[serde(rename = "onEnable")]
    Enable,
    /// Disable.
    #[serde(rename = "onDisable")]
    Disable,
    /// Unload.
    #[serde(rename = "onUnload")]
    Unload,
    /// Before removal.
    #[serde(rename = "onUninstall")]
    Uninstall,
    /// When a newer version replaces the installed one.
    #[serde(rename = "onUpgrade")]
    Upgrade,
}

impl Hook {
    /// `onEnable` etc.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Install => "onInstall",
            Hook::Load => "onLoad",
            Hook::Enable => "onEnable",
            Hook::Disable => "onDisable",
            Hook::Unload => "onUnload",
            Hook::Uninstall => "onUninstall",
            Hook::Upgrade => "onUpgrade",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_hook_target_and_audit_name() {
        for a in Action::ALL {
            assert_eq!(a.hook().as_str(), format!("on{}{}", a.as_str()[..1].to_uppercase(), &a.as_str()[1..]));
            let audit = a.audit_action().to_string();
            assert!(audit.starts_with("plugin.") && audit.ends_with('d'), "{audit}");
        }
        assert_eq!(Action::Uninstall.target(), None);
        assert_eq!(Action::Unload.target(), Some(State::Installed));
    }

    #[test]
    fn offered_actions_follow_the_table_and_keep_builtins_installed() {
        assert_eq!(State::Installed.offered(false), vec![Action::Load, Action::Enable, Action::Uninstall]);
        assert_eq!(State::Installed.offered(true), vec![Action::Load, Action::Enable]);
        assert_eq!(State::Enabled.offered(false), vec![Action::Disable]);
        assert_eq!(State::Error.offered(false), vec![Action::Load, Action::Enable, Action::Unload, Action::Uninstall]);
    }
}
