//! The installation's egress CA: the sandboxes trust it, and the egress
//! gateway signs with it the certificates of hosts where an
//! environment-variable secret is substituted. Generated on first start into
//! the data dir: the certificate in the clear (`egress-ca.pem`), the private
//! key sealed with the server key like vault secrets (`egress-ca.key`, 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use bridle_sandbox::Secret;
use bridle_sandbox::egress::tls::{CaPem, Minter, generate_ca};

use crate::secrets::SecretBox;

pub const CERT_FILE: &str = "egress-ca.pem";
pub const KEY_FILE: &str = "egress-ca.key";

fn write_new(path: &Path, mode: u32, body: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(body.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The CA in `data_dir`, made there on first start. A certificate whose key
/// is missing or cannot be opened with this server key is an error (sandboxes
/// already trust it); removing both files makes a new CA.
pub fn load_or_create(data_dir: &Path, secrets: &SecretBox) -> anyhow::Result<CaPem> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    if cert_path.exists() {
        let cert_pem =
            std::fs::read_to_string(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        if !key_path.exists() {
            bail!(
                "{} exists but its key {} does not; remove the certificate to make a new egress CA",
                cert_path.display(),
                key_path.display()
            );
        }
        let sealed = std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let key = secrets.open(sealed.trim()).with_context(|| {
            format!(
                "opening {} (sealed with another server key?); remove both egress-ca files to make a new CA",
                key_path.display()
            )
        })?;
        let key_pem = String::from_utf8(key).context("the egress CA key is not text")?;
        let ca = CaPem { cert_pem, key_pem: Secret::new(key_pem) };
        Minter::new(&ca).with_context(|| format!("the egress CA in {} is unusable", data_dir.display()))?;
        return Ok(ca);
    }
    let ca = generate_ca("Bridle egress gateway CA").context("generating the egress CA")?;
    // Key first: a certificate is only ever written next to its key.
    write_new(&key_path, 0o600, &format!("{}\n", secrets.seal(ca.key_pem.expose().as_bytes())?))?;
    write_new(&cert_path, 0o644, &ca.cert_pem)?;
    tracing::info!(path = %cert_path.display(), "generated the egress gateway CA");
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_sealed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::from_key(&[3u8; 32]).unwrap();
        let ca = load_or_create(dir.path(), &sb).unwrap();
        let key_file = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert!(!key_file.contains("PRIVATE KEY"), "the key is sealed at rest");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        let again = load_or_create(dir.path(), &sb).unwrap();
        assert_eq!(again, ca, "the same CA on the next start");
        // Another server key cannot open it: an error, not a silent new CA.
        let other = SecretBox::from_key(&[4u8; 32]).unwrap();
        let err = load_or_create(dir.path(), &other).unwrap_err();
        assert!(format!("{err:#}").contains(KEY_FILE), "{err:#}");
        // A certificate without its key is an error too.
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        assert!(load_or_create(dir.path(), &sb).is_err());
        // Without the certificate, a new CA is made.
        std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let fresh = load_or_create(dir.path(), &sb).unwrap();
        assert_ne!(fresh.cert_pem, ca.cert_pem);
    }
}
