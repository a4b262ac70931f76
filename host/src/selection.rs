//! Which harness runs a session, decided once at session create from the
//! attached vaults (the seed's "Select A Harness" rules):
//!
//! - at most one attached vault has `sandbox0.managed_agents.role = "llm"`;
//! - with none, the default harness `claude` runs on the operator's default
//!   model endpoint (so applications need not attach one);
//! - `sandbox0.managed_agents.engine` must name a known harness (default `claude`);
//! - `sandbox0.managed_agents.llm_base_url` is optional;
//! - that vault holds exactly one active `static_bearer` credential with no
//!   `mcp_server_url`.

use crate::model::Metadata;
use crate::model::common::Invalid;
use crate::model::sessions::HarnessBinding;
use crate::model::vaults::{ENGINE_KEY, LLM_BASE_URL_KEY, ROLE_KEY};

pub const DEFAULT_ENGINE: &str = "claude";

/// What selection needs to know about one attached vault.
#[derive(Debug, Clone)]
pub struct VaultFacts {
    pub id: String,
    pub metadata: Metadata,
    pub credentials: Vec<CredentialFacts>,
}

#[derive(Debug, Clone)]
pub struct CredentialFacts {
    pub id: String,
    pub auth_type: String,
    pub mcp_server_url: Option<String>,
}

pub fn select(
    vaults: &[VaultFacts],
    known_engines: &[String],
    default_base_url: Option<&str>,
) -> Result<HarnessBinding, Invalid> {
    let llm: Vec<&VaultFacts> =
        vaults.iter().filter(|v| v.metadata.get(ROLE_KEY).is_some_and(|r| r == "llm")).collect();
    let vault = match llm.as_slice() {
        [] => {
            return Ok(HarnessBinding {
                engine: DEFAULT_ENGINE.to_owned(),
                vault_id: None,
                credential_id: None,
                llm_base_url: default_base_url.map(str::to_owned),
                sandbox_driver: None,
            });
        }
        [one] => *one,
        many => {
            let ids: Vec<&str> = many.iter().map(|v| v.id.as_str()).collect();
            return Err(Invalid::new(format!(
                "vault_ids: at most one LLM vault ({ROLE_KEY} = \"llm\") may be attached; got {}",
                ids.join(", ")
            )));
        }
    };
    let engine = vault.metadata.get(ENGINE_KEY).map(String::as_str).unwrap_or(DEFAULT_ENGINE);
    if !known_engines.iter().any(|e| e == engine) {
        return Err(Invalid::new(format!(
            "vault `{}`: {ENGINE_KEY} = \"{engine}\" is not a known harness; known harnesses: {}",
            vault.id,
            known_engines.join(", ")
        )));
    }
    let cred = match vault.credentials.as_slice() {
        [one] => one,
        [] => {
            return Err(Invalid::new(format!(
                "vault `{}`: an LLM vault must hold exactly one active static_bearer credential with the model provider token; it has none",
                vault.id
            )));
        }
        many => {
            return Err(Invalid::new(format!(
                "vault `{}`: an LLM vault must hold exactly one active credential; it has {}",
                vault.id,
                many.len()
            )));
        }
    };
    if cred.auth_type != "static_bearer" {
        return Err(Invalid::new(format!(
            "vault `{}`: the LLM credential `{}` must be of type static_bearer, not {}",
            vault.id, cred.id, cred.auth_type
        )));
    }
    if cred.mcp_server_url.is_some() {
        return Err(Invalid::new(format!(
            "vault `{}`: the LLM credential `{}` must be unbound: do not set mcp_server_url for the model provider token",
            vault.id, cred.id
        )));
    }
    Ok(HarnessBinding {
        engine: engine.to_owned(),
        vault_id: Some(vault.id.clone()),
        credential_id: Some(cred.id.clone()),
        llm_base_url: vault.metadata.get(LLM_BASE_URL_KEY).cloned(),
        sandbox_driver: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> Vec<String> {
        ["claude", "codex", "openai-agents"].map(String::from).to_vec()
    }

    fn vault(id: &str, meta: &[(&str, &str)], creds: &[(&str, Option<&str>)]) -> VaultFacts {
        VaultFacts {
            id: id.into(),
            metadata: meta.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            credentials: creds
                .iter()
                .enumerate()
                .map(|(i, (t, url))| CredentialFacts {
                    id: format!("vcrd_{i}"),
                    auth_type: (*t).into(),
                    mcp_server_url: url.map(Into::into),
                })
                .collect(),
        }
    }

    #[test]
    fn no_llm_vault_defaults_to_claude() {
        let b = select(&[vault("vlt_a", &[], &[])], &engines(), Some("http://up")).unwrap();
        assert_eq!(b.engine, "claude");
        assert_eq!(b.vault_id, None);
        assert_eq!(b.llm_base_url.as_deref(), Some("http://up"));
    }

    #[test]
    fn llm_vault_selects_engine_and_credential() {
        let v = vault(
            "vlt_a",
            &[(ROLE_KEY, "llm"), (ENGINE_KEY, "codex"), (LLM_BASE_URL_KEY, "https://x/v1")],
            &[("static_bearer", None)],
        );
        let b = select(&[v], &engines(), None).unwrap();
        assert_eq!(b.engine, "codex");
        assert_eq!(b.credential_id.as_deref(), Some("vcrd_0"));
        assert_eq!(b.llm_base_url.as_deref(), Some("https://x/v1"));
    }

    #[test]
    fn every_rule_is_enforced() {
        let good = vault("vlt_a", &[(ROLE_KEY, "llm")], &[("static_bearer", None)]);
        assert!(select(&[good.clone(), good.clone()], &engines(), None).is_err());
        let unknown = vault("vlt_b", &[(ROLE_KEY, "llm"), (ENGINE_KEY, "gpt-pilot")], &[("static_bearer", None)]);
        assert!(select(&[unknown], &engines(), None).unwrap_err().to_string().contains("not a known harness"));
        assert!(select(&[vault("v", &[(ROLE_KEY, "llm")], &[])], &engines(), None).is_err());
        let two = vault("v", &[(ROLE_KEY, "llm")], &[("static_bearer", None), ("static_bearer", None)]);
        assert!(select(&[two], &engines(), None).is_err());
        let bound = vault("v", &[(ROLE_KEY, "llm")], &[("static_bearer", Some("https://mcp"))]);
        assert!(select(&[bound], &engines(), None).unwrap_err().to_string().contains("unbound"));
        let oauth = vault("v", &[(ROLE_KEY, "llm")], &[("mcp_oauth", Some("https://mcp"))]);
        assert!(select(&[oauth], &engines(), None).is_err());
    }
}
