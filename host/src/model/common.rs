//! Shapes shared by several resources: metadata maps and field validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `metadata`: at most 16 pairs, keys up to 64 characters, values up to 512.
pub type Metadata = BTreeMap<String, String>;

/// A metadata patch: a string upserts the key, `null` deletes it.
pub type MetadataPatch = BTreeMap<String, Option<String>>;

// OpenAPI schemas for the two aliases above (an alias has no schema of its own).

/// Up to 16 key-value pairs; keys up to 64 characters, values up to 512.
#[derive(ToSchema)]
#[schema(as = Metadata)]
#[allow(dead_code)]
pub struct MetadataSchema(BTreeMap<String, String>);

/// A string sets the key; `null` or `""` deletes it.
#[derive(ToSchema)]
#[schema(as = MetadataPatch)]
#[allow(dead_code)]
pub struct MetadataPatchSchema(BTreeMap<String, Option<String>>);

/// A request that breaks a rule of the API, with a message that names the
/// field. The API layer answers it as `invalid_request_error` (400); the model
/// knows nothing of HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}

/// The keys a metadata patch sets (not those it deletes).
pub fn patch_sets(patch: &MetadataPatch) -> impl Iterator<Item = &String> {
    patch.iter().filter(|(_, v)| v.as_deref().is_some_and(|v| !v.is_empty())).map(|(k, _)| k)
}

/// An object archived by stamping its wire fields (`archived_at`, `updated_at`).
pub trait Archivable {
    fn stamp_archived(&mut self, at: String);
}

/// Validation beyond what the types express, with messages that name the field.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid>;
}

pub fn check_metadata(field: &str, m: &Metadata) -> Result<(), Invalid> {
    if m.len() > 16 {
        return Err(Invalid::new(format!("{field}: at most 16 pairs are allowed, got {}", m.len())));
    }
    for (k, v) in m {
        check_len(&format!("{field} key"), k, 1, 64)?;
        check_len(&format!("{field}.{k}"), v, 0, 512)?;
    }
    Ok(())
}

/// Apply a patch; `""` also deletes, as the environments docs say.
pub fn apply_metadata_patch(field: &str, current: &mut Metadata, patch: &MetadataPatch) -> Result<(), Invalid> {
    for (k, v) in patch {
        match v {
            Some(v) if !v.is_empty() => {
                current.insert(k.clone(), v.clone());
            }
            _ => {
                current.remove(k);
            }
        }
    }
    check_metadata(field, current)
}

pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = value.chars().count();
    if n < min {
        return Err(if min == 1 {
            Invalid::new(format!("{field}: must not be empty"))
        } else {
            Invalid::new(format!("{field}: must be at least {min} characters"))
        });
    }
    if n > max {
        return Err(Invalid::new(format!("{field}: must be at most {max} characters, got {n}")));
    }
    Ok(())
}

/// `{"id": ..., "type": "<kind>_deleted"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A nullable field in an update: absent (keep), `null` (clear), or a value.
pub type Patch<T> = Option<Option<T>>;
