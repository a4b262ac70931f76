//! An environment's package spec: the managers, and which of them this server can install.
//!
//! Pure: the caller says which managers are installable here; this module decides whether a
//! request may name them.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Invalid;
use crate::model::environments::{Packages, PackagesParams};

/// A package manager an environment's `packages` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Manager {
    Apt,
    Cargo,
    Gem,
    Go,
    Npm,
    Pip,
}

impl Manager {
    pub const ALL: [Manager; 6] = [Manager::Apt, Manager::Cargo, Manager::Gem, Manager::Go, Manager::Npm, Manager::Pip];

    pub fn name(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Cargo => "cargo",
            Manager::Gem => "gem",
            Manager::Go => "go",
            Manager::Npm => "npm",
            Manager::Pip => "pip",
        }
    }
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which managers this server can install, and for each one it cannot, why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installable {
    missing: BTreeMap<Manager, String>,
}

impl Installable {
    /// No manager can be installed; `why` is said for each.
    pub fn none(why: &str) -> Self {
        Installable { missing: Manager::ALL.iter().map(|m| (*m, why.to_string())).collect() }
    }

    /// Every manager can be installed except those in `missing` (manager, why).
    pub fn all_but(missing: impl IntoIterator<Item = (Manager, String)>) -> Self {
        Installable { missing: missing.into_iter().collect() }
    }

    /// `None` when `m` can be installed, else the reason it cannot.
    pub fn why_not(&self, m: Manager) -> Option<&str> {
        self.missing.get(&m).map(String::as_str)
    }
}

/// The lists a request's `packages` sets, by manager (absent lists are not named).
pub fn requested(p: &PackagesParams) -> impl Iterator<Item = (Manager, &[String])> {
    [
        (Manager::Apt, &p.apt),
        (Manager::Cargo, &p.cargo),
        (Manager::Gem, &p.gem),
        (Manager::Go, &p.go),
        (Manager::Npm, &p.npm),
        (Manager::Pip, &p.pip),
    ]
    .into_iter()
    .filter_map(|(m, v)| v.as_deref().map(|v| (m, v)))
}

/// A request naming packages for a manager this server cannot install is refused, naming the
/// manager and what is missing: stored packages that are never installed would be silent
/// acceptance. An empty list (clearing a manager) is always allowed.
pub fn check_installable(p: &PackagesParams, here: &Installable) -> Result<(), Invalid> {
    for (m, list) in requested(p) {
        if list.is_empty() {
            continue;
        }
        if let Some(why) = here.why_not(m) {
            return Err(Invalid::new(format!("config.packages.{m}: this server cannot install {m} packages: {why}")));
        }
    }
    Spec::new(requested(p)).map(drop)
}

/// The longest package name or version spec accepted (npm's own limit is 214).
const MAX_NAME: usize = 214;
/// The most packages an environment may name across managers.
const MAX_PACKAGES: usize = 100;

/// A package entry as the installers take it: a name with an optional version spec
/// (`rich==13.7.1`, `@scope/pkg@1.2.3`, `jq=1.6-2.1`). No whitespace or shell syntax, and never
/// starting with `-` (it would be read as an option).
pub fn check_name(m: Manager, i: usize, name: &str) -> Result<(), Invalid> {
    let field = format!("config.packages.{m}[{i}]");
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Invalid::new(format!("{field}: a package name of 1 to {MAX_NAME} characters is required")));
    }
    if name.starts_with('-') {
        return Err(Invalid::new(format!("{field}: `{name}` starts with `-`; name a package, not an option")));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "._+-@/:=<>!~^*[],".contains(c);
    if let Some(bad) = name.chars().find(|c| !ok(*c)) {
        return Err(Invalid::new(format!(
            "{field}: `{name}` contains {bad:?}; a package name with an optional version spec is expected"
        )));
    }
    Ok(())
}

/// An environment's packages, normalized: per manager, trimmed, de-duplicated and sorted;
/// managers without packages left out. Two environments with the same packages in any order
/// share one layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    lists: BTreeMap<Manager, Vec<String>>,
}

impl Spec {
    pub fn new<'a>(lists: impl IntoIterator<Item = (Manager, &'a [String])>) -> Result<Spec, Invalid> {
        let mut out: BTreeMap<Manager, Vec<String>> = BTreeMap::new();
        let mut total = 0;
        for (m, list) in lists {
            for (i, name) in list.iter().enumerate() {
                let name = name.trim();
                check_name(m, i, name)?;
                out.entry(m).or_default().push(name.to_string());
                total += 1;
            }
        }
        if total > MAX_PACKAGES {
            return Err(Invalid::new(format!("config.packages: at most {MAX_PACKAGES} packages, got {total}")));
        }
        for v in out.values_mut() {
            v.sort();
            v.dedup();
        }
        Ok(Spec { lists: out })
    }

    /// The spec of a stored environment's packages.
    pub fn of(p: &Packages) -> Result<Spec, Invalid> {
        Spec::new([
            (Manager::Apt, p.apt.as_slice()),
            (Manager::Cargo, p.cargo.as_slice()),
            (Manager::Gem, p.gem.as_slice()),
            (Manager::Go, p.go.as_slice()),
            (Manager::Npm, p.npm.as_slice()),
            (Manager::Pip, p.pip.as_slice()),
        ])
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    pub fn lists(&self) -> impl Iterator<Item = (Manager, &[String])> {
        self.lists.iter().map(|(m, v)| (*m, v.as_slice()))
    }

    /// The layer's cache key: a hash of the normalized spec and of the layout version, so a
    /// change to either builds a new layer.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(format!("bridle-layer/{LAYOUT}\n"));
        for (m, list) in &self.lists {
            for name in list {
                h.update(format!("{m}\t{name}\n"));
            }
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// The layout of a layer (bump when the install script or the layer's directories change).
const LAYOUT: u32 = 1;

/// Where each manager's registry is, as the host's own tools are configured (`None`: the tool's
/// default, which the installer then uses too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registries {
    pub pip_index: Option<String>,
    pub npm_registry: Option<String>,
    /// The CA bundle the host's npm is configured with (`cafile`), e.g. for a TLS-inspecting
    /// proxy; a path a sandbox sees (under `/etc/ssl` or `/usr`).
    pub npm_cafile: Option<String>,
    /// The Go module proxy (`packages.goproxy`); the only source `go install` uses.
    pub goproxy: Option<String>,
    /// The Go checksum database (`packages.gosumdb`; `None`: off).
    pub gosumdb: Option<String>,
    /// The gem source (`packages.gem_source`); the only source `gem install` uses.
    pub gem_source: Option<String>,
}

/// Where a build sandbox sees the Rust toolchain (`packages.cargo_toolchain`, read-only).
pub const CARGO_TOOLCHAIN_INSIDE: &str = "/opt/bridle/toolchains/cargo";

/// Scratch space of a build (caches that are not part of the layer), inside the sandbox.
const BUILD_SCRATCH: &str = "/workspace/build";

/// Quote `s` for `sh`: one single-quoted word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Marks the line the build script writes to stderr when a package fails:
/// `<MARK> <manager> <package>`.
pub const FAILED_MARK: &str = "bridle-layer-failed";

/// The script the build sandbox runs: installs every package into `root`, logs to stderr, and
/// streams `root` to stdout as a tar. Relocatable installs only: the layer is used at another
/// path than it is built at. A failure prints [`FAILED_MARK`] with the package that failed.
pub fn install_script(spec: &Spec, reg: &Registries, root: &str) -> String {
    let r = sh_quote(root);
    let mut s = format!("set -u\nexec 3>&1 1>&2\nmkdir -p {r}\n");
    let fail = |m: Manager, what: &str| sh_quote(&format!("{FAILED_MARK} {m} {what}"));
    for (m, list) in spec.lists() {
        let names: Vec<String> = list.iter().map(|n| sh_quote(n)).collect();
        s.push_str(&format!("echo {} >&2\n", sh_quote(&format!("[bridle] {m}: installing {}", list.join(" ")))));
        match m {
            Manager::Pip => {
                // One run for all (pip --target replaces, not merges, directories of an earlier
                // run); on failure each package alone, to name the one that fails.
                let index =
                    reg.pip_index.as_deref().map(|u| format!(" --index-url {}", sh_quote(u))).unwrap_or_default();
                let pip = "/usr/bin/python3 -m pip --no-input --disable-pip-version-check";
                s.push_str(&format!(
                    "if ! {pip} install --no-warn-script-location --no-cache-dir --target {r}/python{index} {}; then\n",
                    names.join(" ")
                ));
                for (n, q) in list.iter().zip(&names) {
                    s.push_str(&format!(
                        "  {pip} download --no-deps --no-cache-dir -d /tmp/bridle-probe{index} {q} >/dev/null 2>&1 || {{ echo {} >&2; exit 3; }}\n",
                        fail(m, n)
                    ));
                }
                s.push_str(&format!("  echo {} >&2; exit 3\nfi\n", fail(m, &list.join(" "))));
            }
            Manager::Npm => {
                let mut registry =
                    reg.npm_registry.as_deref().map(|u| format!(" --registry {}", sh_quote(u))).unwrap_or_default();
                if let Some(ca) = &reg.npm_cafile {
                    registry.push_str(&format!(" --cafile {}", sh_quote(ca)));
                }
                for (n, q) in list.iter().zip(&names) {
                    s.push_str(&format!(
                        "npm install --global --no-audit --no-fund --prefix {r}/node{registry} {q} || {{ echo {} >&2; exit 3; }}\n",
                        fail(m, n)
                    ));
                }
            }
            Manager::Apt => s.push_str(&super::apt::script(list, &format!("{root}/apt"))),
            Manager::Cargo => {
                // The operator's toolchain (read-only); cargo's registry cache and build tree in
                // the build's scratch space, shared by the packages of this build.
                let t = CARGO_TOOLCHAIN_INSIDE;
                s.push_str(&format!(
                    "export CARGO_HOME={BUILD_SCRATCH}/cargo-home CARGO_TARGET_DIR={BUILD_SCRATCH}/cargo-target \
                     RUSTC={t}/bin/rustc PATH={t}/bin:$PATH\n"
                ));
                for (n, q) in list.iter().zip(&names) {
                    s.push_str(&format!(
                        "{t}/bin/cargo install --locked --no-track --root {r}/cargo {q} || {{ echo {} >&2; exit 3; }}\n",
                        fail(m, n)
                    ));
                }
            }
            Manager::Go => {
                // Only the configured proxy (no `direct` fallback); binaries into the layer.
                let proxy = reg.goproxy.as_deref().unwrap_or("off");
                let sumdb = reg.gosumdb.as_deref().unwrap_or("off");
                s.push_str(&format!(
                    "export GOPROXY={} GOSUMDB={} GOPATH={BUILD_SCRATCH}/go GOCACHE={BUILD_SCRATCH}/go-cache \
                     GOBIN={r}/go/bin GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0\n",
                    sh_quote(proxy),
                    sh_quote(sumdb)
                ));
                for (n, q) in list.iter().zip(go_targets(list)) {
                    s.push_str(&format!("go install {} || {{ echo {} >&2; exit 3; }}\n", sh_quote(&q), fail(m, n)));
                }
            }
            Manager::Gem => {
                // Only the configured source; gems and their executables into the layer.
                let source = reg.gem_source.as_deref().unwrap_or_default();
                for (n, q) in list.iter().zip(&names) {
                    s.push_str(&format!(
                        "gem install --no-document --clear-sources --source {} --install-dir {r}/gem --bindir {r}/gem/bin {q} \
                         || {{ echo {} >&2; exit 3; }}\n",
                        sh_quote(source),
                        fail(m, n)
                    ));
                }
            }
        }
    }
    // Readable by every sandbox uid.
    s.push_str(&format!("chmod -R a+rX {r}\ntar -C {r} -cf - . >&3\n"));
    s
}

/// What `go install` is given for each entry: a module path with its version, `@latest` when
/// the entry names none (`go install` outside a module needs one).
pub fn go_targets(list: &[String]) -> Vec<String> {
    list.iter().map(|n| if n.contains('@') { n.clone() } else { format!("{n}@latest") }).collect()
}

/// The manager and package a failed build's log names, if it got that far.
pub fn failed_package(log: &str) -> Option<(String, String)> {
    let line = log.lines().rev().find_map(|l| l.strip_prefix(FAILED_MARK))?;
    let (m, name) = line.trim().split_once(' ')?;
    Some((m.to_string(), name.to_string()))
}

/// The environment a session gets to use the layer at `dir` (its path inside the sandbox):
/// the layer's `bin` directories ahead of the sandbox's usual `PATH`, and each language's
/// search path.
pub fn layer_env(spec: &Spec, dir: &str) -> Vec<(String, String)> {
    let mut path = Vec::new();
    let mut env = Vec::new();
    for (m, _) in spec.lists() {
        match m {
            Manager::Pip => {
                path.push(format!("{dir}/python/bin"));
                env.push(("PYTHONPATH".to_string(), format!("{dir}/python")));
            }
            Manager::Npm => {
                path.push(format!("{dir}/node/bin"));
                env.push(("NODE_PATH".to_string(), format!("{dir}/node/lib/node_modules")));
            }
            Manager::Apt => {
                let (bins, libs) = super::apt::session_dirs(&format!("{dir}/apt"), &super::apt::multiarch());
                path.extend(bins);
                env.push(("LD_LIBRARY_PATH".to_string(), libs.join(":")));
            }
            Manager::Cargo => path.push(format!("{dir}/cargo/bin")),
            Manager::Go => path.push(format!("{dir}/go/bin")),
            Manager::Gem => {
                path.push(format!("{dir}/gem/bin"));
                // The trailing separator keeps Ruby's default gem path (its bundled gems) after it.
                env.push(("GEM_PATH".to_string(), format!("{dir}/gem:")));
            }
        }
    }
    if !path.is_empty() {
        // Login shells reset PATH; the sandbox's /etc/profile.d puts this prefix back.
        env.insert(0, ("BRIDLE_PATH_PREFIX".to_string(), path.join(":")));
        path.push(SANDBOX_PATH.to_string());
        env.insert(0, ("PATH".to_string(), path.join(":")));
    }
    env
}

/// The sandbox's usual `PATH`, after the layer's directories.
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> PackagesParams {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn refuses_managers_that_cannot_be_installed() {
        let go_missing = Installable::all_but([(Manager::Go, "`go` is not installed on this host".into())]);
        let nothing = Installable::none("not supported");
        let rows: &[(&str, serde_json::Value, &Installable, Option<&str>)] = &[
            ("nothing requested", serde_json::json!({}), &nothing, None),
            ("empty list clears", serde_json::json!({"pip": []}), &nothing, None),
            ("pip on a server with none", serde_json::json!({"pip": ["rich"]}), &nothing, Some("config.packages.pip")),
            (
                "go missing",
                serde_json::json!({"pip": ["rich"], "go": ["x"]}),
                &go_missing,
                Some("`go` is not installed"),
            ),
            ("go missing, go empty", serde_json::json!({"pip": ["rich"], "go": []}), &go_missing, None),
            ("apt fine", serde_json::json!({"apt": ["jq"]}), &go_missing, None),
        ];
        for (name, json, here, want) in rows {
            let got = check_installable(&params(json.clone()), here);
            match (want, got) {
                (None, Ok(())) => {}
                (Some(w), Err(e)) => assert!(e.0.contains(w), "{name}: {}", e.0),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
    }

    fn spec(pip: &[&str], npm: &[&str]) -> Spec {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (pip, npm) = (own(pip), own(npm));
        Spec::new([(Manager::Pip, pip.as_slice()), (Manager::Npm, npm.as_slice())]).unwrap()
    }

    #[test]
    fn names_are_checked() {
        let rows: &[(&str, bool)] = &[
            ("rich", true),
            ("requests==2.31.0", true),
            ("rich[jupyter]>=13,<14", true),
            ("@scope/pkg@^1.2.3", true),
            ("jq=1.6-2.1", true),
            ("", false),
            ("-e", false),
            ("--index-url=http://x", false),
            ("a b", false),
            ("a;rm -rf /", false),
            ("$(id)", false),
            ("a'b", false),
            ("a\nb", false),
        ];
        for (name, ok) in rows {
            assert_eq!(check_name(Manager::Pip, 0, name).is_ok(), *ok, "{name:?}");
        }
        assert!(check_name(Manager::Npm, 0, &"a".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn key_ignores_order_and_duplicates_and_follows_changes() {
        let a = spec(&["rich", "cowsay"], &["left-pad"]);
        assert_eq!(a.key(), spec(&["cowsay", " rich ", "rich"], &["left-pad"]).key());
        assert_ne!(a.key(), spec(&["rich"], &["left-pad"]).key());
        assert_ne!(a.key(), spec(&["rich", "cowsay"], &[]).key());
        // The same name under another manager is another layer.
        assert_ne!(spec(&["x"], &[]).key(), spec(&[], &["x"]).key());
        assert_eq!(a.key().len(), 32);
        assert!(spec(&[], &[]).is_empty());
    }

    #[test]
    fn too_many_packages_are_refused() {
        let many: Vec<String> = (0..=MAX_PACKAGES).map(|i| format!("p{i}")).collect();
        assert!(Spec::new([(Manager::Pip, many.as_slice())]).is_err());
        assert!(Spec::new([(Manager::Pip, &many[..MAX_PACKAGES])]).is_ok());
    }

    #[test]
    fn quoting_is_one_shell_word() {
        for (raw, want) in [("a", "'a'"), ("it's", r"'it'\''s'"), ("$(id) `x`", "'$(id) `x`'")] {
            assert_eq!(sh_quote(raw), want);
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", sh_quote(raw))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), raw);
        }
    }

    #[test]
    fn install_script_per_manager() {
        let reg = Registries {
            pip_index: Some("https://mirror.example.org/simple".into()),
            npm_registry: None,
            npm_cafile: Some("/etc/ssl/certs/ca.crt".into()),
            ..Registries::default()
        };
        let s = install_script(&spec(&["cowsay==6.1", "rich"], &["left-pad@1.3.0"]), &reg, "/workspace/layer");
        let rows = [
            "--target '/workspace/layer'/python --index-url 'https://mirror.example.org/simple' 'cowsay==6.1' 'rich'",
            "download --no-deps --no-cache-dir -d /tmp/bridle-probe --index-url 'https://mirror.example.org/simple' 'rich'",
            "'bridle-layer-failed pip rich'",
            "npm install --global --no-audit --no-fund --prefix '/workspace/layer'/node --cafile '/etc/ssl/certs/ca.crt' 'left-pad@1.3.0'",
            "'bridle-layer-failed npm left-pad@1.3.0'",
            "tar -C '/workspace/layer' -cf - . >&3",
        ];
        for want in rows {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
        assert!(!s.contains("--registry"), "no registry flag without a configured registry:\n{s}");
        // Valid sh.
        let out = std::process::Command::new("sh").args(["-n", "-c", &s]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn cargo_go_and_gem_install_into_the_layer() {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (cargo, go, gem) =
            (own(&["rsay@0.1.0"]), own(&["example.org/m/cmd/x@v1.2.3", "example.org/y"]), own(&["rake:13.0.6"]));
        let spec = Spec::new([
            (Manager::Cargo, cargo.as_slice()),
            (Manager::Go, go.as_slice()),
            (Manager::Gem, gem.as_slice()),
        ])
        .unwrap();
        let reg = Registries {
            goproxy: Some("http://goproxy.example.org:8080".into()),
            gem_source: Some("https://gems.example.org/".into()),
            ..Registries::default()
        };
        let s = install_script(&spec, &reg, "/workspace/layer");
        let rows = [
            "RUSTC=/opt/bridle/toolchains/cargo/bin/rustc PATH=/opt/bridle/toolchains/cargo/bin:$PATH",
            "export CARGO_HOME=/workspace/build/cargo-home",
            "/opt/bridle/toolchains/cargo/bin/cargo install --locked --no-track --root '/workspace/layer'/cargo 'rsay@0.1.0' || { echo 'bridle-layer-failed cargo rsay@0.1.0' >&2; exit 3; }",
            "export GOPROXY='http://goproxy.example.org:8080' GOSUMDB='off'",
            "GOBIN='/workspace/layer'/go/bin",
            "go install 'example.org/m/cmd/x@v1.2.3' || { echo 'bridle-layer-failed go example.org/m/cmd/x@v1.2.3' >&2; exit 3; }",
            "go install 'example.org/y@latest' || { echo 'bridle-layer-failed go example.org/y' >&2; exit 3; }",
            "gem install --no-document --clear-sources --source 'https://gems.example.org/' --install-dir '/workspace/layer'/gem --bindir '/workspace/layer'/gem/bin 'rake:13.0.6'",
            "'bridle-layer-failed gem rake:13.0.6'",
        ];
        for want in rows {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
        assert!(!s.contains("direct"), "no fallback to a module's own host:\n{s}");
        let out = std::process::Command::new("sh").args(["-n", "-c", &s]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let with_sumdb = install_script(&spec, &Registries { gosumdb: Some("sum.example.org".into()), ..reg }, "/l");
        assert!(with_sumdb.contains("GOSUMDB='sum.example.org'"), "{with_sumdb}");

        let env = layer_env(&spec, "/l");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_default();
        assert!(get("PATH").starts_with("/l/cargo/bin:/l/gem/bin:/l/go/bin:"), "{}", get("PATH"));
        assert_eq!(get("GEM_PATH"), "/l/gem:");
    }

    #[test]
    fn failed_package_is_found_in_the_log() {
        let rows = [
            ("ERROR: No matching distribution\nbridle-layer-failed pip nope==1\n", Some(("pip", "nope==1"))),
            ("bridle-layer-failed npm a b\n", Some(("npm", "a b"))),
            ("all fine\n", None),
        ];
        for (log, want) in rows {
            let got = failed_package(log);
            assert_eq!(got.as_ref().map(|(m, p)| (m.as_str(), p.as_str())), want, "{log:?}");
        }
    }

    #[test]
    fn layer_env_puts_the_layer_first() {
        let env = layer_env(&spec(&["rich"], &["left-pad"]), "/opt/bridle/layers/k");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("PATH"),
            Some(
                "/opt/bridle/layers/k/node/bin:/opt/bridle/layers/k/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            )
        );
        assert_eq!(get("BRIDLE_PATH_PREFIX"), Some("/opt/bridle/layers/k/node/bin:/opt/bridle/layers/k/python/bin"));
        assert_eq!(get("PYTHONPATH"), Some("/opt/bridle/layers/k/python"));
        assert_eq!(get("NODE_PATH"), Some("/opt/bridle/layers/k/node/lib/node_modules"));
        assert!(layer_env(&spec(&[], &[]), "/x").is_empty());
    }

    #[test]
    fn apt_layers_put_binaries_and_libraries_first() {
        let tidy = vec!["tidy".to_string()];
        let apt = Spec::new([(Manager::Apt, tidy.as_slice())]).unwrap();
        let env = layer_env(&apt, "/l");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_default();
        let triplet = super::super::apt::multiarch();
        assert!(get("PATH").starts_with("/l/apt/usr/local/bin:/l/apt/usr/bin:"), "{}", get("PATH"));
        assert!(get("PATH").ends_with(SANDBOX_PATH), "{}", get("PATH"));
        assert_eq!(get("LD_LIBRARY_PATH"), format!("/l/apt/usr/lib/{triplet}:/l/apt/lib/{triplet}:/l/apt/usr/lib"));
        let s = install_script(&apt, &Registries::default(), "/workspace/layer");
        assert!(s.contains("dpkg-deb -x \"$deb\" '/workspace/layer/apt'"), "{s}");
        assert!(s.contains("tar -C '/workspace/layer' -cf - . >&3"), "{s}");
    }
}
