//! Which package managers this host can install for, and where their registries are: read at
//! start from the host's own tool configuration (Bridle ships no registry host names).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::PackagesConfig;

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
    /// The Rust toolchain directory cargo builds use (bound read-only into sandboxes).
    pub cargo_toolchain: Option<PathBuf>,
}

/// Look at the host's tools. Runs a few short commands: call off the async reactor.
pub fn discover(operator_hosts: &[String], config: &PackagesConfig) -> Discovered {
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
    // cargo: the operator's toolchain (or the server's own), and the registries the host's
    // cargo has used.
    let cargo_toolchain = match toolchain(config.cargo_toolchain.as_deref()) {
        Ok(dir) => {
            let cargo_hosts = cargo_registry_hosts(&cargo_home());
            if cargo_hosts.is_empty() && operator_hosts.is_empty() {
                missing.push((
                    Manager::Cargo,
                    "cargo's registry hosts could not be determined (the host's cargo has no registry index \
                     cache); set sessions.package_manager_hosts"
                        .to_string(),
                ));
            }
            hosts.extend(cargo_hosts);
            Some(dir)
        }
        Err(why) => {
            missing.push((Manager::Cargo, why));
            None
        }
    };
    // go and gem: the host's tool (a sandbox runs it from the host's /usr) and the operator's
    // mirror: their public registries are not assumed.
    for (m, tool, key, url) in [
        (Manager::Go, "go", "packages.goproxy", &config.goproxy),
        (Manager::Gem, "gem", "packages.gem_source", &config.gem_source),
    ] {
        let found = ["/usr/bin", "/usr/local/bin"].iter().any(|d| Path::new(d).join(tool).exists());
        match url.as_deref().filter(|u| !u.is_empty()) {
            _ if !found => {
                missing.push((m, format!("`{tool}` is not installed on this host (where a sandbox could run it)")))
            }
            None => missing.push((m, format!("no {m} registry is configured; set {key}"))),
            Some(u) => match host_of(u) {
                Some(h) => hosts.push(h),
                None => missing.push((m, format!("{key} `{u}` is not an http(s) URL"))),
            },
        }
    }
    registries.goproxy = config.goproxy.clone();
    registries.gosumdb = config.gosumdb.clone();
    registries.gem_source = config.gem_source.clone();
    if !operator_hosts.is_empty() {
        hosts = operator_hosts.to_vec();
    }
    hosts.sort();
    hosts.dedup();
    Discovered { installable: Installable::all_but(missing), registries, hosts, cargo_toolchain }
}

/// The Rust toolchain directory: `configured`, else the server's own (`rustup which cargo`,
/// else `cargo` on `PATH`), as the directory holding `bin/cargo` and `bin/rustc`.
fn toolchain(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = configured {
        return check_toolchain(dir).map_err(|e| format!("packages.cargo_toolchain `{}`: {e}", dir.display()));
    }
    // Never let rustup install a toolchain a `rust-toolchain.toml` in the working directory pins.
    let rustup = Command::new("rustup").args(["which", "cargo"]).env("RUSTUP_AUTO_INSTALL", "0").output().ok();
    let from_rustup = rustup
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    let cargo = from_rustup.map(PathBuf::from).or_else(|| {
        // A `cargo` on PATH that is not rustup's proxy (a proxy has no `rustc` beside it that
        // works without rustup).
        std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("cargo")).find(|p| p.is_file())
    });
    let dir = cargo
        .and_then(|c| std::fs::canonicalize(c).ok())
        .and_then(|c| Some(c.parent()?.parent()?.to_path_buf()))
        .ok_or_else(|| "no Rust toolchain found on this host; set packages.cargo_toolchain".to_string())?;
    check_toolchain(&dir)
        .map_err(|e| format!("the server's Rust toolchain `{}`: {e}; set packages.cargo_toolchain", dir.display()))
}

/// `dir` holds `bin/cargo` and `bin/rustc`, and sandbox users can reach them: the directory is
/// bound into every sandbox, and a bind whose source a sandbox user cannot reach stops every
/// sandbox from starting.
fn check_toolchain(dir: &Path) -> Result<PathBuf, String> {
    for tool in ["cargo", "rustc"] {
        if !dir.join("bin").join(tool).is_file() {
            return Err(format!("no bin/{tool} in it"));
        }
    }
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("resolving it: {e}"))?;
    if let Some(closed) = closed_ancestor(&dir) {
        return Err(format!(
            "`{}` is not traversable by other users (sandbox users cannot reach the toolchain); \
             use a toolchain installed where every user can read it, e.g. `RUSTUP_HOME=/opt/rust rustup toolchain install stable`",
            closed.display()
        ));
    }
    Ok(dir)
}

/// The first of `dir` and its ancestors that other users cannot traverse (no `o+x`).
fn closed_ancestor(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .find(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}

/// `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// The hosts of the registries the host's cargo has used: each index cache
/// (`registry/index/<host>-<hash>`) and the download and API URLs of its `config.json`.
fn cargo_registry_hosts(cargo_home: &Path) -> Vec<String> {
    let mut hosts = Vec::new();
    for e in std::fs::read_dir(cargo_home.join("registry/index")).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let config = std::fs::read_to_string(e.path().join("config.json")).unwrap_or_default();
        hosts.extend(index_hosts(&name, &config));
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The hosts of one cargo index cache: its directory name `<host>-<hash>`, and the `dl` and
/// `api` URLs of its `config.json`.
pub fn index_hosts(dir_name: &str, config_json: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((host, hash)) = dir_name.rsplit_once('-')
        && !host.is_empty()
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        out.push(host.to_ascii_lowercase());
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(config_json) {
        for k in ["dl", "api"] {
            out.extend(v.get(k).and_then(|u| u.as_str()).and_then(host_of));
        }
    }
    out.sort();
    out.dedup();
    out
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
    fn cargo_index_hosts() {
        let rows: &[(&str, &str, &[&str])] = &[
            ("index.example.org-1949cf8c6b5b557f", "", &["index.example.org"]),
            (
                "index.example.org-1949cf8c6b5b557f",
                r#"{"dl": "https://static.example.org/crates", "api": "https://api.example.org"}"#,
                &["api.example.org", "index.example.org", "static.example.org"],
            ),
            ("github.com-1ecc6299db9ec823", r#"{"dl": "https://github.com/x"}"#, &["github.com"]),
            ("not-a-cache", "not json", &[]),
        ];
        for (dir, config, want) in rows {
            assert_eq!(index_hosts(dir, config), want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{dir}");
        }
    }

    #[test]
    fn toolchains_need_cargo_and_rustc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/cargo"), "").unwrap();
        let err = toolchain(Some(dir.path())).unwrap_err();
        assert!(err.contains("packages.cargo_toolchain") && err.contains("bin/rustc"), "{err}");
        std::fs::write(dir.path().join("bin/rustc"), "").unwrap();
        // A 0700 directory: sandbox users could not reach it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = toolchain(Some(dir.path())).unwrap_err();
        assert!(err.contains("not traversable by other users"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if closed_ancestor(dir.path().parent().unwrap()).is_none() {
            assert_eq!(toolchain(Some(dir.path())).unwrap(), dir.path().canonicalize().unwrap());
        }
    }

    #[test]
    fn go_and_gem_need_a_configured_registry() {
        let found = discover(&[], &PackagesConfig::default());
        for (m, tool, key) in [(Manager::Go, "go", "packages.goproxy"), (Manager::Gem, "gem", "packages.gem_source")] {
            let why = found.installable.why_not(m).expect("refused without a registry");
            let has_tool = ["/usr/bin", "/usr/local/bin"].iter().any(|d| Path::new(d).join(tool).exists());
            assert!(why.contains(if has_tool { key } else { "not installed" }), "{m}: {why}");
        }
        let config = PackagesConfig {
            goproxy: Some("http://goproxy.example.org:8080/".into()),
            gem_source: Some("not a url".into()),
            ..PackagesConfig::default()
        };
        let found = discover(&[], &config);
        if Path::new("/usr/bin/go").exists() {
            assert!(found.installable.why_not(Manager::Go).is_none());
            assert!(found.hosts.contains(&"goproxy.example.org".to_string()), "{:?}", found.hosts);
        }
        if Path::new("/usr/bin/gem").exists() {
            let why = found.installable.why_not(Manager::Gem).unwrap();
            assert!(why.contains("packages.gem_source `not a url`"), "{why}");
        }
    }

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
