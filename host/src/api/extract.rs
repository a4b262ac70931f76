//! Request extractors that answer in the error envelope: JSON bodies (with
//! the field path in the message and the size limit enforced), query strings
//! with bracketed array and range keys, and typed path ids.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::ids::{Kind, has_kind};
use crate::model::Validate;

/// A JSON body, parsed strictly and validated.
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json(req, state).await?;
        let parsed: T = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                ApiError::invalid(format!("invalid request body: {}", e.inner()))
            } else {
                ApiError::invalid(format!("{path}: {}", e.inner()))
            }
        })?;
        parsed.validate()?;
        Ok(ApiJson(parsed))
    }
}

/// Read the body (up to the configured limit) as a JSON object.
pub async fn read_json(req: Request, state: &AppState) -> Result<serde_json::Value, ApiError> {
    let limit = state.config.max_body_bytes;
    let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
        // to_bytes reports the limit as a boxed LengthLimitError source.
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge(format!("request body exceeds the limit of {limit} bytes"));
            }
            src = s.source();
        }
        ApiError::invalid(format!("could not read the request body: {e}"))
    })?;
    if bytes.is_empty() {
        return Err(ApiError::invalid("request body is empty; expected a JSON object"));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid("request body must be a JSON object"));
    }
    Ok(value)
}

/// Query parameters, kept as a multi-map so `types[]=a&types[]=b` works.
#[derive(Debug, Default)]
pub struct QueryParams {
    map: BTreeMap<String, Vec<String>>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(QueryParams::parse(parts.uri.query().unwrap_or_default()))
    }
}

impl QueryParams {
    /// A query string (without the `?`).
    pub fn parse(query: &str) -> QueryParams {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        // The SDKs add `?beta=true` to every beta route.
        map.remove("beta");
        QueryParams { map }
    }

    /// Reject parameters the route does not know, so a typo is not ignored.
    pub fn allow(&self, known: &[&str]) -> Result<(), ApiError> {
        for k in self.map.keys() {
            let base = k.strip_suffix("[]").unwrap_or(k);
            if !known.contains(&k.as_str()) && !known.contains(&base) {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{k}`; this route accepts: {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    pub fn one(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.map.get(key).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([v]) => Ok(Some(v.as_str())),
            Some(_) => Err(ApiError::invalid(format!("query parameter `{key}` given more than once"))),
        }
    }

    /// `key[]=a&key[]=b` (or `key=a&key=b`, or `key=a,b`).
    pub fn many(&self, key: &str) -> Vec<String> {
        let bracketed = format!("{key}[]");
        self.map
            .get(&bracketed)
            .into_iter()
            .chain(self.map.get(key))
            .flatten()
            .flat_map(|v| v.split(','))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.one(key)? {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::invalid(format!("query parameter `{key}` must be true or false, got `{v}`"))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.one(key)?
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::invalid(format!("query parameter `{key}` must be an integer, got `{v}`")))
            })
            .transpose()
    }

    /// An RFC 3339 timestamp parameter, as epoch microseconds.
    pub fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.one(key)?
            .map(|v| {
                crate::time::parse_rfc3339(v).ok_or_else(|| {
                    ApiError::invalid(format!("query parameter `{key}` must be an RFC 3339 timestamp, got `{v}`"))
                })
            })
            .transpose()
    }
}

/// Check that a path id has the right prefix; a wrong one is a 404 that
/// says what was expected.
pub fn check_id(kind: Kind, id: &str) -> Result<(), ApiError> {
    if has_kind(id, kind) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "{} `{id}` not found ({} ids start with `{}`)",
            kind.noun(),
            kind.noun(),
            kind.prefix()
        )))
    }
}

/// Whether a request's body is `multipart/form-data` (uploads: files, skills).
pub fn is_multipart(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}
