//! `/v1/files`: upload, list, retrieve metadata, download, delete, as the
//! SDKs' `client.beta.files` call them. Bytes stream through in chunks both
//! ways (see `store::files`); an upload past `files.max_bytes` is a 413 with
//! nothing stored.

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{QueryParams, check_id};
use super::pagination::{next_token, parse_limit, token_position};
use crate::ids::{Kind, new_id};
use crate::model::files::{DeletedFile, FileMetadata, FilePage, FileUpload, stored_filename, stored_mime_type};
use crate::store::{FileFilter, FileRow, FileWriter, Order, Position};
use crate::time::{now_micros, rfc3339};

/// Files API page tokens carry this prefix, as Anthropic's do.
const PAGE_PREFIX: &str = "page_";

/// How much more of a refused upload's part is read (and thrown away) once
/// the error is decided, so the client reads the answer rather than a reset
/// connection; past this the connection is closed.
const DRAIN_LIMIT: u64 = 32 << 20;

fn to_wire(f: FileRow) -> FileMetadata {
    FileMetadata {
        id: f.id,
        kind: "file".into(),
        created_at: rfc3339(f.created_at),
        filename: f.filename,
        mime_type: f.mime_type,
        size_bytes: f.size_bytes,
        downloadable: f.downloadable,
        expires_at: None,
        scope: f.scope,
    }
}

#[utoipa::path(
    post,
    path = "/files",
    tag = "files",
    operation_id = "files_upload",
    summary = "Upload a file",
    request_body(content = FileUpload, content_type = "multipart/form-data"),
    responses((status = 200, description = "OK", body = FileMetadata))
)]
pub async fn upload(State(st): State<AppState>, q: QueryParams, req: Request) -> Response {
    if let Err(e) = q.allow(&[]) {
        return super::drain_then(req, e).await;
    }
    let multipart = super::extract::is_multipart(req.headers());
    if !multipart {
        let e = ApiError::invalid("the body must be multipart/form-data with the file in a part named `file`");
        return super::drain_then(req, e).await;
    }
    let mp = match Multipart::from_request(req, &st).await {
        Ok(mp) => mp,
        Err(e) => return ApiError::invalid(format!("invalid multipart body: {}", e.body_text())).into_response(),
    };
    let mut upload = Upload { st: &st, mp, writer: None, unread: false };
    match upload.run().await {
        Ok(file) => {
            tracing::info!(file_id = %file.id, size_bytes = file.size_bytes, mime_type = %file.mime_type, "file stored");
            Json(to_wire(file)).into_response()
        }
        Err(e) => {
            if let Some(w) = upload.writer.take()
                && let Err(abort) = w.abort().await
            {
                tracing::warn!(error = %abort, "could not delete a refused upload; it will be swept later");
            }
            let mut resp = e.into_response();
            // Read what is left (up to a bound) so the client sees the answer.
            if upload.unread || !upload.drain().await {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    }
}

/// One upload request being read.
struct Upload<'a> {
    st: &'a AppState,
    mp: Multipart,
    /// The `file` part being stored; finished only once the whole body is read.
    writer: Option<FileWriter>,
    /// A refused part was left unread past [`DRAIN_LIMIT`]: the connection must close.
    unread: bool,
}

fn bad_multipart(e: MultipartError) -> ApiError {
    ApiError::invalid(format!("invalid multipart body: {}", e.body_text()))
}

impl Upload<'_> {
    async fn run(&mut self) -> ApiResult<FileRow> {
        while let Some(mut field) = self.mp.next_field().await.map_err(bad_multipart)? {
            let name = field.name().unwrap_or_default().to_owned();
            let stored = match name.as_str() {
                "file" if self.writer.is_some() => {
                    Err(ApiError::invalid("the body has more than one `file` part; send one file per upload"))
                }
                "file" => store_file(self.st, &mut self.writer, &mut field).await,
                "expires_in_seconds" => Err(ApiError::invalid(
                    "expires_in_seconds: not supported by this server; its files do not expire (delete them instead)",
                )),
                other => Err(ApiError::invalid(format!(
                    "unknown multipart part `{other}`; this route takes one part, `file`"
                ))),
            };
            if let Err(e) = stored {
                // Read on (bounded), so the client gets to read the answer.
                self.unread = !drain_field(&mut field, DRAIN_LIMIT).await;
                return Err(e);
            }
        }
        let Some(writer) = self.writer.take() else {
            return Err(ApiError::invalid(
                "the multipart body has no `file` part; send the file in a part named `file`",
            ));
        };
        Ok(writer.finish().await?)
    }

    /// Read the rest of the body (a few more small parts at most); `true` if it ended.
    async fn drain(&mut self) -> bool {
        for _ in 0..16 {
            match self.mp.next_field().await {
                Ok(Some(mut field)) => {
                    if !drain_field(&mut field, 1 << 20).await {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

/// Stream the `file` part into the store, refusing it past `files.max_bytes`.
async fn store_file(st: &AppState, writer: &mut Option<FileWriter>, field: &mut Field<'_>) -> ApiResult<()> {
    let given_name = field.file_name().map(str::to_owned);
    let mime_type = stored_mime_type(field.content_type(), given_name.as_deref());
    let filename = stored_filename(given_name.as_deref(), &mime_type)?;
    let meta = FileRow {
        id: new_id(Kind::File),
        created_at: now_micros(),
        filename,
        mime_type,
        size_bytes: 0,
        downloadable: true,
        scope: None,
    };
    let max = st.config.files.max_bytes;
    let writer = writer.insert(st.store.begin_file(&meta).await?);
    while let Some(bytes) = field.chunk().await.map_err(bad_multipart)? {
        if writer.size() + bytes.len() as u64 > max {
            return Err(ApiError::TooLarge(format!(
                "file: larger than this server's limit of {max} bytes (files.max_bytes)"
            )));
        }
        writer.write(&bytes).await?;
    }
    Ok(())
}

/// Read a part to its end, up to `limit` bytes; `true` if it ended.
async fn drain_field(field: &mut Field<'_>, limit: u64) -> bool {
    let mut read = 0u64;
    loop {
        match field.chunk().await {
            Ok(Some(b)) => {
                read += b.len() as u64;
                if read > limit {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[utoipa::path(
    get,
    path = "/files",
    tag = "files",
    operation_id = "files_list",
    summary = "List files",
    params(
        ("limit" = Option<i64>, Query, description = "Page size: 1 to 1000, default 20."),
        ("page" = Option<String>, Query, description = "A `next_page` token from an earlier response (`page_...`)."),
        ("scope_id" = Option<String>, Query, description = "Only files of this scope (a session id)."),
        ("ids" = Option<Vec<String>>, Query, description = "Only these files (at most 100); not with `page`, `limit`, `before_id` or `after_id`."),
        ("after_id" = Option<String>, Query, description = "The page after this file (older files)."),
        ("before_id" = Option<String>, Query, description = "The page before this file (newer files).")
    ),
    responses((status = 200, description = "OK, newest first", body = FilePage))
)]
pub async fn list(State(st): State<AppState>, q: QueryParams) -> ApiResult<Json<FilePage>> {
    let req = ListRequest::parse(&q)?;
    let order = Order::Desc;
    let pos = match &req.start {
        Start::Top => Position::Start,
        Start::Token(token) => token_position(token, order, Kind::File)?,
        Start::After(id) => Position::After(load(&st, id).await?.key()),
        Start::Before(id) => Position::Before(load(&st, id).await?.key()),
    };
    let page = st.store.list_files(&req.filter, order, &pos, req.limit).await?;
    let has_more = if matches!(pos, Position::Before(_)) { page.more_before } else { page.more_after };
    let next_page = (req.filter.ids.is_none() && page.more_after)
        .then(|| page.items.last().map(|f| format!("{PAGE_PREFIX}{}", next_token(order, &f.key()))))
        .flatten();
    let first_id = page.items.first().map(|f| f.id.clone());
    let last_id = page.items.last().map(|f| f.id.clone());
    let data = page.items.into_iter().map(to_wire).collect();
    Ok(Json(FilePage { data, next_page, has_more, first_id, last_id }))
}

/// A files list request, its parameters checked.
#[derive(Debug, PartialEq)]
struct ListRequest {
    filter: FileFilter,
    start: Start,
    limit: i64,
}

/// Where a list starts.
#[derive(Debug, PartialEq)]
enum Start {
    Top,
    /// A `next_page` token, its `page_` prefix removed.
    Token(String),
    After(String),
    Before(String),
}

impl ListRequest {
    fn parse(q: &QueryParams) -> ApiResult<ListRequest> {
        q.allow(&["limit", "page", "scope_id", "ids", "after_id", "before_id"])?;
        let scope_id = q.one("scope_id")?.map(str::to_owned);
        let mut ids = q.many("ids");
        if !ids.is_empty() {
            // One page of exactly these files.
            for other in ["page", "limit", "after_id", "before_id"] {
                if q.one(other)?.is_some() {
                    return Err(ApiError::invalid(format!("query parameter `ids` cannot be combined with `{other}`")));
                }
            }
            ids.sort();
            ids.dedup();
            if ids.len() > 100 {
                return Err(ApiError::invalid(format!(
                    "query parameter `ids` takes at most 100 ids, got {}",
                    ids.len()
                )));
            }
            let limit = ids.len() as i64;
            return Ok(ListRequest { filter: FileFilter { scope_id, ids: Some(ids) }, start: Start::Top, limit });
        }
        let start = match (q.one("page")?, q.one("after_id")?, q.one("before_id")?) {
            (None, None, None) => Start::Top,
            (Some(p), None, None) => Start::Token(
                p.strip_prefix(PAGE_PREFIX)
                    .ok_or_else(|| {
                        ApiError::invalid("query parameter `page` is not a valid page token (they start with `page_`)")
                    })?
                    .to_owned(),
            ),
            (None, Some(id), None) => Start::After(id.to_owned()),
            (None, None, Some(id)) => Start::Before(id.to_owned()),
            _ => {
                return Err(ApiError::invalid(
                    "give at most one of the query parameters `page`, `after_id` and `before_id`",
                ));
            }
        };
        let limit = parse_limit(q, 20, 1000)?;
        Ok(ListRequest { filter: FileFilter { scope_id, ids: None }, start, limit })
    }
}

/// Fetch a file or 404.
async fn load(st: &AppState, id: &str) -> ApiResult<FileRow> {
    check_id(Kind::File, id)?;
    st.store.get_file(id).await?.ok_or_else(|| ApiError::not_found(Kind::File, id))
}

#[utoipa::path(
    get,
    path = "/files/{file_id}",
    tag = "files",
    operation_id = "files_retrieve_metadata",
    summary = "Retrieve a file's metadata",
    params(("file_id" = String, Path)),
    responses((status = 200, description = "OK", body = FileMetadata))
)]
pub async fn retrieve(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<FileMetadata>> {
    Ok(Json(to_wire(load(&st, &id).await?)))
}

#[utoipa::path(
    get,
    path = "/files/{file_id}/content",
    tag = "files",
    operation_id = "files_download",
    summary = "Download a file's bytes",
    params(("file_id" = String, Path)),
    responses((status = 200, description = "The file, with its MIME type", content_type = "application/octet-stream", body = String))
)]
pub async fn download(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let file = load(&st, &id).await?;
    if !file.downloadable {
        return Err(ApiError::FileNotDownloadable(format!("file `{id}` cannot be downloaded")));
    }
    let content_type =
        HeaderValue::from_str(&file.mime_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&file.filename))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("content-disposition of `{id}`: {e}")))?;
    let length = HeaderValue::from(file.size_bytes);
    let body = Body::from_stream(st.store.file_content(&file));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, length);
    h.insert(header::CONTENT_DISPOSITION, disposition);
    Ok(resp)
}

/// `attachment` with the filename twice: an ASCII fallback and the exact
/// UTF-8 name percent-encoded (RFC 6266 / RFC 8187).
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' })
        .collect();
    let encoded = utf8_percent_encode(filename, ATTR_CHAR);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// What RFC 5987 lets stand unencoded in an `ext-value` (`attr-char`).
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

#[utoipa::path(
    delete,
    path = "/files/{file_id}",
    tag = "files",
    operation_id = "files_delete",
    summary = "Delete a file and its bytes",
    params(("file_id" = String, Path)),
    responses((status = 200, description = "OK", body = DeletedFile))
)]
pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<DeletedFile>> {
    check_id(Kind::File, &id)?;
    if !st.store.delete_file(&id).await? {
        return Err(ApiError::not_found(Kind::File, &id));
    }
    tracing::info!(file_id = %id, "file deleted");
    Ok(Json(DeletedFile { id, kind: "file_deleted".into() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters() {
        let req = |start, limit, scope: Option<&str>, ids: Option<Vec<&str>>| ListRequest {
            filter: FileFilter {
                scope_id: scope.map(str::to_owned),
                ids: ids.map(|v| v.into_iter().map(str::to_owned).collect()),
            },
            start,
            limit,
        };
        let ok: Vec<(&str, ListRequest)> = vec![
            ("", req(Start::Top, 20, None, None)),
            ("beta=true&limit=1000", req(Start::Top, 1000, None, None)),
            ("scope_id=sesn_1&limit=5", req(Start::Top, 5, Some("sesn_1"), None)),
            ("page=page_abc", req(Start::Token("abc".into()), 20, None, None)),
            ("after_id=file_1", req(Start::After("file_1".into()), 20, None, None)),
            ("before_id=file_1&limit=2", req(Start::Before("file_1".into()), 2, None, None)),
            ("ids[]=file_b&ids[]=file_a&ids[]=file_b", req(Start::Top, 2, None, Some(vec!["file_a", "file_b"]))),
            ("ids=file_a,file_b&scope_id=sesn_1", req(Start::Top, 2, Some("sesn_1"), Some(vec!["file_a", "file_b"]))),
        ];
        for (query, want) in ok {
            assert_eq!(ListRequest::parse(&QueryParams::parse(query)).unwrap(), want, "{query}");
        }
        let many = (0..101).map(|i| format!("ids[]=file_{i}")).collect::<Vec<_>>().join("&");
        let bad = [
            ("order=asc", "unknown query parameter `order`"),
            ("limit=0", "between 1 and 1000"),
            ("limit=1001", "between 1 and 1000"),
            ("page=abc", "start with `page_`"),
            ("page=page_a&after_id=file_1", "at most one of"),
            ("after_id=file_1&before_id=file_2", "at most one of"),
            ("ids[]=file_1&limit=2", "cannot be combined with `limit`"),
            ("ids[]=file_1&page=page_a", "cannot be combined with `page`"),
            (many.as_str(), "at most 100 ids"),
            ("scope_id=a&scope_id=b", "more than once"),
        ];
        for (query, want) in bad {
            let err = ListRequest::parse(&QueryParams::parse(query)).unwrap_err();
            assert!(err.to_string().contains(want), "{query}: {err}");
        }
    }

    #[test]
    fn content_disposition_quotes_and_encodes() {
        let cases = [
            ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
            ("my file.txt", "attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt"),
            ("a\"b\\c", "attachment; filename=\"a_b_c\"; filename*=UTF-8''a%22b%5Cc"),
            ("héllo.md", "attachment; filename=\"h_llo.md\"; filename*=UTF-8''h%C3%A9llo.md"),
        ];
        for (name, want) in cases {
            let got = content_disposition(name);
            assert_eq!(got, want);
            assert!(HeaderValue::from_str(&got).is_ok(), "{got}");
        }
    }
}
