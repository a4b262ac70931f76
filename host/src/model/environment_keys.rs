//! Bridle's own environment metadata keys (`bridle.*`): settings the Managed
//! Agents API's environment object has no field for, which an environment
//! opts into where the operator allows it. Metadata values are strings, so
//! each key has a parser and bounds here; a key Bridle does not know, or a
//! value it would not act on, is refused at environment create and update
//! rather than stored and ignored.
//!
//! Today there is one: [`DISK_BYTES_KEY`], the workspace quota of the
//! environment's sessions (`sessions.sandbox_disk_bytes_max` allows it).

use super::common::{Invalid, Metadata};

/// The prefix of Bridle's own keys on environment metadata.
pub const PREFIX: &str = "bridle.";
/// The bytes each session's `/workspace` and `/tmp` may hold together, as a
/// decimal string.
pub const DISK_BYTES_KEY: &str = "bridle.sandbox_disk_bytes";

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
pub fn check<'a>(set: impl IntoIterator<Item = (&'a String, &'a String)>, bounds: DiskBounds) -> Result<(), Invalid> {
    for (k, v) in set {
        if k == DISK_BYTES_KEY {
            parse_disk_bytes(v, bounds)?;
        } else if k.starts_with(PREFIX) {
            return Err(Invalid::new(format!(
                "metadata.{k}: unknown Bridle environment key; the known key is {DISK_BYTES_KEY}"
            )));
        }
    }
    Ok(())
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
            let got = check(p.iter().map(|(k, v)| (k, v)), bounds);
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
