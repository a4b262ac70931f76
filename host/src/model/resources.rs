//! Session resources (`resources` at session create, and
//! `client.beta.sessions.resources`): the wire shapes, and the pure rules of
//! what may be mounted where.
//!
//! `file` resources are served. `github_repository` and `memory_store` are
//! refused with a message naming them (no silent acceptance).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::Invalid;

/// Where a file resource goes when no `mount_path` is given (plus its file id).
pub const UPLOADS_DIR: &str = "/mnt/session/uploads";
/// Files the agent writes here become the session's output files.
pub const OUTPUTS_DIR: &str = "/mnt/session/outputs";
/// The directories a file resource may be mounted under.
pub const MOUNT_ROOTS: [&str; 2] = ["/workspace", UPLOADS_DIR];
/// The longest `mount_path`, in bytes.
pub const MAX_MOUNT_PATH: usize = 1024;
/// Most resources one session holds.
pub const MAX_RESOURCES: usize = 100;

/// A resource as the API returns it (`file`; the SDK's
/// `BetaManagedAgentsFileResource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionResource {
    /// `sesrsc_...`
    pub id: String,
    /// Always `file`.
    #[serde(rename = "type")]
    #[schema(pattern = "^file$")]
    pub kind: String,
    pub file_id: String,
    pub mount_path: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `DELETE /v1/sessions/{id}/resources/{resource_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedResource {
    pub id: String,
    /// Always `session_resource_deleted`.
    #[serde(rename = "type")]
    #[schema(pattern = "^session_resource_deleted$")]
    pub kind: String,
}

/// A page of a session's resources.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourcePage {
    pub data: Vec<SessionResource>,
    #[schema(required)]
    pub next_page: Option<String>,
}

/// `POST /v1/sessions/{id}/resources/{resource_id}`: the SDK's update, which
/// only rotates a `github_repository` token.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceUpdate {
    pub authorization_token: String,
}

impl super::Validate for ResourceUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// The body of `resources.add`, read as it comes (see [`parse_param`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct ResourceParam(pub Value);

impl super::Validate for ResourceParam {
    fn validate(&self) -> Result<(), Invalid> {
        parse_param("", &self.0).map(|_| ())
    }
}

/// A file resource asked for (at create, or with `resources.add`), its
/// fields checked but its file not yet looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub file_id: String,
    pub mount_path: String,
}

/// Read one resource param (`field` names it in errors): a `file` with its
/// mount path settled, or why it is refused.
pub fn parse_param(field: &str, v: &Value) -> Result<FileMount, Invalid> {
    // Fields are named under `field` (`resources[0].file_id`), or alone
    // when it is empty (the body of `resources.add`).
    let at = |k: &str| if field.is_empty() { k.to_owned() } else { format!("{field}.{k}") };
    let whole = if field.is_empty() { "the resource" } else { field };
    let obj = v.as_object().ok_or_else(|| Invalid::new(format!("{whole}: must be an object")))?;
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
    let allowed: &[&str] = match kind {
        "file" => &["type", "file_id", "mount_path"],
        "github_repository" => {
            return Err(Invalid::new(format!(
                "{whole}: `github_repository` resources are not supported by this server yet"
            )));
        }
        "memory_store" => {
            return Err(Invalid::new(format!(
                "{whole}: `memory_store` resources are not supported: this server has no memory stores"
            )));
        }
        "" => return Err(Invalid::new(format!("{}: required (`file`)", at("type")))),
        other => return Err(Invalid::new(format!("{}: unknown resource type `{other}`; expected `file`", at("type")))),
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Invalid::new(format!("{}: unknown field for a `{kind}` resource", at(k))));
    }
    let file_id = match obj.get("file_id") {
        Some(Value::String(s)) if crate::ids::has_kind(s, crate::ids::Kind::File) => s.clone(),
        Some(Value::String(s)) => {
            return Err(Invalid::new(format!("{}: `{s}` is not a file id (file_...)", at("file_id"))));
        }
        Some(_) => return Err(Invalid::new(format!("{}: must be a string", at("file_id")))),
        None => return Err(Invalid::new(format!("{}: required", at("file_id")))),
    };
    let mount_path = match obj.get("mount_path") {
        None | Some(Value::Null) => format!("{UPLOADS_DIR}/{file_id}"),
        Some(Value::String(p)) => check_mount_path(&at("mount_path"), p)?,
        Some(_) => return Err(Invalid::new(format!("{}: must be a string", at("mount_path")))),
    };
    Ok(FileMount { file_id, mount_path })
}

/// A mount path as given, checked: absolute, no `.`, `..` or empty
/// components, no control characters, under one of [`MOUNT_ROOTS`] (not the
/// root itself). Returned as given (a trailing `/` refused, not trimmed).
pub fn check_mount_path(field: &str, p: &str) -> Result<String, Invalid> {
    let roots = MOUNT_ROOTS.map(|r| format!("`{r}/`")).join(" or ");
    if p.len() > MAX_MOUNT_PATH {
        return Err(Invalid::new(format!("{field}: longer than {MAX_MOUNT_PATH} bytes")));
    }
    if p.chars().any(char::is_control) {
        return Err(Invalid::new(format!("{field}: must not contain control characters")));
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(Invalid::new(format!("{field}: `{p}` must be an absolute path under {roots}")));
    };
    if rest.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Invalid::new(format!(
            "{field}: `{p}` must be a plain path (no `..`, `.` or empty components, no trailing `/`)"
        )));
    }
    if !MOUNT_ROOTS.iter().any(|r| p.strip_prefix(r).is_some_and(|tail| tail.starts_with('/'))) {
        return Err(Invalid::new(format!(
            "{field}: `{p}` is outside the allowed directories; use a path under {roots}"
        )));
    }
    Ok(p.to_owned())
}

/// Whether two mounts collide: the same path, or one inside the other (a
/// file cannot also be a directory).
pub fn overlaps(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| x.strip_prefix(y).is_some_and(|t| t.starts_with('/'));
    a == b || inside(a, b) || inside(b, a)
}

/// Check a new set of mount paths against the session's existing ones and
/// each other: the first collision, named by the new mount's `field`.
pub fn check_no_overlap<'a>(
    existing: impl IntoIterator<Item = &'a str> + Clone,
    new: &[(String, &'a str)],
) -> Result<(), Invalid> {
    for (i, (field, path)) in new.iter().enumerate() {
        let earlier = new[..i].iter().map(|(_, p)| *p);
        if let Some(other) = existing.clone().into_iter().chain(earlier).find(|o| overlaps(o, path)) {
            return Err(Invalid::new(format!(
                "{field}: `{path}` collides with another resource's mount path `{other}`; give each resource its own path"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const F: &str = "file_01ABC";

    #[test]
    fn params() {
        let ok = [
            (json!({"type": "file", "file_id": F}), "/mnt/session/uploads/file_01ABC"),
            (json!({"type": "file", "file_id": F, "mount_path": null}), "/mnt/session/uploads/file_01ABC"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspace/data/in.csv"}), "/workspace/data/in.csv"),
            (
                json!({"type": "file", "file_id": F, "mount_path": "/mnt/session/uploads/a b.txt"}),
                "/mnt/session/uploads/a b.txt",
            ),
        ];
        for (v, want) in ok {
            let got = parse_param("resources[0]", &v).unwrap();
            assert_eq!(got, FileMount { file_id: F.into(), mount_path: want.into() }, "{v}");
        }
        let long = format!("/workspace/{}", "a".repeat(MAX_MOUNT_PATH));
        let bad = [
            (json!("file"), "resources[0]: must be an object"),
            (json!({"file_id": F}), "resources[0].type: required"),
            (json!({"type": "url", "file_id": F}), "unknown resource type `url`"),
            (json!({"type": "memory_store", "memory_store_id": "memstore_1"}), "no memory stores"),
            (json!({"type": "github_repository", "url": "https://github.com/a/b"}), "`github_repository` resources"),
            (json!({"type": "file"}), "resources[0].file_id: required"),
            (json!({"type": "file", "file_id": "sesn_1"}), "is not a file id"),
            (json!({"type": "file", "file_id": 7}), "file_id: must be a string"),
            (json!({"type": "file", "file_id": F, "extra": 1}), "resources[0].extra: unknown field"),
            (json!({"type": "file", "file_id": F, "mount_path": 3}), "mount_path: must be a string"),
            (json!({"type": "file", "file_id": F, "mount_path": "workspace/a"}), "must be an absolute path"),
            (json!({"type": "file", "file_id": F, "mount_path": "/etc/passwd"}), "outside the allowed directories"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspace"}), "outside the allowed directories"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspacex/a"}), "outside the allowed directories"),
            (json!({"type": "file", "file_id": F, "mount_path": "/mnt/session/outputs/a"}), "outside the allowed"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspace/../etc/passwd"}), "no `..`"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspace/a/./b"}), "no `..`"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspace//a"}), "no `..`"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspace/a/"}), "no trailing"),
            (json!({"type": "file", "file_id": F, "mount_path": "/workspace/a\nb"}), "control characters"),
            (json!({"type": "file", "file_id": F, "mount_path": long}), "longer than 1024"),
        ];
        for (v, want) in bad {
            let err = parse_param("resources[0]", &v).unwrap_err();
            assert!(err.0.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn overlapping_paths() {
        let cases = [
            ("/workspace/a", "/workspace/a", true),
            ("/workspace/a", "/workspace/a/b", true),
            ("/workspace/a/b", "/workspace/a", true),
            ("/workspace/a", "/workspace/ab", false),
            ("/workspace/a", "/mnt/session/uploads/a", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlaps(a, b), want, "{a} {b}");
        }
        let new = |ps: &[&'static str]| -> Vec<(String, &'static str)> {
            ps.iter().enumerate().map(|(i, p)| (format!("resources[{i}].mount_path"), *p)).collect()
        };
        assert!(check_no_overlap([], &new(&["/workspace/a", "/workspace/b"])).is_ok());
        let e = check_no_overlap([], &new(&["/workspace/a", "/workspace/a"])).unwrap_err();
        assert!(e.0.starts_with("resources[1].mount_path: `/workspace/a` collides"), "{e}");
        let e = check_no_overlap(["/workspace/x"], &new(&["/workspace/x/y"])).unwrap_err();
        assert!(e.0.contains("`/workspace/x`"), "{e}");
    }
}
