//! Bridle's own environment metadata keys (`bridle.*`): settings the Managed
//! Agents API's environment object has no field for, which an environment
//! opts into where the operator allows it. Metadata values are strings, so
//! each key has a parser and bounds here; a key Bridle does not know, or a
//! value it would not act on, is refused at environment create and update
//! rather than stored and ignored.
//!
//! Today there are two: [`DISK_BYTES_KEY`], the workspace quota of the
//! environment's sessions (`sessions.sandbox_disk_bytes_max` allows it), and
//! [`DRIVER_KEY`], the sandbox driver they run on
//! (`sessions.sandbox_drivers_allowed` allows it).

use super::common::{Invalid, Metadata};
use crate::config::SandboxDriverKind;

/// The prefix of Bridle's own keys on environment metadata.
pub const PREFIX: &str = "bridle.";
/// The bytes each session's `/workspace` and `/tmp` may hold together, as a
/// decimal string.
pub const DISK_BYTES_KEY: &str = "bridle.sandbox_disk_bytes";
/// The sandbox driver the environment's sessions run on (`bubblewrap` or
/// `gvisor`), fixed for each session when it is created.
pub const DRIVER_KEY: &str = "bridle.sandbox_driver";

/// What the operator allows [`DRIVER_KEY`] to name, and which of those
/// drivers this node could not start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverChoice {
    /// `sessions.sandbox_drivers_allowed`; empty: environments may not
    /// choose.
    pub allowed: Vec<SandboxDriverKind>,
    /// Allowed drivers that are not available here, and why.
    pub unavailable: Vec<(SandboxDriverKind, String)>,
}

/// What the operator allows [`DISK_BYTES_KEY`] to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskBounds {
    /// The sandbox driver's smallest workspace image.
    pub min: u64,
    /// `sessions.sandbox_disk_bytes_max`; `0`: environments may not set it.
    pub max: u64,
}

impl DiskBounds {
    /// The bounds under `sessions.sandbox_disk_bytes_max = max`.
    pub fn new(max: u64) -> DiskBounds {
        DiskBounds { min: bridle_sandbox::MIN_WORKSPACE_BYTES, max }
    }
}

/// Check the `bridle.*` pairs an environment create or update sets (other
/// keys are left alone).
pub fn check<'a>(
    set: impl IntoIterator<Item = (&'a String, &'a String)>,
    bounds: DiskBounds,
    drivers: &DriverChoice,
) -> Result<(), Invalid> {
    for (k, v) in set {
        if k == DISK_BYTES_KEY {
            parse_disk_bytes(v, bounds)?;
        } else if k == DRIVER_KEY {
            parse_driver(v, drivers)?;
        } else if k.starts_with(PREFIX) {
            return Err(Invalid::new(format!(
                "metadata.{k}: unknown Bridle environment key; the known keys are {DISK_BYTES_KEY} and {DRIVER_KEY}"
            )));
        }
    }
    Ok(())
}

/// The sandbox driver an environment's metadata names (`None`: the
/// server's `sessions.sandbox_driver`), checked against what the operator
/// allows and this node has today.
pub fn sandbox_driver(m: &Metadata, drivers: &DriverChoice) -> Result<Option<SandboxDriverKind>, Invalid> {
    m.get(DRIVER_KEY).map(|v| parse_driver(v, drivers)).transpose()
}

fn parse_driver(v: &str, c: &DriverChoice) -> Result<SandboxDriverKind, Invalid> {
    if c.allowed.is_empty() {
        return Err(Invalid::new(format!(
            "metadata.{DRIVER_KEY}: the operator has not enabled per-environment sandbox drivers on this server \
             (sessions.sandbox_drivers_allowed is empty)"
        )));
    }
    let names = || c.allowed.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
    let Some(kind) = SandboxDriverKind::parse(v) else {
        return Err(Invalid::new(format!(
            "metadata.{DRIVER_KEY}: unknown sandbox driver `{v}`; this server allows: {}",
            names()
        )));
    };
    if !c.allowed.contains(&kind) {
        return Err(Invalid::new(format!(
            "metadata.{DRIVER_KEY}: the `{kind}` sandbox driver is not allowed on this server \
             (sessions.sandbox_drivers_allowed: {})",
            names()
        )));
    }
    if let Some((_, why)) = c.unavailable.iter().find(|(k, _)| *k == kind) {
        return Err(Invalid::new(format!(
            "metadata.{DRIVER_KEY}: the `{kind}` sandbox driver is not available on this server: {why}"
        )));
    }
    Ok(kind)
}

/// The workspace quota an environment's metadata asks for (`None`: it does
/// not set one), checked against today's bounds.
pub fn disk_bytes(m: &Metadata, bounds: DiskBounds) -> Result<Option<u64>, Invalid> {
    m.get(DISK_BYTES_KEY).map(|v| parse_disk_bytes(v, bounds)).transpose()
}

fn parse_disk_bytes(v: &str, b: DiskBounds) -> Result<u64, Invalid> {
    if b.max == 0 {
        return Err(Invalid::new(format!(
            "metadata.{DISK_BYTES_KEY}: the operator has not enabled per-environment workspace quotas on this \
             server (sessions.sandbox_disk_bytes_max is 0)"
        )));
    }
    let n = (!v.is_empty() && v.bytes().all(|c| c.is_ascii_digit())).then(|| v.parse::<u64>().ok()).flatten();
    match n {
        Some(n) if (b.min..=b.max).contains(&n) => Ok(n),
        _ => Err(Invalid::new(format!(
            "metadata.{DISK_BYTES_KEY}: must be a whole number of bytes from {} to {} (sessions.sandbox_disk_bytes_max), \
             got `{v}`",
            b.min, b.max
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: DiskBounds = DiskBounds { min: 16 << 20, max: 1 << 30 };

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn check_refuses_what_would_not_be_acted_on() {
        let off = DiskBounds { max: 0, ..B };
        for (kv, bounds, want) in [
            (vec![("team", "x")], off, Ok(())),
            (vec![("team", "x"), (DISK_BYTES_KEY, "16777216")], B, Ok(())),
            (vec![(DISK_BYTES_KEY, "1073741824")], B, Ok(())),
            (vec![(DISK_BYTES_KEY, "16777216")], off, Err("has not enabled")),
            (vec![(DISK_BYTES_KEY, "16777215")], B, Err("from 16777216 to 1073741824")),
            (vec![(DISK_BYTES_KEY, "1073741825")], B, Err("got `1073741825`")),
            (vec![(DISK_BYTES_KEY, "1GiB")], B, Err("whole number of bytes")),
            (vec![(DISK_BYTES_KEY, "-20000000")], B, Err("whole number")),
            (vec![(DISK_BYTES_KEY, "+20000000")], B, Err("whole number")),
            (vec![(DISK_BYTES_KEY, " 20000000")], B, Err("whole number")),
            (vec![(DISK_BYTES_KEY, "2e7")], B, Err("whole number")),
            (vec![(DISK_BYTES_KEY, "")], B, Err("whole number")),
            (vec![(DISK_BYTES_KEY, "99999999999999999999999")], B, Err("whole number")),
            (vec![("bridle.sandbox_disk_byte", "20000000")], B, Err("unknown Bridle environment key")),
            (vec![("bridle.cpus", "2")], off, Err("metadata.bridle.cpus")),
        ] {
            let p = pairs(&kv);
            let got = check(p.iter().map(|(k, v)| (k, v)), bounds, &DriverChoice::default());
            match (want, got) {
                (Ok(()), Ok(())) => {}
                (Err(needle), Err(e)) => {
                    assert!(e.0.contains(needle), "{kv:?}: {}", e.0);
                    assert!(e.0.starts_with("metadata.bridle."), "names the key: {}", e.0);
                }
                (want, got) => panic!("{kv:?} under {bounds:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_driver_key_names_an_allowed_available_driver() {
        use SandboxDriverKind::*;
        let off = DriverChoice::default();
        let both = DriverChoice { allowed: vec![Bubblewrap, Gvisor], unavailable: vec![] };
        let bwrap_only = DriverChoice { allowed: vec![Bubblewrap], unavailable: vec![] };
        let no_runsc =
            DriverChoice { allowed: vec![Bubblewrap, Gvisor], unavailable: vec![(Gvisor, "runsc is missing".into())] };
        for (v, choice, want) in [
            ("gvisor", &both, Ok(Gvisor)),
            ("bubblewrap", &both, Ok(Bubblewrap)),
            ("gvisor", &off, Err("sessions.sandbox_drivers_allowed is empty")),
            ("gvisor", &bwrap_only, Err("`gvisor` sandbox driver is not allowed on this server")),
            ("firecracker", &both, Err("unknown sandbox driver `firecracker`; this server allows: bubblewrap, gvisor")),
            ("GVISOR", &both, Err("unknown sandbox driver `GVISOR`")),
            ("", &both, Err("unknown sandbox driver ``")),
            ("gvisor", &no_runsc, Err("`gvisor` sandbox driver is not available on this server: runsc is missing")),
            ("bubblewrap", &no_runsc, Ok(Bubblewrap)),
        ] {
            let p = pairs(&[(DRIVER_KEY, v)]);
            let m: Metadata = p.iter().cloned().collect();
            match (want, sandbox_driver(&m, choice), check(p.iter().map(|(k, v)| (k, v)), B, choice)) {
                (Ok(k), Ok(Some(got)), Ok(())) => assert_eq!(got, k),
                (Err(needle), Err(e), Err(e2)) => {
                    assert!(e.0.contains(needle), "{v:?}: {}", e.0);
                    assert!(e.0.starts_with("metadata.bridle.sandbox_driver: "), "names the key: {}", e.0);
                    assert_eq!(e.0, e2.0);
                }
                (want, got, checked) => panic!("{v:?} under {choice:?}: wanted {want:?}, got {got:?} / {checked:?}"),
            }
        }
        assert_eq!(sandbox_driver(&Metadata::new(), &off), Ok(None));
    }

    #[test]
    fn disk_bytes_reads_the_key() {
        let m: Metadata = pairs(&[("team", "x"), (DISK_BYTES_KEY, "33554432")]).into_iter().collect();
        assert_eq!(disk_bytes(&m, B), Ok(Some(32 << 20)));
        assert_eq!(disk_bytes(&Metadata::new(), B), Ok(None));
        assert_eq!(disk_bytes(&Metadata::new(), DiskBounds { max: 0, ..B }), Ok(None));
        assert!(disk_bytes(&m, DiskBounds { max: 16 << 20, ..B }).is_err());
    }

    #[test]
    fn the_minimum_is_the_drivers() {
        assert_eq!(DiskBounds::new(1 << 30).min, bridle_sandbox::MIN_WORKSPACE_BYTES);
    }
}
