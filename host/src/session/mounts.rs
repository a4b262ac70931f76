//! Placing a session's resources in its sandbox. Repositories are cloned by
//! [`super::repos`]; a failed clone becomes a notice for the runner (a
//! `session.error`) and is tried again before the next turn.
//!
//! Each `file` resource is streamed from the store and placed read-only
//! ([`Sandbox::place_read_only`]: root-owned, mode 0444, where the driver
//! can) at its `mount_path` before the runtime starts in a new sandbox (before the first tool call, for a
//! sandbox claimed lazily), and before each turn for resources added since.
//! Which files a sandbox already holds is remembered per sandbox instance.
//!
//! Files named by `user.message` content (`{"type": "file", "file_id"}`
//! image and document sources) are placed the same way, at
//! `/mnt/session/uploads/<file_id>`, and the message the runtime gets points
//! at them ([`point_at_files`]): every runtime reads files, not every one
//! takes every inline content type.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bridle_sandbox::Sandbox;
use futures::TryStreamExt;
use tokio::sync::Mutex;

use serde_json::{Value, json};

use super::repos::Repos;
use crate::model::resources::{SessionResource, StoredResource, UPLOADS_DIR};
use crate::store::Store;

/// The resources of one session, and what its current sandbox holds.
pub(crate) struct Mounts {
    store: Store,
    repos: Arc<Repos>,
    session_id: String,
    /// Repositories that could not be made ready since the runner last
    /// looked: their `session.error` objects.
    notices: std::sync::Mutex<Vec<serde_json::Map<String, Value>>>,
    /// The sandbox instance (`sbx_...`) and the resources placed in it.
    placed: Mutex<(String, HashSet<String>)>,
    /// Files named by messages so far: placed in every sandbox too.
    message_files: Mutex<Vec<SessionResource>>,
}

impl Mounts {
    pub fn new(store: Store, repos: Arc<Repos>, session_id: &str) -> Arc<Mounts> {
        Arc::new(Mounts {
            store,
            repos,
            session_id: session_id.to_owned(),
            notices: std::sync::Mutex::new(Vec::new()),
            placed: Mutex::new((String::new(), HashSet::new())),
            message_files: Mutex::new(Vec::new()),
        })
    }

    /// The session's repositories, for the gateway's git route.
    pub fn git_routes(&self) -> bridle_sandbox::egress::git_route::GitRoutes {
        bridle_sandbox::egress::git_route::GitRoutes(self.repos.clone())
    }

    /// The `session.error` objects of repositories that failed since the
    /// last call.
    pub fn take_notices(&self) -> Vec<serde_json::Map<String, Value>> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Place every resource `sandbox` does not hold yet. A resource whose
    /// file was deleted since is skipped (and logged); a repository that
    /// cannot be cloned is a notice (and tried again next time); any other
    /// failure is the error.
    pub async fn sync(&self, sandbox: &dyn Sandbox) -> Result<(), String> {
        let mut placed = self.placed.lock().await;
        if placed.0 != sandbox.id() {
            *placed = (sandbox.id().to_owned(), HashSet::new());
        }
        let row = self
            .store
            .get_session(&self.session_id)
            .await
            .map_err(|e| format!("reading the session's resources failed: {e}"))?
            .ok_or_else(|| format!("session `{}` was deleted", self.session_id))?;
        let mut wanted: Vec<StoredResource> =
            row.session.resources.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
        let messages = self.message_files.lock().await.clone();
        wanted.extend(messages.into_iter().map(|resource| StoredResource { resource, sealed_token: None }));
        let todo: Vec<StoredResource> = wanted.into_iter().filter(|r| !placed.1.contains(&r.resource.id)).collect();
        for r in todo {
            if r.resource.kind == "github_repository" {
                if let Err(f) = self.repos.place(sandbox, &r).await {
                    tracing::warn!(resource_id = %r.resource.id, error_type = f.kind.as_str(), message = %f.message, "repository not ready");
                    self.notices.lock().unwrap_or_else(|e| e.into_inner()).push(f.error_object());
                    continue;
                }
            } else {
                place(&self.store, sandbox, &r.resource).await?;
                tracing::info!(resource_id = %r.resource.id, file_id = ?r.resource.file_id, mount_path = %r.resource.mount_path, "file resource placed");
            }
            placed.1.insert(r.resource.id);
        }
        Ok(())
    }
}

impl Mounts {
    /// A `user.message` body as the runtime gets it: its file sources
    /// placed (now, when a sandbox runs, else when one is claimed) and
    /// pointed at. A body without file sources is returned as it is.
    pub async fn message_for_runtime(&self, body: &Value, sandbox: Option<&dyn Sandbox>) -> Value {
        let ids = message_file_ids(body);
        if ids.is_empty() {
            return body.clone();
        }
        let mut names = HashMap::new();
        {
            let mut files = self.message_files.lock().await;
            for id in &ids {
                if let Ok(Some(f)) = self.store.get_file(id).await {
                    names.insert(id.clone(), (f.filename, f.mime_type));
                }
                if !files.iter().any(|r| r.file_id.as_ref() == Some(id)) {
                    files.push(SessionResource {
                        id: format!("message:{id}"),
                        kind: "file".into(),
                        file_id: Some(id.clone()),
                        url: None,
                        checkout: None,
                        mount_path: format!("{UPLOADS_DIR}/{id}"),
                        created_at: String::new(),
                        updated_at: String::new(),
                    });
                }
            }
        }
        if let Some(sandbox) = sandbox
            && let Err(e) = self.sync(sandbox).await
        {
            tracing::warn!(error = %e, "placing a message's files failed");
        }
        point_at_files(body, &names)
    }
}

/// The file ids a message's image and document blocks name (pure).
pub fn message_file_ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for b in body.get("content").and_then(Value::as_array).into_iter().flatten() {
        if let Some(id) = file_source(b)
            && !ids.iter().any(|i| i == id)
        {
            ids.push(id.to_owned());
        }
    }
    ids
}

fn file_source(block: &Value) -> Option<&str> {
    let kind = block.get("type").and_then(Value::as_str)?;
    let source = block.get("source")?;
    (matches!(kind, "image" | "document") && source.get("type").and_then(Value::as_str) == Some("file"))
        .then(|| source.get("file_id").and_then(Value::as_str))
        .flatten()
}

/// Replace each file-sourced block of a message with a text block naming
/// where the file is in the sandbox (and its name, type, and a document's
/// title and context), given `names`: file id → (filename, MIME type).
/// Pure.
pub fn point_at_files(body: &Value, names: &HashMap<String, (String, String)>) -> Value {
    let mut out = body.clone();
    let Some(blocks) = out.get_mut("content").and_then(Value::as_array_mut) else { return out };
    for b in blocks.iter_mut() {
        let Some(id) = file_source(b).map(str::to_owned) else { continue };
        let kind = b.get("type").and_then(Value::as_str).unwrap_or("document").to_owned();
        let mut text = format!("[Attached {kind}: {UPLOADS_DIR}/{id}");
        if let Some((name, mime)) = names.get(&id) {
            text.push_str(&format!(" ({name}, {mime})"));
        }
        for key in ["title", "context"] {
            if let Some(v) = b.get(key).and_then(Value::as_str) {
                text.push_str(&format!("; {key}: {v}"));
            }
        }
        text.push(']');
        *b = json!({"type": "text", "text": text});
    }
    out
}

/// Place one file resource in the sandbox, read-only, streaming its
/// chunks from the store (no file is ever whole in memory).
async fn place(store: &Store, sandbox: &dyn Sandbox, r: &SessionResource) -> Result<(), String> {
    let file_id = r.file_id.as_deref().unwrap_or_default();
    let Some(file) = store.get_file(file_id).await.map_err(|e| format!("reading file `{file_id}`: {e}"))? else {
        tracing::warn!(resource_id = %r.id, file_id, "the file of a session resource was deleted; not placed");
        return Ok(());
    };
    let id = file_id.to_owned();
    let chunks = store.file_content(&file).map_err(move |e| std::io::Error::other(format!("reading file `{id}`: {e}")));
    let content = Box::pin(tokio_util::io::StreamReader::new(chunks));
    sandbox
        .place_read_only(&r.mount_path, content)
        .await
        .map_err(|e| format!("resource `{}`: cannot place the file at {}: {e}", r.id, r.mount_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_files_are_pointed_at() {
        let body = json!({"type": "user.message", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "file", "file_id": "file_A"}},
            {"type": "document", "source": {"type": "file", "file_id": "file_B"}, "title": "Spec", "context": "v2"},
            {"type": "document", "source": {"type": "text", "data": "inline", "media_type": "text/plain"}},
            {"type": "image", "source": {"type": "file", "file_id": "file_A"}},
        ]});
        assert_eq!(message_file_ids(&body), ["file_A", "file_B"]);
        let names = HashMap::from([("file_A".to_owned(), ("cat.png".to_owned(), "image/png".to_owned()))]);
        let got = point_at_files(&body, &names);
        assert_eq!(
            got["content"],
            json!([
                {"type": "text", "text": "look"},
                {"type": "text", "text": "[Attached image: /mnt/session/uploads/file_A (cat.png, image/png)]"},
                {"type": "text", "text": "[Attached document: /mnt/session/uploads/file_B; title: Spec; context: v2]"},
                {"type": "document", "source": {"type": "text", "data": "inline", "media_type": "text/plain"}},
                {"type": "text", "text": "[Attached image: /mnt/session/uploads/file_A (cat.png, image/png)]"},
            ])
        );
        assert_eq!(got["type"], "user.message");
        let plain = json!({"type": "user.message", "content": [{"type": "text", "text": "hi"}]});
        assert!(message_file_ids(&plain).is_empty());
        assert_eq!(point_at_files(&plain, &HashMap::new()), plain);
    }
}
