//! Contract-version detection and `bridle plugins inspect FILE`.

use std::fmt;
use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::bindings::{Contract, SUPPORTED_CONTRACTS};
use crate::{HarnessError, HarnessInfo, HarnessRuntime, PluginSource};

const ADAPTER_PREFIX: &str = "bridle:harness/adapter@";

/// Find the `bridle:harness/adapter@X` export and accept it if X is a
/// supported line (0.1.x, 0.2.x, 0.3.x).
/// Done on the component's type, before linking, so a plugin for another
/// contract version gets a sentence instead of a type-mismatch dump.
pub(crate) fn check_contract(
    engine: &Engine,
    component: &Component,
    plugin: &str,
) -> Result<(String, Contract), HarnessError> {
    let exports: Vec<String> = component.component_type().exports(engine).map(|(name, _)| name.to_string()).collect();
    let Some(version) = exports.iter().find_map(|name| name.strip_prefix(ADAPTER_PREFIX)) else {
        return Err(HarnessError::NotAHarness {
            plugin: plugin.to_string(),
            exports: if exports.is_empty() { "none".into() } else { exports.join(", ") },
        });
    };
    let Some(contract) = Contract::of(version) else {
        return Err(HarnessError::UnsupportedContract {
            plugin: plugin.to_string(),
            found: version.to_string(),
            supported: SUPPORTED_CONTRACTS.iter().map(|v| format!("{v}.x")).collect::<Vec<_>>().join(", "),
        });
    };
    Ok((version.to_string(), contract))
}

/// What a component file declares, for `bridle plugins inspect FILE`.
#[derive(Debug, Clone)]
pub struct PluginDescription {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// `bridle:harness/adapter@X` version found in the exports, if any.
    pub contract_version: Option<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// The plugin's `info()`, when it could be loaded and called.
    pub info: Option<HarnessInfo>,
    /// Why it cannot be loaded by this host, if it cannot.
    pub error: Option<String>,
}

impl fmt::Display for PluginDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file:        {}", self.path)?;
        writeln!(f, "size:        {} bytes", self.size_bytes)?;
        writeln!(f, "sha256:      {}", self.sha256)?;
        match &self.contract_version {
            Some(v) => writeln!(f, "contract:    bridle:harness@{v}")?,
            None => writeln!(f, "contract:    none (no bridle:harness/adapter export)")?,
        }
        if let Some(info) = &self.info {
            writeln!(f, "name:        {}", info.name)?;
            writeln!(f, "version:     {}", info.version)?;
            writeln!(f, "execution:   {}", execution_model(info))?;
            writeln!(f, "api shape:   {}", api_shape(info))?;
            writeln!(f, "description: {}", info.description)?;
            writeln!(f, "model paths: {}", info.model_paths.join(", "))?;
        }
        writeln!(f, "exports:")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "imports:")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        match &self.error {
            Some(e) => write!(f, "status:      NOT LOADABLE: {e}"),
            None => write!(f, "status:      ok"),
        }
    }
}

pub(crate) fn execution_model(info: &HarnessInfo) -> &'static str {
    match info.execution_model {
        crate::ExecutionModel::AgentInSandbox => "agent-in-sandbox",
        crate::ExecutionModel::SandboxAsTool => "sandbox-as-tool",
    }
}

pub(crate) fn api_shape(info: &HarnessInfo) -> &'static str {
    match info.api_shape {
        crate::ApiShape::AnthropicMessages => "anthropic-messages",
        crate::ApiShape::OpenaiCompatible => "openai-compatible",
        crate::ApiShape::OpenaiResponses => "openai-responses",
    }
}

/// Describe a component file. Fails only if the file cannot be read or is
/// not a component at all; anything else lands in `error`.
pub fn inspect(path: impl AsRef<Path>) -> Result<PluginDescription, HarnessError> {
    // A one-off engine: no registry, and no pool to reserve for one instance.
    let limits = crate::Limits { pooling: false, ..Default::default() };
    let rt = HarnessRuntime::new(crate::HarnessConfig { harnesses: Default::default(), limits, ..Default::default() })?;
    rt.inspect(path)
}

impl HarnessRuntime {
    /// [`inspect`] with this runtime's engine (and compile cache).
    pub fn inspect(&self, path: impl AsRef<Path>) -> Result<PluginDescription, HarnessError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| HarnessError::Load { plugin: shown.clone(), message: format!("reading {shown}: {e}") })?;
        let sha256 = crate::registry::sha256_hex(&bytes);
        let component = self.inner.compile(&bytes).map_err(|e| HarnessError::Load {
            plugin: shown.clone(),
            message: format!("not a valid WebAssembly component: {e:#}"),
        })?;
        let engine = &self.inner.engine;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let contract_version = exports.iter().find_map(|n| n.strip_prefix(ADAPTER_PREFIX)).map(str::to_string);
        let loaded = crate::plugin::Plugin::load(
            self.inner.clone(),
            &shown,
            PluginSource::Path(path.to_path_buf()),
            &component,
            sha256.clone(),
        );
        let (info, error) = match loaded {
            Ok(p) => (Some(p.info().clone()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(PluginDescription {
            path: shown,
            size_bytes: bytes.len() as u64,
            sha256,
            contract_version,
            exports,
            imports,
            info,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Contract;

    #[test]
    fn contract_versions() {
        assert_eq!(Contract::of("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.1.7"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.1.1-rc.1"), Some(Contract::V0_1));
        assert_eq!(Contract::of("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::of("0.3.0"), Some(Contract::V0_3));
        assert_eq!(Contract::of("0.4.0"), None);
        assert_eq!(Contract::of("1.1.0"), None);
        assert_eq!(Contract::of("0.10.0"), None);
    }
}
