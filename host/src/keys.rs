//! API keys: generation and hashing. Keys are `sk-bridle-` plus 32 random
//! bytes (base64url); only their SHA-256 is stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ids::{Kind, new_id};
use crate::store::{ApiKeyRow, Store};
use crate::time::now_micros;

pub const KEY_PREFIX: &str = "sk-bridle-";

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
