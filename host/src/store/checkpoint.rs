//! SQLite WAL checkpoints, off the commit path.
//!
//! By default SQLite checkpoints inside the COMMIT that pushes the WAL past
//! 1000 pages, and with `synchronous = NORMAL` that checkpoint is where the
//! fsyncs happen: every few hundred event appends, one append (and so the
//! live delivery of its events) took several milliseconds longer. Here a
//! background task runs PASSIVE checkpoints (which neither wait for nor
//! block readers and writers) on a timer, and the commit-time checkpoint
//! only remains as a backstop for a WAL that grows faster than that.

use std::sync::Weak;
use std::time::Duration;

use sqlx::AnyPool;

/// Per-connection setting: a commit checkpoints only past this many WAL
/// pages (32 MiB at 4 KiB pages), which the background task keeps it from
/// reaching under ordinary load.
pub(super) const AUTOCHECKPOINT_PRAGMA: &str = "PRAGMA wal_autocheckpoint = 8192;";

/// How often the background task checkpoints.
const INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoint the pool's database every [`INTERVAL`] until `alive` (state the
/// `Store` holds) is dropped or the pool is closed.
pub(super) fn spawn<T: Send + Sync + 'static>(pool: AnyPool, alive: Weak<T>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 || pool.is_closed() {
                return;
            }
            // A failed checkpoint is retried on the next tick; the commit-time
            // backstop still bounds the WAL.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::debug!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}
