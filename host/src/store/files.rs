//! Files: metadata rows and their bytes in numbered chunks of at most
//! [`CHUNK_BYTES`], so any node sharing the database serves any file and no
//! file is ever whole in memory.
//!
//! An upload is written chunk by chunk, each in its own short statement: on
//! SQLite one long write transaction would hold the database's only write
//! lock for as long as the client takes to send the file, and every other
//! writer (event appends) would fail once its busy timeout ran out. The file
//! row stays `complete = 0` (never listed, never served) until the last
//! chunk is in; a failed or dropped upload deletes what it wrote, and one
//! abandoned by a crashed node is swept by a later upload.

use bytes::{Bytes, BytesMut};
use futures::Stream;
use sqlx::Row;

use super::{Arg, Order, Page, Position, Sql, Store, StoreError, StoreResult};
use crate::model::files::FileScope;
use crate::time::now_micros;

/// The size of a stored chunk (the last one of a file may be shorter).
pub const CHUNK_BYTES: usize = 1 << 20;

/// An upload still incomplete this long after it began was abandoned (its
/// node died mid-upload): the next upload sweeps it.
const ABANDONED_AFTER_MICROS: i64 = 24 * 3600 * 1_000_000;

/// A stored file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: i64,
    pub downloadable: bool,
    pub scope: Option<FileScope>,
}

impl FileRow {
    pub fn key(&self) -> super::Key {
        super::Key { created_at: self.created_at, id: self.id.clone() }
    }
}

/// What a file list is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFilter {
    /// Only files of this scope (a session id).
    pub scope_id: Option<String>,
    /// Only these ids.
    pub ids: Option<Vec<String>>,
}

fn decode(row: &sqlx::any::AnyRow) -> StoreResult<FileRow> {
    let scope_type: Option<String> = row.try_get("scope_type")?;
    let scope_id: Option<String> = row.try_get("scope_id")?;
    let scope = match (scope_type, scope_id) {
        (Some(kind), Some(id)) => Some(FileScope { kind, id }),
        _ => None,
    };
    Ok(FileRow {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        filename: row.try_get("filename")?,
        mime_type: row.try_get("mime_type")?,
        size_bytes: row.try_get("size_bytes")?,
        downloadable: row.try_get::<i64, _>("downloadable")? != 0,
        scope,
    })
}

const COLUMNS: &str = "id, created_at, filename, mime_type, size_bytes, downloadable, scope_type, scope_id";

impl Store {
    /// Start storing a file whose metadata is `meta` (`size_bytes` is
    /// counted as bytes arrive). Nothing is visible until
    /// [`FileWriter::finish`].
    pub async fn begin_file(&self, meta: &FileRow) -> StoreResult<FileWriter> {
        self.begin(meta, None).await
    }

    /// Like [`begin_file`](Self::begin_file), for a session output: the
    /// file at `path` under the outputs directory, whose bytes hash to `sha256`.
    pub async fn begin_output_file(&self, meta: &FileRow, path: &str, sha256: &str) -> StoreResult<FileWriter> {
        self.begin(meta, Some((path, sha256))).await
    }

    async fn begin(&self, meta: &FileRow, output: Option<(&str, &str)>) -> StoreResult<FileWriter> {
        self.sweep_abandoned_uploads().await?;
        let (scope_type, scope_id) = match &meta.scope {
            Some(s) => (Some(s.kind.clone()), Some(s.id.clone())),
            None => (None, None),
        };
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO files (id, created_at, filename, mime_type, size_bytes, downloadable, scope_type, scope_id, \
             complete, output_path, sha256) VALUES ($1, $2, $3, $4, 0, $5, $6, $7, 0, $8, $9)",
        )
        .bind(&meta.id)
        .bind(meta.created_at)
        .bind(&meta.filename)
        .bind(&meta.mime_type)
        .bind(i64::from(meta.downloadable))
        .bind(scope_type)
        .bind(scope_id)
        .bind(output.map(|o| o.0.to_owned()))
        .bind(output.map(|o| o.1.to_owned()))
        .execute(&self.pool)
        .await?;
        Ok(FileWriter {
            store: self.clone(),
            meta: FileRow { size_bytes: 0, ..meta.clone() },
            seq: 0,
            buf: BytesMut::new(),
            settled: false,
        })
    }

    async fn sweep_abandoned_uploads(&self) -> StoreResult<()> {
        let before = now_micros() - ABANDONED_AFTER_MICROS;
        let stale = sqlx::query("SELECT id FROM files WHERE complete = 0 AND created_at < $1")
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        for row in stale {
            let id: String = row.try_get("id")?;
            tracing::info!(file_id = %id, "sweeping an abandoned upload");
            self.remove_file(&id, false).await?;
        }
        Ok(())
    }

    /// Delete a file's chunks and row (`complete`: only a finished file).
    /// Returns whether a row was deleted.
    async fn remove_file(&self, id: &str, complete: bool) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM files WHERE id = $1 AND complete = $2")
            .bind(id)
            .bind(i64::from(complete))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // The foreign key cascades too; this does not depend on it.
        sqlx::query("DELETE FROM file_chunks WHERE file_id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A finished file's metadata.
    pub async fn get_file(&self, id: &str) -> StoreResult<Option<FileRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM files WHERE id = $1 AND complete = 1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Finished files, newest first (or as `order` says).
    pub async fn list_files(
        &self,
        filter: &FileFilter,
        order: Order,
        pos: &Position,
        limit: i64,
    ) -> StoreResult<Page<FileRow>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM files WHERE complete = 1"));
        if let Some(scope) = &filter.scope_id {
            let p = sql.arg(Arg::S(scope.clone()));
            sql.push(&format!(" AND scope_id = {p}"));
        }
        if let Some(ids) = &filter.ids {
            if ids.is_empty() {
                return Ok(Page { items: Vec::new(), more_after: false, more_before: false });
            }
            let marks: Vec<String> = ids.iter().map(|id| sql.arg(Arg::S(id.clone()))).collect();
            sql.push(&format!(" AND id IN ({})", marks.join(", ")));
        }
        let page = self.page_rows(sql, order, pos, limit).await?;
        let items = page.items.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, more_after: page.more_after, more_before: page.more_before })
    }

    /// A session's stored outputs: `(file id, output path, sha256)` of each.
    pub async fn session_outputs(&self, session_id: &str) -> StoreResult<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, output_path, sha256 FROM files WHERE scope_type = 'session' AND scope_id = $1 \
             AND output_path IS NOT NULL AND sha256 IS NOT NULL AND complete = 1",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("output_path")?, r.try_get("sha256")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Delete every file scoped to a session, and their bytes: how many.
    pub async fn delete_session_files(&self, session_id: &str) -> StoreResult<usize> {
        let rows = sqlx::query("SELECT id FROM files WHERE scope_type = 'session' AND scope_id = $1")
            .bind(session_id)
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            // Unfinished ones too: an output being stored when its session went.
            if self.remove_file(&id, true).await? || self.remove_file(&id, false).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Delete a finished file and all its bytes; `false` if there was none.
    pub async fn delete_file(&self, id: &str) -> StoreResult<bool> {
        self.remove_file(id, true).await
    }

    /// A file's bytes, one chunk at a time. Ends with an error if fewer or
    /// more than `size_bytes` are found (the file was deleted meanwhile).
    pub fn file_content(&self, file: &FileRow) -> impl Stream<Item = StoreResult<Bytes>> + Send + 'static {
        let store = self.clone();
        let (id, size) = (file.id.clone(), file.size_bytes);
        async_stream::try_stream! {
            let (mut next, mut sent) = (0i64, 0i64);
            loop {
                let row = sqlx::query(
                    "SELECT seq, data FROM file_chunks WHERE file_id = $1 AND seq >= $2 ORDER BY seq LIMIT 1",
                )
                .bind(&id)
                .bind(next)
                .fetch_optional(&store.pool)
                .await
                .map_err(StoreError::from)?;
                let Some(row) = row else { break };
                let seq: i64 = row.try_get("seq").map_err(StoreError::from)?;
                let data: Vec<u8> = row.try_get("data").map_err(StoreError::from)?;
                next = seq + 1;
                sent += data.len() as i64;
                yield Bytes::from(data);
            }
            if sent != size {
                Err::<(), _>(StoreError::Other(anyhow::anyhow!(
                    "file `{id}`: found {sent} of its {size} bytes (deleted while being read?)"
                )))?;
            }
        }
    }

    /// How many file rows and chunk rows the database holds (for checks
    /// that a deleted or refused file left nothing behind).
    pub async fn file_row_counts(&self) -> StoreResult<(i64, i64)> {
        let files: i64 = sqlx::query("SELECT COUNT(*) AS n FROM files").fetch_one(&self.pool).await?.try_get("n")?;
        let chunks: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM file_chunks").fetch_one(&self.pool).await?.try_get("n")?;
        Ok((files, chunks))
    }
}

/// A file being stored: bytes go in with [`write`](Self::write), full
/// chunks are inserted as they fill. Dropped before [`finish`](Self::finish)
/// or [`abort`](Self::abort) (the client went away), it deletes what it
/// wrote in the background.
pub struct FileWriter {
    store: Store,
    meta: FileRow,
    seq: i64,
    buf: BytesMut,
    /// Finished or aborted: nothing to clean up on drop.
    settled: bool,
}

impl FileWriter {
    /// Bytes taken so far.
    pub fn size(&self) -> u64 {
        self.meta.size_bytes as u64
    }

    pub async fn write(&mut self, data: &[u8]) -> StoreResult<()> {
        self.buf.extend_from_slice(data);
        self.meta.size_bytes += data.len() as i64;
        while self.buf.len() >= CHUNK_BYTES {
            let chunk = self.buf.split_to(CHUNK_BYTES);
            self.insert_chunk(&chunk).await?;
        }
        Ok(())
    }

    async fn insert_chunk(&mut self, data: &[u8]) -> StoreResult<()> {
        let _turn = self.store.write_turn().await;
        sqlx::query("INSERT INTO file_chunks (file_id, seq, data) VALUES ($1, $2, $3)")
            .bind(&self.meta.id)
            .bind(self.seq)
            .bind(data.to_vec())
            .execute(&self.store.pool)
            .await?;
        self.seq += 1;
        Ok(())
    }

    /// Store the last chunk and make the file visible.
    pub async fn finish(mut self) -> StoreResult<FileRow> {
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            self.insert_chunk(&rest).await?;
        }
        let _turn = self.store.write_turn().await;
        sqlx::query("UPDATE files SET size_bytes = $1, complete = 1 WHERE id = $2")
            .bind(self.meta.size_bytes)
            .bind(&self.meta.id)
            .execute(&self.store.pool)
            .await?;
        self.settled = true;
        Ok(self.meta.clone())
    }

    /// Delete everything written so far.
    pub async fn abort(mut self) -> StoreResult<()> {
        self.settled = true;
        self.store.remove_file(&self.meta.id, false).await.map(|_| ())
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (store, id) = (self.store.clone(), self.meta.id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.remove_file(&id, false).await {
                    tracing::warn!(file_id = %id, error = %e, "could not delete an interrupted upload; it will be swept later");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Kind, new_id};
    use futures::TryStreamExt;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        (Store::connect(&url).await.unwrap(), dir)
    }

    fn meta(scope: Option<FileScope>) -> FileRow {
        FileRow {
            id: new_id(Kind::File),
            created_at: now_micros(),
            filename: "f.bin".into(),
            mime_type: "application/octet-stream".into(),
            size_bytes: 0,
            downloadable: true,
            scope,
        }
    }

    /// Bytes that differ at every offset, so a chunk out of order shows.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
    }

    async fn put(s: &Store, m: &FileRow, data: &[u8], piece: usize) -> FileRow {
        let mut w = s.begin_file(m).await.unwrap();
        for p in data.chunks(piece) {
            w.write(p).await.unwrap();
        }
        w.finish().await.unwrap()
    }

    #[tokio::test]
    async fn chunks_round_trip_and_delete_leaves_nothing() {
        let (s, _dir) = store().await;
        for len in [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 17] {
            let data = pattern(len);
            let f = put(&s, &meta(None), &data, 64 * 1024 + 3).await;
            assert_eq!(f.size_bytes, len as i64);
            let (_, chunks) = s.file_row_counts().await.unwrap();
            assert_eq!(chunks as usize, len.div_ceil(CHUNK_BYTES), "len {len}");
            let got: Vec<Bytes> = s.file_content(&f).try_collect().await.unwrap();
            assert_eq!(got.concat(), data, "len {len}");
            assert!(s.delete_file(&f.id).await.unwrap());
            assert!(!s.delete_file(&f.id).await.unwrap(), "a second delete finds nothing");
            assert_eq!(s.file_row_counts().await.unwrap(), (0, 0), "len {len}");
        }
    }

    #[tokio::test]
    async fn unfinished_uploads_are_invisible_and_cleaned_up() {
        let (s, _dir) = store().await;
        let m = meta(None);
        let mut w = s.begin_file(&m).await.unwrap();
        w.write(&pattern(2 * CHUNK_BYTES)).await.unwrap();
        assert_eq!(s.get_file(&m.id).await.unwrap(), None);
        let page = s.list_files(&FileFilter::default(), Order::Desc, &Position::Start, 10).await.unwrap();
        assert!(page.items.is_empty());
        w.abort().await.unwrap();
        assert_eq!(s.file_row_counts().await.unwrap(), (0, 0));

        // Dropped mid-upload (the client went away): cleaned up in the background.
        let mut w = s.begin_file(&meta(None)).await.unwrap();
        w.write(&pattern(CHUNK_BYTES + 5)).await.unwrap();
        drop(w);
        for _ in 0..100 {
            if s.file_row_counts().await.unwrap() == (0, 0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(s.file_row_counts().await.unwrap(), (0, 0));

        // Abandoned by a dead node a day ago: swept by the next upload.
        let old = FileRow { created_at: now_micros() - ABANDONED_AFTER_MICROS - 1, ..meta(None) };
        let mut w = s.begin_file(&old).await.unwrap();
        w.write(&pattern(CHUNK_BYTES)).await.unwrap();
        std::mem::forget(w);
        let f = put(&s, &meta(None), b"x", 1).await;
        assert_eq!(s.file_row_counts().await.unwrap(), (1, 1));
        assert!(s.delete_file(&f.id).await.unwrap());
    }

    #[tokio::test]
    async fn a_sessions_files_are_deleted_with_it_and_only_its() {
        let (s, _dir) = store().await;
        let (a, b) = (new_id(Kind::Session), new_id(Kind::Session));
        put(&s, &meta(Some(FileScope::session(&a))), &pattern(CHUNK_BYTES + 1), 4096).await;
        let m = meta(Some(FileScope::session(&a)));
        let mut w = s.begin_output_file(&m, "half.txt", &"0".repeat(64)).await.unwrap();
        w.write(b"unfinished").await.unwrap();
        std::mem::forget(w);
        let kept_b = put(&s, &meta(Some(FileScope::session(&b))), b"b", 1).await;
        let upload = put(&s, &meta(None), b"u", 1).await;
        assert_eq!(s.delete_session_files(&a).await.unwrap(), 2);
        assert_eq!(s.file_row_counts().await.unwrap(), (2, 2), "only b's output and the upload are left");
        assert!(s.get_file(&kept_b.id).await.unwrap().is_some() && s.get_file(&upload.id).await.unwrap().is_some());
        assert_eq!(s.delete_session_files(&a).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn lists_filter_by_scope_and_ids_and_page() {
        let (s, _dir) = store().await;
        let sess = new_id(Kind::Session);
        let mut ups = Vec::new();
        let mut outs = Vec::new();
        for i in 0..3 {
            ups.push(put(&s, &meta(None), &[i], 1).await.id);
            outs.push(put(&s, &meta(Some(FileScope::session(&sess))), &[i], 1).await.id);
        }
        let list = |f: FileFilter, pos: Position, limit: i64| {
            let s = s.clone();
            async move { s.list_files(&f, Order::Desc, &pos, limit).await.unwrap() }
        };
        let scoped = list(FileFilter { scope_id: Some(sess.clone()), ids: None }, Position::Start, 10).await;
        let got: Vec<_> = scoped.items.iter().map(|f| f.id.clone()).collect();
        assert_eq!(got, outs.iter().rev().cloned().collect::<Vec<_>>());
        assert!(scoped.items.iter().all(|f| f.scope == Some(FileScope::session(&sess))));

        let other = list(FileFilter { scope_id: Some(new_id(Kind::Session)), ids: None }, Position::Start, 10).await;
        assert!(other.items.is_empty());

        let some =
            list(FileFilter { scope_id: None, ids: Some(vec![ups[0].clone(), outs[2].clone()]) }, Position::Start, 10)
                .await;
        assert_eq!(some.items.len(), 2);

        // All six, two at a time, newest first.
        let mut seen = Vec::new();
        let mut pos = Position::Start;
        loop {
            let page = list(FileFilter::default(), pos, 2).await;
            seen.extend(page.items.iter().map(|f| (f.created_at, f.id.clone())));
            if !page.more_after {
                break;
            }
            pos = Position::After(page.items.last().unwrap().key());
        }
        assert_eq!(seen.len(), 6);
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seen, sorted, "newest first, each once");
    }
}
