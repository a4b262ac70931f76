//! Files API wire types (`client.beta.files`), and the pure rules of an
//! upload: which filename is kept and which MIME type a file gets.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Invalid;

/// The longest filename kept, in bytes of UTF-8 (the common file-system
/// limit for one path component; the API documents none).
pub const MAX_FILENAME_BYTES: usize = 255;

/// A file's metadata, as `files.upload`, `retrieve_metadata` and `list` return it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileMetadata {
    pub id: String,
    /// Always `file`.
    #[serde(rename = "type")]
    #[schema(pattern = "^file$")]
    pub kind: String,
    /// RFC 3339.
    pub created_at: String,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    /// Whether `GET /v1/files/{id}/content` serves the bytes.
    pub downloadable: bool,
    /// Bridle's files do not expire: always `null`.
    #[schema(required)]
    pub expires_at: Option<String>,
    /// `null` for uploads; `{"type": "session", "id"}` for a session's outputs.
    #[schema(required)]
    pub scope: Option<FileScope>,
}

/// What a file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileScope {
    /// Always `session`.
    #[serde(rename = "type")]
    #[schema(pattern = "^session$")]
    pub kind: String,
    pub id: String,
}

impl FileScope {
    pub fn session(id: impl Into<String>) -> FileScope {
        FileScope { kind: "session".into(), id: id.into() }
    }
}

/// `DELETE /v1/files/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedFile {
    pub id: String,
    /// Always `file_deleted`.
    #[serde(rename = "type")]
    #[schema(pattern = "^file_deleted$")]
    pub kind: String,
}

/// A page of files. `next_page` is what the SDKs follow; `has_more`,
/// `first_id` and `last_id` are the older list shape, kept for clients that
/// read them.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilePage {
    pub data: Vec<FileMetadata>,
    #[schema(required)]
    pub next_page: Option<String>,
    pub has_more: bool,
    #[schema(required)]
    pub first_id: Option<String>,
    #[schema(required)]
    pub last_id: Option<String>,
}

/// The `multipart/form-data` body of `POST /v1/files` (for the document).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FileUpload {
    /// The file. Only the last path component of its `filename` is kept;
    /// an absent or empty name becomes `unnamed` plus the extension of its
    /// MIME type, when one is known.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// The filename a part's `filename` parameter gives the stored file: its
/// last path component (`/` or `\` separated), or `unnamed` (with the
/// extension of `mime_type`, when known) when that is empty. Control
/// characters and names over [`MAX_FILENAME_BYTES`] are refused.
pub fn stored_filename(given: Option<&str>, mime_type: &str) -> Result<String, Invalid> {
    let last = given.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    if last.chars().any(char::is_control) {
        return Err(Invalid::new("file: the filename must not contain control characters"));
    }
    if last.len() > MAX_FILENAME_BYTES {
        return Err(Invalid::new(format!(
            "file: the filename is {} bytes long; the limit is {MAX_FILENAME_BYTES}",
            last.len()
        )));
    }
    if !last.trim().is_empty() && last != "." && last != ".." {
        return Ok(last.to_owned());
    }
    Ok(match extension_for(mime_type) {
        Some(ext) => format!("unnamed.{ext}"),
        None => "unnamed".to_owned(),
    })
}

/// The usual extension of a MIME type: the one named like its subtype
/// (`application/pdf` → `pdf`), or a few well-known others; `None` when there
/// is no clear one (`application/octet-stream`).
fn extension_for(mime_type: &str) -> Option<&'static str> {
    const USUAL: [(&str, &str); 4] =
        [("text/plain", "txt"), ("text/markdown", "md"), ("image/jpeg", "jpg"), ("text/javascript", "js")];
    if let Some((_, ext)) = USUAL.iter().find(|(m, _)| *m == mime_type) {
        return Some(ext);
    }
    let sub = mime_type.split_once('/')?.1;
    let sub = sub.strip_prefix("x-").unwrap_or(sub);
    let sub = sub.split('+').next().unwrap_or(sub);
    mime_guess::get_mime_extensions_str(mime_type)?.iter().copied().find(|e| *e == sub)
}

/// The MIME type stored for an upload: the part's `Content-Type` when it
/// names a real one, else a guess from the filename's extension, else
/// `application/octet-stream`.
pub fn stored_mime_type(content_type: Option<&str>, filename: Option<&str>) -> String {
    let given = content_type.and_then(|c| c.parse::<mime_guess::mime::Mime>().ok());
    match given {
        // `application/octet-stream` says nothing: clients send it for any file.
        Some(m) if m.essence_str() != "application/octet-stream" => m.essence_str().to_owned(),
        _ => filename
            .and_then(|f| mime_guess::from_path(f).first())
            .map(|m| m.essence_str().to_owned())
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        let long = "a".repeat(MAX_FILENAME_BYTES + 1);
        let max = "a".repeat(MAX_FILENAME_BYTES);
        let cases: &[(Option<&str>, &str, Result<&str, &str>)] = &[
            (Some("report.pdf"), "application/pdf", Ok("report.pdf")),
            (Some("dir/sub/report.pdf"), "application/pdf", Ok("report.pdf")),
            (Some("C:\\Users\\me\\notes.txt"), "text/plain", Ok("notes.txt")),
            (Some("../../etc/passwd"), "text/plain", Ok("passwd")),
            (Some("héllo wörld.md"), "text/markdown", Ok("héllo wörld.md")),
            (Some(""), "application/pdf", Ok("unnamed.pdf")),
            (None, "application/octet-stream", Ok("unnamed")),
            (Some(""), "text/plain", Ok("unnamed.txt")),
            (Some(""), "image/svg+xml", Ok("unnamed.svg")),
            (Some("dir/"), "application/x-bridle-unknown", Ok("unnamed")),
            (Some(".."), "text/plain", Ok("unnamed.txt")),
            (Some(&max), "text/plain", Ok(&max)),
            (Some(&long), "text/plain", Err("the limit is 255")),
            (Some("a\nb.txt"), "text/plain", Err("control characters")),
            (Some("a\u{0}b"), "text/plain", Err("control characters")),
        ];
        for (given, mime, want) in cases {
            let got = stored_filename(*given, mime);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{given:?}"),
                (Err(w), Err(e)) => assert!(e.0.contains(w), "{given:?}: {e}"),
                _ => panic!("{given:?}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn mime_types() {
        let cases = [
            (Some("text/csv"), Some("x.bin"), "text/csv"),
            (Some("text/plain; charset=utf-8"), None, "text/plain"),
            (Some("application/octet-stream"), Some("a.pdf"), "application/pdf"),
            (None, Some("photo.PNG"), "image/png"),
            (None, Some("noext"), "application/octet-stream"),
            (Some("not a mime"), Some("a.json"), "application/json"),
            (None, None, "application/octet-stream"),
        ];
        for (ct, name, want) in cases {
            assert_eq!(stored_mime_type(ct, name), want, "{ct:?} {name:?}");
        }
    }
}
