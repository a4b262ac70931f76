//! Reading a runtime's wire protocol into a plugin's serde types.
//!
//! Runtimes add fields and message types between releases, and a stray line
//! (a warning printed on stdout) must never end a session. So a plugin's
//! protocol types follow three rules:
//!
//! * no `deny_unknown_fields`: new fields are ignored;
//! * every message enum ends in a `#[serde(other)]` variant for message
//!   types the plugin does not know (the plugin logs and skips them);
//! * fields are `Option`/`Vec` read with [`loose`] or [`loose_list`]: a field
//!   that is missing, `null` or sent in another shape reads as absent, so one
//!   odd field never drops the whole message.
//!
//! [`read_line`] parses one line and sorts out what is not a message.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;

/// One line of runtime output, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<T> {
    /// Empty or whitespace: nothing to do.
    Blank,
    /// Not a JSON object (stray output); already logged.
    NotJson,
    /// A JSON object that is no message of the protocol (its tag is missing
    /// or not a string); already logged.
    Unreadable,
    Message(T),
}

/// Parse one runtime line into the protocol type `T`; `runtime` names the
/// runtime in log lines. Never fails: what is not a message is logged.
pub fn read_line<T: DeserializeOwned>(runtime: &str, line: &str) -> Line<T> {
    let line = line.trim();
    if line.is_empty() {
        return Line::Blank;
    }
    // A derived struct also reads a JSON array; a message is an object.
    if !line.starts_with('{') {
        crate::log(crate::LogLevel::Warn, &format!("{runtime}: non-JSON output skipped: {}", head(line)));
        return Line::NotJson;
    }
    match serde_json::from_str::<T>(line) {
        Ok(m) => Line::Message(m),
        // Only on the error path: tell stray output from an odd object.
        Err(e) => match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(_)) => {
                crate::log(
                    crate::LogLevel::Warn,
                    &format!("{runtime}: unreadable message skipped ({e}): {}", head(line)),
                );
                Line::Unreadable
            }
            _ => {
                crate::log(crate::LogLevel::Warn, &format!("{runtime}: non-JSON output skipped: {}", head(line)));
                Line::NotJson
            }
        },
    }
}

/// The first 120 characters of a line, for log messages.
pub fn head(line: &str) -> String {
    line.chars().take(120).collect()
}

/// `deserialize_with` for an `Option<T>` field (with `#[serde(default)]`):
/// `None` when the value is `null` or does not fit `T`.
pub fn loose<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(T::deserialize(v).ok())
}

/// `deserialize_with` for an `Option<Vec<T>>` field (with
/// `#[serde(default)]`): `None` unless the value is an array; elements that
/// do not fit `T` are dropped.
pub fn loose_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(items.into_iter().filter_map(|v| T::deserialize(v).ok()).collect()),
        _ => None,
    })
}

/// `deserialize_with` for a `Value` field that must be a JSON object (a
/// tool's input): anything else reads as `None`.
pub fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Some(Value::deserialize(d)?).filter(Value::is_object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Msg {
        Hello {
            #[serde(default, deserialize_with = "loose")]
            name: Option<String>,
            #[serde(default, deserialize_with = "loose_list")]
            tags: Option<Vec<u32>>,
            #[serde(default, deserialize_with = "object")]
            input: Option<Value>,
        },
        #[serde(other)]
        Unknown,
    }

    fn hello(name: Option<&str>, tags: Option<Vec<u32>>, input: Option<Value>) -> Line<Msg> {
        Line::Message(Msg::Hello { name: name.map(str::to_string), tags, input })
    }

    #[test]
    fn lines_sort_into_messages_and_skips() {
        let cases: Vec<(&str, Line<Msg>)> = vec![
            ("", Line::Blank),
            ("   ", Line::Blank),
            ("Warning: printed on stdout", Line::NotJson),
            ("[1,2]", Line::NotJson),
            ("{\"type\":\"hello\"", Line::NotJson),
            ("{\"type\":5}", Line::Unreadable),
            ("{\"no_type\":true}", Line::Unreadable),
            ("{\"type\":\"brand_new\",\"x\":1}", Line::Message(Msg::Unknown)),
            ("{\"type\":\"hello\"}", hello(None, None, None)),
            (
                " {\"type\":\"hello\",\"name\":\"a\",\"tags\":[1,\"x\",2],\"input\":{\"k\":1},\"extra\":[]} ",
                hello(Some("a"), Some(vec![1, 2]), Some(serde_json::json!({"k": 1}))),
            ),
            ("{\"type\":\"hello\",\"name\":7,\"tags\":\"no\",\"input\":\"str\"}", hello(None, None, None)),
            ("{\"type\":\"hello\",\"name\":null,\"tags\":null,\"input\":null}", hello(None, None, None)),
        ];
        for (line, want) in cases {
            assert_eq!(read_line::<Msg>("test", line), want, "{line}");
        }
    }
}
