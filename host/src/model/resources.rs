//! Session resources (`resources` at session create, and
//! `client.beta.sessions.resources`): the wire shapes, and the pure rules of
//! what may be mounted where.
//!
//! `file` and `github_repository` resources are served. `memory_store` is
//! refused with a message naming it (no silent acceptance).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::Invalid;

/// Where a file resource goes when no `mount_path` is given (plus its file id).
pub const UPLOADS_DIR: &str = "/mnt/session/uploads";
/// Where a repository goes when no `mount_path` is given (plus its name).
pub const REPOS_DIR: &str = "/workspace";
/// Files the agent writes here become the session's output files.
pub const OUTPUTS_DIR: &str = "/mnt/session/outputs";
/// The directories a resource may be mounted under.
pub const MOUNT_ROOTS: [&str; 2] = [REPOS_DIR, UPLOADS_DIR];
/// The longest `mount_path`, in bytes.
pub const MAX_MOUNT_PATH: usize = 1024;
/// Most resources one session holds.
pub const MAX_RESOURCES: usize = 100;
/// The longest repository URL and token, in bytes.
pub const MAX_URL: usize = 2048;
pub const MAX_TOKEN: usize = 4096;

/// A resource as the API returns it: a `file` (the SDK's
/// `BetaManagedAgentsFileResource`) or a `github_repository`
/// (`BetaManagedAgentsGitHubRepositoryResource`; its token is write-only and
/// never part of this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionResource {
    /// `sesrsc_...`
    pub id: String,
    /// `file` or `github_repository`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(file|github_repository)$")]
    pub kind: String,
    /// `file` resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// `github_repository` resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `github_repository` resources: the branch or commit checked out
    /// (the default branch when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<Checkout>,
    pub mount_path: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A resource as a session stores it: what the API shows, plus a
/// repository's token sealed with the server's secret key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResource {
    #[serde(flatten)]
    pub resource: SessionResource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_token: Option<String>,
}

/// A stored resource as the API may show it: without its sealed token.
pub fn hide_secrets(stored: &mut Value) {
    if let Some(o) = stored.as_object_mut() {
        o.remove("sealed_token");
    }
}

/// The branch or commit of a repository to check out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Checkout {
    Branch { name: String },
    Commit { sha: String },
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
        check_token("authorization_token", &self.authorization_token)
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

/// A repository resource asked for, its fields checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoMount {
    pub url: String,
    pub token: Option<String>,
    pub checkout: Option<Checkout>,
    pub mount_path: String,
}

/// One resource param, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceSpec {
    File(FileMount),
    Repo(RepoMount),
}

impl ResourceSpec {
    pub fn mount_path(&self) -> &str {
        match self {
            ResourceSpec::File(f) => &f.mount_path,
            ResourceSpec::Repo(r) => &r.mount_path,
        }
    }
}

/// Read one resource param (`field` names it in errors): a `file` or a
/// `github_repository` with its mount path settled, or why it is refused.
pub fn parse_param(field: &str, v: &Value) -> Result<ResourceSpec, Invalid> {
    // Fields are named under `field` (`resources[0].file_id`), or alone
    // when it is empty (the body of `resources.add`).
    let at = |k: &str| if field.is_empty() { k.to_owned() } else { format!("{field}.{k}") };
    let whole = if field.is_empty() { "the resource" } else { field };
    let obj = v.as_object().ok_or_else(|| Invalid::new(format!("{whole}: must be an object")))?;
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
    let allowed: &[&str] = match kind {
        "file" => &["type", "file_id", "mount_path"],
        "github_repository" => &["type", "url", "authorization_token", "checkout", "mount_path"],
        "memory_store" => {
            return Err(Invalid::new(format!(
                "{whole}: `memory_store` resources are not supported yet: memory stores (/v1/memory_stores) cannot be \
                 mounted into sessions on this server"
            )));
        }
        "" => return Err(Invalid::new(format!("{}: required (`file` or `github_repository`)", at("type")))),
        other => {
            return Err(Invalid::new(format!(
                "{}: unknown resource type `{other}`; expected `file` or `github_repository`",
                at("type")
            )));
        }
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Invalid::new(format!("{}: unknown field for a `{kind}` resource", at(k))));
    }
    let given_path = match obj.get("mount_path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(check_mount_path(&at("mount_path"), p)?),
        Some(_) => return Err(Invalid::new(format!("{}: must be a string", at("mount_path")))),
    };
    if kind == "github_repository" {
        return parse_repo(&at, obj, given_path).map(ResourceSpec::Repo);
    }
    let file_id = match obj.get("file_id") {
        Some(Value::String(s)) if crate::ids::has_kind(s, crate::ids::Kind::File) => s.clone(),
        Some(Value::String(s)) => {
            return Err(Invalid::new(format!("{}: `{s}` is not a file id (file_...)", at("file_id"))));
        }
        Some(_) => return Err(Invalid::new(format!("{}: must be a string", at("file_id")))),
        None => return Err(Invalid::new(format!("{}: required", at("file_id")))),
    };
    let mount_path = given_path.unwrap_or_else(|| format!("{UPLOADS_DIR}/{file_id}"));
    Ok(ResourceSpec::File(FileMount { file_id, mount_path }))
}

fn parse_repo(
    at: &dyn Fn(&str) -> String,
    obj: &serde_json::Map<String, Value>,
    given_path: Option<String>,
) -> Result<RepoMount, Invalid> {
    let url = match obj.get("url") {
        Some(Value::String(u)) => u.clone(),
        Some(_) => return Err(Invalid::new(format!("{}: must be a string", at("url")))),
        None => return Err(Invalid::new(format!("{}: required", at("url")))),
    };
    let name = repo_name(&at("url"), &url)?;
    let token = match obj.get("authorization_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => {
            check_token(&at("authorization_token"), t)?;
            Some(t.clone())
        }
        Some(_) => return Err(Invalid::new(format!("{}: must be a string", at("authorization_token")))),
    };
    let checkout = match obj.get("checkout") {
        None | Some(Value::Null) => None,
        Some(c) => Some(parse_checkout(&at("checkout"), c)?),
    };
    let mount_path = match given_path {
        Some(p) => p,
        None => check_mount_path(&at("mount_path"), &format!("{REPOS_DIR}/{name}"))?,
    };
    Ok(RepoMount { url, token, checkout, mount_path })
}

/// The repository's name (the URL's last path segment, without `.git`),
/// after checking the URL: `https://` (or `http://`), a host, a path, no
/// user name or password (the token goes in `authorization_token`), no
/// query or fragment.
pub fn repo_name(field: &str, url: &str) -> Result<String, Invalid> {
    if url.len() > MAX_URL {
        return Err(Invalid::new(format!("{field}: longer than {MAX_URL} bytes")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| Invalid::new(format!("{field}: `{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(Invalid::new(format!("{field}: `{url}` must be an https:// URL of a git repository")));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Invalid::new(format!("{field}: `{url}` names no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Invalid::new(format!(
            "{field}: must not carry credentials; give the token as `authorization_token`"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Invalid::new(format!("{field}: `{url}` must not have a query or fragment")));
    }
    let last = parsed.path_segments().and_then(|mut s| s.rfind(|s| !s.is_empty())).unwrap_or_default();
    let name = last.strip_suffix(".git").unwrap_or(last);
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name == "." || name == ".." || !plain {
        return Err(Invalid::new(format!(
            "{field}: `{url}` does not end in a repository name (like https://github.com/owner/repo)"
        )));
    }
    Ok(name.to_owned())
}

/// A token as given: non-empty, not too long, and safe in a header.
pub fn check_token(field: &str, t: &str) -> Result<(), Invalid> {
    if t.is_empty() {
        return Err(Invalid::new(format!("{field}: must not be empty")));
    }
    if t.len() > MAX_TOKEN {
        return Err(Invalid::new(format!("{field}: longer than {MAX_TOKEN} bytes")));
    }
    if t.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(Invalid::new(format!("{field}: must be printable ASCII")));
    }
    Ok(())
}

fn parse_checkout(field: &str, v: &Value) -> Result<Checkout, Invalid> {
    let c: Checkout = serde_json::from_value(v.clone()).map_err(|_| {
        Invalid::new(format!(
            "{field}: must be {{\"type\": \"branch\", \"name\"}} or {{\"type\": \"commit\", \"sha\"}}"
        ))
    })?;
    match &c {
        Checkout::Branch { name } => {
            let bad = name.is_empty()
                || name.starts_with('-')
                || name.len() > 255
                || name.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
                || name.contains("..");
            if bad {
                return Err(Invalid::new(format!("{field}.name: `{name}` is not a valid branch name")));
            }
        }
        Checkout::Commit { sha } => {
            if !(sha.len() == 40 || sha.len() == 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Invalid::new(format!("{field}.sha: `{sha}` must be a full commit SHA (40 hex digits)")));
            }
        }
    }
    Ok(c)
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

/// A self-hosted environment's tools run on its workers, and Bridle has no
/// way to place a file or a repository there (the SDK's worker fetches only
/// skills and memory stores): such resources are refused, not silently left
/// in a sandbox the agent's tools never see. `field` as for [`parse_param`].
pub fn check_self_hosted(environment_id: &str, field: &str, params: &[Value]) -> Result<(), Invalid> {
    for (i, p) in params.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
        if matches!(kind, "file" | "github_repository") {
            let at = if field.is_empty() { "the resource".to_owned() } else { format!("{field}[{i}]") };
            return Err(Invalid::new(format!(
                "{at}: `{kind}` resources are not supported in self_hosted environments: environment \
                 `{environment_id}` runs the session's tools on its own workers, where Bridle cannot place files; \
                 have the worker's machine hold them"
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
    fn files_and_repositories_are_refused_on_workers() {
        let file = json!({"type": "file", "file_id": F});
        let repo = json!({"type": "github_repository", "url": "https://github.com/o/r"});
        let e = check_self_hosted("env_1", "resources", &[json!({"type": "x"}), repo]).unwrap_err();
        assert!(
            e.0.starts_with("resources[1]: `github_repository` resources are not supported in self_hosted"),
            "{}",
            e.0
        );
        assert!(e.0.contains("env_1"), "{}", e.0);
        let e = check_self_hosted("env_1", "", &[file]).unwrap_err();
        assert!(e.0.starts_with("the resource: `file`"), "{}", e.0);
        assert!(check_self_hosted("env_1", "resources", &[]).is_ok());
    }

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
            assert_eq!(got, ResourceSpec::File(FileMount { file_id: F.into(), mount_path: want.into() }), "{v}");
        }
        let long = format!("/workspace/{}", "a".repeat(MAX_MOUNT_PATH));
        let bad = [
            (json!("file"), "resources[0]: must be an object"),
            (json!({"file_id": F}), "resources[0].type: required"),
            (json!({"type": "url", "file_id": F}), "unknown resource type `url`"),
            (json!({"type": "memory_store", "memory_store_id": "memstore_1"}), "cannot be mounted"),
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
    fn repositories() {
        const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
        let repo = |url: &str, token: Option<&str>, checkout: Option<Checkout>, path: &str| {
            ResourceSpec::Repo(RepoMount {
                url: url.into(),
                token: token.map(Into::into),
                checkout,
                mount_path: path.into(),
            })
        };
        let branch = |n: &str| Some(Checkout::Branch { name: n.into() });
        let ok = [
            (
                json!({"type": "github_repository", "url": "https://github.com/o/app"}),
                repo("https://github.com/o/app", None, None, "/workspace/app"),
            ),
            (
                json!({"type": "github_repository", "url": "https://github.com/o/app.git", "authorization_token": "ghp_x", "checkout": {"type": "branch", "name": "feature/x"}}),
                repo("https://github.com/o/app.git", Some("ghp_x"), branch("feature/x"), "/workspace/app"),
            ),
            (
                json!({"type": "github_repository", "url": "http://127.0.0.1:8080/r/lib/", "checkout": {"type": "commit", "sha": SHA}, "mount_path": "/workspace/src/lib"}),
                repo(
                    "http://127.0.0.1:8080/r/lib/",
                    None,
                    Some(Checkout::Commit { sha: SHA.into() }),
                    "/workspace/src/lib",
                ),
            ),
            (
                json!({"type": "github_repository", "url": "https://github.com/o/app", "checkout": null, "authorization_token": null}),
                repo("https://github.com/o/app", None, None, "/workspace/app"),
            ),
        ];
        for (v, want) in ok {
            assert_eq!(parse_param("resources[0]", &v).unwrap(), want, "{v}");
        }
        let gh = |extra: serde_json::Value| {
            let mut v = json!({"type": "github_repository", "url": "https://github.com/o/app"});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        };
        let bad = [
            (json!({"type": "github_repository"}), "resources[0].url: required"),
            (gh(json!({"url": 3})), "url: must be a string"),
            (gh(json!({"url": "github.com/o/app"})), "is not a URL"),
            (gh(json!({"url": "ssh://git@github.com/o/app"})), "must be an https:// URL"),
            (gh(json!({"url": "file:///srv/app"})), "must be an https:// URL"),
            (gh(json!({"url": "https://u:p@github.com/o/app"})), "must not carry credentials"),
            (gh(json!({"url": "https://github.com/o/app?x=1"})), "query or fragment"),
            (gh(json!({"url": "https://github.com/"})), "does not end in a repository name"),
            (gh(json!({"url": "https://github.com/o/.git"})), "does not end in a repository name"),
            (gh(json!({"url": "https://github.com/o/a%20b"})), "does not end in a repository name"),
            (gh(json!({"authorization_token": ""})), "authorization_token: must not be empty"),
            (gh(json!({"authorization_token": "a\r\nX-Evil: 1"})), "authorization_token: must be printable ASCII"),
            (gh(json!({"authorization_token": 5})), "authorization_token: must be a string"),
            (gh(json!({"checkout": "main"})), "resources[0].checkout: must be"),
            (gh(json!({"checkout": {"type": "tag", "name": "v1"}})), "resources[0].checkout: must be"),
            (gh(json!({"checkout": {"type": "branch"}})), "resources[0].checkout: must be"),
            (gh(json!({"checkout": {"type": "branch", "name": "-f"}})), "checkout.name: `-f` is not a valid"),
            (gh(json!({"checkout": {"type": "branch", "name": "a..b"}})), "not a valid branch name"),
            (gh(json!({"checkout": {"type": "commit", "sha": "abc123"}})), "checkout.sha: `abc123` must be a full"),
            (gh(json!({"mount_path": "/etc/app"})), "outside the allowed directories"),
            (gh(json!({"mount_path": "/workspace/../app"})), "no `..`"),
            (gh(json!({"file_id": F})), "resources[0].file_id: unknown field for a `github_repository`"),
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
