//! Environment-variable secrets in outbound requests: which secrets are due
//! on a host, and the substitution of their placeholders in header values
//! and bodies. Pure: the gateway ([`super::intercept`]) does the I/O.
//!
//! A secret is due on a host when its `hosts` match it (`*.example.com`
//! matches subdomains only, as the API documents). A placeholder found
//! where its secret is not due (another host, or a location the credential
//! does not enable) is left as it is and reported, so the gateway can log it.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use http::header::HeaderValue;

use crate::spec::{EnvSecret, SecretHosts};

/// Where in a request a placeholder was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Header,
    Body,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Header => "header",
            Place::Body => "body",
        }
    }
}

/// Why a placeholder was left in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The credential's `networking` does not include the host.
    HostNotAllowed,
    /// The credential's `injection_location` leaves this place off.
    LocationOff,
    /// The secret cannot stand in a header value (a control character).
    NotAHeaderValue,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::HostNotAllowed => "the host is not in the credential's allowed_hosts",
            Why::LocationOff => "the credential's injection_location does not include it",
            Why::NotAHeaderValue => "the secret is not a valid header value",
        }
    }
}

/// A placeholder left in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// The secret's variable name (never its value).
    pub name: String,
    pub place: Place,
    pub why: Why,
}

/// What substitution did to one request: names only, never values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub substituted: Vec<(String, Place)>,
    pub left: Vec<Left>,
}

impl Report {
    fn substituted(&mut self, name: &str, place: Place) {
        if !self.substituted.iter().any(|(n, p)| n == name && *p == place) {
            self.substituted.push((name.to_owned(), place));
        }
    }
    fn left(&mut self, name: &str, place: Place, why: Why) {
        let l = Left { name: name.to_owned(), place, why };
        if !self.left.contains(&l) {
            self.left.push(l);
        }
    }
}

/// `host` as compared: lower case, no trailing dot, no IPv6 brackets.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// Whether an `allowed_hosts` entry matches `host`: exactly, or for
/// `*.example.com` any subdomain of `example.com` but not `example.com`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = normalize(host);
    let pattern = normalize(pattern);
    match pattern.strip_prefix("*.") {
        Some(apex) => {
            host.len() > apex.len() + 1 && host.ends_with(apex) && host[..host.len() - apex.len()].ends_with('.')
        }
        None => host == pattern,
    }
}

impl SecretHosts {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            SecretHosts::Any => true,
            SecretHosts::Only(list) => list.iter().any(|p| host_matches(p, host)),
        }
    }
}

/// Replace every `needle` in `hay` with `with`; `None` when there is none.
fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    let mut copied = 0;
    while i + needle.len() <= hay.len() {
        if hay[i] == needle[0] && &hay[i..i + needle.len()] == needle {
            let o = out.get_or_insert_with(|| Vec::with_capacity(hay.len()));
            o.extend_from_slice(&hay[copied..i]);
            o.extend_from_slice(with);
            i += needle.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    let mut o = out?;
    o.extend_from_slice(&hay[copied..]);
    Some(o)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The environment-variable secrets of one sandbox.
#[derive(Debug, Default)]
pub struct Injector {
    secrets: Vec<EnvSecret>,
}

impl Injector {
    pub fn new(secrets: Vec<EnvSecret>) -> Self {
        Self { secrets: secrets.into_iter().filter(|s| !s.placeholder.is_empty()).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    fn due(&self, host: &str) -> impl Iterator<Item = &EnvSecret> {
        self.secrets.iter().filter(move |s| s.hosts.matches(host))
    }

    /// Whether the gateway must see requests to `host` in clear: a secret
    /// may be substituted there. Everything else is tunnelled untouched.
    pub fn intercepts(&self, host: &str) -> bool {
        self.due(host).any(|s| s.header || s.body)
    }

    /// Whether a request body to `host` must be read for substitution.
    pub fn wants_body(&self, host: &str) -> bool {
        self.due(host).any(|s| s.body)
    }

    /// Substitute in one piece of text (`place`) for a request to `host`.
    fn substitute(&self, host: &str, place: Place, text: &[u8], report: &mut Report) -> Option<Vec<u8>> {
        let mut cur: Option<Vec<u8>> = None;
        for s in &self.secrets {
            let now = cur.as_deref().unwrap_or(text);
            if !contains(now, s.placeholder.as_bytes()) {
                continue;
            }
            let enabled = match place {
                Place::Header => s.header,
                Place::Body => s.body,
            };
            if !s.hosts.matches(host) {
                report.left(&s.name, place, Why::HostNotAllowed);
            } else if !enabled {
                report.left(&s.name, place, Why::LocationOff);
            } else if place == Place::Header && s.value.expose().bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                report.left(&s.name, place, Why::NotAHeaderValue);
            } else if let Some(next) = replace_all(now, s.placeholder.as_bytes(), s.value.expose().as_bytes()) {
                report.substituted(&s.name, place);
                cur = Some(next);
            }
        }
        cur
    }

    /// Substitute in header values (and in HTTP Basic credentials, which
    /// carry the placeholder base64-encoded: `curl -u user:$TOKEN`).
    pub fn headers(&self, host: &str, headers: &mut HeaderMap, report: &mut Report) {
        for value in headers.values_mut() {
            let raw = value.as_bytes();
            let replaced = match basic_credentials(raw) {
                Some(decoded) => self
                    .substitute(host, Place::Header, &decoded, report)
                    .map(|d| format!("Basic {}", B64.encode(d)).into_bytes()),
                None => self.substitute(host, Place::Header, raw, report),
            };
            if let Some(new) = replaced
                && let Ok(mut v) = HeaderValue::from_bytes(&new)
            {
                v.set_sensitive(true);
                *value = v;
            }
        }
    }

    /// Substitute in a request body.
    pub fn body<'a>(&self, host: &str, body: &'a [u8], report: &mut Report) -> Cow<'a, [u8]> {
        match self.substitute(host, Place::Body, body, report) {
            Some(b) => Cow::Owned(b),
            None => Cow::Borrowed(body),
        }
    }
}

/// The decoded `user:password` of a `Basic` authorization value.
fn basic_credentials(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    B64.decode(rest.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Secret;

    const PH: &str = "bridle_placeholder_0123456789abcdef";
    const PH2: &str = "bridle_placeholder_fedcba9876543210";

    fn secret(name: &str, ph: &str, value: &str, header: bool, body: bool, hosts: SecretHosts) -> EnvSecret {
        EnvSecret { name: name.into(), placeholder: ph.into(), value: Secret::new(value), header, body, hosts }
    }

    fn only(h: &[&str]) -> SecretHosts {
        SecretHosts::Only(h.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn host_patterns() {
        for (pattern, host, want) in [
            ("api.example.com", "api.example.com", true),
            ("api.example.com", "API.Example.com.", true),
            ("api.example.com", "example.com", false),
            ("api.example.com", "xapi.example.com", false),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "api.example.com.evil.org", false),
            ("192.0.2.1", "192.0.2.1", true),
            ("192.0.2.1", "192.0.2.10", false),
        ] {
            assert_eq!(host_matches(pattern, host), want, "{pattern} vs {host}");
        }
        assert!(SecretHosts::Any.matches("anything.example"));
    }

    #[test]
    fn replace_all_cases() {
        for (hay, want) in [
            ("", None),
            ("no placeholder", None),
            ("PH", Some("S")),
            ("aPHbPHc", Some("aSbSc")),
            ("PPH", Some("PS")),
            ("PHPH", Some("SS")),
        ] {
            let got = replace_all(hay.as_bytes(), b"PH", b"S").map(|v| String::from_utf8(v).unwrap());
            assert_eq!(got.as_deref(), want, "{hay:?}");
        }
    }

    /// One row per rule: where the placeholder is, the credential's settings, the host;
    /// whether the secret replaces it, and what the report says.
    #[test]
    fn substitution_rules() {
        struct Row {
            what: &'static str,
            header: bool,
            body: bool,
            hosts: SecretHosts,
            host: &'static str,
            place: Place,
            substituted: bool,
            left: Option<Why>,
        }
        let rows = [
            Row {
                what: "header on an allowed host",
                header: true,
                body: false,
                hosts: only(&["api.example.com"]),
                host: "api.example.com",
                place: Place::Header,
                substituted: true,
                left: None,
            },
            Row {
                what: "header on another host",
                header: true,
                body: true,
                hosts: only(&["api.example.com"]),
                host: "evil.example.org",
                place: Place::Header,
                substituted: false,
                left: Some(Why::HostNotAllowed),
            },
            Row {
                what: "body on another host",
                header: true,
                body: true,
                hosts: only(&["api.example.com"]),
                host: "evil.example.org",
                place: Place::Body,
                substituted: false,
                left: Some(Why::HostNotAllowed),
            },
            Row {
                what: "header when only the body is enabled",
                header: false,
                body: true,
                hosts: only(&["api.example.com"]),
                host: "api.example.com",
                place: Place::Header,
                substituted: false,
                left: Some(Why::LocationOff),
            },
            Row {
                what: "body when only headers are enabled",
                header: true,
                body: false,
                hosts: only(&["api.example.com"]),
                host: "api.example.com",
                place: Place::Body,
                substituted: false,
                left: Some(Why::LocationOff),
            },
            Row {
                what: "body when enabled",
                header: false,
                body: true,
                hosts: only(&["*.example.com"]),
                host: "api.example.com",
                place: Place::Body,
                substituted: true,
                left: None,
            },
            Row {
                what: "unrestricted: any host",
                header: true,
                body: true,
                hosts: SecretHosts::Any,
                host: "anything.example.net",
                place: Place::Header,
                substituted: true,
                left: None,
            },
            Row {
                what: "wildcard excludes the apex",
                header: true,
                body: true,
                hosts: only(&["*.example.com"]),
                host: "example.com",
                place: Place::Header,
                substituted: false,
                left: Some(Why::HostNotAllowed),
            },
        ];
        for r in rows {
            let inj = Injector::new(vec![secret("TOKEN", PH, "s3cr3t", r.header, r.body, r.hosts.clone())]);
            let mut report = Report::default();
            let out = match r.place {
                Place::Header => {
                    let mut h = HeaderMap::new();
                    h.insert("authorization", HeaderValue::from_str(&format!("Bearer {PH}")).unwrap());
                    inj.headers(r.host, &mut h, &mut report);
                    h["authorization"].to_str().unwrap().to_string()
                }
                Place::Body => {
                    let body = format!("{{\"key\":\"{PH}\"}}");
                    String::from_utf8(inj.body(r.host, body.as_bytes(), &mut report).into_owned()).unwrap()
                }
            };
            assert_eq!(out.contains("s3cr3t"), r.substituted, "{}: {out}", r.what);
            assert_eq!(out.contains(PH), !r.substituted, "{}: {out}", r.what);
            assert_eq!(
                report.substituted.iter().any(|(n, p)| n == "TOKEN" && *p == r.place),
                r.substituted,
                "{}",
                r.what
            );
            let left = report.left.first().map(|l| l.why);
            assert_eq!(left, r.left, "{}", r.what);
            if let Some(l) = report.left.first() {
                assert_eq!((l.name.as_str(), l.place), ("TOKEN", r.place), "{}", r.what);
            }
        }
    }

    #[test]
    fn interception_is_only_where_a_secret_is_due() {
        let inj = Injector::new(vec![
            secret("A", PH, "a", true, false, only(&["api.example.com"])),
            secret("B", PH2, "b", false, true, only(&["*.data.example"])),
        ]);
        assert!(inj.intercepts("api.example.com"));
        assert!(!inj.wants_body("api.example.com"));
        assert!(inj.intercepts("x.data.example"));
        assert!(inj.wants_body("x.data.example"));
        assert!(!inj.intercepts("other.example.com"));
        assert!(!inj.intercepts("data.example"));
        assert!(!Injector::default().intercepts("api.example.com"));
        // A credential with no location enabled substitutes nowhere, so intercepts nowhere.
        let none = Injector::new(vec![secret("C", PH, "c", false, false, SecretHosts::Any)]);
        assert!(!none.intercepts("api.example.com"));
    }

    #[test]
    fn several_secrets_and_occurrences() {
        let inj = Injector::new(vec![
            secret("A", PH, "alpha", true, true, SecretHosts::Any),
            secret("B", PH2, "beta", true, true, only(&["api.example.com"])),
        ]);
        let body = format!("{PH}&{PH2}&{PH}");
        let mut report = Report::default();
        let out = inj.body("api.example.com", body.as_bytes(), &mut report);
        assert_eq!(&*out, b"alpha&beta&alpha");
        assert!(report.left.is_empty());
        let mut report = Report::default();
        let out = inj.body("other.example.com", body.as_bytes(), &mut report);
        assert_eq!(String::from_utf8_lossy(&out), format!("alpha&{PH2}&alpha"));
        assert_eq!(report.left, vec![Left { name: "B".into(), place: Place::Body, why: Why::HostNotAllowed }]);
        // No placeholder: the body is not copied.
        assert!(matches!(inj.body("api.example.com", b"plain", &mut Report::default()), Cow::Borrowed(_)));
    }

    #[test]
    fn basic_credentials_are_substituted_inside_base64() {
        let inj = Injector::new(vec![secret("T", PH, "pa:ss", true, false, only(&["git.example.com"]))]);
        let mut h = HeaderMap::new();
        let basic = format!("Basic {}", B64.encode(format!("user:{PH}")));
        h.insert("authorization", HeaderValue::from_str(&basic).unwrap());
        h.insert("x-other", HeaderValue::from_static("untouched"));
        inj.headers("git.example.com", &mut h, &mut Report::default());
        assert_eq!(h["authorization"].to_str().unwrap(), format!("Basic {}", B64.encode("user:pa:ss")));
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["x-other"], "untouched");
        // On another host the base64 value is left as it was.
        let mut h2 = HeaderMap::new();
        h2.insert("authorization", HeaderValue::from_str(&basic).unwrap());
        let mut report = Report::default();
        inj.headers("evil.example.org", &mut h2, &mut report);
        assert_eq!(h2["authorization"].to_str().unwrap(), basic);
        assert_eq!(report.left.len(), 1);
    }

    #[test]
    fn a_secret_that_cannot_be_a_header_value_is_left_out() {
        let inj = Injector::new(vec![secret("T", PH, "line\nbreak", true, true, SecretHosts::Any)]);
        let mut h = HeaderMap::new();
        h.insert("x-key", HeaderValue::from_static(PH));
        let mut report = Report::default();
        inj.headers("api.example.com", &mut h, &mut report);
        assert_eq!(h["x-key"], PH);
        assert_eq!(report.left[0].why, Why::NotAHeaderValue);
        // In a body it is fine.
        assert_eq!(&*inj.body("api.example.com", PH.as_bytes(), &mut Report::default()), b"line\nbreak");
    }
}
