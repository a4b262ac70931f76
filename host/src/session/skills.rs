//! The agent's skills in a session's sandbox: each pinned version (see
//! `api::skills::pin`) unpacked at `<skills dir>/<name>/` before the runtime
//! starts, where the harness plugin says its runtime reads skills
//! (`LaunchPlan::skills_dir`); for a resident runtime, in its tool sandbox
//! when that is claimed.

use std::sync::Arc;

use bridle_sandbox::Sandbox;
use serde_json::Value;

use crate::model::skills::unpack;
use crate::store::Store;

/// One skill, read from the store.
struct Loaded {
    name: String,
    description: String,
    files: Vec<(String, Vec<u8>)>,
}

/// The skills of one session's agent.
pub(crate) struct SessionSkills {
    skills: Vec<Loaded>,
}

/// The `(skill id, version)` an agent snapshot's `skills` entries pin.
fn pinned(agent: &Value) -> Vec<(String, String)> {
    agent["skills"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["skill_id"].as_str()?.to_owned(), s["version"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl SessionSkills {
    /// Read the agent's skills. A skill or version deleted since the agent
    /// named it is an error that says which.
    pub async fn load(store: &Store, agent: &Value) -> Result<Arc<SessionSkills>, String> {
        let mut skills = Vec::new();
        for (id, version) in pinned(agent) {
            let gone = || {
                format!(
                    "the agent's skill `{id}` version `{version}` no longer exists (deleted with the Skills API); \
                     update the agent's skills"
                )
            };
            let bundle = store
                .skill_bundle(&id, &version)
                .await
                .map_err(|e| format!("reading skill `{id}` failed: {e}"))?
                .ok_or_else(gone)?;
            let files =
                unpack(&bundle.name, &bundle.archive).map_err(|e| format!("skill `{id}` version `{version}`: {e}"))?;
            skills.push(Loaded { name: bundle.name, description: bundle.description, files });
        }
        Ok(Arc::new(SessionSkills { skills }))
    }

    /// What the harness plugin is told (`SessionSpec::skills`).
    pub fn specs(&self) -> Vec<bridle_harness::Skill> {
        self.skills
            .iter()
            .map(|s| bridle_harness::Skill { name: s.name.clone(), description: s.description.clone() })
            .collect()
    }

    /// Write every skill's files under `dir` (absolute inside the sandbox).
    pub async fn place(&self, sandbox: &dyn Sandbox, dir: &str) -> Result<(), String> {
        if !dir.starts_with('/') || dir.split('/').any(|p| p == "..") {
            return Err(format!("the harness's skills directory `{dir}` is not an absolute path inside the sandbox"));
        }
        let dir = dir.trim_end_matches('/');
        for s in &self.skills {
            for (path, bytes) in &s.files {
                let full = format!("{dir}/{}/{path}", s.name);
                sandbox.write_file(&full, bytes, 0o644).await.map_err(|e| format!("placing skill file {full}: {e}"))?;
            }
            tracing::info!(skill = %s.name, dir, files = s.files.len(), "skill placed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_pinned_versions_of_an_agent() {
        let agent = json!({"skills": [
            {"type": "custom", "skill_id": "skill_a", "version": "1"},
            {"type": "custom", "skill_id": "skill_b", "version": "22"},
        ]});
        assert_eq!(pinned(&agent), [("skill_a".to_owned(), "1".to_owned()), ("skill_b".to_owned(), "22".to_owned())]);
        assert!(pinned(&json!({})).is_empty());
        assert!(pinned(&json!({"skills": []})).is_empty());
    }
}
