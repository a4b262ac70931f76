//! A session's environment-variable secrets: the `environment_variable`
//! credentials of its vaults, opened for the egress gateway, each given a
//! fresh placeholder that is all the sandbox ever sees.

use bridle_sandbox::{EnvSecret, Secret, SecretHosts};
use serde::Deserialize;
use serde_json::Value;

use super::Sessions;
use crate::model::vaults::{Credential, CredentialSecrets, EnvNetworking, InjectionLocation};

/// The public half of an `environment_variable` credential's `auth`.
#[derive(Deserialize)]
struct EnvAuth {
    secret_name: String,
    networking: EnvNetworking,
    injection_location: InjectionLocation,
}

/// A placeholder: letters, digits and underscores only, so that shells,
/// URL and JSON encoders carry it unchanged.
pub fn placeholder() -> String {
    format!("bridle_placeholder_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The gateway's view of one credential (`auth` as stored, its opened
/// secret value).
pub fn env_secret(
    credential_id: &str,
    auth: &Value,
    value: Option<String>,
    placeholder: String,
) -> Result<EnvSecret, String> {
    let a: EnvAuth = serde_json::from_value(auth.clone())
        .map_err(|e| format!("credential `{credential_id}`: its stored auth is unreadable: {e}"))?;
    let value = value.ok_or_else(|| format!("credential `{credential_id}` has no secret_value"))?;
    Ok(EnvSecret {
        name: a.secret_name,
        placeholder,
        value: Secret::new(value),
        header: a.injection_location.header,
        body: a.injection_location.body,
        hosts: match a.networking {
            EnvNetworking::Unrestricted => SecretHosts::Any,
            EnvNetworking::Limited { allowed_hosts } => SecretHosts::Only(allowed_hosts),
        },
    })
}

/// Two credentials of the session's vaults naming the same variable.
pub fn check_unique<'a>(named: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), String> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (cred, name) in named {
        if let Some((other, _)) = seen.iter().find(|(_, n)| *n == name) {
            return Err(format!(
                "credentials `{other}` and `{cred}` both set the environment variable `{name}`; a session's vaults may \
                 hold one environment_variable credential per secret_name"
            ));
        }
        seen.push((cred, name));
    }
    Ok(())
}

/// The session's environment-variable secrets, read from its vaults now
/// (credentials added or rotated since create are used from the next start).
pub(crate) async fn load(host: &Sessions, session_id: &str) -> Result<Vec<EnvSecret>, String> {
    let row = host
        .store
        .get_session(session_id)
        .await
        .map_err(|e| format!("reading the session failed: {e}"))?
        .ok_or_else(|| format!("session `{session_id}` was deleted"))?;
    let mut out: Vec<(String, EnvSecret)> = Vec::new();
    for vault_id in &row.session.vault_ids {
        let creds = host
            .store
            .active_credentials::<Credential>(vault_id)
            .await
            .map_err(|e| format!("reading vault `{vault_id}` failed: {e}"))?;
        for c in creds {
            if c.doc.auth.get("type").and_then(Value::as_str) != Some("environment_variable") {
                continue;
            }
            let opened: CredentialSecrets = host
                .secrets
                .open(c.sealed.as_deref().unwrap_or_default())
                .ok()
                .and_then(|raw| serde_json::from_slice(&raw).ok())
                .ok_or_else(|| format!("credential `{}` cannot be decrypted with this server's key", c.doc.id))?;
            let s = env_secret(&c.doc.id, &c.doc.auth, opened.secret_value, placeholder())?;
            out.push((c.doc.id, s));
        }
    }
    check_unique(out.iter().map(|(id, s)| (id.as_str(), s.name.as_str())))?;
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_become_gateway_secrets() {
        let limited = json!({"type": "environment_variable", "secret_name": "API_TOKEN",
            "networking": {"type": "limited", "allowed_hosts": ["api.example.com", "*.example.org"]},
            "injection_location": {"header": true, "body": false}});
        let s = env_secret("vcrd_1", &limited, Some("v".into()), "ph".into()).unwrap();
        assert_eq!(s.name, "API_TOKEN");
        assert_eq!(s.value.expose(), "v");
        assert_eq!(s.placeholder, "ph");
        assert!(s.header && !s.body);
        assert_eq!(s.hosts, SecretHosts::Only(vec!["api.example.com".into(), "*.example.org".into()]));
        let open = json!({"type": "environment_variable", "secret_name": "K",
            "networking": {"type": "unrestricted"}, "injection_location": {"header": false, "body": true}});
        let s = env_secret("vcrd_2", &open, Some("v".into()), "ph".into()).unwrap();
        assert_eq!(s.hosts, SecretHosts::Any);
        assert!(!s.header && s.body);
        let err = env_secret("vcrd_3", &open, None, "ph".into()).unwrap_err();
        assert!(err.contains("vcrd_3"), "{err}");
        assert!(env_secret("vcrd_4", &json!({"type": "environment_variable"}), Some("v".into()), "p".into()).is_err());
    }

    #[test]
    fn placeholders_are_fresh_and_plain() {
        let (a, b) = (placeholder(), placeholder());
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'), "{a}");
    }

    #[test]
    fn one_credential_per_variable() {
        assert_eq!(check_unique([("vcrd_a", "A"), ("vcrd_b", "B")]), Ok(()));
        let err = check_unique([("vcrd_a", "A"), ("vcrd_b", "B"), ("vcrd_c", "A")]).unwrap_err();
        assert!(err.contains("`vcrd_a`") && err.contains("`vcrd_c`") && err.contains("`A`"), "{err}");
    }
}
