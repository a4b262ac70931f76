//! Which package layers to evict: those unused for longer than the age limit, then the least
//! recently used until the rest fit the size limit. Pure; [`super::layer`] deletes them.

use std::time::{Duration, SystemTime};

/// One layer as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub bytes: u64,
    pub last_used: SystemTime,
}

/// The limits (`None`: no limit of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub max_total_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

/// The keys to evict at `now`, least recently used first.
pub fn choose(entries: &[Entry], policy: Policy, now: SystemTime) -> Vec<String> {
    let mut by_use: Vec<&Entry> = entries.iter().collect();
    by_use.sort_by_key(|e| (e.last_used, e.key.clone()));
    let mut total: u64 = by_use.iter().map(|e| e.bytes).sum();
    let mut out = Vec::new();
    for e in by_use {
        let too_old =
            policy.max_age.is_some_and(|age| now.duration_since(e.last_used).is_ok_and(|unused| unused > age));
        let too_big = policy.max_total_bytes.is_some_and(|max| total > max);
        if too_old || too_big {
            total -= e.bytes;
            out.push(e.key.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_old_then_least_recently_used() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let e = |key: &str, bytes: u64, ago: u64| Entry {
            key: key.into(),
            bytes,
            last_used: t0 - Duration::from_secs(ago),
        };
        let layers = vec![e("a", 100, 10), e("b", 300, 500), e("c", 200, 50), e("d", 50, 5000)];
        let day = Some(Duration::from_secs(1000));
        let rows: &[(&str, Policy, &[&str])] = &[
            ("no limits", Policy::default(), &[]),
            ("age only", Policy { max_total_bytes: None, max_age: day }, &["d"]),
            ("size fits", Policy { max_total_bytes: Some(650), max_age: None }, &[]),
            ("size: oldest first", Policy { max_total_bytes: Some(400), max_age: None }, &["d", "b"]),
            ("size and age", Policy { max_total_bytes: Some(300), max_age: day }, &["d", "b"]),
            ("size zero evicts all", Policy { max_total_bytes: Some(0), max_age: None }, &["d", "b", "c", "a"]),
        ];
        for (name, policy, want) in rows {
            assert_eq!(choose(&layers, *policy, t0), want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{name}");
        }
    }
}
