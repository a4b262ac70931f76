//! Persistence with sqlx over SQLite (embedded default) or PostgreSQL (several
//! nodes share one). One code path drives both through sqlx's `Any` driver:
//! the SQL is portable (`$N` placeholders, TEXT/BIGINT columns, RETURNING),
//! and each backend has its own migration folder with the same schema.

mod agents;
mod checkpoint;
mod documents;
mod events;
mod files;
mod keys;
mod leases;
mod memory;
mod sessions;
mod skills;
mod threads;
mod work;

pub use agents::AgentRow;
pub use documents::{DocRow, Table};
pub use events::{EventFilter, WaitingOnUser, waiting_ids};
pub use files::{CHUNK_BYTES, FileFilter, FileRow, FileWriter};
pub use keys::ApiKeyRow;
pub use leases::{Claim, StatusChange};
pub use memory::{MemoryRow, MemoryStoreRow, MemoryVersionRow, VersionFilter};
pub use sessions::{RunnerState, SessionFilter, SessionRow};
pub use skills::{SkillRow, SkillVersionRow};
pub use threads::ThreadChange;
pub use work::EnvironmentKeyRow;

use std::str::FromStr;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::cluster::note::{CHANNEL, ClusterNote, NoteKind};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    /// This process's id in cross-node notifications (PostgreSQL).
    node_id: String,
    /// Whose turn it is to write (SQLite); see [`Store::write_turn`].
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The migrations this build applies on `backend` (`bridle doctor` compares them with the
/// database's `_sqlx_migrations`).
pub fn migrator(backend: Backend) -> &'static sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

/// Sort direction of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    fn sql(self) -> &'static str {
        match self {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        }
    }

    fn reverse(self) -> Order {
        match self {
            Order::Asc => Order::Desc,
            Order::Desc => Order::Asc,
        }
    }

    /// The comparison that selects rows after a key in this order.
    fn after_op(self) -> &'static str {
        match self {
            Order::Asc => ">",
            Order::Desc => "<",
        }
    }
}

/// Where a page starts: at the top, after a key, or (sessions only) before one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Start,
    After(Key),
    Before(Key),
}

/// A row's place in a list ordered by creation time, then id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub created_at: i64,
    pub id: String,
}

/// A page of rows and whether rows exist beyond either end of it.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more_after: bool,
    pub more_before: bool,
}

/// Errors the API maps to client errors; everything else is internal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A runner's write refused because its lease epoch is no longer the
    /// session's: another node adopted the session.
    #[error("{0}")]
    Fenced(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Other(anyhow::Error::new(e).context("database error"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl Store {
    /// Connect and bring the schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let opts = AnyConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL `{}`", redact(url)))?
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool_opts = match backend {
            // SQLite: WAL lets readers run beside the one writer; writers wait
            // on each other instead of failing with SQLITE_BUSY.
            Backend::Sqlite => AnyPoolOptions::new().max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                        .await?;
                    conn.execute(checkpoint::AUTOCHECKPOINT_PRAGMA).await?;
                    Ok(())
                })
            }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        };
        let pool = pool_opts
            .connect_with(opts)
            .await
            .with_context(|| format!("cannot connect to the database at `{}`", redact(url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.context("running database migrations")?;
        let node_id = format!("node_{}", ulid::Ulid::new());
        let write_lock: std::sync::Arc<tokio::sync::Mutex<()>> = Default::default();
        if backend == Backend::Sqlite {
            // Ends once the last clone of this Store is gone.
            checkpoint::spawn(pool.clone(), std::sync::Arc::downgrade(&write_lock));
        }
        Ok(Store { pool, backend, url: url.to_owned(), node_id, write_lock })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The database URL (for a dedicated LISTEN connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Tell the other nodes something happened to a session (PostgreSQL
    /// only; one node on SQLite). Inside a transaction, delivered at commit.
    async fn notify<'c, E>(&self, exec: E, session_id: &str, what: NoteKind) -> StoreResult<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        if self.backend == Backend::Postgres {
            let payload = ClusterNote::new(&self.node_id, session_id, what).encode();
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(exec).await?;
        }
        Ok(())
    }

    /// SQLite has one writer at a time: hot writers (event appends) wait for
    /// their turn here, in process and in arrival order. Left to SQLite's busy
    /// handler, which sleeps 1, 2, 5, 10… ms between retries, concurrent
    /// sessions' appends stalled for tens of milliseconds. `None` (no wait)
    /// on PostgreSQL, where row locks order writers.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.context("database ping")?;
        Ok(())
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `(created_at, id)` comparison for keyset pagination, with its binds
/// starting at `$n`.
fn keyset_clause(order: Order, n: usize) -> String {
    let op = order.after_op();
    format!("(created_at {op} ${n} OR (created_at = ${n} AND id {op} ${}))", n + 1)
}

fn decode_json<T: serde::de::DeserializeOwned>(what: &str, body: &str) -> anyhow::Result<T> {
    serde_json::from_str(body).with_context(|| format!("stored {what} is not valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}

/// A bind value for SQL built at run time.
#[derive(Debug, Clone)]
enum Arg {
    I(i64),
    S(String),
}

/// SQL text with `$N` placeholders and their values, built piece by piece.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn new(text: &str) -> Sql {
        Sql { text: text.to_owned(), args: Vec::new() }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// ` AND created_at >= gte AND created_at <= lte`, for the bounds given
    /// (list filters `created_at[gte]` / `created_at[lte]`).
    fn created_between(&mut self, gte: Option<i64>, lte: Option<i64>) -> &mut Self {
        for (op, bound) in [(">=", gte), ("<=", lte)] {
            if let Some(t) = bound {
                let p = self.arg(Arg::I(t));
                self.push(&format!(" AND created_at {op} {p}"));
            }
        }
        self
    }

    /// Add a value; returns its placeholder.
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for a in &self.args {
            q = match a {
                Arg::I(i) => q.bind(*i),
                Arg::S(s) => q.bind(s.as_str()),
            };
        }
        q
    }
}

impl Store {
    /// Keyset pagination over a query whose rows have `created_at` and `id`.
    /// `sql` must end inside a WHERE clause (e.g. `... WHERE 1=1`).
    async fn page_rows(
        &self,
        mut sql: Sql,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<sqlx::any::AnyRow>> {
        // Fetching "before" a key walks the list backwards, then flips it.
        let (walk, key) = match pos {
            Position::Start => (order, None),
            Position::After(k) => (order, Some(k)),
            Position::Before(k) => (order.reverse(), Some(k)),
        };
        if let Some(k) = key {
            let a = sql.arg(Arg::I(k.created_at));
            let _ = sql.arg(Arg::S(k.id.clone()));
            let n: usize = a[1..].parse().unwrap_or(1);
            sql.push(" AND ").push(&keyset_clause(walk, n));
        }
        let o = walk.sql();
        let lim = sql.arg(Arg::I(limit + 1));
        sql.push(&format!(" ORDER BY created_at {o}, id {o} LIMIT {lim}"));
        let mut rows = sql.query().fetch_all(&self.pool).await?;
        let overflow = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(match pos {
            Position::Start => Page { items: rows, more_after: overflow, more_before: false },
            Position::After(_) => Page { items: rows, more_after: overflow, more_before: true },
            Position::Before(_) => {
                rows.reverse();
                Page { items: rows, more_after: true, more_before: overflow }
            }
        })
    }
}
