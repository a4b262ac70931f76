//! `/console`: a web page to watch and drive sessions.
//!
//! Three static files embedded in the binary (no CDN, no front-end build): the
//! page talks to the public `/v1` API only, with the API key the user types,
//! kept in the browser's session storage. The route itself needs no key: it
//! serves no data, and the API checks the key on every call the page makes.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../console/index.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../console/console.css"),
    },
];

/// The page may load its own files and call its own origin, nothing else:
/// event content (tool inputs, model output) is shown as text, and a script
/// that slipped in could not send the key anywhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    operation_id = "console_redirect",
    summary = "The console (a web page); redirects to `/console/`",
    responses((status = 308, description = "To `/console/`"))
)]
pub async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

#[utoipa::path(
    get,
    path = "/console/",
    tag = "console",
    operation_id = "console_page",
    summary = "The console's page (HTML; it calls the `/v1` API with the key the user enters)",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
pub async fn page() -> Response {
    serve("index.html")
}

#[utoipa::path(
    get,
    path = "/console/{file}",
    tag = "console",
    operation_id = "console_file",
    summary = "A file of the console (its script and style sheet)",
    params(("file" = String, Path)),
    responses(
        (status = 200, description = "The file", body = String),
        (status = 404, description = "No such file", body = super::error::ErrorEnvelope)
    )
)]
pub async fn file(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

fn serve(name: &str) -> Response {
    let Some(asset) = find(name) else {
        return ApiError::NotFound(format!("the console has no file `{name}`")).into_response();
    };
    let mut resp = (StatusCode::OK, asset.body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The files change only with the binary; revalidating each load is cheap.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_embedded() {
        let index = find("index.html").unwrap().body;
        for asset in ASSETS.iter().filter(|a| a.name != "index.html") {
            assert!(index.contains(asset.name), "index.html does not load {}", asset.name);
        }
        assert!(find("../Cargo.toml").is_none());
    }

    #[test]
    fn unknown_files_are_a_404_in_the_envelope() {
        let resp = serve("nope.js");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = serve("console.js");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("connect-src 'self'"));
    }
}
