//! Vault secrets at rest: XChaCha20-Poly1305 with a 32-byte server key that
//! is generated on first start (or given in config). Secrets are written
//! once, decrypted only when a session needs them, and never returned.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// The key that seals vault secrets.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn from_key(key: &[u8]) -> anyhow::Result<Self> {
        if key.len() != 32 {
            bail!("secret key must be 32 bytes, got {}", key.len());
        }
        Ok(SecretBox { cipher: XChaCha20Poly1305::new(Key::from_slice(key)) })
    }

    /// Use `configured` (base64) if given, else the key file in `data_dir`,
    /// creating it (mode 0600) on first start.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(b64) = configured {
            let key = B64.decode(b64.trim()).context("secret_key is not valid base64")?;
            return Self::from_key(&key);
        }
        let path = data_dir.join("secret.key");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = B64.decode(text.trim()).with_context(|| format!("{} is not base64", path.display()))?;
            return Self::from_key(&key);
        }
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(f, "{}", B64.encode(key)).context("writing secret key")?;
        tracing::info!(path = %path.display(), "generated a new secret key for vault secrets");
        Self::from_key(&key)
    }

    /// Seal `plaintext`; the result is base64(nonce || ciphertext).
    pub fn seal(&self, plaintext: &[u8]) -> anyhow::Result<String> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self.cipher.encrypt(&nonce, plaintext).map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    pub fn open(&self, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let raw = B64.decode(sealed).context("sealed secret is not base64")?;
        if raw.len() < 24 {
            bail!("sealed secret is truncated");
        }
        let (nonce, ct) = raw.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| anyhow::anyhow!("cannot decrypt secret: wrong server key or corrupted data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_a_generated_key() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::load_or_create(None, dir.path()).unwrap();
        let sealed = sb.seal(b"sk-secret").unwrap();
        assert!(!sealed.contains("sk-secret"));
        assert_eq!(sb.open(&sealed).unwrap(), b"sk-secret");
        // The same key is read back on the next start.
        let again = SecretBox::load_or_create(None, dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"sk-secret");
        // Another key cannot open it.
        let other = SecretBox::from_key(&[7u8; 32]).unwrap();
        assert!(other.open(&sealed).is_err());
    }
}
