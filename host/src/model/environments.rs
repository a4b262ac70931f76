//! Environments: where sessions run (network policy, packages).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::Invalid;
use super::common::{Metadata, MetadataPatch, Patch, Validate, check_len, check_metadata};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConfigParams {
    Cloud {
        #[serde(default)]
        networking: Option<NetworkingParams>,
        #[serde(default)]
        packages: Option<PackagesParams>,
    },
    SelfHosted {},
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NetworkingParams {
    Unrestricted {},
    Limited {
        #[serde(default)]
        allowed_hosts: Option<Vec<String>>,
        #[serde(default)]
        allow_mcp_servers: Option<bool>,
        #[serde(default)]
        allow_package_managers: Option<bool>,
    },
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackagesParams {
    #[serde(default)]
    pub apt: Option<Vec<String>>,
    #[serde(default)]
    pub cargo: Option<Vec<String>>,
    #[serde(default)]
    pub gem: Option<Vec<String>>,
    #[serde(default)]
    pub go: Option<Vec<String>>,
    #[serde(default)]
    pub npm: Option<Vec<String>>,
    #[serde(default)]
    pub pip: Option<Vec<String>>,
    #[serde(default, rename = "type")]
    pub kind: Option<PackagesType>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PackagesType {
    Packages,
}

/// The resolved `config` of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloudConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub networking: Networking,
    pub packages: Packages,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Networking {
    Unrestricted,
    Limited { allowed_hosts: Vec<String>, allow_mcp_servers: bool, allow_package_managers: bool },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Packages {
    pub apt: Vec<String>,
    pub cargo: Vec<String>,
    pub gem: Vec<String>,
    pub go: Vec<String>,
    pub npm: Vec<String>,
    pub pip: Vec<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            kind: "cloud".into(),
            networking: Networking::Unrestricted,
            packages: Packages { kind: "packages".into(), ..Default::default() },
        }
    }
}

/// `config` of a self-hosted environment: its sessions' tools run on the
/// machines of the workers that poll its work queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SelfHostedConfig {
    /// Always `self_hosted`.
    #[serde(rename = "type")]
    #[schema(pattern = "^self_hosted$")]
    pub kind: String,
}

/// An environment's resolved `config`: cloud (Bridle's own sandboxes) or
/// self-hosted (the work queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EnvironmentConfig {
    Cloud(CloudConfig),
    SelfHosted(SelfHostedConfig),
}

impl EnvironmentConfig {
    /// The config `params` create (omitted: a default cloud one).
    pub fn create(params: Option<&ConfigParams>) -> Result<EnvironmentConfig, Invalid> {
        match params {
            Some(ConfigParams::SelfHosted {}) => {
                Ok(EnvironmentConfig::SelfHosted(SelfHostedConfig { kind: "self_hosted".into() }))
            }
            Some(p) => {
                let mut c = CloudConfig::default();
                c.apply(p)?;
                Ok(EnvironmentConfig::Cloud(c))
            }
            None => Ok(EnvironmentConfig::Cloud(CloudConfig::default())),
        }
    }

    /// Apply an update's params; the type cannot change.
    pub fn apply(&mut self, params: &ConfigParams) -> Result<(), Invalid> {
        match (self, params) {
            (EnvironmentConfig::Cloud(c), p @ ConfigParams::Cloud { .. }) => c.apply(p),
            (EnvironmentConfig::SelfHosted(_), ConfigParams::SelfHosted {}) => Ok(()),
            (EnvironmentConfig::Cloud(_), ConfigParams::SelfHosted {}) => Err(Invalid::new(
                "config.type: a cloud environment cannot become self_hosted; create a self_hosted environment",
            )),
            (EnvironmentConfig::SelfHosted(_), _) => Err(Invalid::new(
                "config.type: a self_hosted environment cannot become cloud; create a cloud environment",
            )),
        }
    }

    pub fn is_self_hosted(&self) -> bool {
        matches!(self, EnvironmentConfig::SelfHosted(_))
    }

    /// The network policy of the session sandboxes Bridle runs for it. A
    /// self-hosted environment's tools run on its workers; its runtimes'
    /// sandboxes (which only reach the model) keep the default.
    pub fn networking(&self) -> Networking {
        match self {
            EnvironmentConfig::Cloud(c) => c.networking.clone(),
            EnvironmentConfig::SelfHosted(_) => CloudConfig::default().networking,
        }
    }

    /// The packages installed for its sessions (none for a self-hosted
    /// environment: its tools run on the workers' machines).
    pub fn packages(&self) -> Packages {
        match self {
            EnvironmentConfig::Cloud(c) => c.packages.clone(),
            EnvironmentConfig::SelfHosted(_) => Packages::default(),
        }
    }
}

impl CloudConfig {
    /// Apply params over `self`: omitted fields keep their value.
    pub fn apply(&mut self, params: &ConfigParams) -> Result<(), Invalid> {
        let (networking, packages) = match params {
            ConfigParams::Cloud { networking, packages } => (networking, packages),
            ConfigParams::SelfHosted {} => {
                return Err(Invalid::new("config.type: expected \"cloud\""));
            }
        };
        if let Some(n) = networking {
            self.networking = match n {
                NetworkingParams::Unrestricted {} => Networking::Unrestricted,
                NetworkingParams::Limited { allowed_hosts, allow_mcp_servers, allow_package_managers } => {
                    let hosts = allowed_hosts.clone().unwrap_or_default();
                    for (i, h) in hosts.iter().enumerate() {
                        check_host(&format!("config.networking.allowed_hosts[{i}]"), h)?;
                    }
                    Networking::Limited {
                        allowed_hosts: hosts,
                        allow_mcp_servers: allow_mcp_servers.unwrap_or(false),
                        allow_package_managers: allow_package_managers.unwrap_or(false),
                    }
                }
            };
        }
        if let Some(p) = packages {
            let set = |slot: &mut Vec<String>, v: &Option<Vec<String>>| {
                if let Some(v) = v {
                    slot.clone_from(v);
                }
            };
            set(&mut self.packages.apt, &p.apt);
            set(&mut self.packages.cargo, &p.cargo);
            set(&mut self.packages.gem, &p.gem);
            set(&mut self.packages.go, &p.go);
            set(&mut self.packages.npm, &p.npm);
            set(&mut self.packages.pip, &p.pip);
        }
        Ok(())
    }
}

/// A hostname, IPv4 address, or `*.`-wildcard: no scheme, path or port.
fn check_host(field: &str, h: &str) -> Result<(), Invalid> {
    // An optional `:port` restricts the entry to that port.
    let host = match h.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok_and(|p| p > 0) => host,
        _ => h,
    };
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !bare.starts_with('.')
        && !bare.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!(
            "{field}: `{h}` is not a hostname, IPv4 address or `*.` wildcard, with an optional `:port` (no scheme or path)"
        )))
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentCreate {
    pub name: String,
    #[serde(default)]
    pub config: Option<ConfigParams>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataSchema>)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl Validate for EnvironmentCreate {
    fn validate(&self) -> Result<(), Invalid> {
        check_len("name", &self.name, 1, 256)?;
        if let Some(d) = &self.description {
            check_len("description", d, 0, 2048)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
            super::vaults::check_not_reserved("environment", m.keys())?;
        }
        if self.scope.is_some() {
            return Err(Invalid::new("scope: only applicable to self_hosted environments"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub config: Option<ConfigParams>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataPatchSchema>)]
    pub metadata: Option<MetadataPatch>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub id: String,
    #[schema(required)]
    pub archived_at: Option<String>,
    pub config: EnvironmentConfig,
    pub created_at: String,
    #[schema(required)]
    pub description: Option<String>,
    #[schema(value_type = super::common::MetadataSchema)]
    pub metadata: Metadata,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
}

impl super::common::Archivable for Environment {
    fn stamp_archived(&mut self, at: String) {
        self.updated_at.clone_from(&at);
        self.archived_at = Some(at);
    }
}
