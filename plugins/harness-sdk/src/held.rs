//! Tool uses held back under `always_ask` (or an `auto` deny): their event
//! waits until the runtime either asks for permission (the plugin emits it
//! as `ask`, or as the judged `deny`) or runs the tool anyway (emitted as
//! `allow`: the runtime's own settings allowed it).

use serde_json::{Value, json};

use crate::Action;

/// Held tool-use events, oldest first, by the runtime's key for the use.
#[derive(Debug, Clone, Default)]
pub struct HeldUses {
    uses: Vec<(String, Value)>,
}

impl HeldUses {
    pub fn hold(&mut self, key: &str, event: Value) {
        self.uses.push((key.to_string(), event));
    }

    /// The key of the oldest held use whose event matches.
    pub fn find(&self, matches: impl Fn(&Value) -> bool) -> Option<&str> {
        self.uses.iter().find(|(_, e)| matches(e)).map(|(k, _)| k.as_str())
    }

    /// Take the held use of `key`, not emitted.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let pos = self.uses.iter().position(|(k, _)| k == key)?;
        Some(self.uses.remove(pos).1)
    }

    /// The runtime ran the tool of `key` without asking: emit it as allowed.
    pub fn release(&mut self, key: &str, out: &mut Vec<Action>) {
        if let Some(event) = self.take(key) {
            out.push(allowed(event));
        }
    }

    /// The turn ended: emit every held use as allowed.
    pub fn release_all(&mut self, out: &mut Vec<Action>) {
        out.extend(self.uses.drain(..).map(|(_, e)| allowed(e)));
    }
}

fn allowed(mut event: Value) -> Action {
    event["evaluated_permission"] = json!("allow");
    Action::emit_json(&event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(out: &[Action]) -> Vec<Value> {
        out.iter()
            .map(|a| match a {
                Action::Emit(s) => serde_json::from_str(s).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn held_uses_are_taken_or_released_as_allowed() {
        let mut held = HeldUses::default();
        held.hold("t1", json!({"id": "sevt_1", "name": "bash"}));
        held.hold("t2", json!({"id": "sevt_2", "name": "read"}));
        held.hold("t3", json!({"id": "sevt_3", "name": "bash"}));
        assert_eq!(held.find(|e| e["name"] == "bash"), Some("t1"), "the oldest match");
        assert_eq!(held.take("t1"), Some(json!({"id": "sevt_1", "name": "bash"})));
        assert_eq!(held.take("t1"), None, "taken once");
        let mut out = Vec::new();
        held.release("t9", &mut out);
        assert!(out.is_empty(), "nothing held under t9");
        held.release("t3", &mut out);
        held.release_all(&mut out);
        let ids: Vec<(Value, Value)> =
            emitted(&out).into_iter().map(|e| (e["id"].clone(), e["evaluated_permission"].clone())).collect();
        assert_eq!(ids, [(json!("sevt_3"), json!("allow")), (json!("sevt_2"), json!("allow"))]);
        held.release_all(&mut out);
        assert_eq!(out.len(), 2, "released once");
    }
}
