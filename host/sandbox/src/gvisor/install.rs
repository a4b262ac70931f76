//! Installing a `runsc` recent enough for agents, with apt-get.
//!
//! Debian 12's own `runsc` (release 20221219) runs sandboxes, but only on
//! `ptrace`, and a codex turn on it sometimes stalls for good (an exited tool
//! child is never reaped). The release in `<codename>-backports`
//! (20240729) runs on `systrap` and passes every suite. So installing means:
//! take the distribution's candidate when it is recent enough, else add the
//! backports suite of the host's own Debian source (same mirror, same key;
//! no host name of ours is involved) and install from there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest runsc release Bridle's end-to-end suites pass on.
pub const TESTED_RELEASE: u32 = 20240729;

/// Where the derived backports source is written.
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/bridle-backports.sources";

/// The release date in `runsc --version`'s first line: Debian's
/// `0.0~20221219.0` and upstream's `release-20240729.0` both carry it.
pub fn release(version_line: &str) -> Option<u32> {
    let bytes = version_line.as_bytes();
    (0..bytes.len().saturating_sub(7)).find_map(|i| {
        let digits = &bytes[i..i + 8];
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + 8);
        let alone = !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit());
        (alone && digits.starts_with(b"20") && digits.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(digits).ok()?.parse().ok())
            .flatten()
    })
}

/// Is this `runsc --version` line one Bridle's suites pass on?
pub fn recent_enough(version_line: &str) -> bool {
    release(version_line).is_some_and(|r| r >= TESTED_RELEASE)
}

/// The distribution's codename, from `/etc/os-release`'s text.
pub fn codename(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// Do these apt sources already list `<codename>-backports`?
pub fn has_backports(sources: &[String], codename: &str) -> bool {
    let suite = format!("{codename}-backports");
    sources.iter().any(|text| {
        text.lines().any(|l| {
            let l = l.trim();
            !l.starts_with('#')
                && (l.strip_prefix("Suites:").is_some_and(|s| s.split_whitespace().any(|w| w == suite))
                    || (l.starts_with("deb ") && l.split_whitespace().any(|w| w == suite)))
        })
    })
}

/// A deb822 source for `<codename>-backports`, derived from the first
/// enabled source (deb822 or one-line) that serves `<codename>` itself:
/// same URIs, components and key. `None` when no source serves it.
pub fn backports_source(sources: &[String], codename: &str) -> Option<String> {
    sources.iter().find_map(|text| from_deb822(text, codename).or_else(|| from_one_line(text, codename)))
}

fn from_deb822(text: &str, codename: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let lines: Vec<&str> =
            stanza.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).collect();
        let field = |name: &str| lines.iter().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let serves = field("Suites:").is_some_and(|s| s.split_whitespace().any(|w| w == codename));
        let deb = field("Types:").is_some_and(|t| t.split_whitespace().any(|w| w == "deb"));
        let enabled = field("Enabled:").is_none_or(|e| e != "no");
        (serves && deb && enabled).then(|| {
            let mut out = String::new();
            for l in &lines {
                if l.starts_with("Suites:") {
                    out.push_str(&format!("Suites: {codename}-backports\n"));
                } else if l.starts_with("Types:") {
                    out.push_str("Types: deb\n");
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            out
        })
    })
}

fn from_one_line(text: &str, codename: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("deb ")?;
        // `deb [signed-by=/k.gpg arch=amd64] URI suite components...`
        let (options, rest) = match rest.trim_start().strip_prefix('[') {
            Some(r) => {
                let end = r.find(']')?;
                (Some(&r[..end]), &r[end + 1..])
            }
            None => (None, rest),
        };
        let mut words = rest.split_whitespace();
        let (uri, suite) = (words.next()?, words.next()?);
        let components: Vec<&str> = words.collect();
        if suite != codename || components.is_empty() {
            return None;
        }
        let mut out =
            format!("Types: deb\nURIs: {uri}\nSuites: {codename}-backports\nComponents: {}\n", components.join(" "));
        for opt in options.unwrap_or_default().split_whitespace() {
            if let Some(key) = opt.strip_prefix("signed-by=") {
                out.push_str(&format!("Signed-By: {key}\n"));
            }
        }
        Some(out)
    })
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// A recent enough runsc was already installed.
    Present { path: PathBuf, version: String },
    /// apt-get installed (or upgraded) it.
    Installed { path: PathBuf, version: String },
}

/// Make sure a runsc of at least [`TESTED_RELEASE`] is installed: as root,
/// with apt-get, from the distribution or its backports suite. Blocking.
pub fn ensure() -> Result<Ensured, String> {
    let installed = |runsc: &Path| super::runsc::version(runsc).unwrap_or_default();
    let before = super::runsc::find(None).ok().map(|p| {
        let v = installed(&p);
        (p, v)
    });
    if let Some((path, version)) = &before
        && recent_enough(version)
    {
        return Ok(Ensured::Present { path: path.clone(), version: version.clone() });
    }
    let have = |p: &str| Path::new(p).exists();
    if !crate::local::is_root() || !have("/usr/bin/apt-get") {
        return Err(match &before {
            Some((p, v)) => format!(
                "{} is {v:?}, older than release {TESTED_RELEASE} (codex turns can stall on it); \
                 upgrade it as root, e.g. from your distribution's backports: \
                 `apt-get install -t <codename>-backports runsc`",
                p.display()
            ),
            None => format!("runsc is not installed; {}", super::INSTALL_HINT),
        });
    }
    let mut tried = Vec::new();
    // The distribution's own candidate first: a newer distribution has it.
    if apt(&["install", "-y", "-qq", "runsc"]).is_ok() && upgraded(&mut tried)? {
        return finish();
    }
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = codename(&os_release).ok_or("cannot tell the distribution's codename from /etc/os-release")?;
    let sources = apt_sources();
    if !has_backports(&sources, &codename) {
        let source = backports_source(&sources, &codename)
            .ok_or_else(|| format!("no apt source serves {codename}, so its backports suite cannot be added"))?;
        std::fs::write(BACKPORTS_SOURCE, source).map_err(|e| format!("writing {BACKPORTS_SOURCE}: {e}"))?;
        tracing::info!(path = BACKPORTS_SOURCE, "added the {codename}-backports apt suite for a recent runsc");
    }
    // An unrelated source that cannot be reached fails the update, not the backports suite:
    // the install below says whether runsc could be had.
    if let Err(e) = apt(&["update", "-qq"]) {
        tracing::warn!("{e}");
    }
    let suite = format!("{codename}-backports");
    apt(&["install", "-y", "-qq", "-t", &suite, "runsc"])?;
    if !upgraded(&mut tried)? {
        return Err(format!("runsc from {suite} is still older than release {TESTED_RELEASE}: {}", tried.join(", ")));
    }
    finish()
}

/// Is the runsc now installed recent enough? Records what was seen.
fn upgraded(tried: &mut Vec<String>) -> Result<bool, String> {
    let path = super::runsc::find(None)?;
    let version = super::runsc::version(&path).unwrap_or_default();
    tried.push(version.clone());
    Ok(recent_enough(&version))
}

fn finish() -> Result<Ensured, String> {
    let path = super::runsc::find(None)?;
    let version = super::runsc::version(&path).unwrap_or_default();
    Ok(Ensured::Installed { path, version })
}

/// The text of every apt source file.
fn apt_sources() -> Vec<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
}

/// Run apt-get, waiting for another apt's lock rather than failing on it.
fn apt(args: &[&str]) -> Result<(), String> {
    let out = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("running apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`apt-get {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_of_a_version_line() {
        let cases = [
            ("runsc version 0.0~20221219.0", Some(20221219)),
            ("runsc version 0.0~20240729.0", Some(20240729)),
            ("runsc version release-20250106.0", Some(20250106)),
            ("runsc version 1.2.3", None),
            ("runsc version 0.0~202407290.0", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(release(line), want, "{line:?}");
        }
        assert!(!recent_enough("runsc version 0.0~20221219.0"));
        assert!(recent_enough("runsc version 0.0~20240729.0"));
        assert!(!recent_enough("garbage"));
    }

    #[test]
    fn the_codename() {
        assert_eq!(codename("NAME=\"Debian\"\nVERSION_CODENAME=bookworm\n").as_deref(), Some("bookworm"));
        assert_eq!(codename("VERSION_CODENAME=\"jammy\"").as_deref(), Some("jammy"));
        assert_eq!(codename("VERSION_CODENAME=\n"), None);
        assert_eq!(codename("NAME=x"), None);
    }

    const DEB822: &str = "Types: deb\n# comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn backports_from_a_deb822_source() {
        let got = backports_source(&[DEB822.into()], "bookworm").unwrap();
        assert_eq!(
            got,
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        assert_eq!(backports_source(&[DEB822.into()], "trixie"), None);
        let disabled = DEB822.replacen("Types: deb\n", "Types: deb\nEnabled: no\n", 1);
        assert_eq!(backports_source(&[disabled], "bookworm"), None);
        let src_only = DEB822.replacen("Types: deb\n", "Types: deb-src\n", 1);
        assert_eq!(backports_source(&[src_only], "bookworm"), None);
    }

    #[test]
    fn backports_from_a_one_line_source() {
        let list = "# deb http://old.invalid bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main contrib\n";
        assert_eq!(
            backports_source(&[list.into()], "bookworm").unwrap(),
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\nComponents: main contrib\nSigned-By: /k.gpg\n"
        );
        let plain = "deb http://mirror.invalid/debian bookworm main\n";
        assert_eq!(
            backports_source(&[plain.into()], "bookworm").unwrap(),
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\nComponents: main\n"
        );
        assert_eq!(backports_source(&["deb http://m.invalid bookworm-updates main\n".into()], "bookworm"), None);
        // Unrelated sources come first: the one that serves the codename wins.
        let other = "deb http://vendor.invalid nodistro main\n".to_string();
        assert!(backports_source(&[other, DEB822.into()], "bookworm").unwrap().contains("mirror.invalid/debian\n"));
    }

    #[test]
    fn backports_already_listed() {
        assert!(!has_backports(&[DEB822.into()], "bookworm"));
        assert!(has_backports(&["Suites: bookworm-backports\n".into()], "bookworm"));
        assert!(has_backports(&["deb http://m.invalid bookworm-backports main\n".into()], "bookworm"));
        assert!(!has_backports(&["# deb http://m.invalid bookworm-backports main\n".into()], "bookworm"));
        assert!(!has_backports(&["Suites: bullseye-backports\n".into()], "bookworm"));
    }
}
