//! apt packages in a layer: the host's apt sources and package database are copied into the
//! build sandbox (read, never written: the host's dpkg database stays as it is), apt resolves
//! and downloads there what the host lacks, and `dpkg-deb -x` unpacks each `.deb` into the
//! layer's `apt/` root. A session sees that root's `bin` directories on `PATH` and its library
//! directories on `LD_LIBRARY_PATH`.
//!
//! Pure: which hosts the sources name, the build script's apt part, the session's directories.
//! I/O: [`host_inputs`] reads the host's apt configuration.

use std::path::Path;

use anyhow::Context;

use super::spec::{FAILED_MARK, sh_quote};

/// Where the build sandbox gets the host's apt configuration and a copy of its dpkg status;
/// apt's lists and downloads go there too.
pub const STATE_INSIDE: &str = "/workspace/apt-state";

/// The host's apt configuration directory.
const ETC_APT: &str = "/etc/apt";
/// The host's dpkg database (its installed packages): read only.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// The hosts of the `http(s)` repositories in an apt sources file: one-line `.list`
/// (`deb [opts] URI suite comp…`) or deb822 `.sources` (`URIs: a b`). Other schemes (`file:`,
/// `cdrom:`) need no network.
pub fn source_hosts(name: &str, text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    if name.ends_with(".sources") {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':')
                && k.trim().eq_ignore_ascii_case("uris")
                && !line.starts_with('#')
            {
                uris.extend(v.split_whitespace().map(str::to_string));
            }
        }
    } else {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let mut words = line.split_whitespace();
            if !matches!(words.next(), Some("deb" | "deb-src")) {
                continue;
            }
            // `[arch=amd64 signed-by=…]` options may hold spaces inside the brackets.
            let rest: Vec<&str> = words.collect();
            let rest = rest.join(" ");
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']').map_or("", |(_, after)| after),
                None => rest.as_str(),
            };
            uris.extend(rest.split_whitespace().next().map(str::to_string));
        }
    }
    let mut hosts: Vec<String> = uris
        .iter()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .filter_map(|u| super::registries::host_of(u))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The multiarch directory name of this machine's libraries (`x86_64-linux-gnu`).
pub fn multiarch() -> String {
    format!("{}-linux-gnu", std::env::consts::ARCH)
}

/// The layer's `bin` directories and library directories under its apt root `root`.
pub fn session_dirs(root: &str, multiarch: &str) -> (Vec<String>, Vec<String>) {
    let bins = ["usr/local/bin", "usr/bin", "bin", "usr/sbin", "sbin"].map(|d| format!("{root}/{d}")).to_vec();
    let libs = [format!("usr/lib/{multiarch}"), format!("lib/{multiarch}"), "usr/lib".to_string()]
        .map(|d| format!("{root}/{d}"))
        .to_vec();
    (bins, libs)
}

/// The build script's apt part: refresh the lists into the private state, download what the
/// packages need beyond what the host has installed, unpack each `.deb` into `root`. A failure
/// prints [`FAILED_MARK`] with the package (or step) that failed.
pub fn script(names: &[String], root: &str) -> String {
    let fail = |what: &str| format!("echo {} >&2; exit 3;", sh_quote(&format!("{FAILED_MARK} apt {what}")));
    let a = sh_quote(STATE_INSIDE);
    let r = sh_quote(root);
    let quoted: Vec<String> = names.iter().map(|n| sh_quote(n)).collect();
    // The host's configuration first, then every path redirected into the private state (the
    // `-o` options are read after `-c`), and the sandbox's gateway as apt's proxy (without
    // pipelining: the gateway forwards plain HTTP one request at a time).
    let mut s = format!(
        "mkdir -p {a}/lists/partial {a}/archives/partial {a}/log {r}\n\
         bridle_apt() {{ apt-get -q -c {a}/apt.conf -o Dir::Etc={a}/etc -o Dir::State={a} -o Dir::State::lists={a}/lists \
         -o Dir::State::status={a}/status -o Dir::Cache={a} -o Dir::Cache::archives={a}/archives -o Dir::Log={a}/log \
         -o Debug::NoLocking=true -o Acquire::http::Pipeline-Depth=0 -o Acquire::http::Proxy=\"${{http_proxy:-}}\" -o Acquire::https::Proxy=\"${{https_proxy:-}}\" \"$@\"; }}\n\
         bridle_apt update || exit 3\n",
    );
    s.push_str(&format!(
        "if ! bridle_apt install -y --download-only --no-install-recommends --no-upgrade {}; then\n",
        quoted.join(" ")
    ));
    // On failure each package alone (a dry run), to name the one that fails.
    for (n, q) in names.iter().zip(&quoted) {
        s.push_str(&format!(
            "  bridle_apt install -s -y --no-install-recommends {q} >/dev/null 2>&1 || {{ {} }}\n",
            fail(n)
        ));
    }
    s.push_str(&format!("  {}\nfi\n", fail(&names.join(" "))));
    s.push_str(&format!(
        "for deb in {a}/archives/*.deb; do\n  [ -e \"$deb\" ] || continue\n  echo \"[bridle] apt: unpacking ${{deb##*/}}\" >&2\n  \
         dpkg-deb -x \"$deb\" {r} || {{ echo \"{FAILED_MARK} apt ${{deb##*/}}\" >&2; exit 3; }}\ndone\n"
    ));
    s
}

/// The files a build sandbox needs for apt, as (path inside, contents): the host's effective
/// apt configuration (`apt-config dump`), its sources, keys and preferences, and a copy of its
/// dpkg status (so packages the host has are not downloaded again).
pub fn host_inputs() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let dump = std::process::Command::new("apt-config").arg("dump").output().context("running apt-config dump")?;
    anyhow::ensure!(dump.status.success(), "apt-config dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    out.push((format!("{STATE_INSIDE}/apt.conf"), dump.stdout));
    let status = std::fs::read(DPKG_STATUS).with_context(|| format!("reading {DPKG_STATUS}"))?;
    out.push((format!("{STATE_INSIDE}/status"), status));
    for file in ["sources.list", "trusted.gpg", "preferences"] {
        push_file(&mut out, &Path::new(ETC_APT).join(file), file)?;
    }
    for dir in ["sources.list.d", "trusted.gpg.d", "preferences.d"] {
        let entries = match std::fs::read_dir(Path::new(ETC_APT).join(dir)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {ETC_APT}/{dir}")),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            push_file(&mut out, &e.path(), &format!("{dir}/{name}"))?;
        }
    }
    Ok(out)
}

/// `path` (links followed) as `etc/<rel>` under the state dir, when it is a regular file.
fn push_file(out: &mut Vec<(String, Vec<u8>)>, path: &Path, rel: &str) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            out.push((format!("{STATE_INSIDE}/etc/{rel}"), body));
        }
        _ => {}
    }
    Ok(())
}

/// The hosts of every source the host's apt is configured with.
pub fn host_source_hosts() -> Vec<String> {
    let mut files = vec![Path::new(ETC_APT).join("sources.list")];
    if let Ok(entries) = std::fs::read_dir(Path::new(ETC_APT).join("sources.list.d")) {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    let mut hosts: Vec<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
        .filter_map(|p| Some(source_hosts(&p.file_name()?.to_string_lossy(), &std::fs::read_to_string(p).ok()?)))
        .flatten()
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_sources() {
        let deb822 = "Types: deb\n# http://snapshot.example.org/archive\nURIs: http://deb.example.org/debian https://Mirror.example.net/debian\nSuites: bookworm\n\nTypes: deb\nURIs: file:/srv/repo\n";
        let list = "deb http://a.example.org/debian bookworm main\n# deb http://commented.example.org x y\ndeb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://b.example.org/apt stable main\ndeb-src http://a.example.org/debian bookworm main\ncdrom:[x]/ y\n";
        let rows: &[(&str, &str, &[&str])] = &[
            ("debian.sources", deb822, &["deb.example.org", "mirror.example.net"]),
            ("x.list", list, &["a.example.org", "b.example.org"]),
            ("empty.list", "", &[]),
        ];
        for (name, text, want) in rows {
            assert_eq!(source_hosts(name, text), want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{name}");
        }
    }

    #[test]
    fn script_downloads_into_private_state_and_unpacks() {
        let names = vec!["tidy".to_string(), "cmark=0.30.2-6".to_string()];
        let s = script(&names, "/workspace/layer/apt");
        let rows = [
            "-o Dir::State::status='/workspace/apt-state'/status",
            "-c '/workspace/apt-state'/apt.conf",
            "bridle_apt update || exit 3",
            "install -y --download-only --no-install-recommends --no-upgrade 'tidy' 'cmark=0.30.2-6'",
            "install -s -y --no-install-recommends 'cmark=0.30.2-6' >/dev/null 2>&1 || { echo 'bridle-layer-failed apt cmark=0.30.2-6' >&2; exit 3; }",
            "dpkg-deb -x \"$deb\" '/workspace/layer/apt'",
        ];
        for want in rows {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
        // The host's own database is never named.
        assert!(!s.contains(DPKG_STATUS), "{s}");
        let out = std::process::Command::new("sh").args(["-n", "-c", &s]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn session_dirs_under_the_root() {
        let (bins, libs) = session_dirs("/l/apt", "x86_64-linux-gnu");
        assert!(bins.contains(&"/l/apt/usr/bin".to_string()) && bins.contains(&"/l/apt/bin".to_string()));
        assert_eq!(libs, ["/l/apt/usr/lib/x86_64-linux-gnu", "/l/apt/lib/x86_64-linux-gnu", "/l/apt/usr/lib"]);
    }
}
