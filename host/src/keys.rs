//! API keys: generation and hashing. Keys are `sk-bridle-` plus 32 random
//! bytes (base64url); only their SHA-256 is stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ids::{Kind, new_id};
use crate::store::{ApiKeyRow, EnvironmentKeyRow, Store};
use crate::time::now_micros;

pub const KEY_PREFIX: &str = "sk-bridle-";
/// Environment keys: a self-hosted environment's workers poll with one.
pub const ENV_KEY_PREFIX: &str = "sk-bridle-env-";
/// The per-session token of one work item's lease (in the poll's `secret`).
pub const WORK_TOKEN_PREFIX: &str = "sk-bridle-work-";

/// A fresh random secret with `prefix`.
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_key(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// Create a key; returns its row and the raw key (shown once, never stored).
pub async fn create_key(store: &Store, name: &str) -> anyhow::Result<(ApiKeyRow, String)> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let raw = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let row = ApiKeyRow {
        id: new_id(Kind::ApiKey),
        name: name.to_owned(),
        hint: format!("{}...", &raw[..KEY_PREFIX.len() + 4]),
        created_at: now_micros(),
        revoked_at: None,
    };
    store.insert_api_key(&row, &hash_key(&raw)).await?;
    Ok((row, raw))
}

/// Create a key for one environment's workers; returns its row and the raw
/// key (shown once, never stored).
pub async fn create_environment_key(
    store: &Store,
    environment_id: &str,
    name: &str,
) -> anyhow::Result<(EnvironmentKeyRow, String)> {
    let raw = random_secret(ENV_KEY_PREFIX);
    let row = EnvironmentKeyRow {
        id: new_id(Kind::EnvironmentKey),
        environment_id: environment_id.to_owned(),
        name: name.to_owned(),
        hint: format!("{}...", &raw[..ENV_KEY_PREFIX.len() + 4]),
        created_at: now_micros(),
        revoked_at: None,
    };
    store.insert_environment_key(&row, &hash_key(&raw)).await?;
    Ok((row, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_hex() {
        let h = hash_key("sk-bridle-abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash_key("sk-bridle-abc"));
        assert_ne!(h, hash_key("sk-bridle-abd"));
    }
}
