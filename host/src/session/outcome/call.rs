//! The grader's model call: host-side, on the session's own endpoint and
//! credential (its LLM vault's, or the server's `default_llm`), in the API
//! shape of the session's harness, authenticated as the harness's plugin
//! tells the gateway to. The request and the parsing are [`super::grader`]'s.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::cycle::{Graded, Job};
use super::grader;
use crate::model::sessions::HarnessBinding;
use crate::session::Sessions;

/// How long one grader call may take.
const TIMEOUT: Duration = Duration::from_secs(180);

/// Grade one round.
pub(crate) async fn grade(host: Arc<Sessions>, binding: HarnessBinding, agent: Value, job: Job) -> Graded {
    let mut usage = json!({"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                           "cache_creation_input_tokens": 0});
    let result = call(&host, &binding, &agent, &job, &mut usage).await;
    if let Err(e) = &result {
        tracing::warn!(outcome_id = %job.outcome.id, iteration = job.iteration, error = %e, "outcome grading failed");
    }
    Graded { grade: result, usage }
}

async fn call(
    host: &Sessions,
    binding: &HarnessBinding,
    agent: &Value,
    job: &Job,
    usage: &mut Value,
) -> Result<grader::Grade, String> {
    let plugin = host.harness.plugin(&binding.engine).map_err(|e| e.to_string())?;
    let shape = plugin.info().api_shape;
    let (token, upstream) = crate::session::start::credential(host, binding, shape).await.map_err(|e| e.message)?;
    let model = crate::model::pricing::model_id(agent).unwrap_or_default().to_owned();
    let llm = bridle_harness::LlmEndpoint { base_url: Some(upstream.clone()), model: model.clone() };
    let plan = plugin.credentials(&llm).await.map_err(|e| e.to_string())?;
    let req = grader::request(shape, &model, &job.outcome, job.iteration, &job.result);
    let url = format!("{}{}", upstream.trim_end_matches('/'), req.path);
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| e.to_string())?;
    let mut http = client.post(&url).json(&req.body);
    if shape == bridle_harness::ApiShape::AnthropicMessages {
        http = http.header("anthropic-version", "2023-06-01");
    }
    for rule in &plan.inject {
        http = http.header(rule.header.as_str(), rule.value_template.replace("{token}", &token));
    }
    let resp = http.send().await.map_err(|e| format!("the grader's model request failed: {}", e.without_url()))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body.pointer("/error/message").and_then(Value::as_str).unwrap_or_default();
        return Err(format!("the grader's model request failed: HTTP {status} {detail}").trim_end().to_owned());
    }
    let (text, used) = grader::answer(shape, &body).map_err(|e| e.to_string())?;
    *usage = used;
    grader::verdict(&text).map_err(|e| e.to_string())
}
