//! An agent's `multiagent` configuration. Bridle takes the `coordinator`
//! topology: a roster of agents (by id, by pinned version, or `self`) the
//! session's primary thread may delegate to. `multiagent_20261001` and
//! `advisor` roster entries are refused, naming them. Parsing and the roster
//! rules are pure; the API looks the referenced agents up and hands the
//! results to [`resolve`].

use serde_json::{Value, json};

use super::common::Invalid;

/// Roster size bounds of the API (`1–20 entries`).
pub const MAX_ROSTER: usize = 20;

/// One roster entry as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryParam {
    /// An agent id string, or `{"type": "agent", "id", "version"?}`.
    Agent { id: String, version: Option<i64> },
    /// `{"type": "self"}`: the agent that owns the configuration.
    SelfRef,
}

/// A `coordinator` configuration as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorParam {
    pub agents: Vec<EntryParam>,
}

/// What the store holds for an [`EntryParam::Agent`] entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The referenced version (the latest when the entry names none).
    Found {
        version: i64,
        archived: bool,
        coordinator: bool,
    },
    NoAgent,
    NoVersion,
}

/// A resolved roster member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Agent { id: String, version: i64 },
    SelfRef,
}

/// Parse `multiagent` (`null`: none). Every key and type Bridle does not
/// run is a 400 naming it.
pub fn parse(v: &Value) -> Result<Option<CoordinatorParam>, Invalid> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(Invalid::new("multiagent: must be an object or null")),
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("coordinator") => {}
        Some("multiagent_20261001") => {
            return Err(Invalid::new(
                "multiagent.type: `multiagent_20261001` (subagents, workflows and an advisor) is not supported by \
                 this server; use {\"type\": \"coordinator\", \"agents\": [...]}",
            ));
        }
        Some(t) => {
            return Err(Invalid::new(format!("multiagent.type: unknown type `{t}`; expected `coordinator`")));
        }
        None => return Err(Invalid::new("multiagent.type: required; expected `coordinator`")),
    }
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "type" | "agents")) {
        return Err(Invalid::new(format!("multiagent.{k}: unknown field of a `coordinator`")));
    }
    let entries = match obj.get("agents") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Invalid::new("multiagent.agents: must be an array")),
        None => return Err(Invalid::new("multiagent.agents: required field is missing")),
    };
    if entries.is_empty() || entries.len() > MAX_ROSTER {
        return Err(Invalid::new(format!(
            "multiagent.agents: a roster has 1 to {MAX_ROSTER} entries, got {}",
            entries.len()
        )));
    }
    let agents = entries.iter().enumerate().map(|(i, e)| parse_entry(&format!("multiagent.agents[{i}]"), e));
    Ok(Some(CoordinatorParam { agents: agents.collect::<Result<_, _>>()? }))
}

fn parse_entry(field: &str, v: &Value) -> Result<EntryParam, Invalid> {
    let obj = match v {
        Value::String(id) => return Ok(EntryParam::Agent { id: agent_id(field, id)?, version: None }),
        Value::Object(o) => o,
        _ => return Err(Invalid::new(format!("{field}: an agent id string, an `agent` reference or `self`"))),
    };
    let only = |allowed: &[&str]| -> Result<(), Invalid> {
        match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Invalid::new(format!("{field}.{k}: unknown field"))),
            None => Ok(()),
        }
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("agent") => {
            only(&["type", "id", "version"])?;
            let id =
                obj.get("id").and_then(Value::as_str).ok_or_else(|| Invalid::new(format!("{field}.id: required")))?;
            let version = match obj.get("version") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_i64() {
                    Some(n) if n >= 1 => Some(n),
                    _ => return Err(Invalid::new(format!("{field}.version: must be an integer of at least 1"))),
                },
            };
            Ok(EntryParam::Agent { id: agent_id(&format!("{field}.id"), id)?, version })
        }
        Some("self") => {
            only(&["type"])?;
            Ok(EntryParam::SelfRef)
        }
        Some("advisor") => Err(Invalid::new(format!(
            "{field}: `advisor` roster entries (a model the primary thread consults) are not supported by this server"
        ))),
        Some(t) => Err(Invalid::new(format!("{field}.type: unknown type `{t}`; expected `agent` or `self`"))),
        None => Err(Invalid::new(format!("{field}.type: required; expected `agent` or `self`"))),
    }
}

fn agent_id(field: &str, id: &str) -> Result<String, Invalid> {
    if !crate::ids::has_kind(id, crate::ids::Kind::Agent) {
        return Err(Invalid::new(format!("{field}: `{id}` is not an agent id (agent_...)")));
    }
    Ok(id.to_owned())
}

/// Check the roster against the API's rules, given the owner's id (`None`
/// while it is being created) and a [`Lookup`] per entry (ignored for
/// `self`): entries name distinct agents, at most one `self`, the owner only
/// as `self`, and every referenced agent exists, is not archived and is not a
/// coordinator itself (depth limit 1).
pub fn resolve(p: &CoordinatorParam, owner: Option<&str>, found: &[Lookup]) -> Result<Vec<Member>, Invalid> {
    let mut out = Vec::with_capacity(p.agents.len());
    let mut seen: Vec<&str> = Vec::new();
    for (i, (entry, lookup)) in p.agents.iter().zip(found).enumerate() {
        let field = format!("multiagent.agents[{i}]");
        match entry {
            EntryParam::SelfRef => {
                if out.contains(&Member::SelfRef) {
                    return Err(Invalid::new(format!("{field}: `self` is listed twice")));
                }
                out.push(Member::SelfRef);
            }
            EntryParam::Agent { id, version } => {
                if owner == Some(id.as_str()) {
                    return Err(Invalid::new(format!(
                        "{field}: `{id}` is this agent; name it as {{\"type\": \"self\"}}"
                    )));
                }
                if seen.contains(&id.as_str()) {
                    return Err(Invalid::new(format!("{field}: agent `{id}` is listed twice")));
                }
                seen.push(id);
                match lookup {
                    Lookup::NoAgent => return Err(Invalid::new(format!("{field}: agent `{id}` not found"))),
                    Lookup::NoVersion => {
                        return Err(Invalid::new(format!(
                            "{field}: agent `{id}` has no version {}",
                            version.unwrap_or_default()
                        )));
                    }
                    Lookup::Found { archived: true, .. } => {
                        return Err(Invalid::new(format!("{field}: agent `{id}` is archived")));
                    }
                    Lookup::Found { coordinator: true, version: v, .. } => {
                        return Err(Invalid::new(format!(
                            "{field}: agent `{id}` (version {v}) is a coordinator itself; roster agents may not \
                             have `multiagent` set (depth limit 1)"
                        )));
                    }
                    Lookup::Found { version: v, .. } => out.push(Member::Agent { id: id.clone(), version: *v }),
                }
            }
        }
    }
    Ok(out)
}

/// The stored and returned form (`BetaManagedAgentsMultiagentCoordinator`):
/// `self` becomes a reference to the owner at the version being written.
pub fn to_value(members: &[Member], owner: &str, owner_version: i64) -> Value {
    let agents: Vec<Value> = members
        .iter()
        .map(|m| match m {
            Member::Agent { id, version } => json!({"type": "agent", "id": id, "version": version}),
            Member::SelfRef => json!({"type": "agent", "id": owner, "version": owner_version}),
        })
        .collect();
    json!({"type": "coordinator", "agents": agents})
}

/// Re-point a stored roster's `self` entry (the owner's own id: only `self`
/// may name it) at a new version of the owner.
pub fn pin_self(stored: &mut Option<Value>, owner: &str, version: i64) {
    let Some(agents) = stored.as_mut().and_then(|m| m.get_mut("agents")).and_then(Value::as_array_mut) else {
        return;
    };
    for a in agents.iter_mut().filter_map(Value::as_object_mut) {
        if a.get("id").and_then(Value::as_str) == Some(owner) {
            a.insert("version".into(), json!(version));
        }
    }
}

/// The resolved roster of a stored `multiagent` value: (agent id, version).
pub fn roster(stored: &Value) -> Vec<(String, i64)> {
    let agents = stored.get("agents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    agents.iter().filter_map(|a| Some((a.get("id")?.as_str()?.to_owned(), a.get("version")?.as_i64()?))).collect()
}

/// Whether an agent's stored `multiagent` is set.
pub fn is_coordinator(stored: Option<&Value>) -> bool {
    stored.is_some_and(|m| !m.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "agent_01AAAA";
    const B: &str = "agent_01BBBB";
    const OWNER: &str = "agent_01OWNER";

    fn found(version: i64) -> Lookup {
        Lookup::Found { version, archived: false, coordinator: false }
    }

    #[test]
    fn parse_takes_the_coordinator_shapes_and_names_what_it_refuses() {
        let ok = parse(
            &json!({"type": "coordinator", "agents": [A, {"type": "agent", "id": B, "version": 2}, {"type": "self"}]}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            ok.agents,
            [
                EntryParam::Agent { id: A.into(), version: None },
                EntryParam::Agent { id: B.into(), version: Some(2) },
                EntryParam::SelfRef
            ]
        );
        assert_eq!(parse(&Value::Null).unwrap(), None);
        let many: Vec<Value> = (0..21).map(|i| json!(format!("agent_01X{i}"))).collect();
        // (input, a fragment of the message)
        let bad = [
            (json!("coordinator"), "must be an object"),
            (json!({"agents": [A]}), "multiagent.type: required"),
            (json!({"type": "multiagent_20261001"}), "`multiagent_20261001`"),
            (json!({"type": "swarm", "agents": [A]}), "unknown type `swarm`"),
            (json!({"type": "coordinator"}), "multiagent.agents: required"),
            (json!({"type": "coordinator", "agents": []}), "1 to 20 entries, got 0"),
            (json!({"type": "coordinator", "agents": many}), "1 to 20 entries, got 21"),
            (json!({"type": "coordinator", "agents": [A], "depth": 2}), "multiagent.depth: unknown field"),
            (json!({"type": "coordinator", "agents": [{"type": "advisor", "model": "m"}]}), "`advisor` roster entries"),
            (json!({"type": "coordinator", "agents": ["env_01X"]}), "agents[0]: `env_01X` is not an agent id"),
            (json!({"type": "coordinator", "agents": [{"type": "agent", "id": A, "version": 0}]}), "version: must be"),
            (json!({"type": "coordinator", "agents": [{"type": "agent"}]}), "agents[0].id: required"),
            (json!({"type": "coordinator", "agents": [{"type": "self", "id": A}]}), "agents[0].id: unknown field"),
            (json!({"type": "coordinator", "agents": [{"id": A}]}), "agents[0].type: required"),
            (json!({"type": "coordinator", "agents": [7]}), "agents[0]: an agent id string"),
        ];
        for (input, want) in bad {
            let err = parse(&input).expect_err(&input.to_string());
            assert!(err.0.contains(want), "{input}: {err} (wanted {want:?})");
        }
    }

    #[test]
    fn resolve_applies_the_roster_rules() {
        let p = |agents: Vec<EntryParam>| CoordinatorParam { agents };
        let a = || EntryParam::Agent { id: A.into(), version: None };
        let owner = EntryParam::Agent { id: OWNER.into(), version: None };
        let ok = resolve(&p(vec![a(), EntryParam::SelfRef]), Some(OWNER), &[found(3), Lookup::NoAgent]).unwrap();
        assert_eq!(ok, [Member::Agent { id: A.into(), version: 3 }, Member::SelfRef]);
        let bad = [
            (p(vec![a(), a()]), vec![found(1), found(1)], "agents[1]: agent `agent_01AAAA` is listed twice"),
            (p(vec![EntryParam::SelfRef, EntryParam::SelfRef]), vec![Lookup::NoAgent; 2], "`self` is listed twice"),
            (p(vec![owner]), vec![found(1)], "is this agent; name it as {\"type\": \"self\"}"),
            (p(vec![a()]), vec![Lookup::NoAgent], "agent `agent_01AAAA` not found"),
            (p(vec![a()]), vec![Lookup::NoVersion], "has no version"),
            (p(vec![a()]), vec![Lookup::Found { version: 1, archived: true, coordinator: false }], "is archived"),
            (p(vec![a()]), vec![Lookup::Found { version: 2, archived: false, coordinator: true }], "depth limit 1"),
        ];
        for (param, lookups, want) in bad {
            let err = resolve(&param, Some(OWNER), &lookups).expect_err(want);
            assert!(err.0.contains(want), "{err} (wanted {want:?})");
        }
    }

    #[test]
    fn self_is_stored_as_the_owner_at_the_version_written_and_follows_new_versions() {
        let members = [Member::Agent { id: A.into(), version: 3 }, Member::SelfRef];
        let mut v = Some(to_value(&members, OWNER, 1));
        assert_eq!(
            v.as_ref().unwrap(),
            &json!({"type": "coordinator", "agents": [
                {"type": "agent", "id": A, "version": 3},
                {"type": "agent", "id": OWNER, "version": 1},
            ]})
        );
        pin_self(&mut v, OWNER, 2);
        assert_eq!(roster(v.as_ref().unwrap()), [(A.to_owned(), 3), (OWNER.to_owned(), 2)]);
        assert!(is_coordinator(v.as_ref()));
        assert!(!is_coordinator(None));
        assert!(!is_coordinator(Some(&Value::Null)));
    }
}
