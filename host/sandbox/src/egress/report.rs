//! Denials and limits, counted in metrics on every occurrence but logged
//! at most once per kind per interval for each sandbox: a flood of refused
//! requests writes one line per interval, with the number left out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one sandbox may log the same kind of event.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Reporter {
    seen: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Reporter {
    /// Whether an event of `kind` at `now` should be logged; if so, also
    /// how many like it were left out since the last line.
    pub fn should_log(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(kind) {
            Some((at, skipped)) if now.saturating_duration_since(*at) < LOG_INTERVAL => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                let n = *skipped;
                *at = now;
                *skipped = 0;
                Some(n)
            }
            None => {
                seen.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_per_kind() {
        let r = Reporter::default();
        let t0 = Instant::now();
        assert_eq!(r.should_log("denied", t0), Some(0));
        for i in 1..1000 {
            assert_eq!(r.should_log("denied", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(r.should_log("limit", t0), Some(0), "kinds are separate");
        assert_eq!(r.should_log("denied", t0 + LOG_INTERVAL + Duration::from_millis(1)), Some(999));
        assert_eq!(r.should_log("denied", t0 + LOG_INTERVAL + Duration::from_millis(2)), None);
    }
}
