//! Agents: `POST/GET /v1/agents`, versions, archive.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::common::Invalid;
use super::common::{Metadata, MetadataPatch, Patch, Validate, check_len, check_metadata};

/// `model`: a model id string or a config object.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModelParam {
    Id(String),
    Config(ModelConfigParams),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfigParams {
    pub id: String,
    #[serde(default)]
    pub effort: Option<EffortParam>,
    #[serde(default)]
    pub inference_geo: Option<String>,
    #[serde(default)]
    pub speed: Option<Speed>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EffortParam {
    Level(Effort),
    Object {
        #[serde(rename = "type")]
        kind: Effort,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Speed {
    Standard,
    Fast,
}

/// The resolved model config returned on agents: never a bare string.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelConfig {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub effort: Option<EffortObject>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inference_geo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub speed: Option<Speed>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EffortObject {
    #[serde(rename = "type")]
    pub kind: Effort,
}

impl ModelParam {
    pub fn resolve(&self) -> Result<ModelConfig, Invalid> {
        let cfg = match self {
            ModelParam::Id(id) => ModelConfig { id: id.clone(), effort: None, inference_geo: None, speed: None },
            ModelParam::Config(c) => ModelConfig {
                id: c.id.clone(),
                effort: c.effort.as_ref().map(|e| EffortObject {
                    kind: match e {
                        EffortParam::Level(l) => *l,
                        EffortParam::Object { kind } => *kind,
                    },
                }),
                inference_geo: c.inference_geo.clone(),
                speed: c.speed,
            },
        };
        check_len("model", &cfg.id, 1, 256)?;
        Ok(cfg)
    }
}

/// The built-in agent toolset's tool names.
pub const TOOLSET_TOOLS: [&str; 8] = ["bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search"];

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ToolParam {
    #[serde(rename = "agent_toolset_20260401")]
    AgentToolset {
        #[serde(default)]
        configs: Option<Vec<ToolConfigParam>>,
        #[serde(default)]
        default_config: Option<DefaultConfigParam>,
    },
    #[serde(rename = "mcp_toolset")]
    McpToolset {
        mcp_server_name: String,
        #[serde(default)]
        configs: Option<Vec<ToolConfigParam>>,
        #[serde(default)]
        default_config: Option<DefaultConfigParam>,
    },
    #[serde(rename = "custom")]
    Custom { name: String, description: String, input_schema: InputSchema },
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolConfigParam {
    pub name: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    // web_fetch / web_search options are passed through as given.
    #[serde(default)]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default)]
    pub blocked_domains: Option<Vec<String>>,
    #[serde(default)]
    pub max_content_tokens: Option<u32>,
    #[serde(default)]
    pub user_location: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultConfigParam {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PermissionPolicy {
    AlwaysAllow,
    AlwaysAsk,
    /// Each call judged by the plugin SDK's documented rule
    /// (`bridle_harness_sdk::policy::judge`).
    Auto,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InputSchema {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: McpServerType,
    pub url: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum McpServerType {
    Url,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillParam {
    #[serde(rename = "type")]
    pub kind: SkillType,
    pub skill_id: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SkillType {
    Anthropic,
    Custom,
}

/// Resolve tools into the response form (every default filled in) and
/// check them against the MCP servers.
pub fn resolve_tools(tools: &[ToolParam], mcp_servers: &[McpServer]) -> Result<Vec<Value>, Invalid> {
    if tools.len() > 128 {
        return Err(Invalid::new("tools: at most 128 tools are allowed"));
    }
    let mut out = Vec::with_capacity(tools.len());
    let mut custom_names = std::collections::BTreeSet::new();
    for (i, t) in tools.iter().enumerate() {
        match t {
            ToolParam::AgentToolset { configs, default_config } => {
                let def = resolve_default(default_config.as_ref(), PermissionPolicy::AlwaysAllow);
                let configs = resolve_configs(&format!("tools[{i}]"), configs.as_deref(), &def, Some(&TOOLSET_TOOLS))?;
                out.push(json!({"type": "agent_toolset_20260401", "configs": configs, "default_config": def}));
            }
            ToolParam::McpToolset { mcp_server_name, configs, default_config } => {
                check_len(&format!("tools[{i}].mcp_server_name"), mcp_server_name, 1, 255)?;
                if !mcp_servers.iter().any(|s| &s.name == mcp_server_name) {
                    return Err(Invalid::new(format!(
                        "tools[{i}].mcp_server_name: `{mcp_server_name}` is not declared in mcp_servers"
                    )));
                }
                let def = resolve_default(default_config.as_ref(), PermissionPolicy::AlwaysAsk);
                let configs = resolve_configs(&format!("tools[{i}]"), configs.as_deref(), &def, None)?;
                out.push(json!({"type": "mcp_toolset", "mcp_server_name": mcp_server_name, "configs": configs, "default_config": def}));
            }
            ToolParam::Custom { name, description, input_schema } => {
                check_len(&format!("tools[{i}].name"), name, 1, 128)?;
                if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    return Err(Invalid::new(format!(
                        "tools[{i}].name: `{name}` may contain only letters, digits, underscores and hyphens"
                    )));
                }
                if !custom_names.insert(name.clone()) {
                    return Err(Invalid::new(format!("tools[{i}].name: duplicate custom tool `{name}`")));
                }
                if input_schema.kind != "object" {
                    return Err(Invalid::new(format!("tools[{i}].input_schema.type must be \"object\"")));
                }
                out.push(
                    json!({"type": "custom", "name": name, "description": description, "input_schema": input_schema}),
                );
            }
        }
    }
    for s in mcp_servers {
        let referenced = tools
            .iter()
            .any(|t| matches!(t, ToolParam::McpToolset { mcp_server_name, .. } if mcp_server_name == &s.name));
        if !referenced {
            return Err(Invalid::new(format!(
                "mcp_servers: server `{}` is not referenced by any mcp_toolset in tools",
                s.name
            )));
        }
    }
    Ok(out)
}

fn resolve_default(d: Option<&DefaultConfigParam>, policy: PermissionPolicy) -> Value {
    json!({
        "enabled": d.and_then(|d| d.enabled).unwrap_or(true),
        "permission_policy": d.and_then(|d| d.permission_policy).unwrap_or(policy),
    })
}

fn resolve_configs(
    field: &str,
    configs: Option<&[ToolConfigParam]>,
    def: &Value,
    allowed: Option<&[&str]>,
) -> Result<Vec<Value>, Invalid> {
    let mut out = Vec::new();
    for (j, c) in configs.unwrap_or_default().iter().enumerate() {
        if let Some(allowed) = allowed
            && !allowed.contains(&c.name.as_str())
        {
            return Err(Invalid::new(format!(
                "{field}.configs[{j}].name: unknown tool `{}`; expected one of {}",
                c.name,
                allowed.join(", ")
            )));
        }
        if c.allowed_domains.is_some() && c.blocked_domains.is_some() {
            return Err(Invalid::new(format!(
                "{field}.configs[{j}]: allowed_domains and blocked_domains cannot be combined"
            )));
        }
        let mut v = json!({
            "name": c.name,
            "enabled": c.enabled.unwrap_or(def["enabled"].as_bool().unwrap_or(true)),
            "permission_policy": c.permission_policy.map(|p| json!(p)).unwrap_or_else(|| def["permission_policy"].clone()),
        });
        if allowed.is_some() {
            v["type"] = json!(c.name);
        }
        for (k, val) in [
            ("allowed_domains", c.allowed_domains.as_ref().map(|d| json!(d))),
            ("blocked_domains", c.blocked_domains.as_ref().map(|d| json!(d))),
            ("max_content_tokens", c.max_content_tokens.map(|n| json!(n))),
            ("user_location", c.user_location.clone()),
        ] {
            if let Some(val) = val {
                v[k] = val;
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// An agent's reference to a custom skill, checked for shape; the API pins
/// its version (`latest` or none: the skill's latest) against the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillRef {
    pub skill_id: String,
    pub version: Option<String>,
}

pub fn resolve_skills(skills: &[SkillParam]) -> Result<Vec<SkillRef>, Invalid> {
    if skills.len() > 64 {
        return Err(Invalid::new("skills: at most 64 skills are allowed"));
    }
    let mut out: Vec<SkillRef> = Vec::with_capacity(skills.len());
    for (i, s) in skills.iter().enumerate() {
        if matches!(s.kind, SkillType::Anthropic) {
            return Err(Invalid::new(format!(
                "skills[{i}]: Anthropic's prebuilt skills (`{}`) cannot be fetched by this server; upload the skill \
                 with the Skills API and reference it as `{{\"type\": \"custom\", \"skill_id\": ...}}`",
                s.skill_id
            )));
        }
        if out.iter().any(|r| r.skill_id == s.skill_id) {
            return Err(Invalid::new(format!("skills[{i}]: skill `{}` is listed twice", s.skill_id)));
        }
        let version = s.version.clone().filter(|v| v != "latest");
        out.push(SkillRef { skill_id: s.skill_id.clone(), version });
    }
    Ok(out)
}

pub fn check_mcp_servers(servers: &[McpServer]) -> Result<(), Invalid> {
    if servers.len() > 20 {
        return Err(Invalid::new("mcp_servers: at most 20 servers are allowed"));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, s) in servers.iter().enumerate() {
        super::mcp::check_name(&format!("mcp_servers[{i}].name"), &s.name)?;
        if !names.insert(&s.name) {
            return Err(Invalid::new(format!("mcp_servers[{i}].name: duplicate server name `{}`", s.name)));
        }
        super::mcp::check_url(&format!("mcp_servers[{i}].url"), &s.url)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentCreate {
    pub name: String,
    pub model: ModelParam,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<ToolParam>>,
    #[serde(default)]
    pub mcp_servers: Option<Vec<McpServer>>,
    #[serde(default)]
    pub skills: Option<Vec<SkillParam>>,
    #[serde(default)]
    pub multiagent: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataSchema>)]
    pub metadata: Option<Metadata>,
}

impl Validate for AgentCreate {
    fn validate(&self) -> Result<(), Invalid> {
        check_len("name", &self.name, 1, 256)?;
        if let Some(d) = &self.description {
            check_len("description", d, 0, 2048)?;
        }
        if let Some(s) = &self.system {
            check_len("system", s, 0, 100_000)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
            super::vaults::check_not_reserved("agent", m.keys())?;
        }
        if let Some(m) = &self.multiagent {
            super::multiagent::parse(m)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model: Option<ModelParam>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<String>)]
    pub system: Patch<String>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<Vec<ToolParam>>)]
    pub tools: Patch<Vec<ToolParam>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<Vec<McpServer>>)]
    pub mcp_servers: Patch<Vec<McpServer>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<Vec<SkillParam>>)]
    pub skills: Patch<Vec<SkillParam>>,
    #[serde(default, with = "::serde_with::rust::double_option")]
    #[schema(value_type = Option<Object>)]
    pub multiagent: Patch<Value>,
    #[serde(default)]
    #[schema(value_type = Option<super::common::MetadataPatchSchema>)]
    pub metadata: Option<MetadataPatch>,
    #[serde(default)]
    pub version: Option<i64>,
}

/// An agent as returned by the API (one version of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub id: String,
    #[schema(required)]
    pub archived_at: Option<String>,
    pub created_at: String,
    #[schema(required)]
    pub description: Option<String>,
    #[schema(value_type = Vec<McpServer>)]
    pub mcp_servers: Vec<Value>,
    #[schema(value_type = super::common::MetadataSchema)]
    pub metadata: Metadata,
    #[schema(value_type = ModelConfig)]
    pub model: Value,
    #[schema(required)]
    pub multiagent: Option<Value>,
    pub name: String,
    pub skills: Vec<Value>,
    #[schema(required)]
    pub system: Option<String>,
    pub tools: Vec<Value>,
    #[serde(rename = "type")]
    pub kind: String,
    pub updated_at: String,
    pub version: i64,
}

impl Agent {
    /// Whether two versions differ in anything a user set (not timestamps).
    pub fn same_definition(&self, other: &Agent) -> bool {
        self.description == other.description
            && self.mcp_servers == other.mcp_servers
            && self.metadata == other.metadata
            && self.model == other.model
            && self.multiagent == other.multiagent
            && self.name == other.name
            && self.skills == other.skills
            && self.system == other.system
            && self.tools == other.tools
    }

    /// The snapshot a session carries (`BetaManagedAgentsSessionAgent`).
    pub fn session_snapshot(&self) -> Value {
        json!({
            "id": self.id,
            "description": self.description,
            "mcp_servers": self.mcp_servers,
            "model": self.model,
            "multiagent": self.multiagent,
            "name": self.name,
            "skills": self.skills,
            "system": self.system,
            "tools": self.tools,
            "type": "agent",
            "version": self.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolset_defaults_are_filled_in() {
        let tools: Vec<ToolParam> = serde_json::from_value(json!([
            {"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}
        ]))
        .unwrap();
        let r = resolve_tools(&tools, &[]).unwrap();
        assert_eq!(r[0]["default_config"], json!({"enabled": true, "permission_policy": {"type": "always_allow"}}));
        assert_eq!(r[0]["configs"][0]["permission_policy"], json!({"type": "always_ask"}));
        assert_eq!(r[0]["configs"][0]["enabled"], json!(true));
    }

    #[test]
    fn unknown_toolset_tool_and_unreferenced_server_are_rejected() {
        let tools: Vec<ToolParam> =
            serde_json::from_value(json!([{"type": "agent_toolset_20260401", "configs": [{"name": "rm"}]}])).unwrap();
        assert!(resolve_tools(&tools, &[]).is_err());
        let servers: Vec<McpServer> =
            serde_json::from_value(json!([{"name": "gh", "type": "url", "url": "https://x"}])).unwrap();
        assert!(resolve_tools(&[], &servers).is_err());
    }

    #[test]
    fn model_string_resolves_to_object() {
        let m: ModelParam = serde_json::from_value(json!("claude-sonnet-4-6")).unwrap();
        assert_eq!(serde_json::to_value(m.resolve().unwrap()).unwrap(), json!({"id": "claude-sonnet-4-6"}));
        let m: ModelParam = serde_json::from_value(json!({"id": "x", "effort": "high"})).unwrap();
        assert_eq!(serde_json::to_value(m.resolve().unwrap()).unwrap(), json!({"id": "x", "effort": {"type": "high"}}));
    }
}
