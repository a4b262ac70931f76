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
    let s = format!(
        "mkdir -p {a}/lists/partial {a}/archives/partial {a}/log {r}\n\
         bridle_apt() {{ apt-get -q -c {a}/apt.conf -o Dir::Etc={a}/etc -o Dir::State={a} -o Dir::State::lists={a}/lists \
         -o Dir::State::status={a}/status -o Dir::Cache={a} -o Dir::Cache::archives={a}/archives -o Dir::Log={a}/log \
         -o Debug::NoLocking=true -o Acquire::http::Pipeline-Depth=0 -o Acquire::http::Proxy=\"${{http_proxy:-}}\" -o Acquire::https::Proxy=\"${{https_proxy:-}}\" \"$@\"; }}\n\
         bridle_download() {{ bridle_apt install -y --download-only --no-install-recommends --no-upgrade {}; }}\n",
        quoted.join(" ")
    );
    let mut s = s;
    // Lists restored from the cache (see `LISTS_CACHED`) skip `apt-get update`; should they be
    // too old for the mirror (a `.deb` they name is gone), update them and try again.
    s.push_str(&format!(
        "if [ -e {a}/{LISTS_CACHED} ]; then\n  echo '[bridle] apt: package lists from the cache' >&2\n  \
         bridle_download || {{ echo '[bridle] apt: the cached lists failed; updating them' >&2; rm -f {a}/{LISTS_CACHED}; }}\nfi\n\
         if [ ! -e {a}/{LISTS_CACHED} ]; then\n  bridle_apt update || exit 3\n  touch {a}/{LISTS_UPDATED}\n  \
         if ! bridle_download; then\n"
    ));
    // On failure each package alone (a dry run), to name the one that fails.
    for (n, q) in names.iter().zip(&quoted) {
        s.push_str(&format!(
            "    bridle_apt install -s -y --no-install-recommends {q} >/dev/null 2>&1 || {{ {} }}\n",
            fail(n)
        ));
    }
    s.push_str(&format!("    {}\n  fi\nfi\n", fail(&names.join(" "))));
    s.push_str(&format!(
        "for deb in {a}/archives/*.deb; do\n  [ -e \"$deb\" ] || continue\n  echo \"[bridle] apt: unpacking ${{deb##*/}}\" >&2\n  \
         dpkg-deb -x \"$deb\" {r} || {{ echo \"{FAILED_MARK} apt ${{deb##*/}}\" >&2; exit 3; }}\ndone\n"
    ));
    s
}

/// Marks lists restored from the cache (in [`STATE_INSIDE`]): the build skips `apt-get update`.
const LISTS_CACHED: &str = "lists-cached";
/// Marks lists this build updated: worth keeping for the next build.
const LISTS_UPDATED: &str = "lists-updated";

/// Unpacks cached lists (a tar on stdin) where the build's apt reads them.
pub fn lists_restore_script() -> String {
    let a = sh_quote(STATE_INSIDE);
    format!("mkdir -p {a}/lists && tar -C {a}/lists -xf - && touch {a}/{LISTS_CACHED}")
}

/// Streams the lists a build updated as a tar to stdout (exit 4: nothing new to keep).
pub fn lists_export_script() -> String {
    let a = sh_quote(STATE_INSIDE);
    format!("[ -e {a}/{LISTS_UPDATED} ] || exit 4\nexec tar -C {a}/lists --exclude=./partial --exclude=./lock -cf - .")
}

/// The key of the package lists `inputs` (from [`host_inputs`]) give: the apt configuration
/// and sources, not the dpkg status (installing on the host does not change the lists).
pub fn lists_key(inputs: &[(String, Vec<u8>)]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&(String, Vec<u8>)> =
        inputs.iter().filter(|(p, _)| *p != format!("{STATE_INSIDE}/status")).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    for (path, body) in sorted {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((body.len() as u64).to_le_bytes());
        h.update(body);
    }
    hex::encode(&h.finalize()[..16])
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
    fn cached_lists_skip_the_update_until_they_fail() {
        let s = script(&["tidy".to_string()], "/l/apt");
        let cached = s.find("if [ -e '/workspace/apt-state'/lists-cached ]").expect("a cached branch");
        let update = s.find("bridle_apt update").unwrap();
        assert!(cached < update, "the cache is tried before an update:\n{s}");
        assert!(s.contains("rm -f '/workspace/apt-state'/lists-cached"), "a failed cached download updates:\n{s}");
        assert!(s.contains("touch '/workspace/apt-state'/lists-updated"), "{s}");
        for sh in [s, lists_restore_script(), lists_export_script()] {
            let out = std::process::Command::new("sh").args(["-n", "-c", &sh]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// The shell parts run for real: a cached list is restored, the script takes the cached
    /// branch (a stub apt-get), and an update's lists are exported.
    #[test]
    fn lists_round_trip_through_the_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let fix = |sh: String| sh.replace(STATE_INSIDE, &state.display().to_string());
        let lists = dir.path().join("lists.tar");
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/deb_Packages"), "Package: tidy\n").unwrap();
        let ok = std::process::Command::new("tar")
            .args(["-C", &dir.path().join("src").display().to_string(), "-cf", &lists.display().to_string(), "."])
            .status()
            .unwrap();
        assert!(ok.success());
        let sh = |script: String, stdin: Option<&std::path::Path>| {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &script]);
            if let Some(p) = stdin {
                c.stdin(std::fs::File::open(p).unwrap());
            }
            c.output().unwrap()
        };
        assert!(sh(fix(lists_restore_script()), Some(&lists)).status.success());
        assert!(state.join("lists/deb_Packages").is_file() && state.join(LISTS_CACHED).is_file());
        // Nothing updated yet: nothing to export.
        assert_eq!(sh(fix(lists_export_script()), None).status.code(), Some(4));
        // A stub apt-get on PATH records what it is asked; downloads succeed.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.path().join("apt.log");
        std::fs::write(bin.join("apt-get"), format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display())).unwrap();
        std::fs::set_permissions(bin.join("apt-get"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let run = fix(script(&["tidy".to_string()], &dir.path().join("layer").display().to_string()));
        let out = sh(format!("export PATH={}:$PATH\n{run}", bin.display()), None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(calls.contains("--download-only") && !calls.contains(" update"), "{calls}");
        // Without the cache the lists are updated, then exported.
        std::fs::remove_file(state.join(LISTS_CACHED)).unwrap();
        assert!(sh(format!("export PATH={}:$PATH\n{run}", bin.display()), None).status.success());
        assert!(std::fs::read_to_string(&log).unwrap().contains(" update"));
        let out = sh(fix(lists_export_script()), None);
        assert!(out.status.success() && !out.stdout.is_empty());
    }

    #[test]
    fn lists_key_follows_sources_not_status() {
        let inputs = |sources: &str, status: &str| {
            vec![
                (format!("{STATE_INSIDE}/apt.conf"), b"APT::Architecture \"amd64\";".to_vec()),
                (format!("{STATE_INSIDE}/status"), status.as_bytes().to_vec()),
                (format!("{STATE_INSIDE}/etc/sources.list"), sources.as_bytes().to_vec()),
            ]
        };
        let a = lists_key(&inputs("deb http://a.example.org/debian bookworm main", "Package: bash"));
        assert_eq!(a, lists_key(&inputs("deb http://a.example.org/debian bookworm main", "Package: tidy")));
        assert_ne!(a, lists_key(&inputs("deb http://b.example.org/debian bookworm main", "Package: bash")));
        let mut reordered = inputs("deb http://a.example.org/debian bookworm main", "");
        reordered.reverse();
        assert_eq!(a, lists_key(&reordered));
    }

    #[test]
    fn session_dirs_under_the_root() {
        let (bins, libs) = session_dirs("/l/apt", "x86_64-linux-gnu");
        assert!(bins.contains(&"/l/apt/usr/bin".to_string()) && bins.contains(&"/l/apt/bin".to_string()));
        assert_eq!(libs, ["/l/apt/usr/lib/x86_64-linux-gnu", "/l/apt/lib/x86_64-linux-gnu", "/l/apt/usr/lib"]);
    }
}
