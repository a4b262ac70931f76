//! The model route's path check: the request path (after `/llm`) is
//! normalized first (percent-decoding, `.`/`..` segments, duplicate
//! slashes), then must be one of the endpoints the harness's API shape
//! needs. Only the normalized path is forwarded, under the base URL's path,
//! so what was checked is what the upstream sees.

use http::Method;

use crate::spec::ModelEndpoint;

/// Why a model-route request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathDenial {
    /// The path does not decode to a clean absolute path (`..` above the
    /// root, encoded NUL or control bytes, invalid UTF-8).
    Malformed,
    /// A clean path, but not one of the allowed endpoints.
    NotAllowed(String),
    /// An allowed path with another method.
    Method(Method, String),
}

/// `rest` (the path after `/llm`, possibly empty) in normal form: decoded,
/// `/`-separated, no empty, `.` or `..` segments, leading `/`, no trailing
/// `/`.
pub fn normalize(rest: &str) -> Result<String, PathDenial> {
    let decoded = percent_decode(rest).ok_or(PathDenial::Malformed)?;
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathDenial::Malformed);
    }
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop().ok_or(PathDenial::Malformed)?;
            }
            s => segs.push(s),
        }
    }
    Ok(format!("/{}", segs.join("/")))
}

/// The endpoint `method` + `rest` names, if allowed; the normalized path.
pub fn check(allowed: &[ModelEndpoint], method: &Method, rest: &str) -> Result<String, PathDenial> {
    let path = normalize(rest)?;
    let mut path_known = false;
    for e in allowed {
        if normalize(&e.path).ok().as_deref() == Some(path.as_str()) {
            if e.method == *method {
                return Ok(path);
            }
            path_known = true;
        }
    }
    if path_known { Err(PathDenial::Method(method.clone(), path)) } else { Err(PathDenial::NotAllowed(path)) }
}

/// Percent-decoding of a whole path (`None` on a bad escape or invalid
/// UTF-8). Decoding once is enough: a `%25` becomes `%`, which no allowed
/// path contains.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anthropic() -> Vec<ModelEndpoint> {
        vec![ModelEndpoint::post("/v1/messages"), ModelEndpoint::post("/v1/messages/count_tokens")]
    }

    #[test]
    fn normalizes() {
        for (raw, want) in [
            ("/v1/messages", Ok("/v1/messages")),
            ("//v1///messages/", Ok("/v1/messages")),
            ("/v1/./messages", Ok("/v1/messages")),
            ("/v1/x/../messages", Ok("/v1/messages")),
            ("/v1/%6Dessages", Ok("/v1/messages")),
            ("/v1/messages%2fcount_tokens", Ok("/v1/messages/count_tokens")),
            ("/%2e%2e/secret", Err(PathDenial::Malformed)),
            ("/..", Err(PathDenial::Malformed)),
            ("/v1/%2E%2E/%2e%2e/admin", Err(PathDenial::Malformed)),
            ("/v1/%00", Err(PathDenial::Malformed)),
            ("/v1/%zz", Err(PathDenial::Malformed)),
            ("/v1/%ff", Err(PathDenial::Malformed)),
            ("/v1\\..\\x", Err(PathDenial::Malformed)),
            ("", Ok("/")),
        ] {
            assert_eq!(normalize(raw), want.map(str::to_string), "{raw}");
        }
    }

    #[test]
    fn only_the_declared_endpoints() {
        let a = anthropic();
        assert_eq!(check(&a, &Method::POST, "/v1/messages"), Ok("/v1/messages".into()));
        assert_eq!(check(&a, &Method::POST, "/v1//messages/"), Ok("/v1/messages".into()));
        assert_eq!(check(&a, &Method::POST, "/v1/messages/count_tokens"), Ok("/v1/messages/count_tokens".into()));
        assert_eq!(
            check(&a, &Method::GET, "/v1/messages"),
            Err(PathDenial::Method(Method::GET, "/v1/messages".into()))
        );
        assert!(check(&a, &Method::DELETE, "/v1/messages").is_err());
        assert_eq!(check(&a, &Method::POST, "/v1/files"), Err(PathDenial::NotAllowed("/v1/files".into())));
        assert_eq!(check(&a, &Method::POST, "/v1/messages/../files"), Err(PathDenial::NotAllowed("/v1/files".into())));
        assert_eq!(check(&a, &Method::POST, "/v1/messages/%2e%2e/%2e%2e/%2e%2e/x"), Err(PathDenial::Malformed));
        assert_eq!(
            check(&a, &Method::POST, "/v1/messages/batches"),
            Err(PathDenial::NotAllowed("/v1/messages/batches".into()))
        );
        assert!(check(&[], &Method::POST, "/v1/messages").is_err());
    }
}
