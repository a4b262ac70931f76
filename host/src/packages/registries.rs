//! Which package managers this host can install for, and where their registries are: read at
//! start from the host's own tool configuration (Bridle ships no registry host names).

use std::path::Path;
use std::process::Command;

use super::spec::{Installable, Manager, Registries};

/// The Python whose pip a build sandbox runs (the host's `/usr` is what a sandbox sees).
const PYTHON: &str = "/usr/bin/python3";
/// npm as a sandbox sees it.
const NPM: &str = "/usr/bin/npm";
/// apt's tools as a sandbox sees them.
const APT_GET: &str = "/usr/bin/apt-get";
const DPKG_DEB: &str = "/usr/bin/dpkg-deb";

/// What the host offers: which managers can be installed, their registries, and the hosts a
/// build must reach (the operator's `sessions.package_manager_hosts` when set).
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    pub installable: Installable,
    pub registries: Registries,
    pub hosts: Vec<String>,
}

/// Look at the host's tools. Runs a few short commands: call off the async reactor.
pub fn discover(operator_hosts: &[String]) -> Discovered {
    let mut missing = Vec::new();
    let mut registries = Registries::default();
    let mut hosts = Vec::new();
    // pip: the configured index, else pip's own default (asked of pip, not written here).
    if run(PYTHON, &["-m", "pip", "--version"]).is_some() {
        registries.pip_index = std::env::var("PIP_INDEX_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| run(PYTHON, &["-m", "pip", "config", "get", "global.index-url"]));
        let defaults = run(
            PYTHON,
            &[
                "-c",
                "from pip._internal.models.index import PyPI; print(PyPI.simple_url); print(PyPI.file_storage_domain)",
            ],
        )
        .unwrap_or_default();
        let mut lines = defaults.lines();
        let (default_index, files) = (lines.next(), lines.next());
        match registries.pip_index.as_deref().or(default_index) {
            Some(index) => hosts.extend(host_of(index)),
            None => missing.push((Manager::Pip, "pip's package index could not be determined".to_string())),
        }
        if registries.pip_index.is_none() {
            hosts.extend(files.map(str::to_string));
        }
    } else {
        missing.push((Manager::Pip, format!("pip is not installed for {PYTHON} on this host")));
    }
    if Path::new(NPM).exists() {
        registries.npm_registry = run(NPM, &["config", "get", "registry"]);
        registries.npm_cafile = run(NPM, &["config", "get", "cafile"])
            .filter(|p| ["/etc/ssl/", "/usr/"].iter().any(|root| p.starts_with(root)));
        match registries.npm_registry.as_deref().and_then(host_of) {
            Some(h) => hosts.push(h),
            None => missing.push((Manager::Npm, "npm's registry could not be determined".to_string())),
        }
    } else {
        missing.push((Manager::Npm, format!("npm is not installed at {NPM} on this host")));
    }
    // apt: the host's apt and dpkg-deb (a sandbox runs them from the host's /usr), the hosts its
    // sources name.
    if let Some(tool) = [APT_GET, DPKG_DEB].into_iter().find(|t| !Path::new(t).exists()) {
        missing.push((Manager::Apt, format!("{tool} is not installed on this host")));
    } else {
        let apt_hosts = super::apt::host_source_hosts();
        if apt_hosts.is_empty() {
            missing.push((Manager::Apt, "the host's apt sources name no http(s) repository".to_string()));
        }
        hosts.extend(apt_hosts);
    }
    missing.push((Manager::Cargo, "installing cargo packages is not implemented yet".to_string()));
    for (m, tool) in [(Manager::Go, "go"), (Manager::Gem, "gem")] {
        let found = ["/usr/bin", "/usr/local/bin"].iter().any(|d| Path::new(d).join(tool).exists());
        let why = if found {
            format!("installing {m} packages is not implemented yet")
        } else {
            format!("`{tool}` is not installed on this host (where a sandbox could run it)")
        };
        missing.push((m, why));
    }
    if !operator_hosts.is_empty() {
        hosts = operator_hosts.to_vec();
    }
    hosts.sort();
    hosts.dedup();
    Discovered { installable: Installable::all_but(missing), registries, hosts }
}

/// The first line a command prints, when it succeeds and prints one.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty() && text != "undefined" && text != "null").then_some(text)
}

/// The host name of an `http(s)://` URL (no user info or port).
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') { host } else { host.split(':').next()? };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_urls() {
        let rows = [
            ("https://pkgs.example.org/simple", Some("pkgs.example.org")),
            ("https://pkgs.example.org/simple/", Some("pkgs.example.org")),
            ("http://user:pw@Mirror.Example.COM:8080/npm/", Some("mirror.example.com")),
            ("https://registry.example.net", Some("registry.example.net")),
            ("https://r.example.net?x=1", Some("r.example.net")),
            ("no-scheme.example.org/simple", None),
            ("https:///path", None),
        ];
        for (url, want) in rows {
            assert_eq!(host_of(url).as_deref(), want, "{url}");
        }
    }
}
