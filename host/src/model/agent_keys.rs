//! Bridle's own agent metadata keys (`bridle.*`). Today one:
//! [`ENGINE_KEY`], the harness a roster agent runs on when a coordinator
//! delegates to it (absent: the session's harness). Metadata values are
//! strings; a value Bridle would not act on is refused when the agent is
//! written, not stored and ignored.

use super::common::{Invalid, Metadata};

/// The harness (`claude`, `codex`, ...) this agent's delegated threads run on.
pub const ENGINE_KEY: &str = "bridle.engine";

/// The harness the agent's metadata names, if any.
pub fn engine(metadata: &Metadata) -> Option<&str> {
    metadata.get(ENGINE_KEY).map(String::as_str)
}

/// Check an agent's metadata (as it will be stored) against the server's
/// harnesses.
pub fn check(metadata: &Metadata, known_engines: &[String]) -> Result<(), Invalid> {
    match engine(metadata) {
        Some(e) if !known_engines.iter().any(|k| k == e) => Err(Invalid::new(format!(
            "metadata.{ENGINE_KEY}: \"{e}\" is not a known harness; known harnesses: {}",
            known_engines.join(", ")
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_must_be_known() {
        let known = ["claude", "codex"].map(String::from).to_vec();
        let meta = |v: Option<&str>| -> Metadata {
            v.map(|v| (ENGINE_KEY.to_string(), v.to_string()))
                .into_iter()
                .chain([("team".into(), "x".into())])
                .collect()
        };
        assert!(check(&meta(None), &known).is_ok());
        assert!(check(&meta(Some("codex")), &known).is_ok());
        assert_eq!(engine(&meta(Some("codex"))), Some("codex"));
        let err = check(&meta(Some("gpt-pilot")), &known).unwrap_err().to_string();
        assert!(err.contains("bridle.engine") && err.contains("gpt-pilot") && err.contains("claude, codex"), "{err}");
        assert!(check(&meta(Some("")), &known).is_err());
    }
}
