//! Collecting a session's output files: every regular file the agent left
//! under `/mnt/session/outputs/` becomes a Files API file scoped to the
//! session. A file is stored again only when its bytes changed (its SHA-256
//! differs from the stored copy of the same path), and then replaces that
//! copy. Bytes stream from the sandbox into the store in chunks.

use std::collections::HashMap;

use anyhow::{Context, bail};
use bridle_sandbox::{ExecRequest, Sandbox};
use tokio::io::AsyncReadExt;

use crate::ids::{Kind, new_id};
use crate::model::files::{FileScope, stored_filename, stored_mime_type};
use crate::model::resources::OUTPUTS_DIR;
use crate::store::{FileRow, Store};
use crate::time::now_micros;

/// One file found under the outputs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative to the outputs directory (`report.txt`, `charts/a.png`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Lists the outputs as NUL-terminated `sha256 size path` records. The size
/// comes from `wc -c` (`fstat`), not `stat(1)`: the gVisor release Debian
/// ships refuses coreutils' `statx` flags.
const LIST_SCRIPT: &str = r#"cd "$1" 2>/dev/null || exit 0
find . -type f -print0 | while IFS= read -r -d '' f; do
  h=$(sha256sum < "$f") || continue
  printf '%s %s %s\0' "${h%% *}" "$(wc -c < "$f")" "${f#./}"
done"#;

/// Parse the listing (pure).
pub fn parse_listing(raw: &[u8]) -> Vec<Found> {
    raw.split(|b| *b == 0)
        .filter_map(|rec| {
            let rec = std::str::from_utf8(rec).ok()?;
            let mut parts = rec.splitn(3, ' ');
            let (sha, size, path) = (parts.next()?, parts.next()?, parts.next()?);
            let ok = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) && !path.is_empty();
            let size = size.parse().ok()?;
            ok.then(|| Found { path: path.to_owned(), size, sha256: sha.to_owned() })
        })
        .collect()
}

/// What to do with each found file, given the stored `(id, path, sha256)`
/// outputs (pure): the files to store (with the stored copy each replaces).
pub fn plan(found: Vec<Found>, stored: &[(String, String, String)], max_bytes: u64) -> Vec<(Found, Option<String>)> {
    let by_path: HashMap<&str, (&str, &str)> =
        stored.iter().map(|(id, p, h)| (p.as_str(), (id.as_str(), h.as_str()))).collect();
    found
        .into_iter()
        .filter(|f| {
            let fits = f.size <= max_bytes;
            if !fits {
                tracing::warn!(path = %f.path, size = f.size, max_bytes, "an output file is larger than files.max_bytes; not stored");
            }
            fits
        })
        .filter_map(|f| match by_path.get(f.path.as_str()) {
            Some((_, h)) if *h == f.sha256 => None,
            Some((id, _)) => {
                let old = Some((*id).to_owned());
                Some((f, old))
            }
            None => Some((f, None)),
        })
        .collect()
}

/// Collect the outputs `sandbox` holds now: how many files were stored.
pub async fn collect(store: &Store, session_id: &str, sandbox: &dyn Sandbox, max_bytes: u64) -> anyhow::Result<usize> {
    let list = ExecRequest::new(["/bin/bash", "-c", LIST_SCRIPT, "list-outputs", OUTPUTS_DIR]);
    let out = sandbox.exec(list).await.context("listing the outputs")?.output(16 << 20).await;
    if !out.status.success() {
        bail!("listing the outputs failed ({}): {}", out.status, out.stderr_str().trim());
    }
    let stored = store.session_outputs(session_id).await?;
    let mut n = 0;
    for (f, old) in plan(parse_listing(&out.stdout), &stored, max_bytes) {
        match store_one(store, session_id, sandbox, &f, max_bytes).await {
            Ok(id) => {
                tracing::info!(path = %f.path, file_id = %id, size = f.size, "session output stored");
                if let Some(old) = old {
                    store.delete_file(&old).await?;
                }
                n += 1;
            }
            Err(e) => tracing::warn!(path = %f.path, error = format!("{e:#}"), "storing a session output failed"),
        }
    }
    Ok(n)
}

/// Stream one output file from the sandbox into the store.
async fn store_one(
    store: &Store,
    session_id: &str,
    sandbox: &dyn Sandbox,
    f: &Found,
    max_bytes: u64,
) -> anyhow::Result<String> {
    let mime_type = stored_mime_type(None, Some(&f.path));
    let meta = FileRow {
        id: new_id(Kind::File),
        created_at: now_micros(),
        filename: stored_filename(Some(&f.path), &mime_type)?,
        mime_type,
        size_bytes: 0,
        downloadable: true,
        scope: Some(FileScope::session(session_id)),
    };
    let full = format!("{OUTPUTS_DIR}/{}", f.path);
    let mut child = sandbox.exec(ExecRequest::new(["cat", "--", full.as_str()])).await.context("reading the file")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let control = child.control.clone();
    drop(child);
    let mut writer = store.begin_output_file(&meta, &f.path, &f.sha256).await?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stdout.read(&mut buf).await.context("reading the file")?;
        if n == 0 {
            break;
        }
        if writer.size() + n as u64 > max_bytes {
            writer.abort().await?;
            bail!("it grew past files.max_bytes ({max_bytes}) while being read");
        }
        writer.write(&buf[..n]).await?;
    }
    let status = control.wait().await;
    if !status.success() {
        writer.abort().await?;
        bail!("`cat` {status}");
    }
    Ok(writer.finish().await?.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str, size: u64, h: char) -> Found {
        Found { path: path.into(), size, sha256: h.to_string().repeat(64) }
    }

    #[test]
    fn listing_parses_records_and_skips_junk() {
        let a = "a".repeat(64);
        let raw = format!("{a} 12 report.txt\0{a} 0 dir/with space.md\0short 1 x\0{a} nan y\0{a} 3 \0");
        assert_eq!(
            parse_listing(raw.as_bytes()),
            vec![found("report.txt", 12, 'a'), found("dir/with space.md", 0, 'a')]
        );
        assert!(parse_listing(b"").is_empty());
    }

    #[test]
    fn only_new_or_changed_files_are_stored() {
        let stored = vec![
            ("file_old1".to_owned(), "same.txt".to_owned(), "a".repeat(64)),
            ("file_old2".to_owned(), "changed.txt".to_owned(), "a".repeat(64)),
        ];
        let got = plan(
            vec![
                found("same.txt", 1, 'a'),
                found("changed.txt", 1, 'b'),
                found("new.txt", 1, 'c'),
                found("big.bin", 11, 'd'),
            ],
            &stored,
            10,
        );
        assert_eq!(
            got,
            vec![(found("changed.txt", 1, 'b'), Some("file_old2".into())), (found("new.txt", 1, 'c'), None)]
        );
    }
}
