//! Outcomes at the API: a `user.define_outcome` is given its `outc_` id and
//! its file rubric resolved to text when it is taken (so the log holds what
//! will be graded); the session's `outcome_evaluations` are folded from its
//! log (`session::outcome::resource`).

use futures::StreamExt;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::ids::new_id;
use crate::model::events::{Rubric, UserEvent};

/// The longest rubric file taken (its text goes into every grader request).
const RUBRIC_MAX_BYTES: usize = 256 * 1024;

/// Ready a client's `user.define_outcome` (`field` names it) for the log.
pub(crate) async fn take(st: &AppState, session_id: &str, field: &str, ev: UserEvent) -> ApiResult<UserEvent> {
    let UserEvent::DefineOutcome { description, rubric, max_iterations, .. } = ev else { return Ok(ev) };
    let rubric = match rubric {
        Rubric::File { file_id } => Rubric::Text { content: rubric_file(st, session_id, field, &file_id).await? },
        text => text,
    };
    Ok(UserEvent::DefineOutcome { description, rubric, max_iterations, outcome_id: Some(new_outcome_id()) })
}

fn new_outcome_id() -> String {
    // `outc_` ids are the API's; the body is a ULID like every Bridle id.
    new_id(crate::ids::Kind::Event).replacen("sevt_", "outc_", 1)
}

async fn rubric_file(st: &AppState, session_id: &str, field: &str, file_id: &str) -> ApiResult<String> {
    let field = format!("{field}.rubric.file_id");
    super::resources::check_file(st, Some(session_id), &field, file_id).await?;
    let file = st
        .store
        .get_file(file_id)
        .await?
        .ok_or_else(|| ApiError::invalid(format!("{field}: file `{file_id}` not found")))?;
    let mut content = Vec::new();
    let mut chunks = std::pin::pin!(st.store.file_content(&file));
    while let Some(chunk) = chunks.next().await {
        content.extend_from_slice(&chunk?);
        if content.len() > RUBRIC_MAX_BYTES {
            return Err(ApiError::invalid(format!(
                "{field}: file `{file_id}` is larger than a rubric may be ({RUBRIC_MAX_BYTES} bytes)"
            )));
        }
    }
    let text = String::from_utf8(content).map_err(|_| {
        ApiError::invalid(format!("{field}: file `{file_id}` is not UTF-8 text; a rubric must be text"))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid(format!("{field}: file `{file_id}` is empty")));
    }
    Ok(text)
}

/// A session's `outcome_evaluations`.
pub(crate) async fn evaluations(st: &AppState, session_id: &str) -> ApiResult<Vec<Value>> {
    Ok(crate::session::outcome::evaluations(&st.store, session_id).await?)
}
