//! A session's `github_repository` resources: cloned by the host (git runs
//! here, never in the sandbox) at the requested branch or commit, then
//! streamed into the sandbox as a tar archive that the sandbox's own user
//! unpacks at the mount path, so the files belong to the sandbox uid.
//!
//! The token reaches the one clone process only, as an `http.extraHeader`
//! in its `GIT_CONFIG_*` environment: never in a process argument, never in
//! the clone's `.git/config`. The clone's `origin` is the gateway's git route
//! (`/git/<resource id>`), which adds the token (looked up from the store
//! each request, so a rotated token applies at once: [`Repos`] is the
//! gateway's [`GitRemotes`]).
//!
//! A failed clone is reported as the API's `repository_*_error`
//! ([`classify`], pure) and tried again before the next turn; the session
//! keeps running without the repository.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bridle_sandbox::egress::git_route::{self, AddressError, GitRemote, GitRemotes};
use bridle_sandbox::egress::policy::AddressPolicy;
use bridle_sandbox::{ExecRequest, Sandbox, Secret};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::model::resources::{Checkout, StoredResource};
use crate::secrets::SecretBox;
use crate::store::Store;

/// The longest a host-side clone (or fetch of a commit) may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of git's stderr is kept for the error message.
const STDERR_KEEP: usize = 600;

/// The API's error types for a repository that could not be made ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoError {
    /// The host rejected the credentials, or wanted some and got none.
    Authentication,
    /// The credentials lack access (HTTP 403).
    Forbidden,
    NotFound,
    /// The branch or commit does not exist.
    Checkout,
    /// Anything else (network, address policy, disk).
    Clone,
}

impl RepoError {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoError::Authentication => "repository_authentication_error",
            RepoError::Forbidden => "repository_forbidden_error",
            RepoError::NotFound => "repository_not_found_error",
            RepoError::Checkout => "repository_checkout_error",
            RepoError::Clone => "repository_clone_error",
        }
    }
}

/// Which git step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `git clone` (with `--branch` for a branch checkout).
    Clone,
    /// Checking out (or fetching) a commit in the clone.
    Commit,
}

/// The error type for a failed git step, from what git said. Pure.
pub fn classify(step: Step, stderr: &str) -> RepoError {
    let s = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if has(&["authentication failed", "could not read username", "could not read password", "returned error: 401"]) {
        RepoError::Authentication
    } else if has(&["returned error: 403"]) {
        RepoError::Forbidden
    } else if has(&["returned error: 404", "not found"]) && !has(&["remote branch", "remote ref"]) {
        RepoError::NotFound
    } else if step == Step::Commit
        || has(&["remote branch", "couldn't find remote ref", "not our ref", "not a tree", "did not match"])
    {
        // Any other failure while getting at a commit is about that commit.
        RepoError::Checkout
    } else {
        RepoError::Clone
    }
}

/// A repository that could not be made ready, as the `error` of a
/// `session.error` (without `retry_status`, which the status machine adds).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: RepoError,
    pub message: String,
    pub url: String,
}

impl Failure {
    pub fn error_object(&self) -> Map<String, Value> {
        let v = json!({"type": self.kind.as_str(), "message": self.message, "repository_url": self.url});
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// The environment of a host-side git process: nothing of the server's
/// own (no proxies, no user or system git config, no credential helpers
/// or prompts), only http(s), no redirects, the repository's host pinned to
/// `pin` (`host:port:address`, checked against the address policy) and
/// the token as a header. Pure.
pub fn git_env(path: &str, home: &str, pin: &str, token: Option<&str>) -> Vec<(String, String)> {
    let mut config = vec![
        ("credential.helper", String::new()),
        ("http.followRedirects", "false".to_owned()),
        ("http.curloptResolve", pin.to_owned()),
        ("core.hooksPath", "/dev/null".to_owned()),
    ];
    if let Some(t) = token {
        config.push(("http.extraHeader", format!("Authorization: {}", git_route::basic_auth(t))));
    }
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path.into()),
        ("HOME".into(), home.into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_ALLOW_PROTOCOL".into(), "http:https".into()),
        ("GIT_CONFIG_COUNT".into(), config.len().to_string()),
    ];
    for (i, (k, v)) in config.into_iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), k.to_owned()));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), v));
    }
    env
}

/// The `git clone` arguments for a checkout (the token is never one). Pure.
pub fn clone_args(url: &str, checkout: Option<&Checkout>, dir: &str) -> Vec<String> {
    let mut args = vec!["clone".to_owned(), "--quiet".to_owned()];
    match checkout {
        Some(Checkout::Branch { name }) => args.extend(["--branch".to_owned(), name.clone()]),
        Some(Checkout::Commit { .. }) => args.push("--no-checkout".to_owned()),
        None => {}
    }
    args.extend(["--".to_owned(), url.to_owned(), dir.to_owned()]);
    args
}

/// Unpacks a tar archive on stdin at `$1`, as the sandbox's user.
const EXTRACT_SCRIPT: &str = r#"set -e
mkdir -p -- "$1"
tar -xf - --no-same-owner -C "$1""#;

/// Clones repositories for a session's sandboxes, and serves the gateway
/// the repositories and their current tokens.
pub(crate) struct Repos {
    store: Store,
    secrets: SecretBox,
    addresses: AddressPolicy,
}

impl Repos {
    pub fn new(store: Store, secrets: SecretBox, addresses: AddressPolicy) -> Arc<Repos> {
        Arc::new(Repos { store, secrets, addresses })
    }

    /// With the host's store, secret key and the operator's address policy
    /// (the one the gateway applies).
    pub fn for_host(host: &super::Sessions) -> Arc<Repos> {
        Repos::new(host.store.clone(), host.secrets.clone(), host.config.egress.address_policy())
    }

    fn token(&self, r: &StoredResource) -> anyhow::Result<Option<Secret>> {
        let Some(sealed) = &r.sealed_token else { return Ok(None) };
        let plain = self.secrets.open(sealed)?;
        Ok(Some(Secret::new(String::from_utf8(plain)?)))
    }

    /// Make the repository ready in `sandbox`: nothing when the workspace
    /// already holds its clone (from an earlier sandbox), else clone and
    /// place it.
    pub async fn place(&self, sandbox: &dyn Sandbox, r: &StoredResource) -> Result<(), Failure> {
        let url = r.resource.url.clone().unwrap_or_default();
        let fail = |kind: RepoError, message: String| Failure { kind, message, url: url.clone() };
        let mount = r.resource.mount_path.as_str();
        let probe = ExecRequest::new(["/bin/sh", "-c", r#"test -e "$1/.git""#, "probe", mount]);
        let present = match sandbox.exec(probe).await {
            Ok(child) => child.output(1024).await.status.success(),
            Err(e) => return Err(fail(RepoError::Clone, format!("the sandbox could not be reached: {e}"))),
        };
        if present {
            return Ok(());
        }
        let token = self.token(r).map_err(|e| {
            tracing::error!(resource_id = %r.resource.id, error = format!("{e:#}"), "opening a repository token failed");
            fail(RepoError::Clone, "the repository's token could not be read by the server".into())
        })?;
        let dir = tempfile::tempdir()
            .map_err(|e| fail(RepoError::Clone, format!("no room for the clone on the server: {e}")))?;
        let origin = format!("{}{}{}", sandbox.proxy_url_inside(), git_route::GIT_PREFIX, r.resource.id);
        self.clone_into(dir.path(), &url, token.as_ref(), r.resource.checkout.as_ref(), &origin)
            .await
            .map_err(|(kind, message)| fail(kind, message))?;
        stream_into(sandbox, &dir.path().join("repo"), mount)
            .await
            .map_err(|e| fail(RepoError::Clone, format!("the clone could not be placed at {mount}: {e}")))?;
        tracing::info!(resource_id = %r.resource.id, mount_path = %mount, "repository cloned");
        Ok(())
    }

    /// Clone `url` into `work/repo` and point its `origin` at `origin`.
    async fn clone_into(
        &self,
        work: &Path,
        url: &str,
        token: Option<&Secret>,
        checkout: Option<&Checkout>,
        origin: &str,
    ) -> Result<(), (RepoError, String)> {
        let parsed = reqwest::Url::parse(url).map_err(|e| (RepoError::Clone, format!("invalid URL: {e}")))?;
        let (host, addrs) = match git_route::resolve(&self.addresses, &parsed).await {
            Ok(r) => r,
            Err(e @ AddressError::Denied(_)) => {
                return Err((RepoError::Clone, format!("the repository's host may not be reached: {e}")));
            }
            Err(AddressError::Failed(e)) => return Err((RepoError::Clone, e)),
        };
        let ip = match addrs[0].ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        let pin = format!("{host}:{}:{ip}", addrs[0].port());
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let env = git_env(&path, &work.to_string_lossy(), &pin, token.map(Secret::expose));
        let repo = work.join("repo");
        let repo_s = repo.to_string_lossy().into_owned();
        let secret = token.map(|t| t.expose().to_owned());
        let git = |args: Vec<String>| run_git(args, &env, work, secret.as_deref());
        git(clone_args(url, checkout, &repo_s)).await.map_err(|e| (classify(Step::Clone, &e), said(&e)))?;
        if let Some(Checkout::Commit { sha }) = checkout {
            let co = |sha: &str| {
                vec![
                    "-C".into(),
                    repo_s.clone(),
                    "checkout".into(),
                    "--quiet".into(),
                    "--detach".into(),
                    sha.to_owned(),
                ]
            };
            if git(co(sha)).await.is_err() {
                // Not on a fetched branch: ask for the commit itself.
                let fetch =
                    vec!["-C".into(), repo_s.clone(), "fetch".into(), "--quiet".into(), "origin".into(), sha.clone()];
                git(fetch).await.map_err(|e| (classify(Step::Commit, &e), said(&e)))?;
                git(co(sha)).await.map_err(|e| (classify(Step::Commit, &e), said(&e)))?;
            }
        }
        let set_url =
            vec!["-C".into(), repo_s.clone(), "remote".into(), "set-url".into(), "origin".into(), origin.to_owned()];
        git(set_url).await.map_err(|e| (RepoError::Clone, said(&e)))?;
        Ok(())
    }
}

/// The last words of git's stderr, for the message.
fn said(stderr: &str) -> String {
    let t = stderr.trim();
    let start = t.len().saturating_sub(STDERR_KEEP);
    let start = (start..=t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(t.len());
    format!("git said: {}", t[start..].replace('\n', " "))
}

/// Run git with `env` only; its stderr (with `secret` blanked) on failure.
async fn run_git(args: Vec<String>, env: &[(String, String)], cwd: &Path, secret: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("git");
    cmd.args(&args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("git could not be run on the server: {e}")),
        Err(_) => return Err(format!("timed out after {}s", GIT_TIMEOUT.as_secs())),
    };
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        stderr = stderr.replace(s, "***");
    }
    Err(stderr)
}

/// Stream `dir` as a tar archive into the sandbox, unpacked at `mount`.
async fn stream_into(sandbox: &dyn Sandbox, dir: &Path, mount: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-cf", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running tar")?;
    let mut archive = tar.stdout.take().context("tar's output")?;
    let mut child = sandbox.exec(ExecRequest::new(["/bin/bash", "-c", EXTRACT_SCRIPT, "place-repo", mount])).await?;
    let mut stdin = child.stdin.take().context("no stdin to write to")?;
    let copied = async {
        tokio::io::copy(&mut archive, &mut stdin).await?;
        stdin.shutdown().await
    }
    .await;
    drop(stdin);
    let out = child.output(4096).await;
    let packed = tar.wait_with_output().await.context("waiting for tar")?;
    anyhow::ensure!(packed.status.success(), "tar: {}", String::from_utf8_lossy(&packed.stderr).trim());
    copied.context("streaming the archive")?;
    anyhow::ensure!(out.status.success(), "unpacking ({}): {}", out.status, out.stderr_str().trim());
    Ok(())
}

#[async_trait]
impl GitRemotes for Repos {
    async fn remote(&self, session_id: &str, resource_id: &str) -> anyhow::Result<Option<GitRemote>> {
        let Some(row) = self.store.get_session(session_id).await? else { return Ok(None) };
        let found = row
            .session
            .resources
            .iter()
            .filter_map(|v| serde_json::from_value::<StoredResource>(v.clone()).ok())
            .find(|r| r.resource.id == resource_id && r.resource.kind == "github_repository");
        let Some(r) = found else { return Ok(None) };
        let token = self.token(&r)?;
        Ok(r.resource.url.map(|url| GitRemote { url, token }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_outcomes() {
        use RepoError::*;
        let cases = [
            (
                Step::Clone,
                "fatal: could not read Username for 'http://127.0.0.1:5/r': terminal prompts disabled",
                Authentication,
            ),
            (
                Step::Clone,
                "remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/o/r/'",
                Authentication,
            ),
            (
                Step::Clone,
                "fatal: unable to access 'http://h/r/': The requested URL returned error: 401",
                Authentication,
            ),
            (Step::Clone, "fatal: unable to access 'http://h/r/': The requested URL returned error: 403", Forbidden),
            (
                Step::Clone,
                "remote: Repository not found.\nfatal: repository 'https://github.com/o/x/' not found",
                NotFound,
            ),
            (Step::Clone, "fatal: unable to access 'http://h/r/': The requested URL returned error: 404", NotFound),
            (
                Step::Clone,
                "warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin",
                Checkout,
            ),
            (
                Step::Clone,
                "fatal: unable to access 'http://h/r/': Failed to connect to h port 80: Connection refused",
                Clone,
            ),
            (Step::Clone, "fatal: the remote end hung up unexpectedly", Clone),
            (Step::Commit, "fatal: reference is not a tree: 0123", Checkout),
            (Step::Commit, "fatal: remote error: upload-pack: not our ref 0123", Checkout),
            (Step::Commit, "error: pathspec '0123' did not match any file(s) known to git", Checkout),
            (Step::Commit, "fatal: couldn't find remote ref 0123", Checkout),
            (Step::Commit, "fatal: something else", Checkout),
            (
                Step::Commit,
                "fatal: could not read Username for 'http://h/r': terminal prompts disabled",
                Authentication,
            ),
        ];
        for (step, stderr, want) in cases {
            assert_eq!(classify(step, stderr), want, "{stderr}");
        }
    }

    #[test]
    fn the_token_is_only_in_the_config_environment() {
        let env = git_env("/usr/bin", "/tmp/h", "h:443:1.2.3.4", Some("tok_secret"));
        let with: Vec<&(String, String)> = env
            .iter()
            .filter(|(_, v)| v.contains("tok_secret") || v.contains(&git_route::basic_auth("tok_secret")))
            .collect();
        assert_eq!(with.len(), 1, "{with:?}");
        let (k, v) = with[0];
        assert!(k.starts_with("GIT_CONFIG_VALUE_"), "{k}");
        assert_eq!(v, &format!("Authorization: {}", git_route::basic_auth("tok_secret")));
        let idx = k.trim_start_matches("GIT_CONFIG_VALUE_");
        let key = env.iter().find(|(k, _)| *k == format!("GIT_CONFIG_KEY_{idx}")).map(|(_, v)| v.as_str());
        assert_eq!(key, Some("http.extraHeader"));
        let count: usize = env.iter().find(|(k, _)| k == "GIT_CONFIG_COUNT").unwrap().1.parse().unwrap();
        assert_eq!(count, env.iter().filter(|(k, _)| k.starts_with("GIT_CONFIG_KEY_")).count());
        assert!(!git_env("/usr/bin", "/tmp/h", "h:443:1.2.3.4", None).iter().any(|(_, v)| v.contains("Authorization")));
        for c in [None, Some(Checkout::Branch { name: "main".into() }), Some(Checkout::Commit { sha: "ab".into() })] {
            let args = clone_args("https://github.com/o/r", c.as_ref(), "/tmp/x/repo");
            assert_eq!(&args[args.len() - 3..], ["--", "https://github.com/o/r", "/tmp/x/repo"]);
        }
        assert!(
            clone_args("u", Some(&Checkout::Branch { name: "dev".into() }), "d")
                .windows(2)
                .any(|w| w == ["--branch", "dev"])
        );
    }

    #[test]
    fn error_objects() {
        let f = Failure { kind: RepoError::NotFound, message: "m".into(), url: "https://h/o/r".into() };
        assert_eq!(
            Value::Object(f.error_object()),
            json!({"type": "repository_not_found_error", "message": "m", "repository_url": "https://h/o/r"})
        );
    }
}
