//! The work queue of self-hosted environments: a work item per session that
//! needs a worker, the lease a worker holds on it, and the wire shapes the
//! SDKs' `environments.work` resource reads. Pure: every rule takes the time
//! as an argument and returns the item as it must be stored (or why not), so
//! the store and the API only read and write rows.
//!
//! A worker polls (the item is `starting`, leased for the TTL, with a fresh
//! per-session token), acknowledges, and heartbeats: the first heartbeat
//! (`expected_last_heartbeat = NO_HEARTBEAT`) makes it `active`, each one
//! extends the lease by the TTL. A lease that runs out puts the item back in
//! the queue; a poll never hands out an item a live lease holds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Metadata, MetadataPatch};
use crate::time::rfc3339;

/// What `expected_last_heartbeat` says before the first heartbeat.
pub const NO_HEARTBEAT: &str = "NO_HEARTBEAT";
/// How old an unacknowledged poll must be before another poll may take the
/// item back, unless the poll says otherwise (`reclaim_older_than_ms`).
pub const DEFAULT_RECLAIM_MS: i64 = 5_000;
/// The shortest lease a heartbeat may ask for (`desired_ttl_seconds`).
pub const MIN_TTL_SECS: i64 = 2;
/// A worker counts as polling for this long after its last poll.
pub const POLLING_WINDOW_MICROS: i64 = 30_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    Queued,
    Starting,
    Active,
    Stopping,
    Stopped,
}

impl WorkState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkState::Queued => "queued",
            WorkState::Starting => "starting",
            WorkState::Active => "active",
            WorkState::Stopping => "stopping",
            WorkState::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<WorkState> {
        Some(match s {
            "queued" => WorkState::Queued,
            "starting" => WorkState::Starting,
            "active" => WorkState::Active,
            "stopping" => WorkState::Stopping,
            "stopped" => WorkState::Stopped,
            _ => return None,
        })
    }
}

/// A work item as stored. Times are epoch microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    pub id: String,
    pub environment_id: String,
    pub session_id: String,
    /// The stored state; [`WorkItem::state_at`] is what it is now.
    pub state: WorkState,
    /// Bumped by every change; a write names the version it read.
    pub version: i64,
    pub created_at: i64,
    /// When it last entered the queue (polls take the oldest first).
    pub queued_at: i64,
    pub polled_at: Option<i64>,
    pub acknowledged_at: Option<i64>,
    pub started_at: Option<i64>,
    pub latest_heartbeat_at: Option<i64>,
    /// Until when the worker that polled it holds it.
    pub lease_until: Option<i64>,
    pub ttl_secs: i64,
    pub stop_requested_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub worker_id: Option<String>,
    /// SHA-256 of the per-session token of the current lease.
    pub token_hash: Option<String>,
    /// How many times a worker has polled it (each poll is a new lease).
    pub claims: i64,
    pub metadata: Metadata,
}

/// Why a change was refused; the API answers 409 or 412.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not allowed in the item's state.
    Conflict(String),
    /// The heartbeat's `expected_last_heartbeat` is not the lease's, or the
    /// lease it names has expired.
    Precondition { message: String, current: LeaseState },
}

/// The answer to a heartbeat that was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    /// The item as it must be stored (unchanged when the lease is ending).
    pub item: WorkItem,
    pub response: HeartbeatResponse,
}

impl WorkItem {
    /// A new item for a session that needs a worker.
    pub fn new(id: String, environment_id: &str, session_id: &str, ttl_secs: i64, now: i64) -> WorkItem {
        WorkItem {
            id,
            environment_id: environment_id.to_owned(),
            session_id: session_id.to_owned(),
            state: WorkState::Queued,
            version: 1,
            created_at: now,
            queued_at: now,
            polled_at: None,
            acknowledged_at: None,
            started_at: None,
            latest_heartbeat_at: None,
            lease_until: None,
            ttl_secs,
            stop_requested_at: None,
            stopped_at: None,
            worker_id: None,
            token_hash: None,
            claims: 0,
            metadata: Metadata::new(),
        }
    }

    /// The lease ran out: the worker that held it stopped heartbeating.
    pub fn lapsed(&self, now: i64) -> bool {
        matches!(self.state, WorkState::Starting | WorkState::Active | WorkState::Stopping)
            && self.lease_until.is_some_and(|t| t < now)
    }

    /// The state as of `now`: a lapsed lease puts a served item back in the
    /// queue, and ends one that was being stopped.
    pub fn state_at(&self, now: i64) -> WorkState {
        match (self.state, self.lapsed(now)) {
            (WorkState::Stopping, true) => WorkState::Stopped,
            (_, true) => WorkState::Queued,
            (s, false) => s,
        }
    }

    /// The stored heartbeat as the wire names it (`""`: none yet).
    pub fn last_heartbeat(&self) -> String {
        self.latest_heartbeat_at.map(rfc3339).unwrap_or_default()
    }

    /// Whether a poll at `now` may take it: queued (or back in the queue), or
    /// polled but not acknowledged for longer than `reclaim_ms`.
    pub fn claimable(&self, now: i64, reclaim_ms: i64) -> bool {
        match self.state_at(now) {
            WorkState::Queued => true,
            WorkState::Starting => {
                self.acknowledged_at.is_none() && self.polled_at.is_some_and(|p| p + reclaim_ms * 1_000 <= now)
            }
            _ => false,
        }
    }

    /// A poll takes it: a new lease for `ttl_secs`, held by `worker`, with a
    /// new token (the previous holder's token stops working).
    pub fn claim(&self, now: i64, worker: Option<&str>, token_hash: &str) -> WorkItem {
        WorkItem {
            state: WorkState::Starting,
            version: self.version + 1,
            polled_at: Some(now),
            acknowledged_at: None,
            latest_heartbeat_at: None,
            lease_until: Some(now + self.ttl_secs * 1_000_000),
            worker_id: worker.map(str::to_owned),
            token_hash: Some(token_hash.to_owned()),
            claims: self.claims + 1,
            ..self.clone()
        }
    }

    /// The worker confirms it took the polled item.
    pub fn ack(&self, now: i64) -> Result<WorkItem, Refusal> {
        match self.state_at(now) {
            WorkState::Starting if self.acknowledged_at.is_none() => {
                Ok(WorkItem { acknowledged_at: Some(now), version: self.version + 1, ..self.clone() })
            }
            // A retried ack whose answer was lost.
            WorkState::Starting | WorkState::Active => Ok(self.clone()),
            s => Err(Refusal::Conflict(format!(
                "work item `{}` is {}: only a polled item can be acknowledged",
                self.id,
                s.as_str()
            ))),
        }
    }

    /// A heartbeat: extends the lease when `expected` is the stored
    /// heartbeat. An item being stopped answers `lease_extended: false`
    /// (the worker ends) without comparing.
    pub fn heartbeat(
        &self,
        expected: Option<&str>,
        desired_ttl: Option<i64>,
        max_ttl: i64,
        now: i64,
    ) -> Result<Beat, Refusal> {
        let state = self.state_at(now);
        if matches!(state, WorkState::Stopping | WorkState::Stopped) {
            let response = HeartbeatResponse::new(self.last_heartbeat(), false, state, self.ttl_secs);
            return Ok(Beat { item: self.clone(), response });
        }
        let stored = self.latest_heartbeat_at.map(rfc3339).unwrap_or_else(|| NO_HEARTBEAT.to_owned());
        if state == WorkState::Queued {
            let message = match self.lease_until {
                Some(t) => format!(
                    "the lease on work item `{}` expired at {} without a heartbeat; the item is back in the queue",
                    self.id,
                    rfc3339(t)
                ),
                None => format!("work item `{}` is queued: poll for it before heartbeating", self.id),
            };
            return Err(Refusal::Precondition { message, current: self.lease_state(now) });
        }
        if let Some(e) = expected
            && e != stored
        {
            let message = format!(
                "expected_last_heartbeat `{e}` does not match the stored heartbeat `{stored}` of work item `{}`: \
                 another worker may hold its lease",
                self.id
            );
            return Err(Refusal::Precondition { message, current: self.lease_state(now) });
        }
        let ttl = desired_ttl.unwrap_or(self.ttl_secs).clamp(MIN_TTL_SECS, max_ttl.max(MIN_TTL_SECS));
        // Strictly later than the last one, so each heartbeat names its own lease.
        let at = self.latest_heartbeat_at.map_or(now, |prev| now.max(prev + 1));
        let item = WorkItem {
            state: WorkState::Active,
            version: self.version + 1,
            started_at: self.started_at.or(Some(at)),
            latest_heartbeat_at: Some(at),
            lease_until: Some(at + ttl * 1_000_000),
            ttl_secs: ttl,
            ..self.clone()
        };
        let response = HeartbeatResponse::new(rfc3339(at), true, WorkState::Active, ttl);
        Ok(Beat { item, response })
    }

    /// Stop the item. `force` (or an item nobody serves) stops it at once;
    /// otherwise it is `stopping` and its worker's next heartbeat ends it.
    pub fn stop(&self, force: bool, now: i64) -> Result<WorkItem, Refusal> {
        let state = self.state_at(now);
        let stopped = WorkItem {
            state: WorkState::Stopped,
            version: self.version + 1,
            stop_requested_at: self.stop_requested_at.or(Some(now)),
            stopped_at: Some(now),
            lease_until: None,
            token_hash: None,
            ..self.clone()
        };
        match state {
            WorkState::Stopped => Err(Refusal::Conflict(format!("work item `{}` is already stopped", self.id))),
            WorkState::Queued => Ok(stopped),
            _ if force => Ok(stopped),
            WorkState::Stopping => Ok(self.clone()),
            _ => Ok(WorkItem {
                state: WorkState::Stopping,
                version: self.version + 1,
                stop_requested_at: Some(now),
                ..self.clone()
            }),
        }
    }

    /// Apply a metadata patch (`null` deletes a key).
    pub fn with_metadata(&self, patch: &MetadataPatch) -> WorkItem {
        let mut metadata = self.metadata.clone();
        for (k, v) in patch {
            match v {
                Some(v) if !v.is_empty() => {
                    metadata.insert(k.clone(), v.clone());
                }
                _ => {
                    metadata.remove(k);
                }
            }
        }
        WorkItem { metadata, version: self.version + 1, ..self.clone() }
    }

    /// The lease as the server holds it (in a refused heartbeat's details).
    pub fn lease_state(&self, now: i64) -> LeaseState {
        LeaseState {
            last_heartbeat: self.latest_heartbeat_at.map(rfc3339),
            lease_extended: false,
            state: self.state_at(now),
            ttl_seconds: self.ttl_secs,
        }
    }

    /// The wire object; `secret` only in a poll's answer.
    pub fn to_wire(&self, now: i64, secret: Option<String>) -> Work {
        let state = self.state_at(now);
        let served = !matches!(state, WorkState::Queued);
        Work {
            id: self.id.clone(),
            kind: "work".into(),
            acknowledged_at: self.acknowledged_at.filter(|_| served).map(rfc3339),
            created_at: rfc3339(self.created_at),
            data: WorkData { id: self.session_id.clone(), kind: "session".into() },
            environment_id: self.environment_id.clone(),
            latest_heartbeat_at: self.latest_heartbeat_at.map(rfc3339),
            metadata: self.metadata.clone(),
            secret,
            started_at: self.started_at.map(rfc3339),
            state,
            stop_requested_at: self.stop_requested_at.map(rfc3339),
            stopped_at: self.stopped_at.or(self.lease_until.filter(|_| state == WorkState::Stopped)).map(rfc3339),
        }
    }
}

/// What a remote tool call waits on when its work item's lease lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapseVerdict {
    /// The next worker that claims the item runs the call again.
    Retry,
    /// The call already lost one worker: it ends with an error result.
    GiveUp,
}

/// A call is retried on the next worker once; a second lapse while the same
/// call waits ends it.
pub fn on_lapse(lapses_during_call: u32) -> LapseVerdict {
    if lapses_during_call <= 1 { LapseVerdict::Retry } else { LapseVerdict::GiveUp }
}

/// `{"sessions_token": ...}` as URL-safe base64: the `secret` the SDK reads
/// the per-session token from.
pub fn secret_for(token: &str) -> String {
    use base64::Engine as _;
    let payload = serde_json::json!({ "sessions_token": token }).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
}

/// `data` of a work item.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkData {
    /// The session the work is for.
    pub id: String,
    /// Always `session`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A work item of a self-hosted environment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Work {
    pub id: String,
    /// Always `work`.
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(required)]
    pub acknowledged_at: Option<String>,
    pub created_at: String,
    pub data: WorkData,
    pub environment_id: String,
    #[schema(required)]
    pub latest_heartbeat_at: Option<String>,
    #[schema(value_type = super::common::MetadataSchema)]
    pub metadata: Metadata,
    /// The credential payload of this lease (URL-safe base64 of JSON with a
    /// `sessions_token`); only in a poll's answer.
    #[schema(required)]
    pub secret: Option<String>,
    #[schema(required)]
    pub started_at: Option<String>,
    pub state: WorkState,
    #[schema(required)]
    pub stop_requested_at: Option<String>,
    #[schema(required)]
    pub stopped_at: Option<String>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The heartbeat recorded (echo it as the next `expected_last_heartbeat`).
    pub last_heartbeat: String,
    /// `false`: the item is being stopped; the worker ends.
    pub lease_extended: bool,
    pub state: WorkState,
    pub ttl_seconds: i64,
    /// Always `work_heartbeat`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl HeartbeatResponse {
    fn new(last_heartbeat: String, lease_extended: bool, state: WorkState, ttl_seconds: i64) -> Self {
        HeartbeatResponse { last_heartbeat, lease_extended, state, ttl_seconds, kind: "work_heartbeat".into() }
    }
}

/// A work item's lease as the server holds it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LeaseState {
    #[schema(required)]
    pub last_heartbeat: Option<String>,
    pub lease_extended: bool,
    pub state: WorkState,
    pub ttl_seconds: i64,
}

/// `work/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueStats {
    /// Items waiting to be polled.
    pub depth: i64,
    #[schema(required)]
    pub oldest_queued_at: Option<String>,
    /// Items polled but not acknowledged.
    pub pending: i64,
    /// Always `work_queue_stats`.
    #[serde(rename = "type")]
    pub kind: String,
    pub workers_polling: i64,
}

/// Count a queue's items as of `now`.
pub fn stats<'a>(items: impl IntoIterator<Item = &'a WorkItem>, workers_polling: i64, now: i64) -> QueueStats {
    let (mut depth, mut pending, mut oldest) = (0, 0, None::<i64>);
    for it in items {
        match it.state_at(now) {
            WorkState::Queued => {
                depth += 1;
                oldest = Some(oldest.map_or(it.queued_at, |o| o.min(it.queued_at)));
            }
            WorkState::Starting if it.acknowledged_at.is_none() => {
                pending += 1;
                oldest = Some(oldest.map_or(it.queued_at, |o| o.min(it.queued_at)));
            }
            _ => {}
        }
    }
    QueueStats {
        depth,
        oldest_queued_at: oldest.map(rfc3339),
        pending,
        kind: "work_queue_stats".into(),
        workers_polling,
    }
}

/// A page of work items.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkList {
    pub data: Vec<Work>,
    #[schema(required)]
    pub next_page: Option<String>,
}

/// `POST .../work/{id}` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkUpdate {
    #[schema(value_type = super::common::MetadataPatchSchema)]
    pub metadata: MetadataPatch,
}

/// `POST .../work/{id}/heartbeat` body (every field optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatParams {
    #[serde(default)]
    pub desired_ttl_seconds: Option<i64>,
    #[serde(default)]
    pub expected_last_heartbeat: Option<String>,
}

/// `POST .../work/{id}/stop` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopParams {
    #[serde(default)]
    pub force: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const T0: i64 = 1_000 * S;

    fn item() -> WorkItem {
        WorkItem::new("work_1".into(), "env_1", "sesn_1", 10, T0)
    }

    fn active(at: i64) -> WorkItem {
        let polled = item().claim(at, Some("w1"), "h1");
        polled.heartbeat(Some(NO_HEARTBEAT), None, 300, at).unwrap().item
    }

    #[test]
    fn leases_lapse_back_to_the_queue() {
        let a = active(T0);
        for (it, now, want) in [
            (item(), T0 + 100 * S, WorkState::Queued),
            (item().claim(T0, None, "h"), T0 + 10 * S, WorkState::Starting),
            (item().claim(T0, None, "h"), T0 + 10 * S + 1, WorkState::Queued),
            (a.clone(), T0 + 10 * S, WorkState::Active),
            (a.clone(), T0 + 10 * S + 1, WorkState::Queued),
            (a.stop(false, T0).unwrap(), T0 + 5 * S, WorkState::Stopping),
            (a.stop(false, T0).unwrap(), T0 + 11 * S, WorkState::Stopped),
            (a.stop(true, T0).unwrap(), T0 + 100 * S, WorkState::Stopped),
        ] {
            assert_eq!(it.state_at(now), want, "{it:?} at {now}");
        }
    }

    #[test]
    fn polls_take_queued_lapsed_and_unacknowledged_items() {
        let polled = item().claim(T0, None, "h");
        let acked = polled.ack(T0).unwrap();
        for (it, now, reclaim_ms, want) in [
            (item(), T0, DEFAULT_RECLAIM_MS, true),
            (polled.clone(), T0 + 4 * S, DEFAULT_RECLAIM_MS, false),
            (polled.clone(), T0 + 5 * S, DEFAULT_RECLAIM_MS, true),
            (polled.clone(), T0 + S, 500, true),
            (acked.clone(), T0 + 9 * S, 1, false),
            (acked.clone(), T0 + 11 * S, 1, true),
            (active(T0), T0 + 9 * S, 1, false),
            (active(T0), T0 + 11 * S, 1, true),
            (active(T0).stop(true, T0).unwrap(), T0 + 100 * S, 1, false),
            (active(T0).stop(false, T0).unwrap(), T0 + S, 1, false),
        ] {
            assert_eq!(it.claimable(now, reclaim_ms), want, "{it:?} at {now}");
        }
    }

    #[test]
    fn a_claim_is_a_new_lease_with_a_new_token() {
        let first = item().claim(T0, Some("w1"), "h1");
        let second = first.claim(T0 + 20 * S, Some("w2"), "h2");
        assert_eq!(
            (second.claims, second.worker_id.as_deref(), second.token_hash.as_deref()),
            (2, Some("w2"), Some("h2"))
        );
        assert_eq!(second.lease_until, Some(T0 + 30 * S));
        assert!(second.version > first.version);
        assert_eq!(second.latest_heartbeat_at, None, "the next holder starts from NO_HEARTBEAT");
    }

    #[test]
    fn heartbeats_compare_and_extend() {
        let polled = item().claim(T0, None, "h");
        let first = polled.heartbeat(Some(NO_HEARTBEAT), Some(4), 300, T0 + S).unwrap();
        assert_eq!(first.item.state, WorkState::Active);
        assert_eq!(first.response.ttl_seconds, 4);
        assert_eq!(first.item.lease_until, Some(T0 + 5 * S));
        assert!(first.response.lease_extended);
        let again = first.item.heartbeat(Some(&first.response.last_heartbeat), None, 300, T0 + 2 * S).unwrap();
        assert_eq!(again.item.lease_until, Some(T0 + 6 * S));
        // Same instant: still a new heartbeat value.
        let same = again.item.heartbeat(Some(&again.response.last_heartbeat), None, 300, T0 + 2 * S).unwrap();
        assert_ne!(same.response.last_heartbeat, again.response.last_heartbeat);
        // Clamped to the server's bounds.
        assert_eq!(polled.heartbeat(None, Some(100_000), 60, T0).unwrap().response.ttl_seconds, 60);
        assert_eq!(polled.heartbeat(None, Some(0), 60, T0).unwrap().response.ttl_seconds, MIN_TTL_SECS);
    }

    #[test]
    fn heartbeats_refused() {
        let a = active(T0);
        let stale = a.heartbeat(Some(NO_HEARTBEAT), None, 300, T0 + S);
        assert!(
            matches!(&stale, Err(Refusal::Precondition { message, current })
            if message.contains("does not match") && current.state == WorkState::Active),
            "{stale:?}"
        );
        let expired = a.heartbeat(Some(&a.last_heartbeat()), None, 300, T0 + 11 * S);
        assert!(
            matches!(&expired, Err(Refusal::Precondition { message, current })
            if message.contains("expired") && current.state == WorkState::Queued && !current.lease_extended),
            "{expired:?}"
        );
        let never = item().heartbeat(Some(NO_HEARTBEAT), None, 300, T0);
        assert!(matches!(&never, Err(Refusal::Precondition { message, .. }) if message.contains("poll")), "{never:?}");
    }

    #[test]
    fn stopping_ends_the_lease_without_comparing() {
        let stopping = active(T0).stop(false, T0 + S).unwrap();
        assert_eq!(stopping.state, WorkState::Stopping);
        let beat = stopping.heartbeat(Some("anything"), None, 300, T0 + 2 * S).unwrap();
        assert!(!beat.response.lease_extended);
        assert_eq!(beat.response.state, WorkState::Stopping);
        assert_eq!(beat.item, stopping);
    }

    #[test]
    fn stop_rules() {
        let a = active(T0);
        assert_eq!(a.stop(true, T0).unwrap().state, WorkState::Stopped);
        assert_eq!(a.stop(true, T0).unwrap().token_hash, None, "a stopped item's token no longer works");
        assert_eq!(item().stop(false, T0).unwrap().state, WorkState::Stopped, "nobody serves a queued item");
        assert_eq!(a.stop(false, T0 + 11 * S).unwrap().state, WorkState::Stopped, "nor a lapsed one");
        let done = a.stop(true, T0).unwrap();
        assert!(matches!(done.stop(true, T0), Err(Refusal::Conflict(m)) if m.contains("already stopped")));
        assert!(matches!(done.ack(T0), Err(Refusal::Conflict(_))));
    }

    #[test]
    fn acks() {
        let polled = item().claim(T0, None, "h");
        let acked = polled.ack(T0 + 1).unwrap();
        assert_eq!(acked.acknowledged_at, Some(T0 + 1));
        assert_eq!(acked.ack(T0 + 2).unwrap(), acked, "a retried ack changes nothing");
        assert!(matches!(item().ack(T0), Err(Refusal::Conflict(m)) if m.contains("queued")));
    }

    #[test]
    fn a_call_is_retried_once() {
        assert_eq!(on_lapse(0), LapseVerdict::Retry);
        assert_eq!(on_lapse(1), LapseVerdict::Retry);
        assert_eq!(on_lapse(2), LapseVerdict::GiveUp);
    }

    #[test]
    fn stats_count_queued_and_pending() {
        let items = [item(), item().claim(T0, None, "h"), active(T0), active(T0).stop(true, T0).unwrap()];
        let s = stats(items.iter(), 3, T0 + S);
        assert_eq!((s.depth, s.pending, s.workers_polling), (1, 1, 3));
        assert_eq!(s.oldest_queued_at, Some(rfc3339(T0)));
        let later = stats(items.iter(), 0, T0 + 11 * S);
        assert_eq!(later.depth, 3, "lapsed leases count as queued again");
    }

    #[test]
    fn the_secret_carries_the_token() {
        use base64::Engine as _;
        let s = secret_for("tok");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["sessions_token"], "tok");
    }

    #[test]
    fn metadata_patches() {
        let mut p = MetadataPatch::new();
        p.insert("a".into(), Some("1".into()));
        let it = item().with_metadata(&p);
        assert_eq!(it.metadata.get("a").map(String::as_str), Some("1"));
        p.insert("a".into(), None);
        assert!(it.with_metadata(&p).metadata.is_empty());
    }
}
