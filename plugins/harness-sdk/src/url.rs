//! Base-URL parsing and shape for endpoint checks. Plugins carry no URL
//! crate: the checks need only the scheme, host and path of a base URL.
//!
//! A harness calls `<base><its API path>` (Claude Code `<base>/v1/messages`,
//! codex and the openai-agents runtime `<base>/responses`), so a check looks
//! at the path's final segments ([`PathEnd`]), never at words in the middle:
//! AI gateways name upstream providers anywhere in their paths (LLMProxy's
//! `/claude2codex/https://api.z.ai/anthropic/v1` serves OpenAI Responses).

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

/// What a base URL's final path segments say about the API under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEnd {
    /// `…/v1/messages`: a whole Anthropic Messages call, not a base.
    MessagesCall,
    /// `…/responses`: a whole OpenAI Responses call.
    ResponsesCall,
    /// `…/chat/completions`: a whole Chat Completions call.
    ChatCompletionsCall,
    /// `…/completions` (the legacy Completions API).
    CompletionsCall,
    /// `…/anthropic`: the root of an Anthropic-compatible API (MiniMax,
    /// Cloudflare AI Gateway's Anthropic route).
    AnthropicRoot,
    /// `…/v1`: a versioned root, the shape of OpenAI-compatible APIs.
    V1Root,
    /// Anything else: a host's root or a gateway's prefix.
    Other,
}

impl PathEnd {
    /// The suffix as a user would see it in a base URL, for messages.
    pub fn suffix(self) -> &'static str {
        match self {
            PathEnd::MessagesCall => "/v1/messages",
            PathEnd::ResponsesCall => "/responses",
            PathEnd::ChatCompletionsCall => "/chat/completions",
            PathEnd::CompletionsCall => "/completions",
            PathEnd::AnthropicRoot => "/anthropic",
            PathEnd::V1Root => "/v1",
            PathEnd::Other => "",
        }
    }
}

impl Url<'_> {
    /// Classify the path by its final segments (case-insensitive; empty
    /// segments, as in `//` or a trailing `/`, are skipped).
    pub fn path_end(&self) -> PathEnd {
        let mut rev = self.path.rsplit('/').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase);
        let last = rev.next();
        let before = rev.next();
        match (before.as_deref(), last.as_deref()) {
            (Some("v1"), Some("messages")) => PathEnd::MessagesCall,
            (_, Some("responses")) => PathEnd::ResponsesCall,
            (Some("chat"), Some("completions")) => PathEnd::ChatCompletionsCall,
            (_, Some("completions")) => PathEnd::CompletionsCall,
            (_, Some("anthropic")) => PathEnd::AnthropicRoot,
            (_, Some("v1")) => PathEnd::V1Root,
            _ => PathEnd::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ends() {
        use PathEnd::*;
        for (url, want) in [
            ("https://api.anthropic.com", Other),
            ("https://gw.example.com/prefix/", Other),
            ("https://gw.example.com/anthropic-proxy/", Other),
            ("https://api.minimax.io/anthropic", AnthropicRoot),
            ("https://gw.example.com/x/Anthropic/", AnthropicRoot),
            ("https://api.openai.com/v1", V1Root),
            ("https://gw.example.com/v1/?api-version=1", V1Root),
            // LLMProxy: the upstream named mid-path, what the harness calls at the end.
            ("https://llmproxy.example.com/claude2codex/https://api.z.ai/anthropic/v1", V1Root),
            ("https://gateway.ai.cloudflare.com/client/v4/accounts/acc123/ai/v1", V1Root),
            ("https://gw.example.com/v1/messages", MessagesCall),
            ("https://gw.example.com/anthropic/v1/messages/", MessagesCall),
            ("https://gw.example.com/messages", Other),
            ("https://api.openai.com/v1/responses?x=1", ResponsesCall),
            ("https://gw.example.com/v1/chat/completions", ChatCompletionsCall),
            ("https://gw.example.com/v1/completions#top", CompletionsCall),
        ] {
            assert_eq!(parse_url(url).unwrap().path_end(), want, "{url}");
        }
    }

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
