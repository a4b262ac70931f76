//! The MCP routes of a session's sandbox: each server the agent declares,
//! with the credential its URL takes from the session's vaults
//! ([`crate::model::mcp::binding_for`]), opened here and held host-side for
//! the egress gateway. An `mcp_oauth` credential refreshes itself against
//! its token endpoint when its access token has expired or the server
//! rejects it, and stores the new tokens sealed. The token endpoint is
//! called host-side under the egress gateway's address policy: an internal
//! address (or one of the host's own) is refused unless the operator allows
//! it (`egress.allow_internal`), as it would be from the sandbox.

use std::sync::Arc;

use async_trait::async_trait;
use bridle_sandbox::egress::git_route::{self, AddressError};
use bridle_sandbox::egress::policy::AddressPolicy;
use bridle_sandbox::{McpAuthError, McpCredential, McpRoute, Secret};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::Sessions;
use crate::model::mcp::{Binding, binding_for};
use crate::model::vaults::{Credential, CredentialSecrets};
use crate::secrets::SecretBox;
use crate::store::{DocRow, Store, StoreError, Table};
use crate::time::{now_micros, parse_rfc3339, rfc3339};

/// A token this close to its expiry is refreshed before use.
const EXPIRY_MARGIN_MICROS: i64 = 30_000_000;
/// How long a token endpoint may take to answer.
const REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The routes for the agent's MCP servers, with the credentials the
/// session's vaults bind to their URLs. A credential that cannot be opened
/// fails the start (with words); one bound to no declared server is
/// ignored.
pub(crate) async fn routes(host: &Sessions, vault_ids: &[String], agent: &Value) -> Result<Vec<McpRoute>, String> {
    let servers: Vec<(String, String)> = agent
        .get("mcp_servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s.get("name")?.as_str()?.to_owned(), s.get("url")?.as_str()?.to_owned())))
        .collect();
    let mut rows: Vec<DocRow<Credential>> = Vec::new();
    if !servers.is_empty() {
        for v in vault_ids {
            let creds = host
                .store
                .active_credentials::<Credential>(v)
                .await
                .map_err(|e| format!("reading the credentials of vault `{v}` failed: {e}"))?;
            rows.extend(creds);
        }
    }
    let bindings: Vec<Binding> = rows
        .iter()
        .filter(|r| matches!(auth_type(&r.doc), "static_bearer" | "mcp_oauth"))
        .filter_map(|r| {
            Some(Binding {
                credential_id: r.doc.id.clone(),
                vault_id: r.doc.vault_id.clone(),
                url: r.doc.auth.get("mcp_server_url")?.as_str()?.to_owned(),
            })
        })
        .collect();
    let addresses = host.config.egress.address_policy();
    let mut used = Vec::new();
    let mut out = Vec::new();
    for (name, url) in servers {
        let credential = match binding_for(&url, &bindings) {
            None => None,
            Some(b) => match rows.iter().find(|r| r.doc.id == b.credential_id) {
                Some(row) => {
                    used.push(b.credential_id.clone());
                    let cred = VaultCredential::open(host, row, &name, addresses.clone())?;
                    Some(Arc::new(cred) as Arc<dyn McpCredential>)
                }
                None => None,
            },
        };
        out.push(McpRoute { name, url, credential });
    }
    for b in bindings.iter().filter(|b| !used.contains(&b.credential_id)) {
        tracing::debug!(credential = %b.credential_id, url = %b.url, "credential bound to no MCP server of the agent; ignored");
    }
    Ok(out)
}

fn auth_type(c: &Credential) -> &str {
    c.auth.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// How an `mcp_oauth` credential refreshes (the non-secret half is the
/// credential's `auth.refresh`; the client secret is sealed).
#[derive(Debug, Clone)]
struct Refresh {
    token_endpoint: String,
    client_id: String,
    auth: String,
    client_secret: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

#[derive(Debug)]
struct Tokens {
    access: Secret,
    /// Epoch microseconds.
    expires_at: Option<i64>,
    refresh_token: Option<String>,
}

/// One vault credential bound to an MCP server.
struct VaultCredential {
    id: String,
    server: String,
    store: Store,
    secrets: SecretBox,
    refresh: Option<Refresh>,
    tokens: Mutex<Tokens>,
    /// What the token endpoint may resolve to.
    addresses: AddressPolicy,
}

impl VaultCredential {
    fn open(host: &Sessions, row: &DocRow<Credential>, server: &str, addresses: AddressPolicy) -> Result<Self, String> {
        let id = row.doc.id.clone();
        let secrets: CredentialSecrets = host
            .secrets
            .open(row.sealed.as_deref().unwrap_or_default())
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or_else(|| {
                format!("the credential `{id}` of MCP server `{server}` cannot be decrypted with this server's key")
            })?;
        let access = secrets.token.clone().ok_or_else(|| format!("the credential `{id}` has no token"))?;
        let auth = &row.doc.auth;
        let refresh = match (auth.get("refresh").filter(|r| r.is_object()), &secrets.refresh_token) {
            (Some(r), Some(_)) => Some(Refresh {
                token_endpoint: r["token_endpoint"].as_str().unwrap_or_default().to_owned(),
                client_id: r["client_id"].as_str().unwrap_or_default().to_owned(),
                auth: r.pointer("/token_endpoint_auth/type").and_then(Value::as_str).unwrap_or("none").to_owned(),
                client_secret: secrets.client_secret.clone(),
                scope: r["scope"].as_str().map(str::to_owned),
                resource: r["resource"].as_str().map(str::to_owned),
            }),
            _ => None,
        };
        Ok(VaultCredential {
            id,
            server: server.to_owned(),
            store: host.store.clone(),
            secrets: host.secrets.clone(),
            refresh,
            tokens: Mutex::new(Tokens {
                access: Secret::new(access),
                expires_at: auth.get("expires_at").and_then(Value::as_str).and_then(parse_rfc3339),
                refresh_token: secrets.refresh_token,
            }),
            addresses,
        })
    }

    /// Refresh with the stored refresh token; store what the endpoint gives.
    async fn refresh_locked(&self, tokens: &mut Tokens) -> Result<Secret, McpAuthError> {
        let (Some(r), Some(refresh_token)) = (&self.refresh, tokens.refresh_token.clone()) else {
            return Err(McpAuthError(format!(
                "credential `{}` cannot be refreshed (no refresh token and token endpoint are stored)",
                self.id
            )));
        };
        let grant = refresh_grant(r, &refresh_token);
        let (host, addrs) = token_endpoint_addrs(&self.addresses, &r.token_endpoint, &self.id).await?;
        // Pinned to the checked addresses; TLS still verifies the host name.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REFRESH_TIMEOUT)
            .resolve_to_addrs(&host, &addrs)
            .build()
            .map_err(|e| McpAuthError(format!("building the token endpoint client failed: {e}")))?;
        let mut req = client.post(&r.token_endpoint).form(&grant).header("accept", "application/json");
        if r.auth == "client_secret_basic" {
            req = req.basic_auth(&r.client_id, r.client_secret.as_deref());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| McpAuthError(format!("the token endpoint could not be reached ({})", e.without_url())))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let oauth_error = body.get("error").and_then(Value::as_str).unwrap_or("no OAuth error code");
            return Err(McpAuthError(format!(
                "the token endpoint refused the refresh of credential `{}` (HTTP {}, {oauth_error})",
                self.id,
                status.as_u16()
            )));
        }
        let granted: Granted = serde_json::from_value(body)
            .map_err(|_| McpAuthError("the token endpoint's answer holds no access_token".into()))?;
        tokens.access = Secret::new(granted.access_token);
        tokens.expires_at = granted.expires_in.map(|s| now_micros() + s.saturating_mul(1_000_000));
        if let Some(t) = granted.refresh_token {
            tokens.refresh_token = Some(t);
        }
        if let Err(e) = self.store_tokens(tokens).await {
            // The new token still serves this session; the next one refreshes again.
            tracing::warn!(credential = %self.id, error = %e, "storing refreshed MCP tokens failed");
        }
        tracing::info!(credential = %self.id, server = %self.server, "MCP OAuth token refreshed");
        Ok(tokens.access.clone())
    }

    async fn store_tokens(&self, tokens: &Tokens) -> Result<(), StoreError> {
        let boxed = self.secrets.clone();
        let (access, refresh, expires) =
            (tokens.access.expose().to_owned(), tokens.refresh_token.clone(), tokens.expires_at);
        self.store
            .update_doc(Table::Credentials, &self.id, move |mut row: DocRow<Credential>| {
                let mut secrets: CredentialSecrets = row
                    .sealed
                    .as_deref()
                    .and_then(|s| boxed.open(s).ok())
                    .and_then(|raw| serde_json::from_slice(&raw).ok())
                    .unwrap_or_default();
                secrets.token = Some(access);
                secrets.refresh_token = refresh.or(secrets.refresh_token);
                let raw = serde_json::to_vec(&secrets).map_err(|e| StoreError::Other(e.into()))?;
                row.sealed = Some(boxed.seal(&raw)?);
                row.doc.auth["expires_at"] = expires.map(|e| json!(rfc3339(e))).unwrap_or(Value::Null);
                row.doc.updated_at = rfc3339(now_micros());
                Ok((row, None))
            })
            .await
            .map(|_| ())
    }
}

/// A token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The form of a refresh-token grant (RFC 6749 §6), with the client
/// authenticated as the credential says.
fn refresh_grant(r: &Refresh, refresh_token: &str) -> Vec<(&'static str, String)> {
    let mut form = vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.to_owned())];
    if r.auth != "client_secret_basic" {
        form.push(("client_id", r.client_id.clone()));
    }
    if let (true, Some(s)) = (r.auth == "client_secret_post", &r.client_secret) {
        form.push(("client_secret", s.clone()));
    }
    if let Some(s) = &r.scope {
        form.push(("scope", s.clone()));
    }
    if let Some(s) = &r.resource {
        form.push(("resource", s.clone()));
    }
    form
}

/// The addresses a credential's token endpoint may be reached at: the
/// gateway's address policy applied to what its host resolves to.
async fn token_endpoint_addrs(
    addresses: &AddressPolicy,
    endpoint: &str,
    credential: &str,
) -> Result<(String, Vec<std::net::SocketAddr>), McpAuthError> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| McpAuthError(format!("the token endpoint of credential `{credential}` is not a URL ({e})")))?;
    git_route::resolve(addresses, &url).await.map_err(|e| match e {
        AddressError::Denied(_) => {
            McpAuthError(format!("the token endpoint of credential `{credential}` may not be reached: {e}"))
        }
        AddressError::Failed(e) => McpAuthError(format!("the token endpoint could not be reached ({e})")),
    })
}

/// Whether a token expiring at `expires_at` should be refreshed at `now`.
fn expired(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|e| now + EXPIRY_MARGIN_MICROS >= e)
}

#[async_trait]
impl McpCredential for VaultCredential {
    async fn token(&self) -> Result<Secret, McpAuthError> {
        let mut tokens = self.tokens.lock().await;
        if expired(tokens.expires_at, now_micros()) && self.refresh.is_some() {
            return self.refresh_locked(&mut tokens).await;
        }
        Ok(tokens.access.clone())
    }

    async fn refresh(&self, rejected: &Secret) -> Result<Secret, McpAuthError> {
        let mut tokens = self.tokens.lock().await;
        if tokens.access != *rejected {
            // Another request refreshed it meanwhile.
            return Ok(tokens.access.clone());
        }
        self.refresh_locked(&mut tokens).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(auth: &str) -> Refresh {
        Refresh {
            token_endpoint: "https://auth.example/token".into(),
            client_id: "cid".into(),
            auth: auth.into(),
            client_secret: Some("cs".into()),
            scope: Some("read".into()),
            resource: None,
        }
    }

    #[test]
    fn the_grant_authenticates_the_client_as_configured() {
        let keys = |f: Vec<(&'static str, String)>| f.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(refresh_grant(&refresh("none"), "rt")), ["grant_type", "refresh_token", "client_id", "scope"]);
        assert_eq!(
            keys(refresh_grant(&refresh("client_secret_post"), "rt")),
            ["grant_type", "refresh_token", "client_id", "client_secret", "scope"]
        );
        // Basic: the client goes in the Authorization header instead.
        assert_eq!(
            keys(refresh_grant(&refresh("client_secret_basic"), "rt")),
            ["grant_type", "refresh_token", "scope"]
        );
    }

    #[tokio::test]
    async fn the_token_endpoint_obeys_the_address_policy() {
        let closed = AddressPolicy::new(Vec::new(), Arc::default());
        for endpoint in
            ["http://127.0.0.1:8/token", "http://[::1]:8/token", "http://10.1.2.3/token", "http://169.254.169.254/"]
        {
            let err = token_endpoint_addrs(&closed, endpoint, "vcrd_1").await.unwrap_err().0;
            assert!(err.contains("vcrd_1") && err.contains("egress.allow_internal"), "{endpoint}: {err}");
        }
        let err = token_endpoint_addrs(&closed, "not a url", "vcrd_1").await.unwrap_err().0;
        assert!(err.contains("not a URL"), "{err}");
        // The operator's exception opens exactly that address and port.
        let open = AddressPolicy::new(vec!["127.0.0.1:8".parse().unwrap()], Arc::default());
        let (host, addrs) = token_endpoint_addrs(&open, "http://127.0.0.1:8/token", "vcrd_1").await.unwrap();
        assert_eq!((host.as_str(), addrs), ("127.0.0.1", vec!["127.0.0.1:8".parse::<std::net::SocketAddr>().unwrap()]));
        assert!(token_endpoint_addrs(&open, "http://127.0.0.1:9/token", "vcrd_1").await.is_err());
    }

    #[test]
    fn tokens_are_refreshed_shortly_before_they_expire() {
        let now = 1_000_000_000;
        assert!(!expired(None, now));
        assert!(expired(Some(now - 1), now));
        assert!(expired(Some(now + EXPIRY_MARGIN_MICROS - 1), now));
        assert!(!expired(Some(now + EXPIRY_MARGIN_MICROS + 1_000_000), now));
    }
}
