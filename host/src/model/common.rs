//! Shapes shared by several resources: metadata maps and field validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::ApiError;

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

/// Validation beyond what the types express, with messages that name the field.
pub trait Validate {
    fn validate(&self) -> Result<(), ApiError>;
}

pub fn check_metadata(field: &str, m: &Metadata) -> Result<(), ApiError> {
    if m.len() > 16 {
        return Err(ApiError::invalid(format!("{field}: at most 16 pairs are allowed, got {}", m.len())));
    }
    for (k, v) in m {
        check_len(&format!("{field} key"), k, 1, 64)?;
        check_len(&format!("{field}.{k}"), v, 0, 512)?;
    }
    Ok(())
}

/// Apply a patch; `""` also deletes, as the environments docs say.
pub fn apply_metadata_patch(field: &str, current: &mut Metadata, patch: &MetadataPatch) -> Result<(), ApiError> {
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

pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min {
        return Err(if min == 1 {
            ApiError::invalid(format!("{field}: must not be empty"))
        } else {
            ApiError::invalid(format!("{field}: must be at least {min} characters"))
        });
    }
    if n > max {
        return Err(ApiError::invalid(format!("{field}: must be at most {max} characters, got {n}")));
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
