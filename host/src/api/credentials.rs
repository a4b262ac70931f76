//! `/v1/vaults/{vault_id}/credentials`. Secret fields are sealed with the
//! server key on the way in and never leave again: responses are built from
//! the public half only.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, check_id};
use super::pagination::{Page, next_token, parse_limit, parse_order, position};
use crate::ids::{Kind, new_id};
use crate::model::common::patch_sets;
use crate::model::common::{Deleted, apply_metadata_patch, check_len};
use crate::model::vaults::{
    AuthCreate, AuthUpdate, Credential, CredentialCreate, CredentialSecrets, CredentialUpdate, TokenEndpointAuth,
};
use crate::model::vaults::{InjectionLocation, check_env_networking, check_injection_location, check_not_reserved};
use crate::model::{Invalid, Validate};
use crate::store::{DocRow, Order, Table};
use crate::time::{now_micros, rfc3339};

impl Validate for CredentialUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(m) = &self.metadata {
            check_not_reserved("credential", patch_sets(m))?;
        }
        if let Some(Some(n)) = &self.display_name {
            check_len("display_name", n, 0, 255)?;
        }
        Ok(())
    }
}

/// Split create params into the public `auth` object and the secrets.
fn split_auth(auth: &AuthCreate) -> (Value, CredentialSecrets) {
    match auth {
        AuthCreate::StaticBearer { token, mcp_server_url } => (
            json!({"type": "static_bearer", "mcp_server_url": mcp_server_url}),
            CredentialSecrets { token: Some(token.clone()), ..Default::default() },
        ),
        AuthCreate::McpOauth { access_token, mcp_server_url, expires_at, refresh } => {
            let mut secrets = CredentialSecrets { token: Some(access_token.clone()), ..Default::default() };
            let refresh = refresh.as_ref().map(|r| {
                secrets.refresh_token = Some(r.refresh_token.clone());
                let auth_type = match &r.token_endpoint_auth {
                    TokenEndpointAuth::None {} => "none",
                    TokenEndpointAuth::ClientSecretBasic { client_secret } => {
                        secrets.client_secret = Some(client_secret.clone());
                        "client_secret_basic"
                    }
                    TokenEndpointAuth::ClientSecretPost { client_secret } => {
                        secrets.client_secret = Some(client_secret.clone());
                        "client_secret_post"
                    }
                };
                json!({
                    "client_id": r.client_id,
                    "token_endpoint": r.token_endpoint,
                    "token_endpoint_auth": {"type": auth_type},
                    "resource": r.resource,
                    "scope": r.scope,
                })
            });
            (
                json!({"type": "mcp_oauth", "mcp_server_url": mcp_server_url, "expires_at": expires_at, "refresh": refresh}),
                secrets,
            )
        }
        AuthCreate::EnvironmentVariable { secret_name, secret_value, networking, injection_location } => (
            json!({
                "type": "environment_variable",
                "secret_name": secret_name,
                "networking": networking,
                "injection_location": injection_location.map(|l| json!(l)).unwrap_or(json!({"body": false, "header": true})),
            }),
            CredentialSecrets { secret_value: Some(secret_value.clone()), ..Default::default() },
        ),
    }
}

async fn load_vault_open(st: &AppState, vault_id: &str) -> ApiResult<()> {
    let vault = super::vaults::load(st, vault_id).await?;
    if vault.archived {
        return Err(ApiError::conflict(format!("vault `{vault_id}` is archived")));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/vaults/{vault_id}/credentials",
    tag = "credentials",
    operation_id = "credentials_create",
    summary = "Add a credential to a vault (its secret is write-only)",
    params(
        ("vault_id" = String, Path)
    ),
    request_body = CredentialCreate,
    responses((status = 200, description = "OK", body = Credential))
)]
pub async fn create(
    State(st): State<AppState>,
    Path(vault_id): Path<String>,
    ApiJson(p): ApiJson<CredentialCreate>,
) -> ApiResult<Json<Credential>> {
    load_vault_open(&st, &vault_id).await?;
    let (auth, secrets) = split_auth(&p.auth);
    let sealed = st.secrets.seal(&serde_json::to_vec(&secrets).map_err(|e| ApiError::Internal(e.into()))?)?;
    let now = now_micros();
    let cred = Credential {
        id: new_id(Kind::Credential),
        archived_at: None,
        auth,
        created_at: rfc3339(now),
        display_name: p.display_name,
        metadata: p.metadata.unwrap_or_default(),
        kind: "vault_credential".into(),
        updated_at: rfc3339(now),
        vault_id: vault_id.clone(),
    };
    st.store.insert_credential(&cred.id, &vault_id, now, &cred, &sealed).await?;
    tracing::info!(vault_id = %vault_id, credential_id = %cred.id, "credential created");
    Ok(Json(cred))
}

#[utoipa::path(
    get,
    path = "/vaults/{vault_id}/credentials",
    tag = "credentials",
    operation_id = "credentials_list",
    summary = "List a vault's credentials",
    params(
        ("vault_id" = String, Path),
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 100, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response."),
        ("order" = Option<String>, Query, description = "`asc` or `desc` by creation time (default `desc`)."),
        ("include_archived" = Option<bool>, Query, description = "Include archived resources.")
    ),
    responses((status = 200, description = "OK", body = Page<Credential>))
)]
pub async fn list(
    State(st): State<AppState>,
    Path(vault_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<Page<Credential>>> {
    q.allow(&["limit", "page", "include_archived", "order"])?;
    super::vaults::load(&st, &vault_id).await?;
    let order = parse_order(&q, Order::Desc)?;
    let limit = parse_limit(&q, 20, 100)?;
    let page = st
        .store
        .list_docs::<Credential>(
            Table::Credentials,
            Some(&vault_id),
            q.bool("include_archived")?,
            order,
            &position(&q, order, Kind::Credential)?,
            limit,
        )
        .await?;
    let next = page.more_after.then(|| page.items.last().map(|r| next_token(order, &r.key))).flatten();
    let data = page.items.into_iter().map(|r| r.doc).collect();
    Ok(Json(Page { data, next_page: next }))
}

async fn load(st: &AppState, vault_id: &str, id: &str) -> ApiResult<DocRow<Credential>> {
    check_id(Kind::Vault, vault_id)?;
    check_id(Kind::Credential, id)?;
    match st.store.get_doc::<Credential>(Table::Credentials, id).await? {
        Some(row) if row.doc.vault_id == vault_id => Ok(row),
        _ => Err(ApiError::NotFound(format!("credential `{id}` not found in vault `{vault_id}`"))),
    }
}

#[utoipa::path(
    get,
    path = "/vaults/{vault_id}/credentials/{credential_id}",
    tag = "credentials",
    operation_id = "credentials_retrieve",
    summary = "Retrieve a credential",
    params(
        ("vault_id" = String, Path),
        ("credential_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Credential))
)]
pub async fn retrieve(
    State(st): State<AppState>,
    Path((vault_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Credential>> {
    Ok(Json(load(&st, &vault_id, &id).await?.doc))
}

#[utoipa::path(
    post,
    path = "/vaults/{vault_id}/credentials/{credential_id}",
    tag = "credentials",
    operation_id = "credentials_update",
    summary = "Update a credential",
    params(
        ("vault_id" = String, Path),
        ("credential_id" = String, Path)
    ),
    request_body = CredentialUpdate,
    responses((status = 200, description = "OK", body = Credential))
)]
pub async fn update(
    State(st): State<AppState>,
    Path((vault_id, id)): Path<(String, String)>,
    ApiJson(p): ApiJson<CredentialUpdate>,
) -> ApiResult<Json<Credential>> {
    load(&st, &vault_id, &id).await?;
    let secrets_box = st.secrets.clone();
    let row = st
        .store
        .update_doc(Table::Credentials, &id, |mut row: DocRow<Credential>| -> Result<_, ApiError> {
            if row.archived {
                return Err(ApiError::conflict(format!("credential `{id}` is archived and cannot be modified")));
            }
            let c = &mut row.doc;
            if let Some(auth) = &p.auth {
                let current_type = c.auth.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
                let mut secrets: CredentialSecrets = match &row.sealed {
                    Some(s) => {
                        serde_json::from_slice(&secrets_box.open(s)?).map_err(|e| ApiError::Internal(e.into()))?
                    }
                    None => CredentialSecrets::default(),
                };
                let wanted = match auth {
                    AuthUpdate::StaticBearer { token } => {
                        if let Some(t) = token {
                            check_len("auth.token", t, 1, 8192)?;
                            secrets.token = Some(t.clone());
                        }
                        "static_bearer"
                    }
                    AuthUpdate::McpOauth { access_token, expires_at, refresh } => {
                        if let Some(t) = access_token {
                            check_len("auth.access_token", t, 1, 8192)?;
                            secrets.token = Some(t.clone());
                        }
                        if let Some(e) = expires_at {
                            c.auth["expires_at"] = json!(e);
                        }
                        if let Some(r) = refresh {
                            if let Some(t) = r.get("refresh_token").and_then(Value::as_str) {
                                secrets.refresh_token = Some(t.to_owned());
                            }
                            if let Some(s) = r.get("scope") {
                                c.auth["refresh"]["scope"] = s.clone();
                            }
                            if let Some(cs) = r.pointer("/token_endpoint_auth/client_secret").and_then(Value::as_str) {
                                secrets.client_secret = Some(cs.to_owned());
                            }
                        }
                        "mcp_oauth"
                    }
                    AuthUpdate::EnvironmentVariable { secret_value, networking, injection_location } => {
                        if let Some(v) = secret_value {
                            check_len("auth.secret_value", v, 1, 65_536)?;
                            secrets.secret_value = Some(v.clone());
                        }
                        if let Some(n) = networking {
                            check_env_networking(n)?;
                            c.auth["networking"] = json!(n);
                        }
                        if let Some(l) = injection_location {
                            let cur = &c.auth["injection_location"];
                            let merged = InjectionLocation {
                                body: l.body.unwrap_or_else(|| cur["body"].as_bool().unwrap_or(false)),
                                header: l.header.unwrap_or_else(|| cur["header"].as_bool().unwrap_or(true)),
                            };
                            check_injection_location(&merged)?;
                            c.auth["injection_location"] = json!(merged);
                        }
                        "environment_variable"
                    }
                };
                if wanted != current_type {
                    return Err(ApiError::invalid(format!(
                        "auth.type: credential `{id}` is of type {current_type}; its type cannot change to {wanted}"
                    )));
                }
                let raw = serde_json::to_vec(&secrets).map_err(|e| ApiError::Internal(e.into()))?;
                row.sealed = Some(secrets_box.seal(&raw)?);
            }
            if let Some(d) = &p.display_name {
                c.display_name = d.clone();
            }
            if let Some(m) = &p.metadata {
                apply_metadata_patch("metadata", &mut c.metadata, m)?;
            }
            c.updated_at = rfc3339(now_micros());
            Ok((row, None))
        })
        .await?;
    Ok(Json(row.doc))
}

#[utoipa::path(
    post,
    path = "/vaults/{vault_id}/credentials/{credential_id}/archive",
    tag = "credentials",
    operation_id = "credentials_archive",
    summary = "Archive a credential",
    params(
        ("vault_id" = String, Path),
        ("credential_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Credential))
)]
pub async fn archive(
    State(st): State<AppState>,
    Path((vault_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Credential>> {
    load(&st, &vault_id, &id).await?;
    let row = st.store.archive_doc(Table::Credentials, &id).await?;
    Ok(Json(row.doc))
}

#[utoipa::path(
    delete,
    path = "/vaults/{vault_id}/credentials/{credential_id}",
    tag = "credentials",
    operation_id = "credentials_delete",
    summary = "Delete a credential",
    params(
        ("vault_id" = String, Path),
        ("credential_id" = String, Path)
    ),
    responses((status = 200, description = "OK", body = Deleted))
)]
pub async fn delete(
    State(st): State<AppState>,
    Path((vault_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    load(&st, &vault_id, &id).await?;
    if !st.store.delete_doc(Table::Credentials, &id).await? {
        return Err(ApiError::not_found(Kind::Credential, &id));
    }
    Ok(Json(Deleted { id, kind: "vault_credential_deleted".into() }))
}
