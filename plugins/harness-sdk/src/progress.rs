//! What every plugin repeats around a turn: retry bookkeeping (after a
//! `retrying` report, the first sign of progress yields one `resumed`) and
//! the failure reported when the runtime exits in the middle of a turn.

use crate::{Action, RetryReport, RetryStatus};

/// Whether a retry was reported and no progress seen since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    retrying: bool,
}

impl Progress {
    /// The runtime is retrying: the `retrying` action, remembered.
    pub fn retrying(&mut self, report: RetryReport) -> Action {
        self.retrying = true;
        Action::Retrying(report)
    }

    /// A sign of progress: `resumed` once after a retry report.
    pub fn progress(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.retrying) {
            out.push(Action::Resumed);
        }
    }

    /// The turn ended: no `resumed` is owed any more.
    pub fn reset(&mut self) {
        self.retrying = false;
    }
}

/// `with code N` / `on a signal`.
pub fn exit_how(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("with code {c}"),
        None => "on a signal".to_string(),
    }
}

/// The failure for a runtime that exited mid-turn: `unknown_error`,
/// exhausted (the next message starts the runtime again), with the message
/// `<runtime> exited <how> <when>`.
pub fn exit_failure(runtime: &str, code: Option<i32>, when: &str) -> Action {
    Action::failed("unknown_error", &format!("{runtime} exited {} {when}", exit_how(code)), RetryStatus::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RetryReport {
        RetryReport {
            error_type: "model_overloaded_error".into(),
            message: "busy".into(),
            attempt: 1,
            max_attempts: None,
            delay_ms: None,
        }
    }

    #[test]
    fn resumed_once_after_a_retry() {
        let mut p = Progress::default();
        let mut out = Vec::new();
        p.progress(&mut out);
        assert!(out.is_empty(), "no retry, no resumed");
        assert!(matches!(p.retrying(report()), Action::Retrying(_)));
        p.progress(&mut out);
        p.progress(&mut out);
        assert_eq!(out, vec![Action::Resumed]);
        p.retrying(report());
        p.reset();
        p.progress(&mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn exit_failures() {
        let Action::Failed(f) = exit_failure("codex app-server", Some(3), "before the turn finished") else { panic!() };
        assert_eq!(f.message, "codex app-server exited with code 3 before the turn finished");
        assert_eq!(f.retry, RetryStatus::Exhausted);
        let Action::Failed(f) = exit_failure("x", None, "during the turn") else { panic!() };
        assert_eq!(f.message, "x exited on a signal during the turn");
    }
}
