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

    /// Is `action` legal from this state?
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
