//! The Managed Agents `session.error` type for a model API failure, from
//! what a runtime reports of it: an HTTP status when it has one, and its
//! error name or message (the hint). One rule for every plugin.

/// `billing_error`, `model_overloaded_error`, `model_rate_limited_error` or
/// `model_request_failed_error`. Billing wins over the status (OpenAI reports
/// an empty balance as a 429 `insufficient_quota`); then 529 / "overloaded";
/// then 429 / "rate_limit".
pub fn model_error_type(status: Option<u64>, hint: &str) -> &'static str {
    let hint = hint.to_ascii_lowercase();
    if hint.contains("billing") || hint.contains("insufficient_quota") {
        "billing_error"
    } else if status == Some(529) || hint.contains("overloaded") {
        "model_overloaded_error"
    } else if status == Some(429) || hint.contains("rate_limit") {
        "model_rate_limited_error"
    } else {
        "model_request_failed_error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_hints_map_to_one_type() {
        let cases = [
            (Some(529), "", "model_overloaded_error"),
            (None, "overloaded_error", "model_overloaded_error"),
            (Some(429), "", "model_rate_limited_error"),
            (None, "rate_limit_error", "model_rate_limited_error"),
            (Some(429), "insufficient_quota", "billing_error"),
            (Some(400), "Billing problem", "billing_error"),
            (Some(500), "api_error", "model_request_failed_error"),
            (None, "", "model_request_failed_error"),
        ];
        for (status, hint, want) in cases {
            assert_eq!(model_error_type(status, hint), want, "{status:?} {hint:?}");
        }
    }
}
