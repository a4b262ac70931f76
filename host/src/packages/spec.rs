//! An environment's package spec: the managers, and which of them this server can install.
//!
//! Pure: the caller says which managers are installable here; this module decides whether a
//! request may name them.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Invalid;
use crate::model::environments::PackagesParams;

/// A package manager an environment's `packages` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Manager {
    Apt,
    Cargo,
    Gem,
    Go,
    Npm,
    Pip,
}

impl Manager {
    pub const ALL: [Manager; 6] = [Manager::Apt, Manager::Cargo, Manager::Gem, Manager::Go, Manager::Npm, Manager::Pip];

    pub fn name(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Cargo => "cargo",
            Manager::Gem => "gem",
            Manager::Go => "go",
            Manager::Npm => "npm",
            Manager::Pip => "pip",
        }
    }
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which managers this server can install, and for each one it cannot, why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installable {
    missing: BTreeMap<Manager, String>,
}

impl Installable {
    /// No manager can be installed; `why` is said for each.
    pub fn none(why: &str) -> Self {
        Installable { missing: Manager::ALL.iter().map(|m| (*m, why.to_string())).collect() }
    }

    /// Every manager can be installed except those in `missing` (manager, why).
    pub fn all_but(missing: impl IntoIterator<Item = (Manager, String)>) -> Self {
        Installable { missing: missing.into_iter().collect() }
    }

    /// `None` when `m` can be installed, else the reason it cannot.
    pub fn why_not(&self, m: Manager) -> Option<&str> {
        self.missing.get(&m).map(String::as_str)
    }
}

/// The lists a request's `packages` sets, by manager (absent lists are not named).
pub fn requested(p: &PackagesParams) -> impl Iterator<Item = (Manager, &[String])> {
    [
        (Manager::Apt, &p.apt),
        (Manager::Cargo, &p.cargo),
        (Manager::Gem, &p.gem),
        (Manager::Go, &p.go),
        (Manager::Npm, &p.npm),
        (Manager::Pip, &p.pip),
    ]
    .into_iter()
    .filter_map(|(m, v)| v.as_deref().map(|v| (m, v)))
}

/// A request naming packages for a manager this server cannot install is refused, naming the
/// manager and what is missing: stored packages that are never installed would be silent
/// acceptance. An empty list (clearing a manager) is always allowed.
pub fn check_installable(p: &PackagesParams, here: &Installable) -> Result<(), Invalid> {
    for (m, list) in requested(p) {
        if list.is_empty() {
            continue;
        }
        if let Some(why) = here.why_not(m) {
            return Err(Invalid::new(format!("config.packages.{m}: this server cannot install {m} packages: {why}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> PackagesParams {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn refuses_managers_that_cannot_be_installed() {
        let go_missing = Installable::all_but([(Manager::Go, "`go` is not installed on this host".into())]);
        let nothing = Installable::none("not supported");
        let rows: &[(&str, serde_json::Value, &Installable, Option<&str>)] = &[
            ("nothing requested", serde_json::json!({}), &nothing, None),
            ("empty list clears", serde_json::json!({"pip": []}), &nothing, None),
            ("pip on a server with none", serde_json::json!({"pip": ["rich"]}), &nothing, Some("config.packages.pip")),
            (
                "go missing",
                serde_json::json!({"pip": ["rich"], "go": ["x"]}),
                &go_missing,
                Some("`go` is not installed"),
            ),
            ("go missing, go empty", serde_json::json!({"pip": ["rich"], "go": []}), &go_missing, None),
            ("apt fine", serde_json::json!({"apt": ["jq"]}), &go_missing, None),
        ];
        for (name, json, here, want) in rows {
            let got = check_installable(&params(json.clone()), here);
            match (want, got) {
                (None, Ok(())) => {}
                (Some(w), Err(e)) => assert!(e.0.contains(w), "{name}: {}", e.0),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
    }
}
