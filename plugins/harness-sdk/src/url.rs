//! Base-URL parsing for endpoint checks. Plugins carry no URL crate: the
//! checks need only the scheme, host and path of a base URL.

/// The parts of a base URL the checks need.
#[derive(Debug, PartialEq, Eq)]
pub struct Url<'a> {
    pub scheme: &'a str,
    /// Lower-cased host without port or user info.
    pub host: String,
    /// Path without query, without trailing `/`.
    pub path: &'a str,
}

/// Split a base URL; `Err` says what is wrong in words a user can act on.
pub fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let url = url.trim();
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| format!("base URL `{url}` has no scheme; use https://host/..."))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("base URL `{url}` must be http or https, not `{scheme}`"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let after = &rest[end..];
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(stripped) = host_port.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(format!("base URL `{url}` has no host"));
    }
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = after[..path_end].trim_end_matches('/');
    Ok(Url { scheme, host: host.to_ascii_lowercase(), path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        let u = parse_url("https://User@API.Example.com:8443/anthropic/?x=1").unwrap();
        assert_eq!(u.scheme, "https");
        assert_eq!(u.host, "api.example.com");
        assert_eq!(u.path, "/anthropic");
        assert_eq!(parse_url("http://[::1]:80").unwrap().host, "::1");
        assert!(parse_url("api.anthropic.com").is_err());
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("https://").is_err());
    }
}
