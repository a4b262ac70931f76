//! The rules of MCP servers and the vault credentials bound to them, pure:
//! what a server name and URL may be, which credential a server's URL
//! takes (scheme, host, port, then the longest path prefix), the one
//! binding per URL a session's vaults may hold, and the agent as the
//! runtime sees it (each server's URL replaced by its gateway route).

use reqwest::Url;
use serde_json::Value;

use super::common::Invalid;

/// The longest server name (it becomes part of tool names and of the
/// gateway route's path).
pub const MAX_NAME: usize = 64;

/// A server name: letters, digits, `_`, `-` (runtimes build tool names
/// such as `mcp__<server>__<tool>` from it, and it is a path segment of the
/// gateway's MCP route).
pub fn check_name(field: &str, name: &str) -> Result<(), Invalid> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Invalid::new(format!("{field}: must be 1 to {MAX_NAME} characters")));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(Invalid::new(format!(
            "{field}: `{name}` may hold only letters, digits, `_` and `-` (it names the server's tools)"
        )));
    }
    Ok(())
}

/// A server (or credential binding) URL: `http(s)://host[:port][/path]`,
/// without user info (a credential belongs in a vault) or fragment.
pub fn check_url(field: &str, url: &str) -> Result<Url, Invalid> {
    let u = Url::parse(url).map_err(|e| Invalid::new(format!("{field}: `{url}` is not a URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(Invalid::new(format!("{field}: must be an http(s) URL")));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(Invalid::new(format!("{field}: names no host")));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Invalid::new(format!(
            "{field}: must not carry a user name or password; put the credential in a vault bound to this URL"
        )));
    }
    if u.fragment().is_some() {
        return Err(Invalid::new(format!("{field}: must not have a #fragment")));
    }
    Ok(u)
}

/// What binding matches on: scheme, host, port, path without trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

fn key(url: &str) -> Option<Key> {
    let u = Url::parse(url).ok()?;
    Some(Key {
        scheme: u.scheme().to_owned(),
        host: u.host_str()?.trim_end_matches('.').to_ascii_lowercase(),
        port: u.port_or_known_default(),
        path: u.path().trim_end_matches('/').to_owned(),
    })
}

/// How well a credential bound to `bound` fits a server at `server`: the
/// length of the matched path prefix, or `None` when it does not apply
/// (another scheme, host or port, or a path outside the prefix).
pub fn fit(bound: &str, server: &str) -> Option<usize> {
    let (b, s) = (key(bound)?, key(server)?);
    if (b.scheme.as_str(), b.host.as_str(), b.port) != (s.scheme.as_str(), s.host.as_str(), s.port) {
        return None;
    }
    let under = s.path == b.path || s.path.starts_with(&format!("{}/", b.path));
    under.then_some(b.path.len())
}

/// A credential bound to an MCP server URL, in one of the session's vaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub credential_id: String,
    pub vault_id: String,
    pub url: String,
}

/// The binding a server's URL takes: the longest matching path prefix.
pub fn binding_for<'a>(server_url: &str, bindings: &'a [Binding]) -> Option<&'a Binding> {
    bindings.iter().filter_map(|b| fit(&b.url, server_url).map(|n| (n, b))).max_by_key(|(n, _)| *n).map(|(_, b)| b)
}

/// A session's vaults may bind one URL once: two credentials for the same
/// scheme, host, port and path would leave the choice to chance.
pub fn check_unique(bindings: &[Binding]) -> Result<(), Invalid> {
    for (i, a) in bindings.iter().enumerate() {
        let Some(ka) = key(&a.url) else { continue };
        if let Some(b) = bindings[..i].iter().find(|b| key(&b.url).as_ref() == Some(&ka)) {
            return Err(Invalid::new(format!(
                "vault_ids: credentials `{}` (vault `{}`) and `{}` (vault `{}`) are both bound to the MCP server URL \
                 `{}`; a session's vaults may hold one credential per MCP server URL",
                b.credential_id, b.vault_id, a.credential_id, a.vault_id, a.url
            )));
        }
    }
    Ok(())
}

/// The agent as the runtime in the sandbox sees it: each MCP server's URL
/// is its route on the gateway (`<relay>/mcp/<name>`).
pub fn routed_agent(agent: &Value, relay: &str) -> Value {
    let mut agent = agent.clone();
    if let Some(servers) = agent.get_mut("mcp_servers").and_then(Value::as_array_mut) {
        for s in servers {
            let Some(name) = s.get("name").and_then(Value::as_str).map(str::to_owned) else { continue };
            s["url"] = Value::String(format!("{}/mcp/{name}", relay.trim_end_matches('/')));
        }
    }
    agent
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_tool_name_safe() {
        for (name, ok) in [
            ("github", true),
            ("my-server_2", true),
            ("", false),
            ("a b", false),
            ("a/b", false),
            ("ünï", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(check_name("n", name).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn urls_are_plain_http_urls() {
        for (url, err) in [
            ("https://mcp.example/mcp", None),
            ("http://127.0.0.1:8080", None),
            ("ftp://mcp.example", Some("http(s)")),
            ("https://user:pw@mcp.example/", Some("vault")),
            ("https://mcp.example/#x", Some("fragment")),
            ("not a url", Some("not a URL")),
        ] {
            match (check_url("u", url), err) {
                (Ok(_), None) => {}
                (Err(e), Some(needle)) => assert!(e.0.contains(needle), "{url}: {}", e.0),
                (got, want) => panic!("{url}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn bindings_match_scheme_host_port_and_path_prefix() {
        for (bound, server, want) in [
            ("https://mcp.example/mcp", "https://mcp.example/mcp", Some(4)),
            ("https://mcp.example/mcp/", "https://mcp.example/mcp", Some(4)),
            ("https://MCP.example:443/mcp", "https://mcp.example/mcp/v2", Some(4)),
            ("https://mcp.example", "https://mcp.example/anything", Some(0)),
            ("https://mcp.example/mcp", "https://mcp.example/mcpx", None),
            ("https://mcp.example/mcp", "https://mcp.example/", None),
            ("http://mcp.example/mcp", "https://mcp.example/mcp", None),
            ("https://mcp.example:8443/mcp", "https://mcp.example/mcp", None),
            ("https://mcp.example.evil/mcp", "https://mcp.example/mcp", None),
            ("https://evil.example/mcp", "https://mcp.example/mcp", None),
        ] {
            assert_eq!(fit(bound, server), want, "{bound} for {server}");
        }
    }

    fn b(id: &str, url: &str) -> Binding {
        Binding { credential_id: id.into(), vault_id: format!("vlt_{id}"), url: url.into() }
    }

    #[test]
    fn a_server_takes_the_longest_matching_binding() {
        let all = [b("root", "https://mcp.example"), b("deep", "https://mcp.example/team/a"), b("other", "https://x")];
        assert_eq!(binding_for("https://mcp.example/team/a/mcp", &all).unwrap().credential_id, "deep");
        assert_eq!(binding_for("https://mcp.example/team/b", &all).unwrap().credential_id, "root");
        assert_eq!(binding_for("https://y/mcp", &all), None);
    }

    #[test]
    fn one_url_is_bound_once() {
        assert!(check_unique(&[b("a", "https://m/x"), b("b", "https://m/x/y")]).is_ok());
        let e = check_unique(&[b("a", "https://m/x"), b("c", "https://z"), b("b", "https://M:443/x/")]).unwrap_err();
        assert!(e.0.contains("`a` (vault `vlt_a`)") && e.0.contains("`b` (vault `vlt_b`)"), "{}", e.0);
    }

    #[test]
    fn the_runtime_sees_gateway_routes_only() {
        let agent = json!({"model": {"id": "m"}, "mcp_servers": [
            {"name": "docs", "type": "url", "url": "https://mcp.example/mcp"}]});
        let routed = routed_agent(&agent, "http://127.0.0.1:41080/");
        assert_eq!(routed["mcp_servers"][0]["url"], "http://127.0.0.1:41080/mcp/docs");
        assert_eq!(routed["model"], agent["model"]);
        assert!(!routed.to_string().contains("mcp.example"));
    }
}
