//! `limit` / `page` pagination. A page token is opaque to clients: base64url
//! of a small JSON object that records the list's order, so reusing it with
//! another order is a clear 400, as in Anthropic's API.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::QueryParams;
use crate::ids::{Kind, has_kind};
use crate::store::{Key, Order, Position};

#[derive(Debug, Serialize, Deserialize)]
struct Token {
    /// "asc" or "desc".
    o: String,
    /// "n" (next) or "p" (previous).
    d: String,
    /// created_at of the boundary row, or the boundary event seq.
    t: i64,
    /// id of the boundary row (empty for events).
    i: String,
}

/// One page of a list (`next_page` is the token for the following page).
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[schema(required)]
    pub next_page: Option<String>,
}

/// A page of sessions, which can also be walked backwards.
#[derive(Serialize, ToSchema)]
pub struct SessionPage {
    pub data: Vec<crate::model::sessions::Session>,
    #[schema(required)]
    pub next_page: Option<String>,
    #[schema(required)]
    pub prev_page: Option<String>,
}

fn order_str(o: Order) -> &'static str {
    match o {
        Order::Asc => "asc",
        Order::Desc => "desc",
    }
}

pub fn parse_order(q: &QueryParams, default: Order) -> Result<Order, ApiError> {
    match q.one("order")? {
        None => Ok(default),
        Some("asc") => Ok(Order::Asc),
        Some("desc") => Ok(Order::Desc),
        Some(v) => Err(ApiError::invalid(format!("query parameter `order` must be asc or desc, got `{v}`"))),
    }
}

pub fn parse_limit(q: &QueryParams, default: i64, max: i64) -> Result<i64, ApiError> {
    match q.int("limit")? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(format!("query parameter `limit` must be between 1 and {max}, got {n}"))),
    }
}

fn decode(page: &str, order: Order) -> Result<Token, ApiError> {
    let bad = || ApiError::invalid("query parameter `page` is not a valid page token");
    let raw = URL_SAFE_NO_PAD.decode(page).map_err(|_| bad())?;
    let tok: Token = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if tok.o != order_str(order) {
        return Err(ApiError::invalid(format!(
            "this page token belongs to a list in `{}` order; repeat the request with order={} or start without `page`",
            tok.o, tok.o
        )));
    }
    Ok(tok)
}

fn encode(order: Order, dir: &str, t: i64, i: &str) -> String {
    let tok = Token { o: order_str(order).into(), d: dir.into(), t, i: i.into() };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tok).unwrap_or_default())
}

/// A well-formed token from another list: it would silently page through the wrong rows.
fn other_list() -> ApiError {
    ApiError::invalid("query parameter `page` is a page token of another list; pass the `next_page` this list returned")
}

/// The position a `page` token points at in a keyed list of `kind` objects.
pub fn position(q: &QueryParams, order: Order, kind: Kind) -> Result<Position, ApiError> {
    match q.one("page")? {
        None => Ok(Position::Start),
        Some(page) => token_position(page, order, kind),
    }
}

/// The position a page token points at.
pub fn token_position(page: &str, order: Order, kind: Kind) -> Result<Position, ApiError> {
    token_position_of(page, order, |id| has_kind(id, kind))
}

/// The position a page token points at in a list whose ids `is_id` accepts.
pub fn token_position_of(page: &str, order: Order, is_id: impl Fn(&str) -> bool) -> Result<Position, ApiError> {
    let tok = decode(page, order)?;
    if !is_id(&tok.i) || !matches!(tok.d.as_str(), "n" | "p") {
        return Err(other_list());
    }
    let key = Key { created_at: tok.t, id: tok.i };
    Ok(if tok.d == "p" { Position::Before(key) } else { Position::After(key) })
}

pub fn next_token(order: Order, last: &Key) -> String {
    encode(order, "n", last.created_at, &last.id)
}

pub fn prev_token(order: Order, first: &Key) -> String {
    encode(order, "p", first.created_at, &first.id)
}

/// For lists keyed by a sequence number (events, agent versions).
pub fn seq_position(q: &QueryParams, order: Order) -> Result<Option<i64>, ApiError> {
    let Some(page) = q.one("page")? else { return Ok(None) };
    let tok = decode(page, order)?;
    if !tok.i.is_empty() || tok.d != "n" {
        return Err(other_list());
    }
    Ok(Some(tok.t))
}

pub fn seq_token(order: Order, seq: i64) -> String {
    encode(order, "n", seq, "")
}
