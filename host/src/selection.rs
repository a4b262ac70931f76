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
//!
//! A multiagent coordinator's session may attach one LLM vault per harness:
//! the first listed selects the session's (the coordinator's) harness, the
//! others the harnesses its roster agents run on ([`HarnessBinding::delegates`]).
//! Which roster agent needs which is checked by [`check_roster`].

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

/// The session's harness binding. `coordinator`: the session's agent is a
/// multiagent coordinator, which may attach one LLM vault per harness.
pub fn select(
    vaults: &[VaultFacts],
    known_engines: &[String],
    default_base_url: Option<&str>,
    coordinator: bool,
) -> Result<HarnessBinding, Invalid> {
    let llm: Vec<&VaultFacts> =
        vaults.iter().filter(|v| v.metadata.get(ROLE_KEY).is_some_and(|r| r == "llm")).collect();
    let (vault, more) = match llm.as_slice() {
        [] => {
            return Ok(HarnessBinding {
                engine: DEFAULT_ENGINE.to_owned(),
                vault_id: None,
                credential_id: None,
                llm_base_url: default_base_url.map(str::to_owned),
                sandbox_driver: None,
                delegates: Vec::new(),
            });
        }
        [one] => (*one, &[][..]),
        [first, more @ ..] if coordinator => (*first, more),
        many => {
            let ids: Vec<&str> = many.iter().map(|v| v.id.as_str()).collect();
            return Err(Invalid::new(format!(
                "vault_ids: at most one LLM vault ({ROLE_KEY} = \"llm\") may be attached (a multiagent \
                 coordinator's session: one per harness); got {}",
                ids.join(", ")
            )));
        }
    };
    let mut binding = vault_binding(vault, known_engines)?;
    for v in more {
        let b = vault_binding(v, known_engines)?;
        let taken = std::iter::once(&binding).chain(&binding.delegates).find(|o| o.engine == b.engine);
        if let Some(other) = taken {
            return Err(Invalid::new(format!(
                "vault_ids: at most one LLM vault per harness; `{}` and `{}` both select `{}`",
                other.vault_id.as_deref().unwrap_or_default(),
                v.id,
                b.engine
            )));
        }
        binding.delegates.push(b);
    }
    Ok(binding)
}

/// The binding one LLM vault selects.
fn vault_binding(vault: &VaultFacts, known_engines: &[String]) -> Result<HarnessBinding, Invalid> {
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
        delegates: Vec::new(),
    })
}

/// One roster agent as [`check_roster`] sees it: its name, id and the
/// harness its metadata names (`bridle.engine`), if any.
#[derive(Debug, Clone)]
pub struct RosterFacts {
    pub name: String,
    pub id: String,
    pub engine: Option<String>,
}

/// Every roster agent's harness has a binding (the session's own, or one of
/// its extra LLM vaults), and every extra LLM vault serves some roster agent.
pub fn check_roster(binding: &HarnessBinding, roster: &[RosterFacts]) -> Result<(), Invalid> {
    for a in roster {
        let Some(engine) = a.engine.as_deref() else { continue };
        if binding.for_engine(engine).is_none() {
            return Err(Invalid::new(format!(
                "agent: roster agent `{}` (`{}`) runs on the `{engine}` harness (metadata bridle.engine), and this \
                 session has no LLM vault for it; attach a vault with {ENGINE_KEY} = \"{engine}\"",
                a.name, a.id
            )));
        }
    }
    for d in &binding.delegates {
        if !roster.iter().any(|a| a.engine.as_deref() == Some(d.engine.as_str())) {
            return Err(Invalid::new(format!(
                "vault_ids: LLM vault `{}` selects the `{}` harness, which no roster agent runs on \
                 (metadata bridle.engine)",
                d.vault_id.as_deref().unwrap_or_default(),
                d.engine
            )));
        }
    }
    Ok(())
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
        let b = select(&[vault("vlt_a", &[], &[])], &engines(), Some("http://up"), false).unwrap();
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
        let b = select(&[v], &engines(), None, false).unwrap();
        assert_eq!(b.engine, "codex");
        assert_eq!(b.credential_id.as_deref(), Some("vcrd_0"));
        assert_eq!(b.llm_base_url.as_deref(), Some("https://x/v1"));
    }

    #[test]
    fn every_rule_is_enforced() {
        let good = vault("vlt_a", &[(ROLE_KEY, "llm")], &[("static_bearer", None)]);
        assert!(select(&[good.clone(), good.clone()], &engines(), None, false).is_err());
        let unknown = vault("vlt_b", &[(ROLE_KEY, "llm"), (ENGINE_KEY, "gpt-pilot")], &[("static_bearer", None)]);
        assert!(select(&[unknown], &engines(), None, false).unwrap_err().to_string().contains("not a known harness"));
        assert!(select(&[vault("v", &[(ROLE_KEY, "llm")], &[])], &engines(), None, false).is_err());
        let two = vault("v", &[(ROLE_KEY, "llm")], &[("static_bearer", None), ("static_bearer", None)]);
        assert!(select(&[two], &engines(), None, false).is_err());
        let bound = vault("v", &[(ROLE_KEY, "llm")], &[("static_bearer", Some("https://mcp"))]);
        assert!(select(&[bound], &engines(), None, false).unwrap_err().to_string().contains("unbound"));
        let oauth = vault("v", &[(ROLE_KEY, "llm")], &[("mcp_oauth", Some("https://mcp"))]);
        assert!(select(&[oauth], &engines(), None, false).is_err());
    }

    #[test]
    fn a_coordinator_attaches_one_llm_vault_per_harness() {
        let claude = vault("vlt_c", &[(ROLE_KEY, "llm")], &[("static_bearer", None)]);
        let codex = vault(
            "vlt_x",
            &[(ROLE_KEY, "llm"), (ENGINE_KEY, "codex"), (LLM_BASE_URL_KEY, "https://o/v1")],
            &[("static_bearer", None)],
        );
        let b = select(&[claude.clone(), codex.clone()], &engines(), None, true).unwrap();
        assert_eq!((b.engine.as_str(), b.vault_id.as_deref()), ("claude", Some("vlt_c")));
        let x = b.for_engine("codex").unwrap();
        assert_eq!((x.vault_id.as_deref(), x.llm_base_url.as_deref()), (Some("vlt_x"), Some("https://o/v1")));
        assert_eq!(b.for_engine("claude").unwrap().vault_id.as_deref(), Some("vlt_c"));
        assert!(b.for_engine("openai-agents").is_none());
        // The first listed is the session's own.
        assert_eq!(select(&[codex.clone(), claude.clone()], &engines(), None, true).unwrap().engine, "codex");
        // Not a coordinator: today's rule.
        let err = select(&[claude.clone(), codex.clone()], &engines(), None, false).unwrap_err().to_string();
        assert!(err.contains("at most one LLM vault"), "{err}");
        // One per harness, and each is checked like the first.
        let claude2 = vault("vlt_c2", &[(ROLE_KEY, "llm")], &[("static_bearer", None)]);
        let err = select(&[claude.clone(), codex.clone(), claude2], &engines(), None, true).unwrap_err().to_string();
        assert!(err.contains("`vlt_c` and `vlt_c2` both select `claude`"), "{err}");
        let empty = vault("vlt_e", &[(ROLE_KEY, "llm"), (ENGINE_KEY, "codex")], &[]);
        assert!(select(&[claude, empty], &engines(), None, true).unwrap_err().to_string().contains("vlt_e"));
    }

    #[test]
    fn every_roster_harness_needs_a_vault_and_every_vault_a_roster_agent() {
        let claude = vault("vlt_c", &[(ROLE_KEY, "llm")], &[("static_bearer", None)]);
        let codex = vault("vlt_x", &[(ROLE_KEY, "llm"), (ENGINE_KEY, "codex")], &[("static_bearer", None)]);
        let agent = |engine: Option<&str>| RosterFacts {
            name: "helper".into(),
            id: "agent_1".into(),
            engine: engine.map(Into::into),
        };
        let both = select(&[claude.clone(), codex], &engines(), None, true).unwrap();
        let one = select(&[claude], &engines(), None, true).unwrap();
        let cases: [(&HarnessBinding, Vec<RosterFacts>, Result<(), &str>); 6] = [
            (&both, vec![agent(Some("codex"))], Ok(())),
            (&both, vec![agent(None), agent(Some("codex"))], Ok(())),
            (&one, vec![agent(None), agent(Some("claude"))], Ok(())),
            (&one, vec![agent(Some("codex"))], Err("roster agent `helper` (`agent_1`) runs on the `codex` harness")),
            (&both, vec![agent(None)], Err("LLM vault `vlt_x` selects the `codex` harness, which no roster agent")),
            (&one, vec![agent(Some("openai-agents"))], Err("no LLM vault for it")),
        ];
        for (binding, roster, want) in cases {
            let got = check_roster(binding, &roster).map_err(|e| e.to_string());
            match want {
                Ok(()) => assert!(got.is_ok(), "{roster:?}: {got:?}"),
                Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{roster:?}: {got:?}"),
            }
        }
    }
}
