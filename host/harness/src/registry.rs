//! Engine name → plugin, from config; the embedded built-ins.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::HarnessError;
use crate::engine::RuntimeInner;
use crate::plugin::Plugin;

mod embedded {
    /// One built-in: engine name, cargo package, component bytes or the
    /// reason build.rs could not produce them.
    pub(crate) struct Builtin {
        pub name: &'static str,
        pub package: &'static str,
        pub wasm: Result<&'static [u8], &'static str>,
    }
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

/// Where a plugin comes from: `builtin:<name>` or a path to a `.wasm` file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginSource {
    Builtin(String),
    Path(PathBuf),
}

impl FromStr for PluginSource {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.strip_prefix("builtin:") {
            Some(name) => PluginSource::Builtin(name.to_string()),
            None => PluginSource::Path(PathBuf::from(s)),
        })
    }
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Builtin(name) => write!(f, "builtin:{name}"),
            PluginSource::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Serialize for PluginSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PluginSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse().expect("infallible"))
    }
}

/// One `[harnesses.<engine>]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HarnessEntry {
    /// `"builtin:claude"` or `"path/to/x.wasm"` (relative to the working
    /// directory of the server).
    pub plugin: PluginSource,
}

/// Names of the built-in harnesses compiled into this binary's build, in
/// registry order, whether or not their component could be built.
pub fn builtin_names() -> Vec<&'static str> {
    embedded::BUILTINS.iter().map(|b| b.name).collect()
}

/// The embedded component of a built-in, or why there is none.
pub fn builtin_wasm(name: &str) -> Result<&'static [u8], HarnessError> {
    let known = || embedded::BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ");
    match embedded::BUILTINS.iter().find(|b| b.name == name) {
        Some(b) => b.wasm.map_err(|reason| HarnessError::BuiltinUnavailable {
            name: name.to_string(),
            reason: format!("{reason} (package {})", b.package),
        }),
        None => Err(HarnessError::BuiltinUnavailable {
            name: name.to_string(),
            reason: format!("there is no such builtin (builtins: {})", known()),
        }),
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One configured engine and how its load went.
#[derive(Debug)]
pub struct RegistryEntry {
    pub engine: String,
    pub source: PluginSource,
    pub plugin: Result<Arc<Plugin>, HarnessError>,
}

/// The configured harness plugins, loaded (compiled, linked, `info()` read)
/// when the runtime starts. A plugin that fails to load stays listed with
/// its error; asking for it returns that error.
#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<String, RegistryEntry>,
}

impl Registry {
    pub(crate) fn load(rt: &Arc<RuntimeInner>, config: &BTreeMap<String, HarnessEntry>) -> Self {
        let mut entries = BTreeMap::new();
        for (engine, entry) in config {
            let plugin = load_one(rt, engine, &entry.plugin).map(Arc::new);
            match &plugin {
                Ok(p) => tracing::info!(
                    engine,
                    source = %entry.plugin,
                    version = %p.info().version,
                    contract = p.contract_version(),
                    "harness plugin loaded"
                ),
                Err(e) => {
                    tracing::warn!(engine, source = %entry.plugin, "harness plugin unavailable: {e}")
                }
            }
            entries
                .insert(engine.clone(), RegistryEntry { engine: engine.clone(), source: entry.plugin.clone(), plugin });
        }
        Registry { entries }
    }

    /// The plugin for an engine name (vault metadata `sandbox0.managed_agents.engine`).
    pub fn get(&self, engine: &str) -> Result<Arc<Plugin>, HarnessError> {
        match self.entries.get(engine) {
            Some(entry) => entry.plugin.clone(),
            None => Err(HarnessError::UnknownEngine {
                engine: engine.to_string(),
                known: self.engines().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Configured engine names, sorted.
    pub fn engines(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Every configured engine with its load result, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &RegistryEntry> {
        self.entries.values()
    }

    /// Load errors, for a server that wants to refuse to start on them.
    pub fn errors(&self) -> Vec<&HarnessError> {
        self.entries.values().filter_map(|e| e.plugin.as_ref().err()).collect()
    }
}

/// The table printed by `bridle plugins list`.
impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<16} {:<10} {:<18} {:<19} {:<8} SOURCE", "ENGINE", "VERSION", "EXECUTION", "API", "CONTRACT")?;
        for e in self.entries.values() {
            match &e.plugin {
                Ok(p) => writeln!(
                    f,
                    "{:<16} {:<10} {:<18} {:<19} {:<8} {}",
                    e.engine,
                    p.info().version,
                    crate::inspect::execution_model(p.info()),
                    crate::inspect::api_shape(p.info()),
                    p.contract_version(),
                    e.source
                )?,
                Err(err) => writeln!(f, "{:<16} UNAVAILABLE {}: {err}", e.engine, e.source)?,
            }
        }
        Ok(())
    }
}

fn load_one(rt: &Arc<RuntimeInner>, engine: &str, source: &PluginSource) -> Result<Plugin, HarnessError> {
    let owned;
    let bytes: &[u8] = match source {
        PluginSource::Builtin(name) => builtin_wasm(name)?,
        PluginSource::Path(path) => {
            owned = std::fs::read(path).map_err(|e| HarnessError::Load {
                plugin: engine.to_string(),
                message: format!("reading {}: {e}", path.display()),
            })?;
            &owned
        }
    };
    let component = rt.compile(bytes).map_err(|e| HarnessError::Load {
        plugin: engine.to_string(),
        message: format!("{source} is not a valid WebAssembly component: {e:#}"),
    })?;
    Plugin::load(rt.clone(), engine, source.clone(), &component, sha256_hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_source_parses() {
        assert_eq!("builtin:claude".parse::<PluginSource>().unwrap(), PluginSource::Builtin("claude".into()));
        assert_eq!("plugins/x.wasm".parse::<PluginSource>().unwrap(), PluginSource::Path("plugins/x.wasm".into()));
        let entry: HarnessEntry = serde_json::from_str(r#"{"plugin":"builtin:codex"}"#).unwrap();
        assert_eq!(entry.plugin.to_string(), "builtin:codex");
    }

    #[test]
    fn unknown_builtin_is_a_clear_error() {
        let err = builtin_wasm("nope").unwrap_err();
        assert!(err.to_string().contains("no such builtin"), "{err}");
    }
}
