//! Vaults and their credentials. Secret fields exist only in the params
//! types; the response types have no place for them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::common::Invalid;
use super::common::{Metadata, MetadataPatch, Patch, Validate, check_len, check_metadata};

/// Vault metadata keys that select a session's harness (see `selection`).
pub const ROLE_KEY: &str = "sandbox0.managed_agents.role";
pub const ENGINE_KEY: &str = "sandbox0.managed_agents.engine";
pub const LLM_BASE_URL_KEY: &str = "sandbox0.managed_agents.llm_base_url";
pub const RESERVED_PREFIX: &str = "sandbox0.managed_agents.";

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultCreate {
    pub display_name: String,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataSchema>)]
    pub metadata: Option<Metadata>,
}

impl Validate for VaultCreate {
    fn validate(&self) -> Result<(), Invalid> {
        check_len("display_name", &self.display_name, 1, 255)?;
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
            check_vault_reserved(m)?;
        }
        Ok(())
    }
}

/// Reserved `sandbox0.managed_agents.*` keys select a session's harness and
/// mean something on vault metadata only: anywhere else (`object` is an
/// agent, environment, credential or session) they are refused rather than
/// stored and ignored.
///
/// Bridle's environment keys (`environment_keys`) likewise: on an agent,
/// credential or session they are refused.
pub fn check_not_reserved<'a>(object: &str, keys: impl IntoIterator<Item = &'a String>) -> Result<(), Invalid> {
    for k in keys {
        if k.starts_with(RESERVED_PREFIX) {
            return Err(Invalid::new(format!(
                "metadata.{k}: reserved `{RESERVED_PREFIX}*` keys are only supported on vault metadata, not on \
                 {object} metadata; select the harness by attaching an LLM vault"
            )));
        }
        let env_key =
            [super::environment_keys::DISK_BYTES_KEY, super::environment_keys::DRIVER_KEY].contains(&k.as_str());
        if env_key && object != "environment" {
            return Err(Invalid::new(format!(
                "metadata.{k}: only supported on environment metadata, not on {object} metadata; set it on the \
                 session's environment"
            )));
        }
    }
    Ok(())
}

/// The reserved keys must make sense when present, so a typo fails at
/// vault create instead of at the first session.
pub fn check_vault_reserved(m: &Metadata) -> Result<(), Invalid> {
    for (k, v) in m {
        if let Some(name) = k.strip_prefix(RESERVED_PREFIX) {
            match name {
                "role" | "engine" => {}
                "llm_base_url" => {
                    if !(v.starts_with("https://") || v.starts_with("http://")) {
                        return Err(Invalid::new(format!("metadata.{k}: must be an http(s) URL, got `{v}`")));
                    }
                }
                _ => {
                    return Err(Invalid::new(format!(
                        "metadata.{k}: unknown reserved key; known keys are {ROLE_KEY}, {ENGINE_KEY}, {LLM_BASE_URL_KEY}"
                    )));
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultUpdate {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataPatchSchema>)]
    pub metadata: Option<MetadataPatch>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vault {
    pub id: String,
    #[schema(required)]
    pub archived_at: Option<String>,
    pub created_at: String,
    pub display_name: String,
    #[schema(value_type = super::common::MetadataSchema)]
    pub metadata: Metadata,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthCreate {
    StaticBearer {
        token: String,
        #[serde(default)]
        mcp_server_url: Option<String>,
    },
    McpOauth {
        access_token: String,
        mcp_server_url: String,
        #[serde(default)]
        expires_at: Option<String>,
        #[serde(default)]
        refresh: Option<RefreshCreate>,
    },
    EnvironmentVariable {
        secret_name: String,
        secret_value: String,
        networking: EnvNetworking,
        #[serde(default)]
        injection_location: Option<InjectionLocation>,
    },
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshCreate {
    pub client_id: String,
    pub refresh_token: String,
    pub token_endpoint: String,
    pub token_endpoint_auth: TokenEndpointAuth,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenEndpointAuth {
    None {},
    ClientSecretBasic { client_secret: String },
    ClientSecretPost { client_secret: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnvNetworking {
    Unrestricted,
    Limited { allowed_hosts: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectionLocation {
    #[serde(default)]
    pub body: bool,
    #[serde(default)]
    pub header: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthUpdate {
    StaticBearer {
        #[serde(default)]
        token: Option<String>,
    },
    McpOauth {
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default, with = "::serde_with::rust::double_option")]
        #[schema(value_type = Option<String>)]
        expires_at: Patch<String>,
        #[serde(default)]
        refresh: Option<Value>,
    },
    EnvironmentVariable {
        #[serde(default)]
        secret_value: Option<String>,
        #[serde(default)]
        networking: Option<EnvNetworking>,
        #[serde(default)]
        injection_location: Option<InjectionLocationUpdate>,
    },
}

/// A location left out keeps its current setting.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectionLocationUpdate {
    #[serde(default)]
    pub body: Option<bool>,
    #[serde(default)]
    pub header: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialCreate {
    pub auth: AuthCreate,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataSchema>)]
    pub metadata: Option<Metadata>,
}

impl Validate for CredentialCreate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(d) = &self.display_name {
            check_len("display_name", d, 0, 255)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
            check_not_reserved("credential", m.keys())?;
        }
        match &self.auth {
            AuthCreate::StaticBearer { token, mcp_server_url } => {
                check_len("auth.token", token, 1, 8192)?;
                if let Some(u) = mcp_server_url {
                    check_url("auth.mcp_server_url", u)?;
                }
            }
            AuthCreate::McpOauth { access_token, mcp_server_url, .. } => {
                check_len("auth.access_token", access_token, 1, 8192)?;
                check_url("auth.mcp_server_url", mcp_server_url)?;
            }
            AuthCreate::EnvironmentVariable { secret_name, secret_value, networking, injection_location } => {
                check_secret_name(secret_name)?;
                check_len("auth.secret_value", secret_value, 1, 65_536)?;
                check_env_networking(networking)?;
                if let Some(l) = injection_location {
                    check_injection_location(l)?;
                }
            }
        }
        Ok(())
    }
}

/// Variables the sandbox sets itself (its proxy, CA bundle and basic
/// environment): a secret of that name would break it.
const RESERVED_VARIABLES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
];

pub fn check_secret_name(name: &str) -> Result<(), Invalid> {
    check_len("auth.secret_name", name, 1, 255)?;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || name.as_bytes()[0].is_ascii_digit() {
        return Err(Invalid::new(
            "auth.secret_name: must be an environment variable name (letters, digits, underscores; not starting with a digit)",
        ));
    }
    if RESERVED_VARIABLES.iter().any(|r| r.eq_ignore_ascii_case(name)) || name.starts_with("BRIDLE_") {
        return Err(Invalid::new(format!(
            "auth.secret_name: `{name}` is set by the sandbox itself (its proxy, CA bundle or basic environment); \
             choose another name"
        )));
    }
    Ok(())
}

/// `allowed_hosts`: one to sixteen distinct bare host names, IPv4
/// addresses or `*.` wildcards; no scheme, port, path or IPv6 address.
pub fn check_env_networking(n: &EnvNetworking) -> Result<(), Invalid> {
    let EnvNetworking::Limited { allowed_hosts } = n else { return Ok(()) };
    if allowed_hosts.is_empty() || allowed_hosts.len() > 16 {
        return Err(Invalid::new(format!(
            "auth.networking.allowed_hosts: between 1 and 16 hosts are allowed, got {} (use networking type \
             `unrestricted` to substitute on every host the environment allows)",
            allowed_hosts.len()
        )));
    }
    for (i, h) in allowed_hosts.iter().enumerate() {
        let field = format!("auth.networking.allowed_hosts[{i}]");
        if allowed_hosts[..i].iter().any(|o| o.eq_ignore_ascii_case(h)) {
            return Err(Invalid::new(format!("{field}: `{h}` is listed twice")));
        }
        let name = h.strip_prefix("*.").unwrap_or(h);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let is_ipv4 = name.parse::<std::net::Ipv4Addr>().is_ok();
        let is_name = name.len() <= 253
            && name.split('.').all(label_ok)
            && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !(is_name || (is_ipv4 && !h.starts_with("*."))) {
            return Err(Invalid::new(format!(
                "{field}: `{h}` is not a bare host name, an IPv4 address or a `*.` wildcard (URLs, ports, paths and \
                 IPv6 addresses are not accepted)"
            )));
        }
    }
    Ok(())
}

/// At least one place to substitute in.
pub fn check_injection_location(l: &InjectionLocation) -> Result<(), Invalid> {
    if !l.header && !l.body {
        return Err(Invalid::new("auth.injection_location: at least one of `header` and `body` must be true"));
    }
    Ok(())
}

fn check_url(field: &str, u: &str) -> Result<(), Invalid> {
    if u.starts_with("https://") || u.starts_with("http://") {
        check_len(field, u, 8, 2048)
    } else {
        Err(Invalid::new(format!("{field}: must be an http(s) URL")))
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialUpdate {
    #[serde(default)]
    pub auth: Option<AuthUpdate>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<String>)]
    pub display_name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataPatchSchema>)]
    pub metadata: Option<MetadataPatch>,
}

/// A credential as returned: `auth` holds only the non-secret fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub id: String,
    #[schema(required)]
    pub archived_at: Option<String>,
    pub auth: Value,
    pub created_at: String,
    #[schema(required)]
    pub display_name: Option<String>,
    #[schema(value_type = super::common::MetadataSchema)]
    pub metadata: Metadata,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
    pub vault_id: String,
}

/// What is sealed at rest for a credential (the secret half of `auth`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CredentialSecrets {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret_value: Option<String>,
}

impl super::common::Archivable for Vault {
    fn stamp_archived(&mut self, at: String) {
        self.updated_at.clone_from(&at);
        self.archived_at = Some(at);
    }
}

impl super::common::Archivable for Credential {
    fn stamp_archived(&mut self, at: String) {
        self.updated_at.clone_from(&at);
        self.archived_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;
    use crate::model::agents::AgentCreate;
    use crate::model::common::patch_sets;
    use crate::model::environments::EnvironmentCreate;
    use crate::model::sessions::SessionCreate;

    fn validate<T: DeserializeOwned + Validate>(body: Value) -> Result<(), Invalid> {
        serde_json::from_value::<T>(body).expect("a well-formed body").validate()
    }

    /// Every object that takes metadata, on create: reserved keys are a 400 naming the key and
    /// where it belongs, except on vaults.
    #[test]
    fn reserved_keys_belong_on_vaults_only() {
        type Check = fn(Value) -> Result<(), Invalid>;
        let objects: [(&str, Check, Value); 5] = [
            ("agent", validate::<AgentCreate>, json!({"name": "a", "model": "m"})),
            ("environment", validate::<EnvironmentCreate>, json!({"name": "e"})),
            ("credential", validate::<CredentialCreate>, json!({"auth": {"type": "static_bearer", "token": "t"}})),
            ("session", validate::<SessionCreate>, json!({"agent": "agent_1", "environment_id": "env_1"})),
            ("vault", validate::<VaultCreate>, json!({"display_name": "v"})),
        ];
        for (object, check, body) in objects {
            for (key, value) in
                [(ROLE_KEY, "llm"), (ENGINE_KEY, "codex"), (LLM_BASE_URL_KEY, "https://gw.example.com/v1")]
            {
                let mut body = body.clone();
                body["metadata"] = json!({"team": "x", key: value});
                let got = check(body);
                if object == "vault" {
                    assert_eq!(got, Ok(()), "{object} {key}");
                } else {
                    let Invalid(msg) = got.expect_err(key);
                    assert!(msg.contains(&format!("metadata.{key}")), "{object}: {msg}");
                    assert!(msg.contains("only supported on vault metadata"), "{object}: {msg}");
                    assert!(msg.contains(&format!("not on {object} metadata")), "{object}: {msg}");
                }
            }
            let mut plain = body.clone();
            plain["metadata"] = json!({"team": "x", "sandbox0.other": "y"});
            assert_eq!(check(plain), Ok(()), "{object}: only the reserved prefix is refused");
        }
    }

    /// Updates: a patch that sets a reserved key is refused; one that deletes it is not.
    #[test]
    fn reserved_keys_in_patches() {
        for (patch, refused) in [
            (json!({ENGINE_KEY: "codex"}), true),
            (json!({"team": "x", ROLE_KEY: "llm"}), true),
            (json!({ENGINE_KEY: null}), false),
            (json!({ENGINE_KEY: ""}), false),
            (json!({"team": "x"}), false),
        ] {
            let patch: MetadataPatch = serde_json::from_value(patch.clone()).unwrap();
            for object in ["agent", "environment", "credential", "session"] {
                assert_eq!(check_not_reserved(object, patch_sets(&patch)).is_err(), refused, "{object} {patch:?}");
            }
        }
    }

    /// `allowed_hosts` entries, names and injection locations of `environment_variable` credentials.
    #[test]
    fn environment_variable_rules() {
        let limited = |h: &[&str]| EnvNetworking::Limited { allowed_hosts: h.iter().map(|s| s.to_string()).collect() };
        for (hosts, ok) in [
            (&["api.example.com"][..], true),
            (&["*.example.com", "192.0.2.1", "localhost"][..], true),
            (&[][..], false),
            (&["https://api.example.com"][..], false),
            (&["api.example.com:443"][..], false),
            (&["api.example.com/v1"][..], false),
            (&["::1"][..], false),
            (&["[::1]"][..], false),
            (&["*.192.0.2.1"][..], false),
            (&["*.*.example.com"][..], false),
            (&["-bad.example.com"][..], false),
            (&["999.1.1.1"][..], false),
            (&["a.example.com", "A.example.com"][..], false),
        ] {
            assert_eq!(check_env_networking(&limited(hosts)).is_ok(), ok, "{hosts:?}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("h{i}.example.com")).collect();
        assert!(check_env_networking(&EnvNetworking::Limited { allowed_hosts: many }).is_err());
        assert!(check_env_networking(&EnvNetworking::Unrestricted).is_ok());
        for (name, ok) in [
            ("SERVICE_TOKEN", true),
            ("_x1", true),
            ("1X", false),
            ("A-B", false),
            ("", false),
            ("PATH", false),
            ("https_proxy", false),
            ("NODE_EXTRA_CA_CERTS", false),
            ("BRIDLE_ANYTHING", false),
        ] {
            assert_eq!(check_secret_name(name).is_ok(), ok, "{name}");
        }
        assert!(check_injection_location(&InjectionLocation { header: false, body: false }).is_err());
        assert!(check_injection_location(&InjectionLocation { header: false, body: true }).is_ok());
    }

    #[test]
    fn vault_reserved_values_are_checked() {
        let meta = |k: &str, v: &str| Metadata::from([(k.to_string(), v.to_string())]);
        assert_eq!(check_vault_reserved(&meta(LLM_BASE_URL_KEY, "https://gw.example.com/v1")), Ok(()));
        assert!(check_vault_reserved(&meta(LLM_BASE_URL_KEY, "gw.example.com/v1")).is_err());
        let Invalid(msg) = check_vault_reserved(&meta("sandbox0.managed_agents.engin", "codex")).unwrap_err();
        assert!(msg.contains("unknown reserved key"), "{msg}");
    }
}
