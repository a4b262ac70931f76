//! The OpenAPI 3.1 document of the whole HTTP API. It is built from the same
//! route table as the router (`api::v1_routes` and `api::root_routes`:
//! each handler documents itself with `#[utoipa::path]`) and from the
//! `ToSchema` derives on the model types. Served at `GET /openapi.json`
//! without an API key (it holds no data), printed by `bridle openapi`, and
//! checked in as `host/openapi.json`.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, Required};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use super::auth::{BETA, FILES_BETA, is_beta_optional_route};
use super::error::ErrorEnvelope;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bridle",
        description = "A self-hostable Managed Agents server: Anthropic's Managed Agents API \
                       (beta `managed-agents-2026-04-01`). Every `/v1` route needs an API key \
                       and the `anthropic-beta` header (optional on the Files API); every error is \
                       Anthropic's envelope.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "agents"),
        (name = "environments"),
        (name = "vaults"),
        (name = "credentials", description = "A vault's credentials; secrets are write-only."),
        (name = "sessions"),
        (name = "events", description = "A session's event log: send, list, stream."),
        (name = "threads", description = "A session's threads (its primary thread) and each thread's events."),
        (name = "work", description = "A self-hosted environment's work queue: its workers poll, lease and \
                                         heartbeat with an environment key."),
        (name = "memory_stores", description = "Memory stores: named containers of text memories (beta \
                                                 `agent-memory-2026-07-22` or `managed-agents-2026-04-01`)."),
        (name = "memories", description = "A memory store's memories, by path."),
        (name = "memory_versions", description = "Every change to a store's memories; versions outlive their memory."),
        (name = "files", description = "The Files API: bytes stored in the database, served by every node."),
        (name = "operations", description = "Probes, metrics and this document; no API key."),
    ),
    paths(super::metrics::scrape),
    components(schemas(ErrorEnvelope))
)]
struct ApiDoc;

// Bodies the event handlers build as JSON values (an event's fields depend on
// its type): these types give them a schema; tests/openapi.rs checks real
// bodies against it.

/// `POST /v1/sessions/{id}/events`: 1 to 50 events.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEvents {
    pub events: Vec<crate::model::events::UserEvent>,
}

/// The events as stored (with their ids and `processed_at`).
#[derive(Serialize, ToSchema)]
pub struct SentEvents {
    pub data: Vec<SessionEvent>,
}

/// One event of a session's log: its `type` says which other fields it has
/// (`user.*` as sent, `agent.*`, `session.*`, `span.*` from the server).
#[derive(Serialize, ToSchema)]
pub struct SessionEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339. `null` on a `user.message` queued behind a turn: the
    /// stored event is stamped when its turn starts.
    #[schema(required = true)]
    pub processed_at: Option<String>,
}

/// `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}

/// The whole document.
pub fn document() -> Document {
    let mut doc = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .nest("/v1", super::v1_routes())
        .merge(super::root_routes())
        .into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    let components = doc.components.get_or_insert_default();
    components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));

    // What every operation shares, added here rather than repeated on each handler.
    let beta = ParameterBuilder::new()
        .name("anthropic-beta")
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(format!("Must include `{BETA}` (a comma-separated list of betas).")))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).examples([Value::from(BETA)])))
        .build();
    let files_beta = ParameterBuilder::new()
        .name("anthropic-beta")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(format!("Optional on the Files and Skills APIs; `{FILES_BETA}` or `{BETA}` are accepted.")))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).examples([Value::from(FILES_BETA)])))
        .build();
    let error = ResponseBuilder::new()
        .description("An error in Anthropic's envelope (4xx, or 5xx with a request id to quote)")
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope"))).build())
        .build();
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in operations(item) {
            op.responses.responses.insert("default".into(), error.clone().into());
            if path.starts_with("/v1/") {
                op.security = Some(vec![
                    SecurityRequirement::new("api_key", Vec::<String>::new()),
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                ]);
                let beta = if is_beta_optional_route(path) { &files_beta } else { &beta };
                op.parameters.get_or_insert_default().push(beta.clone().into());
            }
        }
    }
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head, &mut item.options]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// The document as pretty JSON with a final newline: the exact bytes served
/// and checked in.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut s = document().to_pretty_json().expect("the OpenAPI document serializes");
        s.push('\n');
        s
    })
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This OpenAPI document",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
pub async fn serve() -> Response {
    ([(CONTENT_TYPE, "application/json")], document_json()).into_response()
}
